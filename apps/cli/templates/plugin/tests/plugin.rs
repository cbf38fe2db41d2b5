//! The plugin against a real Vivified core started in-process by `vivified-testkit`
//! (in-memory store, free loopback port, 250 ms heartbeats): it registers, its
//! heartbeats arrive, and it handles an event another plugin publishes.

use std::time::{Duration, Instant};

use serde_json::json;
use vivified_plugin_sdk::{Config, Plugin, PluginStatus, Runner};
use vivified_testkit::{TestCore, manifest};

use {{crate_ident}}::{{type_name}};

const PLUGIN_ID: &str = "{{plugin_id}}";
/// Another plugin, registered straight through the test kit, that publishes.
const PUBLISHER: &str = "{{peer_id}}";
const WAIT: Duration = Duration::from_secs(10);

#[test]
fn the_manifest_is_valid() {
    let plugin = {{type_name}}::new().unwrap();
    assert_eq!(plugin.manifest().id, PLUGIN_ID);
}

#[tokio::test]
async fn registers_heartbeats_and_handles_events() {
    let core = TestCore::start().await.expect("the test core starts");
    let config = Config::new(core.url());
    let runner = Runner::new({{type_name}}::new().unwrap(), config)
        .unwrap()
        .handle_events();
    let plugin = runner.plugin().clone();
    let handle = runner.handle();
    let task = tokio::spawn(runner.run_until(std::future::pending()));

    handle
        .wait_for(WAIT, PluginStatus::is_registered)
        .await
        .expect("the plugin registers");
    // A record turns active with the first heartbeat the core accepts.
    let record = core
        .wait_for_plugin(PLUGIN_ID, WAIT, "a heartbeat", |r| r["status"] == "active")
        .await
        .unwrap();
    assert_eq!(record["health"], "healthy");

    // An event of a type the manifest subscribes to reaches the plugin's handler.
    let publisher = core.register(&manifest(PUBLISHER, &[])).await.unwrap();
    let event = json!({"event_type": format!("{PLUGIN_ID}.ping"), "payload": {"n": 1}});
    let receipt = core
        .publish(publisher["token"].as_str().unwrap(), &event)
        .await
        .unwrap();
    assert_eq!(receipt["delivered"], 1, "{receipt}");
    let deadline = Instant::now() + WAIT;
    while plugin.events_handled() < 1 {
        assert!(Instant::now() < deadline, "no event handled in time");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    handle.stop();
    task.await.unwrap().unwrap();
    core.stop().await;
}
