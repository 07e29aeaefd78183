//! Per-request deadlines kept by one background thread instead of a tokio timer each.
//!
//! With a tokio timer pending, the runtime parks with a timed sleep, and arming the kernel's
//! timer on every park is expensive on virtual machines (measured: `docs/benchmarks.md`). Here
//! a request registers its deadline in a shared list; one thread, started on first use, sleeps
//! until the earliest deadline still waited on, marks the expired ones and wakes their tasks,
//! so the runtime's own parks stay untimed. Finished requests drop their slot; the thread
//! forgets them at its next pass. Deadlines follow the real clock (not tokio's paused clock)
//! and fire within about a millisecond.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// One request's deadline, shared with the watch thread.
#[derive(Debug)]
pub(crate) struct Slot {
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

/// The deadlines being watched, and the thread's wake-up call.
struct Watch {
    slots: Mutex<Vec<Weak<Slot>>>,
    added: Condvar,
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
        slots: Mutex::new(Vec::new()),
        added: Condvar::new(),
    });
    let watched = watch.clone();
    std::thread::Builder::new()
        .name("redlock-deadlines".into())
        .spawn(move || run(&watched))
        .ok()
        .map(|_| watch)
});

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run(watch: &Watch) {
    let mut slots = lock(&watch.slots);
    loop {
        if slots.is_empty() {
            slots = watch
                .added
                .wait(slots)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        slots.retain(|weak| {
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
        if let Some(next) = next {
            let wait = next.saturating_duration_since(now).max(GRAIN);
            slots = watch
                .added
                .wait_timeout(slots, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// `future`, failing with `Err(Elapsed)` if it is not done within `timeout`.
pub(crate) fn bounded<F: Future + Unpin>(timeout: Duration, future: F) -> Bounded<F> {
    let Some(watch) = WATCH.as_ref() else {
        return Bounded::Timer(Box::pin(tokio::time::timeout(timeout, future)));
    };
    let slot = Arc::new(Slot {
        at: Instant::now() + timeout,
        fired: AtomicBool::new(false),
        waker: Mutex::new(None),
    });
    let mut slots = lock(&watch.slots);
    // Wake the thread when it sleeps with nothing to watch, and now and then to forget the
    // finished requests, which otherwise pile up until its next deadline.
    let wake = slots.is_empty() || slots.len() % PRUNE_EVERY == 0;
    slots.push(Arc::downgrade(&slot));
    drop(slots);
    if wake {
        watch.added.notify_one();
    }
    Bounded::Watched { future, slot }
}

/// The deadline passed before the request was done.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// See [`bounded`].
#[derive(Debug)]
pub(crate) enum Bounded<F> {
    Watched {
        future: F,
        slot: Arc<Slot>,
    },
    /// No watch thread: a tokio timer.
    Timer(Pin<Box<tokio::time::Timeout<F>>>),
}

impl<F: Future + Unpin> Future for Bounded<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Bounded::Timer(t) => t.as_mut().poll(cx).map(|r| r.map_err(|_| Elapsed)),
            Bounded::Watched { future, slot } => {
                if let Poll::Ready(out) = Pin::new(future).poll(cx) {
                    return Poll::Ready(Ok(out));
                }
                {
                    let mut waker = lock(&slot.waker);
                    match &*waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                }
                // Checked after the waker is in place, so that a deadline firing in between is
                // seen.
                if slot.fired.load(Ordering::Acquire) {
                    Poll::Ready(Err(Elapsed))
                } else {
                    Poll::Pending
                }
            }
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

    /// Awaits every future in turn (they run concurrently: each was registered when made).
    async fn await_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut outs = Vec::with_capacity(futures.len());
        for f in futures {
            outs.push(f.await);
        }
        outs
    }
}
