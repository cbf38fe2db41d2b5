//! A registration body: JSON with unique members, then the manifest schema and rules.
//! Never a panic; an accepted manifest has a valid plugin id and validates again the
//! same way from its own serialisation.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vivified_domain::ManifestValidator;

fn validator() -> &'static ManifestValidator {
    static V: OnceLock<ManifestValidator> = OnceLock::new();
    V.get_or_init(|| ManifestValidator::new().expect("the schema compiles"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = vivified_domain::json::from_slice(data) else {
        return;
    };
    let text = value.to_string();
    match validator().check_owned(value) {
        Ok(checked) => {
            assert!(vivified_ports::PluginId::is_valid(checked.id.as_str()));
            let again = vivified_domain::json::from_str(&text).expect("our own output parses");
            assert!(
                validator().validate(&again).is_ok(),
                "valid once, valid again"
            );
        }
        Err(violations) => {
            assert!(!violations.is_empty());
            for v in &violations {
                assert!(v.path.is_empty() || v.path.starts_with('/'), "{v:?}");
                assert!(!v.code.is_empty() && !v.message.is_empty(), "{v:?}");
            }
        }
    }
});
