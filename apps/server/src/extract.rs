//! Request extractors that answer in the API's own error shape: bearer credentials and
//! size-limited JSON bodies (413 over the limit, 415 for non-JSON, 400 for bad JSON).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// The bearer credential of `Authorization: Bearer …`, if any. A header with another
/// scheme counts as no credential.
#[derive(Debug)]
pub struct Bearer(pub Option<String>);

impl Bearer {
    /// The credential as a string slice.
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_owned())
            })
            .filter(|t| !t.is_empty());
        Ok(Self(token))
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    })
}

/// Reads the body up to the configured limit. `None` for an empty body.
async fn read_body(req: Request, state: &AppState) -> Result<Option<Bytes>, ApiError> {
    let limit = state.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let json = is_json(
        req.headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return ApiError::PayloadTooLarge(limit);
                }
                source = err.source();
            }
            ApiError::InvalidBody("the body could not be read".into())
        })?;
    if bytes.is_empty() {
        return Ok(None);
    }
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(Some(bytes))
}

/// The body as JSON, each object naming a member once (a repeat is refused, naming
/// its JSON pointer: what is validated, stored and audited is what every other parser
/// reads too).
fn parse_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    vivified_domain::json::from_slice(bytes).map_err(|e| invalid(&e))
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_value(parse_value(bytes)?).map_err(|e| invalid(&e))
}

/// serde's messages name the member and the position, never echo a long value.
fn invalid(e: &dyn std::fmt::Display) -> ApiError {
    let msg: String = e.to_string().chars().take(200).collect();
    ApiError::InvalidBody(msg)
}

/// A required JSON object body, as a `serde_json::Value`.
#[derive(Debug)]
pub struct JsonObject(pub serde_json::Value);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state)
            .await?
            .ok_or_else(|| ApiError::InvalidBody("a JSON object is required".into()))?;
        let value = parse_value(&bytes)?;
        if !value.is_object() {
            return Err(ApiError::InvalidBody(
                "the body must be a JSON object".into(),
            ));
        }
        Ok(Self(value))
    }
}

/// An optional JSON body: an empty body gives `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match read_body(req, state).await? {
            None => Ok(Self(T::default())),
            Some(bytes) => {
                let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
                if first != Some(&b'{') {
                    return Err(ApiError::InvalidBody(
                        "the body must be a JSON object".into(),
                    ));
                }
                parse(&bytes).map(Self)
            }
        }
    }
}

/// An extractor that admits a registration or enrollment request if its address has
/// allowance left, else answers 429 `rate_limited` with `Retry-After` — before the body
/// is read.
pub struct Admitted;

impl FromRequestParts<AppState> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = parts
            .extensions
            .get::<crate::rate_limit::ClientAddr>()
            .map(|a| a.0);
        match state.registration_limit.check(addr) {
            Ok(()) => Ok(Self),
            Err(wait) => {
                metrics::counter!("vivified_rate_limited_total", "route" => parts.uri.path().to_owned())
                    .increment(1);
                Err(ApiError::RateLimited(wait))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
        assert!(!is_json(None));
    }
}
