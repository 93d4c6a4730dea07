//! Freshness, as a new user of an application meets it: from ingest's 200 for a `user.created`
//! to the row being visible, measured by the worker's own `NOTIFY clerk_sync`, which Postgres
//! delivers when the batch commits (the row is visible from then on). Through the real binary,
//! broker and Postgres, with the shipped defaults:
//! 1. one at a time: a webhook, its row, the next;
//! 2. steady rates (BENCH_FRESH_RATES, default 50,500,2000 webhooks/s) for BENCH_FRESH_SECS
//!    (default 10) each.
//!
//! 3. a second worker joining the group and later leaving it (SIGTERM), at BENCH_GROUP_RATE
//!    (default 200) webhooks/s: the longest a webhook then waits for its row is the longest a
//!    partition goes unconsumed while its owner changes (KAFKA_GROUP_PROTOCOL, passed to both
//!    workers, compares the classic protocol with KIP-848's).
//!
//! Each with p50/p90/p99/max, ingest CPU per accepted webhook and worker CPU per applied event.
//! KAFKA_OPTIONS (extra librdkafka properties) applies to both processes, to compare fetch
//! settings. Prints figures; asserts nothing.

#[path = "common/bench_env.rs"]
#[allow(dead_code)] // each bench uses a part
mod bench_env;
#[path = "common/load.rs"]
#[allow(dead_code)] // each bench uses a part
mod load;
#[path = "common/process_stats.rs"]
mod process_stats;
#[path = "common/workload.rs"]
#[allow(dead_code)] // each bench uses a part
mod workload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clerk_sync_local::free_port;
use serde_json::json;
use sqlx::postgres::PgListener;
use svix::webhooks::Webhook;

use bench_env::BenchEnv;
use process_stats::cpu_time;

const SECRET: &str = "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh";
const T0: i64 = 1_754_560_800_000;

/// When each user's row became visible (its notification arrived).
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn user_created(id: &str) -> Vec<u8> {
    json!({"type": "user.created", "object": "event", "timestamp": T0, "data": {
        "id": id, "object": "user", "first_name": "New", "last_name": "User",
        "email_addresses": [{"id": "idn_1", "email_address": format!("{id}@example.com")}],
        "primary_email_address_id": "idn_1", "public_metadata": {},
        "created_at": T0, "updated_at": T0}})
    .to_string()
    .into_bytes()
}

struct Pipeline {
    ingest: tokio::process::Child,
    worker: tokio::process::Child,
    url: String,
    seen: Seen,
    client: reqwest::Client,
}

impl Pipeline {
    /// Posts one new user's `user.created`; the instant of its 200.
    async fn post(&self, id: &str) -> Result<Instant> {
        let body = user_created(id);
        let now = chrono_secs();
        let signature = Webhook::new(SECRET)?.sign(id, now, &body)?;
        let response = self
            .client
            .post(&self.url)
            .header("svix-id", id)
            .header("svix-timestamp", now.to_string())
            .header("svix-signature", signature)
            .body(body)
            .send()
            .await?;
        let at = Instant::now();
        anyhow::ensure!(response.status() == 200, "{id}: {}", response.status());
        Ok(at)
    }

    async fn wait_seen(&self, ids: &[String], timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            let missing = {
                let seen = self.seen.lock().expect("lock");
                ids.iter().filter(|id| !seen.contains_key(*id)).count()
            };
            if missing == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "{missing} rows never became visible"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn cpu(&self) -> (Duration, Duration) {
        let of = |child: &tokio::process::Child| child.id().and_then(cpu_time).unwrap_or_default();
        (of(&self.ingest), of(&self.worker))
    }
}

/// The instant each posted webhook was answered, once every one of their rows is visible.
async fn answered_and_seen(
    pipeline: &Pipeline,
    tasks: Vec<tokio::task::JoinHandle<(String, Result<Instant>)>>,
    timeout: Duration,
) -> Result<HashMap<String, Instant>> {
    let mut posted = HashMap::new();
    for task in tasks {
        let (id, at) = task.await?;
        posted.insert(id, at?);
    }
    let ids: Vec<String> = posted.keys().cloned().collect();
    pipeline.wait_seen(&ids, timeout).await?;
    Ok(posted)
}

/// Events a worker has applied, from its own metrics.
async fn events_applied(client: &reqwest::Client, port: u16) -> Option<u64> {
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("clerk_sync_worker_events_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

fn chrono_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn report(name: &str, posted: &HashMap<String, Instant>, seen: &Seen, cpu: (Duration, Duration)) {
    let seen = seen.lock().expect("lock");
    let mut ms: Vec<f64> = posted
        .iter()
        .filter_map(|(id, at)| seen.get(id).map(|s| s.saturating_duration_since(*at)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let n = posted.len().max(1) as f64;
    println!(
        "{name:<22} {:>6} webhooks  200 -> row visible: p50 {:>6.1} ms  p90 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  | CPU per webhook: ingest {:>5.0} µs, worker {:>5.0} µs",
        ms.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        cpu.0.as_secs_f64() * 1e6 / n,
        cpu.1.as_secs_f64() * 1e6 / n,
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let env = BenchEnv::from_env(6).await?;
    let db_name = format!("bench_fresh_{}", std::process::id());
    let db = env.fresh_database(&db_name).await?;
    let (ingest_port, worker_port) = (free_port()?, free_port()?);
    let worker_command = |port: u16| {
        let mut worker = env.command("worker");
        worker
            .env("DATABASE_URL", &db)
            .env("KAFKA_GROUP_ID", format!("{}-fresh", env.run))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"));
        worker
    };
    let mut worker = worker_command(worker_port)
        .spawn()
        .context("starting the worker")?;
    let mut ingest = env.command("ingest");
    ingest
        .env("CLERK_WEBHOOK_SECRET", SECRET)
        .env("LISTEN_ADDR", format!("127.0.0.1:{ingest_port}"));
    let mut ingest = ingest.spawn().context("starting ingest")?;
    load::wait_ready(&mut ingest, &format!("http://127.0.0.1:{ingest_port}")).await?;
    load::wait_ready(&mut worker, &format!("http://127.0.0.1:{worker_port}")).await?;

    let seen: Seen = Arc::default();
    let mut listener = PgListener::connect(&db).await?;
    listener.listen("clerk_sync").await?;
    let listening = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(n) = listener.recv().await {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(n.payload()) {
                    if let Some(id) = v["clerk_id"].as_str() {
                        seen.lock()
                            .expect("lock")
                            .entry(id.to_owned())
                            .or_insert(at);
                    }
                }
            }
        })
    };
    let pipeline = Pipeline {
        ingest,
        worker,
        url: format!("http://127.0.0.1:{ingest_port}/webhooks/clerk"),
        seen: seen.clone(),
        client: reqwest::Client::new(),
    };
    // Until the group has its partitions, nothing is applied: wait for a first row.
    let warm = "user_warmup".to_owned();
    pipeline.post(&warm).await?;
    pipeline
        .wait_seen(&[warm], Duration::from_secs(120))
        .await?;
    println!(
        "freshness with KAFKA_OPTIONS={:?} (shipped defaults otherwise)",
        env.options_raw
    );

    // 1. One at a time.
    let n = env_or("BENCH_FRESH_SERIAL", 200_usize);
    let mut posted = HashMap::new();
    let before = pipeline.cpu();
    for i in 0..n {
        let id = format!("user_serial_{i}");
        posted.insert(id.clone(), pipeline.post(&id).await?);
        pipeline.wait_seen(&[id], Duration::from_secs(30)).await?;
    }
    let after = pipeline.cpu();
    report(
        "one at a time",
        &posted,
        &seen,
        (after.0 - before.0, after.1 - before.1),
    );

    // 2. Steady rates.
    let secs = env_or("BENCH_FRESH_SECS", 10_u64);
    let rates: Vec<u64> = std::env::var("BENCH_FRESH_RATES")
        .unwrap_or_else(|_| "50,500,2000".to_owned())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let pipeline = Arc::new(pipeline);
    for rate in rates {
        let total = rate * secs;
        let gap = Duration::from_secs_f64(1.0 / rate as f64);
        let before = pipeline.cpu();
        let started = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            tokio::time::sleep_until(started + gap * i as u32).await;
            let id = format!("user_r{rate}_{i}");
            let p = pipeline.clone();
            tasks.push(tokio::spawn(async move { (id.clone(), p.post(&id).await) }));
        }
        let posted = answered_and_seen(&pipeline, tasks, Duration::from_secs(60)).await?;
        let after = pipeline.cpu();
        let achieved = total as f64 / started.elapsed().as_secs_f64();
        report(
            &format!("{rate}/s (sent {achieved:.0}/s)"),
            &posted,
            &seen,
            (after.0 - before.0, after.1 - before.1),
        );
    }

    // 3. A worker joins, then leaves.
    let rate = env_or("BENCH_GROUP_RATE", 200_u64);
    let phase = Duration::from_secs(10);
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let protocol = std::env::var("KAFKA_GROUP_PROTOCOL").unwrap_or_else(|_| "default".into());
    let started = tokio::time::Instant::now();
    let total = rate * 3 * phase.as_secs();
    let mut tasks = Vec::with_capacity(total as usize);
    let (mut joined_at, mut left_at) = (None, None);
    let mut joiner_applied = None;
    let mut second: Option<tokio::process::Child> = None;
    let second_port = free_port()?;
    for i in 0..total {
        let at = started + gap * i as u32;
        tokio::time::sleep_until(at).await;
        if joined_at.is_none() && at >= started + phase {
            second = Some(
                worker_command(second_port)
                    .spawn()
                    .context("second worker")?,
            );
            joined_at = Some(Instant::now());
        }
        if left_at.is_none() && at >= started + 2 * phase {
            joiner_applied = events_applied(&pipeline.client, second_port).await;
            if let Some(pid) = second.as_ref().and_then(tokio::process::Child::id) {
                std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()?;
            }
            left_at = Some(Instant::now());
        }
        let id = format!("user_g_{i}");
        let p = pipeline.clone();
        tasks.push(tokio::spawn(async move { (id.clone(), p.post(&id).await) }));
    }
    let posted = answered_and_seen(&pipeline, tasks, Duration::from_secs(120)).await?;
    if let Some(mut second) = second {
        second.wait().await?;
    }
    let (joined_at, left_at) = (
        joined_at.context("join time")?,
        left_at.context("leave time")?,
    );
    println!(
        "group change at {rate}/s, KAFKA_GROUP_PROTOCOL={protocol}: 200 -> row visible for the webhooks answered in each {phase:?} (the joining worker applied {} of them before leaving)",
        joiner_applied.map_or("?".to_owned(), |n| n.to_string())
    );
    let window = |from: Instant, to: Option<Instant>| -> HashMap<String, Instant> {
        posted
            .iter()
            .filter(|(_, at)| **at >= from && to.is_none_or(|to| **at < to))
            .map(|(id, at)| (id.clone(), *at))
            .collect()
    };
    let no_cpu = (Duration::ZERO, Duration::ZERO);
    report(
        "  a worker joins",
        &window(joined_at, Some(left_at)),
        &seen,
        no_cpu,
    );
    report("  the worker leaves", &window(left_at, None), &seen, no_cpu);
    listening.abort();
    Ok(())
}
