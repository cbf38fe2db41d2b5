//! `Runner`: registers a [`Plugin`] with the core and keeps it registered — retrying
//! with backoff while the core is down, heartbeating at the interval the core returned,
//! refreshing the token before it expires, re-registering when the token stops
//! working, backing off while an operator has disabled the plugin — until it is told
//! to stop.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::backoff::{Backoff, BackoffState};
use crate::client::{CoreClient, CoreError, InvalidCoreUrl, Registration};
use crate::config::{Config, ConfigError};
use crate::events::{EventHandler, EventStream, SharedHandler};
use crate::identity::Shared;
use crate::introspect::TokenIntrospector;
use crate::manifest::{Manifest, ManifestError};
use crate::plugin::{HealthReport, InitializeError, Plugin, PluginContext, ShutdownError};
use crate::secret::Secret;
use crate::status::{PluginStatus, Refusal};
use crate::token_file::TokenFile;

mod drive;

/// Why a runner stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting from the environment is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The core URL is not usable.
    #[error(transparent)]
    CoreUrl(#[from] InvalidCoreUrl),
    /// The manifest is invalid (found by the SDK's check or by the core); retrying
    /// cannot help, so the runner stops.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// [`Plugin::initialize`] failed.
    #[error("plugin initialization failed: {0}")]
    Initialize(#[from] InitializeError),
    /// [`Plugin::shutdown`] failed.
    #[error("plugin shutdown failed: {0}")]
    Shutdown(#[from] ShutdownError),
}

/// Watches and stops a running [`Runner`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RunnerHandle {
    status: watch::Receiver<PluginStatus>,
    stop: Arc<watch::Sender<bool>>,
    introspector: TokenIntrospector,
    client: CoreClient,
    backoff: Backoff,
}

impl RunnerHandle {
    /// A client that speaks as this plugin with the runner's current token:
    /// [`CoreClient::publish`], [`CoreClient::pull`].
    pub fn client(&self) -> CoreClient {
        self.client.clone()
    }

    /// A new [`EventStream`] of this plugin's events on the runner's current token. It
    /// waits while the plugin is not registered (or disabled) and never fails. Use one
    /// consumer per plugin: two streams share one queue.
    pub fn events(&self) -> EventStream {
        EventStream::new(self.client.clone()).backoff(self.backoff)
    }

    /// The current status.
    pub fn status(&self) -> PluginStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<PluginStatus> {
        self.status.clone()
    }

    /// Asks the runner to stop (as a signal would).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The introspector of this plugin (checks callers' tokens with the core).
    pub fn introspector(&self) -> &TokenIntrospector {
        &self.introspector
    }

    /// Waits until `pred` holds for the status, at most `timeout`; returns the status
    /// that satisfied it, or `None` on timeout.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&PluginStatus) -> bool,
    ) -> Option<PluginStatus> {
        let mut rx = self.status.clone();
        tokio::time::timeout(timeout, rx.wait_for(pred))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|s| s.clone())
    }
}

/// Where the runner is in its cycle.
enum Phase {
    /// Not registered (or the token stopped working): register.
    Register,
    /// Registered: heartbeat, refresh.
    Active(Active),
}

struct Active {
    expires_at: OffsetDateTime,
    interval: Duration,
    next_beat: Instant,
    refresh_at: Instant,
}

/// What kind of credential a registration attempt carried (never the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bearer {
    Token,
    Enrollment,
    RegistrationSecret,
    None,
}

impl Bearer {
    fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Enrollment => "enrollment_token",
            Self::RegistrationSecret => "registration_secret",
            Self::None => "none",
        }
    }
}

/// Runs one plugin against one core. See the crate documentation for the lifecycle.
pub struct Runner<P: Plugin> {
    plugin: Arc<P>,
    config: Config,
    client: CoreClient,
    manifest: Manifest,
    shared: Arc<Shared>,
    token_file: Option<TokenFile>,
    status: watch::Sender<PluginStatus>,
    stop: Arc<watch::Sender<bool>>,
    introspector: TokenIntrospector,
    events: Option<SharedHandler>,
    /// The enrollment token has registered the plugin: it is never presented again.
    enrollment_spent: AtomicBool,
    /// This replica's instance id, once known (configured, kept, generated, or as the
    /// core answered); `None`: the kept token's own instance, or `default`.
    instance: std::sync::Mutex<Option<String>>,
}

impl<P: Plugin + EventHandler> Runner<P> {
    /// [`Runner::on_events`] with the plugin itself as the handler.
    #[must_use]
    pub fn handle_events(self) -> Self {
        let plugin: SharedHandler = self.plugin.clone();
        Self {
            events: Some(plugin),
            ..self
        }
    }
}

/// A stream on `client`'s token with the runner's backoff.
fn event_stream(client: &CoreClient, config: &Config) -> EventStream {
    EventStream::new(client.clone()).backoff(config.backoff)
}

impl<P: Plugin> Runner<P> {
    /// Prepares `plugin` to run with `config`: checks its manifest and the core URL.
    ///
    /// # Errors
    /// [`RunError::Manifest`], [`RunError::CoreUrl`], or [`RunError::Config`] for an
    /// unreadable `VIVIFIED_CA_CERT`.
    pub fn new(plugin: P, config: Config) -> Result<Self, RunError> {
        let manifest = plugin.manifest();
        manifest.check()?;
        let shared = Arc::new(Shared::managed(manifest.id.clone()));
        let client = CoreClient::from_config(&config)?.bound(shared.clone());
        let introspector =
            TokenIntrospector::new(client.clone(), shared.clone(), config.introspection_cache);
        let (status, _) = watch::channel(PluginStatus::Starting);
        let (stop, _) = watch::channel(false);
        Ok(Self {
            plugin: Arc::new(plugin),
            token_file: config.token_file.clone().map(TokenFile::new),
            config,
            client,
            manifest,
            shared,
            status,
            stop: Arc::new(stop),
            introspector,
            events: None,
            enrollment_spent: AtomicBool::new(false),
            instance: std::sync::Mutex::new(None),
        })
    }

    /// Receives the plugin's events with `handler`: once the plugin is initialized, a
    /// task long-polls the core ([`EventStream`] on the runner's token) and calls
    /// `handler` for each event, acknowledging it only when the handler returned `Ok`;
    /// an error makes the event come again after a backoff. The task retries while
    /// the core is down, the plugin is disabled or re-registering, and stops with the
    /// runner (a handler that is running is finished first, within the request
    /// timeout). The manifest must declare `subscriptions` for anything to arrive.
    ///
    /// ```
    /// use std::time::Duration;
    /// use vivified_plugin_sdk::{async_trait, BoxError, Config, Event, InitializeError, Manifest, OutgoingEvent, Plugin, PluginContext, Runner};
    ///
    /// struct Listener;
    ///
    /// #[async_trait]
    /// impl Plugin for Listener {
    ///     fn manifest(&self) -> Manifest {
    ///         Manifest::builder("listener", "Listener", "0.1.0")
    ///             .subscriptions(["greeting.*"])
    ///             .build()
    ///             .unwrap()
    ///     }
    ///     async fn initialize(&self, _ctx: PluginContext) -> Result<(), InitializeError> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let core = vivified_testkit::TestCore::start().await.unwrap();
    /// let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    /// let runner = Runner::new(Listener, Config::new(core.url()))
    ///     .unwrap()
    ///     .on_events(move |event: Event| {
    ///         let seen_tx = seen_tx.clone();
    ///         async move {
    ///             seen_tx.send(event.payload["text"].clone())?;
    ///             Ok::<(), BoxError>(())
    ///         }
    ///     });
    /// let handle = runner.handle();
    /// let task = tokio::spawn(runner.run_until(std::future::pending()));
    /// handle.wait_for(Duration::from_secs(10), |s| s.is_registered()).await.unwrap();
    ///
    /// // Another plugin publishes (here with the test kit).
    /// let other = core.register(&vivified_testkit::manifest("greeter", &[])).await.unwrap();
    /// let token = other["token"].as_str().unwrap();
    /// core.publish(token, &serde_json::json!({"event_type": "greeting.hello", "payload": {"text": "hi"}}))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(seen.recv().await.unwrap(), "hi");
    ///
    /// handle.stop();
    /// task.await.unwrap().unwrap();
    /// # }
    /// ```
    #[must_use]
    pub fn on_events(mut self, handler: impl EventHandler) -> Self {
        self.events = Some(Arc::new(handler));
        self
    }

    /// A handle to watch and stop the runner; take it before calling `run_*`.
    pub fn handle(&self) -> RunnerHandle {
        RunnerHandle {
            status: self.status.subscribe(),
            stop: self.stop.clone(),
            introspector: self.introspector.clone(),
            client: self.client.clone(),
            backoff: self.config.backoff,
        }
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<P> {
        &self.plugin
    }

    /// An [`EventStream`] on the runner's token (see [`RunnerHandle::events`]).
    pub fn events(&self) -> EventStream {
        event_stream(&self.client, &self.config)
    }

    /// Runs until SIGINT or SIGTERM (or [`RunnerHandle::stop`]).
    ///
    /// # Errors
    /// As [`Runner::run_until`].
    pub async fn run(self) -> Result<(), RunError> {
        self.run_until(shutdown_signal()).await
    }

    /// Initializes the plugin, registers it and keeps it registered until `signal`
    /// completes (or [`RunnerHandle::stop`] is called); then deregisters it if so
    /// configured and shuts the plugin down.
    ///
    /// # Errors
    /// [`RunError::Initialize`] (nothing was registered), [`RunError::Manifest`] when
    /// the core refuses the manifest, [`RunError::Shutdown`].
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), RunError> {
        let id = self.manifest.id.clone();
        self.status.send_replace(PluginStatus::Starting);
        let mut kept = crate::token_file::Kept::default();
        if let Some(file) = &self.token_file {
            match file.load_kept(&id) {
                Ok(k) => kept = k,
                Err(e) => {
                    tracing::warn!(plugin_id = %id, error = %e, "ignoring an unreadable token file")
                }
            }
        }
        // The instance: configured, else kept, else (a token file to keep it in, and no
        // kept token whose own instance the core will name) generated.
        let instance = self
            .config
            .instance_id
            .clone()
            .or(kept.instance_id)
            .or_else(|| {
                (self.token_file.is_some() && kept.token.is_none())
                    .then(|| format!("i-{:016x}", fastrand::u64(..)))
            });
        self.set_instance(instance);
        if let Some(token) = kept.token {
            if let Some(file) = &self.token_file {
                tracing::info!(plugin_id = %id, path = %file.path().display(), "using the token kept from the previous run");
            }
            self.shared.set_token(Some(token));
        }
        let ctx = PluginContext {
            plugin_id: id.clone(),
            core_url: self.client.base_url().to_owned(),
            status: self.status.subscribe(),
            stopping: self.stop.subscribe(),
            introspector: self.introspector.clone(),
            client: self.client.clone(),
            backoff: self.config.backoff,
        };
        if let Err(e) = self.plugin.initialize(ctx).await {
            tracing::error!(plugin_id = %id, error = %e, "plugin initialization failed");
            self.status.send_replace(PluginStatus::Stopped);
            return Err(e.into());
        }
        tracing::info!(plugin_id = %id, core_url = %self.client.base_url(), "plugin initialized; registering with the core");
        let events = self.events.clone().map(|handler| {
            if self.manifest.subscriptions.is_empty() {
                tracing::warn!(plugin_id = %id, "an event handler is set but the manifest declares no subscriptions: no event will arrive");
            }
            let stream = self.events();
            let mut stop = self.stop.subscribe();
            let id = id.clone();
            tokio::spawn(async move {
                let stopping = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = stream.run(&*handler, stopping).await {
                    tracing::error!(plugin_id = %id, error = %e, "event loop stopped");
                }
            })
        });
        let mut stop_rx = self.stop.subscribe();
        let outcome = tokio::select! {
            r = self.drive(&mut stop_rx) => r,
            () = signal => Ok(()),
        };
        self.stop.send_replace(true);
        if let Some(task) = events
            && tokio::time::timeout(self.config.request_timeout, task)
                .await
                .is_err()
        {
            tracing::warn!(plugin_id = %id, timeout_ms = self.config.request_timeout.as_millis() as u64, "the event handler did not finish in time; stopping anyway");
        }
        let finished = self.finish().await;
        outcome.and(finished)
    }

    /// The bearer for a registration: the current token, else the registration secret.
    fn bearer(&self) -> (Bearer, Option<Secret>) {
        if let Some(token) = self.shared.token() {
            (Bearer::Token, Some(token))
        } else if let Some(enrollment) = self
            .config
            .enrollment_token
            .as_ref()
            .filter(|_| !self.enrollment_spent.load(Ordering::Acquire))
        {
            (Bearer::Enrollment, Some(enrollment.clone()))
        } else if let Some(secret) = &self.config.registration_secret {
            (Bearer::RegistrationSecret, Some(secret.clone()))
        } else {
            (Bearer::None, None)
        }
    }

    /// This replica's instance id, if known.
    pub(super) fn instance(&self) -> Option<String> {
        self.instance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_instance(&self, instance: Option<String>) {
        *self
            .instance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = instance;
    }

    /// Takes a new token: in memory, on disk, and the refresh schedule.
    fn adopt(&self, reg: &Registration, next_beat: Instant) -> Active {
        self.shared.set_token(Some(reg.token.clone()));
        if let Some(instance) = &reg.instance_id {
            self.set_instance(Some(instance.clone()));
        }
        if let Some(file) = &self.token_file
            && let Err(e) = file.save_kept(
                &self.manifest.id,
                self.instance().as_deref(),
                Some(&reg.token),
            )
        {
            tracing::warn!(plugin_id = %self.manifest.id, error = %e, "cannot keep the token on disk; a restart will need a new registration");
        }
        let left = reg.expires_at - OffsetDateTime::now_utc();
        let refresh_in = Duration::try_from(left)
            .ok()
            .filter(|d| !d.is_zero())
            .map_or(reg.heartbeat_interval, |d| d.mul_f64(0.75));
        self.status.send_replace(PluginStatus::Registered {
            expires_at: reg.expires_at,
            heartbeat_interval: reg.heartbeat_interval,
        });
        Active {
            expires_at: reg.expires_at,
            interval: reg.heartbeat_interval,
            next_beat,
            refresh_at: Instant::now() + refresh_in,
        }
    }

    /// Drops the token (it is dead): memory and disk (the instance id stays kept).
    fn forget_token(&self) {
        self.shared.set_token(None);
        let instance = self.instance();
        if let Some(file) = &self.token_file
            && let Err(e) = match &instance {
                Some(i) => file.save_kept(&self.manifest.id, Some(i), None),
                None => file.remove(),
            }
        {
            tracing::warn!(plugin_id = %self.manifest.id, error = %e, "cannot remove the dead token from disk");
        }
    }

    async fn finish(&self) -> Result<(), RunError> {
        let id = self.manifest.id.as_str();
        self.status.send_replace(PluginStatus::Stopping);
        self.stop.send_replace(true);
        if self.config.deregister_on_shutdown
            && let Some(token) = self.shared.token()
        {
            match self.client.deregister(id, &token).await {
                Ok(()) => {
                    tracing::info!(plugin_id = %id, "deregistered from the core");
                    self.forget_token();
                }
                Err(e) => tracing::warn!(plugin_id = %id, error = %e, "deregistration failed"),
            }
        }
        let result =
            match tokio::time::timeout(self.config.request_timeout, self.plugin.shutdown()).await {
                Ok(r) => r,
                Err(_) => Err(ShutdownError::Timeout(self.config.request_timeout)),
            };
        if let Err(e) = &result {
            tracing::error!(plugin_id = %id, error = %e, "plugin shutdown failed");
        }
        self.status.send_replace(PluginStatus::Stopped);
        tracing::info!(plugin_id = %id, "plugin stopped");
        result.map_err(RunError::from)
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Everything a plugin's `main` needs: JSON logs on stdout ([`crate::init_logging`]),
/// [`Config::from_env`], and a [`Runner`] until SIGINT/SIGTERM. Returns the exit code:
/// success after a clean stop, 2 for a configuration or manifest error, 1 otherwise.
pub async fn run<P: Plugin>(plugin: P) -> ExitCode {
    crate::init_logging();
    let result = async {
        let config = Config::from_env()?;
        Runner::new(plugin, config)?.run().await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "plugin stopped with an error");
            match e {
                RunError::Config(_) | RunError::CoreUrl(_) | RunError::Manifest(_) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}
