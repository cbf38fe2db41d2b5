//! The registry model: random action sequences run against the real
//! [`vivified_domain::Registry`] (real JWTs, a [`ManualClock`], in-memory audit log and
//! bus, any [`PluginStore`]) and against a tiny reference model, compared after every
//! step.
//!
//! The model states the registry's intended semantics in a few lines each:
//! - every operation checks 401 (no credential, a credential that does not verify, an
//!   expired token, a token whose plugin or `jti` is gone) before 403 (a valid
//!   credential for something else) before 404 (unknown id, admin only); a correctly
//!   signed plugin token that is no longer its plugin's current one is 401 everywhere,
//!   also on another plugin's routes and on admin-only routes: only a current plugin
//!   token is told 403;
//! - a new id registers without a credential in dev mode and with the registration
//!   secret in production mode;
//! - a held id re-registers only with the plugin's current token, which may have
//!   expired less than `reregister_grace` ago; never with the registration secret, the
//!   admin token or another plugin's token (409, after 400 for an invalid manifest:
//!   validation before conflict); a revoked token of the plugin itself is 401 before
//!   its manifest is looked at;
//! - in dev mode, a registration without a credential replaces the held id's
//!   registration if it is enabled and stale (marked so, or past its deadline): a new
//!   record (`registered_at` now, liveness `registered`, health unknown) with a new
//!   token, announced as `plugin.replaced`;
//! - an operator's revocation by time (one plugin, or every plugin) revokes each
//!   current token issued at or before the instant (never in the future: 400); a
//!   registration credential (dev mode: none; any mode: the registration secret) then
//!   takes an enabled plugin's id over as a replacement;
//! - re-registration keeps `registered_at`, liveness and health, replaces the manifest
//!   and rotates the token; refresh rotates the token; deregistration frees the id;
//! - lifecycle events have the id `{event_type}:{plugin_id}:{token_jti}`, `token_jti`
//!   being the registration concerned: the new token's for `plugin.registered` and
//!   `plugin.reregistered`, the removed record's for `plugin.deregistered`; transitions
//!   that can repeat (`plugin.stale`, `plugin.recovered`, `plugin.disabled`,
//!   `plugin.enabled`) append the record version: `{token_jti}:{version}`;
//! - liveness: registration, re-registration, a heartbeat and enabling set a deadline
//!   `HB_TTL` from now; a sweep marks stale every enabled live plugin past it (and
//!   moves the deadline to `DEREGISTER_AFTER` after its last sign of life), and
//!   deregisters every enabled stale plugin past that — unless, when something is
//!   due, more than half of at least three live plugins are silent (deadline within
//!   `HB_TTL - 2 × interval` from now; self-preservation: nothing changes);
//!   a heartbeat or re-registration of a stale plugin recovers it; disabling clears
//!   the deadline, refuses heartbeats and refreshes with 403 `plugin_disabled`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration as StdDuration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tokio::sync::broadcast::error::TryRecvError;
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus};
use vivified_domain::{
    HeartbeatReport, IssuedRegistration, ManifestValidator, Mode, Ports, Registry, RegistryConfig,
    RegistryError,
};
use vivified_ports::{
    Health, Liveness, PluginRecord, PluginStore, REVOKED_JTI, Secret, TokenIssuer, VerifyOptions,
};

/// Ids the actions draw from: few, so that registrations collide. The last one is not
/// a valid plugin id; only lookups and heartbeats use it.
const IDS: &[&str] = &["alpha", "beta", "gamma", "Not_An_Id"];
const REGISTERABLE: usize = 3;
const ADMIN: &str = "model-admin-token-0123456789abcdef";
const REGISTRATION_SECRET: &str = "model-registration-secret-0123456789";
const JWT_SECRET: &str = "model-jwt-secret-of-at-least-32-bytes";
const GARBAGE: &str = "eyJhbGciOiJIUzI1NiJ9.not-a-token.at-all";
/// Token lifetime.
const TTL: i64 = 3600;
/// Clock leeway of the JWT issuer on expiry.
const LEEWAY: i64 = 5;
/// Re-registration grace for expired tokens.
const GRACE: i64 = 7 * 24 * 3600;
/// Silence after which a plugin is stale.
const HB_TTL: i64 = 30;
/// Silence after which a plugin is deregistered.
const DEREGISTER_AFTER: i64 = 120;

/// Which credential an action presents, relative to its target id.
#[derive(Clone, Debug)]
pub enum Cred {
    /// No `Authorization` header.
    None,
    /// The admin token.
    Admin,
    /// The registration secret.
    RegistrationSecret,
    /// Something that is not a token.
    Garbage,
    /// The target's current token (none if the target is not registered).
    Current,
    /// One of the target's earlier tokens: refreshed, re-registered or deregistered
    /// (its current token if it has no earlier one).
    Revoked(Index),
    /// A token issued to another plugin, current or not.
    OtherPlugin(Index),
    /// An unexpired token issued to another plugin that is no longer current (that
    /// plugin deregistered, or its token replaced); any token of another plugin if there
    /// is none.
    StaleOther(Index),
}

/// The manifest an action sends.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A valid manifest for the target id.
    Valid,
    /// `version` breaks its pattern.
    BadVersion,
    /// `handles_phi` without encryption, audit, …: only the domain rules object.
    PhiWithoutSafeguards,
    /// The id breaks its pattern (the target id is ignored).
    BadId,
}

/// The id an action is about.
#[derive(Clone, Debug)]
pub enum Target {
    /// One of the ids registered at that moment (the first id if none is).
    Registered(Index),
    /// An id of [`IDS`], registered or not.
    Pool(usize),
}

/// One step.
#[derive(Clone, Debug)]
pub enum Action {
    /// `Registry::register`.
    Register {
        id: Target,
        cred: Cred,
        kind: Kind,
        major: u8,
    },
    /// `Registry::heartbeat`.
    Heartbeat {
        id: Target,
        cred: Cred,
        health: Health,
    },
    /// `Registry::refresh_token`.
    Refresh { id: Target, cred: Cred },
    /// `Registry::deregister`.
    Deregister { id: Target, cred: Cred },
    /// `Registry::get`.
    Get { id: Target, cred: Cred },
    /// `Registry::list`; `id` says whose tokens `cred` draws from.
    List { id: Target, cred: Cred },
    /// Moves the clock forward.
    Advance { secs: i64 },
    /// `Registry::sweep`.
    Sweep,
    /// `Registry::disable` with one of two reasons.
    Disable { id: Target, cred: Cred, reason: u8 },
    /// `Registry::enable`.
    Enable { id: Target, cred: Cred },
    /// `Registry::revoke_plugin_tokens` at `ago` seconds before now (negative: in the
    /// future).
    Revoke { id: Target, cred: Cred, ago: i64 },
    /// `Registry::revoke_all_tokens` at `ago` seconds before now.
    RevokeAll { cred: Cred, ago: i64 },
}

fn cred() -> impl Strategy<Value = Cred> {
    prop_oneof![
        1 => Just(Cred::None),
        1 => Just(Cred::Admin),
        1 => Just(Cred::RegistrationSecret),
        1 => Just(Cred::Garbage),
        6 => Just(Cred::Current),
        4 => any::<Index>().prop_map(Cred::Revoked),
        2 => any::<Index>().prop_map(Cred::OtherPlugin),
        2 => any::<Index>().prop_map(Cred::StaleOther),
    ]
}

/// Registration credentials: the registration secret (needed in production) more often.
fn register_cred() -> impl Strategy<Value = Cred> {
    prop_oneof![
        2 => Just(Cred::None),
        1 => Just(Cred::Admin),
        4 => Just(Cred::RegistrationSecret),
        1 => Just(Cred::Garbage),
        6 => Just(Cred::Current),
        4 => any::<Index>().prop_map(Cred::Revoked),
        2 => any::<Index>().prop_map(Cred::OtherPlugin),
        2 => any::<Index>().prop_map(Cred::StaleOther),
    ]
}

/// Credentials of admin-only operations: the admin token most often.
fn admin_cred() -> impl Strategy<Value = Cred> {
    prop_oneof![
        8 => Just(Cred::Admin),
        1 => Just(Cred::None),
        1 => Just(Cred::Garbage),
        2 => Just(Cred::Current),
        1 => any::<Index>().prop_map(Cred::Revoked),
        1 => any::<Index>().prop_map(Cred::StaleOther),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        8 => Just(Kind::Valid),
        2 => Just(Kind::BadVersion),
        2 => Just(Kind::PhiWithoutSafeguards),
        1 => Just(Kind::BadId),
    ]
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Healthy),
        Just(Health::Degraded),
        Just(Health::Unhealthy),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => any::<Index>().prop_map(Target::Registered),
        3 => (0..REGISTERABLE).prop_map(Target::Pool),
        1 => Just(Target::Pool(IDS.len() - 1)),
    ]
}

fn register_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        1 => any::<Index>().prop_map(Target::Registered),
        1 => (0..REGISTERABLE).prop_map(Target::Pool),
    ]
}

fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        5 => 1i64..=60,
        // Around the heartbeat ttl and the deregistration deadline.
        2 => (HB_TTL - 2)..=(HB_TTL + 2),
        1 => (DEREGISTER_AFTER - HB_TTL - 2)..=(DEREGISTER_AFTER + 2),
        // Around a token's expiry (TTL + leeway).
        2 => (TTL - 10)..=(TTL + 10),
        1 => Just(24 * 3600),
        // Around the end of the re-registration grace of a fresh token.
        1 => (TTL + LEEWAY + GRACE - 5)..=(TTL + LEEWAY + GRACE + 5),
    ]
}

/// How long before now a revocation's instant is: mostly now or shortly before (around
/// the registrations of the last minute), sometimes in the future.
fn ago() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(0i64),
        4 => 1i64..=90,
        1 => -5i64..=-1,
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (register_target(), register_cred(), kind(), 1u8..4)
            .prop_map(|(id, cred, kind, major)| Action::Register { id, cred, kind, major }),
        6 => (target(), cred(), health())
            .prop_map(|(id, cred, health)| Action::Heartbeat { id, cred, health }),
        4 => (target(), cred()).prop_map(|(id, cred)| Action::Refresh { id, cred }),
        3 => (target(), cred()).prop_map(|(id, cred)| Action::Deregister { id, cred }),
        2 => (target(), cred()).prop_map(|(id, cred)| Action::Get { id, cred }),
        2 => (target(), cred()).prop_map(|(id, cred)| Action::List { id, cred }),
        3 => advance().prop_map(|secs| Action::Advance { secs }),
        3 => Just(Action::Sweep),
        2 => (target(), admin_cred(), 0u8..2).prop_map(|(id, cred, reason)| Action::Disable { id, cred, reason }),
        2 => (target(), admin_cred()).prop_map(|(id, cred)| Action::Enable { id, cred }),
        1 => (target(), admin_cred(), ago()).prop_map(|(id, cred, ago)| Action::Revoke { id, cred, ago }),
        1 => (admin_cred(), ago()).prop_map(|(cred, ago)| Action::RevokeAll { cred, ago }),
    ]
}

/// A sequence: first a few registrations with the registration secret (so that most
/// sequences start with plugins to act on), then up to 40 random actions.
fn actions() -> impl Strategy<Value = Vec<Action>> {
    (
        0..=REGISTERABLE,
        proptest::collection::vec(action(), 5..=40),
    )
        .prop_map(|(n, rest)| {
            (0..n)
                .map(|i| Action::Register {
                    id: Target::Pool(i),
                    cred: Cred::RegistrationSecret,
                    kind: Kind::Valid,
                    major: 1,
                })
                .chain(rest)
                .collect()
        })
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Dev), Just(Mode::Production)]
}

/// The class of an operation's result, with the reason codes the registry promises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Unauthorized(&'static str),
    Forbidden(&'static str),
    PluginDisabled,
    NotFound,
    AlreadyRegistered,
    Conflict(&'static str),
    InvalidManifest,
    InvalidRequest,
    Unavailable,
}

fn class<T>(r: &Result<T, RegistryError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(RegistryError::Unauthorized(why)) => Outcome::Unauthorized(why),
        Err(RegistryError::Forbidden(why)) => Outcome::Forbidden(why),
        Err(RegistryError::RoleRequired(_)) => Outcome::Forbidden("insufficient_role"),
        Err(RegistryError::PluginDisabled) => Outcome::PluginDisabled,
        Err(RegistryError::NotFound) => Outcome::NotFound,
        Err(RegistryError::AlreadyRegistered) => Outcome::AlreadyRegistered,
        Err(RegistryError::Conflict(why)) => Outcome::Conflict(why),
        Err(RegistryError::InvalidManifest(_)) => Outcome::InvalidManifest,
        Err(RegistryError::InvalidRequest(_)) => Outcome::InvalidRequest,
        Err(RegistryError::Unavailable { .. }) => Outcome::Unavailable,
    }
}

/// A token the test holds (every token ever issued).
#[derive(Clone, Debug)]
struct Held {
    plugin: String,
    jti: String,
    expires_at: OffsetDateTime,
    token: String,
}

/// What the model knows of one registered plugin.
#[derive(Clone, Debug, PartialEq)]
struct Rec {
    jti: String,
    /// When the token `jti` names was issued.
    issued_at: OffsetDateTime,
    registered_at: OffsetDateTime,
    manifest_version: String,
    status: Liveness,
    health: Health,
    last_heartbeat: Option<OffsetDateTime>,
    version: u64,
    enabled: bool,
    disabled_reason: Option<String>,
    next_deadline: Option<OffsetDateTime>,
}

/// What a successful registration was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registered {
    New,
    Again,
    Replaced,
}

/// A credential after resolving it against the tokens held.
#[derive(Clone, Copy, Debug)]
enum Bearer {
    None,
    Admin,
    Secret,
    Garbage,
    Token(usize),
}

enum Caller<'a> {
    Admin,
    Plugin(&'a Held),
}

struct Model {
    /// How often each (operation, expected outcome) occurred.
    coverage: BTreeMap<String, usize>,
    mode: Mode,
    now: OffsetDateTime,
    records: BTreeMap<String, Rec>,
    held: Vec<Held>,
    self_preservation: bool,
}

impl Model {
    /// The deadline a record gets when it shows life now.
    fn deadline_for(&self, rec: &Rec) -> Option<OffsetDateTime> {
        if !rec.enabled {
            return None;
        }
        Some(match rec.status {
            Liveness::Registered | Liveness::Active => self.now + Duration::seconds(HB_TTL),
            Liveness::Stale => self.now + Duration::seconds(DEREGISTER_AFTER),
        })
    }

    /// 403 `plugin_disabled` for an authorized plugin that is disabled.
    fn enabled(&self, id: &str) -> Result<(), Outcome> {
        match self.records.get(id) {
            Some(r) if !r.enabled => Err(Outcome::PluginDisabled),
            _ => Ok(()),
        }
    }

    /// Admin-only operations on `id`: 401 → 403 (a current plugin token) → 404.
    fn admin_on(&self, id: &str, b: Bearer) -> Result<(), Outcome> {
        self.list(b)?;
        if self.records.contains_key(id) {
            Ok(())
        } else {
            Err(Outcome::NotFound)
        }
    }

    fn note(&mut self, label: String) {
        *self.coverage.entry(label).or_default() += 1;
    }

    fn target(&self, t: &Target) -> &'static str {
        match t {
            Target::Pool(i) => IDS[*i],
            Target::Registered(ix) => {
                let ids: Vec<&'static str> = IDS
                    .iter()
                    .copied()
                    .filter(|id| self.records.contains_key(*id))
                    .collect();
                if ids.is_empty() {
                    IDS[0]
                } else {
                    ids[ix.index(ids.len())]
                }
            }
        }
    }

    fn resolve(&self, target: &str, cred: &Cred) -> Bearer {
        let pick = |ix: &Index, f: &dyn Fn(&Held) -> bool| {
            let found: Vec<usize> = (0..self.held.len()).filter(|&i| f(&self.held[i])).collect();
            if found.is_empty() {
                Bearer::None
            } else {
                Bearer::Token(found[ix.index(found.len())])
            }
        };
        let current = self.records.get(target).map(|r| r.jti.as_str());
        match cred {
            Cred::None => Bearer::None,
            Cred::Admin => Bearer::Admin,
            Cred::RegistrationSecret => Bearer::Secret,
            Cred::Garbage => Bearer::Garbage,
            Cred::Current => self.current(target),
            Cred::Revoked(ix) => match pick(ix, &|h| {
                h.plugin == target && Some(h.jti.as_str()) != current
            }) {
                Bearer::None => self.current(target),
                b => b,
            },
            Cred::OtherPlugin(ix) => pick(ix, &|h| h.plugin != target),
            Cred::StaleOther(ix) => match pick(ix, &|h| {
                h.plugin != target
                    && !self.expired(h, 0)
                    && self.records.get(&h.plugin).is_none_or(|r| r.jti != h.jti)
            }) {
                Bearer::None => pick(ix, &|h| h.plugin != target),
                b => b,
            },
        }
    }

    fn current(&self, target: &str) -> Bearer {
        self.records
            .get(target)
            .and_then(|r| self.held.iter().position(|h| h.jti == r.jti))
            .map_or(Bearer::None, Bearer::Token)
    }

    fn bearer(&self, b: Bearer) -> Option<String> {
        match b {
            Bearer::None => None,
            Bearer::Admin => Some(ADMIN.to_owned()),
            Bearer::Secret => Some(REGISTRATION_SECRET.to_owned()),
            Bearer::Garbage => Some(GARBAGE.to_owned()),
            Bearer::Token(i) => Some(self.held[i].token.clone()),
        }
    }

    fn expired(&self, h: &Held, grace: i64) -> bool {
        self.now > h.expires_at + Duration::seconds(LEEWAY + grace)
    }

    /// 401 or the caller (signature and expiry only).
    fn authenticate(&self, b: Bearer) -> Result<Caller<'_>, Outcome> {
        match b {
            Bearer::None => Err(Outcome::Unauthorized("missing_credentials")),
            Bearer::Admin => Ok(Caller::Admin),
            Bearer::Secret | Bearer::Garbage => Err(Outcome::Unauthorized("invalid_token")),
            Bearer::Token(i) if self.expired(&self.held[i], 0) => {
                Err(Outcome::Unauthorized("expired_token"))
            }
            Bearer::Token(i) => Ok(Caller::Plugin(&self.held[i])),
        }
    }

    /// 401 unless `held` is still the current token of its own plugin.
    fn is_current(&self, held: &Held) -> Result<(), Outcome> {
        match self.records.get(&held.plugin) {
            None => Err(Outcome::Unauthorized("unknown_plugin")),
            Some(r) if r.jti != held.jti => Err(Outcome::Unauthorized("revoked_token")),
            Some(_) => Ok(()),
        }
    }

    /// Whether `b` is a correctly signed, unexpired token of a plugin other than `id`
    /// that is no longer current (its plugin gone or its `jti` replaced).
    fn stale_of_another(&self, id: &str, b: Bearer) -> bool {
        match self.authenticate(b) {
            Ok(Caller::Plugin(h)) => h.plugin != id && self.is_current(h).is_err(),
            _ => false,
        }
    }

    /// The checks of every plugin-only operation on `id`: signature and expiry (401) →
    /// the token is still its plugin's current one (401) → it is for `id` (403).
    fn authorize_plugin(&self, id: &str, b: Bearer) -> Result<(), Outcome> {
        let held = match self.authenticate(b)? {
            Caller::Admin => return Err(Outcome::Forbidden("plugin_token_required")),
            Caller::Plugin(h) => h,
        };
        self.is_current(held)?;
        if held.plugin != id {
            return Err(Outcome::Forbidden("token_for_another_plugin"));
        }
        Ok(())
    }

    /// Admin: 404 for an unknown id; a plugin: its own checks.
    fn authorize_admin_or_plugin(&self, id: &str, b: Bearer) -> Result<(), Outcome> {
        match self.authenticate(b)? {
            Caller::Admin if self.records.contains_key(id) => Ok(()),
            Caller::Admin => Err(Outcome::NotFound),
            Caller::Plugin(_) => self.authorize_plugin(id, b),
        }
    }

    fn list(&self, b: Bearer) -> Result<(), Outcome> {
        match self.authenticate(b)? {
            Caller::Admin => Ok(()),
            Caller::Plugin(h) => {
                self.is_current(h)?;
                Err(Outcome::Forbidden("admin_token_required"))
            }
        }
    }

    /// Whether a registration credential may replace `rec`: an enabled plugin whose
    /// tokens were revoked or (`stale_too`: dev mode, no credential) that is stale.
    fn replaceable(&self, rec: &Rec, stale_too: bool) -> bool {
        rec.enabled
            && (rec.jti == REVOKED_JTI
                || stale_too
                    && (rec.status == Liveness::Stale
                        || rec.next_deadline.is_some_and(|d| d <= self.now)))
    }

    /// Admin-only revocation at `ago` seconds before now: 401 → 403 → 400 (future) →
    /// 404 (one plugin, unknown id).
    fn revoke(&self, id: Option<&str>, b: Bearer, ago: i64) -> Result<(), Outcome> {
        self.list(b)?;
        if ago < 0 {
            return Err(Outcome::InvalidRequest);
        }
        match id {
            Some(id) if !self.records.contains_key(id) => Err(Outcome::NotFound),
            _ => Ok(()),
        }
    }

    /// Revokes `rec`'s token if issued at or before `at`; whether it did.
    fn revoke_rec(rec: &mut Rec, at: OffsetDateTime) -> bool {
        if rec.jti == REVOKED_JTI || rec.issued_at > at {
            return false;
        }
        rec.jti = REVOKED_JTI.to_owned();
        rec.version += 1;
        true
    }

    /// What a registration does, or the refusal.
    fn register(&self, id: Option<&str>, valid: bool, b: Bearer) -> Result<Registered, Outcome> {
        // Validation before conflict.
        let conflict = || {
            Err(if valid {
                Outcome::AlreadyRegistered
            } else {
                Outcome::InvalidManifest
            })
        };
        if let Some(rec) = id.and_then(|id| self.records.get(id)) {
            let held = match b {
                Bearer::None if self.mode == Mode::Dev && valid && self.replaceable(rec, true) => {
                    return Ok(Registered::Replaced);
                }
                Bearer::Secret if valid && self.replaceable(rec, false) => {
                    return Ok(Registered::Replaced);
                }
                Bearer::None | Bearer::Admin | Bearer::Secret => return conflict(),
                Bearer::Garbage => return Err(Outcome::Unauthorized("invalid_token")),
                Bearer::Token(i) => &self.held[i],
            };
            if self.expired(held, GRACE) {
                return Err(Outcome::Unauthorized("expired_token"));
            }
            if Some(held.plugin.as_str()) != id {
                return conflict();
            }
            // 401 before 400: a revoked token learns nothing about its manifest.
            if held.jti != rec.jti {
                return Err(Outcome::Unauthorized("revoked_token"));
            }
            if !valid {
                return Err(Outcome::InvalidManifest);
            }
            return Ok(Registered::Again);
        }
        if self.mode == Mode::Production && !matches!(b, Bearer::Secret) {
            return Err(Outcome::Unauthorized("registration_secret_required"));
        }
        if !valid {
            return Err(Outcome::InvalidManifest);
        }
        Ok(Registered::New)
    }
}

fn manifest(id: &str, kind: Kind, major: u8, step: usize) -> Value {
    let mut m = json!({
        "id": id,
        "name": format!("Model plugin {id}"),
        "version": format!("{major}.0.0"),
        "contracts": ["CommunicationPlugin"],
        "traits": ["audit_required"],
        "security": {"authentication_required": true, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"},
        "x-model-step": step
    });
    match kind {
        Kind::Valid => {}
        Kind::BadVersion => m["version"] = json!(format!("{major}.0")),
        Kind::PhiWithoutSafeguards => {
            m["traits"] = json!(["handles_phi"]);
            m["security"]["data_classification"] = json!(["phi"]);
        }
        Kind::BadId => m["id"] = json!("Bad_ID"),
    }
    m
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(fail(format!($($fmt)*)));
        }
    };
}

/// Everything one case needs.
struct World {
    registry: Registry,
    store: Arc<dyn PluginStore>,
    clock: Arc<ManualClock>,
    tokens: Arc<JwtTokenIssuer>,
    audit: Arc<InMemoryAuditLog>,
    events: tokio::sync::broadcast::Receiver<vivified_ports::BusEvent>,
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid timestamp")
}

fn world(store: Arc<dyn PluginStore>, mode: Mode) -> World {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut jwt = JwtConfig::new(Secret::new(JWT_SECRET));
    jwt.ttl = StdDuration::from_secs(TTL as u64);
    let tokens = Arc::new(JwtTokenIssuer::new(jwt).expect("jwt config"));
    let audit = Arc::new(InMemoryAuditLog::new(4096));
    let bus = Arc::new(InMemoryEventBus::new(256));
    let events = bus.subscribe();
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store: Arc::clone(&store),
        tokens: tokens.clone(),
        clock: clock.clone(),
        bus,
        audit: audit.clone(),
    };
    let config = RegistryConfig {
        mode,
        admin_token: Some(Secret::new(ADMIN)),
        registration_secret: Some(Secret::new(REGISTRATION_SECRET)),
        heartbeat_interval: StdDuration::from_secs(10),
        reregister_grace: StdDuration::from_secs(GRACE as u64),
        heartbeat_ttl: StdDuration::from_secs(HB_TTL as u64),
        deregister_after: Some(StdDuration::from_secs(DEREGISTER_AFTER as u64)),
        self_preservation_threshold: 0.5,
        self_preservation_min_live: 3,
        max_instances: 64,
        // Small batches, so that a sweep takes several store calls.
        sweep_batch: 2,
        outbox_lease: StdDuration::from_secs(30),
        audit_in_store: false,
        replace_stale: true,
        break_glass: false,
        oidc_role_map: RegistryConfig::default().oidc_role_map,
    };
    let registry = Registry::new(
        ports,
        Arc::new(ManifestValidator::new().expect("schema compiles")),
        config,
    );
    World {
        registry,
        store,
        clock,
        tokens,
        audit,
        events,
    }
}

/// Checks a freshly issued token and returns what the test keeps of it.
async fn take_token(
    w: &World,
    m: &Model,
    id: &str,
    reg: &IssuedRegistration,
) -> Result<Held, TestCaseError> {
    check!(
        reg.plugin_id.as_str() == id,
        "issued for {} not {id}",
        reg.plugin_id
    );
    check!(
        reg.expires_at == m.now + Duration::seconds(TTL),
        "expires_at {} != now + ttl",
        reg.expires_at
    );
    check!(
        reg.heartbeat_interval == StdDuration::from_secs(10),
        "heartbeat interval {:?}",
        reg.heartbeat_interval
    );
    let claims = w
        .tokens
        .verify(
            reg.token.expose(),
            VerifyOptions {
                now: m.now,
                expired_grace: StdDuration::ZERO,
            },
        )
        .await
        .map_err(|e| fail(format!("an issued token must verify: {e}")))?;
    check!(
        claims.plugin_id.as_str() == id,
        "token subject {}",
        claims.plugin_id
    );
    check!(
        claims.jti == reg.token_jti,
        "the store keeps the jti of the token just issued"
    );
    check!(
        m.held.iter().all(|h| h.jti != claims.jti),
        "jti {} was issued before",
        claims.jti
    );
    Ok(Held {
        plugin: id.to_owned(),
        jti: claims.jti,
        expires_at: reg.expires_at,
        token: reg.token.expose().to_owned(),
    })
}

fn same_record(got: &PluginRecord, id: &str, want: &Rec) -> Result<(), TestCaseError> {
    let ctx = format!("record {id}: got {got:?}, model {want:?}");
    check!(got.plugin_id.as_str() == id, "{ctx}");
    check!(got.manifest["id"] == id, "{ctx}");
    check!(
        got.manifest["version"] == want.manifest_version.as_str(),
        "{ctx}"
    );
    check!(got.instances.len() == 1, "one instance: {ctx}");
    check!(got.instances[0].token_jti == want.jti, "{ctx}");
    check!(
        got.instances[0].token_issued_at == Some(want.issued_at),
        "token_issued_at: {ctx}"
    );
    check!(
        got.registered_at == want.registered_at,
        "registered_at: {ctx}"
    );
    check!(got.status == want.status, "status: {ctx}");
    check!(got.health == want.health, "health: {ctx}");
    check!(
        got.last_heartbeat == want.last_heartbeat,
        "last_heartbeat: {ctx}"
    );
    check!(got.version == want.version, "version: {ctx}");
    check!(got.enabled == want.enabled, "enabled: {ctx}");
    check!(
        got.disabled_reason == want.disabled_reason,
        "disabled_reason: {ctx}"
    );
    check!(
        got.next_deadline == want.next_deadline,
        "next_deadline: {ctx}"
    );
    Ok(())
}

async fn compare_store(w: &World, m: &Model) -> Result<(), TestCaseError> {
    let all = w
        .store
        .list(None, 1000)
        .await
        .map_err(|e| fail(format!("store list: {e}")))?;
    let ids: Vec<&str> = all.iter().map(|r| r.plugin_id.as_str()).collect();
    let want: Vec<&str> = m.records.keys().map(String::as_str).collect();
    check!(ids == want, "store ids {ids:?}, model ids {want:?}");
    for r in &all {
        same_record(r, r.plugin_id.as_str(), &m.records[r.plugin_id.as_str()])?;
    }
    Ok(())
}

/// A lifecycle event as [`drain_events`] renders it: its id — type, plugin and the
/// `jti` of the registration concerned — then its type and its payload's plugin.
fn lifecycle(event_type: &str, id: &str, jti: &str) -> String {
    format!("{event_type}:{id}:{jti} {event_type} {id}")
}

/// A transition that can repeat: its id carries the registration's key and the record
/// version.
fn transition(event_type: &str, id: &str, rec: &Rec) -> String {
    lifecycle(event_type, id, &format!("{}:{}", key(rec), rec.version))
}

/// The key of a registration (`PluginRecord::registration_key`): when it was made.
fn key(rec: &Rec) -> String {
    (rec.registered_at.unix_timestamp_nanos() / 1_000).to_string()
}

fn drain_events(w: &mut World) -> Result<Vec<String>, TestCaseError> {
    let mut out = Vec::new();
    loop {
        match w.events.try_recv() {
            Ok(e) => out.push(format!(
                "{} {} {}",
                e.event_id,
                e.event_type,
                e.payload["plugin_id"].as_str().unwrap_or("?")
            )),
            Err(TryRecvError::Empty) => return Ok(out),
            Err(e) => return Err(fail(format!("bus: {e}"))),
        }
    }
}

async fn step(
    w: &mut World,
    m: &mut Model,
    n: usize,
    action: &Action,
) -> Result<(), TestCaseError> {
    let mut events: Vec<String> = Vec::new();
    match action {
        Action::Advance { secs } => {
            w.clock.advance(Duration::seconds(*secs));
            m.now += Duration::seconds(*secs);
        }
        Action::Register {
            id,
            cred,
            kind,
            major,
        } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let body = manifest(id, *kind, *major, n);
            let valid = matches!(kind, Kind::Valid);
            let claimed = (!matches!(kind, Kind::BadId)).then_some(id);
            let want = m.register(claimed, valid, b);
            let got = w
                .registry
                .register(&body, m.bearer(b).as_deref(), "model")
                .await;
            let want_class = want.as_ref().map_or_else(Clone::clone, |_| Outcome::Ok);
            let late = matches!(b, Bearer::Token(i) if m.expired(&m.held[i], 0));
            m.note(match &want {
                Ok(Registered::Again) if late => {
                    "register reregistered with an expired token".to_owned()
                }
                Ok(Registered::Again) => "register reregistered".to_owned(),
                Ok(Registered::New) => "register new".to_owned(),
                Ok(Registered::Replaced)
                    if claimed.is_some_and(|id| m.records[id].jti == REVOKED_JTI) =>
                {
                    format!("register replaced a revoked registration with {b:?}")
                }
                Ok(Registered::Replaced) => "register replaced a stale registration".to_owned(),
                Err(e) => format!("register {e:?}"),
            });
            if !valid
                && want_class == Outcome::InvalidManifest
                && claimed.is_some_and(|id| m.records.contains_key(id))
            {
                m.note("register InvalidManifest before AlreadyRegistered".to_owned());
            }
            if !valid && want_class == Outcome::Unauthorized("revoked_token") {
                m.note(
                    "register Unauthorized(\"revoked_token\") before InvalidManifest".to_owned(),
                );
            }
            check!(
                class(&got) == want_class,
                "register {id} {kind:?} with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let (Ok(reg), Ok(kind)) = (got, want) {
                let reregistered = kind == Registered::Again;
                check!(reg.reregistered == reregistered, "reregistered flag");
                check!(
                    reg.replaced
                        == (kind == Registered::Replaced)
                            .then(|| m.records.get(id).map(|r| r.registered_at))
                            .flatten(),
                    "replaced: got {:?}",
                    reg.replaced
                );
                let held = take_token(w, m, id, &reg).await?;
                let version = format!("{major}.0.0");
                let was_stale = reregistered
                    && m.records
                        .get(id)
                        .is_some_and(|r| r.status == Liveness::Stale);
                // A new registration (or a replacement: the same, one version on).
                let fresh = |version: String, record_version: u64| Rec {
                    jti: held.jti.clone(),
                    issued_at: m.now,
                    registered_at: m.now,
                    manifest_version: version,
                    status: Liveness::Registered,
                    health: Health::Unknown,
                    last_heartbeat: None,
                    version: record_version,
                    enabled: true,
                    disabled_reason: None,
                    next_deadline: None,
                };
                let mut rec = match m.records.get(id) {
                    Some(old) if kind == Registered::Replaced => fresh(version, old.version + 1),
                    Some(old) => Rec {
                        jti: held.jti.clone(),
                        issued_at: m.now,
                        manifest_version: version,
                        version: old.version + 1,
                        status: if was_stale {
                            Liveness::Registered
                        } else {
                            old.status
                        },
                        ..old.clone()
                    },
                    None => fresh(version, 1),
                };
                rec.next_deadline = m.deadline_for(&rec);
                if was_stale {
                    m.note("register recovers a stale plugin".to_owned());
                }
                check!(
                    *reg.record.manifest == body,
                    "the manifest is stored as sent"
                );
                same_record(&reg.record, id, &rec)?;
                let event = match kind {
                    Registered::Again => "plugin.reregistered",
                    Registered::New => "plugin.registered",
                    Registered::Replaced => "plugin.replaced",
                };
                events.push(lifecycle(event, id, &held.jti));
                if was_stale {
                    events.push(transition("plugin.recovered", id, &rec));
                }
                m.records.insert(id.to_owned(), rec);
                m.held.push(held);
            }
        }
        Action::Heartbeat { id, cred, health } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let stale = m.stale_of_another(id, b);
            let want = m.authorize_plugin(id, b).and_then(|()| m.enabled(id));
            let got = w
                .registry
                .heartbeat(
                    id,
                    m.bearer(b).as_deref(),
                    HeartbeatReport { health: *health },
                )
                .await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            m.note(format!("heartbeat {want_class:?}"));
            if stale {
                m.note(format!(
                    "another plugin's route, stale token: {want_class:?}"
                ));
            }
            check!(
                class(&got) == want_class,
                "heartbeat {id} with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(record) = got {
                let now = m.now;
                let rec = m.records.get_mut(id).expect("model has the record");
                let was_stale = rec.status == Liveness::Stale;
                rec.status = Liveness::Active;
                rec.health = *health;
                rec.last_heartbeat = Some(now);
                rec.next_deadline = Some(now + Duration::seconds(HB_TTL));
                rec.version += 1;
                same_record(&record, id, rec)?;
                if was_stale {
                    events.push(transition("plugin.recovered", id, rec));
                    m.note("heartbeat recovers a stale plugin".to_owned());
                }
            }
        }
        Action::Refresh { id, cred } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let stale = m.stale_of_another(id, b);
            let want = m.authorize_plugin(id, b).and_then(|()| m.enabled(id));
            let got = w
                .registry
                .refresh_token(id, m.bearer(b).as_deref(), "model")
                .await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            m.note(format!("refresh {want_class:?}"));
            if stale {
                m.note(format!(
                    "another plugin's route, stale token: {want_class:?}"
                ));
            }
            check!(
                class(&got) == want_class,
                "refresh {id} with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(reg) = got {
                check!(!reg.reregistered, "a refresh is not a re-registration");
                let held = take_token(w, m, id, &reg).await?;
                let now = m.now;
                let rec = m.records.get_mut(id).expect("model has the record");
                rec.jti = held.jti.clone();
                rec.issued_at = now;
                rec.version += 1;
                same_record(&reg.record, id, rec)?;
                m.held.push(held);
            }
        }
        Action::Deregister { id, cred } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let stale = m.stale_of_another(id, b);
            let want = m.authorize_admin_or_plugin(id, b);
            let got = w
                .registry
                .deregister(id, m.bearer(b).as_deref(), "model")
                .await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            m.note(format!("deregister {want_class:?}"));
            if stale {
                m.note(format!(
                    "another plugin's route, stale token: {want_class:?}"
                ));
            }
            check!(
                class(&got) == want_class,
                "deregister {id} with {b:?}: got {got:?}, model {want_class:?}"
            );
            if got.is_ok() {
                let removed = m
                    .records
                    .remove(id)
                    .ok_or_else(|| fail(format!("deregistered {id}, which the model lacks")))?;
                events.push(lifecycle("plugin.deregistered", id, &key(&removed)));
            }
        }
        Action::Get { id, cred } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let stale = m.stale_of_another(id, b);
            let want = m.authorize_admin_or_plugin(id, b);
            let got = w.registry.get(id, m.bearer(b).as_deref()).await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            m.note(format!("get {want_class:?}"));
            if stale {
                m.note(format!(
                    "another plugin's route, stale token: {want_class:?}"
                ));
            }
            check!(
                class(&got) == want_class,
                "get {id} with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(record) = got {
                same_record(&record, id, &m.records[id])?;
            }
        }
        Action::List { id, cred } => {
            let b = m.resolve(m.target(id), cred);
            let want = m.list(b);
            let got = w.registry.list(m.bearer(b).as_deref(), None, 100).await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            m.note(format!("list {want_class:?}"));
            check!(
                class(&got) == want_class,
                "list with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(records) = got {
                let ids: Vec<&str> = records.iter().map(|r| r.plugin_id.as_str()).collect();
                let want: Vec<&str> = m.records.keys().map(String::as_str).collect();
                check!(ids == want, "list {ids:?}, model {want:?}");
                for r in &records {
                    same_record(r, r.plugin_id.as_str(), &m.records[r.plugin_id.as_str()])?;
                }
            }
        }
        Action::Sweep => {
            let report = w
                .registry
                .sweep()
                .await
                .map_err(|e| fail(format!("sweep: {e}")))?;
            let now = m.now;
            let due = |r: &Rec| r.next_deadline.is_some_and(|d| d <= now);
            let (mut stale, mut gone) = (0, 0);
            let mut preserve = false;
            if m.records.values().any(due) {
                let live = m
                    .records
                    .values()
                    .filter(|r| r.enabled && r.status != Liveness::Stale)
                    .count();
                // Silent: missed two heartbeats (interval 10 s) — deadline within
                // `HB_TTL - 2 × 10 s` from now.
                let horizon = now + Duration::seconds(HB_TTL - 20);
                let silent = m
                    .records
                    .values()
                    .filter(|r| {
                        r.enabled
                            && r.status != Liveness::Stale
                            && r.next_deadline.is_some_and(|d| d <= horizon)
                    })
                    .count();
                preserve = silent > 0 && live >= 3 && silent * 2 > live;
            }
            if preserve {
                m.note("sweep self-preservation".to_owned());
            } else {
                for (id, rec) in &mut m.records {
                    if rec.enabled && rec.status != Liveness::Stale && due(rec) {
                        rec.status = Liveness::Stale;
                        rec.next_deadline = rec
                            .next_deadline
                            .map(|d| d + Duration::seconds(DEREGISTER_AFTER - HB_TTL));
                        rec.version += 1;
                        events.push(transition("plugin.stale", id, rec));
                        stale += 1;
                    }
                }
                let expired: Vec<String> = m
                    .records
                    .iter()
                    .filter(|(_, r)| r.enabled && r.status == Liveness::Stale && due(r))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in expired {
                    let rec = m.records.remove(&id).expect("listed above");
                    events.push(lifecycle("plugin.deregistered", &id, &key(&rec)));
                    gone += 1;
                }
                if stale > 0 {
                    m.note("sweep marks stale".to_owned());
                }
                if gone > 0 {
                    m.note("sweep deregisters".to_owned());
                }
            }
            m.self_preservation = preserve;
            check!(
                (report.stale, report.deregistered, report.self_preservation)
                    == (stale, gone, preserve),
                "sweep report {report:?}, model stale {stale} gone {gone} preserve {preserve}"
            );
            check!(
                w.registry.self_preservation() == preserve,
                "self-preservation flag"
            );
        }
        Action::Disable { id, cred, reason } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let reason = format!("reason {reason}");
            let want = m.admin_on(id, b);
            let got = w
                .registry
                .disable(id, m.bearer(b).as_deref(), &reason, "model")
                .await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            m.note(format!("disable {want_class:?}"));
            check!(
                class(&got) == want_class,
                "disable {id} with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(record) = got {
                let rec = m.records.get_mut(id).expect("model has the record");
                let changed = rec.enabled;
                if rec.enabled || rec.disabled_reason.as_deref() != Some(reason.as_str()) {
                    rec.enabled = false;
                    rec.disabled_reason = Some(reason);
                    rec.next_deadline = None;
                    rec.version += 1;
                }
                same_record(&record, id, rec)?;
                if changed {
                    events.push(transition("plugin.disabled", id, rec));
                }
            }
        }
        Action::Enable { id, cred } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let want = m.admin_on(id, b);
            let got = w.registry.enable(id, m.bearer(b).as_deref(), "model").await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            m.note(format!("enable {want_class:?}"));
            check!(
                class(&got) == want_class,
                "enable {id} with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(record) = got {
                let mut rec = m.records[id].clone();
                let changed = !rec.enabled;
                if changed {
                    rec.enabled = true;
                    rec.disabled_reason = None;
                    rec.next_deadline = m.deadline_for(&rec);
                    rec.version += 1;
                    events.push(transition("plugin.enabled", id, &rec));
                }
                same_record(&record, id, &rec)?;
                m.records.insert(id.to_owned(), rec);
            }
        }
        Action::Revoke { id, cred, ago } => {
            let id = m.target(id);
            let b = m.resolve(id, cred);
            let at = m.now - Duration::seconds(*ago);
            let want = m.revoke(Some(id), b, *ago);
            let got = w
                .registry
                .revoke_plugin_tokens(id, m.bearer(b).as_deref(), Some(at), "model")
                .await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            check!(
                class(&got) == want_class,
                "revoke {id} at -{ago}s with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(revocation) = got {
                let rec = m.records.get_mut(id).expect("model has the record");
                let revoked = Model::revoke_rec(rec, at);
                if revoked {
                    events.push(transition("plugin.tokens_revoked", id, rec));
                }
                check!(
                    revocation.revoked == u64::from(revoked) && revocation.before == at,
                    "revocation {revocation:?}, model revoked {revoked}"
                );
                m.note(format!("revoke Ok revoked {}", u64::from(revoked)));
            } else {
                m.note(format!("revoke {want_class:?}"));
            }
        }
        Action::RevokeAll { cred, ago } => {
            let b = m.resolve(IDS[0], cred);
            let at = m.now - Duration::seconds(*ago);
            let want = m.revoke(None, b, *ago);
            let got = w
                .registry
                .revoke_all_tokens(m.bearer(b).as_deref(), Some(at), "model")
                .await;
            let want_class = want.clone().err().unwrap_or(Outcome::Ok);
            check!(
                class(&got) == want_class,
                "revoke all at -{ago}s with {b:?}: got {:?}, model {want_class:?}",
                got.as_ref().map(|_| ())
            );
            if let Ok(revocation) = got {
                let revoked = m
                    .records
                    .values_mut()
                    .filter_map(|rec| Model::revoke_rec(rec, at).then_some(()))
                    .count() as u64;
                check!(
                    revocation.revoked == revoked,
                    "revocation {revocation:?}, model revoked {revoked}"
                );
                m.note(format!("revoke all Ok revoked {}", revoked.min(2)));
            } else {
                m.note(format!("revoke all {want_class:?}"));
            }
        }
    }
    compare_store(w, m).await?;
    let mut published = drain_events(w)?;
    if matches!(action, Action::Sweep) {
        // One sweep's events are in no promised order (SQL RETURNING has none).
        published.sort();
        events.sort();
    }
    check!(
        published == events,
        "events {published:?}, expected {events:?}"
    );
    Ok(())
}

async fn run_case(
    store: Arc<dyn PluginStore>,
    mode: Mode,
    actions: &[Action],
    coverage: &Mutex<Coverage>,
) -> Result<(), TestCaseError> {
    let mut w = world(store, mode);
    let mut m = Model {
        coverage: BTreeMap::new(),
        mode,
        now: t0(),
        records: BTreeMap::new(),
        held: Vec::new(),
        self_preservation: false,
    };
    check!(
        w.store
            .list(None, 1)
            .await
            .map_err(|e| fail(e.to_string()))?
            .is_empty(),
        "the store factory must return an empty store"
    );
    for (n, action) in actions.iter().enumerate() {
        step(&mut w, &mut m, n, action)
            .await
            .map_err(|e| fail(format!("step {n} ({action:?}): {e}")))?;
    }
    // No audit entry ever carries a token or a secret.
    for entry in w.audit.entries() {
        let text = serde_json::to_string(&entry).map_err(|e| fail(e.to_string()))?;
        for secret in
            m.held
                .iter()
                .map(|h| h.token.as_str())
                .chain([ADMIN, REGISTRATION_SECRET, JWT_SECRET])
        {
            check!(
                !text.contains(secret),
                "audit entry leaks a credential: {}",
                entry.action
            );
        }
    }
    let mut total = coverage.lock().unwrap_or_else(PoisonError::into_inner);
    for (label, n) in m.coverage {
        *total.entry(label).or_default() += n;
    }
    Ok(())
}

/// How often each (operation, expected outcome) occurred over a run, e.g.
/// `heartbeat Unauthorized("revoked_token")`, so callers can check that the generator
/// reached the states that matter.
pub type Coverage = BTreeMap<String, usize>;

/// Runs `cases` random action sequences (up to 40 actions each) against a registry over
/// a fresh store from `make_store` (which must return an empty store each time), and
/// panics with the shrunk failing sequence if the registry and the model disagree.
/// Returns what the sequences covered.
pub fn run_model(make_store: impl Fn() -> Arc<dyn PluginStore>, cases: u32) -> Coverage {
    run_model_async(|| std::future::ready(make_store()), cases)
}

/// [`run_model`] for stores that are made asynchronously (SQL stores): `make_store`
/// runs on the model's runtime and must return an empty store each time.
pub fn run_model_async<F, Fut>(make_store: F, cases: u32) -> Coverage
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn PluginStore>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let coverage = Mutex::new(Coverage::new());
    let strategy = (mode(), actions());
    let result = runner.run(&strategy, |(mode, actions)| {
        rt.block_on(async {
            let store = make_store().await;
            run_case(store, mode, &actions, &coverage).await
        })
    });
    if let Err(e) = result {
        panic!("the registry disagrees with the model: {e}");
    }
    coverage
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
}
