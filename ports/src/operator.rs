//! Operators: the named people who run the core, their roles and their API tokens.
//! The store keeps a token's SHA-256, never the token.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::StoreError;

/// What an operator may do. Each role includes the ones before it:
/// `viewer < auditor < operator < admin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads plugins, health and metrics.
    Viewer,
    /// A viewer who also reads, verifies and exports the audit trail.
    Auditor,
    /// An auditor who also disables, enables, approves and deregisters plugins and
    /// mints enrollment tokens.
    Operator,
    /// Everything, managing operators and policy included.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Self; 4] = [Self::Viewer, Self::Auditor, Self::Operator, Self::Admin];

    /// Its name on the wire and in the store.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// The role named `name`, if any.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role includes `needed`.
    #[must_use]
    pub fn includes(self, needed: Self) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator's name: 1 to 63 characters, `^[a-z0-9][a-z0-9._-]{0,62}$`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperatorName(String);

/// A string that is not a valid [`OperatorName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an operator name is 1 to 63 characters: a lowercase letter or digit, then lowercase letters, digits, '.', '_' or '-'"
)]
pub struct InvalidOperatorName;

impl OperatorName {
    /// The longest name.
    pub const MAX_LEN: usize = 63;

    /// Validates `name`.
    ///
    /// # Errors
    /// [`InvalidOperatorName`] unless it matches `^[a-z0-9][a-z0-9._-]{0,62}$`.
    pub fn parse(name: &str) -> Result<Self, InvalidOperatorName> {
        let bytes = name.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if first_ok && rest_ok && bytes.len() <= Self::MAX_LEN {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidOperatorName)
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OperatorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An emergency elevation of an operator to the admin role, for a bounded time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakGlass {
    /// Why, in the operator's words (audited; never logged).
    pub reason: String,
    /// When it was granted.
    pub granted_at: OffsetDateTime,
    /// It ends at this instant.
    pub until: OffsetDateTime,
}

/// An operator as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// Its unique name.
    pub name: OperatorName,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Who created it (a principal's name, e.g. `operator:bootstrap`).
    pub created_by: String,
    /// It authenticates with nothing from this instant on (`None`: no expiry).
    pub expires_at: Option<OffsetDateTime>,
    /// Its emergency elevation, current or past (`None`: never, or ended).
    pub break_glass: Option<BreakGlass>,
}

impl Operator {
    /// Whether it may still authenticate at `now`.
    #[must_use]
    pub fn is_current(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// An operator's API token as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorToken {
    /// The token's public prefix, unique across operators (in audit entries and
    /// answers; not a credential).
    pub prefix: String,
    /// Whose it is.
    pub operator: OperatorName,
    /// Lowercase hex SHA-256 of the whole token.
    pub token_hash: String,
    /// The operator's note telling it from its others.
    pub label: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// It authenticates nothing from this instant on.
    pub expires_at: OffsetDateTime,
}

/// Where operators and their tokens live. Every replica reads the same store, so a
/// revocation holds on every replica from the next request on.
#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Stores a new operator.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] if the name exists,
    /// [`StoreError::Unavailable`] if the backend fails.
    async fn create_operator(&self, operator: &Operator) -> Result<(), StoreError>;

    /// The operator named `name`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn operator(&self, name: &OperatorName) -> Result<Option<Operator>, StoreError>;

    /// Up to `limit` operators sorted by name, after `after` if given.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn list_operators(
        &self,
        after: Option<&OperatorName>,
        limit: usize,
    ) -> Result<Vec<Operator>, StoreError>;

    /// Deletes the operator and every token of it, in one atomic write; returns it as
    /// it was.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if there is none,
    /// [`StoreError::Unavailable`] if the backend fails.
    async fn delete_operator(&self, name: &OperatorName) -> Result<Operator, StoreError>;

    /// Stores a new token of an existing operator.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if the operator does not exist (nothing
    /// written, also when it is deleted concurrently), [`StoreError::Conflict`] if the
    /// prefix or the hash exists, [`StoreError::Unavailable`] if the backend fails.
    async fn create_operator_token(&self, token: &OperatorToken) -> Result<(), StoreError>;

    /// The token with this prefix and its operator, in one read (the authentication
    /// of every operator request).
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn operator_token(
        &self,
        prefix: &str,
    ) -> Result<Option<(OperatorToken, Operator)>, StoreError>;

    /// The operator's tokens, expired or not, oldest first (then by prefix).
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn operator_tokens(&self, name: &OperatorName) -> Result<Vec<OperatorToken>, StoreError>;

    /// Deletes the operator's token with this prefix; returns it as it was. From then
    /// on it authenticates nothing.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if the operator has no such token,
    /// [`StoreError::Unavailable`] if the backend fails.
    async fn delete_operator_token(
        &self,
        name: &OperatorName,
        prefix: &str,
    ) -> Result<OperatorToken, StoreError>;

    /// Sets (`Some`) or ends (`None`) operator `name`'s emergency elevation; returns
    /// the operator as stored after it.
    ///
    /// # Errors
    /// MUST return [`StoreError::NotFound`] if there is no such operator,
    /// [`StoreError::Unavailable`] if the backend fails.
    async fn set_break_glass(
        &self,
        name: &OperatorName,
        grant: Option<&BreakGlass>,
    ) -> Result<Operator, StoreError>;

    /// How many operators with role `role` are current at `now` (the start-up warning
    /// about the bootstrap token, and the guard against deleting the last admin).
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] if the backend fails.
    async fn count_operators(&self, role: Role, now: OffsetDateTime) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "alice", "0ps", "j.doe_2-x", &"a".repeat(63)] {
            assert!(OperatorName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Alice",
            ".a",
            "-a",
            "_a",
            "a b",
            "a/b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(OperatorName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_include_the_ones_before() {
        assert!(Role::Admin.includes(Role::Viewer));
        assert!(Role::Operator.includes(Role::Auditor));
        assert!(!Role::Auditor.includes(Role::Operator));
        assert!(Role::Viewer.includes(Role::Viewer));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
