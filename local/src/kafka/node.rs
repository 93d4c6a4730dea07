//! One combined broker + controller process: its directory (properties, log configuration, data,
//! log), started, signalled and started again on the same ports with its data kept.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::error::{bail, Context};
use crate::Result;
use tokio::process::{Child, Command};

use super::jars::Classpath;

/// How long a node may take to start (a cold JVM on a busy 2-core machine takes 5–10 s).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// What the broker writes when it is up (`KafkaRaftServer`), and its version line.
const STARTED: &str = "Kafka Server started";
const VERSION: &str = "Kafka version: ";

/// Only what says how the broker is doing: the version, the start line, warnings and errors.
const LOG4J: &str = "status = error
appender.file.type = Console
appender.file.name = OUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.version.name = org.apache.kafka.common.utils.internals.AppInfoParser
logger.version.level = info
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
";

pub(super) struct Node {
    pub id: u32,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    pub fn new(id: u32, cluster_dir: &Path) -> Result<Self> {
        let dir = cluster_dir.join(format!("node-{id}"));
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(dir.join("log4j2.properties"), LOG4J)?;
        Ok(Node {
            id,
            dir,
            child: None,
        })
    }

    pub fn properties_file(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Starts the process (its output appended to `server.log`) and waits until it says it has
    /// started. An exit before that is an error quoting the log.
    pub async fn start(&mut self, classpath: &Classpath, heap: &str) -> Result<()> {
        let from = self.spawn(classpath, heap)?;
        self.wait_started(from).await
    }

    /// Starts the process; returns where its output begins in `server.log`.
    pub fn spawn(&mut self, classpath: &Classpath, heap: &str) -> Result<u64> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())?;
        let from = log.metadata()?.len();
        let mut command: Command = classpath
            .command(&jvm_options(&self.dir, heap), "kafka.Kafka")
            .into();
        outlived_by_nothing(&mut command);
        command
            .arg(self.properties_file())
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        self.child = Some(
            command
                .spawn()
                .context("starting the Kafka broker (java)")?,
        );
        Ok(from)
    }

    /// Waits until the process started at log offset `from` says it has started.
    pub async fn wait_started(&mut self, from: u64) -> Result<()> {
        let log_path = self.log_file();
        let started = Instant::now();
        loop {
            let said = read_from(&log_path, from)?;
            if said.contains(STARTED) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "Kafka node {} exited at start-up ({status}): {}",
                        self.id,
                        last_lines(&said, 8)
                    );
                }
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "Kafka node {} did not start within {START_TIMEOUT:?}; see {}",
                    self.id,
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The version the broker named in its log.
    pub fn logged_version(&self) -> Option<String> {
        let said = read_from(&self.log_file(), 0).ok()?;
        let line = said.lines().rev().find(|l| l.contains(VERSION))?;
        let version = line.split(VERSION).nth(1)?.split_whitespace().next()?;
        Some(version.to_owned())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .with_context(|| format!("Kafka node {} is not running", self.id))?;
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed: {status}");
        }
        Ok(())
    }

    /// Waits for the process to end after a signal.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let child = self
            .child
            .as_mut()
            .with_context(|| format!("Kafka node {} is not running", self.id))?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .with_context(|| format!("Kafka node {} did not exit within {timeout:?}", self.id))??;
        self.child = None;
        Ok(status)
    }
}

/// `kafka-storage format` for node `id`'s data directory under `dir` (blocking: run it off the
/// async threads).
pub fn format(
    id: u32,
    dir: &Path,
    classpath: &Classpath,
    cluster_id: &str,
    extra: &[String],
) -> Result<()> {
    let mut command = classpath.command(&jvm_options(dir, "-Xmx256m"), "kafka.tools.StorageTool");
    command
        .args(["format", "--ignore-formatted", "-t", cluster_id, "-c"])
        .arg(dir.join("server.properties"))
        .args(extra);
    let output = command
        .output()
        .context("running kafka.tools.StorageTool")?;
    if !output.status.success() {
        bail!(
            "formatting Kafka node {id}'s storage: {} {}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn jvm_options(dir: &Path, heap: &str) -> Vec<String> {
    let mut options: Vec<String> = heap.split_whitespace().map(str::to_owned).collect();
    options.extend(
        [
            // As Kafka's own start scripts run it: short pauses, no GUI.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
        ]
        .map(str::to_owned),
    );
    options.push(format!(
        "-Dlog4j2.configurationFile={}",
        dir.join("log4j2.properties").display()
    ));
    options
}

/// The broker is ours to stop: in a process group of its own, a Ctrl-C meant for `dev` or the
/// tests does not stop it before what uses it has drained; and where util-linux's `setpriv` is
/// there, the kernel kills it if we die without dropping it (a crashed test run leaks no JVM).
fn outlived_by_nothing(command: &mut Command) {
    command.process_group(0);
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    if setpriv.is_file() {
        let std = command.as_std();
        let mut wrapped = std::process::Command::new(setpriv);
        wrapped
            .args(["--pdeathsig", "KILL", "--"])
            .arg(std.get_program())
            .args(std.get_args());
        let mut replaced: Command = wrapped.into();
        replaced.process_group(0);
        *command = replaced;
    }
}

fn read_from(path: &Path, from: u64) -> Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
