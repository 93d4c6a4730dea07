use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::WorkerMetrics;

/// What the worker's readiness reflects: the database answers, the broker answered the last
/// lag measurement, and the worker is not stuck retrying a transient failure.
#[derive(Clone)]
pub struct Health {
    pool: PgPool,
    retrying: Arc<AtomicBool>,
    /// Whether the broker answered the last periodic lag measurement.
    broker: Arc<AtomicBool>,
    /// Clerk timestamp (ms) of the newest event applied, for the freshness gauge.
    newest_applied_ms: Arc<AtomicI64>,
    pub metrics: WorkerMetrics,
}

impl Health {
    pub fn new(pool: PgPool, metrics: WorkerMetrics) -> Self {
        Health {
            pool,
            retrying: Arc::new(AtomicBool::new(false)),
            broker: Arc::new(AtomicBool::new(true)),
            newest_applied_ms: Arc::new(AtomicI64::new(0)),
            metrics,
        }
    }

    pub fn applied_event_at(&self, clerk_timestamp_ms: i64) {
        self.newest_applied_ms
            .fetch_max(clerk_timestamp_ms, Ordering::Relaxed);
    }

    /// Updates the freshness gauge: now minus the newest applied event's Clerk time.
    pub fn refresh_freshness(&self, now_ms: i64) {
        let newest = self.newest_applied_ms.load(Ordering::Relaxed);
        if newest > 0 {
            self.metrics
                .freshness
                .set(((now_ms - newest).max(0) as f64) / 1000.0);
        }
    }

    pub fn set_retrying(&self, retrying: bool) {
        self.retrying.store(retrying, Ordering::Relaxed);
    }

    pub fn is_retrying(&self) -> bool {
        self.retrying.load(Ordering::Relaxed)
    }

    pub fn set_broker_reachable(&self, reachable: bool) {
        self.broker.store(reachable, Ordering::Relaxed);
    }
}

/// `/healthz` (alive), `/readyz` (database reachable, not stuck retrying) and `/metrics`.
pub fn health_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(health): State<Health>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    health.metrics.render(),
                )
            }),
        )
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> (StatusCode, Json<serde_json::Value>) {
    let database = sqlx::query("SELECT 1").execute(&health.pool).await.is_ok();
    let retrying = health.is_retrying();
    let broker = health.broker.load(Ordering::Relaxed);
    let ready = database && broker && !retrying;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "database": database, "broker": broker, "retrying": retrying})),
    )
}
