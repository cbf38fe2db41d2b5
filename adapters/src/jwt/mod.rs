//! `JwtTokenIssuer`: EdDSA (Ed25519) or HS256 JWTs through `jsonwebtoken`, the
//! algorithm pinned per key, key rotation by `kid`.
//!
//! Claims: `sub` and `plugin_id` (the plugin), `type: "plugin"`, `iss: "vivified"`,
//! `aud: "vivified-core"`, `iat`, `exp`, `jti`. With Ed25519 keys configured, tokens
//! are signed EdDSA with the first key, whose public half (and every other configured
//! key's) is published as a JWK set ([`JwtTokenIssuer::jwks`]) so plugins can verify
//! tokens offline; the `kid` is the key's RFC 7638 thumbprint. Otherwise they are
//! signed HS256 with the secret, whose `kid` is a fingerprint (an HMAC of a fixed
//! label), never the secret. Tokens signed with any configured key — previous
//! Ed25519 keys, previous secrets, and HS256 secrets next to Ed25519 keys (a
//! migration) — still verify, so keys rotate without downtime.
//!
//! Signing is `jsonwebtoken::encode`; verification is `jsonwebtoken::decode` with a
//! pinned [`Validation`] (the `kid`'s algorithm only; `iss`, `aud`, `sub`, `exp`
//! required). The times
//! (`exp` with [`LEEWAY`] and the caller's grace, `iat` not in the future) are checked
//! here against the caller's clock ([`VerifyOptions::now`], the `Clock` port), not
//! against the wall clock `jsonwebtoken` would read.

mod keys;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use vivified_ports::{
    IssuedToken, PluginId, Secret, TokenClaims, TokenError, TokenIssuer, VerifyOptions,
};

pub use crate::verified::{DEFAULT_CAPACITY as VERIFIED_TOKENS_CAPACITY, VerifiedTokens};
pub use keys::generate_ed25519_pem;

/// Issuer claim.
pub const ISSUER: &str = "vivified";
/// Audience claim.
pub const AUDIENCE: &str = "vivified-core";
/// Clock leeway on expiry and issue time.
pub const LEEWAY: Duration = Duration::from_secs(5);

/// Settings of a [`JwtTokenIssuer`]: at least a secret or an Ed25519 key.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// HS256: verifies tokens signed with it, and signs new tokens when there is no
    /// Ed25519 key.
    pub secret: Option<Secret>,
    /// Older HS256 secrets whose tokens still verify.
    pub previous: Vec<Secret>,
    /// Ed25519 private keys, PKCS#8 PEM: the first signs new tokens (EdDSA); every one
    /// verifies and is published.
    pub ed25519_keys: Vec<Secret>,
    /// Lifetime of a new token.
    pub ttl: Duration,
}

impl JwtConfig {
    /// HS256 with `secret`, no previous secrets and a 24 h lifetime.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret: Some(secret),
            previous: Vec::new(),
            ed25519_keys: Vec::new(),
            ttl: Duration::from_secs(24 * 3600),
        }
    }

    /// EdDSA with `keys` (the first signs), no HS256 secret, a 24 h lifetime.
    pub fn ed25519(keys: Vec<Secret>) -> Self {
        Self {
            secret: None,
            previous: Vec::new(),
            ed25519_keys: keys,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a [`JwtTokenIssuer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// A secret is empty.
    #[error("a JWT secret is empty")]
    EmptySecret,
    /// The lifetime is zero or too large.
    #[error("token lifetime must be between 1 s and 366 days")]
    BadTtl,
    /// The signer failed on a fixed input.
    #[error("cannot derive a key id")]
    KeyId,
    /// Neither a secret nor an Ed25519 key.
    #[error("no signing key: configure an Ed25519 key or a JWT secret")]
    NoKey,
    /// An Ed25519 key (counted from 1) is not a PKCS#8 PEM Ed25519 private key.
    #[error("signing key {0} is not an Ed25519 private key in PKCS#8 PEM")]
    BadSigningKey(usize),
    /// No randomness for a new key.
    #[error("cannot generate a signing key")]
    KeyGeneration,
}

/// The claims of a plugin token, in the order they are written.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Claims {
    sub: String,
    plugin_id: String,
    #[serde(rename = "type")]
    typ: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Issues and verifies HS256 plugin tokens.
///
/// A token whose signature and claims checked out is remembered ([`VerifiedTokens`]),
/// so a plugin's heartbeats pay for its token's HMAC and JSON once, not on every
/// request; expiry and issue time are still checked on every use, and revocation is
/// the store's `jti` check, which callers make after this.
pub struct JwtTokenIssuer {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    /// Every key that verifies, by `kid`, with the one algorithm it verifies.
    decoding: HashMap<String, (Algorithm, DecodingKey)>,
    hs256: Validation,
    eddsa: Validation,
    jwks: jsonwebtoken::jwk::JwkSet,
    ttl: Duration,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for JwtTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokenIssuer")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The key id of `secret`: the first 16 characters of the base64url HMAC of a fixed
/// label, so it names the secret without revealing it.
fn key_id(secret: &Secret) -> Result<String, JwtConfigError> {
    let key = EncodingKey::from_secret(secret.expose().as_bytes());
    let mac = jsonwebtoken::crypto::sign(b"vivified-key-id", &key, Algorithm::HS256)
        .map_err(|_| JwtConfigError::KeyId)?;
    Ok(mac.chars().take(16).collect())
}

/// The validation every token signed with `algorithm` passes: that algorithm only, our
/// issuer and audience, the registered claims present. Times are checked by
/// [`check_times`] instead.
fn validation(algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = LEEWAY.as_secs();
    // Checked against the caller's clock in `check_times`, with its grace.
    v.validate_exp = false;
    v.validate_nbf = false;
    v
}

/// The reason a `jsonwebtoken` error is reported with.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::InvalidSubject => "subject",
        _ => "malformed",
    }
}

impl JwtTokenIssuer {
    /// Builds the issuer.
    ///
    /// # Errors
    /// [`JwtConfigError`] for an empty secret or an unusable lifetime.
    pub fn new(config: JwtConfig) -> Result<Self, JwtConfigError> {
        if config.ttl.is_zero() || config.ttl > Duration::from_secs(366 * 24 * 3600) {
            return Err(JwtConfigError::BadTtl);
        }
        let mut decoding = HashMap::new();
        for secret in config.secret.iter().chain(&config.previous) {
            if secret.expose().is_empty() {
                return Err(JwtConfigError::EmptySecret);
            }
            decoding.entry(key_id(secret)?).or_insert_with(|| {
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                )
            });
        }
        let ed_keys = config
            .ed25519_keys
            .iter()
            .enumerate()
            .map(|(i, pem)| keys::EdKey::from_pem(pem, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let mut jwks = jsonwebtoken::jwk::JwkSet::default();
        for key in &ed_keys {
            if !decoding.contains_key(&key.kid) {
                decoding.insert(key.kid.clone(), (Algorithm::EdDSA, key.decoding.clone()));
                jwks.keys.push(key.jwk.clone());
            }
        }
        let (kid, algorithm, encoding) = match (ed_keys.into_iter().next(), &config.secret) {
            (Some(key), _) => (key.kid, Algorithm::EdDSA, key.encoding),
            (None, Some(secret)) => (
                key_id(secret)?,
                Algorithm::HS256,
                EncodingKey::from_secret(secret.expose().as_bytes()),
            ),
            (None, None) => return Err(JwtConfigError::NoKey),
        };
        Ok(Self {
            kid,
            algorithm,
            encoding,
            decoding,
            hs256: validation(Algorithm::HS256),
            eddsa: validation(Algorithm::EdDSA),
            jwks,
            ttl: config.ttl,
            verified: VerifiedTokens::new(VERIFIED_TOKENS_CAPACITY),
        })
    }

    /// The algorithm new tokens are signed with (`EdDSA` or `HS256`).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public keys that verify tokens, as a JWK set (`{"keys": [...]}`): every
    /// configured Ed25519 key, the signing one first. HS256 secrets are never in it
    /// (the set is empty without Ed25519 keys).
    pub fn jwks(&self) -> &jsonwebtoken::jwk::JwkSet {
        &self.jwks
    }

    /// The same issuer remembering at most `capacity` verified tokens (0: none, every
    /// verification starts from the token's bytes).
    #[must_use]
    pub fn with_verified_tokens_capacity(mut self, capacity: usize) -> Self {
        self.verified = VerifiedTokens::new(capacity);
        self
    }

    /// The key id of the current signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Checks everything of `token` but its times: structure, algorithm, key,
    /// signature, issuer, audience, type and subject.
    fn verify_signed(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Invalid(reason(e.kind())))?;
        if !matches!(header.alg, Algorithm::HS256 | Algorithm::EdDSA) {
            return Err(TokenError::Invalid("algorithm"));
        }
        let (algorithm, key) = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::Invalid("unknown key"))?;
        // The key decides the algorithm: an HS256 token never verifies against an
        // Ed25519 key's bytes, nor the other way round.
        if header.alg != *algorithm {
            return Err(TokenError::Invalid("algorithm"));
        }
        let validation = match algorithm {
            Algorithm::EdDSA => &self.eddsa,
            _ => &self.hs256,
        };
        let c = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| TokenError::Invalid(reason(e.kind())))?
            .claims;
        if c.typ != "plugin" {
            return Err(TokenError::Invalid("type"));
        }
        if c.sub != c.plugin_id {
            return Err(TokenError::Invalid("subject"));
        }
        let plugin_id = PluginId::parse(&c.sub).map_err(|_| TokenError::Invalid("subject"))?;
        let time = |s: i64| {
            OffsetDateTime::from_unix_timestamp(s).map_err(|_| TokenError::Invalid("time"))
        };
        Ok(TokenClaims {
            plugin_id,
            jti: c.jti,
            issued_at: time(c.iat)?,
            expires_at: time(c.exp)?,
        })
    }
}

/// The time checks of a verification: not issued in the future, not expired (each
/// with [`LEEWAY`], expiry also with `opts.expired_grace`).
fn check_times(claims: &TokenClaims, opts: VerifyOptions) -> Result<(), TokenError> {
    let leeway = LEEWAY.as_secs() as i64;
    let now = ts(opts.now);
    if ts(claims.issued_at) > now + leeway {
        return Err(TokenError::Invalid("issued in the future"));
    }
    let grace = i64::try_from(opts.expired_grace.as_secs()).unwrap_or(i64::MAX);
    if now
        > ts(claims.expires_at)
            .saturating_add(leeway)
            .saturating_add(grace)
    {
        return Err(TokenError::Expired);
    }
    Ok(())
}

fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

#[async_trait]
impl TokenIssuer for JwtTokenIssuer {
    async fn issue(
        &self,
        plugin_id: &PluginId,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, TokenError> {
        let expires_at = now + self.ttl;
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let id = plugin_id.as_str();
        let claims = Claims {
            sub: id.to_owned(),
            plugin_id: id.to_owned(),
            typ: "plugin".to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: ts(now),
            exp: ts(expires_at),
            jti,
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Signing(Box::new(e)))?;
        // Truncate to whole seconds: that is what the token says.
        let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp)
            .map_err(|e| TokenError::Signing(Box::new(e)))?;
        Ok(IssuedToken {
            token: Secret::new(token),
            jti: claims.jti,
            expires_at,
        })
    }

    async fn verify(&self, token: &str, opts: VerifyOptions) -> Result<TokenClaims, TokenError> {
        let key = self.verified.key(token);
        let claims = match self.verified.get(key, token) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token)?;
                self.verified.insert(key, token, &claims);
                claims
            }
        };
        check_times(&claims, opts)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// The claims the wire contract names, all required.
    const CLAIMS: [&str; 8] = [
        "sub",
        "plugin_id",
        "type",
        "iss",
        "aud",
        "iat",
        "exp",
        "jti",
    ];

    #[tokio::test]
    async fn same_tokens_as_jsonwebtoken() {
        let secret = "s".repeat(32);
        let i = issuer(&secret, &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        // jsonwebtoken verifies ours …
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false;
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        let key = DecodingKey::from_secret(secret.as_bytes());
        let decoded = jsonwebtoken::decode::<Claims>(t.token.expose(), &key, &v).unwrap();
        let claims = Claims {
            sub: pid().to_string(),
            plugin_id: pid().to_string(),
            typ: "plugin".into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: ts(now()),
            exp: ts(now()) + 3600,
            jti: t.jti.clone(),
        };
        assert_eq!(decoded.claims, claims);
        // … writes the very same token from the same claims …
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(i.kid().to_owned());
        let theirs =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret.as_bytes()))
                .unwrap();
        assert_eq!(theirs, t.token.expose());
        // … and we verify a token of theirs with its header members in another order.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(i.kid().to_owned());
        h.typ = None;
        h.cty = Some("JWT".into());
        let theirs =
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret.as_bytes()))
                .unwrap();
        let c = i.verify(&theirs, opts(now())).await.unwrap();
        assert_eq!(c.jti, t.jti);
        assert_eq!(c.plugin_id, pid());
        // A signature with an extra segment, or one byte off, does not verify.
        assert!(i.verify(&format!("{theirs}.x"), opts(now())).await.is_err());
        let mut flipped = theirs.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            i.verify(std::str::from_utf8(&flipped).unwrap(), opts(now()))
                .await,
            Err(TokenError::Invalid(_))
        ));
    }

    fn issuer(secret: &str, previous: &[&str]) -> JwtTokenIssuer {
        let mut c = JwtConfig::new(Secret::new(secret));
        c.previous = previous.iter().map(|s| Secret::new(*s)).collect();
        c.ttl = Duration::from_secs(3600);
        JwtTokenIssuer::new(c).unwrap()
    }

    fn ed_issuer(keys: &[&Secret], secret: Option<&str>) -> JwtTokenIssuer {
        let mut c = JwtConfig::ed25519(keys.iter().map(|k| (*k).clone()).collect());
        c.secret = secret.map(Secret::new);
        c.ttl = Duration::from_secs(3600);
        JwtTokenIssuer::new(c).unwrap()
    }

    fn claims_for(id: &str) -> serde_json::Value {
        serde_json::to_value(Claims {
            sub: id.into(),
            plugin_id: id.into(),
            typ: "plugin".into(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: ts(now()),
            exp: ts(now()) + 60,
            jti: "x".into(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn ed25519_tokens_verify_offline_with_the_published_key() {
        let key = generate_ed25519_pem().unwrap();
        let i = ed_issuer(&[&key], None);
        assert_eq!(i.algorithm(), Algorithm::EdDSA);
        let t = i.issue(&pid(), now()).await.unwrap();
        let header = jsonwebtoken::decode_header(t.token.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(i.kid()));
        assert_eq!(
            i.verify(t.token.expose(), opts(now())).await.unwrap().jti,
            t.jti
        );
        // What a plugin does: the JWK set, as JSON, is enough to verify.
        let published: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&serde_json::to_string(i.jwks()).unwrap()).unwrap();
        assert_eq!(published.keys.len(), 1);
        let jwk = published
            .find(i.kid())
            .expect("the signing key is published");
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            i.kid(),
            "the kid is the RFC 7638 thumbprint"
        );
        let json = serde_json::to_value(jwk).unwrap();
        assert_eq!(json["kty"], "OKP");
        assert_eq!(json["crv"], "Ed25519");
        assert_eq!(json["alg"], "EdDSA");
        assert_eq!(json["use"], "sig");
        assert!(json.get("d").is_none(), "never the private key");
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_exp = false;
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[ISSUER]);
        let decoded = jsonwebtoken::decode::<Claims>(
            t.token.expose(),
            &DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(decoded.claims.jti, t.jti);
        // Another key's set does not verify it.
        let other = ed_issuer(&[&generate_ed25519_pem().unwrap()], None);
        assert!(matches!(
            other.verify(t.token.expose(), opts(now())).await,
            Err(TokenError::Invalid("unknown key"))
        ));
    }

    #[tokio::test]
    async fn ed25519_keys_rotate_with_overlap_and_hs256_tokens_still_verify() {
        let (old, new) = (
            generate_ed25519_pem().unwrap(),
            generate_ed25519_pem().unwrap(),
        );
        let secret = "secret-one-secret-one-secret-one";
        let hs = issuer(secret, &[]);
        let before = ed_issuer(&[&old], None);
        let after = ed_issuer(&[&new, &old], Some(secret));
        let old_token = before.issue(&pid(), now()).await.unwrap();
        let hs_token = hs.issue(&pid(), now()).await.unwrap();
        let new_token = after.issue(&pid(), now()).await.unwrap();
        for t in [&old_token, &hs_token, &new_token] {
            assert!(after.verify(t.token.expose(), opts(now())).await.is_ok());
        }
        let kids: Vec<_> = after
            .jwks()
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert_eq!(kids, [after.kid().to_owned(), before.kid().to_owned()]);
        assert!(
            before
                .verify(new_token.token.expose(), opts(now()))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_key_decides_the_algorithm() {
        let key = generate_ed25519_pem().unwrap();
        let secret = "secret-one-secret-one-secret-one";
        let i = ed_issuer(&[&key], Some(secret));
        let hs_kid = issuer(secret, &[]).kid().to_owned();
        let ed_kid = i.kid().to_owned();
        let claims = claims_for("user-management");
        // HS256 with the Ed25519 key's public bytes as the HMAC secret (algorithm
        // confusion), under the Ed25519 kid: refused.
        let x = match &i.jwks().keys[0].algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => p.x.clone(),
            other => panic!("{other:?}"),
        };
        for hmac_key in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&x).unwrap()] {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(ed_kid.clone());
            let forged =
                jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&hmac_key)).unwrap();
            assert!(matches!(
                i.verify(&forged, opts(now())).await,
                Err(TokenError::Invalid("algorithm"))
            ));
        }
        // An EdDSA token under the HS256 secret's kid: refused.
        let other = generate_ed25519_pem().unwrap();
        let signer = keys::EdKey::from_pem(&other, 1).unwrap();
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(hs_kid);
        let forged = jsonwebtoken::encode(&h, &claims, &signer.encoding).unwrap();
        assert!(matches!(
            i.verify(&forged, opts(now())).await,
            Err(TokenError::Invalid("algorithm"))
        ));
        // Control: an EdDSA token under the right kid with the right key verifies.
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(ed_kid);
        let key = keys::EdKey::from_pem(&key, 1).unwrap();
        let good = jsonwebtoken::encode(&h, &claims, &key.encoding).unwrap();
        assert!(i.verify(&good, opts(now())).await.is_ok());
    }

    #[test]
    fn unusable_key_configurations_are_refused() {
        let no_key = JwtConfig::ed25519(Vec::new());
        assert!(matches!(
            JwtTokenIssuer::new(no_key),
            Err(JwtConfigError::NoKey)
        ));
        let good = generate_ed25519_pem().unwrap();
        for bad in [
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            // An HS256 secret where a key file belongs.
            "secret-one-secret-one-secret-one",
        ] {
            let c = JwtConfig::ed25519(vec![good.clone(), Secret::new(bad)]);
            assert!(matches!(
                JwtTokenIssuer::new(c),
                Err(JwtConfigError::BadSigningKey(2))
            ));
        }
    }

    fn opts(now: OffsetDateTime) -> VerifyOptions {
        VerifyOptions {
            now,
            expired_grace: Duration::ZERO,
        }
    }

    fn pid() -> PluginId {
        PluginId::parse("user-management").unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap()
    }

    #[tokio::test]
    async fn round_trip_and_claims() {
        let i = issuer("s".repeat(32).as_str(), &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let c = i.verify(t.token.expose(), opts(now())).await.unwrap();
        assert_eq!(c.plugin_id, pid());
        assert_eq!(c.jti, t.jti);
        assert_eq!(c.expires_at, now() + Duration::from_secs(3600));
        let header = jsonwebtoken::decode_header(t.token.expose()).unwrap();
        assert_eq!(header.kid.as_deref(), Some(i.kid()));
        assert!(!i.kid().contains(&"s".repeat(8)));
        // The claims the wire contract names are all there.
        let raw = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(t.token.expose())
            .unwrap()
            .claims;
        for k in CLAIMS {
            assert!(raw.get(k).is_some(), "claim {k} missing");
        }
        assert_eq!(raw["type"], "plugin");
        assert_eq!(raw["aud"], AUDIENCE);
    }

    #[tokio::test]
    async fn expiry_leeway_and_grace() {
        let i = issuer("secret-one-secret-one-secret-one", &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let exp = now() + Duration::from_secs(3600);
        assert!(
            i.verify(t.token.expose(), opts(exp + Duration::from_secs(5)))
                .await
                .is_ok()
        );
        assert!(matches!(
            i.verify(t.token.expose(), opts(exp + Duration::from_secs(6)))
                .await,
            Err(TokenError::Expired)
        ));
        let graced = VerifyOptions {
            now: exp + Duration::from_secs(600),
            expired_grace: Duration::from_secs(3600),
        };
        assert!(i.verify(t.token.expose(), graced).await.is_ok());
        assert!(matches!(
            i.verify(t.token.expose(), opts(now() - Duration::from_secs(60)))
                .await,
            Err(TokenError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn rotation() {
        let old = issuer("old-secret-old-secret-old-secret", &[]);
        let new = issuer(
            "new-secret-new-secret-new-secret",
            &["old-secret-old-secret-old-secret"],
        );
        let newest = issuer("new-secret-new-secret-new-secret", &[]);
        let t = old.issue(&pid(), now()).await.unwrap();
        assert!(
            new.verify(t.token.expose(), opts(now())).await.is_ok(),
            "previous secret still verifies"
        );
        assert!(matches!(
            newest.verify(t.token.expose(), opts(now())).await,
            Err(TokenError::Invalid(_))
        ));
        let t2 = new.issue(&pid(), now()).await.unwrap();
        assert!(
            old.verify(t2.token.expose(), opts(now())).await.is_err(),
            "new tokens use the new secret"
        );
    }

    #[tokio::test]
    async fn rejects_forgeries() {
        let i = issuer("secret-one-secret-one-secret-one", &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let tok = t.token.expose();
        // Tampered payload.
        let mut parts: Vec<String> = tok.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(i.verify(&parts.join("."), opts(now())).await.is_err());
        // alg=none.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            tok.split('.').nth(1).unwrap()
        );
        assert!(matches!(
            i.verify(&none, opts(now())).await,
            Err(TokenError::Invalid(_))
        ));
        // Wrong audience, signed with the right key.
        let key = EncodingKey::from_secret(b"secret-one-secret-one-secret-one");
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(i.kid().to_owned());
        let bad = Claims {
            sub: "user-management".into(),
            plugin_id: "user-management".into(),
            typ: "plugin".into(),
            iss: ISSUER.into(),
            aud: "someone-else".into(),
            iat: ts(now()),
            exp: ts(now()) + 60,
            jti: "x".into(),
        };
        let bad = jsonwebtoken::encode(&h, &bad, &key).unwrap();
        assert!(matches!(
            i.verify(&bad, opts(now())).await,
            Err(TokenError::Invalid("audience"))
        ));
        assert!(i.verify("garbage", opts(now())).await.is_err());
        assert!(i.verify("", opts(now())).await.is_err());
    }

    /// The outcome of a verification, comparable across issuers.
    fn outcome(r: Result<TokenClaims, TokenError>) -> String {
        match r {
            Ok(c) => format!("ok {c:?}"),
            Err(e) => format!("err {e:?}"),
        }
    }

    #[tokio::test]
    async fn a_remembered_token_answers_as_a_fresh_verification() {
        let secret = "secret-one-secret-one-secret-one";
        let remembering = issuer(secret, &[]);
        let fresh = issuer(secret, &[]).with_verified_tokens_capacity(0);
        let t = remembering.issue(&pid(), now()).await.unwrap();
        let tok = t.token.expose();
        let mut tampered: Vec<String> = tok.split('.').map(str::to_owned).collect();
        tampered[1] = tampered[1].chars().rev().collect();
        let tampered = tampered.join(".");
        let exp = now() + Duration::from_secs(3600);
        let times = [
            opts(now()),
            opts(now() - Duration::from_secs(60)),
            opts(exp + Duration::from_secs(5)),
            opts(exp + Duration::from_secs(6)),
            VerifyOptions {
                now: exp + Duration::from_secs(600),
                expired_grace: Duration::from_secs(3600),
            },
            opts(now()),
        ];
        // Each token twice at each time: the second answer may come from memory.
        for token in [tok, tampered.as_str(), "garbage", ""] {
            for at in times {
                for _ in 0..2 {
                    assert_eq!(
                        outcome(remembering.verify(token, at).await),
                        outcome(fresh.verify(token, at).await),
                        "{token} at {:?}",
                        at.now
                    );
                }
            }
        }
        assert_eq!(
            remembering.verified.len(),
            1,
            "only the valid token is kept"
        );
        assert_eq!(fresh.verified.len(), 0);
    }

    #[tokio::test]
    async fn a_token_one_character_off_a_remembered_one_is_refused() {
        let i = issuer("secret-one-secret-one-secret-one", &[]);
        let t = i.issue(&pid(), now()).await.unwrap();
        let tok = t.token.expose();
        assert!(i.verify(tok, opts(now())).await.is_ok());
        for at in 0..tok.len() {
            let mut bytes = tok.as_bytes().to_vec();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let other = String::from_utf8(bytes).unwrap();
            assert!(
                i.verify(&other, opts(now())).await.is_err(),
                "position {at}"
            );
        }
        // Longer and shorter by one character.
        assert!(i.verify(&format!("{tok}A"), opts(now())).await.is_err());
        assert!(i.verify(&tok[..tok.len() - 1], opts(now())).await.is_err());
        assert!(i.verify(tok, opts(now())).await.is_ok());
        // Even a forgery that hashed to the remembered token's entry is not taken for it.
        let last = if tok.ends_with('A') { 'E' } else { 'A' };
        let forged = format!("{}{last}", &tok[..tok.len() - 1]);
        let key = i.verified.key(&forged);
        let remembered = i.verify(tok, opts(now())).await.unwrap();
        i.verified.insert_at(key, tok, remembered);
        assert!(matches!(
            i.verify(&forged, opts(now())).await,
            Err(TokenError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn remembered_tokens_are_bounded() {
        let i = issuer("secret-one-secret-one-secret-one", &[]).with_verified_tokens_capacity(8);
        let mut tokens = Vec::new();
        for n in 0..20 {
            let id = PluginId::parse(&format!("plugin-{n}")).unwrap();
            let t = i.issue(&id, now()).await.unwrap();
            let c = i.verify(t.token.expose(), opts(now())).await.unwrap();
            assert_eq!(c.plugin_id, id);
            assert!(i.verified.len() <= 8);
            tokens.push((id, t));
        }
        for (id, t) in &tokens {
            let c = i.verify(t.token.expose(), opts(now())).await.unwrap();
            assert_eq!(&c.plugin_id, id);
            assert_eq!(c.jti, t.jti);
        }
        assert!(i.verified.len() <= 8);
    }

    #[tokio::test]
    async fn validation_is_pinned() {
        let secret = "secret-one-secret-one-secret-one";
        let i = issuer(secret, &[]);
        let key = EncodingKey::from_secret(secret.as_bytes());
        let sign = |alg: Algorithm, claims: &serde_json::Value| {
            let mut h = Header::new(alg);
            h.kid = Some(i.kid().to_owned());
            jsonwebtoken::encode(&h, claims, &key).unwrap()
        };
        let full = claims_for("user-management");
        // Control: the same claims in HS256 verify.
        assert!(
            i.verify(&sign(Algorithm::HS256, &full), opts(now()))
                .await
                .is_ok()
        );
        // Another HMAC algorithm with the right key is refused.
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            assert!(matches!(
                i.verify(&sign(alg, &full), opts(now())).await,
                Err(TokenError::Invalid("algorithm"))
            ));
        }
        // Every claim is required; a wrong issuer or type is refused.
        for missing in CLAIMS {
            let mut c = full.clone();
            c.as_object_mut().unwrap().remove(missing);
            assert!(
                matches!(
                    i.verify(&sign(Algorithm::HS256, &c), opts(now())).await,
                    Err(TokenError::Invalid(_))
                ),
                "{missing} missing"
            );
        }
        for (claim, value, why) in [
            ("iss", "someone", "issuer"),
            ("type", "operator", "type"),
            ("sub", "other-plugin", "subject"),
        ] {
            let mut c = full.clone();
            c[claim] = value.into();
            assert!(matches!(
                i.verify(&sign(Algorithm::HS256, &c), opts(now())).await,
                Err(TokenError::Invalid(r)) if r == why
            ));
        }
        // An unknown key id is refused before any signature is checked.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("not-a-key".into());
        let t = jsonwebtoken::encode(&h, &full, &key).unwrap();
        assert!(matches!(
            i.verify(&t, opts(now())).await,
            Err(TokenError::Invalid("unknown key"))
        ));
    }
}
