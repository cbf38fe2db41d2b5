//! Model-based property tests: random sequences of register / re-register / heartbeat
//! / refresh / deregister / get / list (with right and wrong credentials) and clock
//! moves, run against the real registry and a tiny reference model, compared after
//! every step. [`registry::run_model`] is generic over the store, so every
//! `PluginStore` adapter can run the same model.

mod registry;

use std::sync::Arc;

use vivified_adapters::memory::InMemoryPluginStore;

#[test]
fn registry_matches_the_model_on_the_in_memory_store() {
    let coverage = registry::run_model(|| Arc::new(InMemoryPluginStore::new()), 256);
    for (label, n) in &coverage {
        eprintln!("{n:6} {label}");
    }
    // The generator reaches the states that matter (each is expected well over ten
    // times in 256 cases, so a miss means the generator or the model is broken).
    for label in [
        "register new",
        "register reregistered",
        "register reregistered with an expired token",
        "register AlreadyRegistered",
        "register InvalidManifest",
        "register Unauthorized(\"registration_secret_required\")",
        "register Unauthorized(\"revoked_token\")",
        "register Unauthorized(\"revoked_token\") before InvalidManifest",
        "register Unauthorized(\"expired_token\")",
        "heartbeat Ok",
        "heartbeat Unauthorized(\"revoked_token\")",
        "heartbeat Unauthorized(\"expired_token\")",
        "heartbeat Forbidden(\"token_for_another_plugin\")",
        "heartbeat Forbidden(\"plugin_token_required\")",
        "another plugin's route, stale token: Unauthorized(\"revoked_token\")",
        "another plugin's route, stale token: Unauthorized(\"unknown_plugin\")",
        "list Unauthorized(\"revoked_token\")",
        "list Unauthorized(\"unknown_plugin\")",
        "list Forbidden(\"admin_token_required\")",
        "refresh Ok",
        "refresh Unauthorized(\"revoked_token\")",
        "deregister Ok",
        "get Ok",
    ] {
        assert!(
            coverage.get(label).is_some_and(|n| *n > 0),
            "no action sequence reached `{label}`: {coverage:#?}"
        );
    }
}
