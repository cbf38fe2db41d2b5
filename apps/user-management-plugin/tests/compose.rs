//! The topology `docker-compose.yml` describes, as plain processes (no Docker engine
//! runs here): the core in production mode on Postgres and NATS JetStream with a
//! registration secret, and the example plugin registering and heartbeating through it.
//!
//! The environment of both processes is read from `docker-compose.yml` itself, with
//! `${VAR:?…}`/`${VAR:-…}` filled from a `.env` made the way `.env.example` says (one
//! fresh random value per variable it lists). What only Docker provides is mapped:
//! service host names become this machine's services (`VIVIFIED_TEST_POSTGRES_URL`
//! with a fresh database, `VIVIFIED_TEST_NATS_URL`), container ports free loopback
//! ports, and paths inside mounted volumes directories of the test. The core's
//! certificate is made with the `openssl` recipe `.env.example` shows, and every request
//! of the test goes over HTTPS trusting only that CA, as the plugin does.
//!
//! Needs `VIVIFIED_TEST_POSTGRES_URL` and `VIVIFIED_TEST_NATS_URL`; without them it
//! prints a skip line, and with `CI=true` it fails instead.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};
use vivified_test_support::postgres::ScratchDb;

// ---------------------------------------------------------------------------------
// docker-compose.yml and .env.example

fn compose() -> Value {
    let text = std::fs::read_to_string(workspace_root().join("docker-compose.yml"))
        .expect("docker-compose.yml");
    vivified_test_support::yaml::documents(&text)
        .into_iter()
        .next()
        .expect("one document")
}

/// A `.env` as `.env.example` asks for it: every `NAME=` line it lists (commented-out
/// optional ones stay unset) gets its own random hex value.
fn dot_env() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(workspace_root().join(".env.example")).expect(".env.example");
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| (k.trim().to_owned(), random_hex()))
        .collect()
}

/// Runs the certificate recipe `.env.example` shows (its commented `openssl` lines,
/// without the `chown` and the `mv` of the CA key) in `project`.
fn make_certificates(project: &Path) {
    let text =
        std::fs::read_to_string(workspace_root().join(".env.example")).expect(".env.example");
    let recipe: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .skip_while(|l| !l.starts_with("mkdir -p tls"))
        .take_while(|l| !l.starts_with("sudo chown"))
        .collect();
    assert!(
        recipe.iter().any(|l| l.starts_with("openssl x509")),
        ".env.example shows how to make the certificates: {recipe:?}"
    );
    let out = Command::new("sh")
        .current_dir(project)
        .args(["-ec", &format!("{}\nchmod 0600 tls.key", recipe.join("\n"))])
        .output()
        .expect("sh runs (openssl must be on PATH)");
    assert!(
        out.status.success(),
        "the recipe of .env.example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["tls/ca.crt", "tls/tls.crt", "tls/tls.key"] {
        assert!(project.join(f).is_file(), "the recipe made {f}");
    }
}

/// A client that trusts only the CA in `ca.crt`.
fn https(ca: &Path) -> reqwest::Client {
    vivified_plugin_sdk::install_crypto_provider();
    let pem = std::fs::read(ca).expect("ca.crt");
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("PEM"))
        .build()
        .expect("a client")
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> Option<(u16, Value)> {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// 64 hex characters (as `openssl rand -hex 32`), from std's randomly keyed hasher.
fn random_hex() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    (0..4u8)
        .map(|i| format!("{:016x}", state.hash_one(i)))
        .collect()
}

/// Compose's interpolation of `${NAME}`, `${NAME:-default}` and `${NAME:?message}`
/// (an empty value counts as unset, as in compose).
fn interpolate(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closing brace") + start;
        let expr = &rest[start + 2..end];
        let set = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let resolved = if let Some((name, message)) = expr.split_once(":?") {
            set(name).unwrap_or_else(|| panic!("compose would refuse to start: {message}"))
        } else if let Some((name, default)) = expr.split_once(":-") {
            set(name).unwrap_or_else(|| default.to_owned())
        } else {
            set(expr).unwrap_or_default()
        };
        out.push_str(&resolved);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A service's environment from the compose file, interpolated.
fn service_env(
    compose: &Value,
    service: &str,
    env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    compose["services"][service]["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("services.{service}.environment is a mapping"))
        .iter()
        .map(|(k, v)| {
            let raw = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), interpolate(&raw, env))
        })
        .collect()
}

/// The service's volumes (`source:target[:mode]`, interpolated first), each target
/// mapped to a path of the test: a bind mount (`./…` or `/…`) to its source under
/// `project` (where compose would resolve it), a named volume to a fresh directory. A
/// value under a target is rewritten to the same path under the mapped one.
fn volume_map(
    compose: &Value,
    service: &str,
    env: &BTreeMap<String, String>,
    project: &Path,
) -> Vec<(String, PathBuf)> {
    compose["services"][service]["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let (source, target) = match v {
                // Long form: `source`, `target`.
                Value::Object(m) => {
                    let field = |k: &str| {
                        m.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_else(|| panic!("{service}: a volume without {k}: {v}"))
                    };
                    (
                        interpolate(field("source"), env),
                        field("target").to_owned(),
                    )
                }
                // Short form: `source:target[:mode]`.
                _ => {
                    let v = interpolate(v.as_str().expect("a volume"), env);
                    let mut parts = v.split(':');
                    let source = parts.next().expect("a volume source").to_owned();
                    let target = parts
                        .next()
                        .unwrap_or_else(|| panic!("{service}: a volume without a target: {v}"))
                        .to_owned();
                    (source, target)
                }
            };
            let local = if let Some(rel) = source.strip_prefix("./") {
                project.join(rel)
            } else if source.starts_with('/') {
                panic!("{service}: an absolute bind mount cannot be mapped: {v}")
            } else {
                let dir = project.join("volumes").join(&source);
                std::fs::create_dir_all(&dir).expect("a volume directory");
                dir
            };
            (target, local)
        })
        .collect()
}

fn map_paths(env: &mut BTreeMap<String, String>, volumes: &[(String, PathBuf)]) {
    for value in env.values_mut() {
        for (target, local) in volumes {
            if let Some(rest) = value.strip_prefix(target.as_str()) {
                *value = format!("{}{rest}", local.display());
            }
        }
    }
}

/// Replaces a URL's `host:port` authority (after any `user:password@`).
fn with_host(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let creds = authority
        .rsplit_once('@')
        .map(|(c, _)| format!("{c}@"))
        .unwrap_or_default();
    format!("{scheme}://{creds}{host_port}{path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_topology_runs_as_processes() {
    let (Some(nats_url), Some(db)) = (
        vivified_test_support::services::nats_url(),
        ScratchDb::create("vivified_compose").await,
    ) else {
        return;
    };
    let _ = server_binary();
    let compose = compose();
    let dot_env = dot_env();
    let dir = TempDir::new("compose");
    let (core_port, plugin_port) = (free_port(), free_port());

    // The core: compose's environment, with Docker's names mapped to this machine.
    let mut core_env = service_env(&compose, "core", &dot_env);
    assert_eq!(core_env["VIVIFIED_MODE"], "production");
    make_certificates(dir.path());
    let volumes = volume_map(&compose, "core", &dot_env, dir.path());
    map_paths(&mut core_env, &volumes);
    for (name, url) in [
        ("DATABASE_URL", db.url().to_owned()),
        ("NATS_URL", nats_url.clone()),
    ] {
        let declared = core_env
            .get(name)
            .unwrap_or_else(|| panic!("compose gives the core {name}"));
        assert!(
            declared.contains("@postgres:5432/") || declared.contains("@nats:4222"),
            "{name} points at the compose service: {declared}"
        );
        // The test's services take no password; the URL's host and database change.
        core_env.insert(name.to_owned(), url);
    }
    core_env.insert("VIVIFIED_BIND".to_owned(), format!("127.0.0.1:{core_port}"));
    core_env.insert("VIVIFIED_HEARTBEAT_INTERVAL".to_owned(), "1s".to_owned());
    let admin = core_env["VIVIFIED_ADMIN_TOKEN"].clone();
    let registration_secret = core_env["VIVIFIED_REGISTRATION_SECRET"].clone();
    let core_vars: Vec<(&str, String)> = core_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let core = start_core_with(dir.path(), core_port, &core_vars);
    assert!(
        core_env.contains_key("VIVIFIED_TLS_CERT"),
        "compose serves HTTPS: {core_env:?}"
    );
    let client = https(&dir.path().join("tls/ca.crt"));
    let base = format!("https://127.0.0.1:{core_port}");
    eventually("the core ready", &[&core], || async {
        get(&client, &format!("{base}/ready"), None)
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;

    // Production mode: a new id needs the registration secret.
    let resp = client
        .post(format!("{base}/plugins/register"))
        .json(&json!({
            "id": "compose-intruder", "name": "x", "version": "1.0.0", "contracts": [],
            "traits": [], "security": {"authentication_required": false, "data_classification": ["internal"]},
            "compliance": {"hipaa_controls": [], "audit_level": "basic"}
        }))
        .send()
        .await
        .expect("the core answers");
    assert_eq!(resp.status(), 401, "registration without the secret");

    // The plugin: compose's environment, CORE_URL pointed at the core's port.
    let mut plugin_env = service_env(&compose, "user-management-plugin", &dot_env);
    let volumes = volume_map(&compose, "user-management-plugin", &dot_env, dir.path());
    map_paths(&mut plugin_env, &volumes);
    let core_url = plugin_env
        .remove("CORE_URL")
        .expect("compose gives the plugin CORE_URL");
    assert!(core_url.contains("//core:8000"), "{core_url}");
    let core_url = with_host(&core_url, &format!("127.0.0.1:{core_port}"));
    plugin_env.insert("PLUGIN_BIND".to_owned(), format!("127.0.0.1:{plugin_port}"));
    assert_eq!(
        plugin_env.get("VIVIFIED_REGISTRATION_SECRET"),
        Some(&registration_secret),
        "the plugin and the core share the registration secret"
    );
    let plugin_vars: Vec<(&str, String)> = plugin_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let plugin_dir = TempDir::new("compose-plugin");
    let mut plugin = start_plugin_with(plugin_dir.path(), plugin_port, &core_url, &plugin_vars);

    let record = |after: Option<Value>| {
        let (base, admin, client) = (base.clone(), admin.clone(), client.clone());
        async move {
            let (status, r) = get(
                &client,
                &format!("{base}/plugins/user-management"),
                Some(&admin),
            )
            .await?;
            (status == 200
                && r["status"] == "active"
                && r["health"] == "healthy"
                && after
                    .as_ref()
                    .is_none_or(|a| a["last_heartbeat"] != r["last_heartbeat"]))
            .then_some(r)
        }
    };
    let first = eventually(
        "the plugin registered and active",
        &[&plugin, &core],
        || record(None),
    )
    .await;
    eventually("a later heartbeat", &[&plugin, &core], || {
        record(Some(first.clone()))
    })
    .await;

    // The plugin kept its token where compose's volume keeps it.
    let token_file = plugin_env
        .get("PLUGIN_TOKEN_FILE")
        .expect("compose gives the plugin a token file");
    let token: Value =
        serde_json::from_str(&std::fs::read_to_string(token_file).expect("the token file"))
            .expect("JSON");
    let token = token["token"].as_str().expect("a token").to_owned();

    // Events go through NATS: a subscriber registered with the secret gets what the
    // plugin publishes.
    let resp = client
        .post(format!("{base}/plugins/register"))
        .bearer_auth(&registration_secret)
        .json(&json!({
            "id": "compose-subscriber", "name": "subscriber", "version": "1.0.0",
            "contracts": [], "traits": [], "subscriptions": ["compose.*"],
            "security": {"authentication_required": false, "data_classification": ["internal"]},
            "compliance": {"hipaa_controls": [], "audit_level": "basic"}
        }))
        .send()
        .await
        .expect("the core answers");
    assert_eq!(resp.status(), 200, "registration with the secret");
    let subscriber: Value = resp.json().await.expect("JSON");
    let subscriber = subscriber["token"].as_str().expect("a token").to_owned();
    let resp = client
        .post(format!("{base}/events"))
        .bearer_auth(&token)
        .json(&json!({"event_type": "compose.checked", "data_traits": ["internal"], "payload": {"n": 1}}))
        .send()
        .await
        .expect("the core answers");
    assert_eq!(resp.status(), 202);
    let receipt: Value = resp.json().await.expect("JSON");
    assert_eq!(receipt["delivered"], 1, "{receipt}");
    let (status, got) = get(
        &client,
        &format!("{base}/plugins/compose-subscriber/events?wait=5s"),
        Some(&subscriber),
    )
    .await
    .expect("the core answers");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["events"][0]["event_id"], receipt["event_id"], "{got}");
    assert_eq!(got["events"][0]["source_plugin"], "user-management");

    // The audit chain of the run verifies.
    let (status, verify) = get(&client, &format!("{base}/audit/verify"), Some(&admin))
        .await
        .expect("the core answers");
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["intact"], true, "{verify}");

    // Stop the plugin (it keeps its registration), then deregister both with the admin
    // token, which also removes their NATS queues (the ids are fixed).
    assert!(plugin.terminate().success(), "{}", plugin.describe());
    for id in ["compose-subscriber", "user-management"] {
        let resp = client
            .delete(format!("{base}/plugins/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("the core answers");
        assert_eq!(resp.status(), 204, "deregister {id}");
    }
    let mut core = core;
    assert!(core.terminate().success(), "{}", core.describe());
    for text in [
        core.stdout(),
        core.stderr(),
        plugin.stdout(),
        plugin.stderr(),
    ] {
        for secret in dot_env.values() {
            assert!(
                !text.contains(secret.as_str()),
                "a secret from .env was printed"
            );
        }
        assert!(!text.contains(&token) && !text.contains(&subscriber));
    }
}
