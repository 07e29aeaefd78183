//! The timeline picture of a campaign: one row per client with its sections as bars (coloured
//! by token order within the resource, from blue to red through green), one row per master and
//! per paused client with its faults as shaded spans, and every violation marked in red.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::checker::Violation;
use crate::history::{Fault, Section};

const WIDTH: f64 = 1600.0;
const LEFT: f64 = 70.0;
const ROW: f64 = 18.0;

/// The SVG text for the run from `from` to `to` (microseconds) with `masters` masters.
pub fn timeline(
    sections: &[Section],
    faults: &[Fault],
    violations: &[Violation],
    masters: usize,
    clients: usize,
    (from, to): (u64, u64),
) -> String {
    let span = (to.saturating_sub(from)).max(1) as f64;
    let x = |t: u64| LEFT + (t.saturating_sub(from) as f64 / span) * (WIDTH - LEFT - 10.0);
    let rows = masters + clients;
    let height = 40.0 + ROW * rows as f64 + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="4" y="14">redlock chaos: {} sections, {} faults, {} violations; {:.1} s</text>"#,
        sections.len(),
        faults.len(),
        violations.len(),
        span / 1e6
    );
    let top = |row: usize| 24.0 + ROW * row as f64;
    for m in 0..masters {
        let _ = writeln!(
            svg,
            r##"<text x="4" y="{}">m{m}</text><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>"##,
            top(m) + 12.0,
            WIDTH - 10.0,
            top(m) + ROW,
            top(m) + ROW
        );
    }
    for c in 0..clients {
        let _ = writeln!(
            svg,
            r#"<text x="4" y="{}">c{c}</text>"#,
            top(masters + c) + 12.0
        );
    }
    for f in faults {
        let row = match (f.target.as_bytes().first(), f.target[1..].parse::<usize>()) {
            (Some(b'm'), Ok(i)) if i < masters => i,
            (Some(b'c'), Ok(i)) if i < clients => masters + i,
            _ => continue,
        };
        let colour = if f.inside { "#9ecae1" } else { "#fdae6b" };
        let (x0, x1) = (x(f.start), x(f.end.max(f.start)));
        let _ = writeln!(
            svg,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}" opacity="0.7"><title>{} {}</title></rect>"#,
            top(row) + 1.0,
            (x1 - x0).max(1.0),
            ROW - 2.0,
            f.kind,
            f.target
        );
    }
    // Token order within each resource.
    let mut order: HashMap<&str, Vec<u64>> = HashMap::new();
    for s in sections {
        order.entry(&s.resource).or_default().push(s.token);
    }
    for tokens in order.values_mut() {
        tokens.sort_unstable();
    }
    let bad: std::collections::HashSet<usize> = violations
        .iter()
        .flat_map(|v| v.sections.iter().copied())
        .collect();
    for (i, s) in sections.iter().enumerate() {
        let c = s.client as usize;
        if c >= clients {
            continue;
        }
        let tokens = &order[s.resource.as_str()];
        let rank = tokens.partition_point(|&t| t < s.token) as f64 / tokens.len().max(1) as f64;
        let hue = 240.0 - 150.0 * rank;
        let (x0, x1) = (x(s.acquire_end), x(s.section_end));
        let (fill, stroke) = if bad.contains(&i) {
            ("red".to_owned(), r#" stroke="red" stroke-width="2""#)
        } else {
            (format!("hsl({hue:.0},80%,50%)"), "")
        };
        let _ = writeln!(
            svg,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"{stroke}><title>c{} {} token {}</title></rect>"#,
            top(masters + c) + 3.0,
            (x1 - x0).max(0.5),
            ROW - 6.0,
            s.client,
            s.resource,
            s.token
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="4" y="{}">bars: sections, blue to yellow-green by token; blue spans: faults inside the assumptions, orange: outside; red: a violation</text>"##,
        height - 8.0
    );
    svg.push_str("</svg>\n");
    svg
}
