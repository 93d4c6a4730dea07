//! Consumer lag, read from the broker: what a group has committed against each log end, and how
//! old the oldest unapplied record is. Works whether or not any worker runs.

use std::time::Duration;

use clerk_sync_kafka::Role;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{Error, Result};

/// Lag of one partition.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The offset the next record written will get.
    pub log_end_offset: i64,
    /// The group's committed offset (the next record to apply); `None` when nothing is committed.
    pub committed_offset: Option<i64>,
    /// Records written but not yet applied.
    pub lag: i64,
    /// Age of the oldest unapplied record, from its timestamp; 0 when caught up.
    pub oldest_unapplied_age_seconds: f64,
}

fn consumer(brokers: &str, options: &[(String, String)], group: &str) -> Result<BaseConsumer> {
    let config = clerk_sync_kafka::config(Role::LagProbe { group }, brokers, options);
    config.create().map_err(Error::Kafka)
}

/// Measures `group`'s lag on `topics` once (blocking: run it off the async runtime). The group
/// is not joined: its members and commits are left untouched.
pub fn measure_lag(
    brokers: &str,
    options: &[(String, String)],
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<PartitionLag>> {
    LagProbe::new(brokers, options, group)?.measure(topics, timeout)
}

/// The clients a lag measure needs, made once and kept: the worker measures every
/// `LAG_REFRESH_MS` without creating clients each time.
pub struct LagProbe {
    /// Reads the group's committed offsets and the log ends.
    offsets: BaseConsumer,
    /// Reads the oldest unapplied record's timestamp (under a group of its own, committing
    /// nothing).
    records: BaseConsumer,
}

impl LagProbe {
    pub fn new(brokers: &str, options: &[(String, String)], group: &str) -> Result<Self> {
        Ok(LagProbe {
            offsets: consumer(brokers, options, group)?,
            records: consumer(brokers, options, &format!("{group}-lag-probe"))?,
        })
    }

    /// The group's lag on `topics`, per partition (blocking).
    pub fn measure(&self, topics: &[String], timeout: Duration) -> Result<Vec<PartitionLag>> {
        let ends = crate::watermarks::watermarks(&self.offsets, topics, timeout)?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, _, _) in &ends {
            tpl.add_partition(topic, *partition);
        }
        let committed = crate::watermarks::committed_offsets(&self.offsets, &tpl, timeout)?;
        let now_ms = crate::clock::now_ms();
        let mut out = Vec::with_capacity(ends.len());
        for (topic, partition, low, high) in ends {
            let committed_offset =
                committed
                    .find_partition(&topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            // Nothing committed: everything still in the log is unapplied.
            let next = committed_offset.unwrap_or(low).max(low);
            let lag = (high - next).max(0);
            let oldest_unapplied_age_seconds = if lag == 0 {
                0.0
            } else {
                record_timestamp(&self.records, &topic, partition, next, timeout)?
                    .map_or(0.0, |ts| ((now_ms - ts).max(0) as f64) / 1000.0)
            };
            out.push(PartitionLag {
                topic,
                partition,
                log_end_offset: high,
                committed_offset,
                lag,
                oldest_unapplied_age_seconds,
            });
        }
        Ok(out)
    }
}

/// The timestamp (ms) of the record at `offset`, read with a consumer that commits nothing.
fn record_timestamp(
    probe: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(Error::Kafka)?;
    probe.assign(&tpl).map_err(Error::Kafka)?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match probe.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.topic() == topic && m.partition() == partition => {
                return Ok(m.timestamp().to_millis());
            }
            Some(Err(e)) => return Err(Error::Kafka(e)),
            _ => {}
        }
    }
    Ok(None)
}
