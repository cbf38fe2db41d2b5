//! Operators as named principals: their authentication by API token (or the bootstrap
//! admin token), and their management. The store keeps a token's SHA-256, never the
//! token; a token is `viv_op_<prefix>_<secret>`, where the prefix is public (it names
//! the token in answers and audit entries) and the secret has 256 random bits.

use sha2::{Digest, Sha256};
use vivified_ports::{Operator, OperatorName, OperatorToken, Role};

use super::*;

/// Every operator API token starts with this.
pub const OPERATOR_TOKEN_PREFIX: &str = "viv_op_";

/// The name of the principal the bootstrap admin token (`VIVIFIED_ADMIN_TOKEN`)
/// authenticates; no operator may take it.
pub const BOOTSTRAP_OPERATOR: &str = "bootstrap";

/// How long an operator token lives unless asked otherwise.
pub const DEFAULT_OPERATOR_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// The longest life of an operator token.
pub const MAX_OPERATOR_TOKEN_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// The most operators one listing returns.
pub const MAX_OPERATOR_PAGE: usize = 1000;

/// The longest token label, in characters.
pub const MAX_TOKEN_LABEL_CHARS: usize = 100;

/// Hex characters of a token's public prefix (48 bits: collisions are retried).
const PREFIX_HEX: usize = 12;
/// Bytes of a token's secret (256 bits).
const SECRET_BYTES: usize = 32;

/// How a principal proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// An operator API token.
    Token,
    /// The bootstrap admin token.
    BootstrapToken,
    /// An operator token, with the operator raised to admin by a break-glass grant.
    BreakGlass,
    /// A token of the organisation's identity provider (OpenID Connect).
    Oidc,
}

impl AuthMethod {
    /// Its name in audit entries and answers.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::BootstrapToken => "bootstrap_token",
            Self::BreakGlass => "break_glass",
            Self::Oidc => "oidc",
        }
    }
}

/// An authenticated operator: who, with which role, by which credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The operator's name ([`BOOTSTRAP_OPERATOR`] for the bootstrap token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it authenticated.
    pub auth: AuthMethod,
    /// The public prefix of the credential (operator tokens), never the secret.
    pub credential: Option<String>,
    /// When the credential stops working (`None`: the bootstrap token does not expire).
    pub expires_at: Option<OffsetDateTime>,
}

impl Principal {
    /// The bootstrap principal: the admin token's.
    #[must_use]
    pub fn bootstrap() -> Self {
        Self {
            name: BOOTSTRAP_OPERATOR.to_owned(),
            role: Role::Admin,
            auth: AuthMethod::BootstrapToken,
            credential: None,
            expires_at: None,
        }
    }

    /// Its name as an audit entry's actor: `operator:<name>`.
    #[must_use]
    pub fn actor(&self) -> String {
        format!("operator:{}", self.name)
    }

    /// `Ok` if its role allows `operation`, else 403 naming the role needed.
    ///
    /// # Errors
    /// [`RegistryError::RoleRequired`].
    pub fn require(&self, operation: Operation) -> Result<(), RegistryError> {
        let needed = operation.required_role();
        if self.role.includes(needed) {
            Ok(())
        } else {
            Err(RegistryError::RoleRequired(needed))
        }
    }

    /// Whether it is the stored operator `name`, authenticated by one of its own
    /// tokens (an identity provider's user of the same name is not).
    #[must_use]
    pub fn is(&self, name: &OperatorName) -> bool {
        matches!(self.auth, AuthMethod::Token | AuthMethod::BreakGlass)
            && self.name == name.as_str()
    }

    /// `details` with how the principal authenticated (`auth`, and `credential`: the
    /// token's public prefix), for its audit entries.
    #[must_use]
    pub fn stamp(&self, details: Value) -> Value {
        let mut details = match details {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => {
                let mut map = serde_json::Map::new();
                map.insert("value".to_owned(), other);
                map
            }
        };
        details.insert("auth".to_owned(), json!(self.auth.as_str()));
        if let Some(prefix) = &self.credential {
            details.insert("credential".to_owned(), json!(prefix));
        }
        Value::Object(details)
    }
}

/// A freshly created operator token: the token goes to its caller once.
#[derive(Clone, Debug)]
pub struct IssuedOperatorToken {
    /// The token.
    pub token: Secret,
    /// Its public prefix.
    pub prefix: String,
    /// Its label.
    pub label: String,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

/// An operator and its tokens' public parts.
#[derive(Clone, Debug)]
pub struct OperatorDetails {
    /// The operator.
    pub operator: Operator,
    /// Its tokens (hashes included; callers show prefixes, labels and times only).
    pub tokens: Vec<OperatorToken>,
}

/// Lowercase hex SHA-256 of an operator token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The prefix of a well-formed operator token.
fn prefix_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(OPERATOR_TOKEN_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (hex(prefix, PREFIX_HEX) && hex(secret, SECRET_BYTES * 2)).then_some(prefix)
}

/// Whether `bearer` has the shape of an operator token.
pub(super) fn is_operator_token(bearer: &str) -> bool {
    bearer.starts_with(OPERATOR_TOKEN_PREFIX)
}

fn random_hex(bytes: usize) -> Result<String, RegistryError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| RegistryError::Unavailable {
        what: "random number generator",
        source: e.to_string().into(),
    })?;
    Ok(hex::encode(buf))
}

pub(super) fn operator_name(name: &str) -> Result<OperatorName, RegistryError> {
    OperatorName::parse(name).map_err(|_| {
        RegistryError::InvalidRequest(
            "`name` must be 1 to 63 characters: a lowercase letter or digit, then lowercase \
             letters, digits, '.', '_' or '-'",
        )
    })
}

impl Registry {
    /// The operator a well-formed `viv_op_…` token belongs to. Every wrong token —
    /// unknown prefix, wrong secret, revoked — is `invalid_token` and costs the same
    /// work (one store read, one hash, one constant-time comparison): the answer does
    /// not tell whether a prefix exists.
    pub(super) async fn authenticate_operator_token(
        &self,
        token: &str,
    ) -> Result<Principal, RegistryError> {
        let principal = self.operator_principal(token).await;
        if let Err(RegistryError::Unauthorized(reason)) = &principal {
            self.note_rejection(None, reason).await;
        }
        principal
    }

    /// The operator an identity provider's token names, with the highest role it
    /// carries (mapped by [`RegistryConfig::oidc_role_map`]).
    pub(super) async fn authenticate_external(
        &self,
        identity: &dyn vivified_ports::ExternalIdentity,
        token: &str,
    ) -> Result<Principal, RegistryError> {
        let claims = match identity.verify(token, self.now()).await {
            Ok(claims) => claims,
            Err(vivified_ports::IdentityError::Invalid(reason)) => {
                self.note_rejection(None, reason).await;
                return Err(RegistryError::Unauthorized(reason));
            }
            Err(vivified_ports::IdentityError::Unavailable(source)) => {
                return Err(RegistryError::Unavailable {
                    what: "identity provider",
                    source,
                });
            }
        };
        if claims.name.chars().count() > 255 || claims.name.chars().any(char::is_control) {
            return Err(RegistryError::Unauthorized("invalid_token"));
        }
        let role = claims
            .roles
            .iter()
            .filter_map(|r| {
                self.inner
                    .config
                    .oidc_role_map
                    .iter()
                    .find(|(name, _)| name == r)
                    .map(|(_, role)| *role)
            })
            .max()
            .ok_or(RegistryError::Forbidden("no_role"))?;
        let subject: String = claims.subject.chars().take(255).collect();
        Ok(Principal {
            name: claims.name,
            role,
            auth: AuthMethod::Oidc,
            credential: Some(format!("sub:{subject}")),
            expires_at: Some(claims.expires_at),
        })
    }

    async fn operator_principal(&self, token: &str) -> Result<Principal, RegistryError> {
        let prefix = prefix_of(token).ok_or(RegistryError::Unauthorized("invalid_token"))?;
        let found = self.inner.ports.operators.operator_token(prefix).await?;
        let presented = token_hash(token);
        // Compared with something of the same length whether or not the prefix exists.
        let stored = found
            .as_ref()
            .map_or("0".repeat(presented.len()), |(t, _)| t.token_hash.clone());
        let matches = bool::from(presented.as_bytes().ct_eq(stored.as_bytes()));
        let Some((token, operator)) = found.filter(|_| matches) else {
            return Err(RegistryError::Unauthorized("invalid_token"));
        };
        let now = self.now();
        if now >= token.expires_at || !operator.is_current(now) {
            return Err(RegistryError::Unauthorized("expired_token"));
        }
        let expires_at = operator
            .expires_at
            .map_or(token.expires_at, |o| o.min(token.expires_at));
        let mut principal = Principal {
            name: operator.name.to_string(),
            role: operator.role,
            auth: AuthMethod::Token,
            credential: Some(token.prefix),
            expires_at: Some(expires_at),
        };
        // An emergency elevation holds only while break-glass is on and until its end.
        if let Some(grant) = &operator.break_glass
            && self.inner.config.break_glass
            && operator.role == Role::Operator
            && now < grant.until
        {
            principal.role = Role::Admin;
            principal.auth = AuthMethod::BreakGlass;
            principal.expires_at = Some(expires_at.min(grant.until));
        }
        Ok(principal)
    }

    /// The operator behind `bearer`, if its role allows `operation`.
    ///
    /// # Errors
    /// `Unauthorized` (no or a bad credential), `Forbidden("admin_token_required")` (a
    /// plugin's token), `RoleRequired` (an operator whose role is too low),
    /// `Unavailable`.
    pub async fn authorize(
        &self,
        bearer: Option<&str>,
        operation: Operation,
    ) -> Result<Principal, RegistryError> {
        match self.authenticate(bearer).await? {
            Caller::Operator(p) => p.require(operation).map(|()| p),
            Caller::Plugin(claims) => Err(self.refuse_plugin_on_admin_route(&claims).await),
        }
    }

    /// The operator behind `bearer` if it is operator `name` itself, or if its role
    /// allows `operation`; and `name` parsed. 401/403 come first: a name that is not
    /// an operator name is 404 only to a caller allowed the operation.
    async fn authorize_self_or(
        &self,
        bearer: Option<&str>,
        name: &str,
        operation: Operation,
    ) -> Result<(Principal, OperatorName), RegistryError> {
        let parsed = OperatorName::parse(name).ok();
        let principal = match self.authenticate(bearer).await? {
            Caller::Operator(p) if parsed.as_ref().is_some_and(|n| p.is(n)) => p,
            Caller::Operator(p) => p.require(operation).map(|()| p)?,
            Caller::Plugin(claims) => {
                return Err(self.refuse_plugin_on_admin_route(&claims).await);
            }
        };
        Ok((principal, parsed.ok_or(RegistryError::NotFound)?))
    }

    pub(super) async fn audit_by(
        &self,
        principal: &Principal,
        action: &str,
        target: &str,
        trace_id: &str,
        details: Value,
    ) -> Result<(), RegistryError> {
        self.audit(
            trace_id,
            Subject {
                actor: &principal.actor(),
                action,
                target,
            },
            AuditOutcome::Success,
            action,
            principal.stamp(details),
        )
        .await
    }

    /// Creates operator `name` with `role` (admin only). Audited (`operator.create`).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `RoleRequired`, `InvalidRequest` (a bad or reserved
    /// name, an unknown role, an expiry not in the future), `Conflict("operator_exists")`,
    /// `Unavailable`.
    pub async fn create_operator(
        &self,
        bearer: Option<&str>,
        name: &str,
        role: &str,
        expires_at: Option<OffsetDateTime>,
        trace_id: &str,
    ) -> Result<Operator, RegistryError> {
        let principal = self.authorize(bearer, Operation::ManageOperators).await?;
        let name = operator_name(name)?;
        if name.as_str() == BOOTSTRAP_OPERATOR {
            return Err(RegistryError::InvalidRequest(
                "`bootstrap` is reserved for the admin token's principal",
            ));
        }
        let role = Role::parse(role).ok_or(RegistryError::InvalidRequest(
            "`role` must be one of viewer, auditor, operator, admin",
        ))?;
        let now = self.now();
        if expires_at.is_some_and(|e| e <= now) {
            return Err(RegistryError::InvalidRequest(
                "`expires_at` must be in the future",
            ));
        }
        let operator = Operator {
            name,
            role,
            created_at: now,
            created_by: principal.actor(),
            expires_at,
            break_glass: None,
        };
        match self.inner.ports.operators.create_operator(&operator).await {
            Err(StoreError::Conflict) => return Err(RegistryError::Conflict("operator_exists")),
            other => other?,
        }
        let target = format!("operator:{}", operator.name);
        self.audit_by(
            &principal,
            "operator.create",
            &target,
            trace_id,
            json!({
                "role": role.as_str(),
                "expires_at": expires_at.map(OffsetDateTime::unix_timestamp),
            }),
        )
        .await?;
        tracing::info!(operator = %operator.name, role = %role, "operator created");
        Ok(operator)
    }

    /// Up to `limit` operators sorted by name, after `after` (auditor and up).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `RoleRequired`, `InvalidRequest` (a bad `after`),
    /// `Unavailable`.
    pub async fn list_operators(
        &self,
        bearer: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Operator>, RegistryError> {
        self.authorize(bearer, Operation::ReadOperators).await?;
        let after = after.map(operator_name).transpose()?;
        Ok(self
            .inner
            .ports
            .operators
            .list_operators(after.as_ref(), limit.min(MAX_OPERATOR_PAGE))
            .await?)
    }

    /// Operator `name` and its tokens (auditor and up, or the operator itself).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `RoleRequired`, `NotFound`, `Unavailable`.
    pub async fn operator(
        &self,
        bearer: Option<&str>,
        name: &str,
    ) -> Result<OperatorDetails, RegistryError> {
        let (_, name) = self
            .authorize_self_or(bearer, name, Operation::ReadOperators)
            .await?;
        let operators = &self.inner.ports.operators;
        let operator = operators
            .operator(&name)
            .await?
            .ok_or(RegistryError::NotFound)?;
        let tokens = operators.operator_tokens(&name).await?;
        Ok(OperatorDetails { operator, tokens })
    }

    /// Deletes operator `name` and its tokens (admin only): they authenticate nothing
    /// from the next request on, on every replica. Audited (`operator.delete`).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `RoleRequired`, `NotFound`, `Unavailable`.
    pub async fn delete_operator(
        &self,
        bearer: Option<&str>,
        name: &str,
        trace_id: &str,
    ) -> Result<Operator, RegistryError> {
        let principal = self.authorize(bearer, Operation::ManageOperators).await?;
        let name = OperatorName::parse(name).map_err(|_| RegistryError::NotFound)?;
        let removed = match self.inner.ports.operators.delete_operator(&name).await {
            Err(StoreError::NotFound) => return Err(RegistryError::NotFound),
            other => other?,
        };
        self.audit_by(
            &principal,
            "operator.delete",
            &format!("operator:{name}"),
            trace_id,
            json!({ "role": removed.role.as_str() }),
        )
        .await?;
        tracing::info!(operator = %name, "operator deleted");
        Ok(removed)
    }

    /// Creates an API token for operator `name` (admin, or the operator itself),
    /// valid for `ttl` (default [`DEFAULT_OPERATOR_TOKEN_TTL`], at most
    /// [`MAX_OPERATOR_TOKEN_TTL`]). The token is returned once; the store keeps its
    /// hash. Audited (`operator.token.create`, with the prefix, never the token).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `RoleRequired`, `NotFound`, `InvalidRequest` (a bad
    /// label or lifetime), `Unavailable`.
    pub async fn create_operator_token(
        &self,
        bearer: Option<&str>,
        name: &str,
        label: &str,
        ttl: Option<Duration>,
        trace_id: &str,
    ) -> Result<IssuedOperatorToken, RegistryError> {
        let (principal, name) = self
            .authorize_self_or(bearer, name, Operation::ManageOperators)
            .await?;
        if label.chars().count() > MAX_TOKEN_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(RegistryError::InvalidRequest(
                "`label` must be at most 100 characters, none of them a control character",
            ));
        }
        let ttl = ttl.unwrap_or(DEFAULT_OPERATOR_TOKEN_TTL);
        if ttl.is_zero() || ttl > MAX_OPERATOR_TOKEN_TTL {
            return Err(RegistryError::InvalidRequest(
                "`ttl` must be a duration between 1s and 366d, e.g. \"90d\"",
            ));
        }
        let now = self.now();
        let mut attempts = 0;
        let (token, stored) = loop {
            let prefix = random_hex(PREFIX_HEX / 2)?;
            let token = format!(
                "{OPERATOR_TOKEN_PREFIX}{prefix}_{}",
                random_hex(SECRET_BYTES)?
            );
            let stored = OperatorToken {
                prefix,
                operator: name.clone(),
                token_hash: token_hash(&token),
                label: label.to_owned(),
                created_at: now,
                expires_at: now + ttl,
            };
            match self
                .inner
                .ports
                .operators
                .create_operator_token(&stored)
                .await
            {
                Ok(()) => break (token, stored),
                Err(StoreError::NotFound) => return Err(RegistryError::NotFound),
                Err(StoreError::Conflict) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        };
        self.audit_by(
            &principal,
            "operator.token.create",
            &format!("operator:{name}"),
            trace_id,
            json!({
                "prefix": stored.prefix,
                "label": stored.label,
                "expires_at": stored.expires_at.unix_timestamp(),
            }),
        )
        .await?;
        tracing::info!(operator = %name, prefix = %stored.prefix, "operator token created");
        Ok(IssuedOperatorToken {
            token: Secret::new(token),
            prefix: stored.prefix,
            label: stored.label,
            expires_at: stored.expires_at,
        })
    }

    /// Revokes operator `name`'s token with `prefix` (admin, or the operator itself):
    /// it authenticates nothing from the next request on, on every replica. Audited
    /// (`operator.token.revoke`).
    ///
    /// # Errors
    /// `Unauthorized`, `Forbidden`, `RoleRequired`, `NotFound`, `Unavailable`.
    pub async fn revoke_operator_token(
        &self,
        bearer: Option<&str>,
        name: &str,
        prefix: &str,
        trace_id: &str,
    ) -> Result<OperatorToken, RegistryError> {
        let (principal, name) = self
            .authorize_self_or(bearer, name, Operation::ManageOperators)
            .await?;
        let revoked = match self
            .inner
            .ports
            .operators
            .delete_operator_token(&name, prefix)
            .await
        {
            Err(StoreError::NotFound) => return Err(RegistryError::NotFound),
            other => other?,
        };
        self.audit_by(
            &principal,
            "operator.token.revoke",
            &format!("operator:{name}"),
            trace_id,
            json!({ "prefix": revoked.prefix, "label": revoked.label }),
        )
        .await?;
        tracing::info!(operator = %name, prefix = %revoked.prefix, "operator token revoked");
        Ok(revoked)
    }

    /// Who `bearer` is: an operator, or a plugin whose token is still current (a
    /// disabled plugin included).
    ///
    /// # Errors
    /// `Unauthorized`, `Unavailable`.
    pub async fn whoami(&self, bearer: Option<&str>) -> Result<Caller, RegistryError> {
        let caller = self.authenticate(bearer).await?;
        if let Caller::Plugin(claims) = &caller {
            self.current_record(claims).await?;
        }
        Ok(caller)
    }

    /// How many named, current admins there are (the start-up warning about the
    /// bootstrap token).
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn named_admins(&self) -> Result<u64, RegistryError> {
        Ok(self
            .inner
            .ports
            .operators
            .count_operators(Role::Admin, self.now())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_tokens_have_a_prefix() {
        let secret = "ab".repeat(32);
        let good = format!("viv_op_0123456789ab_{secret}");
        assert_eq!(prefix_of(&good), Some("0123456789ab"));
        for bad in [
            format!("viv_op_0123456789a_{secret}"),
            format!("viv_op_0123456789AB_{secret}"),
            format!("viv_op_0123456789ab_{secret}0"),
            format!("viv_op_0123456789ab{secret}"),
            format!("op_0123456789ab_{secret}"),
            "viv_op_".to_owned(),
        ] {
            assert_eq!(prefix_of(&bad), None, "{bad}");
        }
    }

    #[test]
    fn stamps_how_the_principal_authenticated() {
        let mut p = Principal::bootstrap();
        assert_eq!(p.stamp(Value::Null), json!({"auth": "bootstrap_token"}));
        p.auth = AuthMethod::Token;
        p.credential = Some("abc".into());
        assert_eq!(
            p.stamp(json!({"role": "viewer"})),
            json!({"role": "viewer", "auth": "token", "credential": "abc"})
        );
        assert_eq!(p.actor(), "operator:bootstrap");
    }
}
