//! What a campaign found, as the table it prints and writes to `table.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The figures of one campaign.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) seed: u64,
    pub(crate) mode: String,
    pub(crate) broken: String,
    pub(crate) masters: usize,
    /// Each client's ttl (ms).
    pub(crate) ttls: Vec<u64>,
    pub(crate) secs: f64,
    /// How many faults of each kind were injected.
    pub(crate) injected: BTreeMap<String, usize>,
    /// The scheduled kinds that never were.
    pub(crate) missing: Vec<&'static str>,
    pub(crate) sections: usize,
    pub(crate) accepted: usize,
    pub(crate) rejected: usize,
    pub(crate) fencing_violations: usize,
    pub(crate) overlaps: usize,
    /// Whether every enabled fault stays inside the assumptions (so overlaps count).
    pub(crate) inside_only: bool,
    pub(crate) leaked: usize,
    pub(crate) restored: usize,
    pub(crate) left_behind: usize,
    pub(crate) panics: usize,
    pub(crate) failed_clients: usize,
    /// The longest time without a completed section, and the same counting only the time with
    /// a healthy quorum (µs).
    pub(crate) gap: u64,
    pub(crate) healthy_gap: u64,
    /// How long more than a minority of masters was faulty (µs).
    pub(crate) no_quorum: u64,
}

impl Report {
    /// The table, in Markdown.
    pub(crate) fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "| {:<38} | {:>14} |", "redlock chaos", "");
        let _ = writeln!(t, "|{}|{}|", "-".repeat(40), "-".repeat(16));
        for (k, v) in self.rows() {
            let _ = writeln!(t, "| {k:<38} | {v:>14} |");
        }
        t
    }

    fn rows(&self) -> Vec<(String, String)> {
        let secs = |us: u64, digits: usize| format!("{:.*} s", digits, us as f64 / 1e6);
        let mut rows = vec![
            ("seed".into(), self.seed.to_string()),
            ("mode".into(), self.mode.clone()),
            ("broken on purpose".into(), self.broken.clone()),
            ("masters".into(), self.masters.to_string()),
            (
                "clients (ttls ms)".into(),
                format!("{} ({})", self.ttls.len(), dedup(&self.ttls)),
            ),
            ("duration".into(), format!("{:.1} s", self.secs)),
        ];
        for (k, v) in &self.injected {
            rows.push((format!("faults: {k}"), v.to_string()));
        }
        let missing = if self.missing.is_empty() {
            "none".to_owned()
        } else {
            self.missing.join(",")
        };
        let overlaps = if self.inside_only {
            self.overlaps.to_string()
        } else {
            format!("n/a ({} seen)", self.overlaps)
        };
        let throughput = self.sections as f64 / self.secs.max(0.001);
        rows.extend([
            ("fault kinds never injected".into(), missing),
            ("sections completed".into(), self.sections.to_string()),
            (
                "register writes accepted / rejected".into(),
                format!("{} / {}", self.accepted, self.rejected),
            ),
            (
                "fencing violations".into(),
                self.fencing_violations.to_string(),
            ),
            ("overlaps under the assumptions".into(), overlaps),
            ("keys leaked".into(), self.leaked.to_string()),
            (
                "keys restored by AOF restarts".into(),
                self.restored.to_string(),
            ),
            ("processes left behind".into(), self.left_behind.to_string()),
            (
                "panics / failed clients".into(),
                format!("{} / {}", self.panics, self.failed_clients),
            ),
            ("throughput".into(), format!("{throughput:.1} sections/s")),
            ("longest gap".into(), secs(self.gap, 2)),
            (
                "time without a healthy quorum".into(),
                secs(self.no_quorum, 1),
            ),
            (
                "longest gap with a healthy quorum".into(),
                secs(self.healthy_gap, 2),
            ),
        ]);
        rows
    }
}

/// The distinct ttls, ascending.
fn dedup(ttls: &[u64]) -> String {
    let mut v = ttls.to_vec();
    v.sort_unstable();
    v.dedup();
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(inside_only: bool) -> Report {
        Report {
            seed: 7,
            mode: "lib".into(),
            broken: "none".into(),
            masters: 5,
            ttls: vec![4_000, 1_000, 4_000],
            secs: 10.0,
            injected: BTreeMap::from([("pause".to_owned(), 3)]),
            missing: vec!["net"],
            sections: 25,
            accepted: 50,
            rejected: 0,
            fencing_violations: 0,
            overlaps: 2,
            inside_only,
            leaked: 0,
            restored: 1,
            left_behind: 0,
            panics: 0,
            failed_clients: 0,
            gap: 1_500_000,
            healthy_gap: 250_000,
            no_quorum: 3_000_000,
        }
    }

    #[test]
    fn the_table_says_each_figure_and_counts_overlaps_only_inside_the_assumptions() {
        let t = report(true).table();
        for line in [
            "| clients (ttls ms)                      |  3 (1000,4000) |",
            "| faults: pause                          |              3 |",
            "| fault kinds never injected             |            net |",
            "| overlaps under the assumptions         |              2 |",
            "| throughput                             | 2.5 sections/s |",
            "| longest gap                            |         1.50 s |",
            "| time without a healthy quorum          |          3.0 s |",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing from\n{t}");
        }
        let t = report(false).table();
        assert!(t.contains("n/a (2 seen)"), "{t}");
    }
}
