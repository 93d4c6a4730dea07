use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use clerk_sync_local::{kafka, KafkaSettings, LocalKafka, TempPostgres};

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Run COMMAND beside a throwaway Apache Kafka and Postgres (started unless KAFKA_BROKERS /
    /// DATABASE_URL are set), their addresses in its environment; both are stopped and removed
    /// when it ends, and its exit status is this command's. scripts/test and scripts/bench run
    /// the tests and benchmarks this way.
    Exec(ExecArgs),
    /// Gather the Kafka broker's jars into the cache (once) and print their Kafka version.
    Jars,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Kafka nodes to start (3: a replicated cluster, min.insync.replicas=2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub kafka_nodes: u32,
    /// Start no Postgres (the command needs none).
    #[arg(long)]
    pub no_postgres: bool,
    /// Start no Kafka (the command needs none).
    #[arg(long)]
    pub no_kafka: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The exit status of a command `local exec` ran, to be this process's.
#[derive(Debug)]
pub struct ChildExit(pub u8);

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the command exited with status {}", self.0)
    }
}

impl std::error::Error for ChildExit {}

pub async fn run(command: LocalCommand, cancel: CancellationToken) -> Result<()> {
    match command {
        LocalCommand::Exec(args) => exec(args, cancel).await,
        LocalCommand::Jars => {
            let classpath = tokio::task::spawn_blocking(kafka::Classpath::find).await??;
            println!("Apache Kafka {}", classpath.version());
            Ok(())
        }
    }
}

async fn exec(args: ExecArgs, cancel: CancellationToken) -> Result<()> {
    let mut env = Vec::new();
    let _postgres = match std::env::var("DATABASE_URL") {
        _ if args.no_postgres => None,
        Ok(_) => None,
        Err(_) => {
            let pg = tokio::task::spawn_blocking(TempPostgres::start).await??;
            eprintln!("==> Postgres on {}", pg.url());
            env.push(("DATABASE_URL", pg.url()));
            Some(pg)
        }
    };
    let _kafka = match std::env::var("KAFKA_BROKERS") {
        _ if args.no_kafka => None,
        Ok(_) => None,
        Err(_) => {
            let kafka = KafkaSettings::default()
                .nodes(args.kafka_nodes)
                .start()
                .await?;
            eprintln!(
                "==> Apache Kafka {} on {} ({} node{}; logs under {})",
                kafka.version(),
                kafka.brokers(),
                args.kafka_nodes,
                if args.kafka_nodes == 1 { "" } else { "s" },
                kafka.dir().display()
            );
            env.push(("KAFKA_BROKERS", kafka.brokers()));
            Some::<LocalKafka>(kafka)
        }
    };
    let (program, rest) = args.command.split_first().context("no command given")?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .envs(env)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let status = tokio::select! {
        status = child.wait() => status?,
        // Ctrl-C reaches the command too (same process group); SIGTERM sent to us alone is
        // passed on, and the services outlive the command's own shutdown.
        () = cancel.cancelled() => {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            }
            child.wait().await?
        }
    };
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(ChildExit(u8::try_from(code).unwrap_or(1)).into()),
        None => bail!("{program} was ended by a signal ({status})"),
    }
}
