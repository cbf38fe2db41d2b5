//! Audit checkpoints leave the database twice: as a log line, and as an
//! `audit.checkpoint` event on the bus (on NATS, a subject), which `/audit/verify`
//! accepts as the `checkpoint` to check the chain against.

use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::watch;
use vivified_server::audit::{SealerConfig, seal_until_stopped};

use crate::helpers::{ADMIN_TOKEN, TestApp};

#[tokio::test]
async fn the_sealer_publishes_checkpoints_that_verify_the_chain() {
    let app = TestApp::dev();
    let mut rx = app.bus.subscribe();
    let chain = app.audit.clone().with_checkpoint_bus(app.bus.clone());
    let (stop, stopped) = watch::channel(false);
    let sealer = tokio::spawn(seal_until_stopped(
        chain,
        SealerConfig {
            interval: Duration::from_millis(10),
            checkpoint_every: 2,
            broken_at_start: false,
        },
        stopped,
    ));
    for id in ["cp-a", "cp-b", "cp-c"] {
        app.register_ok(id).await;
    }
    let checkpoint = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = rx.recv().await.expect("bus open");
            if event.event_type == "audit.checkpoint" {
                return event;
            }
        }
    })
    .await
    .expect("a checkpoint within 10 s");
    assert_eq!(checkpoint.source, "core");
    let text = checkpoint.payload["checkpoint"]
        .as_str()
        .expect("SEQ:HASH:MAC")
        .to_owned();
    assert!(checkpoint.payload["seq"].as_u64().unwrap() >= 2);
    let resp = app
        .get(
            &format!("/audit/verify?checkpoint={text}"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["intact"], true, "{}", resp.text());

    stop.send(true).expect("sealer running");
    sealer.await.expect("sealer stops");
    // The shutdown checkpoint is published too.
    let last = loop {
        let event = rx.try_recv().expect("the shutdown checkpoint");
        if event.event_type == "audit.checkpoint" && event.payload["at"] == "shutdown" {
            break event;
        }
    };
    assert!(last.payload["seq"].as_u64() >= checkpoint.payload["seq"].as_u64());
}
