//! The plugin registry: register, re-register, heartbeat, refresh, get, list and
//! deregister, through the ports.
//!
//! Authorization happens here, in one order for every operation: 401 (no credential,
//! or a credential that does not verify, or a token whose plugin or `jti` is gone) →
//! 403 (a valid credential for something else) → 404 (unknown id, admin only).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use vivified_ports::{
    AuditEntry, AuditLog, AuditOutcome, BusEvent, Clock, EventBus, Health, IssuedToken, Liveness,
    OutboxEntry, PluginId, PluginRecord, PluginStore, Secret, StoreError, StoredManifest,
    TokenClaims, TokenError, TokenIssuer, VerifyOptions,
};

use crate::manifest::{ManifestValidator, Violation};

/// How open registration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Anyone may register a new id; for a developer's machine.
    Dev,
    /// A new id needs the registration secret.
    Production,
}

/// Settings of the [`Registry`].
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Dev or production.
    pub mode: Mode,
    /// The admin token (constant-time compared). `None`: no admin access.
    pub admin_token: Option<Secret>,
    /// Needed to register a new id in production mode.
    pub registration_secret: Option<Secret>,
    /// The heartbeat interval told to plugins.
    pub heartbeat_interval: Duration,
    /// How long after expiry a token whose `jti` is still current may re-register.
    pub reregister_grace: Duration,
    /// A plugin silent for longer than this becomes `stale` (default 3 × interval).
    pub heartbeat_ttl: Duration,
    /// A plugin silent for longer than this is deregistered (`None`: never). Must be
    /// longer than `heartbeat_ttl`.
    pub deregister_after: Option<Duration>,
    /// Self-preservation: if, when some plugin is due to go stale, more than this
    /// share of the live plugins is silent (has missed two heartbeats in a row),
    /// none goes stale.
    pub self_preservation_threshold: f64,
    /// Self-preservation only applies with at least this many live plugins (one
    /// plugin of one going quiet is not a network partition).
    pub self_preservation_min_live: u64,
    /// Records changed per store call of a sweep.
    pub sweep_batch: usize,
    /// An outbox entry unacknowledged this long is published again by any sweep.
    pub outbox_lease: Duration,
    /// The store keeps the audit log in its own database: registrations,
    /// re-registrations, refreshes, deregistrations, disables and enables write their
    /// audit entry in the same transaction as the change (`PluginStore::*_audited`)
    /// instead of appending it afterwards through the `AuditLog` port.
    pub audit_in_store: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Dev,
            admin_token: None,
            registration_secret: None,
            heartbeat_interval: Duration::from_secs(10),
            reregister_grace: Duration::from_secs(7 * 24 * 3600),
            heartbeat_ttl: Duration::from_secs(30),
            deregister_after: None,
            self_preservation_threshold: 0.5,
            self_preservation_min_live: 3,
            sweep_batch: 500,
            outbox_lease: Duration::from_secs(30),
            audit_in_store: false,
        }
    }
}

/// The ports the registry works through.
#[derive(Clone)]
pub struct Ports {
    /// Plugin records.
    pub store: Arc<dyn PluginStore>,
    /// Token signing and verification.
    pub tokens: Arc<dyn TokenIssuer>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Lifecycle events go here.
    pub bus: Arc<dyn EventBus>,
    /// Every decision is recorded here.
    pub audit: Arc<dyn AuditLog>,
}

/// Why a registry operation failed. Each maps to one HTTP status and error code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 400 `invalid_manifest`: every violation.
    #[error("invalid manifest")]
    InvalidManifest(Vec<Violation>),
    /// 401 `unauthorized`, with a reason code (`missing_credentials`, `invalid_token`,
    /// `expired_token`, `revoked_token`, `unknown_plugin`, `registration_secret_required`).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 403 `forbidden`, with a reason code.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 403 `plugin_disabled`.
    #[error("plugin disabled")]
    PluginDisabled,
    /// 404 `not_found`.
    #[error("plugin not found")]
    NotFound,
    /// 409 `already_registered`: the id is held by another registration.
    #[error("plugin already registered")]
    AlreadyRegistered,
    /// 503 `unavailable`: a port failed; the cause is kept for the log, never sent.
    #[error("{what} unavailable")]
    Unavailable {
        /// Which dependency.
        what: &'static str,
        /// The port's error.
        #[source]
        source: vivified_ports::BoxError,
    },
}

impl RegistryError {
    /// A stable code for metrics and logs (`invalid_manifest`, a 401/403 reason,
    /// `already_registered`, `plugin_disabled`, `not_found`, `unavailable`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidManifest(_) => "invalid_manifest",
            Self::Unauthorized(r) | Self::Forbidden(r) => r,
            Self::PluginDisabled => "plugin_disabled",
            Self::NotFound => "not_found",
            Self::AlreadyRegistered => "already_registered",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    fn store(e: StoreError) -> Self {
        metrics::counter!("vivified_store_errors_total").increment(1);
        Self::Unavailable {
            what: "plugin store",
            source: Box::new(e),
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        Self::store(e)
    }
}

/// Who is calling, once the credential has verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The operator, with the admin token.
    Admin,
    /// A plugin, with a correctly signed, unexpired token (revocation not yet checked).
    Plugin(TokenClaims),
}

/// What a plugin reports in a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatReport {
    /// Self-reported health (a missing one means healthy).
    pub health: Health,
}

/// A successful (re-)registration or refresh: the token goes to the plugin only.
#[derive(Clone, Debug)]
pub struct IssuedRegistration {
    /// The plugin's id.
    pub plugin_id: PluginId,
    /// Its new token.
    pub token: Secret,
    /// When the token expires.
    pub expires_at: OffsetDateTime,
    /// How often the plugin must heartbeat.
    pub heartbeat_interval: Duration,
    /// Whether this replaced an existing registration.
    pub reregistered: bool,
    /// The stored record.
    pub record: PluginRecord,
    /// Its audit entry was written with the record (in the store's transaction).
    audited: bool,
}

/// The answer of [`Registry::introspect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Introspection {
    /// Whether the token is the current token of an enabled plugin.
    pub active: bool,
    /// Its plugin (active only).
    pub plugin_id: Option<PluginId>,
    /// The plugin's declared traits (active only).
    pub traits: Vec<String>,
    /// The plugin's declared data classification (active only).
    pub data_classification: Vec<String>,
    /// When the token expires (active only).
    pub expires_at: Option<OffsetDateTime>,
}

impl Introspection {
    fn inactive() -> Self {
        Self {
            active: false,
            plugin_id: None,
            traits: Vec::new(),
            data_classification: Vec::new(),
            expires_at: None,
        }
    }
}

/// What one [`Registry::sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Live plugins counted (0 when nothing was due: not counted).
    pub live: u64,
    /// Of those, silent: past their deadline or within one `ttl - 2 × interval` of it.
    pub silent: u64,
    /// Marked stale.
    pub stale: usize,
    /// Deregistered.
    pub deregistered: usize,
    /// Expiry was held back (self-preservation).
    pub self_preservation: bool,
    /// Events of earlier sweeps' transitions published now (their sweep died
    /// between the transition and the publication).
    pub republished: usize,
}

/// Who did what to what, for an audit entry.
pub(crate) struct Subject<'a> {
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) target: &'a str,
}

/// Attempts of a conditional write before giving up on a hot record.
const CAS_ATTEMPTS: usize = 8;

/// A conditional write that lost to other writers [`CAS_ATTEMPTS`] times in a row.
fn too_contended() -> RegistryError {
    RegistryError::store(StoreError::Unavailable("record too contended".into()))
}

/// The registry service. Cheap to clone (one reference count: the server's handlers
/// clone it on every request); share one per process.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    ports: Ports,
    validator: Arc<ManifestValidator>,
    config: RegistryConfig,
    /// Whether this replica's last sweep held back a mass expiry.
    self_preservation: AtomicBool,
    /// Bumped on every lifecycle transition this replica makes (caches of plugin
    /// records compare it).
    generation: AtomicU64,
    /// When each (plugin or `-`, reason) rejection was last audited.
    rejections: Mutex<HashMap<(String, &'static str), OffsetDateTime>>,
    counters: HotCounters,
}

/// Handles of the counters every registration and heartbeat increments, taken from the
/// installed `metrics` recorder on first use: looking a series up builds and hashes its
/// key, about 1 % of a registration. Install the recorder before the registry first
/// serves (the server does); one installed later does not see these series of a
/// registry that has already counted them.
#[derive(Default)]
struct HotCounters {
    registered: OnceLock<metrics::Counter>,
    reregistered: OnceLock<metrics::Counter>,
    audit_appended: OnceLock<metrics::Counter>,
    heartbeat_accepted: OnceLock<metrics::Counter>,
    event_registered: OnceLock<metrics::Counter>,
    event_reregistered: OnceLock<metrics::Counter>,
}

/// Increments the counter in `cell`, looked up with `series` the first time.
fn count(cell: &OnceLock<metrics::Counter>, series: impl FnOnce() -> metrics::Counter) {
    cell.get_or_init(series).increment(1);
}

/// A rejected token use is audited at most once per plugin and reason in this window.
const REJECTION_WINDOW: time::Duration = time::Duration::minutes(1);
/// Most (plugin, reason) pairs remembered for the rate limit.
const MAX_REJECTION_KEYS: usize = 10_000;

impl Registry {
    /// Builds a registry over `ports`.
    pub fn new(ports: Ports, validator: Arc<ManifestValidator>, config: RegistryConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                ports,
                validator,
                config,
                self_preservation: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                rejections: Mutex::new(HashMap::new()),
                counters: HotCounters::default(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The manifest validator.
    pub fn validator(&self) -> &ManifestValidator {
        &self.inner.validator
    }

    /// Whether the store answers.
    ///
    /// # Errors
    /// [`RegistryError::Unavailable`] if it does not.
    pub async fn ready(&self) -> Result<(), RegistryError> {
        self.inner
            .ports
            .store
            .ping()
            .await
            .map_err(RegistryError::store)
    }

    fn is_secret(given: &str, secret: Option<&Secret>) -> bool {
        secret.is_some_and(|s| bool::from(given.as_bytes().ct_eq(s.expose().as_bytes())))
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.ports.clock.now()
    }

    pub(crate) fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    /// The plugin store (read-only uses: metrics, tools).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn PluginStore> {
        &self.inner.ports.store
    }

    /// Changes on every lifecycle transition this replica makes (registration,
    /// re-registration, deregistration, disable, enable, stale, recovered): a cache of
    /// plugin records built at one generation is out of date at another.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The record of a current plugin token, if the plugin is enabled.
    ///
    /// # Errors
    /// `Unauthorized` (revoked token, plugin gone), `PluginDisabled`, `Unavailable`.
    pub async fn current_enabled_record(
        &self,
        claims: &TokenClaims,
    ) -> Result<PluginRecord, RegistryError> {
        let record = self.current_record(claims).await?;
        if record.enabled {
            Ok(record)
        } else {
            Err(RegistryError::PluginDisabled)
        }
    }

    /// Verifies a caller's token; a refusal is audited (rate-limited).
    async fn verify(&self, token: &str, grace: Duration) -> Result<TokenClaims, RegistryError> {
        let verified = self.verify_token(token, grace).await;
        if let Err(RegistryError::Unauthorized(reason)) = &verified {
            self.note_rejection(None, reason).await;
        }
        verified
    }

    /// Verifies a token's signature and expiry (no audit: also used for tokens that
    /// are not the caller's, as in introspection).
    async fn verify_token(
        &self,
        token: &str,
        grace: Duration,
    ) -> Result<TokenClaims, RegistryError> {
        let opts = VerifyOptions {
            now: self.now(),
            expired_grace: grace,
        };
        self.inner
            .ports
            .tokens
            .verify(token, opts)
            .await
            .map_err(|e| match e {
                TokenError::Expired => RegistryError::Unauthorized("expired_token"),
                TokenError::Invalid(_) => RegistryError::Unauthorized("invalid_token"),
                TokenError::Signing(source) => RegistryError::Unavailable {
                    what: "token issuer",
                    source,
                },
            })
    }

    /// Identifies the caller from a bearer credential (signature and expiry only).
    ///
    /// # Errors
    /// [`RegistryError::Unauthorized`] if there is none or it does not verify.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Caller, RegistryError> {
        let bearer = bearer.ok_or(RegistryError::Unauthorized("missing_credentials"))?;
        if Self::is_secret(bearer, self.inner.config.admin_token.as_ref()) {
            return Ok(Caller::Admin);
        }
        self.verify(bearer, Duration::ZERO)
            .await
            .map(Caller::Plugin)
    }

    /// The record of the token's own plugin, if the token is still its current one.
    ///
    /// # Errors
    /// `Unauthorized("unknown_plugin" | "revoked_token")`, `Unavailable`.
    /// The caller's record, if its token is still current; a refusal is audited
    /// (rate-limited).
    async fn current_record(&self, claims: &TokenClaims) -> Result<PluginRecord, RegistryError> {
        let current = self.current_record_of(claims).await;
        if let Err(RegistryError::Unauthorized(reason)) = &current {
            self.note_rejection(Some(&claims.plugin_id), reason).await;
        }
        current
    }

    /// Audits a rejected token use: at most one entry per plugin (or per anonymous
    /// caller) and reason per minute on this replica, so a flood cannot fill the log.
    /// Best effort: the request is refused anyway, so a failing append is only logged.
    async fn note_rejection(&self, plugin: Option<&PluginId>, reason: &'static str) {
        let now = self.now();
        let who = plugin.map_or("-", PluginId::as_str);
        {
            let mut seen = self
                .inner
                .rejections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.len() >= MAX_REJECTION_KEYS {
                seen.retain(|_, at| now - *at < REJECTION_WINDOW);
                if seen.len() >= MAX_REJECTION_KEYS {
                    seen.clear();
                }
            }
            let key = (who.to_owned(), reason);
            if seen
                .get(&key)
                .is_some_and(|at| now - *at < REJECTION_WINDOW)
            {
                return;
            }
            seen.insert(key, now);
        }
        let audited = self
            .audit(
                "-",
                Subject {
                    actor: if plugin.is_some() { who } else { "anonymous" },
                    action: "token.rejected",
                    target: who,
                },
                AuditOutcome::Denied,
                reason,
                Value::Null,
            )
            .await;
        if let Err(e) = audited {
            tracing::error!(error = %e, reason, "a rejected token use was not audited");
        }
    }

    /// The record a token belongs to, if the token is still current (no audit).
    async fn current_record_of(&self, claims: &TokenClaims) -> Result<PluginRecord, RegistryError> {
        let record = self
            .inner
            .ports
            .store
            .get(&claims.plugin_id)
            .await?
            .ok_or(RegistryError::Unauthorized("unknown_plugin"))?;
        if record.token_jti != claims.jti {
            return Err(RegistryError::Unauthorized("revoked_token"));
        }
        Ok(record)
    }

    /// 403 for a plugin token used where it has no business — unless the token is no
    /// longer current, which is 401 (a gone or revoked token is 401 everywhere).
    async fn forbidden_unless_stale(
        &self,
        claims: &TokenClaims,
        reason: &'static str,
    ) -> RegistryError {
        match self.current_record(claims).await {
            Ok(_) => RegistryError::Forbidden(reason),
            Err(e) => e,
        }
    }

    /// Checks that `bearer` is the current token of plugin `id` and returns its claims
    /// and record. Disabled plugins pass; callers that must refuse them check `enabled`.
    async fn authorize_plugin(
        &self,
        id: &str,
        bearer: Option<&str>,
    ) -> Result<(TokenClaims, PluginRecord), RegistryError> {
        let claims = match self.authenticate(bearer).await? {
            Caller::Admin => return Err(RegistryError::Forbidden("plugin_token_required")),
            Caller::Plugin(c) => c,
        };
        let record = self.current_record(&claims).await?;
        if claims.plugin_id.as_str() != id {
            return Err(RegistryError::Forbidden("token_for_another_plugin"));
        }
        Ok((claims, record))
    }

    /// Checks that a plugin token is still current and answers the 403 an admin-only
    /// operation gives it (401 if it is not current).
    ///
    /// # Errors
    /// Always: `Unauthorized` or `Forbidden("admin_token_required")`.
    pub async fn refuse_plugin_on_admin_route(&self, claims: &TokenClaims) -> RegistryError {
        self.forbidden_unless_stale(claims, "admin_token_required")
            .await
    }

    pub(crate) async fn audit(
        &self,
        trace_id: &str,
        Subject {
            actor,
            action,
            target,
        }: Subject<'_>,
        outcome: AuditOutcome,
        reason: &str,
        details: Value,
    ) -> Result<(), RegistryError> {
        let entry = AuditEntry {
            at: self.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome,
            reason: reason.to_owned(),
            trace_id: trace_id.to_owned(),
            details,
        };
        let appended = self.inner.ports.audit.append(entry).await;
        if appended.is_ok() {
            count(
                &self.inner.counters.audit_appended,
                || metrics::counter!("vivified_audit_appends_total", "outcome" => "ok"),
            );
        } else {
            metrics::counter!("vivified_audit_appends_total", "outcome" => "failed").increment(1);
        }
        appended.map_err(|e| RegistryError::Unavailable {
            what: "audit log",
            source: Box::new(e),
        })
    }

    /// Publishes a lifecycle event. Its id is deterministic — the type, the plugin and
    /// `key` (the token id of the registration it concerns, plus the record version
    /// for transitions that can repeat) — so consumers can drop duplicates.
    async fn lifecycle(&self, event_type: &str, id: &PluginId, key: &str, trace_id: &str) -> bool {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        let counters = &self.inner.counters;
        match event_type {
            "plugin.registered" => count(&counters.event_registered, || {
                metrics::counter!("vivified_lifecycle_events_total", "event" => "plugin.registered")
            }),
            "plugin.reregistered" => count(&counters.event_reregistered, || {
                metrics::counter!("vivified_lifecycle_events_total", "event" => "plugin.reregistered")
            }),
            _ => metrics::counter!("vivified_lifecycle_events_total", "event" => event_type.to_owned())
                .increment(1),
        }
        if event_type == "plugin.deregistered" {
            // No delivery after deregistration. Best effort: a queue left behind is
            // also ignored by pulls of a later registration of the id.
            if let Err(e) = self.inner.ports.bus.remove_queue(id).await {
                tracing::warn!(plugin_id = %id, error = %e, "event queue of a deregistered plugin not removed");
            }
        }
        if !self.inner.ports.bus.has_subscribers() {
            // Nobody would receive it (an in-process bus without subscribers): not
            // built, as publishing it would have dropped it.
            return true;
        }
        let event = BusEvent {
            event_id: format!("{event_type}:{id}:{key}"),
            event_type: event_type.to_owned(),
            trace_id: trace_id.to_owned(),
            source: "core".to_owned(),
            data_traits: Vec::new(),
            at: self.now(),
            payload: json!({ "plugin_id": id }),
            metadata: std::collections::BTreeMap::new(),
        };
        match self.inner.ports.bus.publish(event).await {
            Ok(()) => true,
            Err(e) => {
                metrics::counter!("vivified_bus_errors_total").increment(1);
                tracing::warn!(plugin_id = %id, event_type, error = %e, "lifecycle event not published");
                false
            }
        }
    }

    /// Publishes the event of a sweeper transition from its outbox entry; true once
    /// the bus has taken it. `plugin.deregistered` has the same id as when an admin
    /// deregisters (a record is deleted once); `plugin.stale` adds the version.
    async fn publish_outbox(&self, entry: &OutboxEntry) -> bool {
        let key = if entry.event_type == "plugin.deregistered" {
            entry.token_jti.clone()
        } else {
            format!("{}:{}", entry.token_jti, entry.version)
        };
        self.lifecycle(&entry.event_type, &entry.plugin_id, &key, "system")
            .await
    }

    /// Publishes `entries` and acknowledges those the bus took. Whatever is not
    /// acknowledged is claimed again by a later sweep after `outbox_lease`.
    ///
    /// The transition's audit entry is written here too, before the publication: an
    /// entry is acknowledged only once it is both audited and published, so a core that
    /// dies in between leaves it for a later sweep, which audits and publishes it then
    /// (at least once: a retried entry may be audited twice, with the same `version`).
    async fn flush_outbox(&self, entries: Vec<OutboxEntry>) -> Result<usize, RegistryError> {
        let mut published = Vec::with_capacity(entries.len());
        for entry in entries {
            let (action, reason) = match entry.event_type.as_str() {
                "plugin.stale" => ("plugin.stale", "heartbeat_ttl"),
                "plugin.deregistered" => ("plugin.deregister", "deregister_after"),
                other => (other, "sweep"),
            };
            let audited = self
                .audit(
                    "system",
                    Subject {
                        actor: "system",
                        action,
                        target: entry.plugin_id.as_str(),
                    },
                    AuditOutcome::Success,
                    reason,
                    json!({ "version": entry.version }),
                )
                .await;
            if let Err(e) = audited {
                tracing::error!(plugin_id = %entry.plugin_id, action, error = %e, "transition not audited yet; a later sweep retries");
                continue;
            }
            if self.publish_outbox(&entry).await {
                published.push(entry);
            }
        }
        self.inner.ports.store.ack_outbox(&published).await?;
        Ok(published.len())
    }

    /// Registers a plugin, or re-registers it when `bearer` is its current token.
    ///
    /// A new id needs no credential in dev mode and the registration secret in
    /// production mode. An id that is held needs the plugin's current token (which may
    /// have expired less than `reregister_grace` ago); the registration secret never
    /// re-registers a held id. Re-registration replaces the manifest, keeps
    /// `registered_at`, the liveness and the enabled flag, and rotates the token.
    ///
    /// # Errors
    /// `InvalidManifest`, `Unauthorized`, `AlreadyRegistered`, `Unavailable`.
    pub async fn register(
        &self,
        manifest: &Value,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        self.register_owned(manifest.clone(), bearer, trace_id)
            .await
    }

    /// [`Registry::register`] taking the manifest by value, which saves a copy of it
    /// (the server's request path).
    ///
    /// # Errors
    /// As [`Registry::register`].
    pub async fn register_owned(
        &self,
        manifest: Value,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        let target = manifest
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| PluginId::is_valid(s))
            .unwrap_or("-")
            .to_owned();
        let target = target.as_str();
        let result = self.register_inner(manifest, bearer, trace_id).await;
        match &result {
            Ok((reg, _)) if reg.reregistered => count(
                &self.inner.counters.reregistered,
                || metrics::counter!("vivified_registrations_total", "outcome" => "accepted", "reason" => "reregistered"),
            ),
            Ok(_) => count(
                &self.inner.counters.registered,
                || metrics::counter!("vivified_registrations_total", "outcome" => "accepted", "reason" => "registered"),
            ),
            Err(e) => metrics::counter!(
                "vivified_registrations_total",
                "outcome" => "rejected",
                "reason" => e.code()
            )
            .increment(1),
        }
        match &result {
            Ok((reg, previous)) => {
                let action = if reg.reregistered {
                    "plugin.reregister"
                } else {
                    "plugin.register"
                };
                let audited = if reg.audited {
                    Ok(())
                } else {
                    self.audit(
                        trace_id,
                        Subject {
                            actor: target,
                            action,
                            target,
                        },
                        AuditOutcome::Success,
                        "registered",
                        json!({ "token_expires_at": reg.expires_at.unix_timestamp() }),
                    )
                    .await
                };
                // Fail closed: an unaudited registration must not stand.
                if let Err(e) = audited {
                    self.undo(&reg.record, previous.clone()).await;
                    return Err(e);
                }
                let event = if reg.reregistered {
                    "plugin.reregistered"
                } else {
                    "plugin.registered"
                };
                self.lifecycle(event, &reg.plugin_id, &reg.record.token_jti, trace_id)
                    .await;
                if previous
                    .as_ref()
                    .is_some_and(|p| p.status == Liveness::Stale)
                {
                    self.recovered(&reg.record, trace_id).await;
                }
            }
            Err(e) => {
                let (reason, details) = match e {
                    RegistryError::InvalidManifest(v) => (
                        "invalid_manifest",
                        json!({ "violations": v.iter().map(|v| json!({"path": v.path, "code": v.code})).collect::<Vec<_>>() }),
                    ),
                    RegistryError::Unauthorized(r) | RegistryError::Forbidden(r) => {
                        (*r, Value::Null)
                    }
                    RegistryError::AlreadyRegistered => ("already_registered", Value::Null),
                    _ => return result.map(|(reg, _)| reg),
                };
                self.audit(
                    trace_id,
                    Subject {
                        actor: "anonymous",
                        action: "plugin.register",
                        target,
                    },
                    AuditOutcome::Denied,
                    reason,
                    details,
                )
                .await?;
            }
        }
        result.map(|(reg, _)| reg)
    }

    /// Undoes a write whose audit entry could not be stored: restores `previous`, or
    /// deletes `written` if there was none. Conditional, so a later write is never
    /// overwritten. Until the audit issue writes state and entry in one transaction,
    /// this is how an operation fails closed.
    async fn undo(&self, written: &PluginRecord, previous: Option<PluginRecord>) {
        let undone = match previous {
            Some(prev) => self
                .inner
                .ports
                .store
                .replace(prev, written.version)
                .await
                .map(|_| ()),
            None => {
                self.inner
                    .ports
                    .store
                    .delete(&written.plugin_id, Some(written.token_jti.clone()))
                    .await
            }
        };
        if let Err(e) = undone {
            tracing::error!(plugin_id = %written.plugin_id, error = %e, "could not undo an unaudited write");
        }
    }

    /// Registers or re-registers; also returns the record a re-registration replaced.
    async fn register_inner(
        &self,
        manifest: Value,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<(IssuedRegistration, Option<PluginRecord>), RegistryError> {
        let claimed_id = manifest
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| PluginId::parse(s).ok());
        // Fast path for the credentials that can only register a NEW id (none in dev
        // mode, or the registration secret): an id that is held answers 409 to them
        // whatever the manifest says, so try the insert first and let the store's
        // primary key decide — one round trip instead of a read and a write.
        let new_only = bearer.map_or(self.inner.config.mode == Mode::Dev, |b| {
            Self::is_secret(b, self.inner.config.registration_secret.as_ref())
        });
        if new_only {
            let valid = match self.inner.validator.check_owned(manifest) {
                Ok(valid) => valid,
                Err(violations) => {
                    let held = match &claimed_id {
                        Some(id) => self.inner.ports.store.get(id).await?.is_some(),
                        None => false,
                    };
                    return Err(if held {
                        RegistryError::AlreadyRegistered
                    } else {
                        RegistryError::InvalidManifest(violations)
                    });
                }
            };
            return self
                .insert_new(valid, trace_id)
                .await
                .map(|reg| (reg, None));
        }
        let existing = match &claimed_id {
            Some(id) => self.inner.ports.store.get(id).await?,
            None => None,
        };
        match existing {
            Some(current) => self.reregister(manifest, bearer, current, trace_id).await,
            None => {
                if self.inner.config.mode == Mode::Production
                    && !bearer.is_some_and(|b| {
                        Self::is_secret(b, self.inner.config.registration_secret.as_ref())
                    })
                {
                    return Err(RegistryError::Unauthorized("registration_secret_required"));
                }
                let valid = self
                    .inner
                    .validator
                    .check_owned(manifest)
                    .map_err(RegistryError::InvalidManifest)?;
                self.insert_new(valid, trace_id)
                    .await
                    .map(|reg| (reg, None))
            }
        }
    }

    /// Inserts a validated manifest as a new registration with a fresh token.
    async fn insert_new(
        &self,
        valid: crate::manifest::CheckedManifest,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        let now = self.now();
        let issued = self.issue(&valid.id, now).await?;
        let record = PluginRecord {
            plugin_id: valid.id.clone(),
            // Kept as compact text: the tree of a manifest is several KB per plugin.
            manifest: StoredManifest::from_value(&valid.raw),
            status: Liveness::Registered,
            health: Health::Unknown,
            enabled: true,
            disabled_reason: None,
            registered_at: now,
            last_heartbeat: None,
            token_jti: issued.jti.clone(),
            next_deadline: Some(now + self.inner.config.heartbeat_ttl),
            version: 0,
        };
        let entry = self.tx_entry(
            trace_id,
            &Subject {
                actor: valid.id.as_str(),
                action: "plugin.register",
                target: valid.id.as_str(),
            },
            "registered",
            || json!({ "token_expires_at": issued.expires_at.unix_timestamp() }),
        );
        let stored = self
            .store_insert(record, entry.as_ref())
            .await
            .map_err(|e| match e {
                StoreError::Conflict => RegistryError::AlreadyRegistered,
                e => RegistryError::store(e),
            })?;
        tracing::info!(plugin_id = %stored.plugin_id, "plugin registered");
        Ok(self.issued(issued, stored, false, entry.is_some()))
    }

    async fn reregister(
        &self,
        manifest: Value,
        bearer: Option<&str>,
        mut current: PluginRecord,
        trace_id: &str,
    ) -> Result<(IssuedRegistration, Option<PluginRecord>), RegistryError> {
        let bearer = bearer.ok_or(RegistryError::AlreadyRegistered)?;
        if Self::is_secret(bearer, self.inner.config.registration_secret.as_ref())
            || Self::is_secret(bearer, self.inner.config.admin_token.as_ref())
        {
            return Err(RegistryError::AlreadyRegistered);
        }
        let claims = self
            .verify(bearer, self.inner.config.reregister_grace)
            .await?;
        if claims.plugin_id != current.plugin_id {
            return Err(RegistryError::AlreadyRegistered);
        }
        // 401 before 400: a revoked token learns nothing about its manifest.
        if current.token_jti != claims.jti {
            return Err(RegistryError::Unauthorized("revoked_token"));
        }
        let valid = self
            .inner
            .validator
            .check_owned(manifest)
            .map_err(RegistryError::InvalidManifest)?;
        let raw = StoredManifest::from_value(&valid.raw);
        for _ in 0..CAS_ATTEMPTS {
            if current.token_jti != claims.jti {
                return Err(RegistryError::Unauthorized("revoked_token"));
            }
            let now = self.now();
            let issued = self.issue(&current.plugin_id, now).await?;
            let mut next = current.clone();
            next.manifest = raw.clone();
            next.token_jti = issued.jti.clone();
            // A re-registration is a sign of life: a stale plugin is registered again
            // and every enabled plugin gets a fresh deadline.
            if next.status == Liveness::Stale {
                next.status = Liveness::Registered;
            }
            next.next_deadline = self.deadline_for(&next, now);
            let entry = self.tx_entry(
                trace_id,
                &Subject {
                    actor: current.plugin_id.as_str(),
                    action: "plugin.reregister",
                    target: current.plugin_id.as_str(),
                },
                "registered",
                || json!({ "token_expires_at": issued.expires_at.unix_timestamp() }),
            );
            match self
                .store_replace(next, current.version, entry.as_ref())
                .await
            {
                Ok(stored) => {
                    tracing::info!(plugin_id = %stored.plugin_id, "plugin re-registered");
                    return Ok((
                        self.issued(issued, stored, true, entry.is_some()),
                        Some(current),
                    ));
                }
                Err(e) => current = self.reread_for_retry(&claims.plugin_id, e).await?,
            }
        }
        Err(too_contended())
    }

    /// After a token holder's conditional write of `id`'s record failed with `e`: the
    /// record to try again with (another write came first: read it again), or the
    /// answer (the record is gone: its token is no longer current).
    async fn reread_for_retry(
        &self,
        id: &PluginId,
        e: StoreError,
    ) -> Result<PluginRecord, RegistryError> {
        match e {
            StoreError::PreconditionFailed => self
                .inner
                .ports
                .store
                .get(id)
                .await?
                .ok_or(RegistryError::Unauthorized("unknown_plugin")),
            StoreError::NotFound => Err(RegistryError::Unauthorized("unknown_plugin")),
            e => Err(RegistryError::store(e)),
        }
    }

    async fn issue(
        &self,
        id: &PluginId,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, RegistryError> {
        self.inner
            .ports
            .tokens
            .issue(id, now)
            .await
            .map_err(|e| match e {
                TokenError::Signing(source) => RegistryError::Unavailable {
                    what: "token issuer",
                    source,
                },
                other => RegistryError::Unavailable {
                    what: "token issuer",
                    source: Box::new(other),
                },
            })
    }

    fn issued(
        &self,
        token: IssuedToken,
        record: PluginRecord,
        reregistered: bool,
        audited: bool,
    ) -> IssuedRegistration {
        IssuedRegistration {
            plugin_id: record.plugin_id.clone(),
            token: token.token,
            expires_at: token.expires_at,
            heartbeat_interval: self.inner.config.heartbeat_interval,
            reregistered,
            record,
            audited,
        }
    }

    /// The audit entry of a state change, when the store writes it in the change's
    /// transaction (`audit_in_store`); `None` when it is appended afterwards.
    fn tx_entry(
        &self,
        trace_id: &str,
        subject: &Subject<'_>,
        reason: &str,
        details: impl FnOnce() -> Value,
    ) -> Option<AuditEntry> {
        self.inner.config.audit_in_store.then(|| AuditEntry {
            at: self.now(),
            actor: subject.actor.to_owned(),
            action: subject.action.to_owned(),
            target: subject.target.to_owned(),
            outcome: AuditOutcome::Success,
            reason: reason.to_owned(),
            trace_id: trace_id.to_owned(),
            details: details(),
        })
    }

    /// Inserts, with `entry` in the same transaction when there is one.
    async fn store_insert(
        &self,
        record: PluginRecord,
        entry: Option<&AuditEntry>,
    ) -> Result<PluginRecord, StoreError> {
        let store = &self.inner.ports.store;
        match entry {
            Some(entry) => {
                let r = store.insert_audited(record, entry).await;
                Self::count_tx_append(&r);
                r
            }
            None => store.insert(record).await,
        }
    }

    /// Replaces, with `entry` in the same transaction when there is one.
    async fn store_replace(
        &self,
        record: PluginRecord,
        expected_version: u64,
        entry: Option<&AuditEntry>,
    ) -> Result<PluginRecord, StoreError> {
        let store = &self.inner.ports.store;
        match entry {
            Some(entry) => {
                let r = store.replace_audited(record, expected_version, entry).await;
                Self::count_tx_append(&r);
                r
            }
            None => store.replace(record, expected_version).await,
        }
    }

    /// Deletes, with `entry` in the same transaction when there is one.
    async fn store_delete(
        &self,
        id: &PluginId,
        expected_jti: Option<String>,
        entry: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.ports.store;
        match entry {
            Some(entry) => {
                let r = store.delete_audited(id, expected_jti, entry).await;
                Self::count_tx_append(&r);
                r
            }
            None => store.delete(id, expected_jti).await,
        }
    }

    fn count_tx_append<T>(r: &Result<T, StoreError>) {
        let outcome = match r {
            Ok(_) => "ok",
            // The change was refused before anything was written: no append attempted.
            Err(StoreError::Conflict | StoreError::NotFound | StoreError::PreconditionFailed) => {
                return;
            }
            Err(_) => "failed",
        };
        metrics::counter!("vivified_audit_appends_total", "outcome" => outcome).increment(1);
    }

    /// Records a heartbeat from plugin `id`, authenticated by its current token.
    ///
    /// # Errors
    /// `Unauthorized` (missing, invalid, expired or revoked token; plugin gone),
    /// `Forbidden` (a token for another plugin, or the admin token), `PluginDisabled`,
    /// `Unavailable`.
    pub async fn heartbeat(
        &self,
        id: &str,
        bearer: Option<&str>,
        report: HeartbeatReport,
    ) -> Result<PluginRecord, RegistryError> {
        let claims = self.heartbeat_caller(id, bearer).await?;
        self.record_heartbeat(&claims, report, "system").await
    }

    /// First half of [`Registry::heartbeat`]: checks that `bearer` is a correctly signed
    /// token for plugin `id` (revocation is checked by [`Registry::record_heartbeat`]).
    /// Lets a server answer 401/403 before it looks at the request body.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `Unavailable`.
    pub async fn heartbeat_caller(
        &self,
        id: &str,
        bearer: Option<&str>,
    ) -> Result<TokenClaims, RegistryError> {
        let claims = match self.authenticate(bearer).await? {
            Caller::Admin => return Err(RegistryError::Forbidden("plugin_token_required")),
            Caller::Plugin(c) => c,
        };
        if claims.plugin_id.as_str() != id {
            return Err(self
                .forbidden_unless_stale(&claims, "token_for_another_plugin")
                .await);
        }
        Ok(claims)
    }

    /// Checks that `claims` is its plugin's current token and that the plugin is
    /// enabled (routes a disabled plugin may not use check this before the body).
    ///
    /// # Errors
    /// `Unauthorized` (revoked token, plugin gone), `PluginDisabled`, `Unavailable`.
    pub async fn require_enabled(&self, claims: &TokenClaims) -> Result<(), RegistryError> {
        if self.current_record(claims).await?.enabled {
            Ok(())
        } else {
            Err(RegistryError::PluginDisabled)
        }
    }

    /// A heartbeat whose body was refused: 401 if the token is no longer current
    /// (authorization comes before the body), else the body's error.
    pub async fn refuse_heartbeat_body<E>(
        &self,
        claims: &TokenClaims,
        body_error: E,
    ) -> Result<E, RegistryError> {
        self.current_record(claims).await.map(|_| body_error)
    }

    /// Second half of [`Registry::heartbeat`]: one conditional store write that applies
    /// only if `claims.jti` is still the plugin's current token and it is enabled.
    ///
    /// # Errors
    /// `Unauthorized` (revoked token, plugin gone), `PluginDisabled`, `Unavailable`.
    pub async fn record_heartbeat(
        &self,
        claims: &TokenClaims,
        report: HeartbeatReport,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        let recorded = self.record_heartbeat_inner(claims, report, trace_id).await;
        if let Err(RegistryError::Unauthorized(reason)) = &recorded {
            self.note_rejection(Some(&claims.plugin_id), reason).await;
        }
        recorded
    }

    async fn record_heartbeat_inner(
        &self,
        claims: &TokenClaims,
        report: HeartbeatReport,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        let now = self.now();
        match self
            .inner
            .ports
            .store
            .record_heartbeat(
                &claims.plugin_id,
                &claims.jti,
                report.health,
                now,
                now + self.inner.config.heartbeat_ttl,
            )
            .await
        {
            Ok(outcome) => {
                count(
                    &self.inner.counters.heartbeat_accepted,
                    || metrics::counter!("vivified_heartbeats_total", "outcome" => "accepted"),
                );
                if outcome.recovered {
                    self.recovered(&outcome.record, trace_id).await;
                }
                Ok(outcome.record)
            }
            Err(StoreError::NotFound) => Err(RegistryError::Unauthorized("unknown_plugin")),
            Err(StoreError::PreconditionFailed) => {
                // Rare path: find out which condition failed.
                match self.inner.ports.store.get(&claims.plugin_id).await? {
                    None => Err(RegistryError::Unauthorized("unknown_plugin")),
                    Some(r) if r.token_jti != claims.jti => {
                        Err(RegistryError::Unauthorized("revoked_token"))
                    }
                    Some(r) if !r.enabled => Err(RegistryError::PluginDisabled),
                    Some(_) => Err(RegistryError::store(StoreError::Unavailable(
                        "heartbeat precondition failed on a current, enabled record".into(),
                    ))),
                }
            }
            Err(e) => Err(RegistryError::store(e)),
        }
    }

    /// Issues plugin `id` a fresh token; the old one stops working.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `PluginDisabled`, `Unavailable`.
    pub async fn refresh_token(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<IssuedRegistration, RegistryError> {
        let (claims, mut current) = self.authorize_plugin(id, bearer).await?;
        for _ in 0..CAS_ATTEMPTS {
            if current.token_jti != claims.jti {
                return Err(RegistryError::Unauthorized("revoked_token"));
            }
            if !current.enabled {
                return Err(RegistryError::PluginDisabled);
            }
            let issued = self.issue(&current.plugin_id, self.now()).await?;
            let mut next = current.clone();
            next.token_jti = issued.jti.clone();
            let subject = Subject {
                actor: current.plugin_id.as_str(),
                action: "token.refresh",
                target: current.plugin_id.as_str(),
            };
            let entry = self.tx_entry(trace_id, &subject, "refreshed", || Value::Null);
            match self
                .store_replace(next, current.version, entry.as_ref())
                .await
            {
                Ok(stored) => {
                    if entry.is_none() {
                        let audited = self
                            .audit(
                                trace_id,
                                subject,
                                AuditOutcome::Success,
                                "refreshed",
                                Value::Null,
                            )
                            .await;
                        if let Err(e) = audited {
                            self.undo(&stored, Some(current)).await;
                            return Err(e);
                        }
                    }
                    return Ok(self.issued(issued, stored, false, entry.is_some()));
                }
                Err(e) => current = self.reread_for_retry(&claims.plugin_id, e).await?,
            }
        }
        Err(too_contended())
    }

    /// Returns plugin `id`'s record to the admin or to the plugin itself.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound` (admin only), `Unavailable`.
    pub async fn get(&self, id: &str, bearer: Option<&str>) -> Result<PluginRecord, RegistryError> {
        match self.authenticate(bearer).await? {
            Caller::Admin => {
                let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
                self.inner
                    .ports
                    .store
                    .get(&id)
                    .await?
                    .ok_or(RegistryError::NotFound)
            }
            Caller::Plugin(_) => self.authorize_plugin(id, bearer).await.map(|(_, r)| r),
        }
    }

    /// Lists records sorted by id, `limit` at most, after `after` (admin only).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden` (a plugin token), `Unavailable`.
    pub async fn list(
        &self,
        bearer: Option<&str>,
        after: Option<PluginId>,
        limit: usize,
    ) -> Result<Vec<PluginRecord>, RegistryError> {
        match self.authenticate(bearer).await? {
            Caller::Admin => Ok(self.inner.ports.store.list(after, limit).await?),
            Caller::Plugin(claims) => Err(self.refuse_plugin_on_admin_route(&claims).await),
        }
    }

    /// Deregisters plugin `id` (admin, or the plugin with its current token). Its token
    /// stops working and its id is free.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound` (admin only), `Unavailable`.
    pub async fn deregister(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<(), RegistryError> {
        let (actor, mut record) = match self.authenticate(bearer).await? {
            Caller::Admin => {
                let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
                let record = self
                    .inner
                    .ports
                    .store
                    .get(&id)
                    .await?
                    .ok_or(RegistryError::NotFound)?;
                ("admin".to_owned(), record)
            }
            Caller::Plugin(_) => {
                let (claims, record) = self.authorize_plugin(id, bearer).await?;
                (claims.plugin_id.to_string(), record)
            }
        };
        let admin = actor == "admin";
        // Delete exactly the record read (by its token id), so that the audit entry and
        // a possible undo describe what was really removed.
        let mut attempts = 0;
        let in_tx;
        loop {
            let entry = self.tx_entry(
                trace_id,
                &Subject {
                    actor: &actor,
                    action: "plugin.deregister",
                    target: record.plugin_id.as_str(),
                },
                "deregistered",
                || Value::Null,
            );
            match self
                .store_delete(
                    &record.plugin_id,
                    Some(record.token_jti.clone()),
                    entry.as_ref(),
                )
                .await
            {
                Ok(()) => {
                    in_tx = entry.is_some();
                    break;
                }
                Err(StoreError::NotFound) if admin => return Err(RegistryError::NotFound),
                Err(StoreError::NotFound) => {
                    return Err(RegistryError::Unauthorized("unknown_plugin"));
                }
                Err(StoreError::PreconditionFailed) if admin && attempts < CAS_ATTEMPTS => {
                    attempts += 1;
                    record = self
                        .inner
                        .ports
                        .store
                        .get(&record.plugin_id)
                        .await?
                        .ok_or(RegistryError::NotFound)?;
                }
                Err(StoreError::PreconditionFailed) if admin => {
                    return Err(too_contended());
                }
                Err(StoreError::PreconditionFailed) => {
                    return Err(RegistryError::Unauthorized("revoked_token"));
                }
                Err(e) => return Err(RegistryError::store(e)),
            }
        }
        let audited = if in_tx {
            Ok(())
        } else {
            self.audit(
                trace_id,
                Subject {
                    actor: &actor,
                    action: "plugin.deregister",
                    target: record.plugin_id.as_str(),
                },
                AuditOutcome::Success,
                "deregistered",
                Value::Null,
            )
            .await
        };
        if let Err(e) = audited {
            // Fail closed: put the plugin back as it was (its token works again).
            if let Err(undo) = self.inner.ports.store.insert(record.clone()).await {
                tracing::error!(plugin_id = %record.plugin_id, error = %undo, "could not undo an unaudited deregistration");
            }
            return Err(e);
        }
        tracing::info!(plugin_id = %record.plugin_id, "plugin deregistered");
        self.lifecycle(
            "plugin.deregistered",
            &record.plugin_id,
            &record.token_jti,
            trace_id,
        )
        .await;
        Ok(())
    }

    /// The deadline a record should carry from `now`, when it last showed life.
    fn deadline_for(&self, record: &PluginRecord, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if !record.enabled {
            return None;
        }
        match record.status {
            Liveness::Registered | Liveness::Active => Some(now + self.inner.config.heartbeat_ttl),
            Liveness::Stale => self.inner.config.deregister_after.map(|d| now + d),
        }
    }

    /// Publishes and audits the end of a stale spell.
    async fn recovered(&self, record: &PluginRecord, trace_id: &str) {
        tracing::info!(plugin_id = %record.plugin_id, "plugin recovered");
        self.audit_system(trace_id, "plugin.recovered", &record.plugin_id, "heartbeat")
            .await;
        let key = format!("{}:{}", record.token_jti, record.version);
        self.lifecycle("plugin.recovered", &record.plugin_id, &key, trace_id)
            .await;
    }

    /// Audits a transition the core made by itself. It has already happened, so a
    /// failed append cannot refuse it: it is logged as an error instead.
    async fn audit_system(&self, trace_id: &str, action: &str, id: &PluginId, reason: &str) {
        let entry = self
            .audit(
                trace_id,
                Subject {
                    actor: "system",
                    action,
                    target: id.as_str(),
                },
                AuditOutcome::Success,
                reason,
                Value::Null,
            )
            .await;
        if let Err(e) = entry {
            tracing::error!(plugin_id = %id, action, error = %e, "transition not audited");
        }
    }

    /// Whether this replica's last sweep held back a mass expiry (self-preservation).
    pub fn self_preservation(&self) -> bool {
        self.inner.self_preservation.load(Ordering::Relaxed)
    }

    /// Requires the admin token; 401/403 otherwise.
    async fn require_admin(&self, bearer: Option<&str>) -> Result<(), RegistryError> {
        match self.authenticate(bearer).await? {
            Caller::Admin => Ok(()),
            Caller::Plugin(claims) => Err(self.refuse_plugin_on_admin_route(&claims).await),
        }
    }

    /// Disables plugin `id` (admin): its token keeps verifying, but heartbeats,
    /// refreshes, publishing and pulling answer 403 `plugin_disabled`, it receives no
    /// events, and the sweeper leaves it alone. Idempotent; a new `reason` replaces
    /// the old one.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound`, `Unavailable`.
    pub async fn disable(
        &self,
        id: &str,
        bearer: Option<&str>,
        reason: &str,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        self.set_enabled(id, bearer, Some(reason), trace_id).await
    }

    /// Enables plugin `id` again (admin). Its deadline starts afresh from now.
    /// Idempotent.
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `NotFound`, `Unavailable`.
    pub async fn enable(
        &self,
        id: &str,
        bearer: Option<&str>,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        self.set_enabled(id, bearer, None, trace_id).await
    }

    async fn set_enabled(
        &self,
        id: &str,
        bearer: Option<&str>,
        disable_reason: Option<&str>,
        trace_id: &str,
    ) -> Result<PluginRecord, RegistryError> {
        self.require_admin(bearer).await?;
        let id = PluginId::parse(id).map_err(|_| RegistryError::NotFound)?;
        let enable = disable_reason.is_none();
        let (action, event) = if enable {
            ("plugin.enable", "plugin.enabled")
        } else {
            ("plugin.disable", "plugin.disabled")
        };
        for _ in 0..CAS_ATTEMPTS {
            let current = self
                .inner
                .ports
                .store
                .get(&id)
                .await?
                .ok_or(RegistryError::NotFound)?;
            let reason = disable_reason.map(str::to_owned);
            if current.enabled == enable && current.disabled_reason == reason {
                return Ok(current);
            }
            let changed = current.enabled != enable;
            let mut next = current.clone();
            next.enabled = enable;
            next.disabled_reason = reason;
            next.next_deadline = self.deadline_for(&next, self.now());
            let subject = Subject {
                actor: "admin",
                action,
                target: id.as_str(),
            };
            let reason_code = if changed { action } else { "reason_changed" };
            let entry = self.tx_entry(trace_id, &subject, reason_code, || Value::Null);
            match self
                .store_replace(next, current.version, entry.as_ref())
                .await
            {
                Ok(stored) => {
                    if entry.is_none() {
                        let audited = self
                            .audit(
                                trace_id,
                                subject,
                                AuditOutcome::Success,
                                reason_code,
                                Value::Null,
                            )
                            .await;
                        if let Err(e) = audited {
                            self.undo(&stored, Some(current)).await;
                            return Err(e);
                        }
                    }
                    if changed {
                        tracing::info!(plugin_id = %id, event, "plugin {}", if enable { "enabled" } else { "disabled" });
                        let key = format!("{}:{}", stored.token_jti, stored.version);
                        self.lifecycle(event, &id, &key, trace_id).await;
                    }
                    return Ok(stored);
                }
                Err(StoreError::PreconditionFailed) => {}
                Err(StoreError::NotFound) => return Err(RegistryError::NotFound),
                Err(e) => return Err(RegistryError::store(e)),
            }
        }
        Err(too_contended())
    }

    /// Token introspection for plugins that serve other plugins: the caller (a plugin
    /// with its own current token, or the admin) asks whether `token` is a current
    /// token of an enabled plugin, and what that plugin declared. An inactive answer
    /// carries no details, whatever the reason.
    ///
    /// # Errors
    /// The caller's own `Unauthorized` / `PluginDisabled`; `Unavailable`.
    pub async fn introspect(
        &self,
        bearer: Option<&str>,
        token: &str,
    ) -> Result<Introspection, RegistryError> {
        if let Caller::Plugin(claims) = self.authenticate(bearer).await? {
            let caller = self.current_record(&claims).await?;
            if !caller.enabled {
                return Err(RegistryError::PluginDisabled);
            }
        }
        let claims = match self.verify_token(token, Duration::ZERO).await {
            Ok(claims) => claims,
            Err(RegistryError::Unauthorized(_)) => return Ok(Introspection::inactive()),
            Err(e) => return Err(e),
        };
        let record = match self.current_record_of(&claims).await {
            Ok(record) if record.enabled => record,
            Ok(_) | Err(RegistryError::Unauthorized(_)) => return Ok(Introspection::inactive()),
            Err(e) => return Err(e),
        };
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Introspection {
            active: true,
            traits: strings(record.manifest.get("traits")),
            data_classification: strings(
                record
                    .manifest
                    .get("security")
                    .and_then(|s| s.get("data_classification")),
            ),
            expires_at: Some(claims.expires_at),
            plugin_id: Some(record.plugin_id),
        })
    }

    /// One sweep of liveness deadlines; run it on a timer. Cheap when nothing is due
    /// (one indexed lookup). Safe with several replicas on one store: each expiry is
    /// applied by exactly one of them, and its lifecycle event has a deterministic id.
    ///
    /// # Errors
    /// `Unavailable` if the store fails; what was applied before stays applied.
    pub async fn sweep(&self) -> Result<SweepReport, RegistryError> {
        let now = self.now();
        let mut report = SweepReport::default();
        let batch = self.inner.config.sweep_batch.max(1);
        // Events of transitions whose sweep died before publishing them.
        let lease =
            time::Duration::try_from(self.inner.config.outbox_lease).unwrap_or(time::Duration::MAX);
        let orphans = self
            .inner
            .ports
            .store
            .claim_outbox(now.checked_sub(lease).unwrap_or(now), now, batch)
            .await?;
        if !orphans.is_empty() {
            tracing::warn!(
                events = orphans.len(),
                "publishing lifecycle events a sweep left unpublished"
            );
            report.republished = self.flush_outbox(orphans).await?;
        }
        let due = self.inner.ports.store.earliest_deadline().await?;
        if due.is_none_or(|d| d > now) {
            self.leave_self_preservation();
            return Ok(report);
        }
        // "Silent": missed two heartbeats in a row, even if not yet past the ttl.
        // Counting those (not only the due ones) is what recognises a partition:
        // plugins cut off together have deadlines spread over one interval, and a
        // sweep would otherwise expire the first of them before the rest are due.
        let horizon = self
            .inner
            .config
            .heartbeat_ttl
            .saturating_sub(self.inner.config.heartbeat_interval * 2);
        let counts = self
            .inner
            .ports
            .store
            .liveness_counts(now + horizon)
            .await?;
        report.live = counts.live;
        report.silent = counts.due;
        #[allow(clippy::cast_precision_loss)] // plugin counts are far below 2^52
        let share = counts.due as f64 / counts.live.max(1) as f64;
        if counts.due > 0
            && counts.live >= self.inner.config.self_preservation_min_live
            && share > self.inner.config.self_preservation_threshold
        {
            if !self.inner.self_preservation.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    silent = counts.due,
                    live = counts.live,
                    threshold = self.inner.config.self_preservation_threshold,
                    "SELF-PRESERVATION: too many plugins went silent at once; none is expired \
                     until the share of silent plugins falls under the threshold"
                );
            }
            report.self_preservation = true;
            return Ok(report);
        }
        self.leave_self_preservation();
        loop {
            let stale = self
                .inner
                .ports
                .store
                .mark_stale(
                    now,
                    self.inner
                        .config
                        .deregister_after
                        .map(|d| d.saturating_sub(self.inner.config.heartbeat_ttl)),
                    batch,
                )
                .await?;
            for record in &stale {
                tracing::info!(plugin_id = %record.plugin_id, "plugin stale: no heartbeat within the ttl");
            }
            self.flush_outbox(Self::outbox_of("plugin.stale", &stale, now))
                .await?;
            report.stale += stale.len();
            if stale.len() < batch {
                break;
            }
        }
        if self.inner.config.deregister_after.is_some() {
            loop {
                let gone = self.inner.ports.store.remove_expired(now, batch).await?;
                for record in &gone {
                    tracing::info!(plugin_id = %record.plugin_id, "plugin deregistered: silent beyond deregister_after");
                }
                self.flush_outbox(Self::outbox_of("plugin.deregistered", &gone, now))
                    .await?;
                report.deregistered += gone.len();
                if gone.len() < batch {
                    break;
                }
            }
        }
        Ok(report)
    }

    /// The outbox entries the store wrote with these records.
    fn outbox_of(
        event_type: &str,
        records: &[PluginRecord],
        at: OffsetDateTime,
    ) -> Vec<OutboxEntry> {
        records
            .iter()
            .map(|r| OutboxEntry {
                event_type: event_type.to_owned(),
                plugin_id: r.plugin_id.clone(),
                token_jti: r.token_jti.clone(),
                version: r.version,
                at,
            })
            .collect()
    }

    fn leave_self_preservation(&self) {
        if self.inner.self_preservation.swap(false, Ordering::Relaxed) {
            tracing::warn!("self-preservation ended: silent plugins are under the threshold again");
        }
    }
}
