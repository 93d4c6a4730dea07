//! The HTTP server: one hyper connection per client, connections bounded in number, request
//! heads bounded in time and bytes, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::limits::MAX_HEAD_BYTES;
use crate::{error_chain, router, AppState};

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// How often ingest asks the broker whether it answers, for `/readyz`.
const READINESS_EVERY: Duration = Duration::from_secs(5);

/// Bounds on what clients may hold.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// A client must send its request head within this, and an idle keep-alive connection is
    /// closed after it.
    pub header_timeout: Duration,
    /// Connections open at once; beyond it a new connection is answered 503 and closed.
    pub max_connections: usize,
}

impl ServeLimits {
    /// For a port only probes and scrapes use (the worker's).
    pub fn probes() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// Serves until `cancel` fires, lets in-flight requests finish, then flushes the producer.
/// Broker readiness is refreshed in the background, so `/readyz` costs no broker round trip.
pub(crate) async fn serve(
    listener: TcpListener,
    ops_listener: TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let publisher = state.publisher.clone();
    let limits = ServeLimits {
        header_timeout: state.request_timeout,
        max_connections: state.max_connections,
    };
    let readiness = tokio::spawn(refresh_readiness(state.clone(), cancel.child_token()));
    // Probes and scrapes keep answering until the webhook listener has drained.
    let ops_cancel = CancellationToken::new();
    // As many connections as the webhook listener takes: a flood of probes is answered from the
    // kept state, not refused.
    let ops_limits = ServeLimits {
        header_timeout: Duration::from_secs(10),
        max_connections: state.max_connections,
    };
    let ops = tokio::spawn(serve_router(
        ops_listener,
        crate::routes::ops_router(state.clone()),
        ops_limits,
        ops_cancel.clone(),
    ));
    serve_router(listener, router(state), limits, cancel).await;
    ops_cancel.cancel();
    let _ = ops.await;
    readiness.abort();
    if let Err(e) = publisher.flush(Duration::from_secs(10)).await {
        warn!(error = %error_chain(&e), "producer flush at shutdown failed");
    }
    Ok(())
}

/// Asks the broker every [`READINESS_EVERY`] whether it answers and has ingest's topics, until
/// cancelled.
async fn refresh_readiness(state: AppState, cancel: CancellationToken) {
    let mut topics = state.topics.synced();
    topics.extend(state.topics.other.clone());
    loop {
        let found = state
            .publisher
            .readiness(&topics, Duration::from_secs(2))
            .await;
        if let Ok(mut current) = state.readiness.write() {
            *current = found;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(READINESS_EVERY) => {}
        }
    }
}

/// Serves `app` until `cancel` fires, then lets in-flight requests finish (30 s at most).
///
/// A client must send its request head within `limits.header_timeout`, in at most
/// [`MAX_HEAD_BYTES`], and an idle keep-alive connection is closed after it: without those bounds
/// (which `axum::serve` does not set) a client trickling headers, or merely connecting, holds a
/// connection and a file descriptor forever. At most `limits.max_connections` are open at once.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    cancel: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(64);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            // Full: a client holding connections open must not make deliveries queue behind
            // it. Answered at once; Svix retries a 503.
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer's address goes with each request (per-peer slots), as axum's ConnectInfo.
        let service = tower::Layer::layer(&axum::Extension(ConnectInfo(peer)), app.clone());
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client going away mid-request is its own business, not a server error.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_FOR, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("in-flight requests did not finish within {DRAIN_FOR:?} of shutdown");
    }
}

/// Answers a connection beyond the limit with 503 and closes it, spending at most a second.
async fn refuse(mut stream: TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 68\r\nconnection: close\r\n\r\n{\"error\":\"overloaded\",\"message\":\"too many connections; retry later\"}";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(ANSWER).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
