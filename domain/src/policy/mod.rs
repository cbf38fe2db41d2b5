//! The policy engine: which plugin may publish and receive which data, decided from
//! declared traits, with a reason code and a rule id on every decision.
//!
//! A [`Policy`] is a compiled rule set: the built-in [`default_rules`] or a policy
//! file ([`Policy::from_json_str`]). Callers compile each plugin's [`PluginFacts`]
//! once ([`PluginFacts::compile`], cache the [`CompiledFacts`] with the plugin record)
//! and each event's data traits once ([`Policy::data_traits`]); a decision
//! ([`Policy::decide`]) is then a few mask operations and allocates nothing unless it
//! has to merge the fields of several `Sanitize` rules.
//!
//! Evaluation, in order (the first check that fails decides; `docs/policy.md` has the
//! table):
//!
//! 1. facts or data traits compiled for another policy → `Deny` (`core.stale-facts`);
//! 2. a disabled source, then a disabled target → `Deny`;
//! 3. a data trait outside the source's declared data classification → `Deny`
//!    (`core.source-classification`; both actions);
//! 4. a data trait no rule names → `Deny` (`core.unknown-data-trait`);
//!    An event without data traits is first given the traits the policy's
//!    [`Untagged`] setting names — by default the publisher's whole data
//!    classification — so it is decided from here on as if tagged with them
//!    (`core.untagged` denies it when the setting is `deny`, or when the publisher has
//!    no classification);
//! 5. `Publish` stops here → `Allow` (`core.publish`);
//! 6. every rule that matches one of the data traits decides; `Deny` beats
//!    `Sanitize` (fields are the union) beats `Allow`, and the reported rule is the
//!    first, in policy order, that decided the winning effect;
//! 7. a data trait that no rule allowed or sanitised → `Deny` (`core.fail-closed`).
//!
//! Trait and classification names compare ASCII-case-insensitively; a name with
//! other characters never equals a rule's (rule names are ASCII), so it is unknown.
//!
//! ```
//! use serde_json::json;
//! use vivified_domain::policy::{Action, PluginFacts, Policy};
//!
//! let policy = Policy::default(); // or Policy::from_json_str(&file)?
//! let facts = |traits: &[&str], classes: &[&str]| PluginFacts {
//!     id: "p".into(),
//!     traits: traits.iter().map(|s| s.to_string()).collect(),
//!     data_classification: classes.iter().map(|s| s.to_string()).collect(),
//!     enabled: true,
//! };
//! // Once per plugin record (cache these):
//! let ehr = facts(&["handles_phi", "requires_encryption", "audit_required"], &["phi"])
//!     .compile(&policy);
//! let mailer = facts(&["external_service", "handles_phi", "requires_encryption", "audit_required"], &["phi"])
//!     .compile(&policy);
//! // Once per event:
//! let data = policy.data_traits(["PHI"]);
//! assert!(policy.decide(&ehr, Action::Publish, &data).is_allow());
//! // Once per subscriber:
//! let d = policy.decide(&ehr, Action::Deliver { target: &mailer }, &data);
//! assert_eq!(&*d.rule, "phi.external-service-redacted");
//! let mut payload = json!({"phi": {"mrn": "MRN-1"}, "visit": "v-9"});
//! d.apply(&mut payload);
//! assert_eq!(payload, json!({"visit": "v-9"}));
//! # Ok::<(), vivified_domain::PolicyError>(())
//! ```

mod decision;
mod facts;
mod file;
mod pointer;
mod rules;
mod untagged;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use vivified_ports::PluginRecord;

use crate::manifest::{DataClass, Manifest, PluginTrait};
use rules::{CheckedEffect, CheckedRule};

pub use decision::{Decision, Effect};
pub use facts::{CompiledFacts, DataTraits, PluginFacts};
pub use file::POLICY_FILE_VERSION;
pub use pointer::{JsonPointer, PointerError, sanitize};
pub use rules::{
    DEFAULT_PHI_REDACTED_FIELDS, MAX_FIELDS, MAX_NAME_LEN, MAX_NAMES, MAX_RULES, PolicyError,
    PolicyErrorKind, Position, Rule, RuleEffect, TargetCondition, default_rules,
};
pub use untagged::Untagged;

/// The default policy as a policy file; the repository keeps it at
/// `schemas/policy.default.json` for operators to start from.
pub const DEFAULT_POLICY_JSON: &str = include_str!("../../../schemas/policy.default.json");

pub mod codes;

/// What is being decided.
#[derive(Clone, Copy, Debug)]
pub enum Action<'a> {
    /// The source hands an event to the core (`POST /events`): only the source's own
    /// checks apply.
    Publish,
    /// The core delivers the source's event to `target`.
    Deliver {
        /// The subscriber.
        target: &'a CompiledFacts,
    },
}

impl Action<'_> {
    /// `publish` or `deliver`, for logs.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Deliver { .. } => "deliver",
        }
    }
}

/// Each policy gets its own generation, so facts compiled for one are never read
/// with another's bit layout.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A compiled rule set. Cheap to clone (shared); `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Policy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    generation: u64,
    rules: Vec<Rule>,
    compiled: Box<[CompiledRule]>,
    outcomes: Box<[RuleOutcomes]>,
    /// Names of data traits and classifications; bit `i` is `class_names[i]`.
    class_names: Vec<String>,
    /// Bits of the data traits some rule matches (the others are unknown).
    data_mask: u64,
    /// Names of plugin traits; bit `i` is `trait_names[i]`.
    trait_names: Vec<String>,
    /// What an untagged event carries.
    untagged: Untagged,
    /// The bit of the data trait `public` (0 if no rule names it).
    public_bit: u64,
    engine: EngineDecisions,
}

#[derive(Clone, Copy, Debug)]
struct CompiledRule {
    data: u64,
    need_traits: u64,
    need_classes: u64,
    forbid_traits: u64,
    kind: Kind,
    otherwise_deny: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Allow = 1,
    Sanitize = 2,
    Deny = 3,
}

#[derive(Debug)]
struct RuleOutcomes {
    /// The decision when the rule's effect applies.
    applied: Decision,
    /// The decision when the condition fails and `otherwise_deny` is set.
    otherwise: Option<Decision>,
}

#[derive(Debug)]
struct EngineDecisions {
    stale: Decision,
    source_disabled: Decision,
    target_disabled: Decision,
    outside_classification: Decision,
    unknown: Decision,
    publish: Decision,
    untagged_denied: Decision,
    untagged_unclassified: Decision,
    fail_closed: Decision,
}

impl EngineDecisions {
    fn new() -> Self {
        use codes::*;
        let deny = |rule, reason| Decision::new(Effect::Deny, rule, reason);
        let allow = |rule, reason| Decision::new(Effect::Allow, rule, reason);
        Self {
            stale: deny(RULE_STALE_FACTS, FACTS_FROM_ANOTHER_POLICY),
            source_disabled: deny(RULE_ENABLED, SOURCE_DISABLED),
            target_disabled: deny(RULE_ENABLED, TARGET_DISABLED),
            outside_classification: deny(RULE_SOURCE_CLASSIFICATION, OUTSIDE_SOURCE_CLASSIFICATION),
            unknown: deny(RULE_UNKNOWN_DATA_TRAIT, UNKNOWN_DATA_TRAIT),
            publish: allow(RULE_PUBLISH, WITHIN_SOURCE_CLASSIFICATION),
            untagged_denied: deny(RULE_UNTAGGED, UNTAGGED_DENIED),
            untagged_unclassified: deny(RULE_UNTAGGED, UNTAGGED_UNCLASSIFIED),
            fail_closed: deny(RULE_FAIL_CLOSED, NO_ALLOWING_RULE),
        }
    }
}

impl Default for Policy {
    /// The built-in [`default_rules`].
    fn default() -> Self {
        match Self::new(default_rules()) {
            Ok(policy) => policy,
            // The built-in rules pass their own checks (a unit test proves it);
            // failing closed here would deny everything, so this is a defect.
            Err(e) => unreachable!("the built-in policy rules are invalid: {e}"),
        }
    }
}

impl Policy {
    /// Compiles `rules`, untagged events carrying their publisher's classification
    /// ([`Untagged::PublisherClassification`]).
    ///
    /// # Errors
    /// [`PolicyError`] (without a position) naming the first invalid rule and member.
    pub fn new(rules: Vec<Rule>) -> Result<Self, PolicyError> {
        Self::with_untagged(rules, Untagged::default())
    }

    /// Compiles `rules` with `untagged` deciding what an event without data traits
    /// carries.
    ///
    /// # Errors
    /// As [`Policy::new`], and [`PolicyErrorKind::UntaggedPublicWithoutRule`] for
    /// [`Untagged::Public`] when no rule names the data trait `public`.
    pub fn with_untagged(rules: Vec<Rule>, untagged: Untagged) -> Result<Self, PolicyError> {
        let checked = rules::check(&rules)?;
        let mut class_names: Vec<String> = Vec::new();
        let mut trait_names: Vec<String> = Vec::new();
        let mut compiled = Vec::with_capacity(checked.len());
        let mut outcomes = Vec::with_capacity(checked.len());
        let mut data_mask = 0;
        for (i, rule) in checked.iter().enumerate() {
            let (c, data) = compile_rule(rule, &mut class_names, &mut trait_names, i)
                .map_err(|e| e.for_rule(i, Some(&rule.id)))?;
            data_mask |= data;
            compiled.push(c);
            outcomes.push(outcomes_of(rule));
        }
        let public_bit = index_of(&class_names, "public")
            .map(|bit| 1 << bit)
            .filter(|bit| data_mask & bit != 0)
            .unwrap_or(0);
        if untagged == Untagged::Public && public_bit == 0 {
            return Err(PolicyError::new(
                PolicyErrorKind::UntaggedPublicWithoutRule,
                "/untagged".to_owned(),
                "`\"untagged\": \"public\"` needs a rule for the data trait `public`",
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
                rules,
                compiled: compiled.into_boxed_slice(),
                outcomes: outcomes.into_boxed_slice(),
                class_names,
                data_mask,
                trait_names,
                untagged,
                public_bit,
                engine: EngineDecisions::new(),
            }),
        })
    }

    /// Loads a policy file (the format of `schemas/policy.default.json`). The rules
    /// replace the built-in ones entirely.
    ///
    /// # Errors
    /// [`PolicyError`] with the line and column, the rule (id or index) and the
    /// reason: malformed JSON, a wrong shape, an unknown effect, an invalid JSON
    /// pointer, a duplicate rule id, a sanitize rule without fields, …
    pub fn from_json_str(text: &str) -> Result<Self, PolicyError> {
        let (rules, untagged) = file::parse_file(text)?;
        Self::with_untagged(rules, untagged).map_err(|e| file::locate(text, e))
    }

    /// [`Policy::from_json_str`] for bytes (a file as read); non-UTF-8 is an error.
    ///
    /// # Errors
    /// As [`Policy::from_json_str`], plus [`PolicyErrorKind::NotUtf8`].
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, PolicyError> {
        let (rules, untagged) = file::parse_file_bytes(bytes)?;
        let text = String::from_utf8_lossy(bytes);
        Self::with_untagged(rules, untagged).map_err(|e| file::locate(&text, e))
    }

    /// Parses a policy file into its rules without compiling them (for tooling and
    /// tests; [`Policy::from_json_str`] is the loader).
    ///
    /// # Errors
    /// As [`Policy::from_json_str`], except the checks that run at compilation.
    pub fn parse_rules(text: &str) -> Result<Vec<Rule>, PolicyError> {
        file::parse_rules(text)
    }

    /// The rules, as given (names not yet lowercased).
    #[must_use]
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// What an event without data traits is taken to carry.
    #[must_use]
    pub fn untagged(&self) -> Untagged {
        self.inner.untagged
    }

    /// The data traits an untagged event from `source` is decided as (empty when it
    /// is refused): for the audit trail, which records what was decided.
    #[must_use]
    pub fn untagged_traits(&self, source: &PluginFacts) -> Vec<String> {
        match self.inner.untagged {
            Untagged::PublisherClassification => source
                .data_classification
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            Untagged::Public => vec!["public".to_owned()],
            Untagged::Deny => Vec::new(),
        }
    }

    /// This policy's generation: unique per compiled policy in this process, so a
    /// decision cache keyed on it is invalidated by a reload.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Compiles `facts` (same as [`PluginFacts::compile`]).
    #[must_use]
    pub fn compile_facts(&self, facts: &PluginFacts) -> CompiledFacts {
        facts.compile(self)
    }

    /// Compiles an event's data traits (any case, any order, duplicates allowed).
    #[must_use]
    pub fn data_traits<I, S>(&self, names: I) -> DataTraits
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let inner = &*self.inner;
        let mut known = 0;
        let mut unknown = false;
        for name in names {
            match index_of(&inner.class_names, name.as_ref()) {
                Some(bit) if inner.data_mask & (1 << bit) != 0 => known |= 1 << bit,
                _ => unknown = true,
            }
        }
        DataTraits {
            generation: inner.generation,
            known,
            unknown,
        }
    }

    /// Decides `action` by `source` on an event carrying `data`.
    ///
    /// Never panics and never allocates unless several `Sanitize` rules decide
    /// together (their fields are merged).
    #[must_use]
    pub fn decide(
        &self,
        source: &CompiledFacts,
        action: Action<'_>,
        data: &DataTraits,
    ) -> Decision {
        let inner = &*self.inner;
        let engine = &inner.engine;
        let target = match action {
            Action::Publish => None,
            Action::Deliver { target } => Some(target),
        };
        let generation = inner.generation;
        if source.generation != generation
            || data.generation != generation
            || target.is_some_and(|t| t.generation != generation)
        {
            return engine.stale.clone();
        }
        if !source.enabled {
            return engine.source_disabled.clone();
        }
        if target.is_some_and(|t| !t.enabled) {
            return engine.target_disabled.clone();
        }
        let (known, unknown) = if data.is_empty() {
            // Given traits, an untagged event is decided as a tagged one from here on.
            match inner.untagged {
                Untagged::Deny => return engine.untagged_denied.clone(),
                Untagged::Public => (inner.public_bit, false),
                Untagged::PublisherClassification => {
                    if source.implied == 0 && !source.implied_unknown {
                        return engine.untagged_unclassified.clone();
                    }
                    (source.implied, source.implied_unknown)
                }
            }
        } else {
            // Tagged: only within the publisher's classification (implied traits are
            // within it, or chosen by the operator as `public`).
            if data.known & !source.classes != 0 {
                return engine.outside_classification.clone();
            }
            (data.known, data.unknown)
        };
        if unknown {
            return engine.unknown.clone();
        }
        let Some(target) = target else {
            return engine.publish.clone();
        };
        inner.evaluate(target, known)
    }
}

impl Inner {
    fn evaluate(&self, target: &CompiledFacts, data: u64) -> Decision {
        let mut best: Option<(Kind, usize, bool)> = None;
        let mut covered = 0;
        let mut sanitizers = 0usize;
        for (i, rule) in self.compiled.iter().enumerate() {
            let Some((kind, met)) = rule.outcome(target, data) else {
                continue;
            };
            match kind {
                Kind::Allow => covered |= rule.data & data,
                Kind::Sanitize => {
                    covered |= rule.data & data;
                    sanitizers += 1;
                }
                Kind::Deny => {}
            }
            if best.is_none_or(|(k, _, _)| kind > k) {
                best = Some((kind, i, met));
                if kind == Kind::Deny {
                    break; // nothing beats it, and later rules did not decide first
                }
            }
        }
        let Some((kind, i, met)) = best else {
            return self.engine.fail_closed.clone();
        };
        if kind != Kind::Deny && data & !covered != 0 {
            return self.engine.fail_closed.clone();
        }
        let Some(outcomes) = self.outcomes.get(i) else {
            return self.engine.fail_closed.clone();
        };
        match (kind, met) {
            (Kind::Deny, false) => outcomes
                .otherwise
                .clone()
                .unwrap_or_else(|| self.engine.fail_closed.clone()),
            (Kind::Sanitize, _) if sanitizers > 1 => self.merged_sanitize(target, data, outcomes),
            _ => outcomes.applied.clone(),
        }
    }

    /// The union of the fields of every `Sanitize` rule that decided, in rule order,
    /// reported under the first of them.
    fn merged_sanitize(&self, target: &CompiledFacts, data: u64, first: &RuleOutcomes) -> Decision {
        let mut fields: Vec<JsonPointer> = Vec::new();
        for (rule, outcomes) in self.compiled.iter().zip(self.outcomes.iter()) {
            if rule.outcome(target, data) != Some((Kind::Sanitize, true)) {
                continue;
            }
            for field in outcomes.applied.sanitize_fields().unwrap_or_default() {
                if !fields.contains(field) {
                    fields.push(field.clone());
                }
            }
        }
        Decision {
            effect: Effect::Sanitize {
                fields: fields.into(),
            },
            rule: first.applied.rule.clone(),
            reason: first.applied.reason.clone(),
        }
    }
}

impl CompiledRule {
    /// What the rule decides for this target and these data bits, and whether its
    /// condition held; `None` when it does not match or has no opinion.
    #[inline]
    fn outcome(&self, target: &CompiledFacts, data: u64) -> Option<(Kind, bool)> {
        if self.data & data == 0 {
            return None;
        }
        let met = target.traits & self.need_traits == self.need_traits
            && target.classes & self.need_classes == self.need_classes
            && target.traits & self.forbid_traits == 0;
        if met {
            Some((self.kind, true))
        } else if self.otherwise_deny {
            Some((Kind::Deny, false))
        } else {
            None
        }
    }
}

fn compile_rule(
    rule: &CheckedRule,
    class_names: &mut Vec<String>,
    trait_names: &mut Vec<String>,
    i: usize,
) -> Result<(CompiledRule, u64), PolicyError> {
    let at = |member: &str| format!("/rules/{i}/{member}");
    let data = intern(class_names, &rule.data_traits, &at("data_traits"))?;
    let compiled = CompiledRule {
        data,
        need_traits: intern(trait_names, &rule.traits, &at("target/traits"))?,
        need_classes: intern(
            class_names,
            &rule.classification,
            &at("target/classification"),
        )?,
        forbid_traits: intern(
            trait_names,
            &rule.forbid_traits,
            &at("target/forbid_traits"),
        )?,
        kind: match rule.effect {
            CheckedEffect::Allow => Kind::Allow,
            CheckedEffect::Sanitize(_) => Kind::Sanitize,
            CheckedEffect::Deny => Kind::Deny,
        },
        otherwise_deny: rule.otherwise_deny.is_some(),
    };
    Ok((compiled, data))
}

fn outcomes_of(rule: &CheckedRule) -> RuleOutcomes {
    let effect = match &rule.effect {
        CheckedEffect::Allow => Effect::Allow,
        CheckedEffect::Deny => Effect::Deny,
        CheckedEffect::Sanitize(fields) => Effect::Sanitize {
            fields: fields.clone().into(),
        },
    };
    RuleOutcomes {
        applied: Decision::new(effect, &rule.id, &rule.reason),
        otherwise: rule
            .otherwise_deny
            .as_deref()
            .map(|reason| Decision::new(Effect::Deny, &rule.id, reason)),
    }
}

/// Adds `names` (already lowercased) to `vocab` and returns their mask.
fn intern(vocab: &mut Vec<String>, names: &[String], path: &str) -> Result<u64, PolicyError> {
    let mut m = 0;
    for name in names {
        let bit = match vocab.iter().position(|v| v == name) {
            Some(bit) => bit,
            None if vocab.len() < MAX_NAMES => {
                vocab.push(name.clone());
                vocab.len() - 1
            }
            None => {
                return Err(PolicyError::new(
                    PolicyErrorKind::TooMany,
                    path.to_owned(),
                    format!("a policy may mention at most {MAX_NAMES} distinct names of this kind"),
                ));
            }
        };
        m |= 1 << bit;
    }
    Ok(m)
}

fn index_of(vocab: &[String], name: &str) -> Option<usize> {
    vocab.iter().position(|v| v.eq_ignore_ascii_case(name))
}

fn mask(vocab: &[String], names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| index_of(vocab, n))
        .fold(0, |m, bit| m | 1 << bit)
}
