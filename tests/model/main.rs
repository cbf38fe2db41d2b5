//! Model-based property tests: random sequences of register / re-register / heartbeat
//! / refresh / deregister / get / list / disable / enable (with right and wrong
//! credentials), clock moves and liveness sweeps, run against the real registry and a tiny reference model, compared after
//! every step. [`registry::run_model`] is generic over the store, so every
//! `PluginStore` adapter can run the same model.

mod audit_tx;
mod outbox;
mod registry;

use std::sync::Arc;

use vivified_adapters::memory::InMemoryPluginStore;

#[test]
fn registry_matches_the_model_on_the_in_memory_store() {
    let coverage = registry::run_model(|| Arc::new(InMemoryPluginStore::new()), 256);
    for (label, n) in &coverage {
        eprintln!("{n:6} {label}");
    }
    // The generator reaches the states that matter (each is expected well over ten
    // times in 256 cases, so a miss means the generator or the model is broken).
    for label in [
        "register new",
        "register reregistered",
        "register reregistered with an expired token",
        "register AlreadyRegistered",
        "register InvalidManifest",
        "register Unauthorized(\"registration_secret_required\")",
        "register Unauthorized(\"revoked_token\")",
        "register Unauthorized(\"revoked_token\") before InvalidManifest",
        "register Unauthorized(\"expired_token\")",
        "heartbeat Ok",
        "heartbeat Unauthorized(\"revoked_token\")",
        "heartbeat Unauthorized(\"expired_token\")",
        "heartbeat Forbidden(\"token_for_another_plugin\")",
        "heartbeat Forbidden(\"plugin_token_required\")",
        "another plugin's route, stale token: Unauthorized(\"revoked_token\")",
        "another plugin's route, stale token: Unauthorized(\"unknown_plugin\")",
        "list Unauthorized(\"revoked_token\")",
        "list Unauthorized(\"unknown_plugin\")",
        "list Forbidden(\"admin_token_required\")",
        "refresh Ok",
        "refresh Unauthorized(\"revoked_token\")",
        "deregister Ok",
        "get Ok",
        "sweep marks stale",
        "sweep deregisters",
        "sweep self-preservation",
        "heartbeat recovers a stale plugin",
        "heartbeat PluginDisabled",
        "refresh PluginDisabled",
        "disable Ok",
        "disable Forbidden(\"admin_token_required\")",
        "disable NotFound",
        "enable Ok",
    ] {
        assert!(
            coverage.get(label).is_some_and(|n| *n > 0),
            "no action sequence reached `{label}`: {coverage:#?}"
        );
    }
}

/// The same model on SQLite (a fresh in-memory database per case; fewer cases).
#[test]
fn registry_matches_the_model_on_sqlite() {
    use vivified_adapters::sqlite::SqlitePluginStore;
    registry::run_model_async(
        || async {
            let store: Arc<dyn vivified_ports::PluginStore> =
                Arc::new(SqlitePluginStore::in_memory().await.expect("sqlite"));
            store
        },
        48,
    );
}

/// The same model on Postgres (gated: `VIVIFIED_TEST_POSTGRES_URL`; mandatory in CI).
/// One database for the test, emptied before each case, dropped at the end.
#[test]
fn registry_matches_the_model_on_postgres() {
    use sqlx::{Connection, PgConnection};
    use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
    let Ok(admin_url) = std::env::var("VIVIFIED_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but VIVIFIED_TEST_POSTGRES_URL is unset: the Postgres tests must run in CI"
        );
        eprintln!("skipping: VIVIFIED_TEST_POSTGRES_URL is not set");
        return;
    };
    let name = format!("vivified_model_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin = |sql: String| {
        let admin_url = admin_url.clone();
        async move {
            let mut conn = PgConnection::connect(&admin_url)
                .await
                .expect("Postgres reachable");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("admin sql");
        }
    };
    rt.block_on(admin(format!("CREATE DATABASE {name}")));
    struct Drop_<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Drop_<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _cleanup = Drop_(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(admin(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )));
    });
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b)
        .to_owned();
    let url = format!("{base}/{name}");
    let store: std::sync::OnceLock<PostgresPluginStore> = std::sync::OnceLock::new();
    registry::run_model_async(
        || {
            let url = url.clone();
            let store = &store;
            async move {
                if store.get().is_none() {
                    let s = PostgresPluginStore::connect(&url, &PostgresConfig::default())
                        .await
                        .expect("connect");
                    let _ = store.set(s);
                }
                let s = store.get().expect("set above").clone();
                sqlx::query("TRUNCATE plugins")
                    .execute(s.pool())
                    .await
                    .expect("truncate");
                let s: Arc<dyn vivified_ports::PluginStore> = Arc::new(s);
                s
            }
        },
        24,
    );
    if let Some(s) = store.get() {
        let pool = s.pool().clone();
        rt.block_on(async move { pool.close().await });
    }
}
