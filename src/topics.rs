use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(
    brokers: &str,
    options: &[(String, String)],
    names: &[String],
    partitions: i32,
    replication: i32,
) -> Result<()> {
    ensure_topics_with(brokers, options, names, partitions, replication, None).await
}

/// [`ensure_topics`] with an optional `retention.ms` for new topics.
pub async fn ensure_topics_with(
    brokers: &str,
    options: &[(String, String)],
    names: &[String],
    partitions: i32,
    replication: i32,
    retention_ms: Option<i64>,
) -> Result<()> {
    let retention = retention_ms.map(|r| r.to_string());
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    clerk_sync_worker::kafka_options::apply(
        &mut config,
        options,
        clerk_sync_worker::kafka_options::Client::Producer,
    );
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .context("KAFKA_BROKERS: cannot create a Kafka admin client")?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            let topic = NewTopic::new(n, partitions, TopicReplication::Fixed(replication));
            match &retention {
                Some(r) => topic.set("retention.ms", r),
                None => topic,
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .context("creating topics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}
