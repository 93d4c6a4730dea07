//! Command-line interface: every setting is a flag with an environment variable.

mod args;
mod backfill;
mod compare;
mod dev;
mod dlq;
mod ingest;
mod lag;
mod local;
mod migrate;
mod probe;
mod replay;
mod secret_files;
mod shutdown;
mod topics;
mod worker;

use clap::{Parser, Subcommand};

pub use args::{DatabaseArgs, GroupProtocol, IngestArgs, KafkaArgs, TopicArgs, WorkerArgs};
pub use local::ChildExit;
pub use secret_files::{parse_with_secret_files, read_secret_files};
pub use shutdown::shutdown_token;

use crate::logging::LogFormat;

/// The exit code of a command that ran and found what it looks for: drift, differences, lag
/// over the bound, dead letters (0 is "nothing found", 1 an error, 2 a usage error).
pub const EXIT_FOUND: u8 = 3;

/// What a command found, as an error that exits with [`EXIT_FOUND`] instead of 1.
#[derive(Debug)]
pub struct Found(pub String);

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Found {}

/// Keeps your Postgres tables in step with Clerk, through Kafka.
#[derive(Debug, Parser)]
#[command(
    name = "clerk-sync",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CLERK_SYNC_COMMIT"), ")"),
    about
)]
pub struct Cli {
    /// Log format (filter with RUST_LOG).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the webhook endpoint: verify, publish to Kafka, answer after the broker's ack.
    Ingest(IngestArgs),
    /// Consume Clerk events from Kafka and apply them to Postgres.
    Worker(WorkerArgs),
    /// Apply the database migrations (the table contract) and exit.
    Migrate(DatabaseArgs),
    /// Kafka topic administration.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Show the consumer group's lag per partition (offsets and age), like kafka-consumer-groups.
    Lag(lag::LagArgs),
    /// Inspect and redrive the dead-letter topic.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Publish every user, organization and membership from Clerk's Backend API.
    Backfill(backfill::BackfillArgs),
    /// Re-apply records from the Kafka log (from the beginning, a time or an offset).
    Replay(replay::ReplayArgs),
    /// Compare the synced tables of DATABASE_URL with another database (e.g. a rebuild); exit 0
    /// when they match.
    Compare(compare::CompareArgs),
    /// Exit 0 when a URL answers 2xx (container health checks).
    Probe(probe::ProbeArgs),
    /// Run the whole pipeline locally: broker, Postgres, migrations, ingest and worker.
    Dev(dev::DevArgs),
    /// Throwaway Apache Kafka and Postgres for scripts, tests and benchmarks.
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Names the process in traces (`clerk-sync-<role>`).
    pub fn role(&self) -> &'static str {
        match self {
            Command::Ingest(_) => "ingest",
            Command::Worker(_) => "worker",
            Command::Migrate(_) => "migrate",
            Command::Topics(_) => "topics",
            Command::Lag(_) => "lag",
            Command::Dlq(_) => "dlq",
            Command::Dev(_) => "dev",
            Command::Local(_) => "local",
            Command::Probe(_) => "probe",
            Command::Replay(_) => "replay",
            Command::Compare(_) => "compare",
            Command::Backfill(_) => "backfill",
            Command::Completions { .. } => "completions",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ingest(args) => ingest::run(args, shutdown_token()).await,
        Command::Worker(args) => worker::run(args, shutdown_token()).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Topics(command) => topics::run(command).await,
        Command::Dlq(command) => dlq::run(command).await,
        Command::Lag(args) => lag::run(args).await,
        Command::Dev(args) => dev::run(args, shutdown_token()).await,
        Command::Local(command) => local::run(command, shutdown_token()).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Replay(args) => replay::run(args, shutdown_token()).await,
        Command::Compare(args) => compare::run(args).await,
        Command::Backfill(args) => backfill::run(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "clerk-sync",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}
