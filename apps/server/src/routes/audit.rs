//! The audit trail over HTTP (the auditor role and up): `GET /audit` (sealed entries, filtered and
//! paged), `GET /audit/verify` (a bounded walk of the chain, optionally against a
//! checkpoint) and `GET /audit/export` (JSON lines for a SIEM, streamed page by page).
//!
//! Authentication comes first, as on every admin route: none → 401, a plugin's token
//! → 403 `admin_token_required` (401 if that token is no longer current), then 400
//! for a bad parameter, naming it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use vivified_domain::Operation;
use vivified_domain::audit_chain::{
    ChainHead, ChainVerifier, Checkpoint, CheckpointError, MAX_FIELD_BYTES, VerifyReport,
    check_stored_checkpoints, stored_checkpoint,
};
use vivified_ports::audit::AuditQuery;
use vivified_ports::audit::parse_outcome;
use vivified_ports::{AuditError, AuditLog};

use crate::error::ApiError;
use crate::extract::Bearer;
use crate::state::AppState;

/// Default page of `GET /audit`.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page of `GET /audit`.
pub const MAX_LIMIT: usize = 1000;
/// Default bound of one `GET /audit/verify` walk, in entries.
pub const DEFAULT_VERIFY_ENTRIES: u64 = 100_000;
/// Largest `max_entries` of `GET /audit/verify`.
pub const MAX_VERIFY_ENTRIES: u64 = 1_000_000;
/// Entries read per page by verification and export.
const PAGE: u64 = 1000;

type RawQuery = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// 401/403 unless the caller is an operator whose role may read the audit trail.
async fn require_auditor(state: &AppState, bearer: &Bearer) -> Result<(), ApiError> {
    state
        .registry
        .authorize(bearer.as_deref(), Operation::ReadAudit)
        .await
        .map(drop)
        .map_err(Into::into)
}

/// The query parameters, each given at most once, none outside `allowed`.
fn params(query: RawQuery, allowed: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let Query(pairs) = query.map_err(|_| ApiError::InvalidBody("bad query string".into()))?;
    let mut map = BTreeMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            let shown: String = name.chars().take(40).collect();
            return Err(ApiError::InvalidBody(format!(
                "unknown parameter `{}`; expected one of {}",
                shown.escape_debug(),
                allowed.join(", ")
            )));
        }
        if map.contains_key(&name) {
            return Err(bad(&name, "given at most once"));
        }
        map.insert(name, value);
    }
    Ok(map)
}

fn bad(name: &str, what: &str) -> ApiError {
    ApiError::InvalidBody(format!("`{name}` must be {what}"))
}

/// An optional sequence number.
fn seq_param(map: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match map.get(name).map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad(name, "a sequence number (a whole number, 0 or more)")),
    }
}

/// An optional count within `range`, `default` when absent.
fn count_param(
    map: &BTreeMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match map.get(name).map(|v| v.trim()) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(name, &format!("a whole number between 1 and {max}"))),
    }
}

/// An optional filter on a text field: no control characters, at most
/// [`MAX_FIELD_BYTES`] characters (a longer one in bytes matches nothing the log
/// stores, and is answered with no entries).
fn text_param(map: &BTreeMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    match map.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() <= MAX_FIELD_BYTES && !v.chars().any(char::is_control) => {
            Ok(Some(v.clone()))
        }
        Some(_) => Err(bad(
            name,
            &format!("at most {MAX_FIELD_BYTES} characters without control characters"),
        )),
    }
}

fn audit_unavailable(e: AuditError) -> ApiError {
    tracing::error!(dependency = "audit log", error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "dependency failed");
    ApiError::Unavailable("audit log")
}

/// `GET /audit?after=SEQ&limit=N&order=oldest|newest&actor=&action=&outcome=` (admin):
/// `{"entries": [...], "next_after": SEQ|null}`. Sealed entries only; pending ones
/// appear once the sealer has chained them.
pub async fn list(
    State(state): State<AppState>,
    bearer: Bearer,
    query: RawQuery,
) -> Result<Json<Value>, ApiError> {
    require_auditor(&state, &bearer).await?;
    let map = params(
        query,
        &["after", "limit", "order", "actor", "action", "outcome"],
    )?;
    let after = seq_param(&map, "after")?;
    let limit = count_param(&map, "limit", DEFAULT_LIMIT as u64, MAX_LIMIT as u64)? as usize;
    let newest_first = match map.get("order").map(|v| v.trim()) {
        None | Some("" | "oldest") => false,
        Some("newest") => true,
        Some(_) => return Err(bad("order", "`oldest` or `newest`")),
    };
    let outcome = match map.get("outcome").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => Some(parse_outcome(v).ok_or_else(|| bad("outcome", "`success` or `denied`"))?),
    };
    let query = AuditQuery {
        after,
        limit,
        newest_first,
        actor: text_param(&map, "actor")?,
        action: text_param(&map, "action")?,
        outcome,
    };
    let entries = state
        .audit
        .log
        .query(&query)
        .await
        .map_err(audit_unavailable)?;
    let next_after = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(
        json!({ "entries": entries, "next_after": next_after }),
    ))
}

/// A `SEQ:HASH` position to resume from, optionally with `:KEY`, the fingerprint of
/// the audit key in force there.
fn parse_head(v: &str) -> Option<(ChainHead, Option<String>)> {
    let mut parts = v.trim().split(':');
    let (Some(seq), Some(hash), key, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let key = match key {
        None => None,
        Some(k) if k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(k.to_ascii_lowercase())
        }
        Some(_) => return None,
    };
    Some((
        ChainHead {
            seq: seq.parse().ok()?,
            hash: hash.parse().ok()?,
        },
        key,
    ))
}

/// Where a bounded walk ended.
struct Walk {
    report: VerifyReport,
    /// The end of the chain (or a break) was reached.
    complete: bool,
    checked: u64,
}

/// Walks at most `budget` entries from `verifier`'s position, a page at a time,
/// yielding between pages. An entry the store cannot decode is reported as
/// `malformed_entry` at its place (as `vivified_domain::audit_chain::verify_log` does).
async fn walk(
    log: &dyn AuditLog,
    mut verifier: ChainVerifier,
    budget: u64,
) -> Result<Walk, AuditError> {
    let mut checked = 0u64;
    loop {
        if checked >= budget {
            return Ok(Walk {
                report: verifier.report(),
                complete: false,
                checked,
            });
        }
        let from = verifier.next_seq();
        let want = usize::try_from(PAGE.min(budget - checked)).unwrap_or(1000);
        match log.range(from, want).await {
            Ok(entries) if entries.is_empty() => {
                return Ok(Walk {
                    report: verifier.finish(),
                    complete: true,
                    checked,
                });
            }
            Ok(entries) => {
                checked += entries.len() as u64;
                if !verifier.feed(&entries) {
                    return Ok(Walk {
                        report: verifier.report(),
                        complete: true,
                        checked,
                    });
                }
            }
            Err(AuditError::CorruptEntry { seq }) => {
                // Verify what precedes the undecodable entry, then report it there.
                if seq > from {
                    let before = usize::try_from(seq - from).unwrap_or(want).min(want);
                    match log.range(from, before).await {
                        Ok(entries) => {
                            let entries: Vec<_> =
                                entries.into_iter().filter(|e| e.seq < seq).collect();
                            checked += entries.len() as u64;
                            let intact = verifier.feed(&entries);
                            if intact && verifier.next_seq() < seq && !entries.is_empty() {
                                // More pages lie before it.
                                tokio::task::yield_now().await;
                                continue;
                            }
                            if !intact {
                                return Ok(Walk {
                                    report: verifier.report(),
                                    complete: true,
                                    checked,
                                });
                            }
                        }
                        Err(AuditError::CorruptEntry { seq: earlier }) => {
                            verifier.malformed(earlier);
                            return Ok(Walk {
                                report: verifier.report(),
                                complete: true,
                                checked,
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
                verifier.malformed(seq);
                return Ok(Walk {
                    report: verifier.report(),
                    complete: true,
                    checked: checked + 1,
                });
            }
            Err(e) => return Err(e),
        }
        // Let other requests run between pages.
        tokio::task::yield_now().await;
    }
}

/// `GET /audit/verify?checkpoint=SEQ:HASH:MAC&max_entries=N&resume=SEQ:HASH` (admin):
/// walks the chain — from the genesis, or from `resume` (the `last_verified` of an
/// answer with `"complete": false`) — for at most `max_entries` entries, and answers
/// `{"intact", "verified_up_to", "first_bad_seq", "reason", "complete",
/// "entries_checked", "last_verified"}`.
pub async fn verify(
    State(state): State<AppState>,
    bearer: Bearer,
    query: RawQuery,
) -> Result<Json<Value>, ApiError> {
    require_auditor(&state, &bearer).await?;
    let map = params(query, &["checkpoint", "max_entries", "resume"])?;
    let budget = count_param(
        &map,
        "max_entries",
        DEFAULT_VERIFY_ENTRIES,
        MAX_VERIFY_ENTRIES,
    )?;
    let checkpoint = match map.get("checkpoint").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<Checkpoint>().map_err(|_| {
            bad(
                "checkpoint",
                "SEQ:HASH:MAC, as logged in `audit_checkpoint`",
            )
        })?),
    };
    let resume = match map.get("resume").map(|v| v.trim()) {
        None | Some("") => None,
        Some(v) => Some(parse_head(v).ok_or_else(|| {
            bad(
                "resume",
                "SEQ:HASH[:KEY], the `last_verified` of an incomplete verification",
            )
        })?),
    };
    let key = &*state.audit.keys;
    let mut verifier = match &resume {
        Some((head, in_force)) => ChainVerifier::resume(key, *head, in_force.as_deref()),
        None => ChainVerifier::new(key),
    };
    let resume = resume.map(|(head, _)| head);
    // Without one, the checkpoint the log stored with its last seal (when it lies
    // within this walk): a chain cut at its end is then found without the log lines.
    let checkpoint = match checkpoint {
        Some(cp) => Some(cp),
        None => stored_checkpoint(state.audit.log.as_ref(), key)
            .await
            .map_err(audit_unavailable)?
            .0
            .filter(|cp| resume.is_none_or(|r| cp.seq > r.seq)),
    };
    if let Some(cp) = checkpoint {
        verifier = verifier.with_checkpoint(cp).map_err(|e| match e {
            CheckpointError::NotAuthentic => bad(
                "checkpoint",
                "a checkpoint made with one of this core's audit keys (its MAC does not verify)",
            ),
            CheckpointError::BeforeStart => bad("checkpoint", "at or after `resume`"),
        })?;
    }
    let walk = walk(&*state.audit.log, verifier, budget)
        .await
        .map_err(audit_unavailable)?;
    let report = walk.report;
    if let Some(failure) = report.failure {
        tracing::warn!(
            first_bad_seq = failure.seq,
            reason = failure.reason.as_str(),
            "audit chain verification found a break"
        );
    }
    let last_verified = report.head.map(|h| {
        json!({
            "seq": h.seq,
            "hash": h.hash,
            "key": report.key,
        })
    });
    Ok(Json(json!({
        "intact": report.intact(),
        "verified_up_to": report.verified_up_to,
        "first_bad_seq": report.first_bad_seq(),
        "reason": report.reason(),
        "complete": walk.complete,
        "entries_checked": walk.checked,
        "last_verified": last_verified,
        "keys": report.keys,
    })))
}

/// `GET /audit/export?after=SEQ` (admin): the sealed entries after `after` up to the
/// head at the time of the request, as `application/x-ndjson` — one entry per line,
/// as `GET /audit` shows them — streamed a page at a time. A read error mid-stream
/// ends the response early (the client sees a truncated body) and is logged.
pub async fn export(
    State(state): State<AppState>,
    bearer: Bearer,
    query: RawQuery,
) -> Result<Response, ApiError> {
    require_auditor(&state, &bearer).await?;
    let map = params(query, &["after"])?;
    let after = seq_param(&map, "after")?.unwrap_or(0);
    let log = Arc::clone(&state.audit.log);
    let end = log
        .head()
        .await
        .map_err(audit_unavailable)?
        .map_or(0, |h| h.seq);
    struct Cursor {
        log: Arc<dyn AuditLog>,
        next: u64,
        end: u64,
    }
    let cursor = Cursor {
        log,
        next: after.saturating_add(1),
        end,
    };
    let stream = futures_util::stream::unfold(Some(cursor), |cursor| async move {
        let mut c = cursor?;
        if c.next > c.end {
            return None;
        }
        let want = usize::try_from(PAGE.min(c.end - c.next + 1)).unwrap_or(1000);
        match c.log.range(c.next, want).await {
            Ok(entries) => {
                let entries: Vec<_> = entries.into_iter().filter(|e| e.seq <= c.end).collect();
                let last = entries.last()?.seq;
                let mut buf = Vec::with_capacity(entries.len() * 384);
                for e in &entries {
                    if serde_json::to_writer(&mut buf, e).is_err() {
                        return Some((
                            Err(std::io::Error::other("audit entry not encodable")),
                            None,
                        ));
                    }
                    buf.push(b'\n');
                }
                c.next = last.saturating_add(1);
                Some((Ok(Bytes::from(buf)), Some(c)))
            }
            Err(e) => {
                tracing::error!(error = %e, from_seq = c.next, "audit export interrupted");
                Some((Err(std::io::Error::other("audit export interrupted")), None))
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The audit part of `/ready`: `{"pending": N, "head": SEQ, "checkpoint": SEQ}`
/// (pending entries are the sealing lag; `head` is 0 while nothing is sealed;
/// `checkpoint` the one stored with the last seal, `null` when none). When the chain
/// does not reach, or match, that checkpoint it also has `"intact": false`,
/// `first_bad_seq` and `reason` (`/ready` then answers 503).
///
/// # Errors
/// The log's error.
pub async fn ready_status(state: &AppState) -> Result<Value, AuditError> {
    let log = &state.audit.log;
    // In this order, not concurrently: `pending == 0` then means every entry appended
    // before it was read is at or below `head` (sealing moves an entry out of pending
    // and onto the chain in one transaction). Read the other way round, a batch sealed
    // between the two reads shows an old head with nothing pending.
    let pending = log.pending().await?;
    let stored = check_stored_checkpoints(log.as_ref(), &*state.audit.keys).await?;
    // Without a stored checkpoint the check did not read the head.
    let head = match stored.checkpoint {
        Some(_) => stored.head,
        None => log.head().await?,
    };
    let mut status = json!({
        "pending": pending,
        "head": head.map_or(0, |h| h.seq),
        "checkpoint": stored.checkpoint.map(|cp| cp.seq),
    });
    if let Some(failure) = stored.failure {
        status["intact"] = json!(false);
        status["first_bad_seq"] = json!(failure.seq);
        status["reason"] = json!(failure.reason.as_str());
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_positions_parse() {
        let hash = "ab".repeat(32);
        let (head, key) = parse_head(&format!("12:{hash}")).unwrap();
        assert_eq!(head.seq, 12);
        assert_eq!(head.hash.to_hex(), hash);
        assert_eq!(key, None);
        let (_, key) = parse_head(&format!("12:{hash}:00112233AABBCCDD")).unwrap();
        assert_eq!(key.as_deref(), Some("00112233aabbccdd"));
        assert!(parse_head(&format!("12:{hash}:xyz")).is_none());
        assert!(parse_head(&format!("12:{hash}:00112233aabbccdd:1")).is_none());
        assert!(parse_head("12").is_none());
        assert!(parse_head(&format!("x:{hash}")).is_none());
        assert!(parse_head("12:abc").is_none());
    }

    #[test]
    fn parameters_are_named_in_refusals() {
        let map: BTreeMap<String, String> = [
            ("limit".to_owned(), "0".to_owned()),
            ("after".to_owned(), "-1".to_owned()),
            ("actor".to_owned(), "a\u{1b}b".to_owned()),
        ]
        .into();
        let msg = |e: ApiError| match e {
            ApiError::InvalidBody(m) => m,
            other => panic!("{other:?}"),
        };
        assert!(msg(count_param(&map, "limit", 100, 1000).unwrap_err()).contains("`limit`"));
        assert!(msg(seq_param(&map, "after").unwrap_err()).contains("`after`"));
        assert!(msg(text_param(&map, "actor").unwrap_err()).contains("`actor`"));
        assert_eq!(count_param(&map, "max_entries", 7, 9).unwrap(), 7);
    }
}
