//! Heartbeats held in memory (`BufferedHeartbeats`) against their promises, with a
//! controlled clock: random interleavings of beats (steady, and changing health),
//! clock moves with the flush ticker running every `FLUSH`, explicit flushes, sweeps by
//! this replica (through the buffer) and by another one (straight on the store), and
//! crashes (the buffer dropped unflushed, a new one started on the same store). After
//! every step:
//! - no stored deadline is later than the last acknowledged beat of its plugin + TTL;
//! - no sweep marks stale a plugin whose beat was acknowledged within the TTL and
//!   written (by a flush tick, a write at once, or this replica's own sweep, which
//!   flushes first) — so a plugin that keeps beating is never stale within its TTL.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use time::{Duration, OffsetDateTime};
use vivified_adapters::buffered::BufferedHeartbeats;
use vivified_adapters::clock::ManualClock;
use vivified_conformance::store::{record, t0};
use vivified_ports::{Clock, Health, Liveness, PluginId, PluginStore};

const PLUGINS: usize = 3;
const TTL: Duration = Duration::seconds(8);
const FLUSH: Duration = Duration::seconds(1);
const VIEW_TTL: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone, Debug)]
enum Action {
    /// Plugin `.0` beats, reporting `.1` (a change of health is written at once).
    Beat(usize, Health),
    /// The clock moves on by `.0` ms; the flush ticker runs at every `FLUSH` boundary.
    Advance(i64),
    Flush,
    /// A sweep through the buffer (it flushes first).
    Sweep,
    /// Another replica's sweep, straight on the store.
    ForeignSweep,
    /// The core dies: what the buffer holds is lost; a new one starts.
    Crash,
}

fn action() -> impl Strategy<Value = Action> {
    let p = || 0..PLUGINS;
    prop_oneof![
        8 => p().prop_map(|p| Action::Beat(p, Health::Healthy)),
        1 => p().prop_map(|p| Action::Beat(p, Health::Degraded)),
        5 => prop_oneof![Just(200i64), Just(700), Just(2_500), Just(9_000)].prop_map(Action::Advance),
        1 => Just(Action::Flush),
        2 => Just(Action::Sweep),
        2 => Just(Action::ForeignSweep),
        1 => Just(Action::Crash),
    ]
}

fn id(p: usize) -> PluginId {
    PluginId::parse(&format!("hb-{p}")).expect("valid id")
}

struct World {
    inner: Arc<dyn PluginStore>,
    clock: Arc<ManualClock>,
    buffer: BufferedHeartbeats,
}

impl World {
    fn restart(&mut self) {
        self.buffer = BufferedHeartbeats::new(self.inner.clone(), self.clock.clone(), VIEW_TTL);
    }
}

/// What the model knows of each plugin.
#[derive(Default)]
struct Model {
    /// The newest beat acknowledged, per plugin.
    acked: BTreeMap<usize, OffsetDateTime>,
    /// The newest acknowledged beat known to be written: acknowledged before a flush
    /// that succeeded, or written at once.
    written: BTreeMap<usize, OffsetDateTime>,
    /// Acknowledged and maybe not written yet.
    held: BTreeMap<usize, OffsetDateTime>,
    /// The health each plugin reported last.
    health: BTreeMap<usize, Health>,
}

impl Model {
    fn flushed(&mut self) {
        for (p, at) in std::mem::take(&mut self.held) {
            let w = self.written.entry(p).or_insert(at);
            *w = (*w).max(at);
        }
    }
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

async fn check_sweep(
    m: &Model,
    now: OffsetDateTime,
    swept: &[vivified_ports::Swept],
) -> Result<(), TestCaseError> {
    for step in swept {
        let p: usize = step.record.plugin_id.as_str()[3..].parse().expect("hb-N");
        if step.stale.is_empty() {
            continue;
        }
        if let Some(w) = m.written.get(&p)
            && *w + TTL > now
        {
            return Err(fail(format!(
                "plugin {p} marked stale at {now} though its beat at {w} was written"
            )));
        }
    }
    Ok(())
}

async fn step(w: &mut World, m: &mut Model, a: &Action) -> Result<(), TestCaseError> {
    let now = w.clock.now();
    match a {
        Action::Beat(p, health) => {
            match w
                .buffer
                .record_heartbeat(&id(*p), "j", *health, now, now + TTL)
                .await
            {
                Ok(outcome) => {
                    m.acked.insert(*p, now);
                    let changed = m.health.insert(*p, *health) != Some(*health);
                    if outcome.recovered || changed {
                        // A change of state is written before it is answered.
                        m.written.insert(*p, now);
                        m.held.remove(p);
                    } else {
                        m.held.insert(*p, now);
                    }
                }
                Err(e) => return Err(fail(format!("beat of an enabled plugin refused: {e}"))),
            }
        }
        Action::Advance(ms) => {
            let end = now + Duration::milliseconds(*ms);
            // The ticker: a flush at every FLUSH boundary passed.
            let mut tick = t0() + FLUSH * (((now - t0()) / FLUSH).floor() + 1.0);
            while tick <= end {
                w.clock.set(tick);
                w.buffer
                    .flush()
                    .await
                    .map_err(|e| fail(format!("flush: {e}")))?;
                m.flushed();
                tick += FLUSH;
            }
            w.clock.set(end);
        }
        Action::Flush => {
            w.buffer
                .flush()
                .await
                .map_err(|e| fail(format!("flush: {e}")))?;
            m.flushed();
        }
        Action::Sweep => {
            let swept = w
                .buffer
                .sweep(now, None, 100)
                .await
                .map_err(|e| fail(format!("sweep: {e}")))?;
            m.flushed();
            check_sweep(m, now, &swept).await?;
        }
        Action::ForeignSweep => {
            let swept = w
                .inner
                .sweep(now, None, 100)
                .await
                .map_err(|e| fail(format!("sweep: {e}")))?;
            check_sweep(m, now, &swept).await?;
        }
        Action::Crash => {
            w.restart();
            m.held.clear();
        }
    }
    // No stored deadline later than the last acknowledged beat + TTL.
    for p in 0..PLUGINS {
        let stored = w
            .inner
            .get(&id(p))
            .await
            .map_err(|e| fail(format!("get: {e}")))?
            .ok_or_else(|| fail(format!("plugin {p} gone")))?;
        let acked = m.acked.get(&p).copied().unwrap_or(t0());
        if let Some(d) = stored.next_deadline
            && stored.status != Liveness::Stale
            && d > acked + TTL
        {
            return Err(fail(format!(
                "plugin {p}: stored deadline {d} is later than its last beat {acked} + TTL"
            )));
        }
    }
    Ok(())
}

/// Runs `cases` random sequences on stores from `make_store` (each empty); panics with
/// the shrunk failing sequence if a promise breaks. Returns how often each action
/// ran, and how often a sweep found something to mark.
pub fn run_model<F, Fut>(make_store: F, cases: u32) -> BTreeMap<&'static str, usize>
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
    let coverage = std::sync::Mutex::new(BTreeMap::<&'static str, usize>::new());
    let result = runner.run(&proptest::collection::vec(action(), 1..60), |actions| {
        rt.block_on(async {
            let inner = make_store().await;
            let clock = Arc::new(ManualClock::new(t0()));
            let buffer = BufferedHeartbeats::new(inner.clone(), clock.clone(), VIEW_TTL);
            let mut w = World {
                inner,
                clock,
                buffer,
            };
            let mut m = Model::default();
            for p in 0..PLUGINS {
                w.buffer
                    .insert(record(&format!("hb-{p}"), "j"))
                    .await
                    .map_err(|e| fail(format!("insert: {e}")))?;
            }
            for p in 0..PLUGINS {
                step(&mut w, &mut m, &Action::Beat(p, Health::Healthy)).await?;
            }
            for (n, a) in actions.iter().enumerate() {
                let stale_before = stale_count(&w).await;
                step(&mut w, &mut m, a)
                    .await
                    .map_err(|e| fail(format!("step {n} ({a:?}): {e}")))?;
                let label = match a {
                    Action::Beat(_, Health::Healthy) => "steady beat",
                    Action::Beat(..) => "beat changing health",
                    Action::Advance(_) => "advance",
                    Action::Flush => "flush",
                    Action::Sweep | Action::ForeignSweep
                        if stale_count(&w).await > stale_before =>
                    {
                        "sweep marking stale"
                    }
                    Action::Sweep => "own sweep",
                    Action::ForeignSweep => "foreign sweep",
                    Action::Crash => "crash",
                };
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
        panic!("{e}");
    }
    coverage
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn stale_count(w: &World) -> usize {
    let mut n = 0;
    for p in 0..PLUGINS {
        if let Ok(Some(r)) = w.inner.get(&id(p)).await
            && r.status == Liveness::Stale
        {
            n += 1;
        }
    }
    n
}
