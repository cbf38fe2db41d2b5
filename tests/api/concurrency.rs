//! Concurrent registrations of one id: exactly one wins, the rest get 409.

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use vivified_ports::store::MockPluginStore;
use vivified_ports::{PluginId, StoreError};

use crate::helpers::{TestApp, assert_error, manifest};

const RACERS: usize = 20;

async fn race(app: &Arc<TestApp>, id: &str) -> Vec<crate::helpers::TestResponse> {
    let handles: Vec<_> = (0..RACERS)
        .map(|_| {
            let app = Arc::clone(app);
            let m = manifest(id);
            tokio::spawn(async move { app.register(&m, None).await })
        })
        .collect();
    let mut out = Vec::with_capacity(RACERS);
    for h in handles {
        out.push(h.await.expect("no task panics"));
    }
    out
}

fn one_winner(resps: &[crate::helpers::TestResponse]) -> String {
    let winners: Vec<_> = resps
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one 200 among {:?}",
        resps.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in resps.iter().filter(|r| r.status != StatusCode::OK) {
        assert_error(r, StatusCode::CONFLICT, "already_registered");
    }
    winners[0].token()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_id_have_exactly_one_winner() {
    let app = Arc::new(TestApp::dev());
    for round in 0..5 {
        let id = format!("contested-{round}");
        let resps = race(&app, &id).await;
        let token = one_winner(&resps);
        let resp = app.heartbeat(&id, Some(&token), None).await;
        assert_eq!(resp.status, StatusCode::OK, "the winner's token is current");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_decides_the_winner_even_when_every_racer_saw_the_id_free() {
    // The worst interleaving: every racer's read says "free"; only the store's
    // insert (a unique key) can pick the winner, and the losers must answer 409.
    let taken = Arc::new(Mutex::new(None::<PluginId>));
    let mut store = MockPluginStore::new();
    store.expect_get().returning(|_| Ok(None));
    let slot = Arc::clone(&taken);
    store.expect_insert().returning(move |mut record| {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return Err(StoreError::Conflict);
        }
        *slot = Some(record.plugin_id.clone());
        record.version = 1;
        Ok(record)
    });
    let app = Arc::new(TestApp::builder().store(Arc::new(store)).build());
    let resps = race(&app, "contested").await;
    one_winner(&resps);
    assert_eq!(
        taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(PluginId::as_str),
        Some("contested")
    );
}
