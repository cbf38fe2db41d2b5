//! `vivified_domain::json`: on text without a repeated member it reads exactly what
//! `serde_json` reads; any bytes give a value or an error, never a panic; a repeat
//! anywhere is refused.

use proptest::prelude::*;
use serde_json::{Map, Value};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn reads_what_serde_json_reads(v in value(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&v).unwrap()
        } else {
            serde_json::to_string(&v).unwrap()
        };
        let want: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(vivified_domain::json::from_str(&text).unwrap(), want);
    }

    #[test]
    fn any_bytes_give_a_value_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let ours = vivified_domain::json::from_slice(&bytes);
        let theirs = serde_json::from_slice::<Value>(&bytes);
        // Where ours accepts, serde_json agrees on the value; where serde_json refuses,
        // so do we (we refuse more: repeated members).
        match (ours, theirs) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Ok(a), Err(e)) => prop_assert!(false, "accepted {a} that serde_json refuses: {e}"),
            (Err(_), _) => {}
        }
    }

    #[test]
    fn a_member_repeated_at_any_depth_is_refused(v in value(), name in "[a-z]{1,4}") {
        // Wrap the value in an object that repeats `name`, at a random depth.
        let inner = format!(r#"{{"{name}": 1, "{name}": {}}}"#, serde_json::to_string(&v).unwrap());
        let text = format!(r#"{{"a": [{inner}]}}"#);
        let e = vivified_domain::json::from_str(&text).unwrap_err();
        prop_assert!(e.is_duplicate(), "{}", e);
        let at = format!("duplicate member `/a/0/{name}`");
        prop_assert!(e.to_string().starts_with(&at), "{}", e);
    }
}
