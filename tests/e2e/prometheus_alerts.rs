//! A real Prometheus (Debian's `prometheus`, as scripts/test installs it), started on a free
//! port from the project's own `deploy/prometheus` files — targets pointed at this test's ingest
//! and worker, intervals of a second, the alert's `for:` scaled from minutes to seconds — scrapes
//! them while webhooks flow. The worker is stopped: `ClerkSyncWorkerDown` goes pending, then
//! firing; the worker resumes: it resolves. The worker cannot write (its database read-only):
//! the lag alert `ClerkSyncConsumerStalled` goes pending, then firing; writable again: it
//! resolves. Read from Prometheus's own API.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_norway::Value;

use crate::harness::{
    eventually, post_fixture, repo_file, Ingest, TestDb, TestKafka, WorkerProcess,
};

const ALERT: &str = "ClerkSyncWorkerDown";
const STALLED: &str = "ClerkSyncConsumerStalled";
const WAIT: Duration = Duration::from_secs(60);

struct Prometheus {
    child: tokio::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// The project's scrape configuration and rules, for these targets, `alert`'s `for:` scaled.
    async fn start(ingest: &str, worker: &str, alert: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config: Value =
            serde_norway::from_str(&repo_file("deploy/prometheus/prometheus.yml"))?;
        config["global"]["scrape_interval"] = "1s".into();
        config["global"]["scrape_timeout"] = "900ms".into();
        config["global"]["evaluation_interval"] = "1s".into();
        let jobs = config["scrape_configs"]
            .as_sequence_mut()
            .context("scrape_configs")?;
        // The drift check's Pushgateway has no part here.
        jobs.retain(|job| job["job_name"] != "clerk-sync-drift");
        for job in jobs {
            let target = match job["job_name"].as_str() {
                Some("clerk-sync-ingest") => ingest,
                Some("clerk-sync-worker") => worker,
                other => anyhow::bail!("unknown job {other:?}"),
            };
            job["static_configs"][0]["targets"] = vec![Value::from(target)].into();
        }
        let mut rules: Value = serde_norway::from_str(&repo_file("deploy/prometheus/alerts.yml"))?;
        let mut scaled = false;
        for group in rules["groups"].as_sequence_mut().context("groups")? {
            for rule in group["rules"].as_sequence_mut().context("rules")? {
                if rule["alert"] == alert {
                    rule["for"] = "5s".into();
                    scaled = true;
                }
            }
        }
        anyhow::ensure!(scaled, "{alert} is not in alerts.yml");
        std::fs::write(
            dir.path().join("prometheus.yml"),
            serde_norway::to_string(&config)?,
        )?;
        std::fs::write(
            dir.path().join("alerts.yml"),
            serde_norway::to_string(&rules)?,
        )?;
        let port = clerk_sync_local::free_port()?;
        let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned());
        let child = tokio::process::Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("{bin} (Debian's prometheus package; scripts/test installs it)")
            })?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually("Prometheus ready", WAIT, || async {
            let r = client.get(format!("{base}/-/ready")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        Ok(Prometheus {
            child,
            base,
            _dir: dir,
        })
    }

    /// The alert's state as Prometheus reports it (`pending`, `firing`), `None` when inactive.
    async fn state(&self, alert: &str) -> Option<String> {
        let body: serde_json::Value = reqwest::get(format!("{}/api/v1/alerts", self.base))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == alert)
            .and_then(|a| a["state"].as_str().map(str::to_owned))
    }

    /// Whether Prometheus scrapes `job` successfully right now.
    async fn up(&self, job: &str) -> Option<bool> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", format!("up{{job=\"{job}\"}}"))])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let value = body["data"]["result"].as_array()?.first()?["value"][1]
            .as_str()?
            .to_owned();
        Some(value == "1")
    }
}

fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_the_worker_down_alert_while_the_worker_is_stopped_and_resolves_it_after(
) -> Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let worker = WorkerProcess::start(&db, &kafka).await?;
    let target = |base: &str| base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target(&ingest.base), &target(&worker.base), ALERT).await?;

    eventually("both targets scraped", WAIT, || async {
        let both =
            prometheus.up("clerk-sync-ingest").await? && prometheus.up("clerk-sync-worker").await?;
        both.then_some(())
    })
    .await;
    let r = post_fixture(&ingest, "msg_prom_1", "user.created.json").await?;
    assert_eq!(r.status(), 200);
    // Before its first scrapes Prometheus has no `up` at all (`absent`), which the scaled 5 s
    // `for:` may outlast (the shipped 5 minutes never does): quiet once the worker is seen.
    eventually("quiet while the worker is up", WAIT, || async {
        prometheus.state(ALERT).await.is_none().then_some(())
    })
    .await;

    // The worker stops (its process frozen: its port stays, its scrapes time out).
    let pid = worker.child.id().context("worker pid")?;
    signal(pid, "STOP")?;
    let r = post_fixture(&ingest, "msg_prom_2", "organization.created.json").await?;
    assert_eq!(r.status(), 200, "webhooks still flow");
    eventually("the alert pending", WAIT, || async {
        (prometheus.state(ALERT).await.as_deref() == Some("pending")).then_some(())
    })
    .await;
    eventually("the alert firing", WAIT, || async {
        (prometheus.state(ALERT).await.as_deref() == Some("firing")).then_some(())
    })
    .await;

    // The worker resumes: it applies what waited, and the alert resolves.
    signal(pid, "CONT")?;
    eventually("the alert resolved", WAIT, || async {
        prometheus.state(ALERT).await.is_none().then_some(())
    })
    .await;
    eventually("the waiting event applied", WAIT, || async {
        (db.count("SELECT count(*) FROM organizations").await == 1).then_some(())
    })
    .await;
    drop(prometheus.child);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_the_stalled_lag_alert_while_the_worker_cannot_write_and_resolves_it_after(
) -> Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    // Lag measured every second (15 s shipped), so that it shows within the test.
    let worker = WorkerProcess::start_with(&db, &kafka, &[("LAG_REFRESH_MS", "1000")]).await?;
    let target = |base: &str| base.trim_start_matches("http://").to_owned();
    let prometheus =
        Prometheus::start(&target(&ingest.base), &target(&worker.base), STALLED).await?;
    eventually("both targets scraped", WAIT, || async {
        let both =
            prometheus.up("clerk-sync-ingest").await? && prometheus.up("clerk-sync-worker").await?;
        both.then_some(())
    })
    .await;

    // A failover's read-only window: the worker is up, serving metrics, and applies nothing.
    let mut admin = db.admin().await?;
    let cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()";
    sqlx::query(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name()
    ))
    .execute(&mut admin)
    .await?;
    sqlx::query(cut).bind(db.name()).execute(&mut admin).await?;
    let r = post_fixture(&ingest, "msg_stall_1", "user.created.json").await?;
    assert_eq!(r.status(), 200, "webhooks still flow");
    eventually("the lag alert pending", WAIT, || async {
        (prometheus.state(STALLED).await.as_deref() == Some("pending")).then_some(())
    })
    .await;
    eventually("the lag alert firing", WAIT, || async {
        (prometheus.state(STALLED).await.as_deref() == Some("firing")).then_some(())
    })
    .await;
    assert_eq!(
        prometheus.up("clerk-sync-worker").await,
        Some(true),
        "the worker was up all along"
    );

    // Writable again: the event applies, the lag returns to zero, the alert resolves.
    sqlx::query(&format!(
        "ALTER DATABASE {} RESET default_transaction_read_only",
        db.name()
    ))
    .execute(&mut admin)
    .await?;
    sqlx::query(cut).bind(db.name()).execute(&mut admin).await?;
    eventually("the waiting event applied", WAIT, || async {
        (db.count("SELECT count(*) FROM users").await == 1).then_some(())
    })
    .await;
    eventually("the lag alert resolved", WAIT, || async {
        prometheus.state(STALLED).await.is_none().then_some(())
    })
    .await;
    drop(prometheus.child);
    Ok(())
}
