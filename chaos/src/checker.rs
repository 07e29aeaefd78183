//! The checks of a campaign's history: pure functions of what was recorded.
//!
//! - [`fencing`]: tokens are unique per resource, and a section that acquired after another
//!   ended its acquisition holds a larger token: fences strictly increase in real-time order.
//! - [`register`]: the fenced register never accepted a token lower than one it had accepted.
//! - [`overlaps`]: no two sections of a resource overlap within their validity windows (from
//!   the moment the lock was had to the earlier of the section's end and the validity's end):
//!   mutual exclusion, checked when every fault stayed inside the assumptions.
//! - [`longest_gap`]: the longest time without a section completing, for liveness.

use std::collections::{BTreeMap, HashMap};

use crate::history::{RegisterEntry, Section};

/// A broken promise: what, and the sections (indices into the history) involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which check.
    pub check: &'static str,
    /// What happened, for a person.
    pub what: String,
    /// The sections involved.
    pub sections: Vec<usize>,
}

fn by_resource(sections: &[Section]) -> BTreeMap<&str, Vec<usize>> {
    let mut map: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in sections.iter().enumerate() {
        map.entry(s.resource.as_str()).or_default().push(i);
    }
    map
}

/// Fencing: unique tokens per resource, and for sections `a`, `b` of a resource with
/// `a.acquire_end < b.acquire_start`, `a.token < b.token`.
pub fn fencing(sections: &[Section]) -> Vec<Violation> {
    let mut out = Vec::new();
    for (resource, idx) in by_resource(sections) {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for &i in &idx {
            if let Some(&j) = seen.get(&sections[i].token) {
                out.push(Violation {
                    check: "fencing",
                    what: format!(
                        "{resource}: token {} given to two sections",
                        sections[i].token
                    ),
                    sections: vec![j, i],
                });
            } else {
                seen.insert(sections[i].token, i);
            }
        }
        // Sweep: sections by the end of their acquisition; for each section by the start of
        // its acquisition, the largest token of those acquired strictly before it began.
        let mut ended = idx.clone();
        ended.sort_by_key(|&i| sections[i].acquire_end);
        let mut started = idx.clone();
        started.sort_by_key(|&i| sections[i].acquire_start);
        let mut best: Option<usize> = None;
        let mut k = 0;
        for &b in &started {
            while k < ended.len() && sections[ended[k]].acquire_end < sections[b].acquire_start {
                let a = ended[k];
                if best.is_none_or(|m| sections[a].token > sections[m].token) {
                    best = Some(a);
                }
                k += 1;
            }
            if let Some(a) = best {
                if sections[a].token >= sections[b].token {
                    out.push(Violation {
                        check: "fencing",
                        what: format!(
                            "{resource}: token {} after token {} (c{} acquired before c{} began to)",
                            sections[b].token, sections[a].token, sections[a].client, sections[b].client
                        ),
                        sections: vec![a, b],
                    });
                }
            }
        }
    }
    out
}

/// The register: per resource, every accepted token at least every token accepted before it
/// (a holder writes twice with its own token).
pub fn register(log: &[RegisterEntry]) -> Vec<Violation> {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::new();
    for e in log.iter().filter(|e| e.accepted) {
        let before = last.entry(e.resource.as_str()).or_insert(0);
        if e.token < *before {
            out.push(Violation {
                check: "register",
                what: format!(
                    "{}: the register accepted token {} after {}",
                    e.resource, e.token, before
                ),
                sections: Vec::new(),
            });
        }
        *before = (*before).max(e.token);
    }
    out
}

/// The validity window of a section: from when the lock was had to the earlier of the end of
/// the section and of its validity.
pub fn window(s: &Section) -> (u64, u64) {
    (s.acquire_end, s.section_end.min(s.validity_end))
}

/// Mutual exclusion: no two sections of a resource whose validity windows overlap.
pub fn overlaps(sections: &[Section]) -> Vec<Violation> {
    let mut out = Vec::new();
    for (resource, mut idx) in by_resource(sections) {
        idx.sort_by_key(|&i| window(&sections[i]).0);
        // The section whose window reaches furthest so far.
        let mut reach: Option<usize> = None;
        for &b in &idx {
            let (start, end) = window(&sections[b]);
            if let Some(a) = reach {
                if start < window(&sections[a]).1 {
                    out.push(Violation {
                        check: "mutual exclusion",
                        what: format!(
                            "{resource}: c{} (token {}) had the lock while c{} (token {}) still held it",
                            sections[b].client,
                            sections[b].token,
                            sections[a].client,
                            sections[a].token
                        ),
                        sections: vec![a, b],
                    });
                }
            }
            if reach.is_none_or(|a| end > window(&sections[a]).1) {
                reach = Some(b);
            }
        }
    }
    out
}

/// The longest time in `[from, to]` without a section ending, in microseconds.
pub fn longest_gap(sections: &[Section], from: u64, to: u64) -> u64 {
    longest_healthy_gap(sections, from, to, &[])
}

/// The longest time in `[from, to]` without a section ending, counting only the time outside
/// `unhealthy` (spans, in microseconds, when more than a minority of masters was faulty, so that
/// no quorum could be counted on): the liveness figure under the assumptions.
pub fn longest_healthy_gap(
    sections: &[Section],
    from: u64,
    to: u64,
    unhealthy: &[(u64, u64)],
) -> u64 {
    let mut spans = unhealthy.to_vec();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut ends: Vec<u64> = sections
        .iter()
        .map(|s| s.section_end)
        .filter(|&t| t >= from && t <= to)
        .collect();
    ends.sort_unstable();
    let mut prev = from;
    let mut gap = 0;
    for t in ends.into_iter().chain(std::iter::once(to)) {
        let covered: u64 = merged
            .iter()
            .map(|&(a, b)| b.min(t).saturating_sub(a.max(prev)))
            .sum();
        gap = gap.max((t - prev).saturating_sub(covered));
        prev = t;
    }
    gap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_without_a_quorum_does_not_count_towards_the_healthy_gap() {
        let s = |end| section(1, end, (end - 10, end - 5), end, 100);
        let sections = vec![s(100), s(1_000), s(1_100)];
        assert_eq!(longest_gap(&sections, 0, 1_200), 900);
        // 100..1000 is the longest gap; 700 of it without a quorum (two overlapping spans).
        let unhealthy = [(200, 600), (500, 900)];
        assert_eq!(longest_healthy_gap(&sections, 0, 1_200, &unhealthy), 200);
        assert_eq!(longest_healthy_gap(&sections, 0, 1_200, &[]), 900);
        assert_eq!(longest_healthy_gap(&sections, 0, 1_200, &[(0, 2_000)]), 0);
    }

    fn section(client: u32, token: u64, acquire: (u64, u64), end: u64, valid_for: u64) -> Section {
        Section {
            client,
            ttl_ms: 1000,
            resource: "r".into(),
            token,
            acquire_start: acquire.0,
            acquire_end: acquire.1,
            validity_end: acquire.1 + valid_for,
            section_end: end,
            released: Some(true),
            exit: None,
            writes: Vec::new(),
        }
    }

    #[test]
    fn increasing_tokens_in_real_time_order_pass() {
        let h = vec![
            section(1, 10, (0, 5), 50, 900),
            section(2, 11, (60, 65), 100, 900),
            section(3, 12, (110, 120), 150, 900),
        ];
        assert!(fencing(&h).is_empty());
        assert!(overlaps(&h).is_empty());
    }

    #[test]
    fn a_token_that_goes_back_fails_fencing() {
        let h = vec![
            section(1, 10, (0, 5), 50, 900),
            section(2, 7, (60, 65), 100, 900),
        ];
        let v = fencing(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].sections, vec![0, 1]);
        // Equal tokens too: twice, as a duplicate and as not increasing.
        let h = vec![
            section(1, 10, (0, 5), 50, 900),
            section(2, 10, (60, 65), 100, 900),
        ];
        assert_eq!(fencing(&h).len(), 2);
    }

    #[test]
    fn a_lower_token_far_later_fails_fencing_even_with_sections_between() {
        let h = vec![
            section(1, 50, (0, 5), 10, 900),
            section(2, 51, (20, 25), 30, 900),
            section(3, 52, (40, 45), 50, 900),
            section(4, 49, (60, 65), 70, 900),
        ];
        let v = fencing(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].sections, vec![2, 3]);
    }

    #[test]
    fn concurrent_acquisitions_are_not_ordered_by_fencing() {
        // b began to acquire before a had finished: either order of tokens is allowed.
        let h = vec![
            section(1, 11, (0, 10), 50, 900),
            section(2, 10, (5, 60), 100, 900),
        ];
        assert!(fencing(&h).is_empty());
    }

    #[test]
    fn overlapping_validity_windows_fail_mutual_exclusion() {
        let h = vec![
            section(1, 10, (0, 5), 500, 900),
            section(2, 11, (60, 300), 700, 900),
        ];
        let v = overlaps(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].check, "mutual exclusion");
    }

    #[test]
    fn a_holder_paused_past_its_validity_does_not_fail_mutual_exclusion() {
        // c1 held on (paused) until 5000, but its validity ended at 905.
        let h = vec![
            section(1, 10, (0, 5), 5000, 900),
            section(2, 11, (950, 1000), 1200, 900),
        ];
        assert!(overlaps(&h).is_empty());
        assert!(fencing(&h).is_empty());
    }

    #[test]
    fn an_overlap_behind_a_long_window_is_found() {
        let h = vec![
            section(1, 10, (0, 5), 1000, 2000),
            section(2, 11, (100, 110), 120, 900),
            section(3, 12, (130, 140), 150, 900),
        ];
        assert_eq!(overlaps(&h).len(), 2);
    }

    #[test]
    fn the_register_accepting_a_lower_token_fails() {
        let e = |token, accepted| RegisterEntry {
            resource: "r".into(),
            token,
            accepted,
        };
        assert!(register(&[e(5, true), e(5, true), e(4, false), e(6, true)]).is_empty());
        assert_eq!(register(&[e(5, true), e(4, true)]).len(), 1);
    }

    #[test]
    fn the_longest_gap_counts_the_edges() {
        let h = vec![
            section(1, 1, (0, 1), 100, 900),
            section(2, 2, (0, 1), 400, 900),
        ];
        assert_eq!(longest_gap(&h, 0, 500), 300);
        assert_eq!(longest_gap(&[], 0, 500), 500);
    }
}
