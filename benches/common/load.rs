//! Load generation for the pipeline benchmark: closed-loop HTTP clients, concurrent producers, a
//! read-only consumer, and the latency figures they record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::post;
use axum::{Json, Router};
use clerk_sync_core::{route, Envelope, Secret};
use clerk_sync_ingest::{Publisher, UnverifiedWebhook, VerifiedWebhook, Verifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Offset;
use svix::webhooks::Webhook;
use tokio::process::Child;

use super::bench_env::{partitions, BenchEnv};
use super::workload::Workload;

pub struct LoadReport {
    pub connections: usize,
    pub completed: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Latency of every completed request, in microseconds.
    pub latencies_us: Vec<u32>,
}

pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl LoadReport {
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// In milliseconds.
    pub fn percentiles(&self) -> Percentiles {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
                .map_or(0.0, |us| f64::from(*us) / 1000.0)
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

type Task = tokio::task::JoinHandle<(Vec<u32>, usize)>;

/// Gathers what each client task recorded: (latencies, errors).
async fn collect(tasks: Vec<Task>, connections: usize, started: Instant) -> Result<LoadReport> {
    let mut report = LoadReport {
        connections,
        completed: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await?;
        report.latencies_us.extend(latencies);
        report.errors += errors;
    }
    report.elapsed = started.elapsed();
    report.completed = report.latencies_us.len();
    Ok(report)
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Every delivered webhook, signed now by the Svix library under a fresh message id (each is a
/// distinct request to ingest, as Svix's retries are).
pub fn signed_requests(w: &Workload, secret: &str) -> Arc<Vec<(HeaderMap, Bytes)>> {
    let webhook = Webhook::new(secret).expect("a valid secret");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let requests = w
        .delivered()
        .enumerate()
        .map(|(i, raw)| {
            let id = format!("msg_load_{i:09}");
            let signature = webhook
                .sign(&id, now, raw.body.as_bytes())
                .expect("signing");
            let mut headers = HeaderMap::new();
            let value = |s: &str| HeaderValue::from_str(s).expect("header value");
            headers.insert("svix-id", value(&id));
            headers.insert("svix-timestamp", value(&now.to_string()));
            headers.insert("svix-signature", value(&signature));
            headers.insert("content-type", value("application/json"));
            (headers, Bytes::from(raw.body.clone()))
        })
        .collect();
    Arc::new(requests)
}

/// `connections` clients, one connection each, posting back to back for `duration`.
pub async fn run(
    url: &str,
    requests: &Arc<Vec<(HeaderMap, Bytes)>>,
    connections: usize,
    duration: Duration,
) -> Result<LoadReport> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let (url, requests, next) = (url.to_owned(), requests.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let (headers, body) =
                    &requests[next.fetch_add(1, Ordering::Relaxed) % requests.len()];
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .headers(headers.clone())
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(micros(sent.elapsed()));
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    collect(tasks, connections, started).await
}

/// The same HTTP stack (ingest's accept loop, axum, hyper, tokio; the same client and
/// connections) answering at once: what ingest would reach if verifying and producing cost
/// nothing.
pub async fn http_ceiling(
    w: &Workload,
    connections: usize,
    duration: Duration,
) -> Result<LoadReport> {
    let app = Router::new().route(
        "/webhooks/clerk",
        post(|_body: Bytes| async { Json(serde_json::json!({"status": "published"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Ingest's own accept loop, so only verification and produce differ.
    let server = tokio::spawn(clerk_sync_ingest::serve_router(
        listener,
        app,
        clerk_sync_ingest::ServeLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
        },
        tokio_util::sync::CancellationToken::new(),
    ));
    let requests = signed_requests(w, "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh");
    let report = run(
        &format!("http://{addr}/webhooks/clerk"),
        &requests,
        connections,
        duration,
    )
    .await;
    server.abort();
    report
}

pub async fn wait_ready(child: &mut Child, base: &str) -> Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Some(status) = child.try_wait()? {
            bail!("exited at start-up: {status}");
        }
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{base} never became ready")
}

/// The broker's raw produce rate with ingest's own producer (its settings, keys and headers),
/// `connections` publishes in flight, no HTTP and no verification; preloads the topics.
pub async fn produce_all(env: &BenchEnv, w: &Workload, connections: usize) -> Result<LoadReport> {
    let publisher = Publisher::new(&env.brokers, &env.options, Duration::from_secs(30))?;
    let verifier = Verifier::new(
        &[Secret::new("whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh")],
        Duration::from_secs(3600),
    )?;
    // Verified and routed up front: only the produce is timed.
    let mut ready: Vec<(VerifiedWebhook, String, String, Option<String>)> = Vec::new();
    for (headers, body) in signed_requests(w, "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh").iter() {
        let webhook = UnverifiedWebhook::new(headers.clone(), body.clone())
            .verify(&verifier)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let envelope = Envelope::parse(body)?;
        let r = route(&envelope)?;
        let topic = env
            .topics
            .for_stream(r.stream)
            .context("a synced event type")?
            .to_owned();
        ready.push((webhook, envelope.event_type, topic, r.key));
    }
    let ready = Arc::new(ready);
    // Connected before the clock starts, as ingest's producer is once it serves.
    publisher.readiness(&[], Duration::from_secs(10)).await;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (publisher, ready, next) = (publisher.clone(), ready.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((webhook, event_type, topic, key)) = ready.get(i) else {
                    break;
                };
                let sent = Instant::now();
                match publisher
                    .publish(webhook, event_type, topic, key.as_deref())
                    .await
                {
                    Ok(_) => latencies.push(micros(sent.elapsed())),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let report = collect(tasks, connections, started).await?;
    if report.errors > 0 {
        bail!("{} records could not be preloaded", report.errors);
    }
    Ok(report)
}

/// How long a plain consumer (no group join: partitions assigned) takes to read `expected`
/// records from the beginning of this run's topics: the broker's read ceiling.
pub async fn read_all(env: &BenchEnv, expected: usize) -> Result<Duration> {
    let config = env.client_config(&format!("{}-reader", env.run));
    let topics = env.topic_names();
    tokio::task::spawn_blocking(move || -> Result<Duration> {
        let consumer: BaseConsumer = config.create()?;
        let mut tpl = partitions(&consumer, &topics)?;
        tpl.set_all_offsets(Offset::Beginning)?;
        let assigned = Instant::now();
        consumer.assign(&tpl)?;
        // Timed from the first record, as the worker's drain is from its first batch.
        let mut first = None;
        let mut read = 0usize;
        while read < expected {
            if assigned.elapsed() > Duration::from_secs(300) {
                bail!("read only {read} of {expected} records in 5 minutes");
            }
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                first.get_or_insert_with(Instant::now);
                read += 1;
            }
        }
        Ok(first.map_or(Duration::ZERO, |f| f.elapsed()))
    })
    .await?
}
