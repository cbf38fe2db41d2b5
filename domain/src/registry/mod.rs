//! The plugin registry: register, re-register, heartbeat, refresh, get, list and
//! deregister, through the ports.
//!
//! Authorization happens here, in one order for every operation: 401 (no credential,
//! or a credential that does not verify, or a token whose plugin or `jti` is gone) →
//! 403 (a valid credential for something else) → 404 (unknown id, admin only).

mod access;
mod admin;
mod approve;
mod auth;
mod break_glass;
mod enroll;
mod heartbeat;
mod instances;
mod operators;
mod outbox;
mod register;
mod replace;
mod revoke;

pub use access::Operation;
pub use break_glass::MAX_BREAK_GLASS;
pub use enroll::{
    ENROLLMENT_PREFIX, ENROLLMENT_RETENTION, IssuedEnrollment, MAX_ENROLLMENT_PAGE,
    MAX_ENROLLMENT_TTL,
};
pub use operators::{
    AuthMethod, BOOTSTRAP_OPERATOR, DEFAULT_OPERATOR_TOKEN_TTL, IssuedOperatorToken,
    MAX_OPERATOR_PAGE, MAX_OPERATOR_TOKEN_TTL, MAX_TOKEN_LABEL_CHARS, OPERATOR_TOKEN_PREFIX,
    OperatorDetails, Principal,
};
pub use revoke::Revocation;
mod sweep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use vivified_ports::{
    AuditEntry, AuditLog, AuditOutcome, BusEvent, Clock, EventBus, Health, InstanceId,
    InstanceRecord, IssuedToken, Liveness, OutboxEntry, PluginId, PluginRecord, PluginStore,
    Secret, StoreError, StoredManifest, TokenClaims, TokenError, TokenIssuer, VerifyOptions,
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
    /// Dev mode only: a registration of a held id asked for without a credential
    /// replaces that id's registration if it has gone stale (enabled, and no sign of
    /// life within `heartbeat_ttl`), so a plugin restarted without its token comes
    /// back by itself. An id held by a live or disabled plugin still answers 409.
    /// Ignored in production mode.
    pub replace_stale: bool,
    /// Whether an operator may raise itself to admin for a bounded time
    /// ([`Registry::break_glass`]); while off, existing grants raise no one.
    pub break_glass: bool,
    /// Role names of the identity provider's tokens and the role each gives (the
    /// highest one a token carries applies). Default: the four role names themselves.
    pub oidc_role_map: Vec<(String, vivified_ports::Role)>,
    /// Most instances one plugin may have. A new instance beyond it first takes the
    /// place of stale ones (the longest silent first); if none is stale, it is refused
    /// (409 `too_many_instances`).
    pub max_instances: usize,
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
            replace_stale: true,
            max_instances: 64,
            break_glass: false,
            oidc_role_map: vivified_ports::Role::ALL
                .into_iter()
                .map(|r| (r.as_str().to_owned(), r))
                .collect(),
        }
    }
}

/// The ports the registry works through.
#[derive(Clone)]
pub struct Ports {
    /// Plugin records.
    pub store: Arc<dyn PluginStore>,
    /// Operators and their API tokens (usually the same store as `store`).
    pub operators: Arc<dyn vivified_ports::OperatorStore>,
    /// Operators' tokens from the organisation's identity provider (`None`: no single
    /// sign-on).
    pub identity: Option<Arc<dyn vivified_ports::ExternalIdentity>>,
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
    /// 403 `forbidden`, reason `insufficient_role`: the operator's role is below this.
    #[error("forbidden: the {0} role is required")]
    RoleRequired(vivified_ports::Role),
    /// 403 `plugin_disabled`.
    #[error("plugin disabled")]
    PluginDisabled,
    /// 404 `not_found`.
    #[error("plugin not found")]
    NotFound,
    /// 400 `invalid_body`: a request member the registry refuses, with what is wrong.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// 409 `already_registered`: the id is held by another registration.
    #[error("plugin already registered")]
    AlreadyRegistered,
    /// 409 `conflict`, with a reason code: the resource is in a state that refuses
    /// the request (`enrollment_used`, `nothing_pending`, `too_many_instances`).
    #[error("conflict: {0}")]
    Conflict(&'static str),
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
            Self::Unauthorized(r) | Self::Forbidden(r) | Self::Conflict(r) => r,
            Self::RoleRequired(_) => "insufficient_role",
            Self::PluginDisabled => "plugin_disabled",
            Self::NotFound => "not_found",
            Self::InvalidRequest(_) => "invalid_body",
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
    /// An operator: a named one with its API token, or the bootstrap principal with
    /// the admin token.
    Operator(Principal),
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
    /// The instance the token is for.
    pub instance_id: InstanceId,
    /// The new token's `jti`.
    pub token_jti: String,
    /// Its new token.
    pub token: Secret,
    /// When the token expires.
    pub expires_at: OffsetDateTime,
    /// How often the plugin must heartbeat.
    pub heartbeat_interval: Duration,
    /// Whether this re-registered a plugin that was registered already (its instance,
    /// or a new instance of it).
    pub reregistered: bool,
    /// Whether this added an instance to a plugin that was registered already.
    pub new_instance: bool,
    /// When the registration this one replaced was made, if it replaced a stale one
    /// (dev mode, [`RegistryConfig::replace_stale`]). Such a registration is new
    /// (`reregistered` is false): every earlier token of the plugin is revoked.
    pub replaced: Option<OffsetDateTime>,
    /// The stored record.
    pub record: PluginRecord,
    /// The enrollment this registration used, if it presented an enrollment token.
    pub enrollment_id: Option<String>,
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
    /// Plugins marked stale (their last live instance went stale).
    pub stale: usize,
    /// Plugins deregistered (their last instance was removed).
    pub deregistered: usize,
    /// Instances marked stale (including those of plugins marked stale).
    pub instances_stale: usize,
    /// Instances removed (including those of plugins deregistered).
    pub instances_removed: usize,
    /// Expiry was held back (self-preservation).
    pub self_preservation: bool,
    /// Events of earlier sweeps' transitions published now (their sweep died
    /// between the transition and the publication).
    pub republished: usize,
}

/// A plugin as an audit entry's actor: `plugin:<id>` (operators are `operator:<name>`,
/// the core itself `system`).
pub(crate) fn plugin_actor(id: &str) -> String {
    format!("plugin:{id}")
}

/// Who did what to what, for an audit entry.
#[derive(Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) actor: &'a str,
    pub(crate) action: &'a str,
    pub(crate) target: &'a str,
}

/// An audited change: who did what to what, why, with which details, in which trace.
pub(super) struct Change<'a, F> {
    pub(super) trace_id: &'a str,
    pub(super) subject: Subject<'a>,
    pub(super) reason: &'a str,
    pub(super) details: F,
}

/// Why [`Registry::replace_and_audit`] failed.
pub(super) enum WriteFailed {
    /// The store wrote nothing (`PreconditionFailed`: another write came first).
    Store(StoreError),
    /// The audit entry could not be appended after the write.
    Audit(RegistryError),
}

impl WriteFailed {
    /// For an operator's write: `Ok` to read the record again and retry (another write
    /// came first), else the answer.
    pub(super) fn or_retry(self) -> Result<(), RegistryError> {
        match self {
            Self::Store(StoreError::PreconditionFailed) => Ok(()),
            Self::Store(StoreError::NotFound) => Err(RegistryError::NotFound),
            Self::Store(e) => Err(RegistryError::store(e)),
            Self::Audit(e) => Err(e),
        }
    }
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

    /// The time on the registry's clock.
    pub fn now(&self) -> OffsetDateTime {
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
}
