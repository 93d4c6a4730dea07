use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::IngestOutcome;

/// Every answer other than success: a status and `{"error": code, "message": text}`.
/// Internals are logged where they happen, never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// A signature header is missing or malformed.
    MissingSignature(&'static str),
    /// No configured secret produces any of the given signatures.
    BadSignature,
    /// `svix-timestamp` is outside the tolerance window.
    StaleTimestamp,
    /// Too many requests in flight: shed at once rather than queue beyond Svix's patience.
    Overloaded,
    TooLarge {
        limit: usize,
    },
    /// Verified, but not a Clerk event envelope (or a synced event without its entity id).
    BadPayload(String),
    /// The request was not done within the request timeout (a slow client, usually).
    Timeout,
    /// The broker did not take the record in time: Svix will retry.
    Unavailable {
        retry_after: Duration,
    },
}

impl ApiError {
    /// The `outcome` label for metrics and logs.
    pub fn outcome(&self) -> IngestOutcome {
        match self {
            ApiError::MissingSignature(_) | ApiError::BadSignature => IngestOutcome::BadSignature,
            ApiError::StaleTimestamp => IngestOutcome::StaleTimestamp,
            ApiError::TooLarge { .. } => IngestOutcome::TooLarge,
            ApiError::BadPayload(_) => IngestOutcome::BadPayload,
            ApiError::Unavailable { .. } => IngestOutcome::Unavailable,
            ApiError::Overloaded => IngestOutcome::Overloaded,
            ApiError::Timeout => IngestOutcome::Timeout,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::MissingSignature(header) => (
                StatusCode::UNAUTHORIZED,
                "missing_signature",
                format!("missing or malformed {header} header (svix-* or webhook-*)"),
            ),
            ApiError::BadSignature => (
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "no configured signing secret matches the signature".to_owned(),
            ),
            ApiError::StaleTimestamp => (
                StatusCode::UNAUTHORIZED,
                "stale_timestamp",
                "the signature timestamp is outside the accepted window".to_owned(),
            ),
            ApiError::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body exceeds {limit} bytes"),
            ),
            ApiError::BadPayload(reason) => (
                StatusCode::BAD_REQUEST,
                "bad_payload",
                format!("not a Clerk event envelope: {reason}"),
            ),
            ApiError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the event could not be stored right now; retry later".to_owned(),
            ),
            ApiError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests in flight; retry later".to_owned(),
            ),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request was not received in time".to_owned(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut response =
            (status, Json(json!({"error": code, "message": message}))).into_response();
        let retry_after = match self {
            ApiError::Unavailable { retry_after } => Some(retry_after),
            ApiError::Overloaded => Some(Duration::from_secs(1)),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
