//! `ApiError`: every error the HTTP API answers, as one closed set of codes.
//!
//! The body is always `{"error": CODE, "detail": SENTENCE}` (plus `violations` for an
//! invalid manifest). Internals (driver errors, stack traces) are logged with the
//! request's trace id and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vivified_domain::{RegistryError, Violation};

/// An error answer of the API.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_body`: not JSON, not an object, or a bad field.
    InvalidBody(String),
    /// 400 `invalid_manifest`.
    InvalidManifest(Vec<Violation>),
    /// 401 `unauthorized`, with a reason code.
    Unauthorized(&'static str),
    /// 403 `forbidden`, with a reason code.
    Forbidden(&'static str),
    /// 403 `forbidden`, reason `insufficient_role`: the operator's role is below this.
    RoleRequired(vivified_ports::Role),
    /// 403 `plugin_disabled`.
    PluginDisabled,
    /// 403 `policy_denied`: the policy refuses, with the rule and reason code.
    PolicyDenied {
        /// The rule that decided.
        rule: std::sync::Arc<str>,
        /// Its reason code.
        reason: std::sync::Arc<str>,
    },
    /// 404 `not_found`.
    NotFound,
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 409 `already_registered`.
    AlreadyRegistered,
    /// 409 `conflict`, with a reason code (`enrollment_used`).
    Conflict(&'static str),
    /// 413 `payload_too_large`.
    PayloadTooLarge(usize),
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    /// 431 `request_header_fields_too_large`: the header fields exceed this many bytes.
    HeadersTooLarge(usize),
    /// 429 `rate_limited`: this address asked too often; it may ask again after this.
    RateLimited(std::time::Duration),
    /// 429 `too_many_requests`: too many failed authentications from this address or
    /// with this credential; it may try again after this.
    TooManyFailures(std::time::Duration),
    /// 503 `unavailable`: a dependency failed or the request took too long.
    Unavailable(&'static str),
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidBody(_) | Self::InvalidManifest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_)
            | Self::RoleRequired(_)
            | Self::PluginDisabled
            | Self::PolicyDenied { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyRegistered | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited(_) | Self::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidBody(_) => "invalid_body",
            Self::InvalidManifest(_) => "invalid_manifest",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) | Self::RoleRequired(_) => "forbidden",
            Self::PluginDisabled => "plugin_disabled",
            Self::PolicyDenied { .. } => "policy_denied",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyRegistered => "already_registered",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::HeadersTooLarge(_) => "request_header_fields_too_large",
            Self::RateLimited(_) => "rate_limited",
            Self::TooManyFailures(_) => "too_many_requests",
            Self::Unavailable(_) => "unavailable",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::InvalidBody(why) => format!("The request body is invalid: {why}."),
            Self::InvalidManifest(_) => "Invalid manifest".to_owned(),
            Self::Unauthorized(reason) => match *reason {
                "missing_credentials" => {
                    "Authentication required: send `Authorization: Bearer <token>`.".to_owned()
                }
                "expired_token" => "The token has expired; re-register with it (within the grace period) to get a new one.".to_owned(),
                "revoked_token" => "The token has been replaced or revoked.".to_owned(),
                "unknown_plugin" => "The token's plugin is no longer registered.".to_owned(),
                "registration_secret_required" => {
                    "Registering a new plugin requires an enrollment token for its id (or, where the operator allows it, the registration secret) as a bearer token."
                        .to_owned()
                }
                "invalid_enrollment" => "The enrollment token is not valid.".to_owned(),
                "enrollment_used" => {
                    "The enrollment token has been used; ask an operator for a new one.".to_owned()
                }
                "enrollment_expired" => {
                    "The enrollment token has expired; ask an operator for a new one.".to_owned()
                }
                "enrollment_for_another_plugin" => {
                    "The enrollment token is for another plugin id.".to_owned()
                }
                _ => "The credential is not valid.".to_owned(),
            },
            Self::Forbidden(reason) => match *reason {
                "admin_token_required" => {
                    "This endpoint requires an operator's credential (an operator token, or the admin token), not a plugin's token.".to_owned()
                }
                "pending_approval" => "The plugin declares a sensitive trait (handles_phi, external_service) an operator has not approved yet; until then it may only heartbeat, refresh, re-register and read its record.".to_owned(),
                "plugin_token_required" => {
                    "This endpoint requires the plugin's own token.".to_owned()
                }
                "no_role" => {
                    "The identity provider's token carries no role that maps onto viewer, auditor, operator or admin (VIVIFIED_OIDC_ROLE_CLAIM, VIVIFIED_OIDC_ROLE_MAP).".to_owned()
                }
                "break_glass_disabled" => {
                    "Break-glass is off on this core (VIVIFIED_BREAK_GLASS).".to_owned()
                }
                "break_glass_for_operators" => {
                    "Break-glass raises a named operator with the operator role, by its own token; this credential is not one.".to_owned()
                }
                _ => "The token does not grant access to this plugin.".to_owned(),
            },
            Self::RoleRequired(role) => {
                format!("This requires the {role} role (or a role above it).")
            }
            Self::PluginDisabled => "The plugin has been disabled by an operator.".to_owned(),
            Self::PolicyDenied { .. } => "The policy does not allow this event.".to_owned(),
            Self::NotFound => "No such resource.".to_owned(),
            Self::MethodNotAllowed => "This method is not allowed on this path.".to_owned(),
            Self::AlreadyRegistered => {
                "A plugin with this id is already registered; re-register with its current token."
                    .to_owned()
            }
            Self::Conflict(reason) => match *reason {
                "enrollment_used" => {
                    "The enrollment has been used; only an unused one can be cancelled.".to_owned()
                }
                "nothing_pending" => {
                    "The plugin waits for no approval: there is nothing to refuse.".to_owned()
                }
                "too_many_instances" => {
                    "The plugin has as many instances as VIVIFIED_MAX_INSTANCES allows and none \
                     of them is stale; deregister one first."
                        .to_owned()
                }
                _ => "The resource's state refuses this request.".to_owned(),
            },
            Self::PayloadTooLarge(limit) => format!("The request body exceeds {limit} bytes."),
            Self::UnsupportedMediaType => {
                "The request body must be JSON (`Content-Type: application/json`).".to_owned()
            }
            Self::RateLimited(wait) => format!(
                "Too many registration or enrollment requests from this address; retry in {} s.",
                retry_after_secs(*wait)
            ),
            Self::HeadersTooLarge(limit) => {
                format!("The request's header fields exceed {limit} bytes.")
            }
            Self::TooManyFailures(wait) => format!(
                "Too many failed authentications from this address or with this credential; retry in {} s.",
                retry_after_secs(*wait)
            ),
            Self::Unavailable(what) => {
                format!("The service is temporarily unavailable ({what}); retry later.")
            }
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` has no fractions).
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::InvalidManifest(v) => Self::InvalidManifest(v),
            RegistryError::Unauthorized(r) => Self::Unauthorized(r),
            RegistryError::Forbidden(r) => Self::Forbidden(r),
            RegistryError::RoleRequired(role) => Self::RoleRequired(role),
            RegistryError::PluginDisabled => Self::PluginDisabled,
            RegistryError::NotFound => Self::NotFound,
            RegistryError::InvalidRequest(m) => Self::InvalidBody(m.into()),
            RegistryError::AlreadyRegistered => Self::AlreadyRegistered,
            RegistryError::Conflict(r) => Self::Conflict(r),
            RegistryError::Unavailable { what, source } => {
                tracing::error!(dependency = what, error = %source, cause = ?source.source().map(ToString::to_string), "dependency failed");
                Self::Unavailable(what)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.code(), "detail": self.detail() });
        match &self {
            Self::InvalidManifest(v) => body["violations"] = json!(v),
            Self::Unauthorized(r) | Self::Forbidden(r) | Self::Conflict(r) => {
                body["reason"] = json!(r);
            }
            Self::RoleRequired(role) => {
                body["reason"] = json!("insufficient_role");
                body["required_role"] = json!(role.as_str());
            }
            Self::PolicyDenied { rule, reason } => {
                body["reason"] = json!(&**reason);
                body["rule"] = json!(&**rule);
            }
            Self::RateLimited(wait) | Self::TooManyFailures(wait) => {
                body["retry_after_secs"] = json!(retry_after_secs(*wait));
            }
            _ => {}
        }
        if status.is_client_error() {
            tracing::debug!(
                status = status.as_u16(),
                error = self.code(),
                "request refused"
            );
        }
        let mut resp = (status, Json(body)).into_response();
        if let Self::RateLimited(wait) | Self::TooManyFailures(wait) = self {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        if let Self::Unauthorized(reason) = self {
            let value = if matches!(
                reason,
                "missing_credentials" | "registration_secret_required"
            ) {
                HeaderValue::from_static("Bearer realm=\"vivified\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"vivified\", error=\"invalid_token\"")
            };
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        resp
    }
}
