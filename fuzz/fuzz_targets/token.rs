//! A bearer token: any text, verified by the JWT issuer. Never a panic, and never
//! accepted: nothing here was signed with the fuzzer's secret except the seed tokens
//! the target issues itself, which must verify exactly once mutated back to themselves.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer};
use vivified_ports::{PluginId, Secret, TokenIssuer, VerifyOptions};

const SECRET: &str = "fuzz-jwt-secret-Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";

struct World {
    rt: tokio::runtime::Runtime,
    issuer: JwtTokenIssuer,
    /// A token this issuer signed: the only text that may verify.
    genuine: String,
    at: time::OffsetDateTime,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let issuer = JwtTokenIssuer::new(JwtConfig {
            secret: Some(Secret::new(SECRET)),
            ed25519_keys: Vec::new(),
            previous: Vec::new(),
            ttl: Duration::from_secs(3600),
        })
        .expect("an issuer");
        let at = time::OffsetDateTime::now_utc();
        let genuine = rt
            .block_on(issuer.issue(&PluginId::parse("fuzz").expect("id"), at))
            .expect("signs")
            .token
            .expose()
            .to_owned();
        World {
            rt,
            issuer,
            genuine,
            at,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = VerifyOptions {
        now: w.at,
        expired_grace: Duration::ZERO,
    };
    let verified = w.rt.block_on(w.issuer.verify(text, opts));
    if text == w.genuine {
        assert!(verified.is_ok(), "the genuine token verifies");
    } else if let Ok(claims) = verified {
        // Another text that verifies must carry the same signed claims (JWS allows no
        // second encoding of one signature with HS256 and the strict decoder).
        panic!("a text other than the token the issuer signed verified: {claims:?}");
    }
});
