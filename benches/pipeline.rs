//! End to end, through the real `clerk-sync` binary, a real broker and a real Postgres:
//! 2. drain: events preloaded on the topics, then the worker drains them into an empty database,
//!    beside a read-only consumer of the same topics (the broker's ceiling);
//! 2b. rebuild: `clerk-sync replay --from-beginning --into` an empty database, from the same
//!    topics, at each `--batch-max` of BENCH_REPLAY_BATCH (default 10000,100000);
//! 3. ingest: signed webhooks on 64 connections for a fixed time, beside the same HTTP stack
//!    answering without verification or produce (the HTTP ceiling) and the broker's raw produce
//!    rate with ingest's producer settings;
//! 3b. ingest idle: one connection, one webhook at a time, beside the HTTP ceiling alike (what
//!    the producer's linger adds when nothing else is in flight);
//! 4. memory and CPU of the worker and ingest processes while they do it.
//!
//! Prints figures; asserts nothing. `scripts/bench` runs it with KAFKA_BROKERS and DATABASE_URL
//! (or starts Apache Kafka and a throwaway Postgres). BENCH_EVENTS (default 100000), BENCH_SECS (ingest
//! load duration, default 10), BENCH_CONNECTIONS (default 64), BENCH_IDLE_SECS (idle run, default 3), KAFKA_OPTIONS (extra librdkafka
//! properties for every client, as the binary takes them).

#[path = "common/bench_env.rs"]
mod bench_env;
#[path = "common/load.rs"]
mod load;
#[path = "common/process_stats.rs"]
mod process_stats;
#[path = "common/rebuild.rs"]
mod rebuild;
#[path = "common/workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clerk_sync_core::mirror::Mirror;
use clerk_sync_core::{ClerkEvent, EventId};
use clerk_sync_local::free_port;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::process::Child;

use bench_env::BenchEnv;
use load::{LoadReport, Percentiles};
use process_stats::{cpu_time, peak_rss_mib, rss_mib};

const SECRET: &str = "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh";
const PARTITIONS: i32 = 6;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tables Clerk's order ends in: the drain must arrive there.
fn expected_counts(w: &workload::Workload) -> (usize, usize, usize) {
    let mut mirror = Mirror::default();
    for e in &w.history {
        let (meta, event): (_, ClerkEvent) =
            ClerkEvent::decode(EventId::parse(e.id.clone()).expect("id"), e.body.as_bytes())
                .expect("decodes");
        mirror.apply(&meta, &event);
    }
    (
        mirror.users().len(),
        mirror.orgs().len(),
        mirror.memberships().len(),
    )
}

fn main() -> Result<()> {
    let n: usize = env_or("BENCH_EVENTS", 100_000);
    let secs: u64 = env_or("BENCH_SECS", 10);
    let connections: usize = env_or("BENCH_CONNECTIONS", 64);
    let idle_secs: u64 = env_or("BENCH_IDLE_SECS", 3);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let env = BenchEnv::from_env(PARTITIONS).await?;
        let w = workload::workload(n, &mut StdRng::seed_from_u64(42));
        println!(
            "pipeline benchmark: {} webhooks ({} distinct, the rest redeliveries), {PARTITIONS} partitions per topic, broker {}",
            w.delivery.len(),
            w.history.len(),
            env.brokers
        );

        // The preload for 2 (a cold broker: its JIT not yet warm, so not the ceiling).
        load::produce_all(&env, &w, connections).await?;
        let reader = load::read_all(&env, w.delivery.len()).await?;
        let drain = drain(&env, &w).await?;
        let mut rebuilds = Vec::new();
        for batch_max in replay_batches()? {
            rebuilds.push(rebuild::rebuild(&env, batch_max).await?);
        }
        let http_ceiling = load::http_ceiling(&w, connections, Duration::from_secs(secs)).await?;
        let idle = Duration::from_secs(idle_secs);
        let http_idle = load::http_ceiling(&w, 1, idle).await?;
        // The raw-produce ceiling on the broker as warm as ingest then finds it, just before.
        let produce = load::produce_all(&env, &w, connections).await?;
        let ingest = ingest(&env, &w, connections, Duration::from_secs(secs), idle).await?;

        report(
            &w,
            &produce,
            reader,
            (&drain, &rebuilds),
            (&http_ceiling, &http_idle),
            &ingest,
        );
        Ok(())
    })
}

fn replay_batches() -> Result<Vec<usize>> {
    std::env::var("BENCH_REPLAY_BATCH")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|b| {
            b.trim()
                .parse()
                .context("BENCH_REPLAY_BATCH: batch sizes, comma-separated")
        })
        .collect()
}

fn report_rebuilds(w: &workload::Workload, reader: Duration, rebuilds: &[rebuild::Rebuild]) {
    let n = w.delivery.len();
    println!("\n2b. rebuild by replay (`replay --from-beginning --into` an empty database, the same {n} records)");
    for r in rebuilds {
        let (u, o, m) = r.tables;
        let matches = (u as usize, o as usize, m as usize) == expected_counts(w);
        println!(
            "  --batch-max {:>6}: {:>9.0} events/s  ({:.2} s from start to exit; replay / reader: {:.0}%)   peak RSS {:.0} MiB   CPU {:.1} s   tables {}",
            r.batch_max,
            rate(n, r.elapsed),
            r.elapsed.as_secs_f64(),
            100.0 * reader.as_secs_f64() / r.elapsed.as_secs_f64(),
            r.peak_rss,
            r.cpu.as_secs_f64(),
            if matches { "match".to_owned() } else { format!("MISMATCH ({u}, {o}, {m})") }
        );
        println!(
            "      against the drained worker's tables (clerk-sync compare): {}",
            match r.versus_drain {
                0 => "the same rows exactly".to_owned(),
                n => format!("{n} rows differ"),
            }
        );
        println!("      {}", r.summary);
    }
}

struct Drain {
    /// From start to the first batch applied (group join, migrations, first batch).
    startup: Duration,
    /// Records applied after the first batch, in `elapsed`.
    after_first: usize,
    elapsed: Duration,
    cpu: Duration,
    peak_rss: f64,
    /// RSS (MiB) when a quarter, half, three quarters and all of the events were applied.
    rss_at: Vec<f64>,
    tables: (i64, i64, i64),
    expected: (usize, usize, usize),
}

/// 2 and 4: the worker drains the preloaded topics into an empty database.
async fn drain(env: &BenchEnv, w: &workload::Workload) -> Result<Drain> {
    let db = env.fresh_database("bench_drain").await?;
    let group = format!("{}-worker", env.run);
    let port = free_port()?;
    let mut command = env.command("worker");
    command
        .env("DATABASE_URL", &db)
        .env("KAFKA_GROUP_ID", &group)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LAG_REFRESH_MS", "1000");
    let client = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let started = Instant::now();
    let mut child: Child = command.spawn().context("starting the worker")?;
    let pid = child.id().context("worker pid")?;
    let total = w.delivery.len() as i64;
    // (time, records applied) at the first applied batch: the rate counts what came after it.
    let mut first_progress: Option<(Duration, i64)> = None;
    let mut rss_at = Vec::new();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the worker exited during the drain: {status}");
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the worker did not drain within 10 minutes");
        }
        // Records applied so far, from the worker's own metrics (updated after each batch's
        // commit; the committed offsets trail by up to the 1 s auto-commit interval).
        let done = applied_records(&client, &metrics_url).await.unwrap_or(0);
        if done > 0 && first_progress.is_none() {
            first_progress = Some((started.elapsed(), done));
        }
        let quarter = (done * 4 / total) as usize;
        while rss_at.len() < quarter.min(4) {
            rss_at.push(rss_mib(pid).unwrap_or(0.0));
        }
        if done >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).unwrap_or_default();
    let peak_rss = peak_rss_mib(pid).unwrap_or(0.0);
    // Not timed: the offsets catch up with the last commit interval.
    while env.committed(&group).await? < total {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the worker's offsets did not reach the log end");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill().await;
    let tables = env.table_counts(&db).await?;
    let (startup, first_batch) = first_progress.unwrap_or_default();
    Ok(Drain {
        startup,
        after_first: (total - first_batch) as usize,
        elapsed: elapsed.saturating_sub(startup),
        cpu,
        peak_rss,
        rss_at,
        tables,
        expected: expected_counts(w),
    })
}

/// The sum of the worker's batch sizes: every record it has applied or dead-lettered.
async fn applied_records(client: &reqwest::Client, url: &str) -> Option<i64> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("clerk_sync_worker_batch_size_events_sum "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

struct Ingest {
    load: LoadReport,
    /// CPU this process spent generating the load (the machine is shared).
    generator_cpu: Duration,
    cpu: Duration,
    peak_rss: f64,
    /// RSS (MiB) at each quarter of the load.
    rss_at: Vec<f64>,
    /// One connection, one request at a time, after the load.
    idle: LoadReport,
}

/// 3 and 4: signed webhooks against the real ingest.
async fn ingest(
    env: &BenchEnv,
    w: &workload::Workload,
    connections: usize,
    duration: Duration,
    idle: Duration,
) -> Result<Ingest> {
    let port = free_port()?;
    let mut command = env.command("ingest");
    command
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("CLERK_WEBHOOK_SECRET", SECRET);
    let mut child = command.spawn().context("starting ingest")?;
    let pid = child.id().context("ingest pid")?;
    let base = format!("http://127.0.0.1:{port}");
    load::wait_ready(&mut child, &base).await?;
    let cpu_before = cpu_time(pid).unwrap_or_default();
    let own_before = cpu_time(std::process::id()).unwrap_or_default();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        for _ in 0..4 {
            tokio::time::sleep(duration / 4).await;
            samples.push(rss_mib(pid).unwrap_or(0.0));
        }
        samples
    });
    let requests = load::signed_requests(w, SECRET);
    let load = load::run(
        &format!("{base}/webhooks/clerk"),
        &requests,
        connections,
        duration,
    )
    .await?;
    let rss_at = sampler.await?;
    let generator_cpu = cpu_time(std::process::id())
        .unwrap_or_default()
        .saturating_sub(own_before);
    let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before);
    let peak_rss = peak_rss_mib(pid).unwrap_or(0.0);
    let idle = load::run(&format!("{base}/webhooks/clerk"), &requests, 1, idle).await?;
    let _ = child.kill().await;
    Ok(Ingest {
        load,
        generator_cpu,
        cpu,
        peak_rss,
        rss_at,
        idle,
    })
}

fn rate(count: usize, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64().max(1e-9)
}

fn mib_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn report(
    w: &workload::Workload,
    produce: &LoadReport,
    reader: Duration,
    (drain, rebuilds): (&Drain, &[rebuild::Rebuild]),
    (http, http_idle): (&LoadReport, &LoadReport),
    ingest: &Ingest,
) {
    let n = w.delivery.len();
    let reader_rate = rate(n, reader);
    let drain_rate = rate(drain.after_first, drain.elapsed);
    println!("\n2. end-to-end drain ({n} events preloaded, empty database)");
    println!(
        "  read-only consumer (broker ceiling): {:>9.0} events/s  ({:.2} s)",
        reader_rate,
        reader.as_secs_f64()
    );
    println!(
        "  worker drain:                        {:>9.0} events/s  ({:.2} s from the first batch on; {:.1} s from start to it)   worker / reader: {:.0}%",
        drain_rate,
        drain.elapsed.as_secs_f64(),
        drain.startup.as_secs_f64(),
        100.0 * drain_rate / reader_rate
    );
    let (u, o, m) = drain.tables;
    let (eu, eo, em) = drain.expected;
    println!(
        "  tables: {u} users, {o} organizations, {m} memberships (Clerk's final state: {eu}, {eo}, {em}: {})",
        if (u as usize, o as usize, m as usize) == (eu, eo, em) { "match" } else { "MISMATCH" }
    );
    report_rebuilds(w, reader, rebuilds);

    let ceiling_rate = http.rate();
    let produce_rate = produce.rate();
    let ingest_rate = ingest.load.rate();
    println!(
        "\n3. ingest ({} connections, {:.0} s each)",
        ingest.load.connections,
        ingest.load.elapsed.as_secs_f64()
    );
    let line = |name: &str, r: &LoadReport| {
        let Percentiles { p50, p99, max } = r.percentiles();
        println!(
            "  {name:<44} {:>9.0} req/s   p50 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms   errors {}",
            r.rate(),
            p50,
            p99,
            max,
            r.errors
        );
    };
    line("HTTP ceiling (no verification, no produce):", http);
    line("raw produce (ingest's producer, no HTTP):", produce);
    line("clerk-sync ingest (verify, produce, ack):", &ingest.load);
    println!(
        "  ingest / raw produce: {:.0}%   ingest / HTTP ceiling: {:.0}%   ingest CPU: {:.0} µs per request",
        100.0 * ingest_rate / produce_rate,
        100.0 * ingest_rate / ceiling_rate,
        1e6 * ingest.cpu.as_secs_f64() / ingest.load.completed.max(1) as f64,
    );

    println!(
        "  CPU while loading ingest: ingest {:.2} cores, load generator {:.2} cores, of {} (the broker and the rest: what remains)",
        ingest.cpu.as_secs_f64() / ingest.load.elapsed.as_secs_f64(),
        ingest.generator_cpu.as_secs_f64() / ingest.load.elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );

    println!(
        "\n3b. ingest idle (one connection, one webhook at a time, {:.0} s each)",
        ingest.idle.elapsed.as_secs_f64()
    );
    line("HTTP ceiling (no verification, no produce):", http_idle);
    line("clerk-sync ingest (verify, produce, ack):", &ingest.idle);
    println!(
        "  what ingest adds to a lone webhook: {:.1} ms at p50 (verification, the broker's round trip and ack)",
        ingest.idle.percentiles().p50 - http_idle.percentiles().p50
    );

    println!("\n4. memory and CPU");
    println!(
        "  worker: peak RSS {:.0} MiB; RSS at 25/50/75/100% of the drain: {} MiB; CPU {:.1} s ({:.0} µs per event, {:.2} cores while draining)",
        drain.peak_rss,
        mib_list(&drain.rss_at),
        drain.cpu.as_secs_f64(),
        1e6 * drain.cpu.as_secs_f64() / n as f64,
        drain.cpu.as_secs_f64() / (drain.elapsed + drain.startup).as_secs_f64(),
    );
    println!(
        "  ingest: peak RSS {:.0} MiB; RSS at 25/50/75/100% of the load: {} MiB",
        ingest.peak_rss,
        mib_list(&ingest.rss_at),
    );
}
