//! End to end over real processes: the `user-management-plugin` binary and the
//! `vivified-server` binary (see `common` for how they are started).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_first_then_the_core_then_a_core_crash_and_restart_on_sqlite() {
    let _ = server_binary();
    let dir = TempDir::new("restart");
    let (core_port, plugin_port) = (free_port(), free_port());
    let store = format!("sqlite://{}/v.db", dir.path().display());

    // The plugin first: it serves its own API and keeps trying to register.
    let plugin = start_plugin(dir.path(), plugin_port, core_port);
    let health = eventually("the plugin's /health", &[&plugin], || async {
        get_json(&format!("http://127.0.0.1:{plugin_port}/health"), None)
            .await
            .filter(|(s, _)| *s == 200)
            .map(|(_, v)| v)
    })
    .await;
    assert_eq!(health["registered"], false, "{health}");
    eventually("a few failed registration attempts", &[&plugin], || async {
        (plugin.count("core not reachable; retrying registration") >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The core, seconds later: the plugin registers and its heartbeats arrive.
    let mut core = start_core(dir.path(), core_port, &store);
    let first = eventually("the plugin listed as active", &[&plugin, &core], || async {
        let list = get_json(
            &format!("http://127.0.0.1:{core_port}/plugins"),
            Some(ADMIN_TOKEN),
        )
        .await?;
        let rec = list.1["plugins"]
            .as_array()?
            .iter()
            .find(|p| p["plugin_id"] == "user-management")?
            .clone();
        (rec["status"] == "active" && rec["health"] == "healthy").then_some(rec)
    })
    .await;
    eventually("a later heartbeat", &[&plugin, &core], || async {
        record(core_port)
            .await
            .filter(|r| r["last_heartbeat"] != first["last_heartbeat"])
    })
    .await;
    let (_, health) = get_json(&format!("http://127.0.0.1:{plugin_port}/health"), None)
        .await
        .unwrap();
    assert_eq!(health["core"], "registered");
    let token = token_in(dir.path());

    // The core crashes; the plugin notices and keeps going.
    core.crash();
    eventually("the plugin noticing the outage", &[&plugin], || async {
        (plugin.count("heartbeat failed; core unavailable, retrying") >= 1).then_some(())
    })
    .await;
    let restarted_at = time::OffsetDateTime::now_utc();
    let core = start_core(dir.path(), core_port, &store);
    let after = eventually(
        "heartbeats to the restarted core",
        &[&plugin, &core],
        || async {
            let r = record(core_port).await?;
            let last = time::OffsetDateTime::parse(
                r["last_heartbeat"].as_str()?,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            (last > restarted_at && r["status"] == "active").then_some(r)
        },
    )
    .await;
    assert_eq!(
        after["registered_at"], first["registered_at"],
        "the same registration carried on"
    );
    assert_eq!(
        plugin.count("registered with the core"),
        1,
        "no re-registration was needed\n{}",
        plugin.describe()
    );
    assert_eq!(token_in(dir.path()), token, "the same token");
    assert!(plugin.count("heartbeats accepted") >= 1);

    // Nothing secret in any output; every plugin log line is structured.
    let mut plugin = plugin;
    let status = plugin.terminate();
    assert!(
        status.success(),
        "the plugin stops cleanly on SIGTERM: {status}\n{}",
        plugin.describe()
    );
    for text in [
        plugin.stdout(),
        plugin.stderr(),
        core.stdout(),
        core.stderr(),
    ] {
        assert!(!text.contains(&token), "a token was printed");
        assert!(!text.contains(ADMIN_TOKEN) && !text.contains(JWT_SECRET));
    }
    let lines = plugin.log_lines();
    assert!(
        lines
            .iter()
            .all(|l| l["fields"]["message"].is_string() && l["level"].is_string())
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "plugin stopped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_api_checks_callers_with_the_core_and_a_restarted_plugin_keeps_its_id() {
    let dir = TempDir::new("users");
    let (core_port, plugin_port) = (free_port(), free_port());
    let core = start_core(dir.path(), core_port, "memory");
    let mut plugin = start_plugin(dir.path(), plugin_port, core_port);
    let first = eventually("the plugin active", &[&plugin, &core], || async {
        record(core_port).await.filter(|r| r["status"] == "active")
    })
    .await;

    // Two callers: one declares handles_pii, the other does not.
    let register = |id: &'static str, pii: bool| async move {
        let manifest = json!({
            "id": id, "name": id, "version": "1.0.0", "contracts": [],
            "traits": if pii { json!(["handles_pii"]) } else { json!([]) },
            "security": {"authentication_required": pii, "data_classification": if pii { json!(["pii"]) } else { json!(["internal"]) }},
            "compliance": {"hipaa_controls": [], "audit_level": "basic"}
        });
        let resp = http()
            .post(format!("http://127.0.0.1:{core_port}/plugins/register"))
            .json(&manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let reader = register("pii-reader", true).await;
    let basic = register("basic-reader", false).await;
    let users = format!("http://127.0.0.1:{plugin_port}/api/users");

    let (status, _) = get_json(&format!("{users}/1"), None).await.unwrap();
    assert_eq!(status, 401, "no token");
    let mut forged: Vec<char> = reader.chars().collect();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == 'x' { 'y' } else { 'x' };
    let forged: String = forged.into_iter().collect();
    let (status, _) = get_json(&format!("{users}/1"), Some(&forged))
        .await
        .unwrap();
    assert_eq!(status, 401, "forged token");
    let (status, body) = get_json(&format!("{users}/1"), Some(&basic)).await.unwrap();
    assert_eq!(status, 403, "registered, without handles_pii: {body}");
    let (status, body) = get_json(&format!("{users}/1"), Some(&reader))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["email"], "alice@example.com");
    let (status, _) = get_json(&format!("{users}/404"), Some(&reader))
        .await
        .unwrap();
    assert_eq!(status, 404);

    // Restart the plugin: it re-registers with its kept token (no 409).
    assert!(plugin.terminate().success());
    assert_eq!(plugin.count("user-management API stopped"), 1);
    assert!(plugin.count("user served") >= 1 && plugin.count("user lookup refused") >= 2);
    let first_run = format!("{}{}", plugin.stdout(), plugin.stderr());
    let plugin = start_plugin(dir.path(), plugin_port, core_port);
    eventually(
        "the restarted plugin registered",
        &[&plugin, &core],
        || async { (plugin.count("registered with the core") == 1).then_some(()) },
    )
    .await;
    let line = plugin
        .log_lines()
        .into_iter()
        .find(|l| l["fields"]["message"] == "registered with the core")
        .unwrap();
    assert_eq!(
        line["fields"]["credential"],
        "token",
        "{}",
        plugin.describe()
    );
    assert_eq!(
        plugin.count("using the token kept from the previous run"),
        1
    );
    let again = record(core_port).await.unwrap();
    assert_eq!(again["registered_at"], first["registered_at"]);
    let (status, _) = get_json(&format!("{users}/2"), Some(&reader))
        .await
        .unwrap();
    assert_eq!(status, 200);

    // No PII and no token in the plugin's output.
    let out = format!("{first_run}{}{}", plugin.stdout(), plugin.stderr());
    for secret in [
        "alice",
        "bob",
        "example.com",
        reader.as_str(),
        basic.as_str(),
    ] {
        assert!(!out.contains(secret), "the plugin printed {secret:?}");
    }
}
