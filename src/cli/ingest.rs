use std::time::Duration;

use anyhow::{Context, Result};
use clerk_sync_ingest::{Error, Ingest, IngestConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::IngestArgs;

/// The library's configuration from the arguments.
pub fn config(args: &IngestArgs) -> Result<IngestConfig> {
    Ok(IngestConfig {
        secrets: args.secrets()?,
        tolerance: Duration::from_secs(args.webhook_tolerance_secs),
        brokers: args.kafka.brokers.clone(),
        kafka_options: args.kafka.options(),
        publish_deadline: Duration::from_millis(args.publish_deadline_ms),
        topics: args.topics.topics(),
        body_limit: args.webhook_body_limit,
        max_in_flight: args.max_in_flight,
        max_in_flight_per_peer: args.max_in_flight_per_peer,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        max_connections: args.max_connections,
        memory_limit: clerk_sync_ingest::limits::container_memory_limit(),
    })
}

/// Builds ingest from the arguments, failing on the first bad setting, named.
pub fn build(args: &IngestArgs) -> Result<Ingest> {
    Ingest::build(config(args)?).map_err(|e| {
        let setting = match &e {
            Error::InvalidSecret { .. } | Error::WeakSecret { .. } | Error::NoSecret => {
                "CLERK_WEBHOOK_SECRET"
            }
            Error::Kafka(_) => "KAFKA_BROKERS / KAFKA_OPTIONS: cannot create a Kafka producer",
            _ => return anyhow::Error::new(e),
        };
        anyhow::Error::new(e).context(setting)
    })
}

pub async fn run(args: IngestArgs, cancel: CancellationToken) -> Result<()> {
    args.kafka.check_options()?;
    let ingest = build(&args)?;
    args.kafka.check_admitted().await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("LISTEN_ADDR: cannot listen on {}", args.listen))?;
    let ops_listener = TcpListener::bind(args.ops_listen)
        .await
        .with_context(|| format!("OPS_LISTEN_ADDR: cannot listen on {}", args.ops_listen))?;
    tracing::info!(addr = %listener.local_addr()?, ops = %ops_listener.local_addr()?, "ingest listening on /webhooks/clerk");
    ingest.serve(listener, ops_listener, cancel).await?;
    tracing::info!("ingest stopped");
    Ok(())
}
