//! `Application::build`: settings in, a bound, running core out. `main` and the tests
//! start the server the same way (tests bind port 0).

mod backends;
mod serve;

pub use backends::{Backends, MEMORY_AUDIT_CAPACITY, open_backends, open_store};
use serve::{ConnLimits, flush_forever, serve_connection, sweep_forever};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vivified_adapters::buffered::BufferedHeartbeats;
use vivified_adapters::clock::SystemClock;
use vivified_adapters::jwt::{JwtConfig, JwtConfigError, JwtTokenIssuer};
use vivified_adapters::memory::{
    InMemoryAuditLog, InMemoryBusConfig, InMemoryEventBus, InMemoryPluginStore,
};
use vivified_adapters::nats::{NatsBusConfig, NatsEventBus};
use vivified_adapters::postgres::PostgresAuditLog;
use vivified_adapters::postgres::{PostgresConfig, PostgresPluginStore};
use vivified_adapters::sqlite::SqliteAuditLog;
use vivified_adapters::sqlite::SqlitePluginStore;
use vivified_domain::audit_chain::{AuditKeys, ChainKey};
use vivified_domain::broker::{Broker, BrokerConfig};
use vivified_domain::policy::Policy;
use vivified_domain::{ManifestValidator, Mode, Ports, Registry};
use vivified_ports::{AuditLog, EventBus, PluginStore, Secret};

use crate::audit::AuditChain;
use crate::conn_watch::{ConnWatch, Watched, watch_connection};
use crate::routes::{App, router};
use crate::settings::{BusSetting, Settings, StoreSetting};
pub use crate::state::{AppState, Services};

/// Why the core did not start. One line each, naming the setting where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is wrong.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// The metrics address cannot be bound.
    #[error("VIVIFIED_METRICS_BIND: cannot listen on {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The event bus cannot be reached (the message names the setting).
    #[error("{0}")]
    Bus(String),
    /// The policy file cannot be used.
    #[error("VIVIFIED_POLICY_FILE: {0}")]
    Policy(String),
    /// The address cannot be bound.
    #[error("VIVIFIED_BIND: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest schema did not compile (a build defect).
    #[error(transparent)]
    Schema(#[from] vivified_domain::manifest::SchemaError),
    /// The token issuer could not be built.
    #[error("JWT_SECRET: {0}")]
    Jwt(#[from] vivified_adapters::jwt::JwtConfigError),
    /// Dev secrets cannot be read, generated or kept.
    #[error(transparent)]
    DevSecrets(#[from] crate::dev_secrets::DevSecretsError),
    /// The store cannot be opened.
    #[error("{setting}: cannot open the {kind} store: {reason}")]
    Store {
        /// The setting that chose it.
        setting: String,
        /// sqlite or postgres.
        kind: &'static str,
        /// Why (never the URL).
        reason: String,
    },
    /// The core's start could not be recorded in the audit log (fail closed).
    #[error("audit log: cannot record the core's start: {0}")]
    Audit(String),
    /// The TLS certificate or key cannot be used (the message names the setting).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A token signing key file cannot be used.
    #[error("VIVIFIED_SIGNING_KEYS: {path}: {reason}")]
    SigningKey {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// Secrets the core generated because they were not configured (dev mode only).
#[derive(Clone, Debug, Default)]
pub struct GeneratedSecrets {
    /// The generated admin token, shown once in the banner.
    pub admin_token: Option<Secret>,
    /// Whether the JWT secret was generated at this start.
    pub jwt_secret: bool,
    /// The admin token was generated at an earlier start and read back.
    pub kept_admin_token: bool,
    /// Where generated secrets are kept (`None`: nowhere, they die with the process).
    pub kept_in: Option<std::path::PathBuf>,
}

/// A core that is bound to its address and ready to serve.
pub struct Application {
    listener: TcpListener,
    /// HTTPS on the API listener (`VIVIFIED_TLS_CERT`, `VIVIFIED_TLS_KEY`).
    tls: Option<TlsAcceptor>,
    /// `GET /metrics` on its own address (`VIVIFIED_METRICS_BIND`).
    metrics: Option<(TcpListener, Router)>,
    router: App,
    registry: Registry,
    local_addr: SocketAddr,
    admin_token: Option<Secret>,
    generated: GeneratedSecrets,
    settings: Settings,
    audit: AuditChain,
    /// The chain did not agree with its stored checkpoint at start-up (logged).
    audit_broken_at_start: bool,
    /// Heartbeats held in memory in front of a durable store, flushed every
    /// `heartbeat_flush` (`None`: the memory store, or buffering off).
    heartbeats: Option<Arc<BufferedHeartbeats>>,
}

impl Application {
    /// Builds the adapters the settings choose, the registry and the router, and binds
    /// the listener.
    ///
    /// # Errors
    /// [`StartupError`] with a one-line reason.
    pub async fn build(mut settings: Settings) -> Result<Self, StartupError> {
        // The certificate and key first: a wrong path fails before anything is opened.
        let tls = match &settings.tls {
            None => None,
            Some(files) => Some(TlsAcceptor::from(crate::tls::server_config(files)?)),
        };
        // reqwest and async-nats take the process's default provider (the NATS bus
        // below may speak TLS).
        crate::tls::install_default_crypto_provider();
        let mut generated = GeneratedSecrets::default();
        if settings.mode == Mode::Dev {
            // Keep generated secrets next to a persistent store, so that a restart keeps
            // the admin token and every token issued before it.
            let keep_in =
                (settings.store != StoreSetting::Memory).then_some(settings.data_dir.as_path());
            let dev = crate::dev_secrets::resolve(
                settings.admin_token.take(),
                settings.jwt_secret.take(),
                settings.audit_key.take(),
                keep_in,
            )?;
            if dev.generated_admin_token {
                generated.admin_token = dev.admin_token.clone();
            }
            generated.jwt_secret = dev.generated_jwt_secret;
            generated.kept_admin_token = dev.kept_admin_token;
            generated.kept_in = dev.path.clone();
            settings.admin_token = dev.admin_token;
            settings.jwt_secret = dev.jwt_secret;
            settings.audit_key = dev.audit_key;
        }
        let audit_keys = audit_keys(&settings)?;
        // Dev mode signs HS256 with its generated secret unless keys are configured:
        // jsonwebtoken derives an Ed25519 key for every signature, about 50 µs, which
        // would cut the registrations a dev core answers by more than half
        // (docs/PERFORMANCE.md).
        let ed25519_keys = settings
            .signing_keys
            .iter()
            .map(|path| {
                std::fs::read_to_string(path).map(Secret::new).map_err(|e| {
                    StartupError::SigningKey {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tokens = JwtTokenIssuer::new(JwtConfig {
            secret: settings.jwt_secret.clone(),
            previous: settings.jwt_previous_secrets.clone(),
            ed25519_keys,
            ttl: settings.token_ttl,
        })
        .map_err(|e| match e {
            JwtConfigError::BadSigningKey(n) => StartupError::SigningKey {
                path: settings.signing_keys.get(n - 1).cloned().unwrap_or_default(),
                reason: "not an Ed25519 private key in PKCS#8 PEM (make one with `openssl genpkey -algorithm ed25519`)".into(),
            },
            e => e.into(),
        })?;
        let jwks =
            serde_json::to_value(tokens.jwks()).unwrap_or_else(|_| serde_json::json!({"keys": []}));
        let Backends {
            store,
            operators,
            audit,
        } = open_backends(&settings).await?;
        let identity: Option<Arc<dyn vivified_ports::ExternalIdentity>> = match &settings.oidc {
            None => None,
            Some(oidc) => Some(Arc::new(
                vivified_adapters::oidc::OidcVerifier::start(crate::settings::oidc_config(oidc))
                    .await,
            )),
        };
        let clock: Arc<SystemClock> = Arc::new(SystemClock);
        // A durable store answers heartbeats that change nothing but times from memory
        // and writes them in batches; the memory store is memory already.
        let heartbeats = (settings.store != StoreSetting::Memory
            && !settings.heartbeat_flush.is_zero())
        .then(|| {
            Arc::new(BufferedHeartbeats::new(
                store.clone(),
                clock.clone(),
                BrokerConfig::default().directory_ttl,
            ))
        });
        let store: Arc<dyn PluginStore> = match &heartbeats {
            Some(buffered) => buffered.clone(),
            None => store,
        };
        let bus: Arc<dyn EventBus> = match &settings.bus {
            BusSetting::Memory => Arc::new(InMemoryEventBus::with_config(InMemoryBusConfig {
                queue_bound: settings.event_queue_bound,
                ..InMemoryBusConfig::default()
            })),
            BusSetting::Nats { url, setting } => Arc::new(
                NatsEventBus::connect(
                    url.expose(),
                    NatsBusConfig {
                        queue_bound: settings.event_queue_bound,
                        url_setting: setting,
                        ca_cert: settings.nats_ca_cert.clone(),
                        client_cert: settings.nats_client_cert.clone(),
                        ..NatsBusConfig::default()
                    },
                )
                .await
                .map_err(|e| StartupError::Bus(e.to_string()))?,
            ),
        };
        let policy = Arc::new(load_policy(settings.policy_file.as_deref())?);
        let policy_rules: Vec<String> = policy.rules().iter().map(|r| r.id.to_string()).collect();
        let policy_untagged = policy.untagged().as_str();
        let ports = Ports {
            store,
            operators,
            identity,
            tokens: Arc::new(tokens),
            clock,
            bus: Arc::clone(&bus),
            audit: audit.clone(),
        };
        let audit = AuditChain::new(audit, audit_keys).with_checkpoint_bus(Arc::clone(&bus));
        let mut config = settings.registry_config();
        // The SQL stores keep the audit log in their own database: a state change and
        // its audit entry are written in one transaction.
        config.audit_in_store = !matches!(settings.store, StoreSetting::Memory);
        let registry = Registry::new(ports, Arc::new(ManifestValidator::new()?), config);
        let broker = Broker::new(registry.clone(), policy, BrokerConfig::default());
        let state = AppState::new(Services {
            registry: registry.clone(),
            max_body_bytes: settings.max_body_bytes,
            audit: audit.clone(),
            broker,
            events_max_wait: settings.events_max_wait,
            jwks,
            registration_limit: crate::rate_limit::AddressLimit::per_minute(
                settings.registration_rate_limit,
            ),
            auth_failures: crate::rate_limit::FailureLimit::per_minute(settings.auth_failure_limit),
        });
        let metrics = match settings.metrics_bind {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::MetricsBind { addr, source })?;
                let router = Router::new()
                    .route("/metrics", get(crate::metrics::render))
                    .with_state(state.clone());
                Some((listener, router))
            }
        };
        let router = router(state, &settings);
        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        // Fail closed: a core whose start cannot be audited does not start.
        audit
            .record_system("core.start", "startup", {
                // The policy in force is part of the start: which rules, from where.
                let mut details = crate::audit::start_details(&settings, &audit.keys, local_addr);
                details["policy"] = serde_json::json!({
                    "source": if settings.policy_file.is_some() { "file" } else { "built-in" },
                    "rules": policy_rules,
                    "untagged": policy_untagged,
                });
                details
            })
            .await
            .map_err(|e| {
                StartupError::Audit(
                    std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), ToString::to_string),
                )
            })?;
        tracing::info!(
            audit_key_fingerprint = %audit.keys.current().fingerprint(),
            "audit chain ready"
        );
        let audit_broken_at_start = crate::audit::check_at_start(&audit).await;
        if settings.mode == Mode::Production && settings.admin_token.is_some() {
            // The bootstrap token is for creating the first named admin; once there is
            // one, a shared secret that acts as `bootstrap` should be retired.
            match registry.named_admins().await {
                Ok(n) if n > 0 => tracing::warn!(
                    named_admins = n,
                    "VIVIFIED_ADMIN_TOKEN (the bootstrap admin) is still set although named admins exist: unset it so every action is taken by a named operator"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not count the named admins"),
            }
        }
        if let Some((listener, _)) = &metrics
            && let Ok(addr) = listener.local_addr()
            && !addr.ip().is_loopback()
        {
            tracing::warn!(
                addr = %addr,
                "the metrics listener serves plain HTTP on a non-loopback address: keep it on a private network"
            );
        }
        if settings.plain_http_exposed() {
            // Production refused this in the settings; dev mode was allowed remote.
            tracing::warn!(
                addr = %local_addr,
                "serving plain HTTP on a non-loopback address: set VIVIFIED_TLS_CERT and VIVIFIED_TLS_KEY (production mode refuses this)"
            );
        } else if settings.tls.is_none() && settings.tls_terminated_by_proxy {
            tracing::info!(
                addr = %local_addr,
                "plain HTTP: TLS is terminated by a proxy in front (VIVIFIED_TLS_TERMINATED_BY_PROXY)"
            );
        }
        Ok(Self {
            listener,
            tls,
            metrics,
            router,
            registry,
            local_addr,
            admin_token: settings.admin_token.clone(),
            generated,
            settings,
            audit,
            audit_broken_at_start,
            heartbeats,
        })
    }

    /// The bound address (with the real port when the settings asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin token in force (configured or generated).
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// What was generated at this start.
    pub fn generated(&self) -> &GeneratedSecrets {
        &self.generated
    }

    /// The registry this application serves (for embedding and tests).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `https` when the API listener serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves until SIGINT or SIGTERM, then drains connections.
    ///
    /// # Errors
    /// An I/O error of the listener.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then stops accepting and drains open connections
    /// (for at most the request timeout).
    ///
    /// # Errors
    /// An I/O error of the listener.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        // Lines outside a request carry `trace_id` `system` (see `telemetry`).
        let drain_for = self.settings.request_timeout;
        let header_timeout = self.settings.header_read_timeout;
        let limits = ConnLimits {
            header_timeout,
            max_header_bytes: self.settings.max_header_bytes,
        };
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(signal);
        tracing::info!(
            addr = %self.local_addr,
            mode = ?self.settings.mode,
            scheme = self.scheme(),
            "vivified core listening"
        );
        let sweeper = tokio::spawn(sweep_forever(
            self.registry.clone(),
            self.settings.sweep_interval,
        ));
        let flusher = self
            .heartbeats
            .clone()
            .map(|buffered| tokio::spawn(flush_forever(buffered, self.settings.heartbeat_flush)));
        let metrics_server = self.metrics.map(|(listener, router)| {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            })
        });
        let (stop_sealer, sealer_stop) = tokio::sync::watch::channel(false);
        let sealer = tokio::spawn(crate::audit::seal_until_stopped(
            self.audit.clone(),
            crate::audit::SealerConfig {
                interval: self.settings.audit_seal_interval,
                checkpoint_every: self.settings.audit_checkpoint_every,
                broken_at_start: self.audit_broken_at_start,
            },
            sealer_stop,
        ));
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    // A connection with no request in service is closed after the
                    // header timeout without progress (see `conn_watch`).
                    let watch = Arc::new(ConnWatch::default());
                    let router = self
                        .router
                        .clone()
                        .watched(Arc::clone(&watch))
                        .from_peer(peer.ip());
                    let watcher = graceful.watcher();
                    let conn = match &self.tls {
                        None => tokio::spawn(serve_connection(
                            Watched::new(stream, Arc::clone(&watch)),
                            router,
                            limits,
                            watcher,
                        )),
                        Some(acceptor) => {
                            // The handshake runs in the connection's own task, bounded
                            // like a request's headers: a slow or broken client never
                            // holds up the accept loop.
                            let handshake = acceptor.accept(stream);
                            let io_watch = Arc::clone(&watch);
                            tokio::spawn(async move {
                                match tokio::time::timeout(header_timeout, handshake).await {
                                    Ok(Ok(tls)) => {
                                        serve_connection(
                                            Watched::new(tls, io_watch),
                                            router,
                                            limits,
                                            watcher,
                                        )
                                            .await;
                                    }
                                    // Scanners, plain HTTP on the TLS port, untrusting
                                    // clients: routine, and never the peer's data.
                                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                            })
                        }
                    };
                    tokio::spawn(watch_connection(
                        Arc::downgrade(&watch),
                        conn.abort_handle(),
                        header_timeout,
                    ));
                }
                () = &mut signal => break,
            }
        }
        tracing::info!("shutting down: draining connections");
        sweeper.abort();
        if let Some(f) = flusher {
            f.abort();
        }
        if let Some(m) = metrics_server {
            m.abort();
        }
        drop(self.listener);
        if tokio::time::timeout(drain_for, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
        // Every heartbeat answered is written before the core stops.
        if let Some(buffered) = &self.heartbeats
            && let Err(e) = buffered.flush().await
        {
            tracing::error!(error = %e, pending = buffered.pending(), "heartbeats answered were not written at shutdown");
        }
        // The stop is audited, then sealed with the rest and checkpointed.
        if let Err(e) = self
            .audit
            .record_system("core.stop", "shutdown", serde_json::json!({}))
            .await
        {
            tracing::error!(error = %e, "the core's stop was not audited");
        }
        let _ = stop_sealer.send(true);
        if tokio::time::timeout(Duration::from_secs(10), sealer)
            .await
            .is_err()
        {
            tracing::warn!("audit sealing at shutdown did not finish in 10s");
        }
        tracing::info!("vivified core stopped");
        Ok(())
    }
}

/// The chain keys from the settings (dev mode has filled in a generated current one).
fn audit_keys(settings: &Settings) -> Result<AuditKeys, StartupError> {
    let invalid = |name: &str, reason: &str| {
        StartupError::Settings(crate::settings::SettingsError::Invalid {
            name: name.into(),
            reason: reason.into(),
        })
    };
    let key = settings
        .audit_key
        .as_ref()
        .ok_or_else(|| invalid("VIVIFIED_AUDIT_KEY", "is not set"))?;
    let current = ChainKey::new(key.expose().as_bytes())
        .map_err(|_| invalid("VIVIFIED_AUDIT_KEY", "must be at least 32 bytes"))?;
    let previous = settings
        .audit_previous_keys
        .iter()
        .map(|k| ChainKey::new(k.expose().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            invalid(
                "VIVIFIED_AUDIT_PREVIOUS_KEYS",
                "every key must be at least 32 bytes",
            )
        })?;
    AuditKeys::new(current, previous)
        .map_err(|e| invalid("VIVIFIED_AUDIT_PREVIOUS_KEYS", &e.to_string()))
}

async fn shutdown_signal() {
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

/// The built-in rules, or the policy file's (one line naming the position and reason
/// when it is malformed).
fn load_policy(path: Option<&std::path::Path>) -> Result<Policy, StartupError> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let bytes = std::fs::read(path)
        .map_err(|e| StartupError::Policy(format!("cannot read {}: {e}", path.display())))?;
    Policy::from_json_slice(&bytes)
        .map_err(|e| StartupError::Policy(format!("{}: {e}", path.display())))
}
