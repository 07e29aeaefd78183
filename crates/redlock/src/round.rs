//! Every fan-out to the masters: the requests of a round, awaited as they answer, each polled
//! (and so sent) at the first pass, before any answer is counted; and [`Requests::settle`],
//! the one loop that counts the answers until the outcome is known (acquire, raise, extend,
//! release and connect all use it).
//!
//! `FuturesUnordered` polls the futures that are ready in turn, but stops a pass early once two
//! of them woke themselves while being polled, as tokio's resources do when a task has used up
//! its budget; under load it could return an answer before it had polled every future once,
//! and a round that settled on that answer would never have asked the masters left unpolled (an
//! acquisition held by fewer masters than were there, or a release that never went out). So
//! the passes run unconstrained by the budget; the work of a pass is bounded by the masters.

use std::future::Future;
use std::pin::Pin;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::tally::Verdict;

/// A count of answers that knows when its outcome is decided: a tally, or an acquire's ballot.
pub(crate) trait Settles {
    /// Pending while more answers could change the outcome.
    fn verdict(&self) -> Verdict;
}

/// Requests to the masters, awaited as they answer.
pub(crate) struct Requests<F: Future> {
    // Boxed: a request's future is large, and a box moves as a pointer.
    running: FuturesUnordered<Pin<Box<F>>>,
}

impl<F: Future> Requests<F> {
    /// The next answer, `None` once every request has answered.
    pub(crate) async fn next(&mut self) -> Option<F::Output> {
        // Out of tokio's budget, each request would wake its task while polled, and
        // `FuturesUnordered` would cut its pass short after two: unconstrained, every pass
        // polls every request that is ready. The work per pass is bounded by the masters.
        tokio::task::unconstrained(self.running.next()).await
    }

    /// Takes the answers as they come, giving each to `count` with `counter`, until the
    /// counter's verdict is no longer pending or every request has answered. The requests
    /// still out then stay here, running whether awaited or not.
    pub(crate) async fn settle<C: Settles>(
        &mut self,
        counter: &mut C,
        mut count: impl FnMut(&mut C, F::Output),
    ) {
        while counter.verdict() == Verdict::Pending {
            let Some(answer) = self.next().await else {
                break;
            };
            count(counter, answer);
        }
    }

    /// How many requests have not answered yet (or whose answers were not taken).
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether every answer was taken.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The requests, to be awaited as they answer; each is sent at the first pass.
pub(crate) fn started<F: Future>(requests: impl IntoIterator<Item = F>) -> Requests<F> {
    Requests {
        running: requests.into_iter().map(Box::pin).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    #[tokio::test]
    async fn a_pass_polls_every_request_even_when_the_task_is_out_of_budget() {
        let polled = Arc::new(AtomicUsize::new(0));
        // Each request spends budget first, as fred's do when they wait for an answer.
        let requests = (0..8).map(|_| {
            let polled = polled.clone();
            async move {
                tokio::task::consume_budget().await;
                polled.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        });
        let mut round = started(requests);
        std::future::poll_fn(|cx| {
            // Use the task's budget up, then make one pass over the requests in the same poll.
            loop {
                let mut spend = pin!(tokio::task::consume_budget());
                if spend.as_mut().poll(cx).is_pending() {
                    break;
                }
            }
            let mut next = pin!(round.next());
            assert!(next.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        assert_eq!(polled.load(Ordering::SeqCst), 8, "a pass stopped short");
    }

    /// A request that answers `yes` at once, or never.
    async fn answer(yes: Option<bool>) -> bool {
        match yes {
            Some(yes) => yes,
            None => std::future::pending().await,
        }
    }

    #[tokio::test]
    async fn settle_stops_at_the_verdict_and_leaves_the_masters_still_out_running() {
        use futures::FutureExt;

        use crate::tally::Tally;

        // Two of three say yes at once, the third never answers: a quorum of 2 is reached
        // without waiting for it, in the first poll.
        let mut requests = started([Some(true), None, Some(true)].map(answer));
        let mut tally = Tally::new(3);
        let settled = requests
            .settle(&mut tally, |t, yes| if yes { t.yes() } else { t.refused() })
            .now_or_never();
        assert!(
            settled.is_some(),
            "waited for the master that never answers"
        );
        assert_eq!(tally.verdict(), Verdict::Reached);
        assert_eq!(requests.len(), 1);

        // A count decided before any answer takes none.
        let mut requests = started([None, None].map(answer));
        let mut hopeless = Tally::with_quorum(2, 3);
        let mut taken = 0;
        let settled = requests
            .settle(&mut hopeless, |_, _| taken += 1)
            .now_or_never();
        assert!(settled.is_some());
        assert_eq!((taken, requests.len()), (0, 2));
    }
}
