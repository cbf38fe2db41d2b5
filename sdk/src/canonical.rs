//! Canonical data models, mirroring `proto/canonical_models.proto`.
//!
//! The proto file is the source of truth (the core compiles it in `vivified-proto`);
//! these serde structs mirror its messages field for field, so a plugin needs no
//! protobuf runtime, using the proto3 JSON mapping: field names as in the proto, `Timestamp` as an RFC 3339
//! string, `bytes` as base64, repeated and map fields always present (possibly empty).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `vivified.canonical.CanonicalUser`: a user, as every identity plugin returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalUser {
    /// `id = 1`: stable id of the user within its identity plugin.
    pub id: String,
    /// `username = 2`.
    pub username: String,
    /// `email = 3` (PII: never log it).
    pub email: String,
    /// `roles = 4`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `traits = 5`: data traits of this record (`pii`, …).
    #[serde(default)]
    pub traits: Vec<String>,
    /// `created_at = 6` (`google.protobuf.Timestamp`; absent when unknown).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<OffsetDateTime>,
    /// `attributes = 7`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `vivified.canonical.CanonicalMessage`: a message, as communication plugins carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalMessage {
    /// `id = 1`.
    pub id: String,
    /// `from_user = 2`.
    pub from_user: String,
    /// `to_user = 3`.
    pub to_user: String,
    /// `content_type = 4`, e.g. `text/plain`.
    pub content_type: String,
    /// `content = 5` (`bytes`: base64 in JSON).
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
    /// `data_traits = 6`: `phi`, `pii`, `confidential`, …
    #[serde(default)]
    pub data_traits: Vec<String>,
    /// `sent_at = 7` (absent when unknown).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub sent_at: Option<OffsetDateTime>,
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_uses_the_proto_json_mapping() {
        let user = CanonicalUser {
            id: "u-1".into(),
            username: "ada".into(),
            email: "ada@example.com".into(),
            roles: vec!["admin".into()],
            traits: vec!["pii".into()],
            created_at: Some(time::macros::datetime!(2024-01-02 03:04:05 UTC)),
            attributes: BTreeMap::from([("team".into(), "core".into())]),
        };
        let v = serde_json::to_value(&user).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "u-1", "username": "ada", "email": "ada@example.com",
                "roles": ["admin"], "traits": ["pii"],
                "created_at": "2024-01-02T03:04:05Z",
                "attributes": {"team": "core"}
            })
        );
        let back: CanonicalUser = serde_json::from_value(v).unwrap();
        assert_eq!(back, user);
        // Omitted repeated/map/timestamp fields are their proto defaults.
        let minimal: CanonicalUser =
            serde_json::from_value(json!({"id": "u", "username": "u", "email": ""})).unwrap();
        assert!(minimal.roles.is_empty() && minimal.attributes.is_empty());
        assert_eq!(minimal.created_at, None);
    }

    #[test]
    fn message_content_is_base64() {
        let m = CanonicalMessage {
            id: "m-1".into(),
            from_user: "a".into(),
            to_user: "b".into(),
            content_type: "application/octet-stream".into(),
            content: vec![0, 159, 146, 150],
            data_traits: vec![],
            sent_at: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["content"], "AJ+Slg==");
        assert!(v.get("sent_at").is_none());
        assert_eq!(serde_json::from_value::<CanonicalMessage>(v).unwrap(), m);
        let bad =
            json!({"id":"m","from_user":"a","to_user":"b","content_type":"x","content":"%%%"});
        assert!(serde_json::from_value::<CanonicalMessage>(bad).is_err());
    }
}
