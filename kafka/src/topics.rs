//! Creating the topics: what each one is given (one plan, shown by `--dry-run` and carried out
//! by `create`), so durability does not depend on the broker's defaults.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::Error;

type Result<T> = std::result::Result<T, Error>;

/// The dead-letter topic keeps its records 30 days by default: an operator has time to find,
/// fix and redrive them, whatever the event topics' retention.
pub const DEFAULT_DLQ_RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// One topic to create, with the settings it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub configs: Vec<(&'static str, String)>,
}

/// What every topic gets: `partitions` and `replication`, `cleanup.policy=delete`, `min.insync.replicas` of
/// replication − 1 (at least 1, at most 2: an acks=all write then survives the loss of any one
/// broker and still succeeds while one is down), `retention_ms` for the event topics when set,
/// and `dlq_retention_ms` for the dead-letter topic.
pub fn plan(
    event_topics: &[String],
    dlq_topic: &str,
    partitions: i32,
    replication: i32,
    retention_ms: Option<i64>,
    dlq_retention_ms: i64,
) -> Vec<TopicSpec> {
    let min_insync = (replication - 1).clamp(1, 2).to_string();
    let spec = |name: &str, retention: Option<i64>| {
        // Time retention, set rather than left to the broker's log.cleanup.policy: a compacted
        // log forgets what a deleted user or organization carried (a deletion event holds only
        // the id), so a rebuild from it would differ (tests/e2e/compaction.rs).
        let mut configs = vec![
            ("cleanup.policy", "delete".to_owned()),
            ("min.insync.replicas", min_insync.clone()),
        ];
        if let Some(r) = retention {
            configs.push(("retention.ms", r.to_string()));
        }
        TopicSpec {
            name: name.to_owned(),
            partitions,
            replication,
            configs,
        }
    };
    let mut specs: Vec<TopicSpec> = event_topics
        .iter()
        .map(|name| spec(name, retention_ms))
        .collect();
    specs.push(spec(dlq_topic, Some(dlq_retention_ms)));
    specs
}

impl std::fmt::Display for TopicSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (partitions {}, replication {}",
            self.name, self.partitions, self.replication
        )?;
        for (key, value) in &self.configs {
            write!(f, ", {key}={value}")?;
        }
        f.write_str(")")
    }
}

/// Creates the topics of `specs` that do not exist yet, then reads every one back from the
/// broker: a topic that exists with other partitions, replication or settings than asked (made
/// earlier by hand, or by a broker's `auto.create.topics.enable` with its defaults) is an error
/// naming each difference, never left silently as it is.
pub async fn create(
    brokers: &str,
    options: &[(String, String)],
    specs: &[TopicSpec],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        crate::config(crate::Role::Admin, brokers, options)
            .create()
            .map_err(|source| Error::Admin {
                what: "KAFKA_BROKERS: cannot create a Kafka admin client".to_owned(),
                source,
            })?;
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            spec.configs.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(|source| Error::Admin {
            what: "creating topics".to_owned(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Topics(format!("creating topic {topic}: {code}")))
            }
        }
    }
    let differences = differences(admin, specs).await?;
    if !differences.is_empty() {
        return Err(Error::Topics(format!(
            "topics exist with other settings than asked: {} (change them with Kafka's \
             kafka-topics --alter / kafka-configs --alter, or recreate them)",
            differences.join("; ")
        )));
    }
    Ok(())
}

/// How each topic as the broker describes it differs from its spec. A topic just created may
/// not be in every broker's metadata yet: read again for a few seconds before calling it
/// missing.
async fn differences(
    admin: AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
) -> Result<Vec<String>> {
    let admin = std::sync::Arc::new(admin);
    let mut attempt = 0;
    let layout = loop {
        let (client, names) = (
            admin.clone(),
            specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        );
        let layout = tokio::task::spawn_blocking(move || layouts(&client, &names))
            .await
            .map_err(|e| Error::Topics(format!("reading the topics back: {e}")))??;
        attempt += 1;
        if layout.iter().all(Option::is_some) || attempt >= 20 {
            break layout;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let resources: Vec<ResourceSpecifier<'_>> = specs
        .iter()
        .map(|s| ResourceSpecifier::Topic(&s.name))
        .collect();
    let described = admin
        .describe_configs(&resources, &AdminOptions::new())
        .await
        .map_err(|source| Error::Admin {
            what: "describing the topics' settings".to_owned(),
            source,
        })?;
    let mut found = Vec::new();
    for ((spec, layout), configs) in specs.iter().zip(layout).zip(described) {
        let Some((partitions, replication)) = layout else {
            found.push(format!("{} is missing", spec.name));
            continue;
        };
        if partitions != spec.partitions {
            found.push(format!(
                "{} has {partitions} partitions (asked {})",
                spec.name, spec.partitions
            ));
        }
        if replication != spec.replication {
            found.push(format!(
                "{} has replication {replication} (asked {})",
                spec.name, spec.replication
            ));
        }
        let configs =
            configs.map_err(|code| Error::Topics(format!("describing {}: {code}", spec.name)))?;
        // Kafka describes every topic with all its settings; none at all is a principal
        // without DescribeConfigs, not a topic whose settings differ.
        if configs.entries.is_empty() {
            return Err(Error::Topics(format!(
                "the brokers show none of {}'s settings (grant this principal DescribeConfigs on it)",
                spec.name
            )));
        }
        let entries = configs.entry_map();
        for (key, wanted) in &spec.configs {
            let actual = entries.get(key).and_then(|e| e.value.as_deref());
            if actual != Some(wanted.as_str()) {
                found.push(format!(
                    "{} has {key}={} (asked {wanted})",
                    spec.name,
                    actual.unwrap_or("unset")
                ));
            }
        }
    }
    Ok(found)
}

/// Each topic's partition count and its first partition's replica count, from the metadata
/// (blocking); `None` for a topic the broker does not know.
fn layouts(
    admin: &AdminClient<DefaultClientContext>,
    names: &[String],
) -> Result<Vec<Option<(i32, i32)>>> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|source| Error::Admin {
            what: "reading the topics back".to_owned(),
            source,
        })?;
    Ok(names
        .iter()
        .map(|name| {
            let topic = metadata
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none())?;
            let partitions = topic.partitions();
            let replication = partitions.first().map_or(0, |p| p.replicas().len() as i32);
            (!partitions.is_empty()).then_some((partitions.len() as i32, replication))
        })
        .collect())
}

/// Creates `names` with `partitions` and `replication` and nothing else (tests' own topics).
pub async fn ensure_topics(
    brokers: &str,
    options: &[(String, String)],
    names: &[String],
    partitions: i32,
    replication: i32,
) -> Result<()> {
    let specs: Vec<TopicSpec> = names
        .iter()
        .map(|name| TopicSpec {
            name: name.clone(),
            partitions,
            replication,
            configs: Vec::new(),
        })
        .collect();
    create(brokers, options, &specs).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_insync_replicas_is_one_less_than_replication_between_one_and_two_and_the_dlq_keeps_its_own_retention(
    ) {
        let events = vec!["clerk.users".to_owned()];
        for (replication, min_insync) in [(1, "1"), (2, "1"), (3, "2"), (5, "2")] {
            let specs = plan(&events, "clerk.dlq", 6, replication, None, 99);
            assert!(specs.iter().all(|s| s
                .configs
                .contains(&("min.insync.replicas", min_insync.to_owned()))));
        }
        let specs = plan(
            &events,
            "clerk.dlq",
            6,
            3,
            Some(7),
            DEFAULT_DLQ_RETENTION_MS,
        );
        assert_eq!(
            specs[0].to_string(),
            "clerk.users (partitions 6, replication 3, cleanup.policy=delete, min.insync.replicas=2, retention.ms=7)"
        );
        assert_eq!(
            specs[1].to_string(),
            "clerk.dlq (partitions 6, replication 3, cleanup.policy=delete, min.insync.replicas=2, retention.ms=2592000000)"
        );
    }
}
