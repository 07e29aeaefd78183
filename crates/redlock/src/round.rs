//! The start of every fan-out to the masters: each request is polled once, and so sent, before
//! any answer is counted.
//!
//! `FuturesUnordered` polls the futures that are ready in turn, but stops a pass early once two
//! of them woke themselves while being polled (as tokio's resources do when a task has used up
//! its budget), so under load it can return an answer before it has polled every future once.
//! A round that settles on that answer would never have asked the masters left unpolled: an
//! acquisition held by fewer masters than were there, or a release that never went out.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// Requests to the masters, each sent: the answers that came at once, then the others as
/// they come.
pub(crate) struct Requests<F: Future> {
    done: std::vec::IntoIter<F::Output>,
    running: FuturesUnordered<Pin<Box<F>>>,
}

impl<F: Future> Requests<F> {
    /// The next answer, `None` once every request has answered.
    pub(crate) async fn next(&mut self) -> Option<F::Output> {
        match self.done.next() {
            Some(out) => Some(out),
            None => self.running.next().await,
        }
    }

    /// How many requests have not answered yet (or whose answers were not taken).
    pub(crate) fn len(&self) -> usize {
        self.done.len() + self.running.len()
    }

    /// Whether every answer was taken.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Polls every request once, so that each is sent, and returns them to be awaited.
pub(crate) async fn started<F: Future>(requests: impl IntoIterator<Item = F>) -> Requests<F> {
    let mut pending: Vec<Pin<Box<F>>> = requests.into_iter().map(Box::pin).collect();
    // The closure owns what it fills (a borrow held across the await would need `Sync`), and
    // is ready at its first poll, so it runs once.
    std::future::poll_fn(move |cx| {
        let mut done = Vec::new();
        let running = FuturesUnordered::new();
        for mut request in pending.drain(..) {
            match request.as_mut().poll(cx) {
                Poll::Ready(out) => done.push(out),
                Poll::Pending => running.push(request),
            }
        }
        Poll::Ready(Requests {
            done: done.into_iter(),
            running,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_request_is_polled_before_any_answer_is_taken() {
        let polled = Arc::new(AtomicUsize::new(0));
        // Each request wakes its task while being polled (as a task out of budget would see),
        // which is what makes FuturesUnordered cut a pass short.
        let requests = (0..8).map(|_| {
            let polled = polled.clone();
            async move {
                polled.fetch_add(1, Ordering::SeqCst);
                std::future::poll_fn(|cx| {
                    cx.waker().wake_by_ref();
                    Poll::<()>::Pending
                })
                .await
            }
        });
        let started = started(requests).await;
        assert_eq!(started.len(), 8);
        assert_eq!(polled.load(Ordering::SeqCst), 8, "a request was not sent");
    }
}
