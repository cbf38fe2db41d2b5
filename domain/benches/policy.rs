//! One policy decision with the default rules: p50 and p99 per decision over 18
//! varied requests (every default rule, every engine check, allow, sanitize and deny),
//! then criterion's own estimates.
//!
//! `cargo bench -p vivified-domain --bench policy`
//!
//! The percentiles are measured here, not by criterion: each sample times a batch of
//! [`BATCH`] decisions of one request with `Instant` and divides (a single decision
//! is shorter than the clock's resolution and overhead); [`SAMPLES`] samples per
//! request, after a warm-up. A second table times single calls, clock overhead
//! included, as an upper bound on the tail.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::json;
use vivified_domain::policy::{
    Action, CompiledFacts, DataTraits, Decision, PluginFacts, Policy, codes,
};

const BATCH: usize = 32;
const SAMPLES: usize = 20_000;

struct Request {
    name: &'static str,
    source: CompiledFacts,
    target: Option<CompiledFacts>,
    data: DataTraits,
    names: &'static [&'static str],
}

impl Request {
    #[inline]
    fn decide(&self, policy: &Policy) -> Decision {
        let action = match &self.target {
            Some(target) => Action::Deliver { target },
            None => Action::Publish,
        };
        policy.decide(
            black_box(&self.source),
            black_box(action),
            black_box(&self.data),
        )
    }
}

fn facts(traits: &[&str], classification: &[&str], enabled: bool) -> PluginFacts {
    PluginFacts {
        id: "bench".to_owned(),
        traits: traits.iter().map(|s| (*s).to_owned()).collect(),
        data_classification: classification.iter().map(|s| (*s).to_owned()).collect(),
        enabled,
    }
}

fn requests(policy: &Policy) -> Vec<Request> {
    let all_classes = ["phi", "pii", "confidential", "internal", "public"];
    let publisher = facts(
        &[
            "handles_phi",
            "handles_pii",
            "requires_encryption",
            "audit_required",
        ],
        &all_classes,
        true,
    );
    let qualified = facts(
        &["handles_phi", "requires_encryption", "audit_required"],
        &["phi"],
        true,
    );
    let external = facts(
        &[
            "handles_phi",
            "requires_encryption",
            "audit_required",
            "external_service",
        ],
        &["phi"],
        true,
    );
    let external_only = facts(&["external_service"], &["internal"], true);
    let pii = facts(
        &["handles_pii", "audit_required"],
        &["pii", "internal"],
        true,
    );
    let classified = facts(&[], &["confidential", "internal"], true);
    let bare = facts(&[], &[], true);
    let everything = facts(
        &[
            "handles_phi",
            "handles_pii",
            "requires_encryption",
            "audit_required",
        ],
        &all_classes,
        true,
    );
    let disabled = facts(&[], &["public"], false);
    let narrow_source = facts(&["handles_pii"], &["pii", "internal"], true);

    let cases: Vec<(
        &'static str,
        &PluginFacts,
        Option<&PluginFacts>,
        &'static [&'static str],
    )> = vec![
        (
            "phi → qualified (allow)",
            &publisher,
            Some(&qualified),
            &["phi"],
        ),
        ("phi → bare (deny)", &publisher, Some(&bare), &["phi"]),
        (
            "phi → qualified external (sanitize)",
            &publisher,
            Some(&external),
            &["phi"],
        ),
        (
            "phi → external only (deny)",
            &publisher,
            Some(&external_only),
            &["PHI"],
        ),
        (
            "pii → handles_pii (allow)",
            &publisher,
            Some(&pii),
            &["pii"],
        ),
        ("pii → bare (deny)", &publisher, Some(&bare), &["pii"]),
        (
            "confidential → classified (allow)",
            &publisher,
            Some(&classified),
            &["confidential"],
        ),
        (
            "confidential → qualified (deny)",
            &publisher,
            Some(&qualified),
            &["confidential"],
        ),
        (
            "internal → bare (allow)",
            &publisher,
            Some(&bare),
            &["internal"],
        ),
        (
            "public → external only (allow)",
            &publisher,
            Some(&external_only),
            &["public"],
        ),
        ("untagged → bare (allow)", &publisher, Some(&bare), &[]),
        (
            "unknown trait (deny)",
            &publisher,
            Some(&everything),
            &["public", "financial"],
        ),
        (
            "disabled target (deny)",
            &publisher,
            Some(&disabled),
            &["public"],
        ),
        (
            "5 traits → everything (allow)",
            &publisher,
            Some(&everything),
            &["phi", "pii", "confidential", "internal", "public"],
        ),
        (
            "phi+pii → qualified (deny)",
            &publisher,
            Some(&qualified),
            &["phi", "pii"],
        ),
        (
            "phi+internal → external (sanitize)",
            &publisher,
            Some(&external),
            &["internal", "phi"],
        ),
        (
            "publish within classification (allow)",
            &narrow_source,
            None,
            &["pii", "internal"],
        ),
        (
            "publish outside classification (deny)",
            &narrow_source,
            None,
            &["phi"],
        ),
    ];
    cases
        .into_iter()
        .map(|(name, source, target, names)| Request {
            name,
            source: source.compile(policy),
            target: target.map(|t| t.compile(policy)),
            data: policy.data_traits(names),
            names,
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sort(v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
}

/// Per-decision nanoseconds of `SAMPLES` batches of `BATCH` calls of `f`.
fn batched(samples: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..samples / 10 {
        f();
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        out.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    out
}

fn single(samples: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        f();
        out.push(start.elapsed().as_nanos() as f64);
    }
    out
}

fn percentiles(policy: &Policy, reqs: &[Request], samples: usize) {
    println!(
        "policy decision, default rules, {} requests, {samples} samples × {BATCH} calls each",
        reqs.len()
    );
    println!(
        "{:<42} {:>9} {:>9}  decision",
        "request", "p50 ns", "p99 ns"
    );
    let mut pooled = Vec::with_capacity(samples * reqs.len());
    for r in reqs {
        let d = r.decide(policy);
        let mut ns = batched(samples, || {
            black_box(r.decide(policy));
        });
        sort(&mut ns);
        println!(
            "{:<42} {:>9.1} {:>9.1}  {} {} {}",
            r.name,
            percentile(&ns, 50.0),
            percentile(&ns, 99.0),
            d.effect_name(),
            d.rule,
            d.reason
        );
        pooled.extend(ns);
    }
    sort(&mut pooled);
    println!(
        "ALL (batched)                              {:>9.1} {:>9.1}",
        percentile(&pooled, 50.0),
        percentile(&pooled, 99.0)
    );

    let mut singles = Vec::with_capacity(samples * reqs.len());
    for r in reqs {
        singles.extend(single(samples, || {
            black_box(r.decide(policy));
        }));
    }
    let mut clock = single(samples * reqs.len(), || {});
    sort(&mut singles);
    sort(&mut clock);
    println!(
        "ALL (single calls, clock included)         {:>9.1} {:>9.1}   (empty timing: p50 {:.1}, p99 {:.1})",
        percentile(&singles, 50.0),
        percentile(&singles, 99.0),
        percentile(&clock, 50.0),
        percentile(&clock, 99.0)
    );

    // What the HTTP layer pays per event on top: compiling the event's data traits
    // from strings (once per event, shared by every subscriber).
    let mut compile = Vec::new();
    for r in reqs {
        compile.extend(batched(samples / 4, || {
            black_box(policy.data_traits(black_box(r.names)));
        }));
    }
    sort(&mut compile);
    println!(
        "data_traits (per event, from strings)      {:>9.1} {:>9.1}",
        percentile(&compile, 50.0),
        percentile(&compile, 99.0)
    );
    println!();
}

trait EffectName {
    fn effect_name(&self) -> &'static str;
}

impl EffectName for Decision {
    fn effect_name(&self) -> &'static str {
        if self.is_allow() {
            "allow"
        } else if self.is_deny() {
            "deny"
        } else {
            "sanitize"
        }
    }
}

fn criterion_benches(c: &mut Criterion, policy: &Policy, reqs: &[Request]) {
    let mut g = c.benchmark_group("policy");
    g.bench_function("decide_default_rules_18_requests_cycled", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % reqs.len();
            reqs[i].decide(policy)
        })
    });
    g.bench_function("data_traits_from_strings", |b| {
        b.iter(|| policy.data_traits(black_box(["phi", "PII", "internal"])))
    });
    let manifest_facts = facts(
        &[
            "handles_phi",
            "handles_pii",
            "requires_encryption",
            "audit_required",
        ],
        &["phi", "pii", "confidential"],
        true,
    );
    g.bench_function("compile_plugin_facts", |b| {
        b.iter(|| black_box(&manifest_facts).compile(policy))
    });
    let sanitize = reqs
        .iter()
        .map(|r| r.decide(policy))
        .find(|d| d.sanitize_fields().is_some())
        .expect("a sanitize request");
    let payload = json!({
        "appointment_id": "apt-5521", "clinic": "North",
        "phi": {"mrn": "MRN-77341", "diagnosis_code": "E11.9"},
        "patient": {"name": "Jane Roe"}, "ssn": "078-05-1120",
    });
    g.bench_function("sanitize_payload", |b| {
        b.iter_batched(
            || payload.clone(),
            |mut p| sanitize.apply(&mut p),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("load_default_policy_file", |b| {
        b.iter(|| Policy::from_json_str(black_box(vivified_domain::policy::DEFAULT_POLICY_JSON)))
    });
    g.finish();
}

fn main() {
    let policy = Policy::default();
    let reqs = requests(&policy);
    // Sanity: the set covers allow, sanitize, deny and the engine checks.
    assert!(reqs.len() >= 16);
    let decisions: Vec<Decision> = reqs.iter().map(|r| r.decide(&policy)).collect();
    assert!(decisions.iter().any(Decision::is_allow));
    assert!(decisions.iter().any(Decision::is_deny));
    assert!(decisions.iter().any(|d| d.sanitize_fields().is_some()));
    assert!(
        decisions
            .iter()
            .any(|d| &*d.rule == codes::RULE_UNKNOWN_DATA_TRAIT)
    );

    // `cargo test --benches` / `cargo bench -- --test` runs each bench once.
    let quick = std::env::args().any(|a| a == "--test");
    percentiles(&policy, &reqs, if quick { 100 } else { SAMPLES });

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut c, &policy, &reqs);
    c.final_summary();
}
