//! The plugin in-process against a real in-process core (`vivified-testkit`): its
//! manifest, `/health`, and who may read `/api/users/{id}`.

use std::time::Duration;

use serde_json::Value;
use user_management_plugin::{UserManagement, manifest};
use vivified_plugin_sdk::{
    CanonicalUser, Config, IdentityPlugin, PluginStatus, Runner, RunnerHandle, UserQuery,
};
use vivified_test_support::logs::Logs;
use vivified_testkit::TestCore;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    core: TestCore,
    handle: RunnerHandle,
    task: tokio::task::JoinHandle<Result<(), vivified_plugin_sdk::RunError>>,
    base: String,
    http: reqwest::Client,
}

async fn start(cache: Duration) -> Running {
    let core = TestCore::start().await.unwrap();
    let mut config = Config::new(core.url());
    config.introspection_cache = cache;
    let runner = Runner::new(UserManagement::new("127.0.0.1:0"), config).unwrap();
    let plugin = runner.plugin().clone();
    let handle = runner.handle();
    let task = tokio::spawn(runner.run_until(std::future::pending()));
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    let base = format!("http://{}", plugin.local_addr().expect("listening"));
    vivified_plugin_sdk::install_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Running {
        core,
        handle,
        task,
        base,
        http,
    }
}

impl Running {
    async fn get_user(
        &self,
        id: &str,
        token: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.get(format!("{}/api/users/{id}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, resp.json().await.unwrap_or(Value::Null), headers)
    }

    async fn token_of(&self, id: &str, traits: &[&str]) -> String {
        self.core
            .register(&vivified_testkit::manifest(id, traits))
            .await
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn stop(self) {
        self.handle.stop();
        self.task.await.unwrap().unwrap();
    }
}

#[test]
fn the_manifest_is_the_seed_example() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas/examples/user-management.json");
    let example: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(serde_json::to_value(manifest()).unwrap(), example);
}

#[tokio::test]
async fn serves_users_only_to_active_callers_with_handles_pii() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = start(Duration::from_secs(1)).await;
    app.core
        .wait_for_plugin("user-management", WAIT, "active", |r| {
            r["status"] == "active"
        })
        .await
        .unwrap();

    let health: Value = app
        .http
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["core"], "registered");

    // No token: 401 with a challenge.
    let (status, body, headers) = app.get_user("1", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthorized");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let reader = app.token_of("pii-reader", &["handles_pii"]).await;
    let basic = app.token_of("basic-reader", &[]).await;

    // Forged: a real token with its signature altered, and a token of another core.
    // (A character well inside the signature, so that no padding bits are involved.)
    let mut chars: Vec<char> = reader.chars().collect();
    let i = chars.len() - 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let forged: String = chars.into_iter().collect();
    assert_eq!(app.get_user("1", Some(&forged)).await.0, 401);
    let other_core = TestCore::start().await.unwrap();
    let foreign = other_core
        .register(&vivified_testkit::manifest("pii-reader", &["handles_pii"]))
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.get_user("1", Some(&foreign)).await.0, 401);
    assert_eq!(app.get_user("1", Some("not-a-jwt")).await.0, 401);

    // Registered, but without handles_pii: 403 naming the trait.
    let (status, body, _) = app.get_user("1", Some(&basic)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["trait"], "handles_pii");

    // With handles_pii: the canonical user.
    let (status, body, headers) = app.get_user("1", Some(&reader)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let user: CanonicalUser = serde_json::from_value(body).unwrap();
    assert_eq!(user.username, "alice");
    assert_eq!(user.roles, ["admin", "user"]);
    let (status, body, _) = app.get_user("999", Some(&reader)).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    // A disabled caller is refused as not active once the cached answer runs out.
    app.core.disable("basic-reader", "test").await.unwrap();
    tokio::time::timeout(WAIT, async {
        while app.get_user("1", Some(&basic)).await.0 != 401 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the disabled caller's token is not active");

    // A deregistered caller is refused once the cached answer (1 s here) runs out.
    assert!(app.core.deregister("pii-reader").await.unwrap());
    tokio::time::timeout(WAIT, async {
        while app.get_user("1", Some(&reader)).await.0 != 401 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the dead token is refused");

    app.stop().await;
    let text = logs.text();
    for secret in [
        reader.as_str(),
        basic.as_str(),
        foreign.as_str(),
        "alice",
        "example.com",
    ] {
        assert!(!text.contains(secret), "logged {secret:?}:\n{text}");
    }
    assert!(
        text.contains("user served") && text.contains("user lookup refused"),
        "{text}"
    );
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["fields"]["message"].is_string());
    }
}

#[tokio::test]
async fn implements_the_identity_contract() {
    let plugin = UserManagement::new("127.0.0.1:0");
    assert_eq!(plugin.get_user("3").await.unwrap().username, "carol");
    assert!(plugin.get_user("nope").await.is_err());
    let query = UserQuery {
        role: Some("auditor".into()),
        ..UserQuery::default()
    };
    let found = plugin.find_users(&query).await.unwrap();
    assert_eq!(
        found.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["3"]
    );
}

#[tokio::test]
async fn a_bad_bind_address_stops_start_up() {
    let core = TestCore::start().await.unwrap();
    let runner = Runner::new(UserManagement::new("nowhere"), Config::new(core.url())).unwrap();
    let err = runner.run_until(std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("PLUGIN_BIND"), "{err}");
    assert!(
        core.plugins().await.unwrap().is_empty(),
        "nothing registered"
    );
}
