//! `redlock status`: each master's view of one key, and whether a quorum holds it.

use std::process::ExitCode;

use redlock::Redlock;
use serde_json::json;

use crate::args::StatusArgs;
use crate::exec::connect;
use crate::exit::Failure;

/// One master's answer.
struct Row {
    addr: String,
    error: Option<String>,
    holder: Option<String>,
    token: Option<String>,
    ttl_ms: Option<u128>,
    fence: Option<u64>,
}

pub(crate) async fn run(a: StatusArgs) -> Result<ExitCode, Failure> {
    let nodes = a.target.check()?;
    let key = &a.target.key;
    let locks: Redlock = connect(a.target.builder(nodes).restart_guard(false)).await?;
    let seen = locks
        .inspect(key)
        .await
        .map_err(|e| Failure::usage(e.to_string()))?;
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
                error: Some(e.to_string()),
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
                    "error": r.error,
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
        println!("{doc}");
    } else {
        println!(
            "{:<24} {:<8} {:<28} {:>10} {:>8}",
            "master", "answer", "holder", "ttl left", "fence"
        );
        for r in &rows {
            match &r.error {
                Some(e) => println!("{:<24} {:<8} {e}", r.addr, "error"),
                None => println!(
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
            }
        }
        println!(
            "{key}: held on {held_on} of {n} masters ({}; quorum {q}), {answered} of {n} answered",
            if held_on >= q {
                "held by a quorum"
            } else {
                "no quorum holds it"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
