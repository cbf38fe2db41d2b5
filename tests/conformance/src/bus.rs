//! The [`EventBus`] conformance suite: the executable form of the
//! MUST sentences in [`vivified_ports::bus`]. Every adapter runs it: the in-process bus in its
//! unit tests, the NATS bus against a real server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{join, join_all, join3};

use vivified_ports::bus::{BusError, BusEvent, Cursor, EventBus, Pulled};
use vivified_ports::plugin::PluginId;

/// The per-plugin queue bound the bus under test MUST be built with.
pub const CONFORMANCE_QUEUE_BOUND: usize = 8;

/// Long enough for any healthy backend to make an enqueued event available.
const AVAILABLE_WITHIN: Duration = Duration::from_secs(5);

/// A delivery event with id `id` from publisher `source`.
pub fn bus_event(id: &str, source: &str) -> BusEvent {
    BusEvent {
        event_id: id.to_owned(),
        event_type: "conformance.test".to_owned(),
        trace_id: format!("trace-{id}"),
        source: source.to_owned(),
        data_traits: vec!["internal".to_owned()],
        at: crate::store::t0(),
        payload: serde_json::json!({ "id": id, "nested": { "list": [1, 2.5, "x", null, true] } }),
        metadata: [("k".to_owned(), format!("v-{id}"))].into(),
    }
}

fn pid(id: &str) -> PluginId {
    PluginId::parse(id).expect("test ids are valid")
}

fn ids(pulled: &Pulled) -> Vec<String> {
    pulled
        .events
        .iter()
        .map(|(_, e)| e.event_id.clone())
        .collect()
}

/// Runs every check of the [`EventBus`] contract against `bus`, which MUST have a
/// per-plugin queue bound of [`CONFORMANCE_QUEUE_BOUND`] and no queues whose ids start
/// with `conf-`. Panics (failing the calling test) with the contract sentence that was
/// broken. Removes every queue it created before returning.
pub async fn event_bus_conformance(bus: Arc<dyn EventBus>) {
    bus.ping()
        .await
        .expect("ping MUST succeed on a healthy bus");
    publish_is_accepted(&*bus).await;
    missing_queue_is_empty(&*bus).await;
    events_round_trip(&*bus).await;
    ordering_per_publisher(&*bus).await;
    delivery_to_every_target(&*bus).await;
    ack_via_cursor(&*bus).await;
    unacked_events_are_redelivered(&*bus).await;
    overflow_is_counted(&*bus).await;
    no_delivery_after_remove_queue(&*bus).await;
    long_poll_wakes_on_enqueue(&*bus).await;
    long_poll_times_out(&*bus).await;
    foreign_cursors_are_refused(&*bus).await;
    concurrent_pullers_and_publishers(&bus).await;
}

/// Pulls `target` (acknowledging as it goes, from `after`) until `want` events were
/// taken or a pull of [`AVAILABLE_WITHIN`] returned nothing. Returns the events, the
/// last cursor and the sum of `dropped`.
async fn drain(
    bus: &dyn EventBus,
    target: &PluginId,
    mut after: Option<Cursor>,
    want: usize,
) -> (Vec<BusEvent>, Option<Cursor>, u64) {
    let mut got = Vec::new();
    let mut dropped = 0;
    while got.len() < want {
        let pulled = bus
            .pull(target, after.as_ref(), want - got.len(), AVAILABLE_WITHIN)
            .await
            .expect("pull MUST succeed on a healthy bus");
        dropped += pulled.dropped;
        let done = pulled.events.is_empty() && pulled.dropped == 0;
        after = pulled.next_cursor.clone();
        if done {
            break;
        }
        got.extend(pulled.events.into_iter().map(|(_, e)| e));
    }
    (got, after, dropped)
}

async fn enqueue_all(bus: &dyn EventBus, target: &PluginId, ids: &[String], source: &str) {
    for id in ids {
        bus.enqueue(target, bus_event(id, source))
            .await
            .expect("enqueue MUST succeed on a healthy bus");
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

async fn remove(bus: &dyn EventBus, target: &PluginId) {
    bus.remove_queue(target)
        .await
        .expect("remove_queue MUST succeed on a healthy bus");
}

async fn publish_is_accepted(bus: &dyn EventBus) {
    let mut event = bus_event("plugin.registered:conf-x:jti", "core");
    event.event_type = "plugin.registered".into();
    bus.publish(event)
        .await
        .expect("publish MUST accept a lifecycle event on a healthy bus");
}

async fn missing_queue_is_empty(bus: &dyn EventBus) {
    let t = pid("conf-missing");
    remove(bus, &t).await; // removing a queue that does not exist is Ok
    let pulled = bus
        .pull(&t, None, 10, Duration::ZERO)
        .await
        .expect("pull of a target without a queue MUST succeed");
    assert!(
        pulled.events.is_empty() && pulled.dropped == 0,
        "a target without a queue has no events"
    );
    assert_eq!(
        pulled.next_cursor, None,
        "next_cursor is None without a queue and without after"
    );
}

async fn events_round_trip(bus: &dyn EventBus) {
    let t = pid("conf-roundtrip");
    let sent = bus_event("rt-1", "conf-src");
    bus.enqueue(&t, sent.clone()).await.expect("enqueue");
    let pulled = bus
        .pull(&t, None, 10, AVAILABLE_WITHIN)
        .await
        .expect("pull");
    assert_eq!(pulled.events.len(), 1, "an enqueued event MUST be returned");
    assert_eq!(
        pulled.events[0].1, sent,
        "the event MUST come back as enqueued"
    );
    assert_eq!(
        pulled.next_cursor.as_ref(),
        Some(&pulled.events[0].0),
        "next_cursor is the last event's cursor"
    );
    assert_eq!(pulled.dropped, 0, "nothing was dropped");
    remove(bus, &t).await;
}

async fn ordering_per_publisher(bus: &dyn EventBus) {
    let t = pid("conf-order");
    let sent = names("ord", CONFORMANCE_QUEUE_BOUND);
    enqueue_all(bus, &t, &sent, "conf-src").await;
    let (got, _, dropped) = drain(bus, &t, None, sent.len()).await;
    let got: Vec<String> = got.into_iter().map(|e| e.event_id).collect();
    assert_eq!(dropped, 0, "nothing was dropped");
    assert_eq!(
        got, sent,
        "events of one publisher MUST be returned in the order they were enqueued"
    );
    // A small limit returns the oldest first, at most `limit`.
    let pulled = bus.pull(&t, None, 0, AVAILABLE_WITHIN).await.expect("pull");
    assert_eq!(
        ids(&pulled),
        [sent[0].clone()],
        "a limit of 0 is taken as 1"
    );
    let pulled = bus.pull(&t, None, 3, AVAILABLE_WITHIN).await.expect("pull");
    assert!(
        !pulled.events.is_empty() && pulled.events.len() <= 3,
        "at most `limit` events"
    );
    assert_eq!(ids(&pulled), sent[..pulled.events.len()], "oldest first");
    remove(bus, &t).await;
}

async fn delivery_to_every_target(bus: &dyn EventBus) {
    let targets: Vec<PluginId> = (0..3).map(|i| pid(&format!("conf-fan-{i}"))).collect();
    for (i, t) in targets.iter().enumerate() {
        bus.enqueue(t, bus_event("fan-shared", "conf-src"))
            .await
            .expect("enqueue");
        bus.enqueue(t, bus_event(&format!("fan-own-{i}"), "conf-src"))
            .await
            .expect("enqueue");
    }
    for (i, t) in targets.iter().enumerate() {
        let (got, _, _) = drain(bus, t, None, 2).await;
        let got: Vec<String> = got.into_iter().map(|e| e.event_id).collect();
        assert_eq!(
            got,
            ["fan-shared".to_owned(), format!("fan-own-{i}")],
            "an event enqueued for several targets MUST reach every one of them, and only \
             their own events"
        );
    }
    for t in &targets {
        remove(bus, t).await;
    }
}

async fn ack_via_cursor(bus: &dyn EventBus) {
    let t = pid("conf-ack");
    let sent = names("ack", 3);
    enqueue_all(bus, &t, &sent, "conf-src").await;
    let first = bus.pull(&t, None, 3, AVAILABLE_WITHIN).await.expect("pull");
    let Some((second_cursor, _)) = first.events.get(1).cloned() else {
        // Fewer returned at once is allowed: acknowledge one at a time instead.
        let one = first.events[0].0.clone();
        let rest = bus
            .pull(&t, Some(&one), 3, AVAILABLE_WITHIN)
            .await
            .expect("pull");
        assert_eq!(
            ids(&rest).first(),
            Some(&sent[1]),
            "after=C MUST acknowledge C"
        );
        remove(bus, &t).await;
        return;
    };
    let rest = bus
        .pull(&t, Some(&second_cursor), 3, AVAILABLE_WITHIN)
        .await
        .expect("pull");
    assert_eq!(
        ids(&rest),
        [sent[2].clone()],
        "after=C MUST acknowledge every event up to and including C"
    );
    // The acknowledgement is the bus's, not the caller's: a pull without `after` (a
    // plugin that lost its cursor, another replica) does not see them either.
    let again = bus.pull(&t, None, 3, AVAILABLE_WITHIN).await.expect("pull");
    assert_eq!(
        ids(&again),
        [sent[2].clone()],
        "acknowledged events MUST NOT be returned again"
    );
    // Acknowledging the last leaves an empty queue; its cursor stays usable.
    let last = again.next_cursor.clone();
    let empty = bus
        .pull(&t, last.as_ref(), 3, Duration::from_millis(200))
        .await
        .expect("pull");
    assert!(empty.events.is_empty(), "everything was acknowledged");
    bus.enqueue(&t, bus_event("ack-late", "conf-src"))
        .await
        .expect("enqueue");
    let late = bus
        .pull(&t, empty.next_cursor.as_ref(), 3, AVAILABLE_WITHIN)
        .await
        .expect("pull");
    assert_eq!(
        ids(&late),
        ["ack-late".to_owned()],
        "the next_cursor of an empty pull MUST NOT acknowledge later events"
    );
    remove(bus, &t).await;
}

async fn unacked_events_are_redelivered(bus: &dyn EventBus) {
    let t = pid("conf-redeliver");
    let sent = names("re", 4);
    enqueue_all(bus, &t, &sent, "conf-src").await;
    let first = bus.pull(&t, None, 4, AVAILABLE_WITHIN).await.expect("pull");
    assert!(!first.events.is_empty(), "enqueued events MUST be returned");
    // The plugin "crashed" before acknowledging: the same pull again (no cursor, and
    // then the cursor it had before) MUST return the same events, in order.
    let again = bus.pull(&t, None, 4, AVAILABLE_WITHIN).await.expect("pull");
    assert_eq!(
        ids(&again)[..],
        sent[..again.events.len()],
        "unacknowledged events MUST be returned again"
    );
    assert_eq!(
        again.events.first().map(|(c, _)| c),
        first.events.first().map(|(c, _)| c),
        "an event keeps its cursor when it is returned again"
    );
    // Acknowledge the first only: the rest come again.
    let c0 = first.events[0].0.clone();
    let (rest, _, dropped) = drain(bus, &t, Some(c0.clone()), 3).await;
    let rest: Vec<String> = rest.into_iter().map(|e| e.event_id).collect();
    assert_eq!(rest, sent[1..], "events after the cursor MUST be returned");
    assert_eq!(dropped, 0, "nothing was dropped");
    // Pulling again with the same cursor (the answer was lost) returns them again.
    let (rest, _, _) = drain(bus, &t, Some(c0), 3).await;
    let rest: Vec<String> = rest.into_iter().map(|e| e.event_id).collect();
    assert_eq!(
        rest,
        sent[1..],
        "a pull with the same cursor MUST return the unacknowledged events again"
    );
    remove(bus, &t).await;
}

async fn overflow_is_counted(bus: &dyn EventBus) {
    let t = pid("conf-overflow");
    let extra = 3;
    let sent = names("ov", CONFORMANCE_QUEUE_BOUND + extra);
    enqueue_all(bus, &t, &sent, "conf-src").await;
    let first = bus
        .pull(&t, None, CONFORMANCE_QUEUE_BOUND * 2, AVAILABLE_WITHIN)
        .await
        .expect("pull");
    assert_eq!(
        first.dropped, extra as u64,
        "events pushed out by the bound MUST be counted in dropped"
    );
    assert_eq!(
        ids(&first).first(),
        Some(&sent[extra]),
        "the bound MUST drop the oldest events"
    );
    let (rest, cursor, dropped) = drain(
        bus,
        &t,
        first.next_cursor.clone(),
        CONFORMANCE_QUEUE_BOUND - first.events.len(),
    )
    .await;
    assert_eq!(dropped, 0, "drops MUST NOT be counted twice");
    let mut kept = ids(&first);
    kept.extend(rest.into_iter().map(|e| e.event_id));
    assert_eq!(
        kept,
        sent[extra..],
        "the newest `bound` events are kept, in order"
    );
    // The same again after a cursor: drops are counted relative to it.
    let more = names("ov2", CONFORMANCE_QUEUE_BOUND + 2);
    enqueue_all(bus, &t, &more, "conf-src").await;
    let (got, _, dropped) = drain(bus, &t, cursor, CONFORMANCE_QUEUE_BOUND).await;
    assert_eq!(
        dropped, 2,
        "drops after a cursor MUST be counted in the next pull with that cursor"
    );
    let got: Vec<String> = got.into_iter().map(|e| e.event_id).collect();
    assert_eq!(
        got,
        more[2..],
        "the newest `bound` events are kept, in order"
    );
    remove(bus, &t).await;

    // Events returned but not acknowledged, then pushed out while the plugin is away,
    // are counted from its cursor too.
    let t = pid("conf-overflow-away");
    enqueue_all(bus, &t, &names("away", 3), "conf-src").await;
    let seen = bus.pull(&t, None, 3, AVAILABLE_WITHIN).await.expect("pull");
    let c0 = seen.events[0].0.clone();
    let again = bus
        .pull(&t, Some(&c0), 3, AVAILABLE_WITHIN)
        .await
        .expect("pull");
    assert_eq!(ids(&again).first(), Some(&"away-001".to_owned()), "after=C");
    let later = names("away-later", CONFORMANCE_QUEUE_BOUND + 1);
    enqueue_all(bus, &t, &later, "conf-src").await;
    let (got, _, dropped) = drain(bus, &t, Some(c0), CONFORMANCE_QUEUE_BOUND).await;
    assert_eq!(
        dropped, 3,
        "returned but unacknowledged events pushed out by the bound MUST be counted"
    );
    let got: Vec<String> = got.into_iter().map(|e| e.event_id).collect();
    assert_eq!(
        got,
        later[1..],
        "the newest `bound` events are kept, in order"
    );
    remove(bus, &t).await;
}

async fn no_delivery_after_remove_queue(bus: &dyn EventBus) {
    let t = pid("conf-remove");
    enqueue_all(bus, &t, &names("rm", 3), "conf-src").await;
    let before = bus.pull(&t, None, 1, AVAILABLE_WITHIN).await.expect("pull");
    let old_cursor = before.next_cursor.clone();
    assert!(old_cursor.is_some(), "an event was returned");
    remove(bus, &t).await;
    let after = bus
        .pull(&t, None, 10, Duration::from_millis(300))
        .await
        .expect("pull after remove_queue MUST succeed");
    assert!(
        after.events.is_empty(),
        "no event enqueued before remove_queue MUST be returned after it"
    );
    let with_old = bus
        .pull(&t, old_cursor.as_ref(), 10, Duration::from_millis(300))
        .await
        .expect("an old cursor is not an error");
    assert!(
        with_old.events.is_empty(),
        "no event enqueued before remove_queue MUST be returned after it"
    );
    // A new queue: the old cursor acknowledges nothing in it.
    enqueue_all(bus, &t, &names("rm-new", 2), "conf-src").await;
    let (got, _, dropped) = drain(bus, &t, old_cursor, 2).await;
    let got: Vec<String> = got.into_iter().map(|e| e.event_id).collect();
    assert_eq!(
        got,
        names("rm-new", 2),
        "a cursor of a removed queue MUST NOT acknowledge events of a new one"
    );
    assert_eq!(dropped, 0, "a new queue has dropped nothing");
    remove(bus, &t).await;
    remove(bus, &t).await; // twice is Ok
}

async fn long_poll_wakes_on_enqueue(bus: &dyn EventBus) {
    let t = pid("conf-wake");
    // A queue that exists, and one that does not yet.
    for (i, existing) in [true, false].into_iter().enumerate() {
        let mut cursor = None;
        if existing {
            bus.enqueue(&t, bus_event("wake-first", "conf-src"))
                .await
                .expect("enqueue");
            cursor = bus
                .pull(&t, None, 1, AVAILABLE_WITHIN)
                .await
                .expect("pull")
                .next_cursor;
        }
        let idle = pid("conf-wake-idle");
        let id = format!("wake-{i}");
        let started = Instant::now();
        let (pulled, ()) = join(
            bus.pull(&t, cursor.as_ref(), 10, Duration::from_secs(20)),
            async {
                // Sleep through the bus itself: a pull of an idle target waits `wait`.
                let _ = bus.pull(&idle, None, 1, Duration::from_millis(300)).await;
                bus.enqueue(&t, bus_event(&id, "conf-src"))
                    .await
                    .expect("enqueue");
            },
        )
        .await;
        let pulled = pulled.expect("pull");
        assert_eq!(
            ids(&pulled),
            [id],
            "a waiting pull MUST return the event enqueued while it waits"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a waiting pull MUST return as soon as an event is available, not after `wait` \
             (took {:?})",
            started.elapsed()
        );
        remove(bus, &t).await;
    }
}

async fn long_poll_times_out(bus: &dyn EventBus) {
    let t = pid("conf-timeout");
    enqueue_all(bus, &t, &names("to", 1), "conf-src").await;
    let c = bus
        .pull(&t, None, 1, AVAILABLE_WITHIN)
        .await
        .expect("pull")
        .next_cursor;
    assert!(c.is_some(), "an event was returned");
    // No queue at all, and a queue whose events are all acknowledged.
    for (target, after) in [(pid("conf-timeout-none"), None), (t.clone(), c)] {
        let wait = Duration::from_millis(400);
        let started = Instant::now();
        let pulled = bus
            .pull(&target, after.as_ref(), 10, wait)
            .await
            .expect("pull");
        let took = started.elapsed();
        assert!(pulled.events.is_empty(), "nothing to return");
        assert!(
            took >= wait - Duration::from_millis(50),
            "a pull with nothing to return MUST wait `wait` (returned after {took:?})"
        );
        assert!(
            took < wait + Duration::from_secs(3),
            "a pull MUST return when `wait` has passed (returned after {took:?})"
        );
    }
    bus.enqueue(&t, bus_event("to-late", "conf-src"))
        .await
        .expect("enqueue");
    let started = Instant::now();
    let pulled = bus
        .pull(&t, None, 1, Duration::from_secs(2))
        .await
        .expect("pull");
    assert_eq!(
        ids(&pulled),
        ["to-late".to_owned()],
        "the new event is returned"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a pull with an event available MUST NOT wait `wait` (took {:?})",
        started.elapsed()
    );
    remove(bus, &t).await;
}

async fn foreign_cursors_are_refused(bus: &dyn EventBus) {
    let t = pid("conf-cursor");
    enqueue_all(bus, &t, &names("cur", 2), "conf-src").await;
    let long = "9".repeat(Cursor::MAX_LEN + 1);
    for raw in ["", "garbage", "-1", "1.2.3", "18446744073709551616", &long] {
        let result = bus
            .pull(&t, Some(&Cursor::new(raw)), 10, Duration::ZERO)
            .await;
        assert!(
            matches!(result, Err(BusError::InvalidCursor)),
            "a cursor this bus did not issue MUST be refused with InvalidCursor ({raw:?})"
        );
    }
    let (got, _, _) = drain(bus, &t, None, 2).await;
    assert_eq!(
        got.len(),
        2,
        "a refused cursor MUST NOT acknowledge anything"
    );
    remove(bus, &t).await;
}

async fn concurrent_pullers_and_publishers(bus: &Arc<dyn EventBus>) {
    const TARGETS: usize = 3;
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 25;
    let targets: Vec<PluginId> = (0..TARGETS)
        .map(|i| pid(&format!("conf-conc-{i}")))
        .collect();
    let publishers = (0..PUBLISHERS).map(|p| {
        let targets = targets.clone();
        async move {
            for n in 0..PER_PUBLISHER {
                for t in &targets {
                    bus.enqueue(t, bus_event(&format!("p{p}-{n:03}"), &format!("conf-p{p}")))
                        .await
                        .expect("concurrent enqueue MUST succeed");
                }
            }
        }
    });
    let total = (PUBLISHERS * PER_PUBLISHER) as u64;
    // Each puller starts from a cursor, as a plugin does once it has pulled once: drops
    // are then counted from it exactly.
    let mut starts = Vec::new();
    for t in &targets {
        bus.enqueue(t, bus_event("start", "conf-start"))
            .await
            .expect("enqueue");
        let pulled = bus.pull(t, None, 1, AVAILABLE_WITHIN).await.expect("pull");
        assert_eq!(
            ids(&pulled),
            ["start".to_owned()],
            "the start event is returned"
        );
        starts.push(pulled.next_cursor);
    }
    let pullers = targets.iter().zip(starts).map(|(t, start)| async move {
        let mut after: Option<Cursor> = start;
        let mut seen: Vec<BusEvent> = Vec::new();
        let mut distinct = BTreeSet::new();
        let mut dropped = 0u64;
        while (distinct.len() as u64) + dropped < total {
            let pulled = bus
                .pull(t, after.as_ref(), 7, AVAILABLE_WITHIN)
                .await
                .expect("concurrent pull MUST succeed");
            dropped += pulled.dropped;
            if pulled.events.is_empty() && pulled.dropped == 0 {
                break;
            }
            after = pulled.next_cursor.clone();
            for (_, e) in pulled.events {
                distinct.insert(e.event_id.clone());
                seen.push(e);
            }
        }
        (seen, distinct.len() as u64, dropped)
    });
    // A second, cursor-less puller on one target at the same time: it may see anything
    // not yet acknowledged, but MUST NOT fail.
    let extra = async {
        for _ in 0..5 {
            bus.pull(&targets[0], None, 5, Duration::from_millis(50))
                .await
                .expect("concurrent pulls of one target MUST succeed");
        }
    };
    let (_, results, ()) = join3(join_all(publishers), join_all(pullers), extra).await;
    for (t, (seen, distinct, dropped)) in targets.iter().zip(results) {
        assert_eq!(
            distinct + dropped,
            total,
            "{t}: every enqueued event MUST be returned or counted in dropped"
        );
        // Per publisher, the order of first sight is the order of enqueueing.
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        let mut firsts = BTreeSet::new();
        for e in &seen {
            if !firsts.insert(e.event_id.as_str()) {
                continue;
            }
            if let Some(prev) = last.insert(e.source.as_str(), e.event_id.as_str()) {
                assert!(
                    prev < e.event_id.as_str(),
                    "{t}: events of one publisher MUST be returned in order ({prev} before {})",
                    e.event_id
                );
            }
        }
    }
    for t in &targets {
        remove(&**bus, t).await;
    }
    remove(&**bus, &pid("conf-wake-idle")).await;
    remove(&**bus, &pid("conf-timeout-none")).await;
}
