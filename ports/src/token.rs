//! `TokenIssuer`: signed tokens for plugins.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::BoxError;
use crate::plugin::PluginId;
use crate::secret::Secret;

/// The verified claims of a plugin token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The plugin the token was issued to (`sub` and `plugin_id`).
    pub plugin_id: PluginId,
    /// The token's unique id; the store keeps the current one per plugin.
    pub jti: String,
    /// Issued at.
    pub issued_at: OffsetDateTime,
    /// Expires at.
    pub expires_at: OffsetDateTime,
}

/// A freshly issued token. The token itself is a [`Secret`]: it goes to its plugin and
/// nowhere else.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// The encoded token.
    pub token: Secret,
    /// Its unique id.
    pub jti: String,
    /// When it expires.
    pub expires_at: OffsetDateTime,
}

/// How to verify a token.
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions {
    /// The time to check expiry against (from the [`crate::Clock`]).
    pub now: OffsetDateTime,
    /// Accept a token that expired less than this long ago (re-registration grace).
    /// Zero for every ordinary use.
    pub expired_grace: Duration,
}

/// Why a token was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, bad signature, unknown key, wrong algorithm, issuer, audience or type.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// Well-formed and correctly signed, but expired (beyond any grace given).
    #[error("token expired")]
    Expired,
    /// The issuer could not sign.
    #[error("token signing failed")]
    Signing(#[source] BoxError),
}

/// Issues and verifies plugin tokens.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait TokenIssuer: Send + Sync {
    /// Issues a token for `plugin_id`, valid from `now` for the issuer's configured
    /// lifetime, with a fresh unique `jti`.
    ///
    /// # Errors
    /// MUST return [`TokenError::Signing`] if it cannot sign.
    async fn issue(
        &self,
        plugin_id: &PluginId,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, TokenError>;

    /// Verifies signature, algorithm, issuer, audience, type and expiry (with at most
    /// 5 s of leeway, plus `opts.expired_grace`) and returns the claims.
    ///
    /// # Errors
    /// MUST return [`TokenError::Expired`] for a correctly signed token past its expiry
    /// and grace, [`TokenError::Invalid`] for anything else wrong. It MUST NOT check
    /// revocation: that is the store's `token_jti`.
    async fn verify(&self, token: &str, opts: VerifyOptions) -> Result<TokenClaims, TokenError>;
}
