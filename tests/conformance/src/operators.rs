//! The `OperatorStore` conformance suite: every store keeps operators and their tokens
//! the same way.

use std::sync::Arc;
use std::time::Duration;

use vivified_ports::{Operator, OperatorName, OperatorStore, OperatorToken, Role, StoreError};

use crate::store::t0;

/// An operator named `name` with `role`, created at [`t0`], never expiring.
#[must_use]
pub fn operator(name: &str, role: Role) -> Operator {
    Operator {
        name: OperatorName::parse(name).expect("a valid operator name"),
        role,
        created_at: t0(),
        created_by: "operator:bootstrap".to_owned(),
        expires_at: None,
        break_glass: None,
    }
}

/// A token of `name` with `prefix`, created `offset` after [`t0`], valid for a day.
#[must_use]
pub fn token(name: &str, prefix: &str, offset: Duration) -> OperatorToken {
    OperatorToken {
        prefix: prefix.to_owned(),
        operator: OperatorName::parse(name).expect("a valid operator name"),
        // Distinct per prefix, as distinct tokens' hashes are.
        token_hash: format!("{:0>64}", hex_of(prefix)),
        label: format!("label of {prefix}"),
        created_at: t0() + offset,
        expires_at: t0() + offset + Duration::from_secs(86_400),
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().take(32).map(|b| format!("{b:02x}")).collect()
}

fn name(n: &str) -> OperatorName {
    OperatorName::parse(n).expect("a valid operator name")
}

/// Runs every check against `store`, which must be empty.
///
/// # Panics
/// On the first contract the store breaks.
pub async fn operator_store_conformance(store: Arc<dyn OperatorStore>) {
    creates_reads_and_refuses_a_taken_name(store.as_ref()).await;
    lists_in_name_order(store.as_ref()).await;
    keeps_tokens_of_existing_operators_only(store.as_ref()).await;
    deletes_tokens_one_by_one_and_with_their_operator(store.as_ref()).await;
    counts_current_operators_by_role(store.as_ref()).await;
    keeps_a_break_glass_grant(store.as_ref()).await;
    exactly_one_of_racing_creations_wins(store).await;
}

async fn creates_reads_and_refuses_a_taken_name(store: &dyn OperatorStore) {
    let mut alice = operator("alice", Role::Operator);
    // Microseconds survive the round trip.
    alice.created_at = t0() + Duration::from_micros(123_457);
    alice.expires_at = Some(t0() + Duration::from_secs(3600) + Duration::from_micros(1));
    store.create_operator(&alice).await.expect("created");
    assert_eq!(
        store.operator(&name("alice")).await.unwrap(),
        Some(alice.clone())
    );
    assert!(store.operator(&name("nobody")).await.unwrap().is_none());
    let again = operator("alice", Role::Admin);
    assert!(matches!(
        store.create_operator(&again).await,
        Err(StoreError::Conflict)
    ));
    // The first one is unchanged.
    assert_eq!(store.operator(&name("alice")).await.unwrap(), Some(alice));
    store
        .delete_operator(&name("alice"))
        .await
        .expect("deleted");
}

async fn lists_in_name_order(store: &dyn OperatorStore) {
    for n in ["carol", "alice", "bob", "dave.x"] {
        store
            .create_operator(&operator(n, Role::Viewer))
            .await
            .unwrap();
    }
    let names = |ops: Vec<Operator>| {
        ops.into_iter()
            .map(|o| o.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_operators(None, 10).await.unwrap()),
        ["alice", "bob", "carol", "dave.x"]
    );
    assert_eq!(
        names(store.list_operators(Some(&name("bob")), 10).await.unwrap()),
        ["carol", "dave.x"]
    );
    assert_eq!(
        names(store.list_operators(None, 2).await.unwrap()),
        ["alice", "bob"]
    );
    assert!(
        store
            .list_operators(Some(&name("dave.x")), 10)
            .await
            .unwrap()
            .is_empty()
    );
    for n in ["carol", "alice", "bob", "dave.x"] {
        store.delete_operator(&name(n)).await.unwrap();
    }
}

async fn keeps_tokens_of_existing_operators_only(store: &dyn OperatorStore) {
    let ghost = token("ghost", "aaaa0001", Duration::ZERO);
    assert!(
        matches!(
            store.create_operator_token(&ghost).await,
            Err(StoreError::NotFound)
        ),
        "a token for an operator that does not exist is refused"
    );
    assert!(store.operator_token("aaaa0001").await.unwrap().is_none());

    let erin = operator("erin", Role::Auditor);
    store.create_operator(&erin).await.unwrap();
    let first = token("erin", "bbbb0002", Duration::from_secs(2));
    let second = token("erin", "aaaa0003", Duration::from_secs(2));
    let third = token("erin", "0000ffff", Duration::from_secs(1));
    for t in [&first, &second, &third] {
        store.create_operator_token(t).await.unwrap();
    }
    let mut same_prefix = token("erin", "bbbb0002", Duration::ZERO);
    same_prefix.token_hash = "f".repeat(64);
    assert!(matches!(
        store.create_operator_token(&same_prefix).await,
        Err(StoreError::Conflict)
    ));
    let mut same_hash = token("erin", "cccc0004", Duration::ZERO);
    same_hash.token_hash.clone_from(&first.token_hash);
    assert!(matches!(
        store.create_operator_token(&same_hash).await,
        Err(StoreError::Conflict)
    ));

    let (got, owner) = store
        .operator_token("bbbb0002")
        .await
        .unwrap()
        .expect("the token and its operator");
    assert_eq!(got, first);
    assert_eq!(owner, erin);
    assert!(store.operator_token("bbbb000").await.unwrap().is_none());
    // Oldest first, then by prefix.
    assert_eq!(
        store.operator_tokens(&name("erin")).await.unwrap(),
        vec![third, second, first]
    );
    assert!(
        store
            .operator_tokens(&name("ghost"))
            .await
            .unwrap()
            .is_empty()
    );
    store.delete_operator(&name("erin")).await.unwrap();
}

async fn deletes_tokens_one_by_one_and_with_their_operator(store: &dyn OperatorStore) {
    store
        .create_operator(&operator("frank", Role::Admin))
        .await
        .unwrap();
    store
        .create_operator(&operator("grace", Role::Admin))
        .await
        .unwrap();
    let f1 = token("frank", "f1f1f1f1", Duration::ZERO);
    let f2 = token("frank", "f2f2f2f2", Duration::from_secs(1));
    let g1 = token("grace", "a1a1a1a1", Duration::ZERO);
    for t in [&f1, &f2, &g1] {
        store.create_operator_token(t).await.unwrap();
    }
    assert!(
        matches!(
            store
                .delete_operator_token(&name("grace"), "f1f1f1f1")
                .await,
            Err(StoreError::NotFound)
        ),
        "an operator cannot delete another's token"
    );
    assert!(store.operator_token("f1f1f1f1").await.unwrap().is_some());
    assert_eq!(
        store
            .delete_operator_token(&name("frank"), "f1f1f1f1")
            .await
            .unwrap(),
        f1
    );
    assert!(store.operator_token("f1f1f1f1").await.unwrap().is_none());
    assert!(matches!(
        store
            .delete_operator_token(&name("frank"), "f1f1f1f1")
            .await,
        Err(StoreError::NotFound)
    ));

    let frank = store.delete_operator(&name("frank")).await.unwrap();
    assert_eq!(frank.name, name("frank"));
    assert!(store.operator(&name("frank")).await.unwrap().is_none());
    assert!(
        store.operator_token("f2f2f2f2").await.unwrap().is_none(),
        "an operator's tokens go with it"
    );
    assert!(
        store
            .operator_tokens(&name("frank"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.delete_operator(&name("frank")).await,
        Err(StoreError::NotFound)
    ));
    // A new operator of the same name does not inherit the old one's tokens.
    store
        .create_operator(&operator("frank", Role::Viewer))
        .await
        .unwrap();
    assert!(store.operator_token("f2f2f2f2").await.unwrap().is_none());
    // Another operator's tokens are untouched.
    assert_eq!(
        store
            .operator_token("a1a1a1a1")
            .await
            .unwrap()
            .map(|(t, _)| t),
        Some(g1)
    );
    store.delete_operator(&name("frank")).await.unwrap();
    store.delete_operator(&name("grace")).await.unwrap();
}

async fn counts_current_operators_by_role(store: &dyn OperatorStore) {
    let now = t0() + Duration::from_secs(100);
    assert_eq!(store.count_operators(Role::Admin, now).await.unwrap(), 0);
    store
        .create_operator(&operator("a1", Role::Admin))
        .await
        .unwrap();
    let mut expiring = operator("a2", Role::Admin);
    expiring.expires_at = Some(now);
    store.create_operator(&expiring).await.unwrap();
    let mut later = operator("a3", Role::Admin);
    later.expires_at = Some(now + Duration::from_secs(1));
    store.create_operator(&later).await.unwrap();
    store
        .create_operator(&operator("v1", Role::Viewer))
        .await
        .unwrap();
    assert_eq!(
        store.count_operators(Role::Admin, now).await.unwrap(),
        2,
        "an operator expiring at `now` no longer counts"
    );
    assert_eq!(store.count_operators(Role::Viewer, now).await.unwrap(), 1);
    assert_eq!(store.count_operators(Role::Auditor, now).await.unwrap(), 0);
    for n in ["a1", "a2", "a3", "v1"] {
        store.delete_operator(&name(n)).await.unwrap();
    }
}

async fn keeps_a_break_glass_grant(store: &dyn OperatorStore) {
    assert!(matches!(
        store.set_break_glass(&name("nobody"), None).await,
        Err(StoreError::NotFound)
    ));
    store
        .create_operator(&operator("hank", Role::Operator))
        .await
        .unwrap();
    store
        .create_operator_token(&token("hank", "abab0001", Duration::ZERO))
        .await
        .unwrap();
    let grant = vivified_ports::BreakGlass {
        reason: "EHR outage, ticket 4711".to_owned(),
        granted_at: t0() + Duration::from_micros(5),
        until: t0() + Duration::from_secs(1800) + Duration::from_micros(7),
    };
    let after = store
        .set_break_glass(&name("hank"), Some(&grant))
        .await
        .unwrap();
    assert_eq!(after.break_glass.as_ref(), Some(&grant));
    assert_eq!(after.role, Role::Operator, "the stored role is unchanged");
    // The authentication read sees it.
    let (_, owner) = store.operator_token("abab0001").await.unwrap().unwrap();
    assert_eq!(owner.break_glass, Some(grant));
    let ended = store.set_break_glass(&name("hank"), None).await.unwrap();
    assert_eq!(ended.break_glass, None);
    assert_eq!(
        store
            .operator(&name("hank"))
            .await
            .unwrap()
            .unwrap()
            .break_glass,
        None
    );
    store.delete_operator(&name("hank")).await.unwrap();
}

async fn exactly_one_of_racing_creations_wins(store: Arc<dyn OperatorStore>) {
    let results = futures_util::future::join_all((0..16).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let mut o = operator("racer", Role::Viewer);
            o.created_by = format!("racer {i}");
            store.create_operator(&o).await
        }
    }))
    .await;
    let mut won = 0;
    for r in results {
        match r {
            Ok(()) => won += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("a racing creation failed otherwise: {e}"),
        }
    }
    assert_eq!(won, 1);
    store.delete_operator(&name("racer")).await.unwrap();
    assert!(store.list_operators(None, 10).await.unwrap().is_empty());
}
