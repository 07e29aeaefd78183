//! [`Proxy`]: a TCP proxy on a free loopback port in front of a server, with network faults:
//! a delay each way, requests or replies held back (a blackhole when both are), connections
//! dropped, new ones refused, and a switch to another backend (a failover behind one address).
//! Plain threads, so that it works whatever runtime the test uses.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// The faults a [`Proxy`] applies to what passes through it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyFaults {
    /// Every chunk of data waits this long before it is passed on, each way.
    pub delay: Duration,
    /// Requests reach the proxy but are not passed on to the server until this is cleared.
    pub hold_requests: bool,
    /// Replies reach the proxy but are not passed on to the client until this is cleared: the
    /// server has run the requests, the client has not heard.
    pub hold_replies: bool,
    /// New connections are closed at once.
    pub refuse: bool,
}

#[derive(Debug)]
struct Shared {
    backend: Mutex<u16>,
    faults: Mutex<ProxyFaults>,
    /// Wakes the pumps when the faults change.
    changed: Condvar,
    /// Both ends of every open connection (by connection number), to cut them.
    conns: Mutex<Vec<(u64, TcpStream)>>,
    stopped: AtomicBool,
    /// The first bytes sent to the server, for tests that check what went over the wire.
    sent: Mutex<Vec<u8>>,
    to_server: AtomicU64,
    to_client: AtomicU64,
    accepted: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A TCP proxy on a free loopback port in front of a server, with network faults
/// ([`ProxyFaults`]: delays, held requests or replies), cut connections and a switch of backend.
/// Stops, cutting every connection, when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of the server on `backend` (a port of
    /// `127.0.0.1`).
    pub fn start(backend: u16) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            backend: Mutex::new(backend),
            faults: Mutex::new(ProxyFaults::default()),
            changed: Condvar::new(),
            conns: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            sent: Mutex::new(Vec::new()),
            to_server: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || accept(&listener, &accepting))?;
        Ok(Proxy { port, shared })
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sets the faults from now on (held data is passed on once its hold is cleared).
    pub fn set_faults(&self, faults: ProxyFaults) {
        *lock(&self.shared.faults) = faults;
        self.shared.changed.notify_all();
    }

    /// The faults in force.
    pub fn faults(&self) -> ProxyFaults {
        *lock(&self.shared.faults)
    }

    /// Cuts every connection through the proxy (the clients see them close).
    pub fn drop_connections(&self) {
        for (_, c) in lock(&self.shared.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Sends new connections to the server on `backend` and cuts the current ones: a failover
    /// behind one address.
    pub fn switch_to(&self, backend: u16) {
        *lock(&self.shared.backend) = backend;
        self.drop_connections();
    }

    /// How many bytes of requests were passed on to the server.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.to_server.load(Ordering::SeqCst)
    }

    /// The first bytes (up to 1 MiB) that clients sent towards the server, over every
    /// connection, as they arrived at the proxy.
    pub fn sent_to_server(&self) -> Vec<u8> {
        lock(&self.shared.sent).clone()
    }

    /// How many bytes of replies were passed on to clients.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }

    /// How many connections the proxy has accepted.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Unblock the accepting thread.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        self.drop_connections();
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let id = shared.accepted.fetch_add(1, Ordering::SeqCst);
        if lock(&shared.faults).refuse {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let backend = *lock(&shared.backend);
        let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, backend)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        lock(&shared.conns).extend([(id, c3), (id, s3)]);
        let (up, down) = (shared.clone(), shared.clone());
        let _ = thread::Builder::new()
            .name("proxy-up".into())
            .spawn(move || pump(client, s2, &up, Direction::ToServer, id));
        let _ = thread::Builder::new()
            .name("proxy-down".into())
            .spawn(move || pump(server, c2, &down, Direction::ToClient, id));
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToServer,
    ToClient,
}

/// Passes what arrives on `from` on to `to`, applying the faults; cuts both ends at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, direction: Direction, id: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Direction::ToServer = direction {
            let mut sent = lock(&shared.sent);
            let room = (1usize << 20).saturating_sub(sent.len());
            sent.extend_from_slice(&buf[..n.min(room)]);
        }
        let delay = {
            let mut faults = lock(&shared.faults);
            loop {
                let held = match direction {
                    Direction::ToServer => faults.hold_requests,
                    Direction::ToClient => faults.hold_replies,
                };
                if !held || shared.stopped.load(Ordering::SeqCst) {
                    break;
                }
                faults = shared
                    .changed
                    .wait(faults)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            faults.delay
        };
        if shared.stopped.load(Ordering::SeqCst) {
            break;
        }
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let counter = match direction {
            Direction::ToServer => &shared.to_server,
            Direction::ToClient => &shared.to_client,
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    lock(&shared.conns).retain(|(i, _)| *i != id);
}
