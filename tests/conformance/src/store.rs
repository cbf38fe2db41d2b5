//! Shared test support: the conformance suites every adapter runs,
//! and record builders. The suites are the executable form of the MUST sentences in
//! the port docs.

use std::sync::Arc;

use futures_util::future::join_all;
use time::{Duration, OffsetDateTime};

use vivified_ports::plugin::{Health, Liveness, PluginId, StoredManifest};
use vivified_ports::store::{LivenessCounts, OutboxEntry, PluginStore, StoreError};
use vivified_ports::{BufferedBeat, InstanceId, InstanceRecord, PluginRecord, Swept};

/// A fixed instant for test records (2026-01-01T00:00:00Z), truncated to whole
/// microseconds so every backend stores it exactly.
pub fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("valid timestamp")
}

/// A minimal record for `id` with one instance, `default`, holding token `jti`, as the
/// registry would insert it.
pub fn record(id: &str, jti: &str) -> PluginRecord {
    let mut instance =
        InstanceRecord::new(InstanceId::default_instance(), jti.to_owned(), t0(), None);
    instance.token_issued_at = Some(t0());
    PluginRecord {
        plugin_id: PluginId::parse(id).expect("test ids are valid"),
        manifest: StoredManifest::from_value(
            &serde_json::json!({ "id": id, "name": format!("Plugin {id}"), "version": "1.0.0" }),
        ),
        status: Liveness::Registered,
        health: Health::Unknown,
        enabled: true,
        disabled_reason: None,
        registered_at: t0(),
        last_heartbeat: None,
        instances: vec![instance],
        approved_traits: Some(Vec::new()),
        next_deadline: None,
        version: 0,
    }
}

/// The token id of a record's first instance.
pub fn jti(record: &PluginRecord) -> &str {
    &record.instances[0].token_jti
}

/// `record` with its first instance's token id set to `jti`.
pub fn with_jti(mut record: PluginRecord, jti: &str) -> PluginRecord {
    record.instances[0].token_jti = jti.to_owned();
    record
}

/// An instance `id` of a test record, holding token `jti`, in `status`, due at
/// `deadline`.
pub fn instance(
    id: &str,
    jti: &str,
    status: Liveness,
    deadline: Option<OffsetDateTime>,
) -> InstanceRecord {
    let mut i = InstanceRecord::new(
        InstanceId::parse(id).expect("test instance ids are valid"),
        jti.to_owned(),
        t0(),
        deadline,
    );
    i.status = status;
    i
}

/// A plugin as the store kept it before instances (migrations 1 to 8), in SQL both
/// backends run: id `old`, token `jti-old` issued at 1.5 s, registered at 1 s, active
/// and degraded, last heartbeat at 2 s, due at 3 s, version 7.
pub const PLUGIN_BEFORE_INSTANCES: &str = "INSERT INTO plugins (plugin_id, manifest, status, \
    health, enabled, disabled_reason, registered_at, last_heartbeat, token_jti, next_deadline, \
    version, token_issued_at, approved_traits) VALUES ('old', '{\"id\":\"old\"}', 'active', \
    'degraded', true, NULL, 1000000, 2000000, 'jti-old', 3000000, 7, 1500000, '[]')";

/// Checks what migration 9 made of [`PLUGIN_BEFORE_INSTANCES`]: one instance `default`
/// holding all of it.
pub fn assert_migrated_to_default_instance(got: &PluginRecord) {
    let s = |us: i64| OffsetDateTime::UNIX_EPOCH + Duration::microseconds(us);
    assert_eq!(got.instances.len(), 1, "{got:?}");
    let i = &got.instances[0];
    assert_eq!(i.instance_id, InstanceId::default_instance());
    assert_eq!(i.token_jti, "jti-old");
    assert_eq!(i.token_issued_at, Some(s(1_500_000)));
    assert_eq!(i.registered_at, s(1_000_000));
    assert_eq!((i.status, i.health), (Liveness::Active, Health::Degraded));
    assert_eq!(i.last_heartbeat, Some(s(2_000_000)));
    assert_eq!(i.next_deadline, Some(s(3_000_000)));
    assert_eq!(
        (got.status, got.health, got.next_deadline, got.version),
        (Liveness::Active, Health::Degraded, Some(s(3_000_000)), 7)
    );
}

fn pid(id: &str) -> PluginId {
    PluginId::parse(id).expect("test ids are valid")
}

/// Runs every check of the [`PluginStore`] contract against `store`, which MUST be
/// empty when the suite starts. Panics (failing the calling test) with the contract
/// sentence that was broken.
pub async fn plugin_store_conformance(store: Arc<dyn PluginStore>) {
    // Liveness first: it counts records, so it needs the store to itself.
    deadlines_round_trip_and_order(&*store).await;
    stale_plugins_recover_on_heartbeat(&*store).await;
    sweeps_apply_each_expiry_once(&store).await;
    outbox_holds_each_transition_until_acked(&store).await;
    insert_then_get_round_trips(&*store).await;
    insert_duplicate_conflicts(&*store).await;
    get_missing_is_none(&*store).await;
    list_is_sorted_and_paged(&*store).await;
    replace_is_conditional_on_version(&*store).await;
    replace_never_resurrects(&*store).await;
    heartbeat_is_conditional(&*store).await;
    instances_heartbeat_and_sweep_apart(&*store).await;
    buffered_beats_apply_only_where_they_may(&*store).await;
    buffered_beats_race_without_loss(&store).await;
    delete_is_conditional(&*store).await;
    concurrent_inserts_one_winner(&store).await;
    concurrent_replaces_no_lost_update(&store).await;
    concurrent_heartbeats_all_counted(&store).await;
    revocation_by_time(&*store).await;
    enrollments_are_used_once(&store).await;
    enrollments_are_listed_cancelled_and_purged(&store).await;
    store
        .ping()
        .await
        .expect("ping MUST succeed on a healthy store");
}

async fn insert_then_get_round_trips(store: &dyn PluginStore) {
    let mut rec = record("conf-a", "jti-a");
    rec.manifest = rec
        .manifest
        .edited(|m| m["extra"] = serde_json::json!({"kept": [1, 2, 3]}));
    rec.disabled_reason = Some("why not".into());
    rec.approved_traits = Some(vec!["handles_phi".into()]);
    // No deadline: the sweeps of later checks leave it alone.
    let mut second = instance("pod-7f.x_1", "jti-a2", Liveness::Stale, None);
    second.health = Health::Unhealthy;
    second.last_heartbeat = Some(t0() + Duration::microseconds(1_500_001));
    second.token_issued_at = None;
    rec.instances.push(second);
    rec.settle();
    let stored = store
        .insert(rec.clone())
        .await
        .expect("insert MUST succeed");
    assert_eq!(stored.version, 1, "insert MUST set version to 1");
    let got = store
        .get(&pid("conf-a"))
        .await
        .unwrap()
        .expect("inserted record MUST be found");
    assert_eq!(
        got,
        PluginRecord { version: 1, ..rec },
        "get MUST return what was inserted"
    );
    // No approval kept (a record from before approval existed) round-trips as `None`.
    let old = PluginRecord {
        approved_traits: None,
        ..record("conf-old", "jti-old")
    };
    let stored = store.insert(old).await.expect("insert MUST succeed");
    assert_eq!(stored.approved_traits, None);
    let replaced = store
        .replace(
            PluginRecord {
                approved_traits: Some(vec!["external_service".into()]),
                ..stored.clone()
            },
            stored.version,
        )
        .await
        .expect("replace MUST succeed");
    assert_eq!(
        replaced.approved_traits.as_deref(),
        Some(&["external_service".to_owned()][..]),
        "replace MUST store the approved traits"
    );
    store.delete(&pid("conf-old"), None).await.unwrap();
}

async fn insert_duplicate_conflicts(store: &dyn PluginStore) {
    let err = store
        .insert(record("conf-a", "jti-other"))
        .await
        .expect_err("a duplicate insert MUST fail");
    assert!(
        err.is_conflict(),
        "a duplicate insert MUST be Conflict, got {err:?}"
    );
    let got = store.get(&pid("conf-a")).await.unwrap().unwrap();
    assert_eq!(
        jti(&got),
        "jti-a",
        "a failed insert MUST NOT change the record"
    );
}

async fn get_missing_is_none(store: &dyn PluginStore) {
    assert!(store.get(&pid("conf-missing")).await.unwrap().is_none());
}

async fn list_is_sorted_and_paged(store: &dyn PluginStore) {
    for id in ["list-c", "list-a", "list-b", "list-a-1"] {
        store.insert(record(id, "j")).await.unwrap();
    }
    let all: Vec<String> = store
        .list(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.plugin_id.to_string())
        .collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "list MUST be sorted by id");
    let page = store.list(Some(pid("list-a")), 2).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|r| r.plugin_id.as_str()).collect();
    assert_eq!(
        ids,
        ["list-a-1", "list-b"],
        "list MUST start strictly after `after` and honour `limit`"
    );
    assert!(store.list(Some(pid("zzzz")), 10).await.unwrap().is_empty());
    assert!(
        store.list(None, 0).await.unwrap().is_empty(),
        "limit 0 MUST return nothing"
    );
}

async fn replace_is_conditional_on_version(store: &dyn PluginStore) {
    let stored = store.insert(record("conf-r", "j1")).await.unwrap();
    let mut next = with_jti(stored.clone(), "j2");
    next.manifest = next.manifest.edited(|m| m["version"] = "2.0.0".into());
    let replaced = store
        .replace(next.clone(), stored.version)
        .await
        .expect("replace at the current version MUST succeed");
    assert_eq!(replaced.version, 2, "replace MUST bump the version");
    assert_eq!(jti(&replaced), "j2");
    let stale = with_jti(stored.clone(), "j3");
    let err = store
        .replace(stale, stored.version)
        .await
        .expect_err("replace at an old version MUST fail");
    assert!(matches!(err, StoreError::PreconditionFailed), "got {err:?}");
    let got = store.get(&pid("conf-r")).await.unwrap().unwrap();
    assert_eq!(jti(&got), "j2", "a failed replace MUST NOT write");
    assert_eq!(got.manifest["version"], "2.0.0");
}

async fn replace_never_resurrects(store: &dyn PluginStore) {
    let stored = store.insert(record("conf-dead", "j")).await.unwrap();
    store.delete(&pid("conf-dead"), None).await.unwrap();
    let err = store
        .replace(stored.clone(), stored.version)
        .await
        .expect_err("replace of a deleted record MUST fail");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
    let err = store
        .record_heartbeat(&pid("conf-dead"), "j", Health::Healthy, t0(), t0())
        .await
        .expect_err("heartbeat of a deleted record MUST fail");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
    assert!(
        store.get(&pid("conf-dead")).await.unwrap().is_none(),
        "a deleted record MUST stay deleted"
    );
}

async fn heartbeat_is_conditional(store: &dyn PluginStore) {
    let stored = store.insert(record("conf-hb", "good")).await.unwrap();
    let at = t0() + Duration::seconds(30);
    let deadline = at + Duration::seconds(90);
    let hb = store
        .record_heartbeat(&pid("conf-hb"), "good", Health::Degraded, at, deadline)
        .await
        .expect("heartbeat with the current jti MUST succeed");
    assert!(
        !hb.recovered,
        "a registered plugin's heartbeat is no recovery"
    );
    let hb = hb.record;
    assert_eq!(
        hb.next_deadline,
        Some(deadline),
        "heartbeat MUST set the deadline"
    );
    assert_eq!(hb.status, Liveness::Active);
    assert_eq!(hb.health, Health::Degraded);
    assert_eq!(hb.last_heartbeat, Some(at));
    assert_eq!(
        hb.version,
        stored.version + 1,
        "heartbeat MUST bump the version"
    );
    let err = store
        .record_heartbeat(
            &pid("conf-hb"),
            "revoked",
            Health::Healthy,
            at + Duration::seconds(1),
            deadline,
        )
        .await
        .expect_err("heartbeat with another jti MUST fail");
    assert!(matches!(err, StoreError::PreconditionFailed), "got {err:?}");
    let mut disabled = hb.clone();
    disabled.enabled = false;
    disabled.disabled_reason = Some("maintenance".into());
    let disabled = store.replace(disabled, hb.version).await.unwrap();
    let err = store
        .record_heartbeat(
            &pid("conf-hb"),
            "good",
            Health::Healthy,
            at + Duration::seconds(2),
            deadline,
        )
        .await
        .expect_err("heartbeat of a disabled plugin MUST fail");
    assert!(matches!(err, StoreError::PreconditionFailed), "got {err:?}");
    let got = store.get(&pid("conf-hb")).await.unwrap().unwrap();
    assert_eq!(got, disabled, "a refused heartbeat MUST NOT write");
    let err = store
        .record_heartbeat(&pid("conf-nobody"), "good", Health::Healthy, at, deadline)
        .await
        .expect_err("heartbeat of an unknown id MUST fail");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
}

/// A beat answered before it was written, for [`PluginStore::record_heartbeats`].
pub fn beat(
    id: &str,
    jti: &str,
    at: OffsetDateTime,
    next_deadline: OffsetDateTime,
) -> BufferedBeat {
    BufferedBeat {
        plugin_id: pid(id),
        token_jti: jti.to_owned(),
        health: Health::Healthy,
        at,
        next_deadline,
    }
}

async fn buffered_beats_apply_only_where_they_may(store: &dyn PluginStore) {
    let s = |n: i64| t0() + Duration::seconds(n);
    let mut rec = record("conf-bb", "ja");
    rec.instances
        .push(instance("b", "jb", Liveness::Stale, Some(s(500))));
    store.insert(rec).await.unwrap();
    let active = store
        .record_heartbeat(&pid("conf-bb"), "ja", Health::Healthy, s(1), s(31))
        .await
        .unwrap()
        .record;
    let mut many = Vec::new();
    for n in 0..40 {
        let id = format!("conf-bbm-{n}");
        store.insert(record(&id, "j")).await.unwrap();
        store
            .record_heartbeat(&pid(&id), "j", Health::Healthy, s(1), s(31))
            .await
            .unwrap();
        many.push(beat(&id, "j", s(2), s(32)));
    }
    let mut batch = vec![
        beat("conf-bb", "ja", s(5), s(35)),
        // Older than the one before it, in the same batch: changes nothing.
        beat("conf-bb", "ja", s(3), s(33)),
        // A stale instance is not made active by a late write.
        beat("conf-bb", "jb", s(5), s(35)),
        beat("conf-bb", "revoked", s(6), s(36)),
        beat("conf-nobody", "ja", s(5), s(35)),
    ];
    batch.extend(many);
    let written = store
        .record_heartbeats(&batch)
        .await
        .expect("record_heartbeats MUST succeed on a healthy store");
    assert_eq!(written, 41, "one write per record changed");
    let got = store.get(&pid("conf-bb")).await.unwrap().unwrap();
    assert_eq!(
        got.version,
        active.version + 1,
        "MUST bump the version once"
    );
    let a = got.instance(&InstanceId::default_instance()).unwrap();
    assert_eq!(
        (a.status, a.last_heartbeat, a.next_deadline),
        (Liveness::Active, Some(s(5)), Some(s(35))),
        "the newest beat of an active instance MUST be written"
    );
    let b = got.instance(&InstanceId::parse("b").unwrap()).unwrap();
    assert_eq!(
        (b.status, b.last_heartbeat),
        (Liveness::Stale, None),
        "a buffered beat MUST NOT make an instance active"
    );
    assert_eq!(got.next_deadline, Some(s(35)));
    for n in 0..40 {
        let r = store
            .get(&pid(&format!("conf-bbm-{n}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            r.next_deadline,
            Some(s(32)),
            "every record of a batch MUST be written"
        );
    }
    // A later beat with an earlier deadline moves the beat, never the deadline back.
    store
        .record_heartbeats(&[beat("conf-bb", "ja", s(7), s(20))])
        .await
        .unwrap();
    let got = store.get(&pid("conf-bb")).await.unwrap().unwrap();
    let a = got.instance(&InstanceId::default_instance()).unwrap();
    assert_eq!(
        (a.last_heartbeat, a.next_deadline),
        (Some(s(7)), Some(s(35)))
    );
    // Written twice: nothing changes.
    assert_eq!(
        store
            .record_heartbeats(&[beat("conf-bb", "ja", s(7), s(37))])
            .await
            .unwrap(),
        0
    );
    let mut disabled = got.clone();
    disabled.enabled = false;
    let disabled = store.replace(disabled, got.version).await.unwrap();
    assert_eq!(
        store
            .record_heartbeats(&[beat("conf-bb", "ja", s(9), s(39))])
            .await
            .unwrap(),
        0,
        "a disabled plugin's beats MUST be dropped"
    );
    assert_eq!(store.get(&pid("conf-bb")).await.unwrap().unwrap(), disabled);
    store.delete(&pid("conf-bb"), None).await.unwrap();
    for n in 0..40 {
        store
            .delete(&pid(&format!("conf-bbm-{n}")), None)
            .await
            .unwrap();
    }
}

async fn buffered_beats_race_without_loss(store: &Arc<dyn PluginStore>) {
    let s = |n: i64| t0() + Duration::seconds(n);
    store.insert(record("conf-bbr", "j")).await.unwrap();
    store
        .record_heartbeat(&pid("conf-bbr"), "j", Health::Healthy, s(1), s(31))
        .await
        .unwrap();
    // Batches racing each other and an unrelated conditional write of the record.
    let writes = (2..12).map(|n| {
        let store = Arc::clone(store);
        async move {
            store
                .record_heartbeats(&[beat("conf-bbr", "j", s(n), s(n + 30))])
                .await
                .expect("racing batches MUST all be written")
        }
    });
    let rename = async {
        loop {
            let r = store.get(&pid("conf-bbr")).await.unwrap().unwrap();
            let mut changed = r.clone();
            changed.disabled_reason = Some("note".into());
            if store.replace(changed, r.version).await.is_ok() {
                break;
            }
        }
    };
    let (_, ()) = futures_util::future::join(join_all(writes), rename).await;
    let got = store.get(&pid("conf-bbr")).await.unwrap().unwrap();
    assert_eq!(
        (
            got.last_heartbeat,
            got.next_deadline,
            got.disabled_reason.as_deref()
        ),
        (Some(s(11)), Some(s(41)), Some("note")),
        "no racing write may be lost"
    );
    store.delete(&pid("conf-bbr"), None).await.unwrap();
}

async fn delete_is_conditional(store: &dyn PluginStore) {
    let stored = store.insert(record("conf-del", "mine")).await.unwrap();
    let err = store
        .delete(&pid("conf-del"), Some(stored.version + 1))
        .await
        .expect_err("delete at another version MUST fail");
    assert!(matches!(err, StoreError::PreconditionFailed), "got {err:?}");
    assert!(store.get(&pid("conf-del")).await.unwrap().is_some());
    store
        .delete(&pid("conf-del"), Some(stored.version))
        .await
        .expect("delete at the current version MUST succeed");
    assert!(store.get(&pid("conf-del")).await.unwrap().is_none());
    let err = store
        .delete(&pid("conf-del"), None)
        .await
        .expect_err("deleting twice MUST fail");
    assert!(matches!(err, StoreError::NotFound), "got {err:?}");
    store
        .insert(record("conf-del", "again"))
        .await
        .expect("a deleted id MUST be free again");
}

/// Two instances of one plugin: each heartbeats with its own token, goes stale and is
/// removed on its own deadline; the plugin is stale with its last live instance and
/// deregistered with its last instance.
async fn instances_heartbeat_and_sweep_apart(store: &dyn PluginStore) {
    let s = |n: i64| t0() + Duration::seconds(n);
    let mut rec = record("conf-two", "ja");
    rec.instances[0].next_deadline = Some(s(10));
    rec.instances
        .push(instance("b", "jb", Liveness::Registered, Some(s(50))));
    let stored = store.insert(rec).await.unwrap();
    assert_eq!(stored.next_deadline, Some(s(10)), "the earliest deadline");
    let hb = store
        .record_heartbeat(&pid("conf-two"), "jb", Health::Healthy, s(5), s(60))
        .await
        .expect("each instance MUST heartbeat with its own token");
    let b = hb
        .record
        .instance(&InstanceId::parse("b").unwrap())
        .unwrap();
    assert_eq!((b.status, b.last_heartbeat), (Liveness::Active, Some(s(5))));
    let default = hb.record.instance(&InstanceId::default_instance()).unwrap();
    assert_eq!(default.status, Liveness::Registered);
    assert_eq!(
        hb.record.status,
        Liveness::Active,
        "active while any instance is"
    );
    let ttl = Some(std::time::Duration::from_secs(100));
    let swept = store.sweep(s(20), ttl, 10).await.unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].stale, [InstanceId::default_instance()]);
    assert_eq!(
        swept[0].event, None,
        "one instance of two stale: the plugin lives"
    );
    assert_eq!(swept[0].record.status, Liveness::Active);
    assert_eq!(swept[0].record.next_deadline, Some(s(60)));
    assert_eq!(
        store.get(&pid("conf-two")).await.unwrap().unwrap(),
        swept[0].record,
        "sweep MUST return the record as stored"
    );
    let swept = store.sweep(s(60), ttl, 10).await.unwrap();
    assert_eq!(
        swept[0].event,
        Some("plugin.stale"),
        "its last live instance went"
    );
    let swept = store.sweep(s(110), ttl, 10).await.unwrap();
    assert_eq!(swept[0].removed, [InstanceId::default_instance()]);
    assert_eq!(swept[0].event, None);
    assert_eq!(swept[0].record.instances.len(), 1);
    let swept = store.sweep(s(160), ttl, 10).await.unwrap();
    assert_eq!(swept[0].event, Some("plugin.deregistered"));
    assert_eq!(swept[0].record.instances.len(), 1, "as it was");
    assert!(store.get(&pid("conf-two")).await.unwrap().is_none());
    drain_outbox(store).await;
}

async fn concurrent_inserts_one_winner(store: &Arc<dyn PluginStore>) {
    let results = join_all((0..16).map(|i| {
        let store = Arc::clone(store);
        async move { store.insert(record("conf-race", &format!("jti-{i}"))).await }
    }))
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        wins, 1,
        "of concurrent inserts of one id exactly one MUST succeed"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(r.is_conflict(), "the losers MUST get Conflict, got {r:?}");
    }
}

async fn concurrent_replaces_no_lost_update(store: &Arc<dyn PluginStore>) {
    store.insert(record("conf-cas", "j")).await.unwrap();
    let writers = 8;
    let per_writer = 5;
    join_all((0..writers).map(|w| {
        let store = Arc::clone(store);
        async move {
            let mut done = 0;
            while done < per_writer {
                let cur = store.get(&pid("conf-cas")).await.unwrap().unwrap();
                let mut next = cur.clone();
                let count = next.manifest["count"].as_u64().unwrap_or(0);
                next.manifest = next.manifest.edited(|m| {
                    m["count"] = (count + 1).into();
                    m[format!("w{w}")] = done.into();
                });
                match store.replace(next, cur.version).await {
                    Ok(_) => done += 1,
                    Err(StoreError::PreconditionFailed) => {}
                    Err(e) => panic!("replace failed: {e:?}"),
                }
            }
        }
    }))
    .await;
    let got = store.get(&pid("conf-cas")).await.unwrap().unwrap();
    assert_eq!(
        got.manifest["count"],
        writers * per_writer,
        "conditional replaces MUST NOT lose updates"
    );
    assert_eq!(got.version, 1 + (writers * per_writer) as u64);
}

async fn concurrent_heartbeats_all_counted(store: &Arc<dyn PluginStore>) {
    let mut rec = record("conf-hbs", "j0");
    rec.instances
        .push(instance("b", "j1", Liveness::Registered, None));
    store.insert(rec).await.unwrap();
    let n = 20u64;
    let results = join_all((0..n).map(|i| {
        let store = Arc::clone(store);
        async move {
            store
                .record_heartbeat(
                    &pid("conf-hbs"),
                    &format!("j{}", i % 2),
                    Health::Healthy,
                    t0() + Duration::seconds(i as i64),
                    t0() + Duration::seconds(60),
                )
                .await
        }
    }))
    .await;
    assert!(
        results.iter().all(Result::is_ok),
        "concurrent heartbeats MUST all apply"
    );
    let got = store.get(&pid("conf-hbs")).await.unwrap().unwrap();
    assert_eq!(
        got.version,
        1 + n,
        "every heartbeat MUST bump the version exactly once"
    );
    assert!(
        got.instances.iter().all(|i| i.status == Liveness::Active),
        "concurrent heartbeats of two instances MUST each apply"
    );
}

fn due_at(id: &str, status: Liveness, deadline: Option<OffsetDateTime>) -> PluginRecord {
    let mut r = record(id, &format!("jti-{id}"));
    r.instances[0].status = status;
    r.instances[0].next_deadline = deadline;
    r.settle();
    r
}

/// The ids of the swept records, in order.
fn swept_ids(swept: &[Swept]) -> Vec<&str> {
    swept.iter().map(|s| s.record.plugin_id.as_str()).collect()
}

async fn revocation_by_time(store: &dyn PluginStore) {
    clear(store).await;
    let at = |s: i64| t0() + Duration::seconds(s);
    let issued = |id: &str, when: Option<OffsetDateTime>| {
        let mut r = record(id, &format!("jti-{id}"));
        r.instances[0].token_issued_at = when;
        r
    };
    for r in [
        issued("rev-old", Some(at(0))),
        issued("rev-new", Some(at(10))),
        issued("rev-unknown", None),
    ] {
        store.insert(r).await.unwrap();
    }
    let revoked = store.revoke_tokens_issued_before(at(9)).await.unwrap();
    assert_eq!(
        revoked, 2,
        "revocation MUST take tokens issued at or before the instant or at an unknown time, and only those"
    );
    for (id, gone) in [("rev-old", true), ("rev-new", false), ("rev-unknown", true)] {
        let r = store.get(&pid(id)).await.unwrap().unwrap();
        assert_eq!(r.token_revoked(), gone, "{id}: revoked {gone}");
        assert_eq!(
            r.version,
            if gone { 2 } else { 1 },
            "a revocation MUST bump the version"
        );
        assert_eq!(jti(&r) == format!("jti-{id}"), !gone);
    }
    let again = store.revoke_tokens_issued_before(at(9)).await.unwrap();
    assert_eq!(again, 0, "revoked tokens MUST be left alone");
    let err = store
        .record_heartbeat(
            &pid("rev-old"),
            "jti-rev-old",
            Health::Healthy,
            at(20),
            at(50),
        )
        .await
        .expect_err("a revoked token MUST NOT heartbeat");
    assert!(matches!(err, StoreError::PreconditionFailed), "{err:?}");
    // A new token replaces the revoked id, and its issue time round-trips.
    let old = store.get(&pid("rev-old")).await.unwrap().unwrap();
    let mut next = with_jti(old.clone(), "jti-rev-old-2");
    next.instances[0].token_issued_at = Some(at(30));
    let stored = store.replace(next, old.version).await.unwrap();
    assert_eq!(stored.instances[0].token_issued_at, Some(at(30)));
    assert_eq!(
        store.revoke_tokens_issued_before(at(10)).await.unwrap(),
        1,
        "a token issued at the instant itself MUST be revoked"
    );
    assert!(
        store
            .get(&pid("rev-new"))
            .await
            .unwrap()
            .unwrap()
            .token_revoked()
    );
    assert!(
        !store
            .get(&pid("rev-old"))
            .await
            .unwrap()
            .unwrap()
            .token_revoked()
    );
    clear(store).await;
}

async fn enrollments_are_used_once(store: &Arc<dyn PluginStore>) {
    use vivified_ports::Enrollment;
    let at = |s: i64| t0() + Duration::seconds(s);
    let enrollment = |n: u32, expires: i64| Enrollment {
        id: format!("enr-{n}"),
        plugin_id: pid("enrolled"),
        token_hash: format!("{n:064x}"),
        created_at: at(0),
        expires_at: at(expires),
        created_by: "admin".into(),
        used_at: None,
    };
    let e = enrollment(1, 60);
    store.create_enrollment(&e).await.unwrap();
    assert_eq!(
        store.enrollment(&e.token_hash).await.unwrap(),
        Some(e.clone()),
        "an enrollment MUST read back as created"
    );
    assert!(
        store
            .enrollment(&format!("{:064x}", 99))
            .await
            .unwrap()
            .is_none()
    );
    for dup in [
        Enrollment {
            token_hash: format!("{:064x}", 7),
            ..e.clone()
        },
        Enrollment {
            id: "enr-other".into(),
            ..e.clone()
        },
    ] {
        assert!(
            store
                .create_enrollment(&dup)
                .await
                .unwrap_err()
                .is_conflict(),
            "a second enrollment with the same id or hash MUST conflict"
        );
    }
    // Of ten concurrent uses exactly one succeeds.
    let uses = join_all((0..10).map(|_| {
        let store = Arc::clone(store);
        let hash = e.token_hash.clone();
        async move { store.use_enrollment(&hash, at(10)).await }
    }))
    .await;
    let won: Vec<_> = uses.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "exactly one use MUST succeed: {uses:?}");
    assert_eq!(won[0].used_at, Some(at(10)));
    assert!(
        uses.iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::PreconditionFailed)),
        "a used enrollment MUST be PreconditionFailed: {uses:?}"
    );
    // Released (by the instant it was used at), it can be used again.
    store
        .release_enrollment(&e.token_hash, at(11))
        .await
        .unwrap();
    assert!(
        store.use_enrollment(&e.token_hash, at(12)).await.is_err(),
        "a release at another instant MUST change nothing"
    );
    store
        .release_enrollment(&e.token_hash, at(10))
        .await
        .unwrap();
    let again = store.use_enrollment(&e.token_hash, at(12)).await.unwrap();
    assert_eq!(again.used_at, Some(at(12)));
    // Expiry: unusable at and after `expires_at`.
    let short = enrollment(2, 20);
    store.create_enrollment(&short).await.unwrap();
    assert!(matches!(
        store.use_enrollment(&short.token_hash, at(20)).await,
        Err(StoreError::PreconditionFailed)
    ));
    assert!(
        store
            .use_enrollment(&short.token_hash, at(19))
            .await
            .is_ok()
    );
    assert!(matches!(
        store.use_enrollment(&format!("{:064x}", 99), at(1)).await,
        Err(StoreError::NotFound)
    ));
}

async fn enrollments_are_listed_cancelled_and_purged(store: &Arc<dyn PluginStore>) {
    use vivified_ports::Enrollment;
    let at = |s: i64| t0() + Duration::seconds(s);
    let enrollment = |n: u32, plugin: &str, created: i64, expires: i64| Enrollment {
        id: format!("lst-{n}"),
        plugin_id: pid(plugin),
        token_hash: format!("{:064x}", 1000 + n),
        created_at: at(created),
        expires_at: at(expires),
        created_by: "admin".into(),
        used_at: None,
    };
    let made = [
        enrollment(1, "listed-a", 5, 100),
        enrollment(2, "listed-a", 7, 100),
        enrollment(3, "listed-b", 6, 50),
        enrollment(4, "listed-a", 7, 30),
    ];
    for e in &made {
        store.create_enrollment(e).await.unwrap();
    }
    let ids = |v: Vec<Enrollment>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .list_enrollments(Some(pid("listed-a")), 10)
            .await
            .unwrap()),
        ["lst-2", "lst-4", "lst-1"],
        "a plugin's enrollments MUST be listed newest first, then by id"
    );
    assert_eq!(
        ids(store
            .list_enrollments(Some(pid("listed-a")), 2)
            .await
            .unwrap()),
        ["lst-2", "lst-4"],
        "the listing MUST stop at its limit"
    );
    let all = store.list_enrollments(None, 10_000).await.unwrap();
    assert!(
        made.iter().all(|m| all.contains(m)),
        "every enrollment MUST be listed"
    );
    assert!(
        all.windows(2).all(|w| w[0].created_at >= w[1].created_at),
        "newest first"
    );
    // Cancelled: gone, once; a used one is kept.
    let used = store
        .use_enrollment(&made[1].token_hash, at(8))
        .await
        .unwrap();
    let cancels = join_all((0..5).map(|_| {
        let store = Arc::clone(store);
        async move { store.cancel_enrollment("lst-1").await }
    }))
    .await;
    let won: Vec<_> = cancels.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "exactly one cancel MUST succeed: {cancels:?}");
    assert_eq!(
        *won[0], made[0],
        "a cancel MUST return the enrollment as it was"
    );
    assert!(
        store
            .enrollment(&made[0].token_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.cancel_enrollment("lst-1").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.cancel_enrollment("lst-2").await,
        Err(StoreError::PreconditionFailed)
    ));
    assert_eq!(
        store.enrollment(&made[1].token_hash).await.unwrap(),
        Some(used)
    );
    // Purged: what was used, or expired, before the instant; nothing usable.
    assert_eq!(store.purge_enrollments(at(8)).await.unwrap(), 0);
    let purged = store.purge_enrollments(at(31)).await.unwrap();
    assert!(purged >= 2, "lst-2 was used at 8 s, lst-4 expired at 30 s");
    assert_eq!(
        ids(store
            .list_enrollments(Some(pid("listed-a")), 10)
            .await
            .unwrap()),
        Vec::<String>::new(),
        "what was used or expired before the instant MUST be purged"
    );
    assert!(
        store
            .enrollment(&made[2].token_hash)
            .await
            .unwrap()
            .is_some(),
        "an unused enrollment that has not expired MUST be kept"
    );
    store.purge_enrollments(at(51)).await.unwrap();
    assert!(
        store
            .enrollment(&made[2].token_hash)
            .await
            .unwrap()
            .is_none()
    );
}

async fn clear(store: &dyn PluginStore) {
    for r in store.list(None, 10_000).await.unwrap() {
        store.delete(&r.plugin_id, None).await.unwrap();
    }
}

async fn deadlines_round_trip_and_order(store: &dyn PluginStore) {
    assert_eq!(
        store.earliest_deadline().await.unwrap(),
        None,
        "an empty store MUST have no deadline"
    );
    let s = |n: i64| t0() + Duration::seconds(n);
    store
        .insert(due_at("live-a", Liveness::Active, Some(s(30))))
        .await
        .unwrap();
    store
        .insert(due_at("live-b", Liveness::Registered, Some(s(10))))
        .await
        .unwrap();
    store
        .insert(due_at("live-c", Liveness::Stale, Some(s(20))))
        .await
        .unwrap();
    store
        .insert(due_at("live-d", Liveness::Active, None))
        .await
        .unwrap();
    let mut off = due_at("live-e", Liveness::Active, Some(s(5)));
    off.enabled = false;
    store.insert(off).await.unwrap();
    let got = store.get(&pid("live-a")).await.unwrap().unwrap();
    assert_eq!(
        got.next_deadline,
        Some(s(30)),
        "the deadline MUST round-trip"
    );
    assert_eq!(
        store.earliest_deadline().await.unwrap(),
        Some(s(5)),
        "earliest_deadline MUST be the smallest deadline of any record"
    );
    assert_eq!(
        store.liveness_counts(s(15)).await.unwrap(),
        LivenessCounts { live: 3, due: 1 },
        "live counts enabled registered/active records; due those past their deadline"
    );
    assert_eq!(
        store.liveness_counts(s(30)).await.unwrap(),
        LivenessCounts { live: 3, due: 2 },
        "a deadline equal to now is due"
    );
    // Nothing due yet (live-e is due, but disabled): nothing changes.
    assert!(store.sweep(s(9), None, 100).await.unwrap().is_empty());
    // Limits are honoured, earliest first.
    let swept = store
        .sweep(s(40), Some(std::time::Duration::from_secs(100)), 1)
        .await
        .unwrap();
    assert_eq!(
        swept_ids(&swept),
        ["live-b"],
        "sweep MUST take the earliest deadline first"
    );
    let b = &swept[0];
    assert_eq!(b.event, Some("plugin.stale"));
    assert_eq!(b.stale, [InstanceId::default_instance()]);
    assert_eq!(b.record.status, Liveness::Stale);
    assert_eq!(
        b.record.next_deadline,
        Some(s(110)),
        "sweep MUST move a stale instance's deadline on by deregister_in"
    );
    assert_eq!(b.record.version, 2, "sweep MUST bump the version");
    // live-c (stale, due at 20) is removed, live-a (due at 30) goes stale; live-b (stale,
    // due at 110) is not due yet, live-d has no deadline, live-e is disabled.
    let swept = store.sweep(s(40), None, 100).await.unwrap();
    assert_eq!(swept_ids(&swept), ["live-c", "live-a"]);
    assert_eq!(swept[0].event, Some("plugin.deregistered"));
    assert_eq!(swept[0].removed, [InstanceId::default_instance()]);
    assert!(store.get(&pid("live-c")).await.unwrap().is_none());
    assert_eq!(swept[1].event, Some("plugin.stale"));
    assert_eq!(
        swept[1].record.next_deadline, None,
        "no deregistration: no deadline"
    );
    assert_eq!(
        store.get(&pid("live-a")).await.unwrap().unwrap(),
        swept[1].record
    );
    let swept = store.sweep(s(110), None, 100).await.unwrap();
    assert_eq!(swept_ids(&swept), ["live-b"]);
    assert_eq!(swept[0].event, Some("plugin.deregistered"));
    assert!(
        store.get(&pid("live-e")).await.unwrap().is_some(),
        "a disabled record MUST NOT be removed"
    );
    drain_outbox(store).await;
    clear(store).await;
}

async fn stale_plugins_recover_on_heartbeat(store: &dyn PluginStore) {
    let s = |n: i64| t0() + Duration::seconds(n);
    store
        .insert(due_at("live-r", Liveness::Active, Some(s(10))))
        .await
        .unwrap();
    let stale = store.sweep(s(11), None, 10).await.unwrap();
    assert_eq!(stale.len(), 1);
    let hb = store
        .record_heartbeat(&pid("live-r"), "jti-live-r", Health::Healthy, s(12), s(42))
        .await
        .expect("a stale plugin's heartbeat MUST apply");
    assert!(
        hb.recovered,
        "the heartbeat MUST report that the plugin was stale"
    );
    assert_eq!(hb.record.status, Liveness::Active);
    assert_eq!(hb.record.next_deadline, Some(s(42)));
    let again = store
        .record_heartbeat(&pid("live-r"), "jti-live-r", Health::Healthy, s(13), s(43))
        .await
        .unwrap();
    assert!(!again.recovered);
    clear(store).await;
}

async fn sweeps_apply_each_expiry_once(store: &Arc<dyn PluginStore>) {
    let s = |n: i64| t0() + Duration::seconds(n);
    let n = 40;
    for i in 0..n {
        store
            .insert(due_at(
                &format!("live-x{i:02}"),
                Liveness::Active,
                Some(s(i)),
            ))
            .await
            .unwrap();
    }
    // Deadlines move past the first round's `now`: each record changes once per round.
    let deregister_in = Some(std::time::Duration::from_secs(2000));
    for (now, batch, want) in [
        (s(1000), 3, "plugin.stale"),
        (s(5000), 4, "plugin.deregistered"),
    ] {
        let swept = join_all((0..6).map(|_| {
            let store = Arc::clone(store);
            async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.sweep(now, deregister_in, batch).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got);
                }
            }
        }))
        .await;
        let mut all: Vec<(PluginId, Option<&str>)> = swept
            .into_iter()
            .flatten()
            .map(|s| (s.record.plugin_id, s.event))
            .collect();
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(
            before,
            all.len(),
            "concurrent sweeps MUST NOT apply a step twice ({want})"
        );
        assert_eq!(
            all.len(),
            n as usize,
            "concurrent sweeps MUST apply every due step"
        );
        assert!(all.iter().all(|(_, e)| *e == Some(want)), "{want}");
    }
    assert!(store.list(None, 10).await.unwrap().is_empty());
    drain_outbox(&**store).await;
}

/// Claims and acknowledges every outbox entry; returns them.
async fn drain_outbox(store: &dyn PluginStore) -> Vec<OutboxEntry> {
    let far = t0() + Duration::days(3650);
    let all = store.claim_outbox(far, far, 100_000).await.unwrap();
    store.ack_outbox(&all).await.unwrap();
    all
}

async fn outbox_holds_each_transition_until_acked(store: &Arc<dyn PluginStore>) {
    drain_outbox(&**store).await;
    let s = |n: i64| t0() + Duration::seconds(n);
    for (i, id) in ["ob-a", "ob-b", "ob-c"].iter().enumerate() {
        store
            .insert(due_at(id, Liveness::Active, Some(s(i as i64))))
            .await
            .unwrap();
    }
    let stale = store
        .sweep(s(10), Some(std::time::Duration::from_secs(100)), 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 3);
    assert!(
        store
            .claim_outbox(s(9), s(20), 10)
            .await
            .unwrap()
            .is_empty(),
        "entries are written at `now` of the transition"
    );
    let first = store.claim_outbox(s(10), s(20), 2).await.unwrap();
    assert_eq!(first.len(), 2, "claim_outbox MUST honour the limit");
    for e in &first {
        assert_eq!(e.event_type, "plugin.stale");
        assert_eq!(e.at, s(20), "a claim MUST move `at` to now");
        let r = &stale
            .iter()
            .find(|s| s.record.plugin_id == e.plugin_id)
            .expect("one of ours")
            .record;
        assert_eq!(
            (e.registration.clone(), e.version),
            (r.registration_key(), r.version)
        );
    }
    let second = store.claim_outbox(s(10), s(21), 10).await.unwrap();
    assert_eq!(
        second.len(),
        1,
        "claimed entries MUST NOT be claimed again within their lease"
    );
    store.ack_outbox(&first).await.unwrap();
    let again = store.claim_outbox(s(30), s(40), 10).await.unwrap();
    assert_eq!(
        again,
        vec![OutboxEntry {
            at: s(40),
            ..second[0].clone()
        }],
        "acked entries MUST be gone"
    );
    store.ack_outbox(&again).await.unwrap();
    store
        .ack_outbox(&again)
        .await
        .expect("acking twice MUST be harmless");
    assert!(
        store
            .claim_outbox(s(1000), s(1000), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let gone = store.sweep(s(200), None, 10).await.unwrap();
    assert_eq!(gone.len(), 3);
    let mut entries = store.claim_outbox(s(200), s(201), 10).await.unwrap();
    entries.sort();
    let mut want: Vec<(String, u64)> = gone
        .iter()
        .map(|s| (s.record.plugin_id.to_string(), s.record.version))
        .collect();
    want.sort();
    assert!(
        entries
            .iter()
            .all(|e| e.event_type == "plugin.deregistered")
    );
    let got: Vec<(String, u64)> = entries
        .iter()
        .map(|e| (e.plugin_id.to_string(), e.version))
        .collect();
    assert_eq!(got, want, "sweep MUST write one entry per removed record");
    store.ack_outbox(&entries).await.unwrap();

    // Concurrent claimers: each entry goes to exactly one.
    for i in 0..30 {
        store
            .insert(due_at(&format!("ob-x{i:02}"), Liveness::Active, Some(s(i))))
            .await
            .unwrap();
    }
    assert_eq!(store.sweep(s(100), None, 100).await.unwrap().len(), 30);
    let claimed = join_all((0..6).map(|_| {
        let store = Arc::clone(store);
        async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_outbox(s(100), s(500), 4).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch);
            }
        }
    }))
    .await;
    let mut all: Vec<OutboxEntry> = claimed.into_iter().flatten().collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(
        n,
        all.len(),
        "concurrent claims MUST NOT hand out an entry twice"
    );
    assert_eq!(n, 30);
    store.ack_outbox(&all).await.unwrap();
    clear(&**store).await;
}

/// Checks group commit on two stores `a` and `b` sharing one database, each committing
/// its writes in groups; run on a single-threaded runtime, so that writes started
/// together are all queued before the committing task runs and share a group. `poisoned` is an id whose insert the database refuses (a trigger the
/// caller installed). The database MUST be empty when the suite starts.
pub async fn group_commit_conformance(
    a: Arc<dyn PluginStore>,
    b: Arc<dyn PluginStore>,
    poisoned: &str,
) {
    // A taken id in the middle of a group fails that write only.
    let inserts = ["g-1", "g-2", "g-1", "g-3"].map(|id| a.insert(record(id, id)));
    let results = join_all(inserts).await;
    let ok: Vec<&str> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|r| r.plugin_id.as_str()))
        .collect();
    assert_eq!(ok.len(), 3, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict)))
            .count()
            == 1,
        "the second insert of g-1 MUST fail alone: {results:?}"
    );
    // A changed version or a missing record fails that write only.
    let g2 = a.get(&pid("g-2")).await.unwrap().unwrap();
    let g3 = a.get(&pid("g-3")).await.unwrap().unwrap();
    let mut g2_changed = g2.clone();
    g2_changed.disabled_reason = Some("changed".into());
    let mut g3_changed = g3.clone();
    g3_changed.disabled_reason = Some("changed".into());
    let (r2, r3, gone, absent) = futures_util::future::join4(
        a.replace(g2_changed, g2.version),
        a.replace(g3_changed, g3.version + 5),
        a.delete(&pid("g-nobody"), None),
        a.replace(record("g-nobody", "x"), 1),
    )
    .await;
    assert_eq!(r2.unwrap().disabled_reason.as_deref(), Some("changed"));
    assert!(matches!(r3, Err(StoreError::PreconditionFailed)), "{r3:?}");
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
    assert!(matches!(absent, Err(StoreError::NotFound)), "{absent:?}");
    // A statement that fails fails its whole group, none of it applied.
    let g2 = a.get(&pid("g-2")).await.unwrap().unwrap();
    let mut g2_again = g2.clone();
    g2_again.disabled_reason = Some("again".into());
    let (r4, poison, r2) = futures_util::future::join3(
        a.insert(record("g-4", "g-4")),
        a.insert(record(poisoned, "p")),
        a.replace(g2_again, g2.version),
    )
    .await;
    for r in [r4.map(drop), poison.map(drop), r2.map(drop)] {
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "every write of a failed group MUST fail: {r:?}"
        );
    }
    assert!(a.get(&pid("g-4")).await.unwrap().is_none(), "none applied");
    assert_eq!(
        a.get(&pid("g-2")).await.unwrap().unwrap(),
        g2,
        "none applied"
    );
    // The next group is unaffected.
    a.insert(record("g-4", "g-4"))
        .await
        .expect("a group after a failed one MUST work");
    // Racing replicas: one id registered exactly once.
    let racers = (0..40).map(|n| {
        let store = if n % 2 == 0 { &a } else { &b };
        store.insert(record("g-race", &format!("j{n}")))
    });
    let results = join_all(racers).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one of racing inserts across replicas MUST win: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict))),
        "{results:?}"
    );
    // More writers than one group holds, on one replica (groups committed one after
    // another, or side by side where the store does): each id registered once.
    let burst =
        (0..300).map(|n| a.insert(record(&format!("g-burst-{}", n % 60), &format!("j{n}"))));
    let results = join_all(burst).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        60,
        "one insert of each id MUST win: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict))),
        "{results:?}"
    );
    for n in 0..60 {
        let id = format!("g-burst-{n}");
        assert!(a.get(&pid(&id)).await.unwrap().is_some(), "{id} stored");
        b.delete(&pid(&id), None).await.unwrap();
    }
    for id in ["g-1", "g-2", "g-3", "g-4", "g-race"] {
        b.delete(&pid(id), None).await.unwrap();
    }
}
