//! `ExternalIdentity`: operators who log in with the organisation's identity provider
//! (OpenID Connect) present its token; the port verifies it and says who it names.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::BoxError;

/// What a verified external token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalClaims {
    /// The name to act under (the configured name claim, else `sub`).
    pub name: String,
    /// The subject (`sub`), stable at the provider.
    pub subject: String,
    /// The role names the token carries (the configured role claim), unmapped.
    pub roles: Vec<String>,
    /// When the token expires.
    pub expires_at: OffsetDateTime,
}

/// Why an external token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The token does not verify; the reason is a stable code (`expired_token`,
    /// `invalid_signature`, `unknown_key`, `wrong_issuer`, `wrong_audience`,
    /// `not_yet_valid`, `invalid_token`).
    #[error("the token does not verify: {0}")]
    Invalid(&'static str),
    /// No keys of the provider are known (it has not been reachable); other
    /// credentials keep working.
    #[error("the identity provider's keys are not known")]
    Unavailable(#[source] BoxError),
}

/// An identity provider's tokens.
#[async_trait]
pub trait ExternalIdentity: Send + Sync {
    /// Whether `token` claims to come from this provider (its unverified issuer is the
    /// provider's). Cheap: no I/O, no signature check.
    fn recognizes(&self, token: &str) -> bool;

    /// Verifies `token` at `now`: signature by a key of the provider (fetched and
    /// cached by the adapter), algorithm pinned to the key's type, issuer, audience,
    /// expiry and not-before with a bounded leeway.
    ///
    /// # Errors
    /// MUST return [`IdentityError::Invalid`] for any token that does not verify, and
    /// [`IdentityError::Unavailable`] only while no key of the provider is known.
    async fn verify(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<ExternalClaims, IdentityError>;
}
