use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use super::free_port;

/// The tansu version the scripts build and the docs describe.
pub const TANSU_VERSION: &str = "0.6.0";

/// A tansu broker (a Kafka-wire-compatible broker) as a child process, killed on drop.
pub struct TansuBroker {
    child: Child,
    port: u16,
}

fn find_tansu() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        let bin = cache.join(format!("clerk-sync/tansu-{TANSU_VERSION}/bin/tansu"));
        bin.is_file().then_some(bin)
    })
}

impl TansuBroker {
    /// Starts tansu with in-memory storage on a free port and waits until it accepts connections.
    pub async fn start() -> Result<Self> {
        Self::start_with_storage("memory://tansu/").await
    }

    /// `storage` is a tansu storage URL, e.g. `memory://tansu/` or `postgres://…`.
    pub async fn start_with_storage(storage: &str) -> Result<Self> {
        let port = free_port()?;
        Self::start_on(port, port, storage).await
    }

    /// Listens on a free port but tells clients to connect to `advertised_port` (a proxy in front
    /// of it, for fault tests).
    pub async fn start_advertising(advertised_port: u16) -> Result<Self> {
        Self::start_on(free_port()?, advertised_port, "memory://tansu/").await
    }

    async fn start_on(port: u16, advertised_port: u16, storage: &str) -> Result<Self> {
        let bin = find_tansu().with_context(|| {
            format!(
                "no tansu broker found: run scripts/install-tansu (or `cargo install tansu@{TANSU_VERSION} \
                 --locked --features dynostore`), set TANSU_BIN, or set KAFKA_BROKERS to a running broker"
            )
        })?;
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised_port}");
        let child = Command::new(&bin)
            .arg("broker")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", storage])
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut broker = TansuBroker { child, port };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = broker.child.try_wait()? {
                bail!("tansu exited at start-up: {status}");
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("tansu did not listen on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(broker)
    }

    /// Bootstrap servers for clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the broker now (fault tests).
    pub async fn kill(&mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
