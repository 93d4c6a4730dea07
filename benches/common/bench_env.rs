//! The broker, database and binary a pipeline benchmark runs against, with topics and groups of
//! its own (a run id), so runs never see each other's records.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clerk_sync_core::Topics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use tokio::process::Command;

/// Every partition of `topics`, as the broker's metadata lists them.
pub fn partitions(consumer: &BaseConsumer, topics: &[String]) -> Result<TopicPartitionList> {
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|n| n == t.name()))
    {
        for p in topic.partitions() {
            tpl.add_partition(topic.name(), p.id());
        }
    }
    Ok(tpl)
}

pub struct BenchEnv {
    pub brokers: String,
    /// KAFKA_OPTIONS as the binary reads it (key=value, comma separated).
    pub options_raw: String,
    pub options: Vec<(String, String)>,
    pub admin_db: String,
    pub run: String,
    pub topics: Topics,
    pub dlq: String,
}

impl BenchEnv {
    /// Reads KAFKA_BROKERS, KAFKA_OPTIONS and DATABASE_URL, and creates this run's topics with
    /// the binary's own `topics create`.
    pub async fn from_env(partitions: i32) -> Result<Self> {
        let brokers =
            std::env::var("KAFKA_BROKERS").context("KAFKA_BROKERS (scripts/bench sets it)")?;
        let admin_db =
            std::env::var("DATABASE_URL").context("DATABASE_URL (scripts/bench sets it)")?;
        let options_raw = std::env::var("KAFKA_OPTIONS").unwrap_or_default();
        let options = options_raw
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let run = format!("bench-{}", std::process::id());
        let env = BenchEnv {
            topics: Topics {
                users: format!("{run}.users"),
                organizations: format!("{run}.organizations"),
                memberships: format!("{run}.memberships"),
                other: None,
            },
            dlq: format!("{run}.dlq"),
            brokers,
            options_raw,
            options,
            admin_db,
            run,
        };
        let status = env
            .command("topics")
            .arg("create")
            .env("TOPIC_PARTITIONS", partitions.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("clerk-sync topics create failed: {status}");
        }
        Ok(env)
    }

    pub fn topic_names(&self) -> Vec<String> {
        vec![
            self.topics.users.clone(),
            self.topics.organizations.clone(),
            self.topics.memberships.clone(),
        ]
    }

    /// `clerk-sync <role>` (the release build of this workspace) wired to this run's broker
    /// and topics; warnings only.
    pub fn command(&self, role: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clerk-sync"));
        command
            .arg(role)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("KAFKA_BROKERS", &self.brokers)
            .env("TOPIC_USERS", &self.topics.users)
            .env("TOPIC_ORGANIZATIONS", &self.topics.organizations)
            .env("TOPIC_MEMBERSHIPS", &self.topics.memberships)
            .env("TOPIC_DLQ", &self.dlq)
            // The secret the load is signed with: ingest checks it, the worker and replays
            // check it again on every record.
            .env(
                "CLERK_WEBHOOK_SECRET",
                "whsec_Y2xlcmstc3luYy10ZXN0LXNlY3JldCEh",
            )
            .kill_on_drop(true);
        if !self.options_raw.is_empty() {
            command.env("KAFKA_OPTIONS", &self.options_raw);
        }
        // Allocator settings, for comparing memory figures; the worker's batch size and group
        // protocol, for comparing drain rates and rebalances.
        for (key, value) in std::env::vars().filter(|(k, _)| {
            k.starts_with("MALLOC_") || k == "BATCH_MAX" || k == "KAFKA_GROUP_PROTOCOL"
        }) {
            command.env(key, value);
        }
        command
    }

    pub fn client_config(&self, group: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        for (k, v) in &self.options {
            config.set(k, v);
        }
        config
    }

    /// An empty database next to DATABASE_URL's; returns its URL.
    pub async fn fresh_database(&self, name: &str) -> Result<String> {
        let mut admin = PgConnection::connect(&self.admin_db).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        Ok(self.database_url(name))
    }

    /// The URL of a database next to DATABASE_URL's.
    pub fn database_url(&self, name: &str) -> String {
        let base = self
            .admin_db
            .rsplit_once('/')
            .map_or(self.admin_db.as_str(), |(b, _)| b);
        format!("{base}/{name}")
    }

    /// Records the group has committed past, over all this run's partitions.
    pub async fn committed(&self, group: &str) -> Result<i64> {
        let config = self.client_config(group);
        let topics = self.topic_names();
        tokio::task::spawn_blocking(move || -> Result<i64> {
            let consumer: BaseConsumer = config.create()?;
            let tpl = partitions(&consumer, &topics)?;
            let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
            Ok(committed
                .elements()
                .iter()
                .filter_map(|e| e.offset().to_raw())
                .filter(|o| *o > 0)
                .sum())
        })
        .await?
    }

    pub async fn table_counts(&self, db: &str) -> Result<(i64, i64, i64)> {
        let pool = PgPoolOptions::new().max_connections(1).connect(db).await?;
        let count = |table: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                    .fetch_one(&pool)
                    .await
            }
        };
        let counts = (
            count("users").await?,
            count("organizations").await?,
            count("org_memberships").await?,
        );
        pool.close().await;
        Ok(counts)
    }
}
