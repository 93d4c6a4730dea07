use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use clerk_sync_core::{route, Envelope, Topics};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::{ApiError, Publisher, UnverifiedWebhook, VerifiedWebhook, Verifier};

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub verifier: Arc<Verifier>,
    pub publisher: Publisher,
    pub topics: Arc<Topics>,
    pub body_limit: usize,
}

/// `POST /webhooks/clerk`, `GET /healthz`, `GET /readyz`.
pub fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/webhooks/clerk", post(receive))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `cancel` fires, lets in-flight requests finish, then flushes the producer.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let publisher = state.publisher.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await?;
    if let Err(e) = publisher.flush(Duration::from_secs(10)).await {
        warn!(error = %e, "producer flush at shutdown failed");
    }
    Ok(())
}

impl FromRequest<AppState> for VerifiedWebhook {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    limit: state.body_limit,
                }
            } else {
                ApiError::BadPayload("the body could not be read".to_owned())
            }
        })?;
        UnverifiedWebhook::new(headers, body).verify(&state.verifier)
    }
}

#[instrument(skip_all, fields(svix_id, event_type, outcome))]
async fn receive(
    State(state): State<AppState>,
    webhook: Result<VerifiedWebhook, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let span = tracing::Span::current();
    let result = handle(&state, webhook).await;
    let outcome = match &result {
        Ok(outcome) => *outcome,
        Err(e) => e.outcome(),
    };
    span.record("outcome", outcome);
    info!("webhook handled");
    result.map(|outcome| Json(json!({"status": outcome})))
}

async fn handle(
    state: &AppState,
    webhook: Result<VerifiedWebhook, ApiError>,
) -> Result<&'static str, ApiError> {
    let webhook = webhook?;
    let span = tracing::Span::current();
    span.record("svix_id", webhook.id());
    let envelope =
        Envelope::parse(webhook.body()).map_err(|e| ApiError::BadPayload(source_text(&e)))?;
    span.record("event_type", envelope.event_type.as_str());
    let route = route(&envelope).map_err(|e| ApiError::BadPayload(e.to_string()))?;
    let Some(topic) = state.topics.for_stream(route.stream) else {
        return Ok("ignored_type");
    };
    match state
        .publisher
        .publish(&webhook, &envelope.event_type, topic, route.key.as_deref())
        .await
    {
        Ok(_) => Ok(if route.key.is_some() {
            "accepted"
        } else {
            "ignored_type"
        }),
        Err(e) => {
            warn!(error = %crate::error::error_chain(&e), "publish failed; answering 503 so Svix retries");
            Err(ApiError::Unavailable {
                retry_after: Duration::from_secs(5),
            })
        }
    }
}

fn source_text(e: &clerk_sync_core::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let broker = state.publisher.is_reachable(Duration::from_secs(2)).await;
    let status = if broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": broker, "broker": broker})))
}
