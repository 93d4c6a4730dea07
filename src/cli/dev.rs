use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine;
use clap::Args;
use clerk_sync_core::Secret;
use clerk_sync_worker::{Health, Worker};
use rand::RngCore;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{DatabaseArgs, GroupProtocol, IngestArgs, KafkaArgs, TopicArgs, WorkerArgs};
use clerk_sync_local::{LocalKafka, TempPostgres};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// HTTP address for the webhook endpoint.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Post a set of signed sample events and print the synced rows.
    #[arg(long)]
    pub demo: bool,
    /// Use this database instead of a throwaway cluster.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Use this broker instead of a local Apache Kafka.
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Start a local cluster of three Kafka nodes (replication 3, min.insync.replicas=2) instead
    /// of one.
    #[arg(long, conflicts_with = "brokers")]
    pub cluster: bool,
    /// Signing secret to accept; generated when unset.
    #[arg(
        long = "webhook-secret",
        env = "CLERK_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<Secret>,
}

const DEMO_FIXTURES: &[(&str, &[u8])] = &[
    (
        "organization.created",
        include_bytes!("../../tests/fixtures/organization.created.json"),
    ),
    (
        "user.created",
        include_bytes!("../../tests/fixtures/user.created.json"),
    ),
    (
        "organizationMembership.created",
        include_bytes!("../../tests/fixtures/organizationMembership.created.json"),
    ),
    (
        "user.updated",
        include_bytes!("../../tests/fixtures/user.updated.json"),
    ),
    (
        "session.created",
        include_bytes!("../../tests/fixtures/session.created.json"),
    ),
];

/// What `dev` started itself: stopped when dropped, whatever the path out.
#[derive(Default)]
struct Local {
    _postgres: Option<TempPostgres>,
    _broker: Option<LocalKafka>,
}

pub async fn run(args: DevArgs, cancel: CancellationToken) -> Result<()> {
    let mut local = Local::default();
    let database_url = database(&args, &mut local).await?;
    let kafka = broker(&args, &mut local).await?;
    let secret = signing_secret(&args);
    let topics = TopicArgs::default();
    // Every topic the worker writes to as well as reads: without the dead-letter topic, the
    // first undecodable record would hold its partition while the write is retried.
    let replication = if args.cluster { 3 } else { 1 };
    let specs = clerk_sync_kafka::topics::plan(
        &topics.topics().synced(),
        &topics.topic_dlq,
        3,
        replication,
        None,
        clerk_sync_kafka::topics::DEFAULT_DLQ_RETENTION_MS,
    );
    clerk_sync_kafka::topics::create(&kafka.brokers, &kafka.options(), &specs).await?;
    let database = DatabaseArgs {
        database_url: database_url.clone(),
        database_max_connections: 10,
        database_lock_timeout_ms: clerk_sync_worker::database::DEFAULT_LOCK_TIMEOUT_MS,
        database_allow_unverified: false,
    };
    let pool = database.connect().await?;
    clerk_sync_worker::migrate(&pool)
        .await
        .context("applying migrations")?;
    let (addr, ingest) = start_ingest(&args, &secret, &kafka, &topics, &cancel).await?;
    let worker = start_worker(&secret, database, &pool, &kafka, topics, &cancel)?;
    print_banner(&args, addr, &secret, &database_url, &kafka);
    if args.demo {
        if let Err(e) = demo(addr, &secret, &pool).await {
            eprintln!("demo failed: {e:#}");
        }
    }
    cancel.cancelled().await;
    eprintln!("stopping…");
    let _ = ingest.await;
    match worker.await {
        Ok(Err(e)) => eprintln!("worker: {e}"),
        Err(e) => eprintln!("worker task: {e}"),
        Ok(Ok(())) => {}
    }
    pool.close().await;
    drop(local);
    Ok(())
}

/// `--database-url`, or a throwaway cluster.
async fn database(args: &DevArgs, local: &mut Local) -> Result<Secret> {
    if let Some(url) = &args.database_url {
        return Ok(url.clone());
    }
    eprintln!("starting a throwaway Postgres…");
    let pg = tokio::task::spawn_blocking(TempPostgres::start).await??;
    let url = Secret::new(pg.url());
    local._postgres = Some(pg);
    Ok(url)
}

/// `--kafka-brokers`, or a local Apache Kafka.
async fn broker(args: &DevArgs, local: &mut Local) -> Result<KafkaArgs> {
    let mut kafka = KafkaArgs::new("");
    if let Some(brokers) = &args.brokers {
        kafka.brokers = brokers.clone();
        return Ok(kafka);
    }
    let nodes = if args.cluster { 3 } else { 1 };
    eprintln!(
        "starting a local Apache Kafka ({nodes} node{})…",
        if nodes == 1 { "" } else { "s" }
    );
    let broker = clerk_sync_local::KafkaSettings::default()
        .nodes(nodes)
        .start()
        .await?;
    eprintln!(
        "Apache Kafka {} on {} (logs under {})",
        broker.version(),
        broker.brokers(),
        broker.dir().display()
    );
    kafka.brokers = broker.brokers();
    local._broker = Some(broker);
    Ok(kafka)
}

/// The configured signing secret, or a new random one.
fn signing_secret(args: &DevArgs) -> Secret {
    if let Some(secret) = &args.webhook_secret {
        return secret.clone();
    }
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    Secret::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

async fn start_ingest(
    args: &DevArgs,
    secret: &Secret,
    kafka: &KafkaArgs,
    topics: &TopicArgs,
    cancel: &CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let ingest_args = IngestArgs {
        listen: args.listen,
        // Health and metrics of dev's ingest: on a port of their own, not advertised.
        ops_listen: "127.0.0.1:0".parse()?,
        webhook_secret: Some(secret.clone()),
        webhook_tolerance_secs: 300,
        webhook_body_limit: 256 * 1024,
        publish_deadline_ms: 5000,
        max_in_flight: 256,
        max_in_flight_per_peer: 256,
        max_connections: 4096,
        request_timeout_ms: 10_000,
        kafka: kafka.clone(),
        topics: topics.clone(),
    };
    let ingest = super::ingest::build(&ingest_args)?;
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "--listen: cannot listen on {} (choose another with --listen)",
            args.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let ops_listener = TcpListener::bind(ingest_args.ops_listen).await?;
    Ok((
        addr,
        tokio::spawn(ingest.serve(listener, ops_listener, cancel.clone())),
    ))
}

fn start_worker(
    secret: &Secret,
    database: DatabaseArgs,
    pool: &PgPool,
    kafka: &KafkaArgs,
    topics: TopicArgs,
    cancel: &CancellationToken,
) -> Result<tokio::task::JoinHandle<clerk_sync_worker::Result<()>>> {
    let worker_args = WorkerArgs {
        listen: "127.0.0.1:0".parse()?,
        group_id: "clerk-sync".to_owned(),
        batch_max: 500,
        batch_linger_ms: 0,
        group_protocol: GroupProtocol::Classic,
        session_timeout_ms: None,
        lag_refresh_ms: 15_000,
        skip_migrations: true,
        worker_id: Some("dev".to_owned()),
        // The webhooks ingest takes are the only records dev's topics get: Clerk's secret is all
        // the worker needs to believe them.
        trust: super::args::TrustArgs {
            webhook_secret: Some(secret.clone()),
            record_signing_key: None,
            max_clock_skew_secs: 300,
        },
        database,
        kafka: kafka.clone(),
        topics,
    };
    let worker_config = worker_args.worker_config()?;
    let metrics =
        clerk_sync_worker::WorkerMetrics::new(prometheus::Registry::new(), &worker_config.topics)?;
    let worker = Worker::new(
        worker_config,
        pool.clone(),
        Health::new(pool.clone()),
        metrics,
    )?;
    let cancel = cancel.clone();
    Ok(tokio::spawn(async move { worker.run(cancel).await }))
}

fn print_banner(
    args: &DevArgs,
    addr: SocketAddr,
    secret: &Secret,
    database_url: &Secret,
    kafka: &KafkaArgs,
) {
    println!();
    println!("clerk-sync dev is running");
    println!("  webhook URL:    http://{addr}/webhooks/clerk");
    // Only what dev made itself is shown: a configured secret or password is named, never printed.
    match &args.webhook_secret {
        None => println!("  signing secret: {} (generated)", secret.expose()),
        Some(_) => println!("  signing secret: as set in CLERK_WEBHOOK_SECRET"),
    }
    match &args.database_url {
        // A throwaway cluster on loopback with no password.
        None => println!("  database:       {} (throwaway)", database_url.expose()),
        Some(_) => println!("  database:       as set in DATABASE_URL"),
    }
    println!("  kafka brokers:  {}", kafka.brokers);
    println!("Press Ctrl-C to stop.");
}

async fn demo(addr: SocketAddr, secret: &Secret, pool: &PgPool) -> Result<()> {
    let webhook = svix::webhooks::Webhook::new(secret.expose())?;
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    for (i, (name, body)) in DEMO_FIXTURES.iter().enumerate() {
        let id = format!("msg_demo{i:04}{now}");
        let signature = webhook.sign(&id, now, body)?;
        let response = client
            .post(format!("http://{addr}/webhooks/clerk"))
            .header("svix-id", &id)
            .header("svix-timestamp", now.to_string())
            .header("svix-signature", signature)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        println!(
            "posted {name:<32} -> {} {}",
            response.status().as_u16(),
            response.text().await?
        );
    }
    // The last synced event posted is the user.updated: wait until the worker has applied it.
    let last_user_event = format!("msg_demo{:04}{now}", 3);
    let started = Instant::now();
    loop {
        let done = clerk_sync_worker::tables::applied(pool, &last_user_event).await?;
        if done || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print!("{}", clerk_sync_worker::tables::listing(pool).await?);
    Ok(())
}
