//! 2b: `clerk-sync replay --from-beginning --into <empty database>` over the preloaded topics,
//! the documented way to rebuild the tables, at a given `--batch-max`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench_env::BenchEnv;
use crate::process_stats::{cpu_time, peak_rss_mib};

pub struct Rebuild {
    pub batch_max: usize,
    pub elapsed: Duration,
    pub cpu: Duration,
    pub peak_rss: f64,
    pub tables: (i64, i64, i64),
    /// Rows that differ from the drained worker's tables (`clerk-sync compare`).
    pub versus_drain: u64,
    /// The replay's own summary line.
    pub summary: String,
}

pub async fn rebuild(env: &BenchEnv, batch_max: usize) -> Result<Rebuild> {
    let db = env
        .fresh_database(&format!("bench_rebuild_{batch_max}"))
        .await?;
    let mut command = env.command("replay");
    command
        .args(["--from-beginning", "--into", &db])
        .args(["--batch-max", &batch_max.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command.spawn().context("starting the replay")?;
    let pid = child.id().context("replay pid")?;
    // Sampled while it runs: /proc forgets a process once it has been waited for.
    let (mut cpu, mut peak_rss) = (Duration::ZERO, 0.0_f64);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        cpu = cpu_time(pid).unwrap_or(cpu);
        peak_rss = peak_rss_mib(pid).unwrap_or(peak_rss);
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the replay did not finish within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("the replay failed: {status}");
    }
    let mut summary = String::new();
    if let Some(mut out) = child.stdout.take() {
        use tokio::io::AsyncReadExt;
        out.read_to_string(&mut summary).await?;
    }
    Ok(Rebuild {
        summary: summary.trim().to_owned(),
        batch_max,
        elapsed,
        cpu,
        peak_rss,
        tables: env.table_counts(&db).await?,
        versus_drain: clerk_sync_worker::compare::rows_differing(
            &env.database_url("bench_drain"),
            &db,
        )
        .await?,
    })
}
