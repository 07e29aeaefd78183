//! [`Status`]: what every master says of one resource, and whether a quorum holds it; what
//! [`Redlock::status`](crate::Redlock::status) returns and `redlock status` prints.

use redlock_single::{Holder, Inspection};

/// What one master said of the resource.
#[derive(Debug)]
pub struct MasterView {
    /// The master's address.
    pub addr: String,
    /// Its answer: who holds the key, its ttl and the fencing counter; or why it did not answer.
    pub seen: redlock_single::MasterResult<Inspection>,
}

/// Every master's view of one resource, in the order the masters were given.
#[derive(Debug)]
pub struct Status {
    /// The resource asked about.
    pub resource: String,
    /// One view per master.
    pub masters: Vec<MasterView>,
    /// How many masters make a quorum.
    pub quorum: usize,
}

impl Status {
    /// How many masters answered.
    pub fn answered(&self) -> usize {
        self.masters.iter().filter(|m| m.seen.is_ok()).count()
    }

    /// The holder shown by the most masters, and on how many (`None` when no master shows one).
    pub fn holder(&self) -> Option<(&Holder, usize)> {
        let mut best: Option<(&Holder, usize)> = None;
        for h in self.holders() {
            let count = self.holders().filter(|o| o.token == h.token).count();
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((h, count));
            }
        }
        best
    }

    /// On how many masters the most common holder's token is: the lock's hold on the quorum.
    pub fn held_on(&self) -> usize {
        self.holder().map_or(0, |(_, count)| count)
    }

    /// Whether a quorum of masters shows one holder.
    pub fn held_by_quorum(&self) -> bool {
        self.held_on() >= self.quorum
    }

    fn holders(&self) -> impl Iterator<Item = &Holder> {
        self.masters
            .iter()
            .filter_map(|m| m.seen.as_ref().ok()?.holder.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: Option<&str>) -> MasterView {
        MasterView {
            addr: "m".into(),
            seen: Ok(Inspection {
                holder: holder.map(|t| Holder {
                    token: t.into(),
                    meta: String::new(),
                }),
                ttl: None,
                fence: 1,
            }),
        }
    }

    fn status(views: Vec<MasterView>) -> Status {
        let quorum = views.len() / 2 + 1;
        Status {
            resource: "r".into(),
            masters: views,
            quorum,
        }
    }

    #[test]
    fn the_hold_is_the_count_of_the_most_common_token_not_of_all_held_keys() {
        let s = status(vec![
            view(Some("a")),
            view(Some("b")),
            view(Some("a")),
            view(Some("c")),
            view(None),
        ]);
        assert_eq!(s.held_on(), 2);
        assert_eq!(s.holder().map(|(h, _)| h.token.as_str()), Some("a"));
        assert!(!s.held_by_quorum());
        let s = status(vec![view(Some("a")), view(Some("a")), view(None)]);
        assert!(s.held_by_quorum());
    }

    #[test]
    fn masters_that_did_not_answer_count_neither_as_answered_nor_as_holding() {
        let mut views = vec![view(Some("a")), view(Some("a")), view(Some("a"))];
        let timeout = std::time::Duration::from_millis(5);
        let kind = redlock_single::MasterErrorKind::Timeout { timeout };
        views[0].seen = Err(redlock_single::MasterError::new("m", kind));
        let s = status(views);
        assert_eq!(s.answered(), 2);
        assert_eq!(s.held_on(), 2);
        assert!(s.held_by_quorum());
        assert_eq!(status(vec![view(None)]).held_on(), 0);
    }
}
