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

/// One master's answer.
struct Row {
    addr: String,
    error: Option<redlock_single::Error>,
    holder: Option<String>,
    token: Option<String>,
    ttl_ms: Option<u128>,
    fence: Option<u64>,
}

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
    let seen = locks
        .inspect(key)
        .await
        .map_err(|e| Failure::of(&e, exit::NOT_ACQUIRED))?;
    locks.close().await;
    let rows: Vec<Row> = seen
        .into_iter()
        .map(|(addr, r)| match r {
            Ok(i) => Row {
                addr,
                error: None,
                holder: i.holder.as_ref().map(|h| h.meta.clone()),
                token: i.holder.map(|h| h.token),
                ttl_ms: i.ttl.map(|t| t.as_millis()),
                fence: Some(i.fence),
            },
            Err(e) => Row {
                addr,
                error: Some(e),
                holder: None,
                token: None,
                ttl_ms: None,
                fence: None,
            },
        })
        .collect();
    // Held on k masters: the largest number of masters that show the same holder's token.
    let mut tokens: Vec<&str> = rows.iter().filter_map(|r| r.token.as_deref()).collect();
    tokens.sort_unstable();
    let held_on = tokens
        .chunk_by(|a, b| a == b)
        .map(<[&str]>::len)
        .max()
        .unwrap_or(0);
    let (n, q) = (rows.len(), locks.quorum());
    let answered = rows.iter().filter(|r| r.error.is_none()).count();

    if a.json {
        let masters: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "addr": r.addr,
                    "answered": r.error.is_none(),
                    "error": r.error.as_ref().map(|e| e.reason().to_string()),
                    "held": r.token.is_some(),
                    "holder": r.holder,
                    "ttl_ms": r.ttl_ms,
                    "fence": r.fence,
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
            "held": held_on >= q,
        });
        exit::print(&format!("{doc}\n"));
    } else {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{:<24} {:<8} {:<28} {:>10} {:>8}",
            "master", "answer", "holder", "ttl left", "fence"
        );
        for r in &rows {
            let _ = match &r.error {
                Some(e) => writeln!(text, "{:<24} {:<8} {}", r.addr, "error", e.reason()),
                None => writeln!(
                    text,
                    "{:<24} {:<8} {:<28} {:>10} {:>8}",
                    r.addr,
                    "ok",
                    r.holder.as_deref().map_or("-", |h| if h.is_empty() {
                        "(no metadata)"
                    } else {
                        h
                    }),
                    r.ttl_ms
                        .map_or_else(|| "-".to_owned(), |t| format!("{t} ms")),
                    r.fence.unwrap_or(0),
                ),
            };
        }
        let _ = writeln!(
            text,
            "{key}: held on {held_on} of {n} masters ({}; quorum {q}), {answered} of {n} answered",
            if held_on >= q {
                "held by a quorum"
            } else {
                "no quorum holds it"
            }
        );
        exit::print(&text);
    }
    if answered < q {
        let code = exit::code_of_masters(rows.iter().filter_map(|r| r.error.as_ref()));
        return Err(Failure::new(
            code,
            format!(
                "only {answered} of {n} masters answered; a quorum is {q}: {}",
                rows.iter()
                    .filter_map(|r| r.error.as_ref().map(ToString::to_string))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
