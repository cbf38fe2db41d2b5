//! YAML deploy files (compose, Kubernetes, workflows) as JSON values, to check with
//! `serde_json`. `saphyr` resolves YAML 1.2 core-schema scalars and aliases.

use saphyr::{LoadableYamlNode, ScalarOwned, YamlOwned};
use serde_json::Value;

/// Every document of YAML `text`, as JSON values.
///
/// # Panics
/// If the text is not YAML.
pub fn documents(text: &str) -> Vec<Value> {
    let docs = YamlOwned::load_from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}"));
    docs.iter().map(to_json).collect()
}

/// One YAML node as a JSON value (mapping keys that are not strings are written as
/// their JSON text).
///
/// # Panics
/// On a node the loader left unresolved.
pub fn to_json(y: &YamlOwned) -> Value {
    match y {
        YamlOwned::Value(s) => match s {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(*b),
            ScalarOwned::Integer(i) => Value::from(*i),
            ScalarOwned::FloatingPoint(f) => Value::from(f.into_inner()),
            ScalarOwned::String(s) => Value::String(s.clone()),
        },
        YamlOwned::Representation(s, _, _) => Value::String(s.clone()),
        YamlOwned::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        YamlOwned::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        YamlOwned::Tagged(_, inner) => to_json(inner),
        YamlOwned::Alias(_) | YamlOwned::BadValue => panic!("unresolved YAML node: {y:?}"),
    }
}
