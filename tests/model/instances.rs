//! The registry's instances against a reference model: random sequences of
//! registrations of instances (with the token of the same or another instance),
//! heartbeats, refreshes and deregistrations by instance, clock moves and sweeps, on one
//! plugin with `max_instances` 2, compared with the store after every step: which
//! instances exist, which token each holds, their liveness and deadlines, and the
//! plugin's liveness taken together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use vivified_adapters::clock::ManualClock;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_adapters::memory::{InMemoryAuditLog, InMemoryEventBus};
use vivified_domain::{
    HeartbeatReport, ManifestValidator, Mode, Ports, Registry, RegistryConfig, RegistryError,
};
use vivified_ports::{Health, InstanceId, Liveness, PluginStore, Secret};

const ID: &str = "multi";
const INSTANCES: &[&str] = &["a", "b", "c"];
const MAX: usize = 2;
const HB_TTL: i64 = 30;
const DEREGISTER_AFTER: i64 = 120;

#[derive(Clone, Debug)]
enum Action {
    /// Register instance `.0` presenting the last token instance `.1` was given (none:
    /// no credential).
    Register(usize, Option<usize>),
    Heartbeat(usize),
    Refresh(usize),
    Deregister(usize),
    /// Move the clock on, then sweep.
    Sweep(i64),
}

fn action() -> impl Strategy<Value = Action> {
    let i = || 0..INSTANCES.len();
    prop_oneof![
        3 => (i(), proptest::option::weighted(0.9, i())).prop_map(|(a, b)| Action::Register(a, b)),
        3 => i().prop_map(Action::Heartbeat),
        1 => i().prop_map(Action::Refresh),
        1 => i().prop_map(Action::Deregister),
        2 => prop_oneof![Just(5i64), Just(31), Just(95), Just(200)].prop_map(Action::Sweep),
    ]
}

/// One instance as the model keeps it.
#[derive(Clone, Debug)]
struct Inst {
    jti: String,
    status: Liveness,
    registered_at: OffsetDateTime,
    last_heartbeat: Option<OffsetDateTime>,
    deadline: Option<OffsetDateTime>,
}

#[derive(Default)]
struct Model {
    instances: BTreeMap<usize, Inst>,
    /// The last token each instance was given (alive or not): (token, jti).
    held: BTreeMap<usize, (String, String)>,
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

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid timestamp")
}

fn manifest() -> serde_json::Value {
    json!({
        "id": ID, "name": "Multi", "version": "1.0.0",
        "contracts": ["StoragePlugin"], "traits": [],
        "security": {"authentication_required": false, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"}
    })
}

struct World {
    registry: Registry,
    store: Arc<dyn PluginStore>,
    clock: Arc<ManualClock>,
}

fn world(store: Arc<dyn PluginStore>) -> World {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut jwt = JwtConfig::new(Secret::new("model-jwt-secret-of-at-least-32-bytes"));
    jwt.ttl = StdDuration::from_secs(30 * 24 * 3600);
    let ports = Ports {
        operators: Arc::new(vivified_adapters::memory::InMemoryPluginStore::new()),
        identity: None,
        store: Arc::clone(&store),
        tokens: Arc::new(JwtTokenIssuer::new(jwt).expect("jwt config")),
        clock: clock.clone(),
        bus: Arc::new(InMemoryEventBus::new(256)),
        audit: Arc::new(InMemoryAuditLog::new(4096)),
    };
    let config = RegistryConfig {
        mode: Mode::Dev,
        heartbeat_ttl: StdDuration::from_secs(HB_TTL as u64),
        deregister_after: Some(StdDuration::from_secs(DEREGISTER_AFTER as u64)),
        max_instances: MAX,
        // A plugin restarted without its token does not replace a stale one here.
        replace_stale: false,
        ..RegistryConfig::default()
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
    }
}

fn code<T>(r: &Result<T, RegistryError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// The model's answer to a token of instance `holder`: the instance it belongs to, if
/// it is current.
fn current(m: &Model, holder: usize) -> Result<usize, &'static str> {
    let Some((_, jti)) = m.held.get(&holder) else {
        return Err("missing_credentials");
    };
    if m.instances.is_empty() {
        return Err("unknown_plugin");
    }
    match m.instances.get(&holder) {
        Some(i) if &i.jti == jti => Ok(holder),
        _ => Err("revoked_token"),
    }
}

fn fresh(jti: String, now: OffsetDateTime) -> Inst {
    Inst {
        jti,
        status: Liveness::Registered,
        registered_at: now,
        last_heartbeat: None,
        deadline: Some(now + Duration::seconds(HB_TTL)),
    }
}

/// The model's sweep at `now`: steps until nothing is due.
fn sweep(m: &mut Model, now: OffsetDateTime) {
    let shift = Duration::seconds(DEREGISTER_AFTER - HB_TTL);
    loop {
        let mut changed = false;
        m.instances.retain(|_, i| match i.deadline {
            Some(d) if d <= now && i.status.is_live() => {
                i.status = Liveness::Stale;
                i.deadline = Some(d + shift);
                changed = true;
                true
            }
            Some(d) if d <= now => {
                changed = true;
                false
            }
            _ => true,
        });
        if !changed {
            return;
        }
    }
}

async fn step(w: &World, m: &mut Model, action: &Action) -> Result<(), TestCaseError> {
    let now = vivified_ports::Clock::now(&*w.clock);
    let name = |i: usize| InstanceId::parse(INSTANCES[i]).expect("valid");
    let token = |i: usize| m.held.get(&i).map(|(t, _)| t.clone());
    match *action {
        Action::Register(i, via) => {
            let bearer = via.and_then(token);
            let got = w
                .registry
                .register_instance(manifest(), Some(name(i)), bearer.as_deref(), "t")
                .await;
            let want = if m.instances.is_empty() {
                // A free id: any credential registers it anew (dev mode).
                "ok"
            } else if bearer.is_none() {
                "already_registered"
            } else {
                match current(m, via.expect("a bearer came from a holder")) {
                    Err(reason) => reason,
                    Ok(own) if own == i => "ok",
                    Ok(_) if m.instances.contains_key(&i) => "already_registered",
                    Ok(_) if m.instances.len() < MAX => "ok",
                    Ok(_) if m.instances.values().any(|x| x.status == Liveness::Stale) => "ok",
                    Ok(_) => "too_many_instances",
                }
            };
            check!(
                code(&got) == want,
                "register {i} via {via:?}: got {got:?}, model {want}"
            );
            if let Ok(reg) = got {
                check!(reg.instance_id == name(i), "instance {}", reg.instance_id);
                if m.instances.is_empty() {
                    m.instances.clear();
                } else if !m.instances.contains_key(&i) && m.instances.len() >= MAX {
                    let oldest = m
                        .instances
                        .iter()
                        .filter(|(_, x)| x.status == Liveness::Stale)
                        .min_by_key(|(_, x)| {
                            (x.last_heartbeat.unwrap_or(x.registered_at), x.registered_at)
                        })
                        .map(|(k, _)| *k)
                        .expect("a stale instance");
                    m.instances.remove(&oldest);
                }
                let jti = reg.token_jti.clone();
                match m.instances.get_mut(&i) {
                    Some(x) => {
                        x.jti = jti.clone();
                        if x.status == Liveness::Stale {
                            x.status = Liveness::Registered;
                        }
                        x.deadline = Some(now + Duration::seconds(HB_TTL));
                    }
                    None => {
                        m.instances.insert(i, fresh(jti.clone(), now));
                    }
                }
                m.held.insert(i, (reg.token.expose().to_owned(), jti));
            }
        }
        Action::Heartbeat(i) => {
            let bearer = token(i);
            let got = w
                .registry
                .heartbeat(
                    ID,
                    bearer.as_deref(),
                    HeartbeatReport {
                        health: Health::Healthy,
                    },
                )
                .await;
            let want = current(m, i).map_or_else(|r| r, |_| "ok");
            check!(
                code(&got) == want,
                "heartbeat {i}: got {got:?}, model {want}"
            );
            if got.is_ok() {
                let x = m.instances.get_mut(&i).expect("current");
                x.status = Liveness::Active;
                x.last_heartbeat = Some(now);
                x.deadline = Some(now + Duration::seconds(HB_TTL));
            }
        }
        Action::Refresh(i) => {
            let got = w.registry.refresh_token(ID, token(i).as_deref(), "t").await;
            let want = current(m, i).map_or_else(|r| r, |_| "ok");
            check!(code(&got) == want, "refresh {i}: got {got:?}, model {want}");
            if let Ok(reg) = got {
                m.instances.get_mut(&i).expect("current").jti = reg.token_jti.clone();
                m.held
                    .insert(i, (reg.token.expose().to_owned(), reg.token_jti));
            }
        }
        Action::Deregister(i) => {
            let got = w.registry.deregister(ID, token(i).as_deref(), "t").await;
            let want = current(m, i).map_or_else(|r| r, |_| "ok");
            check!(
                code(&got) == want,
                "deregister {i}: got {got:?}, model {want}"
            );
            if got.is_ok() {
                m.instances.remove(&i);
            }
        }
        Action::Sweep(secs) => {
            w.clock.advance(Duration::seconds(secs));
            w.registry
                .sweep()
                .await
                .map_err(|e| fail(format!("sweep: {e}")))?;
            sweep(m, vivified_ports::Clock::now(&*w.clock));
        }
    }
    compare(w, m).await
}

async fn compare(w: &World, m: &Model) -> Result<(), TestCaseError> {
    let got = w
        .store
        .get(&ID.parse().expect("valid id"))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let Some(got) = got else {
        check!(
            m.instances.is_empty(),
            "record gone, model has {:?}",
            m.instances
        );
        return Ok(());
    };
    check!(
        !m.instances.is_empty(),
        "record kept, model has none: {got:?}"
    );
    let ids: Vec<&str> = got
        .instances
        .iter()
        .map(|i| i.instance_id.as_str())
        .collect();
    let want: Vec<&str> = m.instances.keys().map(|k| INSTANCES[*k]).collect();
    check!(ids == want, "instances {ids:?}, model {want:?}");
    for (k, x) in &m.instances {
        let g = got
            .instance(&InstanceId::parse(INSTANCES[*k]).expect("valid"))
            .expect("listed");
        check!(g.token_jti == x.jti, "{k}: jti");
        check!(
            g.status == x.status,
            "{k}: status {:?}, model {:?}",
            g.status,
            x.status
        );
        check!(
            g.next_deadline == x.deadline,
            "{k}: deadline {:?}, model {:?}",
            g.next_deadline,
            x.deadline
        );
        check!(g.last_heartbeat == x.last_heartbeat, "{k}: last heartbeat");
    }
    let any = |s: Liveness| m.instances.values().any(|x| x.status == s);
    let status = if any(Liveness::Active) {
        Liveness::Active
    } else if any(Liveness::Registered) {
        Liveness::Registered
    } else {
        Liveness::Stale
    };
    check!(
        got.status == status,
        "plugin status {:?}, model {status:?}",
        got.status
    );
    let earliest = m.instances.values().filter_map(|x| x.deadline).min();
    check!(got.next_deadline == earliest, "plugin deadline");
    Ok(())
}

/// Runs `cases` random sequences on stores from `make_store` (each empty); panics with
/// the shrunk failing sequence if the registry and the model disagree. Returns how
/// often each outcome occurred.
pub fn run_model<F, Fut>(make_store: F, cases: u32) -> BTreeMap<String, usize>
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
    let coverage = std::sync::Mutex::new(BTreeMap::<String, usize>::new());
    let result = runner.run(&proptest::collection::vec(action(), 1..40), |actions| {
        rt.block_on(async {
            let w = world(make_store().await);
            let mut m = Model::default();
            // Instance 0 registers the plugin first.
            step(&w, &mut m, &Action::Register(0, None)).await?;
            for (n, a) in actions.iter().enumerate() {
                let before = m.instances.len();
                step(&w, &mut m, a)
                    .await
                    .map_err(|e| fail(format!("step {n} ({a:?}): {e}")))?;
                let label = format!(
                    "{} {}→{}",
                    match a {
                        Action::Register(..) => "register",
                        Action::Heartbeat(_) => "heartbeat",
                        Action::Refresh(_) => "refresh",
                        Action::Deregister(_) => "deregister",
                        Action::Sweep(_) => "sweep",
                    },
                    before,
                    m.instances.len()
                );
                *coverage
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(label)
                    .or_default() += 1;
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("the registry's instances disagree with the model: {e}");
    }
    coverage
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
