//! A throwaway Apache Kafka (KRaft) on loopback, run from its jars: one node, or a cluster of
//! combined broker + controller nodes, each with its own data directory, which a test may stop,
//! kill, pause and start again with its data kept. Everything is removed when it is dropped.

mod jars;
mod node;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{bail, Context};
use crate::Result;
use base64::Engine;
use rand::RngCore;
use tempfile::TempDir;

pub use jars::{cache_dir, Classpath, KAFKA_VERSION};
use node::Node;

use super::free_port;

/// The listener every node has for clients and for the other nodes.
pub const PLAINTEXT: &str = "PLAINTEXT";
const CONTROLLER: &str = "CONTROLLER";

/// What to start: how many nodes, extra listeners, broker properties, format arguments.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    nodes: u32,
    listeners: Vec<(String, String)>,
    properties: Vec<(String, String)>,
    format_args: Vec<String>,
    heap: Option<String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            nodes: 1,
            listeners: Vec::new(),
            properties: Vec::new(),
            format_args: Vec::new(),
            heap: None,
        }
    }
}

impl KafkaSettings {
    /// `n` combined broker + controller nodes (a quorum of `n` voters).
    pub fn nodes(mut self, n: u32) -> Self {
        self.nodes = n.max(1);
        self
    }

    /// A broker property for every node, after (and so over) the local defaults.
    pub fn property(mut self, key: &str, value: impl Into<String>) -> Self {
        self.properties.push((key.to_owned(), value.into()));
        self
    }

    /// A further client listener `name` speaking `protocol` (`SASL_SSL`, `SSL`…), on a port of
    /// its own per node; its settings are given as properties (`listener.name.<name>.…`).
    pub fn listener(mut self, name: &str, protocol: &str) -> Self {
        self.listeners.push((name.to_owned(), protocol.to_owned()));
        self
    }

    /// An argument to `kafka-storage format` (e.g. `--add-scram`, then its value).
    pub fn format_arg(mut self, arg: impl Into<String>) -> Self {
        self.format_args.push(arg.into());
        self
    }

    /// The JVM's heap options (`-Xms… -Xmx…`); else `KAFKA_HEAP_OPTS`, else a heap sized for
    /// three nodes beside the tests on a 2-core, 24 GiB machine.
    pub fn heap(mut self, heap: impl Into<String>) -> Self {
        self.heap = Some(heap.into());
        self
    }

    pub async fn start(self) -> Result<LocalKafka> {
        LocalKafka::start_with(self).await
    }
}

/// Each node's ports: the controller's, then one per client listener (PLAINTEXT first).
#[derive(Clone, Debug)]
struct Ports {
    controller: u16,
    listeners: Vec<(String, u16)>,
}

/// A running local Kafka: its nodes, their directories and the jars they run from.
pub struct LocalKafka {
    classpath: Classpath,
    settings: KafkaSettings,
    ports: Vec<Ports>,
    nodes: Vec<Node>,
    heap: String,
    // Dropped last: the nodes are killed (kill on drop) before their data is removed.
    dir: TempDir,
}

impl LocalKafka {
    /// One node with the local defaults.
    pub async fn start() -> Result<Self> {
        KafkaSettings::default().start().await
    }

    pub fn builder() -> KafkaSettings {
        KafkaSettings::default()
    }

    async fn start_with(settings: KafkaSettings) -> Result<Self> {
        let classpath = tokio::task::spawn_blocking(Classpath::find).await??;
        let dir = tempfile::Builder::new()
            .prefix("clerk-sync-kafka-")
            .tempdir()?;
        let heap = settings
            .heap
            .clone()
            .or_else(|| std::env::var("KAFKA_HEAP_OPTS").ok())
            .unwrap_or_else(|| "-Xms256m -Xmx768m".to_owned());
        let nodes = (1..=settings.nodes)
            .map(|id| Node::new(id, dir.path()))
            .collect::<Result<Vec<_>>>()?;
        let mut kafka = LocalKafka {
            classpath,
            settings,
            ports: Vec::new(),
            nodes,
            heap,
            dir,
        };
        kafka.format_and_start().await?;
        Ok(kafka)
    }

    /// Ports found free can be taken before the JVM binds them: three tries, each on new ports.
    async fn format_and_start(&mut self) -> Result<()> {
        let cluster_id = random_cluster_id();
        let mut last_error = None;
        for _ in 0..3 {
            self.ports = self.choose_ports()?;
            self.write_properties()?;
            for node in &self.nodes {
                let (classpath, args, id) = (
                    self.classpath.clone(),
                    self.settings.format_args.clone(),
                    cluster_id.clone(),
                );
                let dir = node.dir.clone();
                let node_id = node.id;
                tokio::task::spawn_blocking(move || {
                    node::format(node_id, &dir, &classpath, &id, &args)
                })
                .await??;
            }
            match self.start_all().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    for node in &mut self.nodes {
                        node.child = None;
                    }
                    let in_use = self
                        .nodes
                        .iter()
                        .any(|n| log_says(&n.log_file(), "Address already in use"));
                    if !in_use {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| crate::Error::Failed("Kafka did not start".to_owned())))
    }

    /// The nodes of a quorum start together (each waits for the others' votes), then each is
    /// waited for.
    async fn start_all(&mut self) -> Result<()> {
        let mut offsets = Vec::new();
        for node in &mut self.nodes {
            offsets.push(node.spawn(&self.classpath, &self.heap)?);
        }
        for (node, from) in self.nodes.iter_mut().zip(offsets) {
            node.wait_started(from).await?;
        }
        Ok(())
    }

    fn choose_ports(&self) -> Result<Vec<Ports>> {
        self.nodes
            .iter()
            .map(|_| {
                let mut listeners = vec![(PLAINTEXT.to_owned(), free_port()?)];
                for (name, _) in &self.settings.listeners {
                    listeners.push((name.clone(), free_port()?));
                }
                Ok(Ports {
                    controller: free_port()?,
                    listeners,
                })
            })
            .collect()
    }

    fn write_properties(&self) -> Result<()> {
        let voters = self
            .nodes
            .iter()
            .zip(&self.ports)
            .map(|(node, ports)| format!("{}@127.0.0.1:{}", node.id, ports.controller))
            .collect::<Vec<_>>()
            .join(",");
        for (node, ports) in self.nodes.iter().zip(&self.ports) {
            let text = self.properties(node, ports, &voters);
            std::fs::write(node.properties_file(), text)
                .with_context(|| format!("writing {}", node.properties_file().display()))?;
        }
        Ok(())
    }

    fn properties(&self, node: &Node, ports: &Ports, voters: &str) -> String {
        let n = self.nodes.len();
        let replication = n.min(3);
        let min_insync = if n >= 3 { 2 } else { 1 };
        let client = |(name, port): &(String, u16)| format!("{name}://127.0.0.1:{port}");
        let advertised: Vec<String> = ports.listeners.iter().map(client).collect();
        let mut listeners = advertised.clone();
        listeners.push(format!("{CONTROLLER}://127.0.0.1:{}", ports.controller));
        let mut protocols = vec![
            format!("{PLAINTEXT}:PLAINTEXT"),
            format!("{CONTROLLER}:PLAINTEXT"),
        ];
        protocols.extend(
            self.settings
                .listeners
                .iter()
                .map(|(name, protocol)| format!("{name}:{protocol}")),
        );
        let mut lines = vec![
            ("process.roles", "broker,controller".to_owned()),
            ("node.id", node.id.to_string()),
            ("controller.quorum.voters", voters.to_owned()),
            ("listeners", listeners.join(",")),
            ("advertised.listeners", advertised.join(",")),
            ("controller.listener.names", CONTROLLER.to_owned()),
            ("inter.broker.listener.name", PLAINTEXT.to_owned()),
            ("listener.security.protocol.map", protocols.join(",")),
            ("log.dirs", node.data_dir().display().to_string()),
            ("num.partitions", "1".to_owned()),
            ("default.replication.factor", replication.to_string()),
            ("min.insync.replicas", min_insync.to_string()),
            ("unclean.leader.election.enable", "false".to_owned()),
            ("offsets.topic.replication.factor", replication.to_string()),
            // 50 by default: made on a group's first use, a long first join on a small machine.
            ("offsets.topic.num.partitions", "5".to_owned()),
            (
                "transaction.state.log.replication.factor",
                replication.to_string(),
            ),
            ("transaction.state.log.min.isr", min_insync.to_string()),
            (
                "share.coordinator.state.topic.replication.factor",
                replication.to_string(),
            ),
            (
                "share.coordinator.state.topic.min.isr",
                min_insync.to_string(),
            ),
            // A group's first member is assigned at once instead of after 3 s.
            ("group.initial.rebalance.delay.ms", "0".to_owned()),
            // A killed or frozen node keeps leading its partitions until the controllers fence
            // it: after 3 s instead of Kafka's 9 (heartbeats every 0.5 s, not 2), so writes to
            // its partitions stall, and ingest answers 503, for a third as long (README).
            ("broker.session.timeout.ms", "3000".to_owned()),
            ("broker.heartbeat.interval.ms", "500".to_owned()),
        ];
        for (key, value) in &self.settings.properties {
            lines.retain(|(k, _)| k != key);
            lines.push((key.as_str(), value.clone()));
        }
        let mut text =
            String::from("# Written by clerk-sync (src/local/kafka): a throwaway node.\n");
        for (key, value) in lines {
            text.push_str(&format!("{key}={value}\n"));
        }
        text
    }

    /// Bootstrap servers of the PLAINTEXT listener, every node.
    pub fn brokers(&self) -> String {
        self.listener_brokers(PLAINTEXT)
    }

    /// Bootstrap servers of listener `name`, every node.
    pub fn listener_brokers(&self, name: &str) -> String {
        self.ports
            .iter()
            .filter_map(|ports| {
                let (_, port) = ports.listeners.iter().find(|(n, _)| n == name)?;
                Some(format!("127.0.0.1:{port}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s address on listener `name`.
    pub fn node_address(&self, id: u32, name: &str) -> Option<String> {
        let ports = self.ports.get(id.checked_sub(1)? as usize)?;
        let (_, port) = ports.listeners.iter().find(|(n, _)| n == name)?;
        Some(format!("127.0.0.1:{port}"))
    }

    /// The node ids, 1 to n.
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The version the brokers named in their logs (the jars', before the first start).
    pub fn version(&self) -> String {
        self.nodes
            .first()
            .and_then(Node::logged_version)
            .unwrap_or_else(|| self.classpath.version().to_owned())
    }

    pub fn classpath(&self) -> &Classpath {
        &self.classpath
    }

    /// The directory holding every node's properties, data and `server.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_file(&self, id: u32) -> Result<PathBuf> {
        Ok(self.node(id)?.log_file())
    }

    fn node(&self, id: u32) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no Kafka node {id}"))
    }

    fn node_mut(&mut self, id: u32) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no Kafka node {id}"))
    }

    /// SIGTERM (a controlled shutdown: leadership moves away first) and waits for the exit.
    pub async fn stop_node(&mut self, id: u32) -> Result<()> {
        let node = self.node_mut(id)?;
        node.signal("TERM")?;
        node.wait_exit(Duration::from_secs(120)).await?;
        Ok(())
    }

    /// SIGKILL: no shutdown at all, as a crashed machine.
    pub async fn kill_node(&mut self, id: u32) -> Result<()> {
        let node = self.node_mut(id)?;
        node.signal("KILL")?;
        node.wait_exit(Duration::from_secs(30)).await?;
        Ok(())
    }

    /// SIGSTOP: the process freezes with its connections open, as a long GC pause or a hung VM.
    pub fn pause_node(&self, id: u32) -> Result<()> {
        self.node(id)?.signal("STOP")
    }

    /// SIGCONT after [`LocalKafka::pause_node`].
    pub fn resume_node(&self, id: u32) -> Result<()> {
        self.node(id)?.signal("CONT")
    }

    /// Starts a stopped or killed node again, on its ports and with its data.
    pub async fn start_node(&mut self, id: u32) -> Result<()> {
        let classpath = self.classpath.clone();
        let heap = self.heap.clone();
        let node = self.node_mut(id)?;
        if node.is_running() {
            bail!("Kafka node {id} is already running");
        }
        node.start(&classpath, &heap).await
    }

    /// Runs one of Kafka's command-line tools (`main_class`, e.g.
    /// `org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`) from the same jars.
    pub async fn tool(&self, main_class: &str, args: &[&str]) -> Result<std::process::Output> {
        run_tool(&self.classpath, self.dir.path(), main_class, args).await
    }
}

/// Runs a Kafka command-line tool from `classpath`, its warnings on stderr.
pub async fn run_tool(
    classpath: &Classpath,
    scratch: &Path,
    main_class: &str,
    args: &[&str],
) -> Result<std::process::Output> {
    let config = scratch.join("tools-log4j2.properties");
    std::fs::write(
        &config,
        "status = error\nappender.err.type = Console\nappender.err.name = ERR\nappender.err.target = SYSTEM_ERR\nappender.err.layout.type = PatternLayout\nappender.err.layout.pattern = %p %m%n\nrootLogger.level = warn\nrootLogger.appenderRef.err.ref = ERR\n",
    )?;
    let options = vec![
        "-Xmx256m".to_owned(),
        format!("-Dlog4j2.configurationFile={}", config.display()),
    ];
    let mut command: tokio::process::Command = classpath.command(&options, main_class).into();
    command.args(args).kill_on_drop(true);
    command
        .output()
        .await
        .with_context(|| format!("running {main_class}"))
}

/// A new cluster id: 16 random bytes, URL-safe base64 without padding, as Kafka writes them.
fn random_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Kafka reserves the all-zero and all-but-one-zero ids; an id starting with '-' (the top six
    // bits all but the last set) is read by the storage tool as an option, so Kafka never makes
    // one: the top bit cleared and the fourth set keep the first character within E..f.
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn log_says(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| log.contains(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_id_is_22_url_safe_characters() {
        let id = random_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn a_cluster_id_never_starts_with_a_dash_which_the_storage_tool_would_take_for_an_option() {
        for _ in 0..2000 {
            let id = random_cluster_id();
            assert!(!id.starts_with('-') && !id.starts_with('_'), "{id}");
        }
    }
}
