use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

/// What the worker's readiness reflects: the database answers and the worker is not stuck
/// retrying a transient failure.
#[derive(Clone, Debug)]
pub struct Health {
    pool: PgPool,
    retrying: Arc<AtomicBool>,
}

impl Health {
    pub fn new(pool: PgPool) -> Self {
        Health {
            pool,
            retrying: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn set_retrying(&self, retrying: bool) {
        self.retrying.store(retrying, Ordering::Relaxed);
    }

    pub fn is_retrying(&self) -> bool {
        self.retrying.load(Ordering::Relaxed)
    }
}

/// `/healthz` (alive) and `/readyz` (database reachable, not stuck retrying).
pub fn health_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> (StatusCode, Json<serde_json::Value>) {
    let database = sqlx::query("SELECT 1").execute(&health.pool).await.is_ok();
    let retrying = health.is_retrying();
    let ready = database && !retrying;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "database": database, "retrying": retrying})),
    )
}
