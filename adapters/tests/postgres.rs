//! The Postgres store against a real server.
//!
//! Gated: runs when `VIVIFIED_TEST_POSTGRES_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); `.ci/run` sets it and fails if the
//! server is unreachable. Without it (a fresh machine), each test says so and passes.
//! Each test creates its own database and drops it afterwards.

use std::sync::Arc;

use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
use vivified_test_support::postgres::ScratchDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    let store = PostgresPluginStore::connect(db.url(), &PostgresConfig::default())
        .await
        .expect("connect");
    vivified_conformance::store::plugin_store_conformance(Arc::new(store.clone())).await;
    vivified_conformance::operators::operator_store_conformance(Arc::new(store.clone())).await;
    store.pool().close().await;
    db.drop_db().await;
}

// One thread: writes started together are all queued before the committing task runs,
// so they share a group.
#[tokio::test]
async fn group_commit_passes_its_conformance_suite() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    let config = PostgresConfig::default();
    let a = PostgresPluginStore::connect(db.url(), &config)
        .await
        .expect("connect");
    sqlx::raw_sql(
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.plugin_id = 'g-poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER poison BEFORE INSERT ON plugins FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .execute(a.pool())
    .await
    .expect("install the trigger");
    let wait = std::time::Duration::from_millis(200);
    let a = a.with_group_commit(wait);
    let b = PostgresPluginStore::connect(db.url(), &config)
        .await
        .expect("connect")
        .with_group_commit(wait);
    vivified_conformance::store::group_commit_conformance(
        Arc::new(a.clone()),
        Arc::new(b.clone()),
        "g-poison",
    )
    .await;
    a.pool().close().await;
    b.pool().close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_across_replicas() {
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    let config = PostgresConfig::default();
    let (a, b) = tokio::join!(
        PostgresPluginStore::connect(db.url(), &config),
        PostgresPluginStore::connect(db.url(), &config),
    );
    let (a, b) = (a.expect("replica a"), b.expect("replica b"));
    use vivified_ports::PluginStore;
    a.insert(vivified_conformance::store::record("shared", "j"))
        .await
        .unwrap();
    let seen = b.get(&"shared".parse().unwrap()).await.unwrap();
    assert!(
        seen.is_some(),
        "a record written through one pool is visible through the other"
    );
    a.pool().close().await;
    b.pool().close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_stored_before_instances_becomes_the_instance_default() {
    use vivified_ports::{Health, PluginStore};
    let Some(db) = ScratchDb::create("vivified_test").await else {
        return;
    };
    // The database as the previous version left it: migrations 1 to 8, one plugin.
    let pool = sqlx::PgPool::connect(db.url()).await.expect("connect");
    let mut old = vivified_adapters::postgres::migrator();
    old.migrations = std::borrow::Cow::Owned(old.migrations[..8].to_vec());
    old.run(&pool).await.expect("migrations 1 to 8");
    sqlx::query(vivified_conformance::store::PLUGIN_BEFORE_INSTANCES)
        .execute(&pool)
        .await
        .expect("an old row");
    pool.close().await;
    let store = PostgresPluginStore::connect(db.url(), &PostgresConfig::default())
        .await
        .expect("connect and migrate");
    let got = store
        .get(&"old".parse().unwrap())
        .await
        .unwrap()
        .expect("kept");
    vivified_conformance::store::assert_migrated_to_default_instance(&got);
    let at = got.last_heartbeat.unwrap() + time::Duration::seconds(1);
    store
        .record_heartbeat(&got.plugin_id, "jti-old", Health::Healthy, at, at)
        .await
        .expect("the kept token heartbeats");
    store.pool().close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn bad_url_and_unreachable_server_are_unavailable_without_the_password() {
    use vivified_ports::StoreError;
    let err =
        PostgresPluginStore::connect("postgres://user:s3cr3t-pw@[bad", &PostgresConfig::default())
            .await
            .expect_err("malformed URL");
    assert!(matches!(err, StoreError::Unavailable(_)));
    assert!(!format!("{err:?}").contains("s3cr3t-pw"));
    let config = PostgresConfig {
        acquire_timeout: std::time::Duration::from_secs(1),
        ..PostgresConfig::default()
    };
    let err = PostgresPluginStore::connect("postgres://user:s3cr3t-pw@127.0.0.1:1/db", &config)
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable(_)));
    assert!(!format!("{err:?}").contains("s3cr3t-pw"));
}
