//! The HTTP server: one hyper connection per client, headers bounded in time, graceful shutdown.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{error_chain, router, AppState};

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// Serves until `cancel` fires, lets in-flight requests finish, then flushes the producer.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let publisher = state.publisher.clone();
    let header_timeout = state.request_timeout;
    serve_router(listener, router(state), header_timeout, cancel).await;
    if let Err(e) = publisher.flush(Duration::from_secs(10)).await {
        warn!(error = %error_chain(&e), "producer flush at shutdown failed");
    }
    Ok(())
}

/// Serves `app` until `cancel` fires, then lets in-flight requests finish (30 s at most).
///
/// A client must send its request headers within `header_timeout`, and an idle keep-alive
/// connection is closed after it: without that bound (which `axum::serve` does not set) a client
/// trickling headers, or merely connecting, holds a connection and a file descriptor forever.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    cancel: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client going away mid-request is its own business, not a server error.
            let _ = connection.await;
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
