//! Rule ids and reason codes of the engine's own checks (they precede the rules and
//! cannot be replaced by a policy file).

/// Rule: facts or data traits were compiled for another policy (a reload
/// happened): recompile them.
pub const RULE_STALE_FACTS: &str = "core.stale-facts";
/// Reason of [`RULE_STALE_FACTS`].
pub const FACTS_FROM_ANOTHER_POLICY: &str = "facts_compiled_for_another_policy";
/// Rule: a disabled plugin neither publishes nor receives.
pub const RULE_ENABLED: &str = "core.enabled";
/// Reason: the source is disabled.
pub const SOURCE_DISABLED: &str = "source_disabled";
/// Reason: the target is disabled.
pub const TARGET_DISABLED: &str = "target_disabled";
/// Rule: a plugin publishes only data within its declared data classification.
pub const RULE_SOURCE_CLASSIFICATION: &str = "core.source-classification";
/// Reason of [`RULE_SOURCE_CLASSIFICATION`] (the HTTP layer answers 403).
pub const OUTSIDE_SOURCE_CLASSIFICATION: &str = "data_trait_outside_source_classification";
/// Rule: data traits that no rule names are denied.
pub const RULE_UNKNOWN_DATA_TRAIT: &str = "core.unknown-data-trait";
/// Reason of [`RULE_UNKNOWN_DATA_TRAIT`].
pub const UNKNOWN_DATA_TRAIT: &str = "unknown_data_trait";
/// Rule: a publication that passed the checks above.
pub const RULE_PUBLISH: &str = "core.publish";
/// Reason of [`RULE_PUBLISH`].
pub const WITHIN_SOURCE_CLASSIFICATION: &str = "within_source_classification";
/// Rule: an event without data traits that cannot be given any (see
/// [`super::Untagged`]).
pub const RULE_UNTAGGED: &str = "core.untagged";
/// Reason of [`RULE_UNTAGGED`]: the policy refuses untagged events
/// (`"untagged": "deny"`).
pub const UNTAGGED_DENIED: &str = "untagged_data_denied";
/// Reason of [`RULE_UNTAGGED`]: the event would carry its publisher's data
/// classification, and the publisher declares none.
pub const UNTAGGED_UNCLASSIFIED: &str = "untagged_data_unclassified_publisher";
/// Rule: a tagged event one of whose traits no rule allowed (fail closed).
pub const RULE_FAIL_CLOSED: &str = "core.fail-closed";
/// Reason of [`RULE_FAIL_CLOSED`].
pub const NO_ALLOWING_RULE: &str = "no_allowing_rule";
