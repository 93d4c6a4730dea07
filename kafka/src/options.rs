//! Applying the user's extra librdkafka properties (`KAFKA_OPTIONS`) to each kind of client.

use rdkafka::ClientConfig;

/// Consumer-group membership timings. librdkafka checks them against each other in every
/// consumer, also one that never joins a group: `max.poll.interval.ms=10000`, right for the
/// worker with a short session, would stop the lag probe, replay and the dead-letter tools
/// (whose session timeout is librdkafka's 45 s) from starting.
const GROUP_MEMBERSHIP: [&str; 3] = [
    "max.poll.interval.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
];

/// Properties librdkafka reads only in consumers ("C" in librdkafka 2.12's CONFIGURATION.md,
/// global and topic). Given to a producer, each costs a CONFWARN line at start-up and nothing else.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.commit.enable",
    "auto.offset.reset",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "consume.callback.max.messages",
];

/// Properties librdkafka reads only in producers ("P"); given to a consumer, a CONFWARN each.
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
];

/// Properties the product's guarantees rest on, with why each is not the user's to set: any
/// value for them in `KAFKA_OPTIONS` is refused at start-up.
const GUARANTEES: &[(&[&str], &str)] = &[
    (
        &["acks", "request.required.acks"],
        "ingest answers 2xx only once every in-sync replica has the event (acks=all)",
    ),
    (
        &["enable.idempotence", "enable.gapless.guarantee", "transactional.id"],
        "producers are idempotent and not transactional: a retried write neither duplicates nor reorders",
    ),
    (
        &["message.timeout.ms", "delivery.timeout.ms"],
        "ingest's producers give up when it answers 503 (set PUBLISH_DEADLINE_MS instead)",
    ),
    (
        &["enable.auto.offset.store"],
        "offsets are stored only after the database commit or the dead-letter write",
    ),
    (
        &["enable.auto.commit", "auto.commit.enable"],
        "only offsets stored after the database commit may be committed",
    ),
    (&["group.id"], "the worker's group is KAFKA_GROUP_ID"),
    (
        &["group.protocol"],
        "the worker's group protocol is KAFKA_GROUP_PROTOCOL",
    ),
    (
        &["allow.auto.create.topics"],
        "topics are made by `clerk-sync topics create` with their replication and settings, never by a broker's defaults",
    ),
    (
        &["isolation.level"],
        "consumers read committed records only (read_committed)",
    ),
];

/// Refuses a `KAFKA_OPTIONS` property the guarantees rest on, naming it and why.
/// Whether librdkafka takes every property, said without quoting a value: a value may be a
/// secret, or part of one cut at a comma (librdkafka's own message quotes it).
pub fn check(options: &[(String, String)]) -> Result<(), String> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaConfRes;
    let mut config = ClientConfig::new();
    for (key, value) in options {
        config.set(key, value);
    }
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, _, key, _)) => Err(
            format!("KAFKA_OPTIONS: `{key}` is not a librdkafka property"),
        ),
        Err(KafkaError::ClientConfig(_, _, key, _)) => Err(format!(
            "KAFKA_OPTIONS: librdkafka refuses the value of `{key}` (not shown: it may be a secret; see librdkafka's CONFIGURATION.md for what it takes)"
        )),
        Err(_) => Err("KAFKA_OPTIONS: librdkafka refuses these properties".to_owned()),
    }
}

pub fn refuse_guarantee_breaker(key: &str) -> Result<(), String> {
    let key = key.trim();
    match GUARANTEES.iter().find(|(keys, _)| keys.contains(&key)) {
        Some((_, why)) => Err(format!("KAFKA_OPTIONS: `{key}` cannot be set: {why}")),
        None => Ok(()),
    }
}

/// Whether a property's value must never be shown: every property librdkafka 2.12 flags
/// `_RK_SENSITIVE` in `rdkafka_conf.c` (passwords, private keys and where they are, client
/// secrets, the SASL user name), and any `*.password`, `*.passphrase` or `*.secret` besides.
/// Their values are shown as `[redacted]`.
pub fn is_secret(key: &str) -> bool {
    let key = key.trim();
    key.ends_with(".password")
        || key.ends_with(".passphrase")
        || key.ends_with(".secret")
        || key.starts_with("sasl.oauthbearer.assertion.private.key.")
        || matches!(
            key,
            "ssl.key.pem"
                | "ssl.key.location"
                | "ssl_key"
                | "ssl.ca.pem"
                | "sasl.username"
                | "sasl.oauthbearer.config"
                | "sasl.oauthbearer.client.secret"
                | "ssl.keystore.location"
        )
}

/// `options` for `Debug` and logs: the values of secret properties replaced.
pub struct Redacted<'a>(pub &'a [(String, String)]);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if is_secret(key) {
                    "[redacted]"
                } else {
                    value.as_str()
                };
                format!("{key}={shown}")
            }))
            .finish()
    }
}

/// The operator's extra librdkafka properties (`KAFKA_OPTIONS` and the SASL settings): passwords
/// and keys may be among them, so they are never printed — `Debug` redacts secret values — and
/// reach librdkafka only when a client is configured ([`crate::config`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaOptions(Vec<(String, String)>);

impl KafkaOptions {
    pub fn new(options: Vec<(String, String)>) -> Self {
        KafkaOptions(options)
    }
}

impl std::ops::Deref for KafkaOptions {
    type Target = [(String, String)];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Redacted(&self.0).fmt(f)
    }
}

/// The kind of client `KAFKA_OPTIONS` are applied to: one setting serves every role of the
/// binary (one ConfigMap in Kubernetes), and each client takes the properties it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// The worker's consumer: a member of the consumer group.
    GroupMember,
    /// A consumer that assigns partitions itself (lag probe, replay, dead-letter tools).
    OutsideGroup,
    /// A producer, or an admin client.
    Producer,
}

impl Client {
    fn reads(self, key: &str) -> bool {
        match self {
            Client::GroupMember => !PRODUCER_ONLY.contains(&key),
            Client::OutsideGroup => {
                !PRODUCER_ONLY.contains(&key) && !GROUP_MEMBERSHIP.contains(&key)
            }
            Client::Producer => !CONSUMER_ONLY.contains(&key),
        }
    }
}

/// The options this kind of client reads: the other kind's properties are left out (unknown
/// keys are kept, so librdkafka still rejects a misspelt one at start-up).
pub fn for_client(options: &[(String, String)], client: Client) -> Vec<(String, String)> {
    options
        .iter()
        .filter(|(key, _)| client.reads(key.trim()))
        .cloned()
        .collect()
}

/// Sets on `config` the options this kind of client reads.
pub fn apply(config: &mut ClientConfig, options: &[(String, String)], client: Client) {
    for (key, value) in for_client(options, client) {
        config.set(key, value);
    }
}

/// `KAFKA_OPTIONS`: `KEY=VALUE` entries separated by commas. A piece without `=` continues the
/// value before it (a password or a list holding a comma). Its errors never quote the text,
/// which may be a secret's value.
pub fn parse_list(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut entries: Vec<(String, String)> = Vec::new();
    // Empty pieces (an empty setting, a trailing comma) hold nothing.
    for piece in text.split(',').filter(|p| !p.trim().is_empty()) {
        match piece.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                refuse_guarantee_breaker(k)?;
                entries.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            None if !entries.is_empty() => {
                if let Some((_, value)) = entries.last_mut() {
                    value.push(',');
                    value.push_str(piece.trim_end());
                }
            }
            // The text may be a secret's value: name the entry's place, not the text.
            _ => {
                return Err(format!(
                    "KAFKA_OPTIONS: expected KEY=VALUE entries separated by commas (entry {} has no key)",
                    entries.len() + 1
                ))
            }
        }
    }
    Ok(entries)
}

/// Refuses brokers off loopback reached without TLS (`security.protocol` unset, `plaintext` or
/// `sasl_plaintext`) unless `allow_plaintext` (`KAFKA_ALLOW_PLAINTEXT`): one line naming the
/// settings.
pub fn check_transport(
    brokers: &str,
    options: &[(String, String)],
    allow_plaintext: bool,
) -> Result<(), String> {
    let protocol = options
        .iter()
        .rev()
        .find(|(key, _)| key == "security.protocol")
        .map_or("plaintext".to_owned(), |(_, value)| {
            value.to_ascii_lowercase()
        });
    let clear = protocol == "plaintext" || protocol == "sasl_plaintext";
    if !clear || allow_plaintext {
        return Ok(());
    }
    match brokers.split(',').map(str::trim).find(|b| !is_loopback(b)) {
        Some(remote) => Err(format!(
            "KAFKA_BROKERS: {remote} is off loopback and KAFKA_OPTIONS security.protocol is {protocol}: expected SSL or SASL_SSL; set KAFKA_ALLOW_PLAINTEXT=true to talk in the clear on a network you trust"
        )),
        None => Ok(()),
    }
}

/// Whether a `host:port` broker address (or `[v6]:port`, or with a `PLAINTEXT://`-style prefix)
/// names this machine.
fn is_loopback(broker: &str) -> bool {
    let address = broker.rsplit_once("://").map_or(broker, |(_, rest)| rest);
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => address,
    };
    let host = host.trim_matches(['[', ']']);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_off_loopback_in_the_clear_are_refused_naming_the_settings_unless_allowed() {
        let with = |options: &str| parse_list(options).expect("options");
        for local in [
            "localhost:9092",
            "127.0.0.1:9092,[::1]:9093",
            "PLAINTEXT://127.0.0.1:1",
        ] {
            assert!(check_transport(local, &[], false).is_ok(), "{local}");
        }
        for (brokers, options) in [
            ("kafka:9092", vec![]),
            (
                "127.0.0.1:9092,b-1.example.com:9092",
                with("security.protocol=SASL_PLAINTEXT"),
            ),
            ("10.0.0.5:9092", with("security.protocol=plaintext")),
        ] {
            let e = check_transport(brokers, &options, false).expect_err(brokers);
            assert!(
                e.starts_with("KAFKA_BROKERS: ") && e.contains("KAFKA_ALLOW_PLAINTEXT"),
                "{e}"
            );
            assert_eq!(e.lines().count(), 1);
            assert!(check_transport(brokers, &options, true).is_ok());
        }
        assert!(check_transport("kafka:9093", &with("security.protocol=SASL_SSL"), false).is_ok());
        assert!(check_transport("kafka:9093", &with("security.protocol=ssl"), false).is_ok());
    }

    #[test]
    fn a_comma_inside_a_value_stays_in_the_value_and_a_bad_entry_is_named_by_place_not_text() {
        assert_eq!(
            parse_list("sasl.password=ab,cd,linger.ms=5").expect("parsed"),
            [
                ("sasl.password".to_owned(), "ab,cd".to_owned()),
                ("linger.ms".to_owned(), "5".to_owned())
            ]
        );
        assert_eq!(parse_list("").expect("empty"), []);
        assert_eq!(parse_list("linger.ms=5,").expect("trailing comma").len(), 1);
        let e = parse_list("linger.ms=5,=s3cret").expect_err("no key");
        assert!(e.contains("entry 2") && !e.contains("s3cret"), "{e}");
        let e = parse_list("hunter2,linger.ms=5").expect_err("no key");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn every_property_the_guarantees_rest_on_is_refused_with_its_reason() {
        for key in [
            "acks",
            "request.required.acks",
            "enable.idempotence",
            "enable.auto.offset.store",
            "enable.auto.commit",
            "group.id",
            "isolation.level",
            "message.timeout.ms",
            " delivery.timeout.ms",
        ] {
            let refused = refuse_guarantee_breaker(key).expect_err(key);
            assert!(
                refused.starts_with(&format!("KAFKA_OPTIONS: `{}`", key.trim())),
                "{refused}"
            );
        }
        for key in ["linger.ms", "security.protocol", "max.poll.interval.ms"] {
            assert_eq!(refuse_guarantee_breaker(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn secret_properties_are_redacted_in_debug_output() {
        let options: Vec<(String, String)> = [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "k3y"),
            ("sasl.oauthbearer.client.secret", "oidc"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            (
                "sasl.oauthbearer.assertion.private.key.pem",
                "-----BEGIN EC PRIVATE KEY-----",
            ),
            (
                "sasl.oauthbearer.assertion.private.key.passphrase",
                "pass-phrase",
            ),
            ("security.protocol", "SASL_SSL"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let shown = format!("{:?}", KafkaOptions::new(options.clone()));
        for secret in ["hunter2", "k3y", "oidc", "PRIVATE KEY", "pass-phrase"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("security.protocol=SASL_SSL"), "{shown}");
    }

    #[test]
    fn a_refused_value_is_named_by_its_key_never_quoted() {
        let bad = |k: &str, v: &str| check(&[(k.to_owned(), v.to_owned())]).expect_err("refused");
        let e = bad("security.protocol", "PLAINTEXT,hunter2");
        assert!(
            e.contains("`security.protocol`") && !e.contains("hunter2"),
            "{e}"
        );
        let e = bad("linger.ms", "hunter2");
        assert!(!e.contains("hunter2"), "{e}");
        let e = bad("linger.msec", "5");
        assert!(
            e.contains("`linger.msec` is not a librdkafka property"),
            "{e}"
        );
        assert!(check(&[("linger.ms".to_owned(), "5".to_owned())]).is_ok());
    }

    #[test]
    fn group_timings_are_left_out_of_consumers_that_never_join() {
        let mut config = ClientConfig::new();
        let options = [
            ("max.poll.interval.ms".to_owned(), "7000".to_owned()),
            ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
        ];
        apply(&mut config, &options, Client::OutsideGroup);
        assert_eq!(config.get("max.poll.interval.ms"), None);
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
    }

    #[test]
    fn each_kind_of_client_takes_the_properties_it_reads_and_unknown_ones() {
        let options: Vec<(String, String)> = [
            ("linger.ms", "5"),
            ("max.poll.interval.ms", "600000"),
            ("security.protocol", "SASL_SSL"),
            ("no.such.property", "x"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let keys = |client| -> Vec<String> {
            for_client(&options, client)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            keys(Client::Producer),
            ["linger.ms", "security.protocol", "no.such.property"]
        );
        assert_eq!(
            keys(Client::GroupMember),
            [
                "max.poll.interval.ms",
                "security.protocol",
                "no.such.property"
            ]
        );
        assert_eq!(
            keys(Client::OutsideGroup),
            ["security.protocol", "no.such.property"]
        );
    }
}
