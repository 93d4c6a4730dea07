use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Result};
use clerk_sync_local::free_port;
use tokio::process::{Child, Command};

use super::{eventually, TestDb, TestKafka, TEST_SECRET};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clerk-sync"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

fn topic_env(command: &mut Command, kafka: &TestKafka) {
    command
        .env("KAFKA_BROKERS", &kafka.brokers)
        .env("TOPIC_USERS", &kafka.topics.users)
        .env("TOPIC_ORGANIZATIONS", &kafka.topics.organizations)
        .env("TOPIC_MEMBERSHIPS", &kafka.topics.memberships)
        .env("TOPIC_DLQ", &kafka.dlq)
        // What records are checked against: the secret the harness signs as Svix would, and
        // the project key it signs its own records with.
        .env("CLERK_WEBHOOK_SECRET", super::TEST_SECRET)
        .env("RECORD_SIGNING_KEY", super::TEST_RECORD_KEY);
}

async fn wait_healthy(child: &mut Child, base: &str) -> Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Some(status) = child.try_wait()? {
            bail!("process exited at start-up: {status}");
        }
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{base}/healthz never answered")
}

/// The pseudo-variable that sends a process's stderr to a file (log-capture tests).
pub const STDERR_FILE: &str = "__TEST_STDERR_FILE";

fn redirect_stderr(command: &mut Command, extra: &[(&str, &str)]) -> Result<()> {
    // A secret given as a file replaces the harness's own value.
    for (k, _) in extra {
        if let Some(base) = k.strip_suffix("_FILE") {
            command.env_remove(base);
        }
    }
    if let Some((_, path)) = extra.iter().find(|(k, _)| *k == STDERR_FILE) {
        command.env_remove(STDERR_FILE);
        command.stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        );
    }
    Ok(())
}

/// Runs `clerk-sync` with only `env` set (not even PATH): for start-up checks.
pub fn clerk_sync(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_clerk-sync"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("clerk-sync")
}

/// [`clerk_sync`] for a role that is expected to stop at start-up: one still running after
/// `limit` is killed, and its output so far returned (with a failing status) rather than
/// waited on forever.
pub async fn clerk_sync_expecting_exit(
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Result<(bool, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clerk-sync"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let exited = tokio::time::timeout(limit, child.wait()).await;
    let still_running = exited.is_err();
    if still_running {
        child.kill().await?;
    }
    let output = child.wait_with_output().await?;
    let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if still_running {
        stderr.push_str(&format!("\n(still running after {limit:?}: killed)"));
    }
    Ok((!still_running && output.status.success(), stderr))
}

/// Runs a one-shot `clerk-sync` command (e.g. `dlq list`) against the test's topics.
pub async fn run_cli(kafka: &TestKafka, args: &[&str], extra: &[(&str, &str)]) -> Result<String> {
    let output = cli_output(kafka, args, extra).await?;
    if !output.status.success() {
        bail!(
            "clerk-sync {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A one-shot command's whole output, whatever its exit status (exit-code tests).
pub async fn cli_output(
    kafka: &TestKafka,
    args: &[&str],
    extra: &[(&str, &str)],
) -> Result<std::process::Output> {
    Ok(spawn_cli(kafka, args, extra)?.wait_with_output().await?)
}

/// A one-shot command started against the test's topics, its output piped.
pub fn spawn_cli(kafka: &TestKafka, args: &[&str], extra: &[(&str, &str)]) -> Result<Child> {
    let mut command = binary();
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    topic_env(&mut command, kafka);
    for (k, v) in extra {
        command.env(k, v);
    }
    Ok(command.spawn()?)
}

/// Spawns the command `make` builds for a free port and waits until it answers there. A port
/// found free can be taken by a parallel test before the child binds it: when the child dies at
/// start-up it is started again on another port, three times at most.
async fn spawn_healthy(make: impl Fn(u16) -> Result<Command>) -> Result<(Child, String)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let port = free_port()?;
        let mut child = make(port)?.spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let healthy = wait_healthy(&mut child, &base).await;
        let exited = child.try_wait()?.is_some();
        match healthy {
            // Healthy, and the answer came from this child, not from whoever holds the port.
            Ok(()) if !exited => return Ok((child, base)),
            _ if exited && attempts < 3 => continue,
            Ok(()) => bail!("the process at {base} exited at start-up"),
            Err(e) => return Err(e),
        }
    }
}

/// `clerk-sync ingest` as a child process.
pub struct Ingest {
    /// Killed when the test ends.
    pub child: Child,
    /// The operational listener (`OPS_LISTEN_ADDR`): /healthz, /livez, /readyz, /metrics.
    pub base: String,
    /// The webhook listener (`LISTEN_ADDR`): POST /webhooks/clerk only.
    pub webhook_base: String,
}

impl Ingest {
    /// SIGTERM, then wait for the process to exit.
    pub async fn terminate(mut self) -> Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        Ok(tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??)
    }

    pub async fn start(kafka: &TestKafka, extra: &[(&str, &str)]) -> Result<Self> {
        Self::start_with_brokers(kafka, &kafka.brokers, extra).await
    }

    pub async fn start_with_brokers(
        kafka: &TestKafka,
        brokers: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        // Health is awaited on the ops port; the webhook port is chosen beside it.
        let webhook_port = std::cell::Cell::new(0);
        let (child, base) = spawn_healthy(|port| {
            webhook_port.set(free_port()?);
            let mut command = binary();
            command
                .arg("ingest")
                .env("OPS_LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("LISTEN_ADDR", format!("127.0.0.1:{}", webhook_port.get()));
            topic_env(&mut command, kafka);
            command
                .env("KAFKA_BROKERS", brokers)
                .env("CLERK_WEBHOOK_SECRET", TEST_SECRET);
            for (k, v) in extra {
                command.env(k, v);
            }
            redirect_stderr(&mut command, extra)?;
            Ok(command)
        })
        .await?;
        let webhook_base = format!("http://127.0.0.1:{}", webhook_port.get());
        Ok(Ingest {
            child,
            base,
            webhook_base,
        })
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks/clerk", self.webhook_base)
    }
}

/// `clerk-sync worker` as a child process.
pub struct WorkerProcess {
    pub child: Child,
    pub base: String,
}

impl WorkerProcess {
    pub async fn start(db: &TestDb, kafka: &TestKafka) -> Result<Self> {
        Self::start_with(db, kafka, &[]).await
    }

    pub async fn start_with(
        db: &TestDb,
        kafka: &TestKafka,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let (child, base) = spawn_healthy(|port| {
            let mut command = binary();
            command
                .arg("worker")
                .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("DATABASE_URL", &db.url)
                .env("KAFKA_GROUP_ID", &kafka.group);
            topic_env(&mut command, kafka);
            for (k, v) in extra {
                command.env(k, v);
            }
            redirect_stderr(&mut command, extra)?;
            Ok(command)
        })
        .await?;
        Ok(WorkerProcess { child, base })
    }

    /// SIGKILL: no chance to commit or leave the group.
    pub async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn stop(mut self) -> Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        let status = eventually("worker exit", Duration::from_secs(60), || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await;
        Ok(status)
    }
}

/// Posts a fixture to ingest, signed with the test secret as Svix would.
pub async fn post_fixture(ingest: &Ingest, svix_id: &str, name: &str) -> Result<reqwest::Response> {
    Ok(super::signed_post(
        &reqwest::Client::new(),
        &ingest.webhook_url(),
        TEST_SECRET,
        svix_id,
        &super::fixture(name),
    )
    .send()
    .await?)
}

/// Posts simulated webhooks to ingest, signed as Svix would, and expects each to be accepted.
pub async fn post_all(
    ingest: &Ingest,
    events: &[clerk_sync_core::testkit::SimEvent],
) -> Result<()> {
    let client = reqwest::Client::new();
    for e in events {
        let response = super::signed_post(
            &client,
            &ingest.webhook_url(),
            TEST_SECRET,
            &e.svix_id,
            &e.body,
        )
        .send()
        .await?;
        anyhow::ensure!(
            response.status() == 200,
            "{}: {}",
            e.event_type(),
            response.status()
        );
    }
    Ok(())
}
