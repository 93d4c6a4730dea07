use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::WorkerMetrics;

/// What the worker's readiness reflects: the database answers, the broker answered the last
/// check, the schema is the one the worker was built for, and the worker is not stuck retrying
/// a transient failure. (What it counts and measures is [`WorkerMetrics`]'s.)
#[derive(Clone)]
pub struct Health {
    pool: PgPool,
    retrying: Arc<AtomicBool>,
    /// Why the worker is retrying (error kind and cause chain), for `/readyz`.
    retry_reason: Arc<Mutex<Option<String>>>,
    /// Set while the worker waits before consuming (migrations, the dead-letter topic): why.
    waiting: Arc<Mutex<Option<String>>>,
    /// Whether the broker answered the last periodic check.
    broker: Arc<AtomicBool>,
    /// Whether the database answered the last periodic check ([`Health::refresh_database`]):
    /// `/readyz` reads this, so a flood of probes costs the database nothing.
    database: Arc<AtomicBool>,
}

impl Health {
    /// Readiness only: what the worker counts and measures is its [`WorkerMetrics`].
    pub fn new(pool: PgPool) -> Self {
        Health {
            pool,
            retrying: Arc::new(AtomicBool::new(false)),
            retry_reason: Arc::new(Mutex::new(None)),
            waiting: Arc::new(Mutex::new(None)),
            broker: Arc::new(AtomicBool::new(true)),
            database: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Asks the database whether it answers (within 2 s) and keeps the answer for `/readyz`.
    pub async fn refresh_database(&self) {
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        self.database.store(answered, Ordering::Relaxed);
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

/// `/healthz` and `/livez` (alive), `/readyz` (database and broker answered their last checks,
/// schema current, not stuck retrying, with the reason when not ready; from cached state, never
/// a query per request) from `health`, and `/metrics` from `metrics`.
pub fn health_router(health: Health, metrics: WorkerMetrics) -> Router {
    let scrape = move || {
        let metrics = metrics.clone();
        async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4",
                )],
                metrics.render(),
            )
        }
    };
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/livez", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .with_state(health)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn readyz(State(health): State<Health>) -> (StatusCode, Json<serde_json::Value>) {
    let database = health.database.load(Ordering::Relaxed);
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
