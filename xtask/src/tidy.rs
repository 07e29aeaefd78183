//! `cargo xtask tidy`: the house rules that a reader relies on, checked over the repository's
//! files: every Rust file opens with its module docs (`//!`, or a crate's README pulled in as
//! its docs); nothing is hidden from the docs; nothing points at files outside the repository;
//! code comments hold no measured figures (those belong in `docs/benchmarks.md`, beside the
//! command that measured them).

use std::path::{Path, PathBuf};

/// Folders that hold no sources of ours.
const SKIPPED: &[&str] = &["target", ".git", "node_modules"];

/// What a file may not contain, with why. Spelt in two pieces so that this file passes.
fn forbidden() -> Vec<(String, &'static str)> {
    vec![
        (
            format!("#[doc({})]", "hidden"),
            "hides a public item from the docs: make it private or document it",
        ),
        (
            format!("../{}", "shared"),
            "points outside the repository: bring what is needed into docs/",
        ),
        (
            format!("{}.md", "DESIGN"),
            "names a design file that is not in the repository: point at docs/design.md",
        ),
        (
            format!("{}.md", "STYLE"),
            "names a style file that is not in the repository",
        ),
    ]
}

/// Runs the checks over the repository at `root`; one line per breach.
pub(crate) fn check(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    let rules = forbidden();
    let mut breaches = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        breaches.extend(check_file(&name, &text, &rules));
    }
    breaches
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                walk(&path, out);
            }
        } else if [".rs", ".md", ".toml", ".sh"]
            .iter()
            .any(|ext| name.ends_with(ext))
            || name == "run"
        {
            out.push(path);
        }
    }
}

/// The breaches in one file, `name` relative to the root.
fn check_file(name: &str, text: &str, rules: &[(String, &'static str)]) -> Vec<String> {
    let mut breaches = Vec::new();
    let rust = name.ends_with(".rs");
    if rust {
        let first = text.lines().next().unwrap_or("");
        if !(first.starts_with("//!") || first.starts_with("#![doc = include_str!(")) {
            breaches.push(format!(
                "{name}:1: a Rust file opens with its module docs (`//! …`)"
            ));
        }
    }
    for (n, line) in text.lines().enumerate() {
        for (needle, why) in rules {
            if line.contains(needle.as_str()) {
                breaches.push(format!("{name}:{}: `{needle}` {why}", n + 1));
            }
        }
        if rust
            && let Some(comment) = comment_of(line)
            && has_figure(comment)
        {
            breaches.push(format!(
                "{name}:{}: a measured figure in a comment; it belongs in docs/benchmarks.md: {}",
                n + 1,
                comment.trim()
            ));
        }
    }
    breaches
}

/// The comment part of a line of Rust, if it has one: from the first `//` outside a string
/// (a rough cut that counts the quotes before it).
fn comment_of(line: &str) -> Option<&str> {
    line.match_indices("//")
        .map(|(i, _)| i)
        .find(|&i| line[..i].matches('"').count() % 2 == 0)
        .map(|i| &line[i + 2..])
}

/// Whether `comment` states a measurement: a time in nanoseconds or microseconds, or a ratio
/// or percentage said to be faster, slower or cheaper.
fn has_figure(comment: &str) -> bool {
    let text = comment.to_lowercase();
    let chars: Vec<char> = text.chars().collect();
    let compare = [
        "faster", "slower", "cheaper", "dearer", "overhead", "regress",
    ]
    .iter()
    .any(|w| text.contains(w));
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == ',') {
            i += 1;
        }
        let mut j = i;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        let unit: String = chars[j..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '%' || **c == '×' || **c == 'µ')
            .collect();
        match unit.as_str() {
            "ns" | "µs" | "us" => return true,
            "%" | "x" | "×" if compare => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaches(name: &str, text: &str) -> Vec<String> {
        check_file(name, text, &forbidden())
    }

    #[test]
    fn the_repository_keeps_the_house_rules() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root");
        let found = check(root);
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn a_rust_file_without_module_docs_is_a_breach() {
        assert_eq!(breaches("a.rs", "use std::io;\n").len(), 1);
        assert!(breaches("a.rs", "//! What it is.\nuse std::io;\n").is_empty());
        assert!(breaches("lib.rs", "#![doc = include_str!(\"../README.md\")]\n").is_empty());
    }

    #[test]
    fn hidden_items_and_outside_files_are_breaches() {
        let hidden = format!("//! x\n#[doc({})]\npub fn f() {{}}\n", "hidden");
        assert_eq!(breaches("a.rs", &hidden).len(), 1);
        let outside = format!("see ../{}/notes for the rules", "shared");
        assert_eq!(breaches("docs/a.md", &outside).len(), 1);
        let design = format!("as {}.md says", "DESIGN");
        assert_eq!(breaches("README.md", &design).len(), 1);
    }

    #[test]
    fn measured_figures_in_comments_are_breaches_and_units_of_settings_are_not() {
        for bad in [
            "//! x\n// the attempt takes 850 ns here\n",
            "//! x\n/// 3.2 µs per request on this machine\n",
            "//! x\n// 12% faster than before\n",
            "//! x\n// about 1.4x slower with TLS\n",
        ] {
            assert_eq!(breaches("a.rs", bad).len(), 1, "{bad}");
        }
        for good in [
            "//! x\n/// The timeout (default 50 ms for a 10 s ttl).\n",
            "//! x\n/// A clock 0.5% fast, within the 1% drift factor.\n",
            "//! x\n// start µs and end µs, from the state file\n",
            "//! x\nlet t = 5; // 5 ms\n",
        ] {
            assert!(breaches("a.rs", good).is_empty(), "{good}");
        }
    }
}
