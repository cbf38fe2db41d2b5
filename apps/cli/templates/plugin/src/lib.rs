//! The {{plugin_id}} plugin: registers with the Vivified core, heartbeats with its
//! health, and receives the events its manifest subscribes to.
//!
//! The manifest is `manifest.json`, compiled in: `vivified validate manifest.json`
//! checks the very document the core receives.

use std::sync::atomic::{AtomicU64, Ordering};

use vivified_plugin_sdk::{
    BoxError, Event, EventHandler, HealthReport, InitializeError, Manifest, ManifestError, Plugin,
    PluginContext, async_trait,
};

/// `manifest.json`, as the core receives it.
pub const MANIFEST_JSON: &str = include_str!("../manifest.json");

/// Why the plugin could not be built from its manifest.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `manifest.json` is not JSON of a manifest's shape.
    #[error("manifest.json is not a manifest: {0}")]
    Json(#[from] serde_json::Error),
    /// `manifest.json` breaks a rule the core enforces.
    #[error(transparent)]
    Invalid(#[from] ManifestError),
}

/// The plugin.
#[derive(Debug)]
pub struct {{type_name}} {
    manifest: Manifest,
    events_handled: AtomicU64,
}

impl {{type_name}} {
    /// Reads the compiled-in `manifest.json` and checks it as the core will.
    ///
    /// # Errors
    /// [`LoadError`] when the manifest is not valid.
    pub fn new() -> Result<Self, LoadError> {
        let manifest: Manifest = serde_json::from_str(MANIFEST_JSON)?;
        manifest.check()?;
        Ok(Self {
            manifest,
            events_handled: AtomicU64::new(0),
        })
    }

    /// How many events the plugin has handled since it started.
    pub fn events_handled(&self) -> u64 {
        self.events_handled.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Plugin for {{type_name}} {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    /// Runs before registration: start your own work here (an HTTP server, workers).
    /// `ctx.client()` publishes events, `ctx.introspector()` checks callers' tokens,
    /// `ctx.stopping()` completes when the plugin is told to stop.
    async fn initialize(&self, ctx: PluginContext) -> Result<(), InitializeError> {
        tracing::info!(plugin_id = %ctx.plugin_id(), "initialized");
        Ok(())
    }

    /// Sent with every heartbeat. Details go to the core: never put PHI, PII or
    /// secrets in them.
    async fn health_check(&self) -> HealthReport {
        HealthReport::healthy().with_detail("events_handled", self.events_handled())
    }
}

#[async_trait]
impl EventHandler for {{type_name}} {
    /// Called for each event of a type the manifest subscribes to; an event is
    /// acknowledged when this returns `Ok`, and comes again after an error. Events
    /// arrive at least once: drop duplicates by `event.event_id` where it matters.
    async fn on_event(&self, event: Event) -> Result<(), BoxError> {
        // Log what the event is, never its payload or metadata (they may carry PHI).
        tracing::info!(
            event_id = %event.event_id,
            event_type = %event.event_type,
            source_plugin = %event.source_plugin,
            "event received"
        );
        self.events_handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
