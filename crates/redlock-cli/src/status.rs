//! `redlock status`: each master's view of one key, and whether a quorum holds it. The table
//! is printed whatever the masters do; when fewer than a quorum answered, one line on stderr
//! says so and the exit status says why (69, or 77/78 when a master refused us or is
//! misconfigured).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::args::StatusArgs;
use crate::exit::{self, Failure};

/// How long the masters have to connect.
const CONNECT: Duration = Duration::from_secs(3);

pub(crate) async fn run(a: StatusArgs) -> Result<ExitCode, Failure> {
    let key = &a.target.key;
    let locks = a
        .target
        .builder()?
        .restart_guard(false)
        .connect_lazy()
        .await
        .map_err(|e| Failure::of(&e, exit::NOT_ACQUIRED))?;
    // Every master gets the same time to connect; one that fails at once is not waited for.
    let end = Instant::now() + CONNECT;
    for m in locks.masters() {
        let _ = m
            .wait_ready(end.saturating_duration_since(Instant::now()))
            .await;
    }
    let status = locks
        .status(key)
        .await
        .map_err(|e| Failure::of(&e, exit::NOT_ACQUIRED))?;
    locks.close().await;
    let (n, q) = (status.masters.len(), status.quorum);
    let (answered, held_on) = (status.answered(), status.held_on());
    let errors = || status.masters.iter().filter_map(|m| m.seen.as_ref().err());

    if a.json {
        let masters: Vec<_> = status
            .masters
            .iter()
            .map(|m| {
                let seen = m.seen.as_ref().ok();
                let holder = seen.and_then(|i| i.holder.as_ref());
                json!({
                    "addr": m.addr,
                    "answered": seen.is_some(),
                    "error": m.seen.as_ref().err().map(|e| e.reason().to_string()),
                    "held": holder.is_some(),
                    "holder": holder.map(|h| &h.meta),
                    "ttl_ms": seen.and_then(|i| i.ttl).map(|t| t.as_millis()),
                    "fence": seen.map(|i| i.fence),
                })
            })
            .collect();
        let doc = json!({
            "key": key,
            "masters": masters,
            "answered": answered,
            "held_on": held_on,
            "total": n,
            "quorum": q,
            "held": status.held_by_quorum(),
        });
        exit::print(&format!("{doc}\n"));
    } else {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{:<24} {:<8} {:<28} {:>10} {:>8}",
            "master", "answer", "holder", "ttl left", "fence"
        );
        for m in &status.masters {
            let _ = match &m.seen {
                Err(e) => writeln!(text, "{:<24} {:<8} {}", m.addr, "error", e.reason()),
                Ok(i) => writeln!(
                    text,
                    "{:<24} {:<8} {:<28} {:>10} {:>8}",
                    m.addr,
                    "ok",
                    i.holder.as_ref().map_or("-", |h| if h.meta.is_empty() {
                        "(no metadata)"
                    } else {
                        &h.meta
                    }),
                    i.ttl
                        .map_or_else(|| "-".to_owned(), |t| format!("{} ms", t.as_millis())),
                    i.fence,
                ),
            };
        }
        let _ = writeln!(
            text,
            "{key}: held on {held_on} of {n} masters ({}; quorum {q}), {answered} of {n} answered",
            if status.held_by_quorum() {
                "held by a quorum"
            } else {
                "no quorum holds it"
            }
        );
        exit::print(&text);
    }
    if answered < q {
        let code = exit::code_of_masters(errors());
        return Err(Failure::new(
            code,
            format!(
                "only {answered} of {n} masters answered; a quorum is {q}: {}",
                errors()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
