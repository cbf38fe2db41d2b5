//! The runner against a real core (in-process, `vivified-testkit`): registration,
//! heartbeats, a late core, restarts with a kept token, re-registration, production
//! mode, refresh, deregistration, and refusals.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Logs, TempDir, TestPlugin, fast_config, free_port, token_in};
use vivified_plugin_sdk::{
    DataClass, HealthReport, Manifest, PluginStatus, PluginTrait, Refusal, RunError, Runner,
};
use vivified_testkit::TestCore;

const WAIT: Duration = Duration::from_secs(10);

fn spawn<P: vivified_plugin_sdk::Plugin>(
    runner: Runner<P>,
) -> tokio::task::JoinHandle<Result<(), RunError>> {
    tokio::spawn(runner.run_until(std::future::pending()))
}

#[tokio::test]
async fn registers_heartbeats_and_reports_health() {
    let (logs, _guard) = Logs::capture_json();
    let core = TestCore::start().await.unwrap();
    let dir = TempDir::new("hb");
    let mut config = fast_config(core.url());
    config.token_file = Some(dir.join("token.json"));
    let plugin = TestPlugin::new("hb-plugin");
    let health = plugin.health.clone();
    let checks = plugin.health_checks.clone();
    let initialized = plugin.initialized.clone();
    let runner = Runner::new(plugin, config).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);

    let status = handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    let PluginStatus::Registered {
        heartbeat_interval, ..
    } = status
    else {
        unreachable!()
    };
    assert_eq!(heartbeat_interval, Duration::from_millis(250));
    assert!(initialized.load(Ordering::SeqCst));
    core.wait_for_plugin("hb-plugin", WAIT, "active and healthy", |r| {
        r["status"] == "active" && r["health"] == "healthy"
    })
    .await
    .unwrap();

    // The health check's answer travels with the next heartbeats.
    *health.lock().unwrap() = HealthReport::degraded().with_detail("queue_depth", 7);
    core.wait_for_plugin("hb-plugin", WAIT, "degraded", |r| r["health"] == "degraded")
        .await
        .unwrap();
    let first = core.plugin("hb-plugin").await.unwrap().unwrap()["last_heartbeat"].clone();
    core.wait_for_plugin("hb-plugin", WAIT, "a later heartbeat", |r| {
        r["last_heartbeat"] != first
    })
    .await
    .unwrap();
    assert!(checks.load(Ordering::SeqCst) >= 3);

    // The token is kept with mode 0600 and never logged.
    let token = token_in(&dir.join("token.json"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("token.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    handle.stop();
    task.await.unwrap().unwrap();
    assert_eq!(handle.status(), PluginStatus::Stopped);
    let text = logs.text();
    assert!(!text.contains(&token), "the token was logged");
    assert_eq!(
        logs.with_message("registered with the core").len(),
        1,
        "{text}"
    );
    for line in logs.lines() {
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn waits_for_a_core_that_starts_later() {
    let (logs, _guard) = Logs::capture_json();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let runner = Runner::new(TestPlugin::new("late-core"), fast_config(&url)).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);

    handle
        .wait_for(
            WAIT,
            |s| matches!(s, PluginStatus::Connecting { attempt } if *attempt >= 3),
        )
        .await
        .expect("keeps retrying while nothing listens");
    let retries = logs.with_message("core not reachable; retrying registration");
    assert!(retries.len() >= 3, "{}", logs.text());
    // One line per backoff step, each saying when the next attempt comes.
    let attempts: Vec<u64> = retries
        .iter()
        .map(|l| l["fields"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, (1..=attempts.len() as u64).collect::<Vec<_>>());
    assert!(
        retries
            .iter()
            .all(|l| l["level"] == "WARN" && l["fields"]["retry_in_ms"].is_u64())
    );

    let core = TestCore::builder()
        .bind(format!("127.0.0.1:{port}").parse().unwrap())
        .start()
        .await
        .unwrap();
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .expect("registers once the core is up");
    core.wait_for_plugin("late-core", WAIT, "active", |r| r["status"] == "active")
        .await
        .unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_restarted_plugin_re_registers_with_its_kept_token() {
    let core = TestCore::start().await.unwrap();
    let dir = TempDir::new("restart");
    let file = dir.join("state/token.json");
    let mut config = fast_config(core.url());
    config.token_file = Some(file.clone());

    let runner = Runner::new(TestPlugin::new("restarts"), config.clone()).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    let first = core
        .wait_for_plugin("restarts", WAIT, "active", |r| r["status"] == "active")
        .await
        .unwrap();
    let first_token = token_in(&file);
    handle.stop();
    task.await.unwrap().unwrap();
    assert!(file.exists(), "the token outlives the run");

    // Without the kept token the held id is refused (409) and the runner says so.
    let runner = Runner::new(TestPlugin::new("restarts"), fast_config(core.url())).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, |s| {
            *s == PluginStatus::Refused(Refusal::AlreadyRegistered)
        })
        .await
        .expect("409 is reported");
    handle.stop();
    task.await.unwrap().unwrap();

    // With it, the plugin takes its registration back.
    let runner = Runner::new(TestPlugin::new("restarts"), config).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    let again = core.plugin("restarts").await.unwrap().unwrap();
    assert_eq!(
        again["registered_at"], first["registered_at"],
        "a re-registration, not a new one"
    );
    assert_ne!(
        token_in(&file),
        first_token,
        "the re-registration rotated the token"
    );
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn re_registers_after_an_operator_deregisters_it() {
    let (logs, _guard) = Logs::capture_json();
    let core = TestCore::start().await.unwrap();
    let runner = Runner::new(TestPlugin::new("comes-back"), fast_config(core.url())).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    let first = core
        .wait_for_plugin("comes-back", WAIT, "active", |r| r["status"] == "active")
        .await
        .unwrap();
    assert!(core.deregister("comes-back").await.unwrap());
    let back = core
        .wait_for_plugin("comes-back", WAIT, "registered again", |r| {
            r.is_object() && r["registered_at"] != first["registered_at"]
        })
        .await
        .unwrap();
    assert_eq!(back["plugin_id"], "comes-back");
    assert!(
        !logs
            .with_message("heartbeat refused; re-registering")
            .is_empty()
    );
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn enrolls_once_then_keeps_its_token_across_restarts() {
    let (logs, _guard) = Logs::capture_json();
    let core = TestCore::builder().enrollment_only().start().await.unwrap();
    let dir = TempDir::new("enroll");
    let token_file = dir.path().join("token");
    let enrollment = core.enroll("enrolled").await.unwrap();
    let config = || {
        let mut config = fast_config(core.url());
        config.enrollment_token = Some(vivified_plugin_sdk::Secret::new(enrollment.as_str()));
        config.token_file = Some(token_file.clone());
        config
    };
    for round in 0..2 {
        let runner = Runner::new(TestPlugin::new("enrolled"), config()).unwrap();
        let handle = runner.handle();
        let task = spawn(runner);
        handle
            .wait_for(WAIT, PluginStatus::is_registered)
            .await
            .unwrap_or_else(|| panic!("round {round}: not registered"));
        core.wait_for_plugin("enrolled", WAIT, "active", |r| r["status"] == "active")
            .await
            .unwrap();
        handle.stop();
        task.await.unwrap().unwrap();
    }
    // The first start enrolled; the second re-registered with the kept token, so the
    // one-time token was presented once.
    let credentials: Vec<String> = logs
        .with_message("registered with the core")
        .iter()
        .map(|l| {
            l["fields"]["credential"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(credentials, ["enrollment_token", "token"]);
    assert!(!token_in(&token_file).is_empty());
}

#[tokio::test]
async fn comes_back_by_itself_after_an_operator_revokes_every_token() {
    let (logs, _guard) = Logs::capture_json();
    let core = TestCore::builder().production().start().await.unwrap();
    let mut config = fast_config(core.url());
    config.registration_secret = Some(vivified_plugin_sdk::Secret::new(
        core.registration_secret().unwrap(),
    ));
    let runner = Runner::new(TestPlugin::new("revoked-one"), config).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    let first = core
        .wait_for_plugin("revoked-one", WAIT, "active", |r| r["status"] == "active")
        .await
        .unwrap();
    core.revoke_tokens(None).await.unwrap();
    // Its heartbeat is refused, its kept token too; the registration secret takes the
    // id back with a new registration.
    let back = core
        .wait_for_plugin("revoked-one", WAIT, "registered again", |r| {
            r.is_object() && r["registered_at"] != first["registered_at"]
        })
        .await
        .unwrap();
    assert_eq!(back["plugin_id"], "revoked-one");
    core.wait_for_plugin("revoked-one", WAIT, "active again", |r| {
        r["status"] == "active"
    })
    .await
    .unwrap();
    assert!(
        !logs
            .with_message("the core refused the kept token; registering as a new plugin")
            .is_empty()
    );
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn production_core_needs_the_registration_secret() {
    let core = TestCore::builder().production().start().await.unwrap();
    let runner = Runner::new(TestPlugin::new("prod-plugin"), fast_config(core.url())).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, |s| {
            *s == PluginStatus::Refused(Refusal::RegistrationSecretRequired)
        })
        .await
        .expect("the missing secret is reported");
    handle.stop();
    task.await.unwrap().unwrap();

    let mut config = fast_config(core.url());
    config.registration_secret = Some(vivified_plugin_sdk::Secret::new(
        core.registration_secret().unwrap(),
    ));
    let runner = Runner::new(TestPlugin::new("prod-plugin"), config).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    core.wait_for_plugin("prod-plugin", WAIT, "active", |r| r["status"] == "active")
        .await
        .unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn refreshes_the_token_before_it_expires() {
    let (logs, _guard) = Logs::capture_json();
    let core = TestCore::builder()
        .token_ttl(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let runner = Runner::new(TestPlugin::new("refresher"), fast_config(core.url())).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    let PluginStatus::Registered {
        expires_at: first, ..
    } = handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap()
    else {
        unreachable!()
    };
    let later = handle
        .wait_for(
            WAIT,
            |s| matches!(s, PluginStatus::Registered { expires_at, .. } if *expires_at > first),
        )
        .await
        .expect("a refresh moved the expiry");
    let PluginStatus::Registered {
        expires_at: second, ..
    } = later
    else {
        unreachable!()
    };
    handle
        .wait_for(
            WAIT,
            |s| matches!(s, PluginStatus::Registered { expires_at, .. } if *expires_at > second),
        )
        .await
        .expect("and again");
    assert!(logs.with_message("token refreshed").len() >= 2);
    assert!(
        logs.with_message("heartbeat refused; re-registering")
            .is_empty(),
        "{}",
        logs.text()
    );
    core.wait_for_plugin("refresher", WAIT, "active", |r| r["status"] == "active")
        .await
        .unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn deregisters_on_shutdown_when_configured() {
    let core = TestCore::start().await.unwrap();
    let dir = TempDir::new("dereg");
    let mut config = fast_config(core.url());
    config.deregister_on_shutdown = true;
    config.token_file = Some(dir.join("token.json"));
    let plugin = TestPlugin::new("leaver");
    let shut_down = plugin.shut_down.clone();
    let ctx = plugin.ctx.clone();
    let runner = Runner::new(plugin, config).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    assert!(core.plugin("leaver").await.unwrap().is_some());
    let ctx = ctx
        .lock()
        .unwrap()
        .clone()
        .expect("initialized with a context");
    assert_eq!(ctx.plugin_id(), "leaver");
    assert_eq!(ctx.core_url(), core.url());
    handle.stop();
    tokio::time::timeout(WAIT, ctx.stopping())
        .await
        .expect("the context says stopping");
    task.await.unwrap().unwrap();
    assert!(shut_down.load(Ordering::SeqCst));
    assert_eq!(core.plugin("leaver").await.unwrap(), None, "deregistered");
    assert_eq!(
        token_in(&dir.join("token.json")),
        "",
        "the dead token is removed; the instance id stays"
    );
}

#[tokio::test]
async fn a_token_from_another_core_is_dropped_and_the_plugin_registers_anew() {
    let (logs, _guard) = Logs::capture_json();
    let dir = TempDir::new("foreign");
    let file = dir.join("token.json");
    let mut config = fast_config("http://127.0.0.1:1");
    config.token_file = Some(file.clone());
    {
        let old = TestCore::start().await.unwrap();
        config.core_url = old.url().to_owned();
        let runner = Runner::new(TestPlugin::new("migrant"), config.clone()).unwrap();
        let handle = runner.handle();
        let task = spawn(runner);
        handle
            .wait_for(WAIT, PluginStatus::is_registered)
            .await
            .unwrap();
        handle.stop();
        task.await.unwrap().unwrap();
        old.stop().await;
    }
    // A new core with another JWT secret and an empty store, in production mode (a
    // dev core ignores a credential sent for a new id, so it would just register).
    let core = TestCore::builder().production().start().await.unwrap();
    config.core_url = core.url().to_owned();
    config.registration_secret = Some(vivified_plugin_sdk::Secret::new(
        core.registration_secret().unwrap(),
    ));
    let runner = Runner::new(TestPlugin::new("migrant"), config).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    assert!(core.plugin("migrant").await.unwrap().is_some());
    let dropped = logs.with_message("the core refused the kept token; registering as a new plugin");
    assert_eq!(dropped.len(), 1, "{}", logs.text());
    assert_eq!(
        dropped[0]["fields"]["reason"],
        "registration_secret_required"
    );
    let registered = logs.with_message("registered with the core");
    assert_eq!(
        registered.last().unwrap()["fields"]["credential"],
        "registration_secret"
    );
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_manifest_the_core_refuses_stops_the_runner() {
    let core = TestCore::start().await.unwrap();
    // `invalid_domain` is the one rule only the core checks.
    let manifest = Manifest::builder("bad-domain", "Bad domain", "1.0.0")
        .traits([PluginTrait::ExternalService])
        .allowed_domain("localhost")
        .build()
        .expect("the SDK leaves domains to the core");
    let runner = Runner::new(TestPlugin::with_manifest(manifest), fast_config(core.url())).unwrap();
    match tokio::time::timeout(WAIT, runner.run_until(std::future::pending()))
        .await
        .unwrap()
    {
        Err(RunError::Manifest(e)) => {
            assert_eq!(e.violations.len(), 1);
            assert_eq!(e.violations[0].code, "invalid_domain");
            assert_eq!(e.violations[0].path, "/allowed_domains/0");
        }
        other => panic!("expected the core's violations, got {other:?}"),
    }
    assert!(core.plugins().await.unwrap().is_empty());
}

#[tokio::test]
async fn refusals_before_anything_is_sent() {
    // A manifest the SDK's own check refuses.
    let mut manifest = Manifest::builder("pii-open", "PII", "1.0.0").into_unchecked();
    manifest.traits.push(PluginTrait::HandlesPii);
    manifest.security.data_classification.push(DataClass::Pii);
    match Runner::new(
        TestPlugin::with_manifest(manifest),
        fast_config("http://127.0.0.1:1"),
    ) {
        Err(RunError::Manifest(e)) => {
            assert_eq!(e.violations[0].code, "sensitive_requires_authentication");
        }
        Err(e) => panic!("expected a manifest error, got {e}"),
        Ok(_) => panic!("expected a manifest error"),
    }
    assert!(matches!(
        Runner::new(TestPlugin::new("x"), fast_config("not a url")),
        Err(RunError::CoreUrl(_))
    ));

    // A plugin that cannot initialize is never registered.
    let core = TestCore::start().await.unwrap();
    let mut plugin = TestPlugin::new("broken");
    plugin.fail_init = true;
    let runner = Runner::new(plugin, fast_config(core.url())).unwrap();
    let handle = runner.handle();
    let err = runner.run_until(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, RunError::Initialize(_)), "{err}");
    assert_eq!(handle.status(), PluginStatus::Stopped);
    assert!(core.plugins().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_disabled_plugin_keeps_running_and_comes_back_when_enabled() {
    let (logs, _guard) = Logs::capture_json();
    let core = TestCore::start().await.unwrap();
    let runner = Runner::new(TestPlugin::new("switched"), fast_config(core.url())).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();

    core.disable("switched", "maintenance").await.unwrap();
    handle
        .wait_for(WAIT, |s| *s == PluginStatus::Disabled)
        .await
        .expect("403 plugin_disabled is reported");
    assert!(!task.is_finished(), "it keeps running");
    core.enable("switched").await.unwrap();
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .expect("heartbeats accepted again once enabled");
    assert!(
        !logs
            .with_message("the plugin is disabled by an operator; heartbeating with backoff")
            .is_empty()
    );
    core.wait_for_plugin("switched", WAIT, "enabled and active", |r| {
        r["enabled"] == true && r["status"] == "active"
    })
    .await
    .unwrap();
    handle.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn replicas_register_as_instances_and_keep_their_instance_ids() {
    let core = TestCore::builder().enrollment_only().start().await.unwrap();
    let dir = TempDir::new("replicas");
    let config = |file: &str, instance: Option<&str>, enrollment: String| {
        let mut config = fast_config(core.url());
        config.enrollment_token = Some(vivified_plugin_sdk::Secret::new(enrollment));
        config.token_file = Some(dir.path().join(file));
        config.instance_id = instance.map(str::to_owned);
        config
    };
    let kept_instance = |file: &str| -> String {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["instance_id"].as_str().unwrap().to_owned()
    };
    let a = config("a.json", None, core.enroll("replicated").await.unwrap());
    let b = config(
        "b.json",
        Some("replica-b"),
        core.enroll("replicated").await.unwrap(),
    );
    let mut tasks = Vec::new();
    for c in [a.clone(), b] {
        let runner = Runner::new(TestPlugin::new("replicated"), c).unwrap();
        let handle = runner.handle();
        tasks.push((handle.clone(), spawn(runner)));
        handle
            .wait_for(WAIT, PluginStatus::is_registered)
            .await
            .unwrap();
    }
    let both = core
        .wait_for_plugin("replicated", WAIT, "two active instances", |r| {
            r["instances"]
                .as_array()
                .is_some_and(|i| i.len() == 2 && i.iter().all(|i| i["status"] == "active"))
        })
        .await
        .unwrap();
    let generated = kept_instance("a.json");
    assert!(generated.starts_with("i-"), "{generated}");
    assert_eq!(kept_instance("b.json"), "replica-b");
    let mut ids: Vec<&str> = both["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = [generated.as_str(), "replica-b"];
    want.sort_unstable();
    assert_eq!(ids, want);
    // A restarted replica comes back as the same instance, with its kept token.
    let (handle, task) = tasks.remove(0);
    handle.stop();
    task.await.unwrap().unwrap();
    let runner = Runner::new(TestPlugin::new("replicated"), a).unwrap();
    let handle = runner.handle();
    let task = spawn(runner);
    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .unwrap();
    assert_eq!(kept_instance("a.json"), generated);
    let after = core.plugin("replicated").await.unwrap().unwrap();
    assert_eq!(after["instances"].as_array().unwrap().len(), 2, "{after}");
    handle.stop();
    task.await.unwrap().unwrap();
    let (handle, task) = tasks.remove(0);
    handle.stop();
    task.await.unwrap().unwrap();
}
