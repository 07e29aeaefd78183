//! [`RedisGroup`]: N independent masters started in one call.

use std::io;
use std::ops::{Index, IndexMut};

use crate::server::{Persistence, RedisServer, ServerOptions};

/// N independent `redis-server` processes, started together and killed on drop.
#[derive(Debug)]
pub struct RedisGroup {
    servers: Vec<RedisServer>,
}

impl RedisGroup {
    /// Starts `n` servers with the default options.
    pub fn start(n: usize) -> io::Result<RedisGroup> {
        RedisGroup::start_with(n, ServerOptions::default())
    }

    /// Starts `n` servers with `options`, in parallel.
    pub fn start_with(n: usize, options: ServerOptions) -> io::Result<RedisGroup> {
        let servers = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| s.spawn(move || RedisServer::start_with(options)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("start panicked")))
                })
                .collect::<io::Result<Vec<_>>>()
        })?;
        Ok(RedisGroup { servers })
    }

    /// Starts `n` servers with `options` and vouches for them ([`vouch`](Self::vouch)): fresh
    /// masters that vote at once.
    pub fn start_vouched(n: usize, options: ServerOptions) -> io::Result<RedisGroup> {
        let group = RedisGroup::start_with(n, options)?;
        group.vouch()?;
        Ok(group)
    }

    /// `n` fresh masters that persist every write (AOF, `appendfsync always`), vouched for so
    /// that they vote at once: the usual masters of a test or a benchmark.
    pub fn persistent(n: usize) -> io::Result<RedisGroup> {
        RedisGroup::start_vouched(
            n,
            ServerOptions {
                persistence: Persistence::AofAlways,
                ..Default::default()
            },
        )
    }

    /// [`RedisServer::vouch`] for every server: fresh servers vote at once.
    pub fn vouch(&self) -> io::Result<()> {
        self.servers.iter().try_for_each(RedisServer::vouch)
    }

    /// The servers' URLs, in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// How many servers there are.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the group is empty.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The servers.
    pub fn iter(&self) -> std::slice::Iter<'_, RedisServer> {
        self.servers.iter()
    }

    /// The servers, mutably (to pause, kill or restart some).
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, RedisServer> {
        self.servers.iter_mut()
    }
}

impl Index<usize> for RedisGroup {
    type Output = RedisServer;
    fn index(&self, i: usize) -> &RedisServer {
        &self.servers[i]
    }
}

impl IndexMut<usize> for RedisGroup {
    fn index_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.servers[i]
    }
}
