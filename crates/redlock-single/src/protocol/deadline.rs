//! Per-request deadlines kept by one background thread instead of a tokio timer each.
//!
//! With a tokio timer pending, the runtime parks with a timed sleep, and arming the kernel's
//! timer on every park is expensive on virtual machines (measured: `docs/benchmarks.md`). Here
//! a request registers its deadline in a shared list; one thread, started on first use, sleeps
//! until the earliest deadline still waited on, marks the expired ones and wakes their tasks,
//! so the runtime's own parks stay untimed. A deadline earlier than the one the thread sleeps
//! towards wakes it. Finished requests drop their slot; the thread forgets them at its next
//! pass. Deadlines follow the real clock (not tokio's paused clock) and fire within about a
//! millisecond. A timeout too large to be an instant never fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// One request's deadline, shared with the watch thread.
#[derive(Debug)]
struct Slot {
    at: Instant,
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        let waker = lock(&self.waker).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The deadlines being watched, and when the thread means to look at them next.
struct Watched {
    slots: Vec<Weak<Slot>>,
    /// The instant the thread sleeps towards; `None` while it sleeps with nothing to watch.
    next_pass: Option<Instant>,
}

/// The watched list, and the thread's wake-up call.
struct Watch {
    watched: Mutex<Watched>,
    wake: Condvar,
}

/// The least time between two passes of the thread, so that deadlines close together cost one
/// pass, not one each.
const GRAIN: Duration = Duration::from_millis(1);

/// Every this many requests in the list, the thread is woken to drop the finished ones.
const PRUNE_EVERY: usize = 4096;

/// The watched list, or `None` if the thread could not be started (the process is out of
/// threads): requests then fall back to a tokio timer.
static WATCH: LazyLock<Option<Arc<Watch>>> = LazyLock::new(|| {
    let watch = Arc::new(Watch {
        watched: Mutex::new(Watched {
            slots: Vec::new(),
            next_pass: None,
        }),
        wake: Condvar::new(),
    });
    let watching = watch.clone();
    std::thread::Builder::new()
        .name("redlock-deadlines".into())
        .spawn(move || run(&watching))
        .ok()
        .map(|_| watch)
});

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run(watch: &Watch) {
    let mut watched = lock(&watch.watched);
    loop {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        watched.slots.retain(|weak| {
            let Some(slot) = weak.upgrade() else {
                return false;
            };
            if slot.at <= now {
                slot.fire();
                false
            } else {
                next = Some(next.map_or(slot.at, |n| n.min(slot.at)));
                true
            }
        });
        let pass = next.map(|n| n.max(now + GRAIN));
        watched.next_pass = pass;
        watched = match pass {
            None => watch
                .wake
                .wait(watched)
                .unwrap_or_else(PoisonError::into_inner),
            Some(pass) => {
                watch
                    .wake
                    .wait_timeout(watched, pass.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

/// A deadline `timeout` from now: [`Deadline::poll_elapsed`] says when it has passed.
#[derive(Debug)]
enum Deadline {
    Watched(Arc<Slot>),
    /// No watch thread: a tokio timer.
    Timer(Pin<Box<tokio::time::Sleep>>),
    /// A timeout too large to be an instant: it never passes.
    Never,
}

impl Deadline {
    fn after(timeout: Duration) -> Deadline {
        let Some(at) = Instant::now().checked_add(timeout) else {
            return Deadline::Never;
        };
        let Some(watch) = WATCH.as_ref() else {
            return match tokio::time::Instant::now().checked_add(timeout) {
                Some(at) => Deadline::Timer(Box::pin(tokio::time::sleep_until(at))),
                None => Deadline::Never,
            };
        };
        let slot = Arc::new(Slot {
            at,
            fired: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        let mut watched = lock(&watch.watched);
        // Wake the thread when it sleeps past this deadline (or with nothing to watch), and now
        // and then to forget the finished requests, which otherwise pile up until its next pass.
        let wake = watched.next_pass.is_none_or(|pass| at < pass)
            || watched.slots.len() % PRUNE_EVERY == 0;
        watched.slots.push(Arc::downgrade(&slot));
        if wake {
            // Until the thread has run, no later registration needs to wake it again.
            watched.next_pass = Some(at);
        }
        drop(watched);
        if wake {
            watch.wake.notify_one();
        }
        Deadline::Watched(slot)
    }

    /// Whether the deadline has passed; if not, `cx` is woken when it does.
    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> bool {
        match self {
            Deadline::Never => false,
            Deadline::Timer(sleep) => sleep.as_mut().poll(cx).is_ready(),
            Deadline::Watched(slot) => {
                {
                    let mut waker = lock(&slot.waker);
                    match &*waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                }
                // Checked after the waker is in place, so that a deadline firing in between is
                // seen.
                slot.fired.load(Ordering::Acquire)
            }
        }
    }
}

/// `future`, failing with `Err(Elapsed)` if it is not done within `timeout`.
pub(crate) fn bounded<F: Future + Unpin>(timeout: Duration, future: F) -> Bounded<F> {
    Bounded {
        future,
        deadline: Deadline::after(timeout),
    }
}

/// The deadline passed before the request was done.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// See [`bounded`].
#[derive(Debug)]
pub(crate) struct Bounded<F> {
    future: F,
    deadline: Deadline,
}

impl<F: Future + Unpin> Future for Bounded<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(out) = Pin::new(&mut this.future).poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if this.deadline.poll_elapsed(cx) {
            Poll::Ready(Err(Elapsed))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_never_ends_times_out_and_one_that_ends_does_not() {
        let stuck = bounded(
            Duration::from_millis(20),
            Box::pin(std::future::pending::<()>()),
        );
        // The outer bound only keeps a broken watch thread from hanging the test.
        let out = tokio::time::timeout(Duration::from_secs(10), stuck)
            .await
            .expect("the deadline fired");
        assert!(out.is_err(), "a stuck request did not time out");

        let quick = bounded(Duration::from_millis(20), Box::pin(async { 7 }));
        assert_eq!(quick.await.expect("in time"), 7);
    }

    #[tokio::test]
    async fn many_requests_in_flight_all_time_out() {
        let stuck: Vec<_> = (0..10_000)
            .map(|i| {
                bounded(
                    Duration::from_millis(10 + i % 7),
                    Box::pin(std::future::pending::<()>()),
                )
            })
            .collect();
        let all = await_all(stuck);
        let outs = tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("every deadline fired");
        assert!(outs.iter().all(Result::is_err));
    }

    #[tokio::test]
    async fn an_earlier_deadline_fires_first_while_the_thread_waits_for_a_later_one() {
        // The thread goes to sleep towards a deadline a minute away...
        let late = bounded(
            Duration::from_secs(60),
            Box::pin(std::future::pending::<()>()),
        );
        let mut late = Box::pin(late);
        assert!(futures::poll!(late.as_mut()).is_pending());
        tokio::task::yield_now().await;
        // ...and a request with a short timeout, registered after it, must still time out
        // while the long one is waiting (the outer bound only catches a hang).
        let early = bounded(
            Duration::from_millis(20),
            Box::pin(std::future::pending::<()>()),
        );
        let out = tokio::time::timeout(Duration::from_secs(30), early)
            .await
            .expect("the short deadline fired long before the long one");
        assert!(out.is_err());
        assert!(futures::poll!(late.as_mut()).is_pending());
    }

    #[tokio::test]
    async fn a_timeout_too_large_for_an_instant_never_fires_and_never_panics() {
        let mut huge = Box::pin(bounded(
            Duration::MAX,
            Box::pin(std::future::pending::<()>()),
        ));
        assert!(futures::poll!(huge.as_mut()).is_pending());
        let done = bounded(Duration::MAX, Box::pin(async { 3 }));
        assert_eq!(done.await.expect("done"), 3);
    }

    /// Awaits every future in turn (they run concurrently: each was registered when made).
    async fn await_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut outs = Vec::with_capacity(futures.len());
        for f in futures {
            outs.push(f.await);
        }
        outs
    }
}
