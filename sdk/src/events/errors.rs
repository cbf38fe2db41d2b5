//! Why a publish or a pull failed, mapped from the core's answers. Never a token or
//! a payload.

use std::time::Duration;

use crate::client::{CoreError, ErrorBody, Failure};
use crate::error::BoxError;

/// Why [`crate::CoreClient::publish`] failed. Never contains a token or the payload.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The client has no plugin token (not registered yet, or built without
    /// [`crate::CoreClient::as_plugin`]).
    #[error("the plugin is not registered with the core yet")]
    NotRegistered,
    /// The event is malformed (a local check, or the core's 400/413/415); `detail`
    /// names the member, never its value. Retrying the same event cannot help.
    #[error("invalid event: {detail}")]
    InvalidEvent {
        /// What is wrong.
        detail: String,
    },
    /// 401: the token was refused (`invalid_token`, `expired_token`, `revoked_token`,
    /// `unknown_plugin`, `missing_credentials`). A runner re-registers.
    #[error("unauthorized ({reason})")]
    Unauthorized {
        /// The core's reason code.
        reason: String,
    },
    /// 403 `plugin_disabled`: an operator disabled the plugin.
    #[error("plugin disabled by an operator")]
    Disabled,
    /// 403 `policy_denied`: a data trait is outside the publisher's declared
    /// classification (or the policy refuses the publication).
    #[error("policy denied the event: {reason} (rule {rule})")]
    PolicyDenied {
        /// The reason code, e.g. `data_trait_outside_source_classification`.
        reason: String,
        /// The rule that decided, e.g. `core.source-classification`.
        rule: String,
    },
    /// Another 403, e.g. `source_plugin_mismatch` or `plugin_token_required`.
    #[error("forbidden ({reason})")]
    Forbidden {
        /// The core's reason code.
        reason: String,
    },
    /// 5xx or 429. A retry may deliver a second copy (with a new `event_id`) to the
    /// subscribers served before the failure.
    #[error("core unavailable ({status})")]
    Unavailable {
        /// HTTP status.
        status: u16,
    },
    /// No answer: connection refused, reset, DNS failure.
    #[error("core unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// No answer within the request timeout; the event may or may not have been
    /// published.
    #[error("core did not answer within {0:?}")]
    Timeout(Duration),
    /// Another answer the API does not document for this request.
    #[error("unexpected answer from the core: {0}")]
    Protocol(String),
}

impl PublishError {
    /// Whether a retry later can succeed with nothing changed here (no answer, a
    /// timeout, 5xx/429). Publishing is not idempotent: a retry may duplicate.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Timeout(_) | Self::Unavailable { .. }
        )
    }
}

/// Why [`crate::CoreClient::pull`] failed. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The client has no plugin token (not registered yet, or built without
    /// [`crate::CoreClient::as_plugin`]).
    #[error("the plugin is not registered with the core yet")]
    NotRegistered,
    /// 400 or a local check: `limit` outside 1–1000, or `after` is not a cursor this
    /// core issued (e.g. a core on the in-memory bus restarted).
    #[error("invalid pull: {detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
    },
    /// 401: the token was refused. A runner re-registers.
    #[error("unauthorized ({reason})")]
    Unauthorized {
        /// The core's reason code.
        reason: String,
    },
    /// 403 `plugin_disabled`: an operator disabled the plugin; it receives nothing new
    /// until enabled.
    #[error("plugin disabled by an operator")]
    Disabled,
    /// Another 403, e.g. a token of another plugin.
    #[error("forbidden ({reason})")]
    Forbidden {
        /// The core's reason code.
        reason: String,
    },
    /// 404.
    #[error("not found")]
    NotFound,
    /// 5xx or 429.
    #[error("core unavailable ({status})")]
    Unavailable {
        /// HTTP status.
        status: u16,
    },
    /// No answer: connection refused, reset, DNS failure.
    #[error("core unreachable: {0}")]
    Unreachable(#[source] BoxError),
    /// No answer within `wait` plus the request timeout.
    #[error("core did not answer within {0:?}")]
    Timeout(Duration),
    /// Another answer the API does not document for this request.
    #[error("unexpected answer from the core: {0}")]
    Protocol(String),
}

impl PullError {
    /// Whether a retry later can succeed with nothing changed here.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Timeout(_) | Self::Unavailable { .. }
        )
    }

    /// Whether the core refused the plugin's token itself (re-registration fixes it).
    pub(super) fn is_token_refused(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized { .. } | Self::Forbidden { .. } | Self::NotFound
        )
    }
}

fn transport_or<E>(
    f: Failure,
    answer: impl FnOnce(u16, ErrorBody) -> E,
    unreachable: impl FnOnce(BoxError) -> E,
    timeout: impl FnOnce(Duration) -> E,
) -> E {
    match f {
        Failure::Transport(CoreError::Timeout(d)) => timeout(d),
        Failure::Transport(CoreError::Unreachable(e)) => unreachable(e),
        Failure::Transport(other) => unreachable(Box::new(other)),
        Failure::Answer { status, body } => answer(status, body),
    }
}

pub(super) fn publish_error(f: Failure) -> PublishError {
    transport_or(
        f,
        |status, body| match (status, body.error.as_str()) {
            (401, _) => PublishError::Unauthorized {
                reason: body.reason.unwrap_or_else(|| "unauthorized".into()),
            },
            (403, "plugin_disabled") => PublishError::Disabled,
            (403, "policy_denied") => PublishError::PolicyDenied {
                reason: body.reason.unwrap_or_else(|| "policy_denied".into()),
                rule: body.rule.unwrap_or_default(),
            },
            (403, _) => PublishError::Forbidden {
                reason: body.reason.clone().unwrap_or_else(|| body.code()),
            },
            (400 | 413 | 415 | 422, _) => PublishError::InvalidEvent {
                detail: body.detail.clone().unwrap_or_else(|| body.code()),
            },
            (429 | 500..=599, _) => PublishError::Unavailable { status },
            _ => PublishError::Protocol(format!("{status} {}", body.code())),
        },
        PublishError::Unreachable,
        PublishError::Timeout,
    )
}

pub(super) fn pull_error(f: Failure) -> PullError {
    transport_or(
        f,
        |status, body| match (status, body.error.as_str()) {
            (401, _) => PullError::Unauthorized {
                reason: body.reason.unwrap_or_else(|| "unauthorized".into()),
            },
            (403, "plugin_disabled") => PullError::Disabled,
            (403, _) => PullError::Forbidden {
                reason: body.reason.clone().unwrap_or_else(|| body.code()),
            },
            (404, _) => PullError::NotFound,
            (400, _) => PullError::InvalidRequest {
                detail: body.detail.clone().unwrap_or_else(|| body.code()),
            },
            (429 | 500..=599, _) => PullError::Unavailable { status },
            _ => PullError::Protocol(format!("{status} {}", body.code())),
        },
        PullError::Unreachable,
        PullError::Timeout,
    )
}
