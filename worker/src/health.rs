use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::WorkerMetrics;

/// What the worker's readiness reflects: the database answers, the broker answered the last
/// lag measurement, the schema is the one the worker was built for, and the worker is not stuck
/// retrying a transient failure.
#[derive(Clone)]
pub struct Health {
    pool: PgPool,
    retrying: Arc<AtomicBool>,
    /// Why the worker is retrying (error kind and cause chain), for `/readyz`.
    retry_reason: Arc<Mutex<Option<String>>>,
    /// Set while the worker waits before consuming (migrations, the dead-letter topic): why.
    waiting: Arc<Mutex<Option<String>>>,
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
            retry_reason: Arc::new(Mutex::new(None)),
            waiting: Arc::new(Mutex::new(None)),
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

    /// Marks the worker retrying a transient failure for `reason`, or no longer (`None`).
    pub fn set_retrying_because(&self, reason: Option<String>) {
        self.retrying.store(reason.is_some(), Ordering::Relaxed);
        *lock(&self.retry_reason) = reason;
    }

    /// Why the worker is not ready, when it is waiting for migrations or retrying.
    pub fn not_ready_reason(&self) -> Option<String> {
        lock(&self.waiting)
            .clone()
            .or_else(|| lock(&self.retry_reason).clone())
    }

    /// Marks the worker waiting before it consumes (`Some(why)`, e.g. `migrations: …`), or no
    /// longer.
    pub fn set_waiting(&self, why: Option<String>) {
        *lock(&self.waiting) = why;
    }

    pub fn is_retrying(&self) -> bool {
        self.retrying.load(Ordering::Relaxed)
    }

    pub fn set_broker_reachable(&self, reachable: bool) {
        self.broker.store(reachable, Ordering::Relaxed);
    }
}

/// `/healthz` (alive), `/readyz` (database reachable, schema current, not stuck retrying, with
/// the reason when not ready) and `/metrics`.
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn readyz(State(health): State<Health>) -> (StatusCode, Json<serde_json::Value>) {
    let database = sqlx::query("SELECT 1").execute(&health.pool).await.is_ok();
    let retrying = health.is_retrying();
    let broker = health.broker.load(Ordering::Relaxed);
    let waiting = lock(&health.waiting).clone();
    let migrations_pending = waiting
        .as_deref()
        .is_some_and(|w| w.starts_with("migrations"));
    let reason = health.not_ready_reason().or_else(|| {
        if !database {
            Some("database: does not answer".to_owned())
        } else if !broker {
            Some("broker: does not answer".to_owned())
        } else {
            None
        }
    });
    let ready = database && broker && !retrying && waiting.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({"ready": ready, "database": database, "broker": broker, "retrying": retrying,
                    "migrations_pending": migrations_pending, "reason": reason}),
        ),
    )
}
