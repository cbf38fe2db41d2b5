//! Who may do what: the operations an operator credential authorizes and the least
//! role each needs. The HTTP route table maps every route onto one of these, so a
//! role is stated once, here.

use vivified_ports::Role;

/// An operation an operator's credential can be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Read plugin records, and introspect plugin tokens.
    ReadPlugins,
    /// Read, verify and export the audit trail.
    ReadAudit,
    /// Read operators and their tokens' public parts.
    ReadOperators,
    /// Disable, enable and deregister plugins, refuse their sensitive traits, revoke a
    /// plugin's tokens.
    ManagePlugins,
    /// Mint, list and cancel enrollment tokens.
    Enroll,
    /// Approve the sensitive traits a plugin declares (what data may flow to it).
    ApproveTraits,
    /// Revoke every plugin token issued before an instant.
    RevokeAllTokens,
    /// Create and delete operators, and manage anyone's API tokens.
    ManageOperators,
    /// Raise oneself to admin in an emergency (break-glass), and end it.
    BreakGlass,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Self; 9] = [
        Self::ReadPlugins,
        Self::ReadAudit,
        Self::ReadOperators,
        Self::ManagePlugins,
        Self::Enroll,
        Self::ApproveTraits,
        Self::RevokeAllTokens,
        Self::ManageOperators,
        Self::BreakGlass,
    ];

    /// The least role that may perform it.
    #[must_use]
    pub const fn required_role(self) -> Role {
        match self {
            Self::ReadPlugins => Role::Viewer,
            Self::ReadAudit | Self::ReadOperators => Role::Auditor,
            Self::ManagePlugins | Self::Enroll | Self::BreakGlass => Role::Operator,
            Self::ApproveTraits | Self::RevokeAllTokens | Self::ManageOperators => Role::Admin,
        }
    }
}
