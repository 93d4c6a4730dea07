use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use clerk_sync_core::{route_body, Topics};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing::{info, instrument, warn};

use crate::publish::Publishing;
use crate::{
    error_chain, ApiError, IngestMetrics, IngestOutcome, Readiness, UnverifiedWebhook,
    VerifiedWebhook, Verifier,
};

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub verifier: Arc<Verifier>,
    pub publisher: Publishing,
    pub topics: Arc<Topics>,
    pub body_limit: usize,
    /// Bounds the requests in flight; beyond it requests are shed with 503.
    pub in_flight: Arc<Semaphore>,
    /// The requests each client address has in flight, at most `max_in_flight_per_peer`.
    pub peers: Arc<crate::limits::PeerSlots>,
    pub max_in_flight_per_peer: usize,
    /// Longest a request may take, body upload included (slow clients get 408).
    pub request_timeout: Duration,
    /// Connections open at once (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// What the last background check found (`/readyz` reads only this).
    pub readiness: Arc<std::sync::RwLock<Readiness>>,
    pub metrics: IngestMetrics,
}

/// The webhook listener's one route, `POST /webhooks/clerk`: an Ingress in front of it exposes
/// nothing else (the operational endpoints have a listener of their own, [`ops_router`]).
pub(crate) fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/webhooks/clerk", post(receive))
        .fallback(|| async {
            (StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "message": "no such endpoint; webhooks go to POST /webhooks/clerk"})))
        })
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, Json(json!({"error": "method_not_allowed", "message": "use POST for /webhooks/clerk"})))
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The operational listener (`OPS_LISTEN_ADDR`): `GET /healthz` and `/livez` (alive),
/// `/readyz` (from the last background check), `/metrics`.
pub(crate) fn ops_router(state: AppState) -> Router {
    let alive = || async { Json(json!({"status": "ok"})) };
    Router::new()
        .route("/healthz", get(alive))
        .route("/livez", get(alive))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "message": "this listener serves /healthz, /livez, /readyz and /metrics; webhooks go to LISTEN_ADDR"})))
        })
        .with_state(state)
}

impl FromRequest<AppState> for VerifiedWebhook {
    type Rejection = ApiError;

    async fn from_request(mut req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Taken, not cloned: reading the body needs none of them.
        let headers = std::mem::take(req.headers_mut());
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // A deadline of the body's own (a minimum rate), inside the request timeout.
        let deadline = crate::limits::body_deadline(announced, state.body_limit);
        let body = tokio::time::timeout(deadline, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::Timeout)?
            .map_err(|rejection| {
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

/// Refuses what the head tells is unsigned, sheds load before reading the body, then verifies,
/// publishes and answers, all within the
/// request timeout (body upload included: a slow client gets 408). The timeout is kept here,
/// not in a layer, so a request cut off is still counted and leaves the in-flight gauge.
async fn receive(State(state): State<AppState>, request: Request) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let result = match precheck(&state, &request) {
        Err(refused) => Err(refused),
        Ok(()) => admit(&state, request).await,
    };
    let outcome = match &result {
        Ok(outcome) => *outcome,
        Err(e) => e.outcome(),
    };
    state
        .metrics
        .request(outcome, started.elapsed().as_secs_f64());
    result.map(Answer)
}

/// What the head alone tells: unsigned or stale requests, and bodies announced beyond the
/// limit behind `Expect: 100-continue`, are answered before a slot is taken or a byte of the
/// body is read.
fn precheck(state: &AppState, request: &Request) -> Result<(), ApiError> {
    state
        .verifier
        .precheck(request.headers(), std::time::SystemTime::now())?;
    // A client that waits for `100 Continue` reads this answer before sending a byte of the
    // body; one that sends at once is cut off at the limit as its body streams (413 too).
    let waits = request.headers().get(header::EXPECT).is_some();
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if waits && announced.is_some_and(|n| n > state.body_limit as u64) {
        return Err(ApiError::TooLarge {
            limit: state.body_limit,
        });
    }
    Ok(())
}

/// Takes one of the client address's slots and an in-flight slot (or sheds the request), then
/// reads, verifies and publishes.
async fn admit(state: &AppState, request: Request) -> Result<IngestOutcome, ApiError> {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let _peer_slot = match peer {
        Some(ip) => Some(
            state
                .peers
                .take(ip, state.max_in_flight_per_peer)
                .ok_or(ApiError::Overloaded)?,
        ),
        None => None,
    };
    match state.in_flight.clone().try_acquire_owned() {
        Err(_) => Err(ApiError::Overloaded),
        Ok(_permit) => {
            let _in_flight = Gauged::new(&state.metrics.in_flight);
            let handled = async {
                let webhook = VerifiedWebhook::from_request(request, state).await;
                handle(state, webhook).await
            };
            tokio::time::timeout(state.request_timeout, handled)
                .await
                .unwrap_or(Err(ApiError::Timeout))
        }
    }
}

/// Counts one request in a gauge for as long as it lives (also when its future is dropped).
struct Gauged<'a>(&'a prometheus::IntGauge);

impl<'a> Gauged<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Gauged(gauge)
    }
}

impl Drop for Gauged<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A success answer, `{"status": …}`: one static body per outcome, nothing built per request.
struct Answer(IngestOutcome);

impl IntoResponse for Answer {
    fn into_response(self) -> axum::response::Response {
        let body = match self.0 {
            IngestOutcome::Accepted => r#"{"status":"accepted"}"#,
            IngestOutcome::IgnoredType => r#"{"status":"ignored_type"}"#,
            other => return Json(json!({ "status": other.as_str() })).into_response(),
        };
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

#[instrument(name = "webhook", skip_all, fields(svix_id, event_type, outcome))]
async fn handle(
    state: &AppState,
    webhook: Result<VerifiedWebhook, ApiError>,
) -> Result<IngestOutcome, ApiError> {
    let span = tracing::Span::current();
    let result = publish_verified(state, webhook, &span).await;
    let outcome = match &result {
        Ok(outcome) => *outcome,
        Err(e) => e.outcome(),
    };
    span.record("outcome", outcome.as_str());
    info!("webhook handled");
    result
}

async fn publish_verified(
    state: &AppState,
    webhook: Result<VerifiedWebhook, ApiError>,
    span: &tracing::Span,
) -> Result<IngestOutcome, ApiError> {
    let webhook = webhook?;
    span.record("svix_id", webhook.id());
    // Only the event type and the entity ids are read: the body goes to Kafka as it came.
    let routed = route_body(webhook.body()).map_err(|e| match e {
        clerk_sync_core::Error::NotAnEnvelope(_) => ApiError::BadPayload(error_chain(&e)),
        e => ApiError::BadPayload(e.to_string()),
    })?;
    span.record("event_type", routed.event_type.as_ref());
    let route = routed.route;
    let Some(topic) = state.topics.for_stream(route.stream) else {
        return Ok(IngestOutcome::IgnoredType);
    };
    let started = Instant::now();
    let published = state
        .publisher
        .publish(&webhook, &routed.event_type, topic, route.key.as_deref())
        .await;
    state
        .metrics
        .produce_duration
        .observe(started.elapsed().as_secs_f64());
    match published {
        Ok(_) => Ok(if route.key.is_some() {
            IngestOutcome::Accepted
        } else {
            IngestOutcome::IgnoredType
        }),
        Err(e) => {
            warn!(error = %error_chain(&e), "publish failed; answering 503 so Svix retries");
            Err(ApiError::Unavailable {
                retry_after: Duration::from_secs(5),
            })
        }
    }
}

/// From state kept by a background check (`serve`): a flood of probes costs the broker nothing.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let readiness = state
        .readiness
        .read()
        .map_or(Readiness::Unreachable, |r| r.clone());
    match readiness {
        Readiness::Ready => (StatusCode::OK, Json(json!({"ready": true, "broker": true}))),
        Readiness::Unreachable => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "broker": false, "reason": "the broker does not answer"})),
        ),
        Readiness::MissingTopics(missing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "broker": true, "reason": format!(
                "topics missing: {}: create them with `clerk-sync topics create`",
                missing.join(", ")
            )})),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
