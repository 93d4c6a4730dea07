use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use clerk_sync_core::{Secret, Topics};
use clerk_sync_worker::database::{DatabaseSettings, DEFAULT_LOCK_TIMEOUT_MS};
use sqlx::PgPool;

/// Kafka connection settings shared by every role.
#[derive(Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port, comma-separated).
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "localhost:9092"
    )]
    pub brokers: String,
    /// Extra librdkafka properties, KEY=VALUE, comma-separated (TLS, SASL, linger.ms…); their
    /// values are never printed (passwords and keys may be among them).
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", hide_env_values = true, value_parser = OptionList)]
    pub extra_options: Vec<Vec<(String, String)>>,
    /// SASL user name (sets librdkafka's sasl.username), kept out of KAFKA_OPTIONS.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password (sets librdkafka's sasl.password); never printed.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<Secret>,
    /// Talk to brokers off loopback without TLS (security.protocol plaintext or
    /// sasl_plaintext): only on a network you trust end to end.
    #[arg(long = "kafka-allow-plaintext", env = "KAFKA_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
}

/// As derived, but with the secret values of `KAFKA_OPTIONS` redacted.
impl std::fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaArgs")
            .field("brokers", &self.brokers)
            .field(
                "extra_options",
                &clerk_sync_kafka::options::Redacted(&self.extra_options.concat()),
            )
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password)
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

impl KafkaArgs {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaArgs {
            brokers: brokers.into(),
            extra_options: vec![],
            sasl_username: None,
            sasl_password: None,
            allow_plaintext: false,
        }
    }

    /// Every librdkafka property to apply: `KAFKA_OPTIONS` plus the SASL credentials.
    pub fn options(&self) -> clerk_sync_kafka::options::KafkaOptions {
        let mut options = self.extra_options.concat();
        if let Some(user) = &self.sasl_username {
            options.push(("sasl.username".to_owned(), user.clone()));
        }
        if let Some(password) = &self.sasl_password {
            options.push(("sasl.password".to_owned(), password.expose().to_owned()));
        }
        clerk_sync_kafka::options::KafkaOptions::new(options)
    }

    /// Fails, in one line naming the property and never its value, when librdkafka refuses a
    /// property of `KAFKA_OPTIONS`, or when brokers off loopback would be reached in the clear.
    pub fn check_options(&self) -> Result<()> {
        let options = self.options();
        clerk_sync_kafka::options::check(&options).map_err(anyhow::Error::msg)?;
        clerk_sync_kafka::options::check_transport(&self.brokers, &options, self.allow_plaintext)
            .map_err(anyhow::Error::msg)
    }

    /// Fails, in one line naming the settings, when the brokers refuse these credentials or
    /// this TLS configuration; a broker that does not answer at all is left to the command's
    /// own retries and readiness (the environment, not the configuration).
    pub async fn check_admitted(&self) -> Result<()> {
        self.check_options()?;
        let (brokers, options) = (self.brokers.clone(), self.options());
        let refusal = tokio::task::spawn_blocking(move || {
            clerk_sync_kafka::refusal(&brokers, &options, Duration::from_secs(5))
        })
        .await?;
        match refusal {
            Some(line) => bail!("{line}"),
            None => Ok(()),
        }
    }
}

/// `KAFKA_OPTIONS` (or one `--kafka-option`): `KEY=VALUE` entries separated by commas. A piece
/// without `=` continues the value before it (a password or a list holding a comma). Its errors
/// never quote the text, which may be a secret's value: clap's own would.
#[derive(Clone)]
struct OptionList;

impl clap::builder::TypedValueParser for OptionList {
    type Value = Vec<(String, String)>;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |message: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{message}\n"),
            )
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("KAFKA_OPTIONS: expected UTF-8 text".to_owned()))?;
        clerk_sync_kafka::options::parse_list(text).map_err(refuse)
    }
}

/// Topic names.
#[derive(Clone, Debug, Args)]
pub struct TopicArgs {
    /// Topic for user.* events.
    #[arg(long, env = "TOPIC_USERS", default_value = Topics::DEFAULT_USERS)]
    pub topic_users: String,
    /// Topic for organization.* events.
    #[arg(long, env = "TOPIC_ORGANIZATIONS", default_value = Topics::DEFAULT_ORGANIZATIONS)]
    pub topic_organizations: String,
    /// Topic for organizationMembership.* events.
    #[arg(long, env = "TOPIC_MEMBERSHIPS", default_value = Topics::DEFAULT_MEMBERSHIPS)]
    pub topic_memberships: String,
    /// Topic for event types the sync ignores; unset: they are acknowledged and dropped.
    #[arg(long, env = "TOPIC_OTHER")]
    pub topic_other: Option<String>,
    /// Dead-letter topic: records the worker can never apply, with their error context.
    #[arg(long, env = "TOPIC_DLQ", default_value = Topics::DEFAULT_DLQ)]
    pub topic_dlq: String,
}

impl Default for TopicArgs {
    /// The default names (what `dev` uses).
    fn default() -> Self {
        TopicArgs {
            topic_users: Topics::DEFAULT_USERS.to_owned(),
            topic_organizations: Topics::DEFAULT_ORGANIZATIONS.to_owned(),
            topic_memberships: Topics::DEFAULT_MEMBERSHIPS.to_owned(),
            topic_other: None,
            topic_dlq: Topics::DEFAULT_DLQ.to_owned(),
        }
    }
}

impl TopicArgs {
    pub fn topics(&self) -> Topics {
        Topics {
            users: self.topic_users.clone(),
            organizations: self.topic_organizations.clone(),
            memberships: self.topic_memberships.clone(),
            other: self.topic_other.clone().filter(|t| !t.is_empty()),
        }
    }
}

/// The database.
#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// Postgres URL (postgres://user:password@host:port/db?sslmode=require).
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Maximum connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// Longest a statement waits for a row lock (an application's open transaction, another
    /// worker's batch) before its batch is given up and retried, in milliseconds; 0 waits
    /// without limit.
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT_MS", default_value_t = DEFAULT_LOCK_TIMEOUT_MS)]
    pub database_lock_timeout_ms: u32,
    /// Connect to a database off loopback without verifying its certificate (`sslmode` other
    /// than verify-full or verify-ca): only for a network you trust end to end.
    #[arg(long, env = "DATABASE_ALLOW_UNVERIFIED")]
    pub database_allow_unverified: bool,
}

impl DatabaseArgs {
    /// The worker's database settings, as the flags give them.
    pub fn settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.database_url.clone(),
            max_connections: self.database_max_connections,
            lock_timeout_ms: self.database_lock_timeout_ms,
            allow_unverified: self.database_allow_unverified,
        }
    }

    pub async fn connect(&self) -> Result<PgPool> {
        Ok(self.settings().pool().await?)
    }
}

/// `clerk-sync ingest`.
#[derive(Clone, Debug, Args)]
pub struct IngestArgs {
    /// HTTP address for webhooks (POST /webhooks/clerk, nothing else).
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// HTTP address for /healthz, /livez, /readyz and /metrics, kept off the webhook port so
    /// that exposing webhooks exposes nothing else.
    #[arg(long, env = "OPS_LISTEN_ADDR", default_value = "0.0.0.0:9091")]
    pub ops_listen: SocketAddr,
    /// Clerk's signing secret(s) (whsec_…); several, separated by spaces or commas, during rotation.
    #[arg(
        long = "webhook-secret",
        env = "CLERK_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<Secret>,
    /// Accepted distance between svix-timestamp and now, in seconds.
    #[arg(long, env = "WEBHOOK_TOLERANCE_SECS", default_value_t = 300)]
    pub webhook_tolerance_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WEBHOOK_BODY_LIMIT", default_value_t = 256 * 1024)]
    pub webhook_body_limit: usize,
    /// How long to wait for the broker's acknowledgement before answering 503, in milliseconds.
    #[arg(long, env = "PUBLISH_DEADLINE_MS", default_value_t = 5000)]
    pub publish_deadline_ms: u64,
    /// Longest a request may take, body upload included, in milliseconds (slow clients get 408).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 at once (Svix retries them).
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// Requests one client address (an IPv6 client: its /64) may have in flight; more are
    /// answered 503 at once. Behind a proxy every request shares its address: raise this to
    /// MAX_IN_FLIGHT and bound slow clients at the proxy.
    #[arg(long, env = "MAX_IN_FLIGHT_PER_PEER", default_value_t = 64)]
    pub max_in_flight_per_peer: usize,
    /// Connections open at once; beyond it a new connection is answered 503 and closed (idle
    /// ones close after REQUEST_TIMEOUT_MS).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
}

impl IngestArgs {
    /// Splits the secret setting; fails when none is usable.
    pub fn secrets(&self) -> Result<Vec<Secret>> {
        webhook_secrets(self.webhook_secret.as_ref())
    }
}

/// `CLERK_WEBHOOK_SECRET` split into its secrets (spaces or commas between them); fails naming
/// the setting when none is usable.
pub fn webhook_secrets(raw: Option<&Secret>) -> Result<Vec<Secret>> {
    let Some(raw) = raw else {
        bail!("CLERK_WEBHOOK_SECRET is not set: expected the endpoint's signing secret (whsec_…) from the Clerk dashboard");
    };
    let secrets = split_secrets(raw);
    if secrets.is_empty() {
        bail!("CLERK_WEBHOOK_SECRET is empty: expected the endpoint's signing secret (whsec_…)");
    }
    Ok(secrets)
}

/// A setting holding several secrets (rotation), split at spaces or commas.
fn split_secrets(raw: &Secret) -> Vec<Secret> {
    raw.expose()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

/// What a record must show before the worker or a replay applies it: the secrets and keys its
/// signature is checked against, and how far in the future its versions may be.
#[derive(Clone, Debug, Args)]
pub struct TrustArgs {
    /// Clerk's signing secret(s) (whsec_…), current and retired, that records on the topics were
    /// signed with; a record none of them signed is dead-lettered as `unsigned`.
    #[arg(
        long = "webhook-secret",
        env = "CLERK_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<Secret>,
    /// clerk-sync's own record key(s): base64 of at least 32 random bytes; the first signs what
    /// backfill, prune and a vouched redrive write, all of them verify.
    #[arg(long, env = "RECORD_SIGNING_KEY", hide_env_values = true)]
    pub record_signing_key: Option<Secret>,
    /// How far ahead of this machine's clock an event's times may be before it is refused.
    #[arg(long, env = "MAX_CLOCK_SKEW_SECS", default_value_t = 300)]
    pub max_clock_skew_secs: u64,
}

impl TrustArgs {
    /// The library's value, every secret and key checked.
    pub fn trust(&self) -> Result<std::sync::Arc<clerk_sync_worker::Trust>> {
        let secrets = webhook_secrets(self.webhook_secret.as_ref())?;
        let keys = record_keys(self.record_signing_key.as_ref());
        let provenance = clerk_sync_kafka::provenance::Provenance::new(&secrets, &keys)?;
        Ok(std::sync::Arc::new(clerk_sync_worker::Trust {
            provenance,
            max_clock_skew: Duration::from_secs(self.max_clock_skew_secs),
        }))
    }
}

/// `RECORD_SIGNING_KEY` split into its keys; none when unset.
pub fn record_keys(raw: Option<&Secret>) -> Vec<Secret> {
    raw.map(split_secrets).unwrap_or_default()
}

/// The signer of the records clerk-sync writes itself, from `RECORD_SIGNING_KEY`.
pub fn record_signer(raw: Option<&Secret>) -> Result<clerk_sync_kafka::provenance::RecordSigner> {
    Ok(clerk_sync_kafka::provenance::RecordSigner::new(
        &record_keys(raw),
    )?)
}

/// `clerk-sync worker`.
#[derive(Clone, Debug, Args)]
pub struct WorkerArgs {
    /// HTTP address for /healthz and /readyz.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
    /// Consumer group id.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "clerk-sync")]
    pub group_id: String,
    /// Largest batch, in records.
    #[arg(long, env = "BATCH_MAX", default_value_t = 2000)]
    pub batch_max: usize,
    /// How long a batch waits for more records after taking those already waiting, in
    /// milliseconds; 0 applies at once (batches still grow under load).
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 0)]
    pub batch_linger_ms: u64,
    /// Consumer group protocol: `classic`, or `consumer` (KIP-848, Apache Kafka 4.0+: partitions
    /// move one member at a time while the others consume on; BENCHMARKS.md compares them).
    #[arg(long, env = "KAFKA_GROUP_PROTOCOL", value_enum, default_value_t = GroupProtocol::Classic)]
    pub group_protocol: GroupProtocol,
    /// Consumer session timeout, in milliseconds: how soon a dead worker's partitions move
    /// (default 30000). Classic protocol only: with `consumer` the broker's
    /// `group.consumer.session.timeout.ms` decides.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS")]
    pub session_timeout_ms: Option<u64>,
    /// How often consumer lag is measured for /metrics, in milliseconds.
    #[arg(long, env = "LAG_REFRESH_MS", default_value_t = 15_000)]
    pub lag_refresh_ms: u64,
    /// Do not apply migrations at start-up (run `clerk-sync migrate` separately).
    #[arg(long, env = "SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
    /// Identifies this worker in logs (default: host name and process id).
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
}

/// `KAFKA_GROUP_PROTOCOL`'s values, librdkafka's `group.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupProtocol {
    Classic,
    Consumer,
}

/// A dead worker's partitions move after this long, unless KAFKA_SESSION_TIMEOUT_MS says.
const DEFAULT_SESSION_TIMEOUT_MS: u64 = 30_000;

impl WorkerArgs {
    fn membership(&self) -> Result<clerk_sync_kafka::Membership> {
        use clerk_sync_kafka::Membership;
        Ok(match (self.group_protocol, self.session_timeout_ms) {
            (GroupProtocol::Classic, ms) => Membership::Classic {
                session_timeout: Duration::from_millis(ms.unwrap_or(DEFAULT_SESSION_TIMEOUT_MS)),
            },
            (GroupProtocol::Consumer, None) => Membership::Consumer,
            (GroupProtocol::Consumer, Some(_)) => bail!(
                "KAFKA_SESSION_TIMEOUT_MS: not used with KAFKA_GROUP_PROTOCOL=consumer, where the broker's group.consumer.session.timeout.ms decides (unset it)"
            ),
        })
    }

    /// The library's configuration from the arguments, checked by the library.
    pub fn worker_config(&self) -> Result<clerk_sync_worker::WorkerConfig> {
        let worker_id = self.worker_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
            format!("{host}-{}", std::process::id())
        });
        let config = clerk_sync_worker::WorkerConfig {
            brokers: self.kafka.brokers.clone(),
            group_id: self.group_id.clone(),
            topics: self.topics.topics().synced(),
            batch_max: self.batch_max,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            membership: self.membership()?,
            dlq_topic: self.topics.topic_dlq.clone(),
            lag_interval: Duration::from_millis(self.lag_refresh_ms),
            kafka_options: self.kafka.options(),
            worker_id,
            trust: self.trust.trust()?,
        };
        config.validate()?;
        Ok(config)
    }
}
