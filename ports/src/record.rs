//! The record the store keeps for each registered plugin, and its instances: the
//! running copies of one plugin. Each instance has its own token (`jti`), health and
//! heartbeat deadline; the plugin's liveness is theirs taken together.
//!
//! The rules here are the one definition every store applies (in memory, and in the
//! SQL stores on the row they read before their conditional write): a heartbeat, a
//! sweep step and a revocation by time change a [`PluginRecord`] only through them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use serde_json::Value;

use crate::plugin::{
    Health, Liveness, PluginId, REVOKED_JTI, SENSITIVE_TRAITS, StoredManifest, sensitive_traits_of,
};

/// The instance a registration names when it names none (and that every plugin
/// registered before instances existed became).
pub const DEFAULT_INSTANCE: &str = "default";

/// Longest instance id.
pub const MAX_INSTANCE_ID_LEN: usize = 64;

/// An instance id: 1 to 64 characters of `[A-Za-z0-9._-]`, starting with a letter or
/// digit (a host name, a pod name or a generated id fits).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

/// The string is not a valid instance id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "instance id must be 1 to 64 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"
)]
pub struct InvalidInstanceId;

impl InstanceId {
    /// Parses and checks an id.
    ///
    /// # Errors
    /// [`InvalidInstanceId`] unless `id` is valid.
    pub fn parse(id: &str) -> Result<Self, InvalidInstanceId> {
        let valid = !id.is_empty()
            && id.len() <= MAX_INSTANCE_ID_LEN
            && id.as_bytes()[0].is_ascii_alphanumeric()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidInstanceId)
        }
    }

    /// [`DEFAULT_INSTANCE`].
    pub fn default_instance() -> Self {
        Self(DEFAULT_INSTANCE.to_owned())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InstanceId {
    type Err = InvalidInstanceId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One running instance of a plugin, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its id, unique within the plugin.
    pub instance_id: InstanceId,
    /// The `jti` of its one valid token ([`REVOKED_JTI`]: it has none).
    pub token_jti: String,
    /// When that token was issued (`None`: unknown, for instances of records written
    /// before it was kept; revocation by time treats those as old).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub token_issued_at: Option<OffsetDateTime>,
    /// When this instance first registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// Its liveness.
    pub status: Liveness,
    /// Its self-reported health.
    pub health: Health,
    /// Its last accepted heartbeat.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<OffsetDateTime>,
    /// When the sweeper next has to look at it (see [`PluginRecord::next_deadline`]).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub next_deadline: Option<OffsetDateTime>,
}

impl InstanceRecord {
    /// A new instance, `registered`, health unknown, with token `jti` issued `now`
    /// and its first deadline at `deadline`.
    pub fn new(
        instance_id: InstanceId,
        jti: String,
        now: OffsetDateTime,
        deadline: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            instance_id,
            token_jti: jti,
            token_issued_at: Some(now),
            registered_at: now,
            status: Liveness::Registered,
            health: Health::Unknown,
            last_heartbeat: None,
            next_deadline: deadline,
        }
    }

    /// Whether its token was revoked (it has no valid token).
    pub fn token_revoked(&self) -> bool {
        self.token_jti == REVOKED_JTI
    }
}

/// What one [`PluginStore::sweep`](crate::PluginStore::sweep) did to one record.
#[derive(Clone, Debug, PartialEq)]
pub struct Swept {
    /// The record as stored after the step; for a deregistered plugin, as it was just
    /// before its deletion.
    pub record: PluginRecord,
    /// Instances that went stale.
    pub stale: Vec<InstanceId>,
    /// Instances removed (stale beyond their deadline).
    pub removed: Vec<InstanceId>,
    /// The plugin's own transition, if any: `plugin.stale` (its last live instance went
    /// stale) or `plugin.deregistered` (its last instance was removed: the record is
    /// deleted). The store wrote its [`OutboxEntry`] in the same atomic write.
    pub event: Option<&'static str>,
}

/// A heartbeat a core answered from its memory, written later with others by
/// [`PluginStore::record_heartbeats`](crate::PluginStore::record_heartbeats)
/// ([`PluginRecord::apply_buffered_beat`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BufferedBeat {
    /// The plugin.
    pub plugin_id: PluginId,
    /// The token id of the instance that beat.
    pub token_jti: String,
    /// The health it reported.
    pub health: Health,
    /// When it beat.
    pub at: OffsetDateTime,
    /// Its new deadline.
    pub next_deadline: OffsetDateTime,
}

/// Why [`PluginRecord::apply_heartbeat`] refused a heartbeat (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatRefused {
    /// The plugin is disabled.
    #[error("the plugin is disabled")]
    Disabled,
    /// No instance holds the token.
    #[error("no instance holds this token")]
    UnknownToken,
}

/// What the store keeps for one registered plugin: its manifest, its operator's
/// decisions, and its instances (each with the id, `jti`, of its one current token, never
/// the token itself). Its liveness fields are its instances' taken together
/// ([`PluginRecord::settle`]); every store settles a record before writing it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The plugin's id (also `manifest.id`).
    pub plugin_id: PluginId,
    /// The manifest as the plugin sent it, validated, unknown members kept. Shared:
    /// records are cloned on every read, the manifest need not be.
    pub manifest: StoredManifest,
    /// Liveness: `active` while any instance is, else `registered` while any is, else
    /// `stale`.
    pub status: Liveness,
    /// Self-reported health of its instances together (see [`PluginRecord::settle`]).
    pub health: Health,
    /// False while an operator has disabled the plugin.
    pub enabled: bool,
    /// Why an operator disabled it.
    pub disabled_reason: Option<String>,
    /// First registration of this id (kept across re-registrations).
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// Last accepted heartbeat of any instance.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<OffsetDateTime>,
    /// Its instances, sorted by id; at least one. A token whose `jti` no instance holds
    /// is revoked.
    pub instances: Vec<InstanceRecord>,
    /// The sensitive traits ([`SENSITIVE_TRAITS`]) an operator approved for this
    /// plugin. A declared sensitive trait not in it is pending approval. `None`: the
    /// record predates approval, and whatever its manifest declares counts as approved.
    #[serde(default)]
    pub approved_traits: Option<Vec<String>>,
    /// When the sweeper next has to look at this record: the earliest deadline of its
    /// instances (for a `registered` or `active` instance the moment it goes stale, for
    /// a `stale` one the moment it is removed); `None` when nothing is due (disabled, or
    /// stale with automatic deregistration off). Indexed by every store, so a sweep
    /// costs what expires.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub next_deadline: Option<OffsetDateTime>,
    /// Optimistic-concurrency version: 1 on insert, +1 on every write.
    pub version: u64,
}

impl PluginRecord {
    /// The sensitive traits its manifest declares, in [`SENSITIVE_TRAITS`] order.
    pub fn sensitive_traits(&self) -> Vec<String> {
        sensitive_traits_of(&self.manifest)
    }

    /// The declared sensitive traits an operator has not approved (empty: nothing is
    /// pending).
    pub fn pending_traits(&self) -> Vec<String> {
        match &self.approved_traits {
            None => Vec::new(),
            Some(approved) => self
                .sensitive_traits()
                .into_iter()
                .filter(|t| !approved.contains(t))
                .collect(),
        }
    }

    /// Whether the plugin waits for an operator's approval of a sensitive trait: it may
    /// heartbeat, refresh, re-register and read its record, but not publish, pull or
    /// introspect, and it receives no events.
    pub fn pending_approval(&self) -> bool {
        // On every publish and pull: answered without building the lists.
        let Some(approved) = &self.approved_traits else {
            return false;
        };
        let declared = self.manifest.get("traits").and_then(Value::as_array);
        SENSITIVE_TRAITS.iter().any(|t| {
            declared.is_some_and(|d| d.iter().any(|v| v.as_str() == Some(*t)))
                && !approved.iter().any(|a| a == t)
        })
    }
}

impl PluginRecord {
    /// The instance with this id.
    pub fn instance(&self, id: &InstanceId) -> Option<&InstanceRecord> {
        self.instances.iter().find(|i| &i.instance_id == id)
    }

    /// The instance whose current token has this `jti` (never a revoked one).
    pub fn instance_by_jti(&self, jti: &str) -> Option<&InstanceRecord> {
        if jti == REVOKED_JTI {
            return None;
        }
        self.instances.iter().find(|i| i.token_jti == jti)
    }

    /// Whether every instance's token was revoked (nobody holds a valid token).
    pub fn token_revoked(&self) -> bool {
        self.instances.iter().all(InstanceRecord::token_revoked)
    }

    /// A key naming this registration of the id (kept across re-registrations,
    /// new on a registration that replaces another): lifecycle events are keyed by it.
    pub fn registration_key(&self) -> String {
        (self.registered_at.unix_timestamp_nanos() / 1_000).to_string()
    }

    /// Puts `instance` in place of the one with its id, or adds it (instances are kept
    /// sorted by id), and settles the plugin's liveness.
    pub fn put_instance(&mut self, instance: InstanceRecord) {
        match self
            .instances
            .binary_search_by(|i| i.instance_id.cmp(&instance.instance_id))
        {
            Ok(at) => self.instances[at] = instance,
            Err(at) => self.instances.insert(at, instance),
        }
        self.settle();
    }

    /// Removes the instance with this id; returns it.
    pub fn remove_instance(&mut self, id: &InstanceId) -> Option<InstanceRecord> {
        let at = self.instances.iter().position(|i| &i.instance_id == id)?;
        let removed = self.instances.remove(at);
        self.settle();
        Some(removed)
    }

    /// Recomputes the plugin's liveness from its instances' (after any change to them):
    /// - `status`: `active` while any instance is, else `registered` while any is,
    ///   else `stale`;
    /// - `health`: over the live instances (all of them if none is live), ignoring those
    ///   that have not reported: the one health they agree on, `degraded` if they
    ///   differ, `unknown` if none reported;
    /// - `last_heartbeat`: the latest; `next_deadline`: the earliest.
    pub fn settle(&mut self) {
        self.instances
            .sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let any = |s: Liveness| self.instances.iter().any(|i| i.status == s);
        self.status = if any(Liveness::Active) {
            Liveness::Active
        } else if any(Liveness::Registered) {
            Liveness::Registered
        } else {
            Liveness::Stale
        };
        let live = self.instances.iter().any(|i| i.status.is_live());
        let mut reported = self
            .instances
            .iter()
            .filter(|i| !live || i.status.is_live())
            .map(|i| i.health)
            .filter(|h| *h != Health::Unknown);
        self.health = match reported.next() {
            None => Health::Unknown,
            Some(first) if reported.all(|h| h == first) => first,
            Some(_) => Health::Degraded,
        };
        self.last_heartbeat = self.instances.iter().filter_map(|i| i.last_heartbeat).max();
        self.next_deadline = self.instances.iter().filter_map(|i| i.next_deadline).min();
    }

    /// Applies a heartbeat of the instance holding token `jti`: its health, `at`, status
    /// `active`, deadline `next_deadline`. Returns whether the plugin was `stale` just
    /// before (it has recovered).
    ///
    /// # Errors
    /// [`HeartbeatRefused`] (nothing changed) if the plugin is disabled or no instance
    /// holds `jti`.
    pub fn apply_heartbeat(
        &mut self,
        jti: &str,
        health: Health,
        at: OffsetDateTime,
        next_deadline: OffsetDateTime,
    ) -> Result<bool, HeartbeatRefused> {
        if !self.enabled {
            return Err(HeartbeatRefused::Disabled);
        }
        let was_stale = self.status == Liveness::Stale;
        let instance = self
            .instances
            .iter_mut()
            .find(|i| i.token_jti == jti && jti != REVOKED_JTI)
            .ok_or(HeartbeatRefused::UnknownToken)?;
        instance.last_heartbeat = Some(at);
        instance.health = health;
        instance.status = Liveness::Active;
        instance.next_deadline = Some(next_deadline);
        self.settle();
        Ok(was_stale)
    }

    /// Whether a heartbeat of the instance holding `jti`, reporting `health`, changes
    /// nothing but times: the plugin is enabled and the instance is `active` with that
    /// health already. Only such a beat may be answered before it is written.
    pub fn beat_changes_only_times(&self, jti: &str, health: Health) -> bool {
        self.enabled
            && self.instance_by_jti(jti).is_some_and(|i| {
                i.status == Liveness::Active && i.health == health && i.next_deadline.is_some()
            })
    }

    /// Applies a beat answered before it was written: only to an enabled plugin's
    /// `active` instance still holding the beat's token, and only if it is newer than
    /// that instance's last heartbeat; the deadline only moves later. It never makes an
    /// instance active (a beat that would is written at once, by
    /// [`PluginRecord::apply_heartbeat`]), so a beat written late, or lost, can only
    /// leave a deadline earlier than it would have been. Returns whether anything
    /// changed.
    pub fn apply_buffered_beat(&mut self, beat: &BufferedBeat) -> bool {
        if !self.enabled || beat.token_jti == REVOKED_JTI {
            return false;
        }
        let Some(instance) = self
            .instances
            .iter_mut()
            .find(|i| i.token_jti == beat.token_jti && i.status == Liveness::Active)
        else {
            return false;
        };
        if instance.last_heartbeat.is_some_and(|t| t >= beat.at) {
            return false;
        }
        instance.last_heartbeat = Some(beat.at);
        instance.health = beat.health;
        instance.next_deadline = instance.next_deadline.max(Some(beat.next_deadline));
        self.settle();
        true
    }

    /// One sweep step at `now` of an enabled plugin: each live instance past its
    /// deadline goes stale (its deadline moved on by `deregister_in`, or cleared), each
    /// stale instance past its deadline is removed. Returns `None` if nothing was due.
    /// The record returned in [`Swept`] is this one, changed; its `event` says whether
    /// the plugin as a whole went stale or lost its last instance (then the caller
    /// deletes it, and `record` is the record as it was before the step).
    pub fn sweep_step(
        &mut self,
        now: OffsetDateTime,
        deregister_in: Option<std::time::Duration>,
    ) -> Option<Swept> {
        if !self.enabled {
            return None;
        }
        let before = self.clone();
        let mut stale = Vec::new();
        let mut removed = Vec::new();
        let shift =
            deregister_in.map(|d| time::Duration::try_from(d).unwrap_or(time::Duration::MAX));
        self.instances.retain_mut(|i| {
            let Some(deadline) = i.next_deadline.filter(|d| *d <= now) else {
                return true;
            };
            if i.status.is_live() {
                i.status = Liveness::Stale;
                i.next_deadline = shift.and_then(|s| deadline.checked_add(s));
                stale.push(i.instance_id.clone());
                true
            } else {
                removed.push(i.instance_id.clone());
                false
            }
        });
        if stale.is_empty() && removed.is_empty() {
            return None;
        }
        if self.instances.is_empty() {
            return Some(Swept {
                record: before,
                stale,
                removed,
                event: Some("plugin.deregistered"),
            });
        }
        self.settle();
        let went_stale = before.status.is_live() && self.status == Liveness::Stale;
        Some(Swept {
            record: self.clone(),
            stale,
            removed,
            event: went_stale.then_some("plugin.stale"),
        })
    }

    /// Revokes the token of every instance whose token was issued at or before
    /// `before`, or at an unknown time. Returns whether anything changed.
    pub fn revoke_issued_before(&mut self, before: OffsetDateTime) -> bool {
        let mut changed = false;
        for i in &mut self.instances {
            if !i.token_revoked() && i.token_issued_at.is_none_or(|t| t <= before) {
                i.token_jti = REVOKED_JTI.to_owned();
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s)
    }

    fn inst(id: &str, jti: &str, deadline: i64) -> InstanceRecord {
        InstanceRecord::new(
            InstanceId::parse(id).unwrap(),
            jti.into(),
            t(0),
            Some(t(deadline)),
        )
    }

    fn record(instances: Vec<InstanceRecord>) -> PluginRecord {
        let mut r = PluginRecord {
            plugin_id: PluginId::parse("p").unwrap(),
            manifest: StoredManifest::from_tree(serde_json::json!({"id": "p"})),
            status: Liveness::Registered,
            health: Health::Unknown,
            enabled: true,
            disabled_reason: None,
            registered_at: t(0),
            last_heartbeat: None,
            instances,
            approved_traits: None,
            next_deadline: None,
            version: 1,
        };
        r.settle();
        r
    }

    #[test]
    fn instance_ids() {
        for ok in ["default", "a", "pod-7f9c.x_1", "A1", &"x".repeat(64)] {
            assert!(InstanceId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(InstanceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn liveness_and_health_are_the_instances_together() {
        let mut r = record(vec![inst("b", "jb", 30), inst("a", "ja", 20)]);
        assert_eq!(r.instances[0].instance_id.as_str(), "a", "kept sorted");
        assert_eq!(
            (r.status, r.health, r.next_deadline),
            (Liveness::Registered, Health::Unknown, Some(t(20)))
        );
        assert!(
            !r.apply_heartbeat("ja", Health::Healthy, t(5), t(35))
                .unwrap()
        );
        assert_eq!((r.status, r.health), (Liveness::Active, Health::Healthy));
        assert_eq!(
            (r.last_heartbeat, r.next_deadline),
            (Some(t(5)), Some(t(30)))
        );
        r.apply_heartbeat("jb", Health::Unhealthy, t(6), t(36))
            .unwrap();
        assert_eq!(r.health, Health::Degraded);
        assert!(matches!(
            r.apply_heartbeat("nobody", Health::Healthy, t(7), t(37)),
            Err(HeartbeatRefused::UnknownToken)
        ));
        assert!(matches!(
            r.apply_heartbeat(REVOKED_JTI, Health::Healthy, t(7), t(37)),
            Err(HeartbeatRefused::UnknownToken)
        ));
        r.enabled = false;
        assert!(
            r.apply_heartbeat("ja", Health::Healthy, t(7), t(37))
                .is_err()
        );
    }

    #[test]
    fn a_plugin_is_stale_when_its_last_live_instance_is_and_gone_with_its_last_instance() {
        let mut r = record(vec![inst("a", "ja", 10), inst("b", "jb", 20)]);
        let ttl = Some(Duration::from_secs(100));
        assert!(r.sweep_step(t(5), ttl).is_none());
        let s = r.sweep_step(t(10), ttl).unwrap();
        assert_eq!((s.stale.len(), s.removed.len(), s.event), (1, 0, None));
        assert_eq!(r.status, Liveness::Registered);
        let s = r.sweep_step(t(20), ttl).unwrap();
        assert_eq!(s.event, Some("plugin.stale"));
        assert_eq!(r.next_deadline, Some(t(110)));
        // A stale instance's heartbeat revives the plugin.
        assert!(
            r.apply_heartbeat("jb", Health::Healthy, t(21), t(200))
                .unwrap()
        );
        let s = r.sweep_step(t(110), ttl).unwrap();
        assert_eq!((s.stale.len(), s.removed.len(), s.event), (0, 1, None));
        assert_eq!(r.instances.len(), 1);
        assert_eq!(
            r.sweep_step(t(200), ttl).unwrap().event,
            Some("plugin.stale")
        );
        let s = r.sweep_step(t(300), ttl).unwrap();
        assert_eq!(s.event, Some("plugin.deregistered"));
        assert_eq!(s.record.instances.len(), 1, "as it was");
        // Without deregistration, a stale instance is never due again.
        let mut r = record(vec![inst("a", "ja", 10)]);
        r.sweep_step(t(10), None).unwrap();
        assert_eq!(r.next_deadline, None);
        // A disabled plugin is left alone.
        let mut r = record(vec![inst("a", "ja", 10)]);
        r.enabled = false;
        assert!(r.sweep_step(t(10), ttl).is_none());
    }

    #[test]
    fn revocation_by_time_is_per_instance() {
        let mut old = inst("a", "ja", 10);
        old.token_issued_at = Some(t(1));
        let mut new = inst("b", "jb", 10);
        new.token_issued_at = Some(t(9));
        let mut unknown = inst("c", "jc", 10);
        unknown.token_issued_at = None;
        let mut r = record(vec![old, new, unknown]);
        assert!(r.revoke_issued_before(t(5)));
        let jtis: Vec<_> = r.instances.iter().map(|i| i.token_jti.as_str()).collect();
        assert_eq!(jtis, [REVOKED_JTI, "jb", REVOKED_JTI]);
        assert!(!r.token_revoked());
        assert!(r.instance_by_jti(REVOKED_JTI).is_none());
        assert!(!r.revoke_issued_before(t(5)), "idempotent");
        assert!(r.revoke_issued_before(t(9)));
        assert!(r.token_revoked());
    }

    #[test]
    fn put_and_remove() {
        let mut r = record(vec![inst("b", "jb", 30)]);
        r.put_instance(inst("a", "ja", 20));
        assert_eq!(r.next_deadline, Some(t(20)));
        r.put_instance(inst("a", "ja2", 40));
        assert_eq!(r.instances.len(), 2);
        assert_eq!(
            r.instance(&InstanceId::parse("a").unwrap())
                .unwrap()
                .token_jti,
            "ja2"
        );
        assert!(
            r.remove_instance(&InstanceId::parse("b").unwrap())
                .is_some()
        );
        assert_eq!(r.next_deadline, Some(t(40)));
        assert!(
            r.remove_instance(&InstanceId::parse("b").unwrap())
                .is_none()
        );
    }

    #[test]
    fn pending_approval_agrees_with_pending_traits() {
        let record = |traits: Value, approved: Option<Vec<&str>>| PluginRecord {
            plugin_id: PluginId::parse("p").unwrap(),
            manifest: StoredManifest::from_tree(json!({ "id": "p", "traits": traits })),
            status: Liveness::Registered,
            health: Health::Unknown,
            enabled: true,
            disabled_reason: None,
            registered_at: OffsetDateTime::UNIX_EPOCH,
            last_heartbeat: None,
            instances: Vec::new(),
            approved_traits: approved.map(|a| a.into_iter().map(str::to_owned).collect()),
            next_deadline: None,
            version: 1,
        };
        let phi_ext = json!(["handles_phi", "external_service", "audit_required"]);
        for (r, pending) in [
            (record(phi_ext.clone(), None), vec![]),
            (
                record(phi_ext.clone(), Some(vec![])),
                vec!["handles_phi", "external_service"],
            ),
            (
                record(phi_ext.clone(), Some(vec!["handles_phi"])),
                vec!["external_service"],
            ),
            (
                record(phi_ext, Some(vec!["external_service", "handles_phi"])),
                vec![],
            ),
            (record(json!(["handles_pii"]), Some(vec![])), vec![]),
            (record(json!("not a list"), Some(vec![])), vec![]),
        ] {
            assert_eq!(r.pending_traits(), pending);
            assert_eq!(r.pending_approval(), !pending.is_empty());
        }
    }
}
