use std::time::Duration;

use rdkafka::consumer::Consumer;

use crate::{Error, Result};

/// Every partition of `topics` with its low and high watermarks, in topic order. A topic the
/// brokers do not authorize is an error, not a topic without partitions (a replay or lag that
/// silently read nothing).
pub fn watermarks<C: Consumer>(
    consumer: &C,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32, i64, i64)>> {
    let mut out = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(Error::Kafka)?;
        let described = metadata.topics().first();
        if described.and_then(|t| t.error())
            == Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
        {
            return Err(Error::TopicNotAuthorized {
                topic: topic.clone(),
            });
        }
        let partitions = described.map_or(0, |t| t.partitions().len() as i32);
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(Error::Kafka)?;
            out.push((topic.clone(), partition, low, high));
        }
    }
    Ok(out)
}

/// The group's committed offsets. On a cluster that has just started (or whose coordinator has
/// just moved), the broker answers "not coordinator" or "loading" for a moment: asked again until
/// `timeout`, as a consumer joining the group would.
pub fn committed_offsets<C: Consumer>(
    consumer: &C,
    tpl: &rdkafka::TopicPartitionList,
    timeout: Duration,
) -> Result<rdkafka::TopicPartitionList> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match consumer.committed_offsets(tpl.clone(), left) {
            Err(KafkaError::MetadataFetch(
                Code::NotCoordinator
                | Code::CoordinatorLoadInProgress
                | Code::CoordinatorNotAvailable,
            )) if left > Duration::from_millis(200) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other.map_err(Error::Kafka),
        }
    }
}
