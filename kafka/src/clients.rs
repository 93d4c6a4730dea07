use std::time::Duration;

use rdkafka::ClientConfig;

use crate::options::{apply, Client};

/// What a client is for, which decides its settings.
#[derive(Clone, Copy, Debug)]
pub enum Role<'a> {
    /// Ingest's producer: every in-sync replica acknowledges, idempotent, giving up when ingest
    /// answers 503 (`deadline`), sending each record at once.
    Ingest { deadline: Duration },
    /// The worker's dead-letter producer (a write retried by the worker until it succeeds).
    DeadLetters,
    /// A one-shot tool's producer: backfill, dead-letter redrive.
    Tool,
    /// The worker's consumer: a member of the group, committing only stored offsets.
    Worker {
        group: &'a str,
        client_id: &'a str,
        membership: Membership,
    },
    /// The lag probe: reads one record per partition, outside the group.
    LagProbe { group: &'a str },
    /// Replay and the dead-letter tools: partitions assigned by hand, nothing committed.
    Reader { group: &'a str },
    /// Topic administration.
    Admin,
}

/// How a worker takes part in its consumer group (`KAFKA_GROUP_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// The classic protocol: the group stops while partitions move, and a member that stops
    /// heartbeating keeps its partitions for its own `session_timeout`.
    Classic { session_timeout: Duration },
    /// KIP-848 (`group.protocol=consumer`, Apache Kafka 4.0+): the broker assigns partitions one
    /// member at a time, the others consuming on; the session timeout is the broker's
    /// (`group.consumer.session.timeout.ms`, 45 s by default).
    Consumer,
}

/// The settings of a client for `role`: its own first, then the `KAFKA_OPTIONS` properties
/// that kind of client reads (so an operator's `linger.ms` wins over ingest's 0).
pub fn config(role: Role<'_>, brokers: &str, options: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    // Topics are made by `clerk-sync topics create`, with their replication and settings; a
    // broker with `auto.create.topics.enable` (Apache Kafka's default) would otherwise make one
    // with its own defaults (one partition, one replica) for the first record or lookup sent to
    // a missing name. Off, a missing topic stays missing and is reported as such.
    config.set("allow.auto.create.topics", "false");
    let kind = match role {
        Role::Ingest { deadline } => {
            idempotent(&mut config, deadline);
            config.set("linger.ms", "0");
            Client::Producer
        }
        Role::DeadLetters => {
            idempotent(&mut config, Duration::from_secs(10));
            Client::Producer
        }
        Role::Tool => {
            idempotent(&mut config, Duration::from_secs(300));
            Client::Producer
        }
        Role::Worker {
            group,
            client_id,
            membership,
        } => {
            worker(&mut config, group, client_id, membership);
            Client::GroupMember
        }
        Role::LagProbe { group } => {
            reader(&mut config, group);
            // The probe reads one record per partition. librdkafka would otherwise prefetch up
            // to 64 MiB behind it on every refresh: memory that grew with the backlog.
            config
                .set("queued.min.messages", "1")
                .set("queued.max.messages.kbytes", "1024")
                .set("fetch.message.max.bytes", "65536");
            Client::OutsideGroup
        }
        Role::Reader { group } => {
            reader(&mut config, group);
            Client::OutsideGroup
        }
        Role::Admin => Client::Producer,
    };
    apply(&mut config, options, kind);
    config
}

/// Written once by every in-sync replica, never twice; given up after `timeout`.
fn idempotent(config: &mut ClientConfig, timeout: Duration) {
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", timeout.as_millis().to_string());
}

fn worker(config: &mut ClientConfig, group: &str, client_id: &str, membership: Membership) {
    config
        .set("group.id", group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored by hand, only after the database commit or the dead-letter write.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Prefetch a few batches, not librdkafka's default 64 MiB: a backlog then costs
        // bounded memory (BENCHMARKS.md) and applying, not fetching, sets the pace anyway.
        .set("queued.max.messages.kbytes", "16384");
    // fetch.wait.max.ms stays librdkafka's 500 ms: Apache Kafka answers a held fetch as soon
    // as a record arrives, so the wait only sets how often an idle consumer asks, and shorter
    // waits measured no fresher (BENCHMARKS.md, freshness).
    match membership {
        Membership::Classic { session_timeout } => {
            config.set("group.protocol", "classic").set(
                "session.timeout.ms",
                session_timeout.as_millis().to_string(),
            );
        }
        // librdkafka refuses a client-side session timeout with this protocol.
        Membership::Consumer => {
            config.set("group.protocol", "consumer");
        }
    }
}

/// Outside any group: offsets are assigned by hand and never committed or stored; an offset
/// gone with retention reads from the earliest still there.
fn reader(config: &mut ClientConfig, group: &str) {
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_producer_is_idempotent_and_acknowledged_by_all_replicas() {
        for role in [
            Role::Ingest {
                deadline: Duration::from_secs(5),
            },
            Role::DeadLetters,
            Role::Tool,
        ] {
            let config = config(role, "b:9092", &[]);
            assert_eq!(config.get("enable.idempotence"), Some("true"), "{role:?}");
            assert_eq!(config.get("acks"), Some("all"), "{role:?}");
        }
        let ingest = config(
            Role::Ingest {
                deadline: Duration::from_millis(1500),
            },
            "b:9092",
            &[],
        );
        assert_eq!(ingest.get("message.timeout.ms"), Some("1500"));
        // Sent at once; librdkafka batches what queues while a request is in flight.
        assert_eq!(ingest.get("linger.ms"), Some("0"));
    }

    #[test]
    fn an_operators_option_wins_over_a_roles_own_default_and_other_kinds_are_left_out() {
        let options = [
            ("linger.ms".to_owned(), "20".to_owned()),
            ("fetch.wait.max.ms".to_owned(), "10".to_owned()),
        ];
        let ingest = config(
            Role::Ingest {
                deadline: Duration::from_secs(5),
            },
            "b:9092",
            &options,
        );
        assert_eq!(ingest.get("linger.ms"), Some("20"));
        assert_eq!(ingest.get("fetch.wait.max.ms"), None);
        let worker = config(
            Role::Worker {
                group: "g",
                client_id: "w",
                membership: Membership::Classic {
                    session_timeout: Duration::from_secs(6),
                },
            },
            "b:9092",
            &options,
        );
        assert_eq!(worker.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(worker.get("linger.ms"), None);
        assert_eq!(worker.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn no_client_lets_the_broker_create_a_topic() {
        for role in [
            Role::Ingest {
                deadline: Duration::from_secs(5),
            },
            Role::DeadLetters,
            Role::Tool,
            Role::Admin,
            Role::Reader { group: "g" },
            Role::LagProbe { group: "g" },
            Role::Worker {
                group: "g",
                client_id: "w",
                membership: Membership::Classic {
                    session_timeout: Duration::from_secs(6),
                },
            },
        ] {
            let config = config(role, "b:9092", &[]);
            assert_eq!(
                config.get("allow.auto.create.topics"),
                Some("false"),
                "{role:?}"
            );
        }
    }

    #[test]
    fn readers_never_commit() {
        for role in [Role::Reader { group: "g" }, Role::LagProbe { group: "g" }] {
            let config = config(role, "b:9092", &[]);
            assert_eq!(config.get("enable.auto.commit"), Some("false"));
            assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        }
    }
}
