//! `JwtTokenIssuer`: HS256 JWTs, algorithm pinned, key rotation by `kid`.
//!
//! Claims: `sub` and `plugin_id` (the plugin), `type: "plugin"`, `iss: "vivified"`,
//! `aud: "vivified-core"`, `iat`, `exp`, `jti`. Tokens are signed with the current
//! secret; tokens signed with a previous secret (listed in `previous`) still verify, so
//! secrets rotate without downtime. The `kid` header is a fingerprint of the secret
//! (an HMAC of a fixed label), never the secret.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use vivified_ports::{
    IssuedToken, PluginId, Secret, TokenClaims, TokenError, TokenIssuer, VerifyOptions,
};

/// Issuer claim.
pub const ISSUER: &str = "vivified";
/// Audience claim.
pub const AUDIENCE: &str = "vivified-core";
/// Clock leeway on expiry and issue time.
pub const LEEWAY: Duration = Duration::from_secs(5);

/// Settings of a [`JwtTokenIssuer`].
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// Signs new tokens (and verifies them).
    pub secret: Secret,
    /// Older secrets whose tokens still verify.
    pub previous: Vec<Secret>,
    /// Lifetime of a new token.
    pub ttl: Duration,
}

impl JwtConfig {
    /// A config with `secret`, no previous secrets and a 24 h lifetime.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            previous: Vec::new(),
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
}

#[derive(Serialize, Deserialize)]
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
pub struct JwtTokenIssuer {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokenIssuer")
            .field("kid", &self.kid)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn key_id(secret: &Secret) -> Result<String, JwtConfigError> {
    let key = EncodingKey::from_secret(secret.expose().as_bytes());
    let mac = jsonwebtoken::crypto::sign(b"vivified-key-id", &key, Algorithm::HS256)
        .map_err(|_| JwtConfigError::KeyId)?;
    Ok(mac.chars().take(16).collect())
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
        for secret in std::iter::once(&config.secret).chain(&config.previous) {
            if secret.expose().is_empty() {
                return Err(JwtConfigError::EmptySecret);
            }
            decoding
                .entry(key_id(secret)?)
                .or_insert_with(|| DecodingKey::from_secret(secret.expose().as_bytes()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = false; // checked against the Clock port below
        validation.validate_nbf = false;
        validation.validate_aud = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Self {
            kid: key_id(&config.secret)?,
            encoding: EncodingKey::from_secret(config.secret.expose().as_bytes()),
            decoding,
            validation,
            ttl: config.ttl,
        })
    }

    /// The key id of the current secret.
    pub fn kid(&self) -> &str {
        &self.kid
    }
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
        let claims = Claims {
            sub: plugin_id.to_string(),
            plugin_id: plugin_id.to_string(),
            typ: "plugin".to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: ts(now),
            exp: ts(expires_at),
            jti: jti.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Signing(Box::new(e)))?;
        // Truncate to whole seconds: that is what the token says.
        let expires_at = OffsetDateTime::from_unix_timestamp(ts(expires_at))
            .map_err(|e| TokenError::Signing(Box::new(e)))?;
        Ok(IssuedToken {
            token: Secret::new(token),
            jti,
            expires_at,
        })
    }

    async fn verify(&self, token: &str, opts: VerifyOptions) -> Result<TokenClaims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid("malformed"))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid("algorithm"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::Invalid("unknown key"))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            TokenError::Invalid(match e.kind() {
                K::InvalidSignature => "signature",
                K::InvalidIssuer => "issuer",
                K::InvalidAudience => "audience",
                K::InvalidAlgorithm => "algorithm",
                _ => "malformed",
            })
        })?;
        let c = data.claims;
        if c.typ != "plugin" {
            return Err(TokenError::Invalid("type"));
        }
        if c.sub != c.plugin_id {
            return Err(TokenError::Invalid("subject"));
        }
        let plugin_id = PluginId::parse(&c.sub).map_err(|_| TokenError::Invalid("subject"))?;
        let leeway = LEEWAY.as_secs() as i64;
        let now = ts(opts.now);
        if c.iat > now + leeway {
            return Err(TokenError::Invalid("issued in the future"));
        }
        let grace = i64::try_from(opts.expired_grace.as_secs()).unwrap_or(i64::MAX);
        if now > c.exp.saturating_add(leeway).saturating_add(grace) {
            return Err(TokenError::Expired);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &str, previous: &[&str]) -> JwtTokenIssuer {
        let mut c = JwtConfig::new(Secret::new(secret));
        c.previous = previous.iter().map(|s| Secret::new(*s)).collect();
        c.ttl = Duration::from_secs(3600);
        JwtTokenIssuer::new(c).unwrap()
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
        for k in [
            "sub",
            "plugin_id",
            "type",
            "iss",
            "aud",
            "iat",
            "exp",
            "jti",
        ] {
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
}
