//! OpenID Connect: operators' ID or access tokens from the organisation's identity
//! provider, verified with the provider's published keys (JWKS), through
//! `jsonwebtoken`.
//!
//! Keys are fetched at start (a failure is a warning: other credentials keep working),
//! cached for the `Cache-Control` lifetime bounded to 1 min – 24 h, and fetched again
//! once when a token names an unknown `kid` — at most once per `min_refetch`, so a
//! flood of made-up `kid`s costs no more fetches than one. Each key is pinned to the
//! algorithm of its type (RSA → RS256/384/512 as the key says, P-256 → ES256, P-384 →
//! ES384, Ed25519 → EdDSA); symmetric keys and `none` are never accepted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use time::OffsetDateTime;
use vivified_ports::{ExternalClaims, ExternalIdentity, IdentityError};

/// The most leeway on `exp`, `nbf` and `iat`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// Bounds of how long fetched keys are trusted without asking again.
const MIN_KEY_TTL: Duration = Duration::from_secs(60);
const MAX_KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Keys served without `Cache-Control: max-age` are trusted this long.
const DEFAULT_KEY_TTL: Duration = Duration::from_secs(3600);
/// The largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Settings of an [`OidcVerifier`].
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The provider's issuer (`iss`), e.g. `https://login.example.org/realms/hospital`.
    pub issuer: String,
    /// The audience tokens must name (`aud`).
    pub audience: String,
    /// Where the keys are; `None`: discovered from
    /// `<issuer>/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// The claim with the role names: a string or an array of strings; a dotted path
    /// reaches into objects (`realm_access.roles`).
    pub role_claim: String,
    /// The claim with the name to act under; `sub` when absent.
    pub name_claim: String,
    /// Leeway on `exp`, `nbf` and `iat` (at most [`MAX_LEEWAY`]).
    pub leeway: Duration,
    /// Unknown `kid`s fetch the keys again at most this often.
    pub min_refetch: Duration,
    /// Bound on each request to the provider.
    pub http_timeout: Duration,
}

impl OidcConfig {
    /// Defaults for `issuer` and `audience`: role claim `roles`, name claim
    /// `preferred_username`, 60 s leeway, a refetch at most every 10 s, 5 s requests.
    #[must_use]
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            role_claim: "roles".to_owned(),
            name_claim: "preferred_username".to_owned(),
            leeway: MAX_LEEWAY,
            min_refetch: Duration::from_secs(10),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The provider did not answer as expected.
    #[error("{url}: {reason}")]
    Provider {
        /// What was asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A fetch was asked for too soon after the last one.
    #[error("the keys were fetched less than the minimum interval ago")]
    TooSoon,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    /// Trusted without asking again until then (`None`: never fetched).
    fresh_until: Option<Instant>,
    /// The last fetch attempt, successful or not.
    last_attempt: Option<Instant>,
    /// The key set's URL, once known.
    jwks_url: Option<String>,
}

/// Verifies an identity provider's tokens ([`ExternalIdentity`]).
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    /// Tokens that verified, with their claims: a request with a token seen before
    /// costs a hash and a comparison, not a signature check. Emptied whenever the
    /// keys are fetched again; the times are checked on every use.
    verified: crate::verified::VerifiedTokens<ExternalClaims>,
    keys: tokio::sync::RwLock<Keys>,
    /// One fetch at a time: callers that find a fetch under way wait for it.
    fetching: tokio::sync::Mutex<()>,
}

impl OidcVerifier {
    /// A verifier for `config`, which fetches the keys once now; if that fails, the
    /// failure is logged as a warning and the keys are fetched on first use.
    pub async fn start(config: OidcConfig) -> Self {
        let verifier = Self::new(config);
        if let Err(e) = verifier.refresh(true).await {
            tracing::warn!(issuer = %verifier.config.issuer, error = %e, "the identity provider's keys could not be fetched; single sign-on answers 503 until they can");
        }
        verifier
    }

    /// A verifier for `config` that fetches the keys on first use.
    #[must_use]
    pub fn new(mut config: OidcConfig) -> Self {
        config.leeway = config.leeway.min(MAX_LEEWAY);
        // reqwest is built without a crypto provider of its own.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            keys: tokio::sync::RwLock::new(Keys {
                jwks_url: config.jwks_url.clone(),
                ..Keys::default()
            }),
            config,
            http,
            verified: crate::verified::VerifiedTokens::new(crate::verified::DEFAULT_CAPACITY),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// How many keys are known now.
    pub async fn known_keys(&self) -> usize {
        self.keys.read().await.by_kid.len()
    }

    async fn get_json(&self, url: &str) -> Result<(Value, Option<Duration>), FetchError> {
        let fail = |reason: String| FetchError::Provider {
            url: url.to_owned(),
            reason,
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("answered {}", resp.status())));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(fail("the document is too large".to_owned()));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("not JSON: {e}")))?;
        Ok((value, max_age))
    }

    /// Fetches the keys (discovering their URL first if needed), unless the last
    /// attempt was less than `min_refetch` ago and `force` is false.
    async fn refresh(&self, force: bool) -> Result<(), FetchError> {
        let _one = self.fetching.lock().await;
        let jwks_url = {
            let keys = self.keys.read().await;
            if !force
                && keys
                    .last_attempt
                    .is_some_and(|t| t.elapsed() < self.config.min_refetch)
            {
                return Err(FetchError::TooSoon);
            }
            keys.jwks_url.clone()
        };
        self.keys.write().await.last_attempt = Some(Instant::now());
        let jwks_url = match jwks_url {
            Some(url) => url,
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let (doc, _) = self.get_json(&url).await?;
                if doc["issuer"].as_str() != Some(self.config.issuer.as_str()) {
                    return Err(FetchError::Provider {
                        url,
                        reason: "the discovery document names another issuer".to_owned(),
                    });
                }
                let found = doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| FetchError::Provider {
                        url: url.clone(),
                        reason: "no jwks_uri".to_owned(),
                    })?
                    .to_owned();
                self.keys.write().await.jwks_url = Some(found.clone());
                found
            }
        };
        let (set, max_age) = self.get_json(&jwks_url).await?;
        let set: JwkSet = serde_json::from_value(set).map_err(|e| FetchError::Provider {
            url: jwks_url.clone(),
            reason: format!("not a JWK set: {e}"),
        })?;
        let by_kid: HashMap<String, (DecodingKey, Algorithm)> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let alg = pinned_algorithm(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, (key, alg)))
            })
            .collect();
        tracing::info!(issuer = %self.config.issuer, keys = by_kid.len(), "identity provider keys fetched");
        let ttl = max_age
            .unwrap_or(DEFAULT_KEY_TTL)
            .clamp(MIN_KEY_TTL, MAX_KEY_TTL);
        let mut keys = self.keys.write().await;
        keys.by_kid = by_kid;
        keys.fresh_until = Some(Instant::now() + ttl);
        // A key may be gone: what it verified is verified again.
        self.verified.clear();
        Ok(())
    }

    /// The key for `kid` and its algorithm, fetching the keys again if they are
    /// stale, or once (rate-limited) if `kid` is unknown.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), IdentityError> {
        let (found, stale, never) = {
            let keys = self.keys.read().await;
            (
                keys.by_kid.get(kid).cloned(),
                keys.fresh_until.is_none_or(|t| Instant::now() >= t),
                keys.fresh_until.is_none(),
            )
        };
        if let Some(found) = found
            && !stale
        {
            return Ok(found);
        }
        if let Err(e) = self.refresh(false).await
            && !matches!(e, FetchError::TooSoon)
        {
            tracing::warn!(issuer = %self.config.issuer, error = %e, "fetching the identity provider's keys failed");
        }
        let keys = self.keys.read().await;
        if let Some(found) = keys.by_kid.get(kid) {
            return Ok(found.clone());
        }
        if never && keys.fresh_until.is_none() {
            return Err(IdentityError::Unavailable(
                "no key of the identity provider is known yet".into(),
            ));
        }
        Err(IdentityError::Invalid("unknown_key"))
    }
}

/// `max-age=N` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|d| {
        let (name, value) = d.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// The one algorithm a key may verify, from its type (and, for RSA, the algorithm it
/// declares). `None` for keys never accepted (symmetric ones) or inconsistent ones.
fn pinned_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm;
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match declared {
            None | Some(KeyAlgorithm::RS256) => Algorithm::RS256,
            Some(KeyAlgorithm::RS384) => Algorithm::RS384,
            Some(KeyAlgorithm::RS512) => Algorithm::RS512,
            Some(KeyAlgorithm::PS256) => Algorithm::PS256,
            Some(KeyAlgorithm::PS384) => Algorithm::PS384,
            Some(KeyAlgorithm::PS512) => Algorithm::PS512,
            Some(_) => return None,
        },
        AlgorithmParameters::EllipticCurve(ec) => match (ec.curve.clone(), declared) {
            (EllipticCurve::P256, None | Some(KeyAlgorithm::ES256)) => Algorithm::ES256,
            (EllipticCurve::P384, None | Some(KeyAlgorithm::ES384)) => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match (okp.curve.clone(), declared) {
            (EllipticCurve::Ed25519, None | Some(KeyAlgorithm::EdDSA)) => Algorithm::EdDSA,
            _ => return None,
        },
        // Symmetric keys, and whatever else: never.
        _ => return None,
    };
    Some(by_type)
}

/// The unverified payload of a compact JWS.
fn peek_payload(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The value at a dotted path of claims.
fn claim<'v>(claims: &'v Value, path: &str) -> Option<&'v Value> {
    claims
        .get(path)
        .or_else(|| path.split('.').try_fold(claims, |v, part| v.get(part)))
}

fn map_error(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => "invalid_signature",
        ErrorKind::InvalidIssuer => "wrong_issuer",
        ErrorKind::InvalidAudience => "wrong_audience",
        ErrorKind::ExpiredSignature => "expired_token",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        _ => "invalid_token",
    }
}

#[async_trait]
impl ExternalIdentity for OidcVerifier {
    fn recognizes(&self, token: &str) -> bool {
        peek_payload(token).is_some_and(|p| p["iss"].as_str() == Some(self.config.issuer.as_str()))
    }

    async fn verify(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<ExternalClaims, IdentityError> {
        let leeway =
            time::Duration::seconds(i64::try_from(self.config.leeway.as_secs()).unwrap_or(60));
        let cache_key = self.verified.key(token);
        if let Some(claims) = self.verified.get(cache_key, token) {
            let fresh = self
                .keys
                .read()
                .await
                .fresh_until
                .is_some_and(|t| Instant::now() < t);
            if fresh {
                if now >= claims.expires_at + leeway {
                    return Err(IdentityError::Invalid("expired_token"));
                }
                return Ok(claims);
            }
        }
        let claims = self.verify_fresh(token, now).await?;
        self.verified.insert(cache_key, token, &claims);
        Ok(claims)
    }
}

impl OidcVerifier {
    /// A full verification: key, signature, claims, times.
    async fn verify_fresh(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<ExternalClaims, IdentityError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| IdentityError::Invalid("invalid_token"))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or(IdentityError::Invalid("invalid_token"))?;
        let (key, alg) = self.key(kid).await?;
        if header.alg != alg {
            return Err(IdentityError::Invalid("invalid_signature"));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Times are checked below against the core's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| IdentityError::Invalid(map_error(&e)))?;
        let claims = data.claims;
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(60);
        let at = |name: &str| claims.get(name).and_then(Value::as_i64);
        let now_s = now.unix_timestamp();
        let exp = at("exp").ok_or(IdentityError::Invalid("invalid_token"))?;
        if now_s >= exp.saturating_add(leeway) {
            return Err(IdentityError::Invalid("expired_token"));
        }
        if at("nbf").is_some_and(|nbf| now_s < nbf.saturating_sub(leeway))
            || at("iat").is_some_and(|iat| now_s < iat.saturating_sub(leeway))
        {
            return Err(IdentityError::Invalid("not_yet_valid"));
        }
        let subject = claims["sub"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(IdentityError::Invalid("invalid_token"))?
            .to_owned();
        let name = claim(&claims, &self.config.name_claim)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(&subject)
            .to_owned();
        let roles = match claim(&claims, &self.config.role_claim) {
            Some(Value::String(r)) => vec![r.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(ExternalClaims {
            name,
            subject,
            roles,
            expires_at: OffsetDateTime::from_unix_timestamp(exp)
                .map_err(|_| IdentityError::Invalid("invalid_token"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lifetimes_come_from_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("Max-Age=\"30\""), Some(Duration::from_secs(30)));
    }

    #[test]
    fn symmetric_and_inconsistent_keys_are_never_used() {
        let oct: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "oct", "kid": "k", "k": "c2VjcmV0", "alg": "HS256"
        }))
        .unwrap();
        assert_eq!(pinned_algorithm(&oct), None);
        let ec_claiming_rsa: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "kid": "k", "crv": "P-256", "alg": "RS256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap();
        assert_eq!(pinned_algorithm(&ec_claiming_rsa), None);
    }

    #[test]
    fn claims_are_found_by_dotted_paths() {
        let claims = serde_json::json!({"realm_access": {"roles": ["admin"]}, "a.b": 1});
        assert_eq!(
            claim(&claims, "realm_access.roles"),
            Some(&serde_json::json!(["admin"]))
        );
        assert_eq!(claim(&claims, "a.b"), Some(&serde_json::json!(1)));
    }
}
