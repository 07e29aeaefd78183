//! Quorum counting, the per-master record of an acquire round, and fence selection. Pure: no
//! I/O, no clocks.

use redlock_single::MasterErrorKind;

use crate::error::Cause;
use crate::round::Settles;

/// The quorum of `masters`: a strict majority, `N/2 + 1`.
pub(crate) fn quorum(masters: usize) -> usize {
    masters / 2 + 1
}

/// Where a round of requests to the masters stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not decided: more answers are needed.
    Pending,
    /// A quorum said yes.
    Reached,
    /// A quorum can no longer be reached, whatever the missing answers say.
    Impossible,
}

/// The count of answers in one round (acquire, raise, extend or release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    masters: usize,
    quorum: usize,
    yes: usize,
    refused: usize,
    failed: usize,
}

impl Tally {
    /// A round over `masters` masters with the usual quorum.
    pub(crate) fn new(masters: usize) -> Tally {
        Tally::with_quorum(masters, quorum(masters))
    }

    /// A round that needs `quorum` yeses out of `masters`.
    pub(crate) fn with_quorum(masters: usize, quorum: usize) -> Tally {
        Tally {
            masters,
            quorum,
            yes: 0,
            refused: 0,
            failed: 0,
        }
    }

    /// Counts a yes.
    pub(crate) fn yes(&mut self) {
        self.yes += 1;
    }

    /// Counts a refusal (held by someone else, or our token is gone).
    pub(crate) fn refused(&mut self) {
        self.refused += 1;
    }

    /// Counts a master that failed or may not vote.
    pub(crate) fn failed(&mut self) {
        self.failed += 1;
    }

    /// How many masters have not answered.
    pub(crate) fn pending(&self) -> usize {
        self.masters
            .saturating_sub(self.yes + self.refused + self.failed)
    }

    /// Decided as soon as the outcome is known, both ways: never waits for the slowest master
    /// when the answer is already clear, and never hangs on a split vote of an even N.
    pub(crate) fn verdict(&self) -> Verdict {
        if self.yes >= self.quorum {
            Verdict::Reached
        } else if self.yes + self.pending() < self.quorum {
            Verdict::Impossible
        } else {
            Verdict::Pending
        }
    }

    /// Whether refusals alone rule out a quorum (the lock is held elsewhere, whatever the
    /// failed masters would have said).
    pub(crate) fn refusals_decide(&self) -> bool {
        self.masters - self.refused < self.quorum
    }

    /// The yes count.
    pub(crate) fn yeses(&self) -> usize {
        self.yes
    }

    /// The refusal count.
    pub(crate) fn refusals(&self) -> usize {
        self.refused
    }
}

/// One master's part in an acquire round, as far as the attempt knows it.
#[derive(Debug)]
pub(crate) enum Vote<C> {
    /// Not answered (yet).
    Pending,
    /// Granted, with its counter, over this connection.
    Yes(u64, C),
    /// Held by someone else.
    No,
    /// It does not count, for this cause.
    Failed(Cause),
    /// The round was settled before it was asked.
    NotAsked,
}

/// The record of one acquire round: each master's vote, the order the answers came in, and
/// their tally. What the attempt knows of every master, in one place.
#[derive(Debug)]
pub(crate) struct Ballot<C> {
    votes: Vec<Vote<C>>,
    /// The masters in the order they answered.
    order: Vec<usize>,
    tally: Tally,
}

impl<C> Ballot<C> {
    /// A round over `masters` masters with the usual quorum, nobody answered yet.
    pub(crate) fn new(masters: usize) -> Ballot<C> {
        Ballot {
            votes: (0..masters).map(|_| Vote::Pending).collect(),
            order: Vec::with_capacity(masters),
            tally: Tally::new(masters),
        }
    }

    /// Records master `i`'s answer (once; a second answer of the same master is ignored, as is
    /// a `Pending`).
    pub(crate) fn record(&mut self, i: usize, vote: Vote<C>) {
        if !matches!(self.votes[i], Vote::Pending) {
            return;
        }
        match &vote {
            Vote::Pending => return,
            Vote::Yes(..) => self.tally.yes(),
            Vote::No => self.tally.refused(),
            Vote::Failed(_) | Vote::NotAsked => self.tally.failed(),
        }
        self.votes[i] = vote;
        self.order.push(i);
    }

    /// Where the round stands.
    pub(crate) fn verdict(&self) -> Verdict {
        self.tally.verdict()
    }

    /// The count of the answers.
    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The masters that have not answered, in order.
    pub(crate) fn unanswered(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.votes.len()).filter(|&i| matches!(self.votes[i], Vote::Pending))
    }

    /// The masters that said yes, with their counters, in the order they answered.
    pub(crate) fn yes(&self) -> Vec<(usize, u64)> {
        self.order
            .iter()
            .filter_map(|&i| match self.votes[i] {
                Vote::Yes(counter, _) => Some((i, counter)),
                _ => None,
            })
            .collect()
    }

    /// The connection over which master `i` said yes.
    pub(crate) fn conn(&self, i: usize) -> Option<&C> {
        match &self.votes[i] {
            Vote::Yes(_, conn) => Some(conn),
            _ => None,
        }
    }

    /// How many masters failed because our key holds data of another type there.
    pub(crate) fn wrong_type(&self) -> usize {
        self.votes
            .iter()
            .filter(|v| {
                matches!(v, Vote::Failed(Cause::Failed(e))
                    if matches!(e.kind(), MasterErrorKind::WrongType { .. }))
            })
            .count()
    }

    /// Why the masters that answered did not count, in the order they answered (a no is
    /// [`Cause::Refused`]; masters not asked are left out); then, with `unanswered`, each master
    /// still out, as [`Cause::NoAnswer`].
    pub(crate) fn failures(&self, unanswered: bool) -> Vec<(usize, Cause)> {
        let answered = self.order.iter().filter_map(|&i| match &self.votes[i] {
            Vote::No => Some((i, Cause::Refused)),
            Vote::Failed(cause) => Some((i, cause.clone())),
            _ => None,
        });
        let out = self
            .unanswered()
            .filter(|_| unanswered)
            .map(|i| (i, Cause::NoAnswer));
        answered.chain(out).collect()
    }
}

/// How to settle the fencing token after a quorum said yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FencePlan {
    /// The token: the largest counter any yes-master returned.
    pub fence: u64,
    /// How many yes-masters already hold a counter equal to it.
    pub at_fence: usize,
    /// The yes-masters (by index) whose counter is below it and must be raised, if `at_fence`
    /// falls short of the quorum. Empty when no raise round is needed.
    pub to_raise: Vec<usize>,
}

/// Chooses the fencing token from the counters the yes-masters returned, as `(index, counter)`.
///
/// The token is the largest counter. A master that returned it holds `counter ≥ token` under
/// our key. If fewer than `quorum` do, the others are raised to the token, and the acquisition
/// stands only when a quorum holds `counter ≥ token` under our key (see `docs/safety.md`).
pub(crate) fn plan_fence(yes: &[(usize, u64)], quorum: usize) -> FencePlan {
    let fence = yes.iter().map(|&(_, c)| c).max().unwrap_or(0);
    let at_fence = yes.iter().filter(|&&(_, c)| c == fence).count();
    let to_raise = if at_fence >= quorum {
        Vec::new()
    } else {
        yes.iter()
            .filter(|&&(_, c)| c < fence)
            .map(|&(i, _)| i)
            .collect()
    };
    FencePlan {
        fence,
        at_fence,
        to_raise,
    }
}

impl Settles for Tally {
    fn verdict(&self) -> Verdict {
        Tally::verdict(self)
    }
}

impl<C> Settles for Ballot<C> {
    fn verdict(&self) -> Verdict {
        Ballot::verdict(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quorums() {
        assert_eq!([1, 2, 3, 4, 5, 6, 7].map(quorum), [1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn settles_early_both_ways() {
        let mut t = Tally::new(5);
        t.yes();
        t.yes();
        assert_eq!(t.verdict(), Verdict::Pending);
        t.yes();
        assert_eq!(t.verdict(), Verdict::Reached, "two masters still out");
        let mut t = Tally::new(5);
        t.refused();
        t.failed();
        assert_eq!(t.verdict(), Verdict::Pending);
        t.refused();
        assert_eq!(t.verdict(), Verdict::Impossible, "two masters still out");
        assert!(!t.refusals_decide());
        t.refused();
        assert!(t.refusals_decide());
    }

    #[test]
    fn an_even_split_is_decided() {
        let mut t = Tally::new(4);
        t.yes();
        t.yes();
        t.refused();
        assert_eq!(t.verdict(), Verdict::Pending);
        t.refused();
        assert_eq!(t.verdict(), Verdict::Impossible);
    }

    #[test]
    fn steady_state_needs_no_raise() {
        let plan = plan_fence(&[(0, 7), (1, 7), (2, 7)], 3);
        assert_eq!(
            plan,
            FencePlan {
                fence: 7,
                at_fence: 3,
                to_raise: vec![]
            }
        );
        let plan = plan_fence(&[(0, 7), (2, 9), (4, 3)], 3);
        assert_eq!(
            plan,
            FencePlan {
                fence: 9,
                at_fence: 1,
                to_raise: vec![0, 4]
            }
        );
    }

    proptest! {
        #[test]
        fn verdict_matches_the_definition(n in 1usize..9, answers in proptest::collection::vec(0u8..3, 0..9)) {
            let mut t = Tally::new(n);
            let (mut yes, mut other) = (0, 0);
            for a in answers.into_iter().take(n) {
                match a { 0 => { t.yes(); yes += 1 } 1 => { t.refused(); other += 1 } _ => { t.failed(); other += 1 } }
                let q = n / 2 + 1;
                let expected = if yes >= q { Verdict::Reached }
                    else if yes + (n - yes - other) < q { Verdict::Impossible }
                    else { Verdict::Pending };
                prop_assert_eq!(t.verdict(), expected);
            }
        }

        #[test]
        fn a_ballot_is_reached_exactly_when_a_quorum_said_yes_and_names_every_other_master(
            n in 1usize..9,
            answers in proptest::collection::vec((0usize..9, 0u8..4), 0..12),
        ) {
            let mut b: Ballot<()> = Ballot::new(n);
            let mut seen = Vec::new();
            for (i, a) in answers {
                let i = i % n;
                if b.verdict() != Verdict::Pending {
                    break;
                }
                b.record(i, match a {
                    0 => Vote::Yes(i as u64, ()),
                    1 => Vote::No,
                    2 => Vote::Failed(Cause::NoAnswer),
                    _ => Vote::NotAsked,
                });
                if !seen.iter().any(|&(j, _)| j == i) {
                    seen.push((i, a));
                }
            }
            let yes: Vec<usize> = seen.iter().filter(|&&(_, a)| a == 0).map(|&(i, _)| i).collect();
            prop_assert_eq!(b.verdict() == Verdict::Reached, yes.len() >= quorum(n));
            prop_assert_eq!(b.yes().iter().map(|&(i, _)| i).collect::<Vec<_>>(), yes.clone());
            for &i in &yes {
                prop_assert!(b.conn(i).is_some());
            }
            // Every master is a yes, a master not asked, or named in the failures, once.
            let failures = b.failures(true);
            let mut named: Vec<usize> = failures.iter().map(|&(i, _)| i).collect();
            named.extend(&yes);
            named.extend(seen.iter().filter(|&&(_, a)| a == 3).map(|&(i, _)| i));
            named.sort_unstable();
            prop_assert_eq!(named, (0..n).collect::<Vec<_>>());
            // In the order they answered, then those still out.
            let answered: Vec<usize> = seen.iter().filter(|&&(_, a)| a == 1 || a == 2).map(|&(i, _)| i).collect();
            let out: Vec<usize> = b.unanswered().collect();
            prop_assert_eq!(failures.iter().map(|&(i, _)| i).collect::<Vec<_>>(),
                answered.iter().chain(&out).copied().collect::<Vec<_>>());
        }

        #[test]
        fn fence_is_the_max_and_raise_covers_the_rest(counters in proptest::collection::vec(0u64..20, 1..7), q in 1usize..7) {
            let yes: Vec<(usize, u64)> = counters.iter().copied().enumerate().collect();
            let plan = plan_fence(&yes, q);
            prop_assert_eq!(plan.fence, *counters.iter().max().unwrap());
            if plan.at_fence < q {
                prop_assert_eq!(plan.at_fence + plan.to_raise.len(), counters.len());
            } else {
                prop_assert!(plan.to_raise.is_empty());
            }
        }
    }
}
