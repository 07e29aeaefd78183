//! One attempt to take a quorum lock (the algorithm of `docs/safety.md`): a fresh
//! token; to every master at once, the question whether it may vote (which reads its health
//! on its connection if needed) and then the acquire on that same connection; settled as soon
//! as a quorum said yes or can no longer say yes; validity `ttl − elapsed − drift`; the fencing
//! token as the largest counter, with a raise round only when fewer than a quorum already hold
//! it; on failure or cancellation, release wherever the acquire may have taken the lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redlock_single::background::DropGuard;
use redlock_single::lease::LeaseWriter;
use redlock_single::validity::{drift, validity};
use redlock_single::{Connection, LockKey, Master, Token};
use tokio::time::Instant;

use crate::error::{Cause, Error, Failures};
use crate::guard::Guard;
use crate::shared::Shared;
use crate::tally::{Ballot, Tally, Verdict, Vote, plan_fence};

/// The key and token of one attempt, shared by its requests.
type Lock = Arc<(LockKey, Token)>;

/// What each master has been sent, shared by the attempt, its requests and its undo: one bit
/// per master (the builder allows at most 64).
#[derive(Debug, Default)]
struct Progress {
    /// The acquire went to this master (or was about to).
    sent: AtomicU64,
    /// Its answer was a no: it does not hold our key.
    refused: AtomicU64,
    /// Its answer is drained in the background, which releases it if need be.
    drained: AtomicU64,
    /// The attempt has its outcome: masters not asked yet are not asked.
    settled: AtomicBool,
}

fn bit(i: usize) -> u64 {
    1 << i
}

impl Progress {
    fn mark(flags: &AtomicU64, i: usize, on: bool) {
        if on {
            flags.fetch_or(bit(i), Ordering::AcqRel);
        } else {
            flags.fetch_and(!bit(i), Ordering::AcqRel);
        }
    }

    /// Whether master `i` may hold our key: asked, and neither said no nor left to the drain.
    fn may_hold(&self, i: usize) -> bool {
        let sent = self.sent.load(Ordering::Acquire);
        let settled = self.refused.load(Ordering::Acquire) | self.drained.load(Ordering::Acquire);
        (sent & !settled) & bit(i) != 0
    }
}

/// A master's answer in the acquire round.
enum Answer<C> {
    /// Granted, with its counter, over this connection.
    Yes(u64, C),
    /// Held by someone else.
    No,
    /// It does not count; the connection is there when the acquire was sent on it.
    Failed(Cause, Option<C>),
    /// The attempt was settled before it was asked.
    NotAsked,
}

/// Asks master `i`: may it vote, and if so, the acquire on the connection that may.
async fn ask<M: Master>(
    s: Arc<Shared<M>>,
    lock: Lock,
    progress: Arc<Progress>,
    i: usize,
    timed: bool,
) -> (usize, Answer<M::Conn>) {
    let conn = match s.voters.voter(i).await {
        Ok(conn) => conn,
        Err(why) => return (i, Answer::Failed(why.into(), None)),
    };
    if progress.settled.load(Ordering::Acquire) {
        return (i, Answer::NotAsked);
    }
    Progress::mark(&progress.sent, i, true);
    let sent = timed.then(Instant::now);
    let reply = conn
        .acquire(&lock.0, &lock.1, s.options.ttl, &s.options.meta)
        .await;
    if let Some(sent) = sent {
        tracing::debug!(master = s.voters.master(i).addr(), latency = ?sent.elapsed(),
            answer = ?reply, "acquire");
    }
    let answer = match reply {
        Ok(Some(fence)) => Answer::Yes(fence, conn),
        Ok(None) => Answer::No,
        // Refused before it was sent: it holds nothing of ours.
        Err(e) if e.never_sent() => {
            Progress::mark(&progress.sent, i, false);
            Answer::Failed(Cause::Failed(e), None)
        }
        Err(e) => Answer::Failed(Cause::Failed(e), Some(conn)),
    };
    (i, answer)
}

/// Releases `lock` on `conn` in the background.
fn release_on<M: Master>(s: &Shared<M>, lock: &Lock, conn: M::Conn) {
    let lock = lock.clone();
    s.background().spawn(async move {
        if let Err(e) = conn.release(&lock.0, &lock.1).await {
            tracing::debug!(error = %e,
                "background release failed; the key expires at the end of its ttl");
        }
    });
}

/// Makes one attempt; see the [module docs](self).
pub(crate) async fn attempt<M: Master>(
    s: &Arc<Shared<M>>,
    resource: &str,
    key: &LockKey,
) -> Result<Guard<M>, Error> {
    if s.background().is_closed() {
        return Err(Error::Closed);
    }
    let n = s.n();
    let q = s.quorum();
    let start = Instant::now();
    let lock: Lock = Arc::new((key.clone(), Token::random()));
    let progress = Arc::new(Progress::default());
    // Until the outcome is settled, masters may have granted the lock: if this future is
    // dropped or the attempt fails, release it wherever it may be, behind the acquires.
    let undo = {
        let (s, lock, progress) = (s.clone(), lock.clone(), progress.clone());
        DropGuard::new(move || {
            for i in (0..n).filter(|&i| progress.may_hold(i)) {
                if let Ok(conn) = s.voters.master(i).connection() {
                    release_on(&s, &lock, conn);
                }
            }
        })
    };
    // Per-master latencies are measured only for the debug log.
    let timed = tracing::enabled!(tracing::Level::DEBUG);
    let asks = (0..n).map(|i| ask(s.clone(), lock.clone(), progress.clone(), i, timed));
    let mut round = crate::round::started(asks);
    let mut ballot = Ballot::new(n);
    round
        .settle(&mut ballot, |ballot, (i, answer)| {
            let vote = match answer {
                Answer::Yes(fence, conn) => Vote::Yes(fence, conn),
                Answer::No => {
                    Progress::mark(&progress.refused, i, true);
                    Vote::No
                }
                Answer::Failed(cause, _) => Vote::Failed(cause),
                Answer::NotAsked => Vote::NotAsked,
            };
            ballot.record(i, vote);
        })
        .await;
    progress.settled.store(true, Ordering::Release);
    if ballot.verdict() != Verdict::Reached {
        // Masters still out are not waited for: their answers are drained in the background,
        // and each is released unless its answer is a no. The others that may hold our key are
        // released by `undo`.
        for i in ballot.unanswered() {
            Progress::mark(&progress.drained, i, true);
        }
        if !round.is_empty() {
            let (shared, lock) = (s.clone(), lock.clone());
            s.background().spawn(async move {
                while let Some((_, answer)) = round.next().await {
                    if let Answer::Yes(_, conn) | Answer::Failed(_, Some(conn)) = answer {
                        release_on(&shared, &lock, conn);
                    }
                }
            });
        }
        return Err(refusal(s, resource, &ballot));
    }
    // On success, masters still out are not waited for; their requests run anyway, and the
    // guard's release, sent to every master, follows them.
    drop(round);

    // The fencing token: a raise round only when fewer than a quorum hold the largest.
    let plan = plan_fence(&ballot.yes(), q);
    if !plan.to_raise.is_empty() {
        let raising = plan
            .to_raise
            .iter()
            .filter_map(|&i| ballot.conn(i).cloned());
        let raised = raise(&lock, plan.fence, raising, plan.at_fence, q).await;
        if raised < q {
            tracing::debug!(
                fence = plan.fence,
                raised,
                "fence raise fell short of a quorum"
            );
            return Err(Error::NoQuorum {
                resource: resource.to_owned(),
                needed: q,
                masters: n,
                failures: failures(s, &ballot, false),
            });
        }
    }

    let elapsed = start.elapsed();
    let left = validity(
        s.options.ttl,
        elapsed,
        drift(s.options.ttl, s.options.drift_factor),
    )
    .filter(|left| *left >= s.min_validity);
    let Some(left) = left else {
        tracing::debug!(?elapsed, "granted too late to rely on; releasing");
        return Err(Error::TooSlow {
            resource: resource.to_owned(),
            elapsed,
        });
    };
    undo.disarm();
    tracing::debug!(fence = plan.fence, ?elapsed, validity = ?left, "acquired");
    let lease = LeaseWriter::new(resource.to_owned(), plan.fence, start + left);
    Ok(Guard::new(
        s.clone(),
        lease,
        lock.0.clone(),
        lock.1.clone(),
        start,
    ))
}

/// Raises the counter to `fence` over the connections `to_raise`; returns how many masters
/// hold `counter ≥ fence` under our key (`already` of them did before), stopping once a quorum
/// does or can no longer.
async fn raise<C: Connection>(
    lock: &Lock,
    fence: u64,
    to_raise: impl Iterator<Item = C>,
    already: usize,
    quorum: usize,
) -> usize {
    let raises = to_raise.map(|conn| async move { conn.raise(&lock.0, &lock.1, fence).await });
    let mut round = crate::round::started(raises);
    let mut tally = Tally::with_quorum(already + round.len(), quorum);
    for _ in 0..already {
        tally.yes();
    }
    round
        .settle(&mut tally, |tally, answer| match answer {
            Ok(true) => tally.yes(),
            Ok(false) => tally.refused(),
            Err(_) => tally.failed(),
        })
        .await;
    tally.yeses()
}

/// The masters that did not count in `ballot` (with `unanswered`, those still out too), named.
fn failures<M: Master>(s: &Shared<M>, ballot: &Ballot<M::Conn>, unanswered: bool) -> Failures {
    Failures(
        ballot
            .failures(unanswered)
            .into_iter()
            .map(|(i, cause)| s.failure(i, cause))
            .collect(),
    )
}

/// The error of an attempt whose round did not reach a quorum: held when refusals alone
/// decide it, final when keys of the wrong type do, otherwise no quorum.
fn refusal<M: Master>(s: &Shared<M>, resource: &str, ballot: &Ballot<M::Conn>) -> Error {
    let n = s.n();
    let tally = ballot.tally();
    if tally.refusals_decide() {
        Error::Held {
            resource: resource.to_owned(),
            refused: tally.refusals(),
            masters: n,
        }
    } else if n - ballot.wrong_type() < s.quorum() {
        Error::WrongType {
            resource: resource.to_owned(),
            failures: failures(s, ballot, true),
        }
    } else {
        Error::NoQuorum {
            resource: resource.to_owned(),
            needed: s.quorum(),
            masters: n,
            failures: failures(s, ballot, true),
        }
    }
}
