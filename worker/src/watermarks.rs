use std::time::Duration;

use rdkafka::consumer::Consumer;

use crate::{Error, Result};

/// Every partition of `topics` with its low and high watermarks, in topic order.
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
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(Error::Kafka)?;
            out.push((topic.clone(), partition, low, high));
        }
    }
    Ok(out)
}
