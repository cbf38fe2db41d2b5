//! The manifests and small answers tests build on.

use serde_json::{Value, json};

/// A path under the repository root (`schemas/…`, `docs/…`).
pub fn repo_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// A valid manifest for `id`: a storage plugin with `internal` data only (no PII/PHI,
/// no external service).
pub fn manifest(id: &str) -> Value {
    json!({
        "id": id,
        "name": format!("Plugin {id}"),
        "version": "1.0.0",
        "contracts": ["StoragePlugin"],
        "traits": [],
        "security": {"authentication_required": false, "data_classification": ["internal"]},
        "compliance": {"hipaa_controls": [], "audit_level": "basic"}
    })
}

/// [`manifest`] subscribed to `subscriptions`.
pub fn subscriber(id: &str, subscriptions: &[&str]) -> Value {
    let mut m = manifest(id);
    m["subscriptions"] = json!(subscriptions);
    m
}

/// The seed's example manifest (`schemas/examples/user-management.json`) under `id`.
///
/// # Panics
/// If the file cannot be read or is not JSON.
pub fn example_manifest(id: &str) -> Value {
    let path = repo_path("schemas/examples/user-management.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut m: Value = serde_json::from_str(&text).expect("the example manifest is JSON");
    m["id"] = json!(id);
    m
}

/// Status and JSON body (`Null` if the body is not JSON).
pub async fn answer(resp: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The value after `export VIVIFIED_ADMIN_TOKEN=` in a dev-mode banner.
///
/// # Panics
/// If the banner shows no generated admin token.
pub fn banner_admin_token(stderr: &str) -> String {
    let (_, rest) = stderr
        .split_once("VIVIFIED_ADMIN_TOKEN=")
        .unwrap_or_else(|| panic!("no generated admin token in the banner:\n{stderr}"));
    rest.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_what_they_say() {
        assert_eq!(subscriber("p", &["a.*"])["subscriptions"], json!(["a.*"]));
        assert_eq!(manifest("p")["id"], "p");
        assert_eq!(example_manifest("q")["id"], "q");
        assert_eq!(
            banner_admin_token("x\n    export VIVIFIED_ADMIN_TOKEN=abc\n"),
            "abc"
        );
    }
}
