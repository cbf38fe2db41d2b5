//! `TokenIntrospector`: checks the bearer tokens of a plugin's callers with the core
//! (`POST /tokens/introspect`, authenticated with the plugin's own token) and caches the
//! answers briefly, so a plugin that declares `authentication_required` can enforce it
//! without ever seeing the core's signing secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::client::{CoreClient, CoreError, Introspection};
use crate::config::MAX_INTROSPECTION_CACHE;
use crate::identity::Shared;
use crate::manifest::PluginTrait;
use crate::secret::Secret;

/// How long an inactive answer is cached (a token never becomes valid later, except a
/// disabled plugin's, which may be enabled again).
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Most answers kept; past it, expired ones are dropped, then everything.
const CACHE_CAPACITY: usize = 10_000;

/// Why a token could not be checked (as opposed to: it was checked and is inactive).
#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    /// The plugin is not registered yet, so it has no token to ask the core with.
    #[error("the plugin is not registered with the core yet")]
    NotRegistered,
    /// The core refused the plugin's own token (the runner re-registers).
    #[error("the core refused this plugin's own token: {0}")]
    CallerRefused(#[source] CoreError),
    /// The core could not answer.
    #[error("introspection failed: {0}")]
    Core(#[source] CoreError),
}

/// Why a caller is refused by [`TokenIntrospector::authorize`]; each maps to one HTTP
/// status for the plugin's own API.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header (401).
    #[error("missing bearer token")]
    MissingToken,
    /// The token is not active: forged, expired, replaced, or its plugin is gone or
    /// disabled (401).
    #[error("token is not active")]
    InactiveToken,
    /// The token is active but its plugin does not declare a required trait (403).
    #[error("caller lacks the trait `{0}`")]
    MissingTrait(PluginTrait),
    /// The token could not be checked (503).
    #[error(transparent)]
    Unavailable(#[from] IntrospectError),
}

impl AuthError {
    /// The HTTP status the plugin should answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingToken | Self::InactiveToken => 401,
            Self::MissingTrait(_) => 403,
            Self::Unavailable(_) => 503,
        }
    }

    /// A stable error code for the answer body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::InactiveToken => "unauthorized",
            Self::MissingTrait(_) => "forbidden",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

#[derive(Debug)]
struct Inner {
    client: CoreClient,
    shared: Arc<Shared>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Introspection, Instant)>>,
}

/// Checks callers' tokens with the core. Cheap to clone. Answers are cached for the
/// configured time (at most 30 s), never past the token's expiry.
#[derive(Clone, Debug)]
pub struct TokenIntrospector {
    inner: Arc<Inner>,
}

impl TokenIntrospector {
    pub(crate) fn new(client: CoreClient, shared: Arc<Shared>, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                shared,
                ttl: ttl.min(MAX_INTROSPECTION_CACHE),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// An introspector that authenticates with a fixed `caller_token` (for programs
    /// that manage their registration themselves instead of using [`crate::Runner`]).
    pub fn with_token(
        client: CoreClient,
        plugin_id: &str,
        caller_token: Secret,
        ttl: Duration,
    ) -> Self {
        Self::new(
            client,
            Arc::new(Shared::new(plugin_id.to_owned(), Some(caller_token))),
            ttl,
        )
    }

    /// The core's answer about `token`, from the cache when fresh.
    ///
    /// # Errors
    /// [`IntrospectError`] when the core could not be asked; an invalid token is
    /// `Ok` with `active: false`.
    pub async fn introspect(&self, token: &str) -> Result<Introspection, IntrospectError> {
        let now = Instant::now();
        if let Some((answer, until)) = self.cache().get(token)
            && *until > now
        {
            return Ok(answer.clone());
        }
        let caller = self
            .inner
            .shared
            .token()
            .ok_or(IntrospectError::NotRegistered)?;
        let answer = match self.inner.client.introspect(&caller, token).await {
            Ok(a) => a,
            Err(
                e @ (CoreError::Unauthorized { .. }
                | CoreError::Forbidden { .. }
                | CoreError::PluginDisabled),
            ) => {
                tracing::warn!(plugin_id = %self.inner.shared.plugin_id, error = %e, "core refused this plugin's token on introspection");
                self.inner.shared.token_refused.notify_one();
                return Err(IntrospectError::CallerRefused(e));
            }
            Err(e) => return Err(IntrospectError::Core(e)),
        };
        let answer = if answer.active && expired(answer.exp) {
            Introspection::inactive()
        } else {
            answer
        };
        let keep = if answer.active {
            let left = answer
                .exp
                .map_or(self.inner.ttl, |exp| seconds_until(exp).min(self.inner.ttl));
            self.inner.ttl.min(left)
        } else {
            NEGATIVE_TTL.min(self.inner.ttl)
        };
        if !keep.is_zero() {
            let mut cache = self.cache();
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(token.to_owned(), (answer.clone(), now + keep));
        }
        Ok(answer)
    }

    /// Checks an `Authorization` header value: a bearer token that is active and whose
    /// plugin declares every trait in `required`. Returns the core's answer about it.
    ///
    /// # Errors
    /// [`AuthError`], whose [`AuthError::status`] is the status to answer with.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        required: &[PluginTrait],
    ) -> Result<Introspection, AuthError> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(AuthError::MissingToken)?;
        let answer = self.introspect(token).await?;
        if !answer.active {
            return Err(AuthError::InactiveToken);
        }
        if let Some(missing) = required.iter().find(|t| !answer.has_trait(**t)) {
            return Err(AuthError::MissingTrait(*missing));
        }
        Ok(answer)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Introspection, Instant)>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The token of a `Bearer` authorization value (scheme case-insensitive), if any.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn expired(exp: Option<i64>) -> bool {
    exp.is_some_and(|exp| exp <= unix_now())
}

fn seconds_until(exp: i64) -> Duration {
    Duration::from_secs(u64::try_from(exp - unix_now()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn auth_errors_map_to_statuses() {
        assert_eq!(AuthError::MissingToken.status(), 401);
        assert_eq!(AuthError::InactiveToken.status(), 401);
        assert_eq!(
            AuthError::MissingTrait(PluginTrait::HandlesPii).status(),
            403
        );
        assert_eq!(
            AuthError::Unavailable(IntrospectError::NotRegistered).status(),
            503
        );
        assert_eq!(
            AuthError::MissingTrait(PluginTrait::HandlesPii).to_string(),
            "caller lacks the trait `handles_pii`"
        );
    }
}
