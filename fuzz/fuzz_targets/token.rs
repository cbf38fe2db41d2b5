//! A bearer token: any text, verified by the JWT issuers — one signing HS256 with a
//! secret, one EdDSA (Ed25519) with a key generated at start. Never a panic, and never
//! accepted: nothing here was signed with the fuzzer's keys except the tokens the
//! target issues itself, which must verify (each by its own issuer only) when the
//! fuzzer mutates its way back to them.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vivified_adapters::jwt::{JwtConfig, JwtTokenIssuer, generate_ed25519_pem};
use vivified_ports::{PluginId, Secret, TokenIssuer, VerifyOptions};

const SECRET: &str = "fuzz-jwt-secret-Zq3v9X1pLk2Rt7Yw0Bn4Hs8Dm6Fc5Ja1Ge";

struct World {
    rt: tokio::runtime::Runtime,
    /// `(issuer, a token it signed)`: for each issuer the only text that may verify.
    issuers: Vec<(JwtTokenIssuer, String)>,
    at: time::OffsetDateTime,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let hs256 = JwtTokenIssuer::new(JwtConfig {
            secret: Some(Secret::new(SECRET)),
            ed25519_keys: Vec::new(),
            previous: Vec::new(),
            ttl: Duration::from_secs(3600),
        })
        .expect("an HS256 issuer");
        let eddsa = JwtTokenIssuer::new(JwtConfig::ed25519(vec![
            generate_ed25519_pem().expect("an Ed25519 key"),
        ]))
        .expect("an EdDSA issuer");
        let at = time::OffsetDateTime::now_utc();
        let issuers = [hs256, eddsa]
            .into_iter()
            .map(|issuer| {
                let genuine = rt
                    .block_on(issuer.issue(&PluginId::parse("fuzz").expect("id"), at))
                    .expect("signs")
                    .token
                    .expose()
                    .to_owned();
                (issuer, genuine)
            })
            .collect();
        World { rt, issuers, at }
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
    for (issuer, genuine) in &w.issuers {
        let verified = w.rt.block_on(issuer.verify(text, opts));
        if text == genuine {
            assert!(verified.is_ok(), "the genuine token verifies");
        } else if let Ok(claims) = verified {
            // No other text may verify: JWS with the strict base64url decoder allows no
            // second encoding of a signature, and Ed25519 verification refuses a
            // non-canonical one; the other issuer's token is signed with another key.
            panic!("a text other than the token this issuer signed verified: {claims:?}");
        }
    }
});
