//! `GET /audit`, `GET /audit/verify`, `GET /audit/export` and the audit part of
//! `/ready`: entries of real registrations once sealed, filters, paging, newest-first,
//! the admin-only order of checks, a bounded and resumable verification, JSON lines,
//! and tampering with the rows of a SQLite file caught and located.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};
use vivified_adapters::sqlite::SqliteAuditLog;
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_domain::audit_chain::{ChainHead, Checkpoint};
use vivified_ports::AuditError;
use vivified_ports::audit::MockAuditLog;

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_error, keys, manifest, rfc3339_utc, sorted};
use vivified_test_support::fs::TempDir;

/// Seals everything pending, as the server's sealer task does.
async fn seal(app: &TestApp) -> Option<ChainHead> {
    app.audit
        .seal_all(Duration::from_secs(5))
        .await
        .expect("the audit log seals")
}

async fn audit(app: &TestApp, query: &str) -> Value {
    let resp = app.get(&format!("/audit{query}"), Some(ADMIN_TOKEN)).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "/audit{query}: {}",
        resp.text()
    );
    resp.json()
}

async fn verify(app: &TestApp, query: &str) -> Value {
    let resp = app
        .get(&format!("/audit/verify{query}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "/audit/verify{query}: {}",
        resp.text()
    );
    resp.json()
}

fn seqs(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries in {page}"))
        .iter()
        .map(|e| e["seq"].as_u64().expect("a seq"))
        .collect()
}

#[tokio::test]
async fn registrations_appear_once_sealed() {
    let app = TestApp::dev();
    for id in ["alpha", "beta", "gamma"] {
        app.register_ok(id).await;
    }
    // Appended, not yet sealed: not readable, and counted as the sealing lag.
    let ready = app.get("/ready", None).await.json();
    assert_eq!(
        ready["audit"],
        json!({"pending": 3, "head": 0, "checkpoint": null}),
        "{ready}"
    );
    let page = audit(&app, "").await;
    assert_eq!(page, json!({"entries": [], "next_after": null}));

    let head = seal(&app).await.expect("a head");
    assert_eq!(head.seq, 3);
    let ready = app.get("/ready", None).await.json();
    assert_eq!(
        ready["audit"],
        json!({"pending": 0, "head": 3, "checkpoint": 3}),
        "{ready}"
    );
    let page = audit(&app, "").await;
    assert_eq!(page["next_after"], Value::Null);
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(seqs(&page), [1, 2, 3]);
    for (e, id) in entries.iter().zip(["alpha", "beta", "gamma"]) {
        assert_eq!(
            keys(e),
            sorted(&[
                "seq", "at", "actor", "action", "target", "outcome", "reason", "trace_id",
                "details", "hash"
            ]),
            "{e}"
        );
        assert_eq!(e["action"], "plugin.register");
        assert_eq!(e["actor"], format!("plugin:{id}"));
        assert_eq!(e["target"], id);
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["reason"], "registered");
        rfc3339_utc(&e["at"]);
        let hash = e["hash"].as_str().unwrap();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hash}"
        );
    }
    assert_eq!(entries[2]["hash"], head.hash.to_hex());
    let report = verify(&app, "").await;
    assert_eq!(
        report,
        json!({
            "intact": true,
            "verified_up_to": 3,
            "first_bad_seq": null,
            "reason": null,
            "complete": true,
            "entries_checked": 3,
            "last_verified": {
                "seq": 3,
                "hash": head.hash.to_hex(),
                "key": app.audit.keys.current().fingerprint(),
            },
            "keys": [{"key": app.audit.keys.current().fingerprint(), "from_seq": 1}],
        })
    );
}

/// Admin entries, denied registrations and successes, filtered, paged both ways.
#[tokio::test]
async fn filters_paging_and_newest_first() {
    let app = TestApp::dev();
    for i in 0..5 {
        app.register_ok(&format!("p{i}")).await;
    }
    let mut bad = manifest("broken");
    bad["version"] = json!("not-a-version");
    let resp = app.register(&bad, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    let resp = app.register(&manifest("p0"), None).await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.text());
    app.disable("p3", "maintenance").await;
    seal(&app).await;

    let denied = audit(&app, "?outcome=denied").await;
    let denied = denied["entries"].as_array().unwrap();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied.iter().all(|e| e["actor"] == "anonymous"
        && e["action"] == "plugin.register"
        && e["outcome"] == "denied"));
    assert_eq!(denied[0]["reason"], "invalid_manifest");
    assert_eq!(denied[1]["reason"], "already_registered");

    let admin = audit(&app, "?actor=operator:bootstrap").await;
    assert_eq!(admin["entries"].as_array().unwrap().len(), 1, "{admin}");
    assert_eq!(admin["entries"][0]["action"], "plugin.disable");
    assert_eq!(admin["entries"][0]["target"], "p3");
    let none = audit(&app, "?actor=admin&action=plugin.register").await;
    assert_eq!(none, json!({"entries": [], "next_after": null}));

    // Oldest first in pages of 2: successes 1..=5.
    let mut got = Vec::new();
    let mut query = "?action=plugin.register&outcome=success&limit=2".to_owned();
    loop {
        let page = audit(&app, &query).await;
        got.extend(seqs(&page));
        match page["next_after"].as_u64() {
            Some(after) => {
                query = format!("?action=plugin.register&outcome=success&limit=2&after={after}")
            }
            None => break,
        }
    }
    assert_eq!(got, [1, 2, 3, 4, 5]);

    // Newest first: `after` continues below the cursor.
    let page = audit(&app, "?order=newest&limit=3").await;
    assert_eq!(seqs(&page), [8, 7, 6]);
    assert_eq!(page["next_after"], 6);
    let page = audit(&app, "?order=newest&limit=3&after=6").await;
    assert_eq!(seqs(&page), [5, 4, 3]);
    let page = audit(&app, "?order=newest&after=3").await;
    assert_eq!(seqs(&page), [2, 1]);
    assert_eq!(page["next_after"], Value::Null);
    let page = audit(&app, "?order=oldest&after=7").await;
    assert_eq!(seqs(&page), [8]);
    // The default page is 100.
    assert_eq!(seqs(&audit(&app, "").await).len(), 8);
}

/// None → 401, a plugin's token → 403, and only then 400 naming the parameter.
#[tokio::test]
async fn admin_only_and_bad_parameters_name_themselves() {
    let app = TestApp::dev();
    let token = app.register_ok("plugin-a").await;
    for path in [
        "/audit",
        "/audit/verify",
        "/audit/export",
        "/audit?limit=0",
        "/audit/verify?checkpoint=nonsense",
    ] {
        let resp = app.get(path, None).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(resp.json()["reason"], "missing_credentials");
        let resp = app.get(path, Some("not-a-token")).await;
        assert_error(&resp, StatusCode::UNAUTHORIZED, "unauthorized");
        let resp = app.get(path, Some(&token)).await;
        assert_error(&resp, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(resp.json()["reason"], "admin_token_required", "{path}");
    }
    let hash = "ab".repeat(32);
    for (path, name) in [
        ("/audit?limit=0", "limit"),
        ("/audit?limit=1001", "limit"),
        ("/audit?limit=ten", "limit"),
        ("/audit?after=-1", "after"),
        ("/audit?after=x", "after"),
        ("/audit?order=sideways", "order"),
        ("/audit?outcome=maybe", "outcome"),
        ("/audit?actor=a%1Bb", "actor"),
        ("/audit?colour=red", "colour"),
        ("/audit/verify?checkpoint=1:2:3", "checkpoint"),
        ("/audit/verify?max_entries=0", "max_entries"),
        ("/audit/verify?max_entries=1000001", "max_entries"),
        ("/audit/verify?resume=12", "resume"),
        (
            &format!("/audit/verify?checkpoint=1:{hash}:{hash}"),
            "checkpoint",
        ),
        ("/audit/export?after=soon", "after"),
        ("/audit/export?limit=5", "limit"),
        // Each at most once, whatever the values.
        ("/audit?limit=0&limit=5", "limit"),
        ("/audit?limit=5&limit=5", "limit"),
        ("/audit/export?after=false&after=", "after"),
        ("/audit/verify?max_entries=10&max_entries=20", "max_entries"),
    ] {
        let resp = app.get(path, Some(ADMIN_TOKEN)).await;
        assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
        let detail = resp.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(&format!("`{name}`")), "{path}: {detail}");
    }
    // The largest page is fine.
    audit(&app, "?limit=1000&order=oldest&outcome=success").await;
    // Filters are counted in characters: 512 four-byte ones match nothing, and are no
    // error; 513 are.
    let wide = "%F0%9D%95%BF".repeat(512);
    assert!(seqs(&audit(&app, &format!("?actor={wide}")).await).is_empty());
    let resp = app
        .get(&format!("/audit?action={wide}x"), Some(ADMIN_TOKEN))
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
}

/// A bounded walk says where it stopped, and resumes from there.
#[tokio::test]
async fn verification_is_bounded_and_resumable() {
    let app = TestApp::dev();
    for i in 0..25 {
        app.register_ok(&format!("v{i}")).await;
    }
    let head = seal(&app).await.unwrap();
    let first = verify(&app, "?max_entries=10").await;
    assert_eq!(first["intact"], true, "{first}");
    assert_eq!(first["complete"], false, "{first}");
    assert_eq!(first["verified_up_to"], 10);
    assert_eq!(first["entries_checked"], 10);
    let mut last = first["last_verified"].clone();
    let mut rounds = 1;
    loop {
        let resume = format!(
            "{}:{}:{}",
            last["seq"],
            last["hash"].as_str().unwrap(),
            last["key"].as_str().unwrap()
        );
        let next = verify(&app, &format!("?max_entries=10&resume={resume}")).await;
        assert_eq!(next["intact"], true, "{next}");
        rounds += 1;
        last = next["last_verified"].clone();
        if next["complete"] == true {
            assert_eq!(next["verified_up_to"], 25);
            break;
        }
        assert!(rounds < 5, "{next}");
    }
    assert_eq!(rounds, 3, "10 + 10 + 5");
    assert_eq!(last["hash"], head.hash.to_hex());
    // A checkpoint of the head: intact; a forged resume position is a hash mismatch.
    let cp = Checkpoint::new(app.audit.keys.current(), head);
    let report = verify(&app, &format!("?checkpoint={cp}")).await;
    assert_eq!(report["intact"], true, "{report}");
    let forged = format!("5:{}", "00".repeat(32));
    let report = verify(&app, &format!("?resume={forged}")).await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_bad_seq"], 6);
    assert_eq!(report["reason"], "hash_mismatch");
    // A checkpoint before the resume position is refused.
    let early = Checkpoint::new(
        app.audit.keys.current(),
        ChainHead {
            seq: 2,
            hash: head.hash,
        },
    );
    let resume = format!("10:{}", "00".repeat(32));
    let resp = app
        .get(
            &format!("/audit/verify?checkpoint={early}&resume={resume}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_error(&resp, StatusCode::BAD_REQUEST, "invalid_body");
}

#[tokio::test]
async fn export_is_json_lines_after_a_sequence_number() {
    let app = TestApp::dev();
    for i in 0..4 {
        app.register_ok(&format!("e{i}")).await;
    }
    seal(&app).await;
    // Appended after the seal: not exported until sealed.
    app.register_ok("late").await;
    let resp = app.get("/audit/export", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let text = resp.text();
    assert!(text.ends_with('\n'), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let got: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 4]);
    // The lines are the entries `GET /audit` shows.
    let page = audit(&app, "").await;
    assert_eq!(page["entries"].as_array().unwrap(), &lines);
    let resp = app.get("/audit/export?after=2", Some(ADMIN_TOKEN)).await;
    let got: Vec<u64> = resp
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(got, [3, 4]);
    let resp = app.get("/audit/export?after=99", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), "");
}

/// A failing audit log: `/ready` and the reads answer 503 without internals.
#[tokio::test]
async fn a_failing_audit_log_is_503() {
    let mut log = MockAuditLog::new();
    let down = || AuditError::Unavailable("disk I/O error at /var/lib/secret.db".into());
    log.expect_pending().returning(move || Err(down()));
    log.expect_head().returning(move || Err(down()));
    log.expect_query().returning(move |_| Err(down()));
    log.expect_range().returning(move |_, _| Err(down()));
    log.expect_checkpoints().returning(move || Err(down()));
    let app = TestApp::builder().audit(Arc::new(log)).build();
    let resp = app.get("/ready", None).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.json()["status"], "unavailable");
    for path in ["/audit", "/audit/verify", "/audit/export"] {
        let resp = app.get(path, Some(ADMIN_TOKEN)).await;
        assert_error(&resp, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(!resp.text().contains("secret.db"), "{}", resp.text());
    }
}

/// `/ready` never reports "nothing pending" with a head from before the last seal, even
/// when a seal commits between its two reads: here the first read sees the log before
/// a batch is sealed (head 28, one pending) and the second after (head 29, none).
#[tokio::test]
async fn ready_never_pairs_nothing_pending_with_an_old_head() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let reads = Arc::new(AtomicU32::new(0));
    let sealed = |reads: &AtomicU32| reads.fetch_add(1, Ordering::SeqCst) > 0;
    let mut log = MockAuditLog::new();
    let r = Arc::clone(&reads);
    log.expect_pending()
        .returning(move || Ok(if sealed(&r) { 0 } else { 1 }));
    let r = Arc::clone(&reads);
    log.expect_head().returning(move || {
        let seq = if sealed(&r) { 29 } else { 28 };
        Ok(Some(ChainHead {
            seq,
            hash: vivified_ports::audit::ChainHash::from_bytes([7; 32]),
        }))
    });
    log.expect_checkpoints().returning(|| Ok(Vec::new()));
    let app = TestApp::builder().audit(Arc::new(log)).build();
    let resp = app.get("/ready", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let audit = &resp.json()["audit"];
    assert!(
        audit["pending"] != 0 || audit["head"] == 29,
        "an old head with nothing pending: {audit}"
    );
}

/// The core over a SQLite file: rows of `audit_entries` edited, deleted or swapped
/// behind its back are found, and the first bad sequence number is reported.
#[tokio::test]
async fn tampering_with_the_sqlite_file_is_located() {
    let dir = TempDir::new("api-audit");
    let path = dir.join("vivified.db");
    let store = SqlitePluginStore::open(&path).await.expect("sqlite opens");
    let log = Arc::new(SqliteAuditLog::new(&store));
    let app = TestApp::builder()
        .store(Arc::new(store.clone()))
        .audit(log)
        .build();
    for i in 0..8 {
        app.register_ok(&format!("s{i}")).await;
    }
    seal(&app).await;
    assert_eq!(verify(&app, "").await["intact"], true);

    let mut db = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("a second connection to the file");
    let exec = |sql: &'static str| sqlx::raw_sql(sql);

    // An edited field.
    exec("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 5")
        .execute(&mut db)
        .await
        .unwrap();
    let report = verify(&app, "").await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_bad_seq"], 5);
    assert_eq!(report["reason"], "hash_mismatch");
    assert_eq!(report["verified_up_to"], 4);
    assert_eq!(report["complete"], true);
    exec("UPDATE audit_entries SET actor = 'plugin:s4' WHERE seq = 5")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(verify(&app, "").await["intact"], true, "restored");

    // A value the log never writes.
    exec("UPDATE audit_entries SET outcome = 'granted' WHERE seq = 3")
        .execute(&mut db)
        .await
        .unwrap();
    let report = verify(&app, "").await;
    assert_eq!(report["first_bad_seq"], 3, "{report}");
    assert_eq!(report["reason"], "malformed_entry");
    exec("UPDATE audit_entries SET outcome = 'success' WHERE seq = 3")
        .execute(&mut db)
        .await
        .unwrap();

    // Two rows swapped (their contents, keeping the numbers).
    exec(
        "UPDATE audit_entries SET target = CASE seq WHEN 2 THEN 's6' ELSE 's1' END, \
         actor = CASE seq WHEN 2 THEN 's6' ELSE 's1' END WHERE seq IN (2, 7)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let report = verify(&app, "").await;
    assert_eq!(report["first_bad_seq"], 2, "{report}");
    assert_eq!(report["reason"], "hash_mismatch");
    exec(
        "UPDATE audit_entries SET target = CASE seq WHEN 2 THEN 's1' ELSE 's6' END, \
         actor = CASE seq WHEN 2 THEN 'plugin:s1' ELSE 'plugin:s6' END WHERE seq IN (2, 7)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    assert_eq!(verify(&app, "").await["intact"], true, "restored");

    // A deleted row in the middle.
    exec("DELETE FROM audit_entries WHERE seq = 6")
        .execute(&mut db)
        .await
        .unwrap();
    let report = verify(&app, "").await;
    assert_eq!(report["first_bad_seq"], 6, "{report}");
    assert_eq!(report["reason"], "sequence_gap");

    // Rows cut from the end: caught by the checkpoint stored with the last seal, and
    // by a logged one.
    let head = app.audit.log.head().await.unwrap().unwrap();
    assert_eq!(head.seq, 8);
    let cp = Checkpoint::new(app.audit.keys.current(), head);
    exec("DELETE FROM audit_entries WHERE seq >= 6")
        .execute(&mut db)
        .await
        .unwrap();
    let report = verify(&app, "").await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["verified_up_to"], 5);
    assert_eq!(
        (&report["first_bad_seq"], &report["reason"]),
        (&json!(6), &json!("chain_truncated"))
    );
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["error"], "audit_chain_broken");
    assert_eq!(ready.json()["audit"]["first_bad_seq"], 6);
    // Without the stored checkpoint, a bare walk cannot see the cut end; the logged
    // checkpoint still can.
    exec("DELETE FROM audit_checkpoint")
        .execute(&mut db)
        .await
        .unwrap();
    std::fs::remove_file(dir.join("vivified.db-checkpoint")).unwrap();
    let app = TestApp::builder()
        .store(Arc::new(store.clone()))
        .audit(Arc::new(SqliteAuditLog::new(&store)))
        .build();
    let report = verify(&app, "").await;
    assert_eq!(report["intact"], true, "a bare chain cannot see a cut end");
    assert_eq!(report["verified_up_to"], 5);
    let report = verify(&app, &format!("?checkpoint={cp}")).await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_bad_seq"], 6);
    assert_eq!(report["reason"], "chain_truncated");
    db.close().await.ok();
}

/// The API document describes what the routes answer.
#[tokio::test]
async fn the_openapi_document_matches_the_audit_answers() {
    let app = TestApp::dev();
    app.register_ok("doc-a").await;
    seal(&app).await;
    let doc = app.get("/openapi.json", None).await.json();
    for path in ["/audit", "/audit/verify", "/audit/export"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
    let required = |schema: &str| -> Vec<String> {
        let mut r: Vec<String> = doc["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} has `required`"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        r.sort();
        r
    };
    let page = audit(&app, "").await;
    assert_eq!(required("AuditList"), keys(&page));
    assert_eq!(required("AuditEntry"), keys(&page["entries"][0]));
    assert_eq!(required("AuditVerifyReport"), keys(&verify(&app, "").await));
    let ready = app.get("/ready", None).await.json();
    assert_eq!(required("ReadyResponse"), keys(&ready));
    assert_eq!(required("AuditStatus"), keys(&ready["audit"]));
}
