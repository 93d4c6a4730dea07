use anyhow::{Context, Result};
use clerk_sync_worker::{health_router, Health, Worker};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::WorkerArgs;

/// How often a worker waiting for migrations says so.
const SCHEMA_WAIT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn run(args: WorkerArgs, cancel: CancellationToken) -> Result<()> {
    let config = args.worker_config()?;
    args.kafka.check_admitted().await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", args.listen))?;
    let pool = args.database.connect().await?;
    if !args.skip_migrations {
        clerk_sync_worker::migrate(&pool)
            .await
            .context("applying migrations")?;
    }
    let metrics =
        clerk_sync_worker::WorkerMetrics::new(prometheus::Registry::new(), &config.topics)?;
    let health = Health::new(pool.clone());

    let server_cancel = cancel.child_token();
    // Probes and scrapes send their headers at once; anything slower is cut off.
    let server = tokio::spawn(clerk_sync_ingest::serve_router(
        listener,
        health_router(health.clone(), metrics.clone()),
        clerk_sync_ingest::ServeLimits::probes(),
        server_cancel.clone(),
    ));
    let result = async {
        if args.skip_migrations {
            // Another process migrates (the Kubernetes Job): consume only once it has.
            match clerk_sync_worker::wait_for_schema(&pool, &health, &cancel, SCHEMA_WAIT_LOG_EVERY)
                .await
            {
                Err(clerk_sync_worker::Error::Cancelled) => return Ok(()),
                other => other?,
            }
        }
        let worker = Worker::new(config, pool, health.clone(), metrics)
            .context("KAFKA_BROKERS / KAFKA_OPTIONS: cannot create the consumer")?;
        worker
            .run(cancel.clone())
            .await
            .context("worker stopped on an error")
    }
    .await;
    server_cancel.cancel();
    let _ = server.await;
    result
}
