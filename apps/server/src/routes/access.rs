//! Who may call each route: the one table the router is built from, so no route
//! exists without an entry. `docs/api.md` carries the same table (a test compares
//! them), and the route × role matrix test is generated from it.

use axum::http::Method;
use vivified_domain::Operation;
use vivified_ports::Role;

/// What a route asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone; no credential.
    Public,
    /// A registration credential: an enrollment token, the registration secret, the
    /// plugin's own token, or (dev mode) none.
    Registration,
    /// The plugin's own token; operators are refused.
    Plugin,
    /// The plugin's own token, or an operator whose role allows the operation.
    PluginOr(Operation),
    /// An operator whose role allows the operation; plugins are refused.
    Operator(Operation),
    /// The operator the path names, or one whose role allows the operation.
    SelfOr(Operation),
    /// Any authenticated caller, operator or plugin.
    Anyone,
}

impl Access {
    /// The least operator role it admits (`None`: no operator, or no credential at
    /// all, is needed or admitted).
    #[must_use]
    pub const fn operator_role(self) -> Option<Role> {
        match self {
            Self::PluginOr(op) | Self::Operator(op) | Self::SelfOr(op) => Some(op.required_role()),
            Self::Anyone => Some(Role::Viewer),
            Self::Public | Self::Registration | Self::Plugin => None,
        }
    }

    /// How `docs/api.md` says it.
    #[must_use]
    pub fn describe(self) -> String {
        match self {
            Self::Public => "anyone".to_owned(),
            Self::Registration => "registration credential".to_owned(),
            Self::Plugin => "the plugin".to_owned(),
            Self::PluginOr(op) => format!("the plugin, or {}", op.required_role()),
            Self::Operator(op) => op.required_role().to_string(),
            Self::SelfOr(op) => format!("the operator itself, or {}", op.required_role()),
            Self::Anyone => "any principal".to_owned(),
        }
    }
}

/// One route: method, path template, and who may call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAccess {
    /// The HTTP method.
    pub method: Method,
    /// The path template, as the router matches it.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}
