//! `InMemoryEventBus`: the in-process event bus, the default. Single process, so single
//! replica only: queues live in this process's memory and die with it.
//!
//! - Lifecycle events ([`EventBus::publish`]) go to a tokio `broadcast` channel
//!   ([`InMemoryEventBus::subscribe`]); a subscriber that falls more than the channel's
//!   capacity behind loses the oldest.
//! - Deliveries: one bounded `VecDeque` per plugin, behind one lock. Each queue numbers
//!   its events 1, 2, 3, … and has an *incarnation*, a number unique to this queue (a
//!   random per-process base plus a counter), so that a cursor of a removed queue, or of
//!   a previous process, acknowledges nothing in a new one. A cursor is
//!   `{incarnation}.{sequence}`. Waiting pulls sleep on the queue's `tokio::sync::Notify`
//!   (or, for a target without a queue, on the bus's), woken by every enqueue.
//!
//! Acknowledgement (`after`) pops the events up to the cursor; the bound pops the
//! oldest; so the queue holds exactly the unacknowledged events still kept, and the
//! number of events dropped since the acknowledged floor is the gap between that floor
//! and the oldest sequence still queued.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use vivified_ports::{BusError, BusEvent, Cursor, EventBus, PluginId, Pulled};

/// The longest a pull waits, whatever `wait` it is given (one day): keeps the deadline
/// arithmetic finite.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// Settings of an [`InMemoryEventBus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InMemoryBusConfig {
    /// Lifecycle events buffered per broadcast subscriber.
    pub broadcast_capacity: usize,
    /// Unacknowledged events kept per plugin; beyond it the oldest are dropped (and
    /// counted).
    pub queue_bound: usize,
}

impl Default for InMemoryBusConfig {
    fn default() -> Self {
        Self {
            broadcast_capacity: 1024,
            queue_bound: 10_000,
        }
    }
}

/// An in-process [`EventBus`]: a broadcast channel for lifecycle events and a bounded
/// queue per plugin for deliveries. Single process only.
#[derive(Debug)]
pub struct InMemoryEventBus {
    tx: broadcast::Sender<BusEvent>,
    queue_bound: usize,
    queues: Mutex<HashMap<PluginId, Queue>>,
    /// Woken when a queue is created, for pulls of targets that had none.
    created: Arc<Notify>,
    next_incarnation: AtomicU64,
}

#[derive(Debug)]
struct Queue {
    incarnation: u64,
    /// Unacknowledged events still kept, oldest first, with their sequence numbers.
    events: VecDeque<(u64, BusEvent)>,
    /// The sequence number of the newest event ever enqueued (0: none yet).
    last_seq: u64,
    /// Every event up to this sequence number has been acknowledged.
    acked: u64,
    /// Woken on every enqueue and on removal.
    changed: Arc<Notify>,
}

impl Queue {
    /// The sequence number of the oldest event still kept (or of the next one).
    fn first_seq(&self) -> u64 {
        self.events
            .front()
            .map_or(self.last_seq.saturating_add(1), |(seq, _)| *seq)
    }
}

fn cursor(incarnation: u64, seq: u64) -> Cursor {
    Cursor::new(format!("{incarnation}.{seq}"))
}

/// Parses `{incarnation}.{sequence}`.
fn parse_cursor(c: &Cursor) -> Result<(u64, u64), BusError> {
    let raw = c.as_str();
    if raw.len() > Cursor::MAX_LEN {
        return Err(BusError::InvalidCursor);
    }
    let (inc, seq) = raw.split_once('.').ok_or(BusError::InvalidCursor)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(inc) || !digits(seq) {
        return Err(BusError::InvalidCursor);
    }
    match (inc.parse(), seq.parse()) {
        (Ok(inc), Ok(seq)) => Ok((inc, seq)),
        _ => Err(BusError::InvalidCursor),
    }
}

impl InMemoryEventBus {
    /// A bus that buffers up to `capacity` lifecycle events per subscriber, with the
    /// default queue bound (10,000 events per plugin).
    pub fn new(capacity: usize) -> Self {
        Self::with_config(InMemoryBusConfig {
            broadcast_capacity: capacity,
            ..InMemoryBusConfig::default()
        })
    }

    /// A bus with these settings (a bound of 0 is taken as 1).
    pub fn with_config(config: InMemoryBusConfig) -> Self {
        let (tx, _) = broadcast::channel(config.broadcast_capacity.max(1));
        // A random start (SipHash keys are random per process), so that incarnations of
        // another process (a restarted core) do not repeat: their cursors then
        // acknowledge nothing here.
        let base = RandomState::new().build_hasher().finish() >> 1;
        Self {
            tx,
            queue_bound: config.queue_bound.max(1),
            queues: Mutex::new(HashMap::new()),
            created: Arc::new(Notify::new()),
            next_incarnation: AtomicU64::new(base),
        }
    }

    /// Receives every lifecycle event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }

    /// Unacknowledged events kept for `target` (0 without a queue).
    pub fn queued(&self, target: &PluginId) -> usize {
        self.lock().get(target).map_or(0, |q| q.events.len())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PluginId, Queue>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl EventBus for InMemoryEventBus {
    async fn publish(&self, event: BusEvent) -> Result<(), BusError> {
        // No subscriber is not an error: the event is simply not wanted.
        let _ = self.tx.send(event);
        Ok(())
    }

    fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    async fn enqueue(&self, target: &PluginId, event: BusEvent) -> Result<(), BusError> {
        let mut queues = self.lock();
        let mut created = false;
        let queue = queues.entry(target.clone()).or_insert_with(|| {
            created = true;
            Queue {
                incarnation: self.next_incarnation.fetch_add(1, Ordering::Relaxed),
                events: VecDeque::new(),
                last_seq: 0,
                acked: 0,
                changed: Arc::new(Notify::new()),
            }
        });
        queue.last_seq += 1;
        queue.events.push_back((queue.last_seq, event));
        while queue.events.len() > self.queue_bound {
            queue.events.pop_front();
        }
        let changed = Arc::clone(&queue.changed);
        drop(queues);
        changed.notify_waiters();
        if created {
            self.created.notify_waiters();
        }
        Ok(())
    }

    async fn pull<'a>(
        &self,
        target: &PluginId,
        after: Option<&'a Cursor>,
        limit: usize,
        wait: Duration,
    ) -> Result<Pulled, BusError> {
        let after_pos = after.map(parse_cursor).transpose()?;
        let limit = limit.max(1);
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let (woken, pulled) = {
                let mut queues = self.lock();
                let notify = queues
                    .get(target)
                    .map_or_else(|| Arc::clone(&self.created), |q| Arc::clone(&q.changed));
                // Registered before the state is read, under the lock enqueue takes: no
                // wake-up between the check and the wait is lost.
                let mut woken = Box::pin(notify.notified_owned());
                woken.as_mut().enable();
                let pulled = match queues.get_mut(target) {
                    Some(q) => take(q, after_pos, limit)?,
                    None => Pulled {
                        events: Vec::new(),
                        next_cursor: after.cloned(),
                        dropped: 0,
                    },
                };
                (woken, pulled)
            };
            if !pulled.events.is_empty() || Instant::now() >= deadline {
                return Ok(pulled);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                // Timed out: one last look, so an event that came with the deadline is
                // not left for the next pull.
                let mut queues = self.lock();
                return match queues.get_mut(target) {
                    Some(q) => take(q, after_pos, limit),
                    None => Ok(pulled),
                };
            }
        }
    }

    async fn remove_queue(&self, target: &PluginId) -> Result<(), BusError> {
        let removed = self.lock().remove(target);
        if let Some(q) = removed {
            q.changed.notify_waiters();
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// Acknowledges up to `after` (if it is a cursor of this queue) and returns up to
/// `limit` events.
fn take(q: &mut Queue, after: Option<(u64, u64)>, limit: usize) -> Result<Pulled, BusError> {
    if let Some((inc, seq)) = after
        && inc == q.incarnation
    {
        if seq > q.last_seq {
            return Err(BusError::InvalidCursor);
        }
        while q.events.front().is_some_and(|(s, _)| *s <= seq) {
            q.events.pop_front();
        }
        q.acked = q.acked.max(seq);
    }
    let first = q.first_seq();
    let dropped = first.saturating_sub(q.acked.saturating_add(1));
    let events: Vec<(Cursor, BusEvent)> = q
        .events
        .iter()
        .take(limit)
        .map(|(seq, e)| (cursor(q.incarnation, *seq), e.clone()))
        .collect();
    let next_cursor = match events.last() {
        Some((c, _)) => c.clone(),
        None => cursor(q.incarnation, first - 1),
    };
    Ok(Pulled {
        events,
        next_cursor: Some(next_cursor),
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_bus_passes_the_conformance_suite() {
        let bus = InMemoryEventBus::with_config(InMemoryBusConfig {
            broadcast_capacity: 16,
            queue_bound: vivified_conformance::bus::CONFORMANCE_QUEUE_BOUND,
        });
        vivified_conformance::bus::event_bus_conformance(Arc::new(bus)).await;
    }

    #[tokio::test]
    async fn bus_delivers_to_subscribers() {
        let bus = InMemoryEventBus::new(4);
        let mut rx = bus.subscribe();
        let ev = vivified_conformance::bus::bus_event("e1", "core");
        bus.publish(ev.clone()).await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), ev);
    }

    #[test]
    fn has_subscribers_while_a_receiver_lives() {
        let bus = InMemoryEventBus::new(4);
        assert!(!bus.has_subscribers());
        let rx = bus.subscribe();
        assert!(bus.has_subscribers());
        drop(rx);
        assert!(!bus.has_subscribers());
    }

    #[tokio::test]
    async fn lifecycle_events_do_not_enter_queues_and_deliveries_do_not_broadcast() {
        let bus = InMemoryEventBus::new(4);
        let mut rx = bus.subscribe();
        let target = PluginId::parse("p").unwrap();
        bus.enqueue(&target, vivified_conformance::bus::bus_event("d1", "s"))
            .await
            .unwrap();
        bus.publish(vivified_conformance::bus::bus_event("l1", "core"))
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().event_id, "l1");
        assert_eq!(bus.queued(&target), 1);
    }

    #[test]
    fn cursors_parse_strictly() {
        assert_eq!(parse_cursor(&Cursor::new("7.42")).unwrap(), (7, 42));
        for bad in [
            "",
            "7",
            "7.",
            ".4",
            "+7.4",
            "7.-4",
            "7.4.1",
            "a.b",
            "7.99999999999999999999",
        ] {
            assert!(
                matches!(
                    parse_cursor(&Cursor::new(bad)),
                    Err(BusError::InvalidCursor)
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn the_bound_is_per_plugin() {
        let bus = InMemoryEventBus::with_config(InMemoryBusConfig {
            broadcast_capacity: 1,
            queue_bound: 2,
        });
        let (a, b) = (PluginId::parse("a").unwrap(), PluginId::parse("b").unwrap());
        for i in 0..5 {
            let e = vivified_conformance::bus::bus_event(&format!("e{i}"), "s");
            bus.enqueue(&a, e.clone()).await.unwrap();
            if i == 0 {
                bus.enqueue(&b, e).await.unwrap();
            }
        }
        assert_eq!((bus.queued(&a), bus.queued(&b)), (2, 1));
        let pulled = bus.pull(&a, None, 10, Duration::ZERO).await.unwrap();
        assert_eq!(pulled.dropped, 3);
    }
}
