//! Quorum counting and fence selection for one attempt. Pure: no I/O, no clocks.

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
