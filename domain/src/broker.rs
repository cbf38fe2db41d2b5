//! Events between plugins: the core receives an event from its publisher, decides by
//! policy for every subscriber, and puts the event (sanitised where the policy says)
//! into each allowed subscriber's queue on the [`EventBus`]; subscribers pull their
//! queues.
//!
//! Decisions are taken against a **directory**: every plugin's subscriptions and
//! compiled policy facts, read from the store. It is rebuilt when this replica makes
//! a lifecycle transition ([`Registry::generation`]) and at least every
//! [`BrokerConfig::directory_ttl`] (default one second), so a manifest change or a
//! disable on another replica takes effect here within that time.
//!
//! Nothing here logs or audits a payload or metadata value: ids, event types, trait
//! names, rule ids and reason codes only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use vivified_ports::{
    AuditOutcome, BusError, BusEvent, Cursor, EventBus, PluginId, PluginRecord, Pulled,
};

use crate::events::{is_valid_event_type, matches, subscriptions_of};
use crate::policy::{Action, CompiledFacts, Effect, PluginFacts, Policy};
use crate::registry::{Caller, Registry, RegistryError, Subject, plugin_actor};

/// Limits and timings of the broker.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Longest a directory snapshot is used (other replicas' changes show up within it).
    pub directory_ttl: Duration,
    /// Most data traits on one event.
    pub max_data_traits: usize,
    /// Most metadata entries on one event.
    pub max_metadata: usize,
    /// Longest metadata key or value, in bytes.
    pub max_metadata_len: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            directory_ttl: Duration::from_secs(1),
            max_data_traits: 16,
            max_metadata: 32,
            max_metadata_len: 256,
        }
    }
}

/// An event as a publisher sends it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishRequest {
    /// Dotted type.
    pub event_type: String,
    /// Any JSON object.
    pub payload: Map<String, Value>,
    /// Data classification tags (`phi`, `pii`, …).
    pub data_traits: Vec<String>,
    /// Small string annotations.
    pub metadata: BTreeMap<String, String>,
    /// The publisher, if the request names it (must be the token's plugin).
    pub source_plugin: Option<String>,
}

/// What `POST /events` answers: counts only, never who was denied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The id the core gave the event.
    pub event_id: String,
    /// The request's trace id.
    pub trace_id: String,
    /// Subscribers that got the event as published.
    pub delivered: usize,
    /// Subscribers that got it with fields removed.
    pub sanitized: usize,
    /// Subscribers the policy kept it from.
    pub denied: usize,
}

/// Why an event operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Authentication, authorization, a disabled plugin, an unavailable port.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// 400: the event is malformed (the message names the field, never a value).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// 400: the cursor was not issued by this bus.
    #[error("invalid cursor")]
    InvalidCursor,
    /// 403: the policy refuses the publication.
    #[error("policy denied: {reason}")]
    PolicyDenied {
        /// The rule that decided.
        rule: Arc<str>,
        /// Its reason code.
        reason: Arc<str>,
    },
}

impl From<BusError> for BrokerError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::InvalidCursor => Self::InvalidCursor,
            e => Self::Registry(RegistryError::Unavailable {
                what: "event bus",
                source: Box::new(e),
            }),
        }
    }
}

/// Decisions taken by this replica since it started.
#[derive(Debug, Default)]
pub struct DecisionCounts {
    /// Deliveries as published.
    pub delivered: AtomicU64,
    /// Deliveries sanitised.
    pub sanitized: AtomicU64,
    /// Deliveries denied.
    pub denied: AtomicU64,
    /// Publications refused.
    pub refused: AtomicU64,
}

struct Subscriber {
    id: PluginId,
    subscriptions: Vec<String>,
    facts: CompiledFacts,
}

struct Directory {
    generation: u64,
    policy_generation: u64,
    loaded_at: OffsetDateTime,
    subscribers: Vec<Subscriber>,
}

/// Carries events between plugins. Cheap to clone (one reference count).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<BrokerInner>,
}

struct BrokerInner {
    registry: Registry,
    policy: Arc<Policy>,
    config: BrokerConfig,
    directory: Mutex<Option<Arc<Directory>>>,
    counts: DecisionCounts,
}

/// One subscriber's outcome, for the audit entry.
#[derive(Serialize)]
struct Outcome<'a> {
    plugin: &'a str,
    effect: &'static str,
    rule: Arc<str>,
    reason: Arc<str>,
}

impl Broker {
    /// A broker over the registry's ports, deciding with `policy`.
    #[must_use]
    pub fn new(registry: Registry, policy: Arc<Policy>, config: BrokerConfig) -> Self {
        Self {
            inner: Arc::new(BrokerInner {
                registry,
                policy,
                config,
                directory: Mutex::new(None),
                counts: DecisionCounts::default(),
            }),
        }
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Decisions taken so far by this replica.
    #[must_use]
    pub fn counts(&self) -> &DecisionCounts {
        &self.inner.counts
    }

    fn bus(&self) -> &dyn EventBus {
        &*self.inner.registry.ports().bus
    }

    /// The plugin a request authenticates as: its own current token, enabled (the
    /// checks that come before a look at the request's body).
    ///
    /// # Errors
    /// 401/403 as the registry decides; the admin token is `plugin_token_required`.
    pub async fn plugin_caller(&self, bearer: Option<&str>) -> Result<PluginRecord, BrokerError> {
        match self.inner.registry.authenticate(bearer).await? {
            Caller::Operator(_) => Err(RegistryError::Forbidden("plugin_token_required").into()),
            Caller::Plugin(claims) => {
                Ok(self.inner.registry.current_enabled_record(&claims).await?)
            }
        }
    }

    fn check(&self, req: &PublishRequest) -> Result<(), BrokerError> {
        let bad = |m: String| Err(BrokerError::InvalidEvent(m));
        if !is_valid_event_type(&req.event_type) {
            return bad(
                "`event_type` must be dot-separated segments of A-Z, a-z, 0-9, `_` and `-` (at most 255 characters)"
                    .into(),
            );
        }
        let c = &self.inner.config;
        if req.data_traits.len() > c.max_data_traits
            || req
                .data_traits
                .iter()
                .any(|t| t.is_empty() || t.chars().count() > 64)
        {
            return bad(format!(
                "`data_traits` must be at most {} non-empty names of at most 64 characters",
                c.max_data_traits
            ));
        }
        if req.metadata.len() > c.max_metadata
            || req.metadata.iter().any(|(k, v)| {
                let too_long = |s: &str| s.chars().count() > c.max_metadata_len;
                k.is_empty() || too_long(k) || too_long(v)
            })
        {
            return bad(format!(
                "`metadata` must have at most {} entries with non-empty keys, keys and values of at most {} characters",
                c.max_metadata, c.max_metadata_len
            ));
        }
        Ok(())
    }

    /// Takes an event from the plugin `bearer` authenticates, decides for every
    /// subscriber, records one audit entry, and queues the event for each allowed
    /// subscriber.
    ///
    /// # Errors
    /// 401/403 as the registry decides (a plugin's own current token, enabled; the
    /// admin token is refused), `Forbidden("source_plugin_mismatch")`, `InvalidEvent`,
    /// `PolicyDenied` (e.g. data traits outside the publisher's classification),
    /// `Unavailable` (store, audit log, bus).
    pub async fn publish(
        &self,
        bearer: Option<&str>,
        req: PublishRequest,
        trace_id: &str,
    ) -> Result<Receipt, BrokerError> {
        let source = self.plugin_caller(bearer).await?;
        let source_id = source.plugin_id.as_str();
        if req
            .source_plugin
            .as_deref()
            .is_some_and(|claimed| claimed != source_id)
        {
            return Err(RegistryError::Forbidden("source_plugin_mismatch").into());
        }
        self.check(&req)?;
        let policy = &*self.inner.policy;
        let facts = PluginFacts::from_record(&source);
        let source_facts = facts.compile(policy);
        let data = policy.data_traits(&req.data_traits);
        // An untagged event is decided as carrying the traits the policy gives it; the
        // audit entry says which.
        let untagged = req.data_traits.is_empty().then(|| {
            json!({
                "treated_as": policy.untagged().as_str(),
                "data_traits": policy.untagged_traits(&facts),
            })
        });
        let actor = plugin_actor(source_id);
        let subject = Subject {
            actor: &actor,
            action: "event.publish",
            target: &req.event_type,
        };
        let published = policy.decide(&source_facts, Action::Publish, &data);
        if published.is_deny() {
            metrics::counter!(
                "vivified_policy_decisions_total",
                "action" => "publish",
                "effect" => "deny",
                "reason" => published.reason.to_string()
            )
            .increment(1);
            self.inner.counts.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(rule = %published.rule, reason = %published.reason, source = source_id, event_type = %req.event_type, "publication refused");
            self.inner.registry
                .audit(
                    trace_id,
                    subject,
                    AuditOutcome::Denied,
                    &published.reason,
                    with_untagged(
                        json!({ "event_type": req.event_type, "data_traits": req.data_traits, "rule": published.rule }),
                        untagged,
                    ),
                )
                .await?;
            return Err(BrokerError::PolicyDenied {
                rule: published.rule,
                reason: published.reason,
            });
        }

        let event_id = uuid::Uuid::new_v4().to_string();
        let directory = self.directory().await?;
        let mut outcomes = Vec::new();
        let mut deliveries = Vec::new();
        let (mut delivered, mut sanitized, mut denied) = (0, 0, 0);
        for sub in &directory.subscribers {
            if sub.id.as_str() == source_id
                || !sub
                    .subscriptions
                    .iter()
                    .any(|p| matches(p, &req.event_type))
            {
                continue;
            }
            let decision =
                policy.decide(&source_facts, Action::Deliver { target: &sub.facts }, &data);
            tracing::debug!(rule = %decision.rule, reason = %decision.reason, event_id, source = source_id, target = %sub.id, "delivery decided");
            let effect = match &decision.effect {
                Effect::Allow => {
                    delivered += 1;
                    deliveries.push((&sub.id, None));
                    "allow"
                }
                Effect::Sanitize { fields } => {
                    sanitized += 1;
                    deliveries.push((&sub.id, Some(fields.clone())));
                    "sanitize"
                }
                Effect::Deny => {
                    denied += 1;
                    "deny"
                }
            };
            metrics::counter!(
                "vivified_policy_decisions_total",
                "action" => "deliver",
                "effect" => effect,
                "reason" => decision.reason.to_string()
            )
            .increment(1);
            outcomes.push(Outcome {
                plugin: sub.id.as_str(),
                effect,
                rule: decision.rule,
                reason: decision.reason,
            });
        }
        // Fail closed: no event is carried without its audit entry.
        self.inner
            .registry
            .audit(
                trace_id,
                subject,
                AuditOutcome::Success,
                "published",
                with_untagged(
                    json!({
                        "event_id": event_id,
                        "data_traits": req.data_traits,
                        "deliveries": outcomes,
                    }),
                    untagged,
                ),
            )
            .await?;
        let event = BusEvent {
            event_id: event_id.clone(),
            event_type: req.event_type,
            trace_id: trace_id.to_owned(),
            source: source_id.to_owned(),
            data_traits: req.data_traits,
            at: self.inner.registry.now(),
            payload: Value::Object(req.payload),
            metadata: req.metadata,
        };
        // Every subscriber's queue at once (one round trip on NATS, not one per
        // subscriber); each queue still gets this publisher's events in order, as the
        // next publication starts only after this one is queued everywhere.
        let sends = deliveries.into_iter().map(|(target, fields)| {
            let mut copy = event.clone();
            if let Some(fields) = fields {
                crate::policy::sanitize(&mut copy.payload, &fields);
            }
            async move { (target, self.bus().enqueue(target, copy).await) }
        });
        let mut failed = None;
        for (target, queued) in futures_util::future::join_all(sends).await {
            if let Err(e) = queued {
                metrics::counter!("vivified_bus_errors_total").increment(1);
                tracing::error!(event_id = %event.event_id, target = %target, error = %e, "event not queued for a subscriber");
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        metrics::counter!("vivified_events_published_total").increment(1);
        self.inner
            .counts
            .delivered
            .fetch_add(delivered as u64, Ordering::Relaxed);
        self.inner
            .counts
            .sanitized
            .fetch_add(sanitized as u64, Ordering::Relaxed);
        self.inner
            .counts
            .denied
            .fetch_add(denied as u64, Ordering::Relaxed);
        Ok(Receipt {
            event_id,
            trace_id: trace_id.to_owned(),
            delivered,
            sanitized,
            denied,
        })
    }

    /// A plugin's long poll of its own queue: acknowledges everything up to `after`,
    /// then returns up to `limit` events as soon as there is one, or none after `wait`.
    /// Events queued before the plugin's current registration (a former holder of
    /// the id) are acknowledged and skipped.
    ///
    /// # Errors
    /// 401/403 as the registry decides (only the plugin's own current token, enabled),
    /// `InvalidCursor`, `Unavailable`.
    pub async fn pull(
        &self,
        id: &str,
        bearer: Option<&str>,
        after: Option<&Cursor>,
        limit: usize,
        wait: Duration,
    ) -> Result<Pulled, BrokerError> {
        let record = self.plugin_caller(bearer).await?;
        if record.plugin_id.as_str() != id {
            return Err(RegistryError::Forbidden("token_for_another_plugin").into());
        }
        let mut pulled = self
            .bus()
            .pull(&record.plugin_id, after, limit.max(1), wait)
            .await?;
        pulled.events.retain(|(_, e)| e.at >= record.registered_at);
        if pulled.dropped > 0 {
            metrics::counter!("vivified_events_dropped_total").increment(pulled.dropped);
        }
        Ok(pulled)
    }

    /// The directory, rebuilt if this replica changed a plugin since, the policy
    /// changed, or it is older than `directory_ttl`.
    async fn directory(&self) -> Result<Arc<Directory>, BrokerError> {
        let generation = self.inner.registry.generation();
        let now = self.inner.registry.now();
        let ttl = time::Duration::try_from(self.inner.config.directory_ttl)
            .unwrap_or(time::Duration::SECOND);
        {
            let cached = self
                .inner
                .directory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(d) = cached.as_ref()
                && d.generation == generation
                && d.policy_generation == self.inner.policy.generation()
                && now - d.loaded_at < ttl
                && now >= d.loaded_at
            {
                return Ok(Arc::clone(d));
            }
        }
        let store = &self.inner.registry.ports().store;
        let mut subscribers = Vec::new();
        let mut after: Option<PluginId> = None;
        loop {
            let page = store
                .list(after.take(), 500)
                .await
                .map_err(RegistryError::from)?;
            let last = page.last().map(|r| r.plugin_id.clone());
            for record in &page {
                let subscriptions = subscriptions_of(&record.manifest);
                // A plugin waiting for an operator's approval receives nothing.
                if subscriptions.is_empty() || record.pending_approval() {
                    continue;
                }
                subscribers.push(Subscriber {
                    id: record.plugin_id.clone(),
                    subscriptions,
                    facts: PluginFacts::from_record(record).compile(&self.inner.policy),
                });
            }
            if page.len() < 500 {
                break;
            }
            after = last;
        }
        let directory = Arc::new(Directory {
            generation,
            policy_generation: self.inner.policy.generation(),
            loaded_at: now,
            subscribers,
        });
        *self
            .inner
            .directory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&directory));
        Ok(directory)
    }
}

/// `details` with an `untagged` member when the event named no data trait.
fn with_untagged(mut details: Value, untagged: Option<Value>) -> Value {
    if let (Some(untagged), Some(map)) = (untagged, details.as_object_mut()) {
        map.insert("untagged".to_owned(), untagged);
    }
    details
}
