//! Shared by the SDK's integration tests: a configurable test plugin, log capture,
//! temporary directories.

#![allow(dead_code, unused_imports)] // each test binary uses a different part

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
pub use vivified_test_support::fs::TempDir;
pub use vivified_test_support::logs::Logs;
pub use vivified_test_support::net::free_port;

use vivified_plugin_sdk::{
    Backoff, Config, HealthReport, InitializeError, Manifest, Plugin, PluginContext, async_trait,
};

/// A plugin whose manifest, health and initialization outcome the test chooses, and
/// which records what the runner did to it.
pub struct TestPlugin {
    pub manifest: Manifest,
    pub health: Arc<Mutex<HealthReport>>,
    pub fail_init: bool,
    pub initialized: Arc<AtomicBool>,
    pub shut_down: Arc<AtomicBool>,
    pub health_checks: Arc<AtomicU32>,
    pub ctx: Arc<Mutex<Option<PluginContext>>>,
}

impl TestPlugin {
    pub fn new(id: &str) -> Self {
        Self::with_manifest(
            Manifest::builder(id, format!("Test {id}"), "1.0.0")
                .build()
                .unwrap(),
        )
    }

    pub fn with_manifest(manifest: Manifest) -> Self {
        Self {
            manifest,
            health: Arc::new(Mutex::new(HealthReport::healthy())),
            fail_init: false,
            initialized: Arc::new(AtomicBool::new(false)),
            shut_down: Arc::new(AtomicBool::new(false)),
            health_checks: Arc::new(AtomicU32::new(0)),
            ctx: Arc::new(Mutex::new(None)),
        }
    }
}

#[async_trait]
impl Plugin for TestPlugin {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    async fn initialize(&self, ctx: PluginContext) -> Result<(), InitializeError> {
        if self.fail_init {
            return Err(InitializeError::Config(
                "PLUGIN_TEST: refused on purpose".into(),
            ));
        }
        *self.ctx.lock().unwrap_or_else(PoisonError::into_inner) = Some(ctx);
        self.initialized.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn health_check(&self) -> HealthReport {
        self.health_checks.fetch_add(1, Ordering::SeqCst);
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn shutdown(&self) -> Result<(), vivified_plugin_sdk::ShutdownError> {
        self.shut_down.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// A configuration for `core_url` with fast retries.
pub fn fast_config(core_url: &str) -> Config {
    let mut c = Config::new(core_url);
    c.backoff = Backoff {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(300),
    };
    c.request_timeout = Duration::from_secs(3);
    c
}

/// The token kept in a token file.
pub fn token_in(file: &std::path::Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("token file")).unwrap();
    v["token"].as_str().unwrap().to_owned()
}
