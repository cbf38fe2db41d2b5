//! Key rotation as a property: any sequence of appends and seals by sealers holding any
//! rings of four keys leaves one chain that verifies with all the keys, every seal is
//! refused exactly when its sealer does not hold the key in force (and then seals
//! nothing), and a rotation entry precedes every change of key.

use proptest::prelude::*;
use vivified_adapters::audit_memory::InMemoryAuditLog;
use vivified_conformance::audit::audit_entry;
use vivified_domain::audit_chain::{
    AuditKeys, ChainKey, ChainVerifier, KEY_ROTATED_ACTION, verify_log,
};
use vivified_ports::{AuditError, AuditLog, AuditOutcome};

fn key(i: usize) -> ChainKey {
    ChainKey::new(format!("rotation-property-key-{i}-0123456789abcdefghij").as_bytes())
        .expect("long enough")
}

/// One step: append `appends` entries, then seal with the ring whose current key is
/// `current` and whose older keys are those of `previous` (a bit mask) but `current`.
#[derive(Clone, Debug)]
struct Step {
    appends: u8,
    current: usize,
    previous: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (0u8..3, 0usize..4, 0u8..16).prop_map(|(appends, current, previous)| Step {
        appends,
        current,
        previous,
    })
}

fn ring(step: &Step) -> (AuditKeys, Vec<usize>) {
    let previous: Vec<usize> = (0..4)
        .filter(|i| *i != step.current && step.previous & (1 << i) != 0)
        .collect();
    let keys = AuditKeys::new(
        key(step.current),
        previous.iter().map(|i| key(*i)).collect(),
    )
    .expect("distinct keys");
    (keys, previous)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_rings_leave_one_verifiable_chain(steps in prop::collection::vec(step(), 1..24)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let log = InMemoryAuditLog::new(10_000);
            // The model: the key in force (none before the first seal), what is
            // pending, how long the chain is, and every change of key.
            let mut in_force: Option<usize> = None;
            let mut pending = 0u64;
            let mut sealed = 0u64;
            let mut n = 0i64;
            let mut changes = 0usize;
            for s in &steps {
                for _ in 0..s.appends {
                    log.append(audit_entry("p", "x", AuditOutcome::Success, n)).await.unwrap();
                    n += 1;
                    pending += 1;
                }
                let (keys, previous) = ring(s);
                let result = log.seal(&keys, 1000).await;
                let allowed = match in_force {
                    None => true,
                    Some(k) => k == s.current || previous.contains(&k),
                };
                if !allowed {
                    prop_assert!(
                        matches!(result, Err(AuditError::UnknownKey { seq }) if seq == sealed),
                        "a sealer without the key in force must refuse: {result:?}"
                    );
                    prop_assert_eq!(log.pending().await.unwrap(), pending, "a refused seal keeps every entry pending");
                    continue;
                }
                let report = result.unwrap();
                let rotates = pending > 0 && in_force.is_some_and(|k| k != s.current);
                prop_assert_eq!(report.sealed, pending + u64::from(rotates));
                if pending > 0 {
                    if rotates {
                        changes += 1;
                    }
                    in_force = Some(s.current);
                    sealed += pending + u64::from(rotates);
                    pending = 0;
                }
                prop_assert_eq!(report.head.map_or(0, |h| h.seq), sealed);
            }
            // One chain: it verifies with every key, and names each change of key.
            let all = AuditKeys::new(key(3), vec![key(2), key(1), key(0)]).unwrap();
            let report = verify_log(&log, ChainVerifier::new(&all), 7).await.unwrap();
            prop_assert!(report.intact(), "{:?}", report);
            prop_assert_eq!(report.verified_up_to, sealed);
            let rotations = log
                .range(1, 10_000)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.entry.action == KEY_ROTATED_ACTION)
                .count();
            prop_assert_eq!(rotations, changes);
            prop_assert_eq!(report.keys.len(), usize::from(sealed > 0) + changes);
            if let Some(k) = in_force {
                prop_assert_eq!(report.key, Some(key(k).fingerprint()));
            }
            Ok(())
        })?;
    }
}
