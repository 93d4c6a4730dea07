use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clerk_sync_ingest::{AppState, Publisher, Verifier};
use clerk_sync_worker::kafka_options::{for_client, Client};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::IngestArgs;

/// Builds everything from the arguments, failing on the first bad setting.
pub async fn build(args: &IngestArgs) -> Result<AppState> {
    let secrets = args.secrets()?;
    let verifier = Verifier::new(&secrets, Duration::from_secs(args.webhook_tolerance_secs))
        .context("CLERK_WEBHOOK_SECRET")?;
    let publisher = Publisher::new(
        &args.kafka.brokers,
        &for_client(&args.kafka.options(), Client::Producer),
        args.publish_deadline()?,
    )
    .context("KAFKA_BROKERS / KAFKA_OPTIONS: cannot create a Kafka producer")?;
    if args.max_in_flight == 0 {
        anyhow::bail!("MAX_IN_FLIGHT: expected at least 1");
    }
    if args.max_connections == 0 {
        anyhow::bail!("MAX_CONNECTIONS: expected at least 1");
    }
    Ok(AppState {
        verifier: Arc::new(verifier),
        publisher,
        topics: Arc::new(args.topics.topics()),
        body_limit: args.webhook_body_limit,
        in_flight: Arc::new(tokio::sync::Semaphore::new(args.max_in_flight)),
        request_timeout: std::time::Duration::from_millis(args.request_timeout_ms.max(1)),
        max_connections: args.max_connections,
        broker_ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        metrics: clerk_sync_ingest::IngestMetrics::new(prometheus::Registry::new())?,
    })
}

pub async fn run(args: IngestArgs, cancel: CancellationToken) -> Result<()> {
    let state = build(&args).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "ingest listening on /webhooks/clerk");
    clerk_sync_ingest::serve(listener, state, cancel).await?;
    tracing::info!("ingest stopped");
    Ok(())
}
