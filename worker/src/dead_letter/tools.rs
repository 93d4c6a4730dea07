//! What operators do with the dead-letter topic (`clerk-sync dlq …`): read it, count what waits,
//! show a letter with its context (personal data redacted), redrive.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{header, DeadLetter};
use crate::{Error, Result};
use clerk_sync_kafka::Role;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `topic` up to the end offsets seen when it starts: from each partition's beginning, or
/// from `group`'s committed position when `from_committed` is set.
pub fn read_to_end(
    consumer: &BaseConsumer,
    topic: &str,
    from_committed: bool,
) -> Result<Vec<DeadLetter>> {
    let (starts, ends) = bounds(consumer, topic, from_committed)?;
    consumer.assign(&starts)?;
    let mut remaining: Vec<(i32, i64)> = ends
        .iter()
        .filter(|(_, start, high)| start < high)
        .map(|(p, _, h)| (*p, *h))
        .collect();
    let mut out = Vec::new();
    let started = Instant::now();
    while !remaining.is_empty() {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(Error::DeadLetterTopic(format!(
                "reading {topic} did not reach the end offsets within 60 s"
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(Error::Kafka)?;
        let (partition, offset) = (message.partition(), message.offset());
        if let Some(i) = remaining.iter().position(|(p, _)| *p == partition) {
            let high = remaining[i].1;
            if offset < high {
                out.push(DeadLetter::from_message(&message.detach()));
            }
            if offset + 1 >= high {
                remaining.swap_remove(i);
            }
        }
    }
    out.sort_by_key(|d| (d.partition, d.offset));
    Ok(out)
}

/// Where each partition's read starts, and `(partition, start, end)` for each.
type Bounds = (TopicPartitionList, Vec<(i32, i64, i64)>);

fn bounds(consumer: &BaseConsumer, topic: &str, from_committed: bool) -> Result<Bounds> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(Error::Kafka)?;
    let Some(partitions) = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
    else {
        return Err(Error::DeadLetterTopic(format!("{topic} not found")));
    };
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        tpl.add_partition_offset(topic, partition, Offset::Offset(low))?;
        ends.push((partition, low, high));
    }
    if from_committed {
        let committed = consumer.committed_offsets(tpl.clone(), TIMEOUT)?;
        for e in committed.elements() {
            if let Offset::Offset(o) = e.offset() {
                tpl.set_partition_offset(topic, e.partition(), Offset::Offset(o))?;
                if let Some(end) = ends.iter_mut().find(|(p, _, _)| *p == e.partition()) {
                    end.1 = o.max(end.1);
                }
            }
        }
    }
    Ok((tpl, ends))
}

pub fn consumer(brokers: &str, options: &[(String, String)], group: &str) -> Result<BaseConsumer> {
    clerk_sync_kafka::config(Role::Reader { group }, brokers, options)
        .create()
        .map_err(Error::Kafka)
}

/// Re-publishes a dead letter to its original topic with its original key and headers, marked
/// with where it came from, and waits for the broker's acknowledgement.
pub async fn republish(
    producer: &FutureProducer,
    dlq_topic: &str,
    letter: &DeadLetter,
) -> Result<String> {
    let Some(topic) = letter.header(header::ORIGINAL_TOPIC) else {
        return Err(Error::DeadLetterTopic(format!(
            "dead letter {}:{} has no {} header",
            letter.partition,
            letter.offset,
            header::ORIGINAL_TOPIC
        )));
    };
    let mut headers = OwnedHeaders::new();
    for (key, value) in letter.original_headers() {
        if key != header::REDRIVEN_FROM {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
    }
    let from = format!("{dlq_topic}:{}:{}", letter.partition, letter.offset);
    headers = headers.insert(Header {
        key: header::REDRIVEN_FROM,
        value: Some(&from),
    });
    let mut record = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
    if let Some(key) = &letter.key {
        record = record.key(key);
    }
    if let Some(value) = &letter.value {
        record = record.payload(value);
    }
    producer
        .send(record, Timeout::After(TIMEOUT))
        .await
        .map_err(|(e, _)| e)
        .map_err(Error::Kafka)?;
    Ok(topic)
}

/// Commits `offset + 1` for the dead letter's partition: the redrive group's position.
pub fn commit_past(consumer: &BaseConsumer, topic: &str, letter: &DeadLetter) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, letter.partition, Offset::Offset(letter.offset + 1))?;
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(Error::Kafka)?;
    Ok(())
}

/// The producer of the one-shot tools (redrive, backfill).
pub fn producer(brokers: &str, options: &[(String, String)]) -> Result<FutureProducer> {
    clerk_sync_kafka::config(Role::Tool, brokers, options)
        .create()
        .map_err(Error::Kafka)
}

/// What to redrive: every dead letter past the redrive group's position (each committed past
/// once re-published, so none is applied twice), or only the one at `only` (the group's
/// position not moved).
#[derive(Clone, Debug)]
pub struct Redrive {
    pub brokers: String,
    pub options: clerk_sync_kafka::options::KafkaOptions,
    pub topic: String,
    pub group: String,
    pub only: Option<(i32, i64)>,
    pub dry_run: bool,
}

/// A dead letter redriven (or that would be, in a dry run).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Redriven {
    pub partition: i32,
    pub offset: i64,
    pub original_topic: String,
}

/// Re-publishes the dead letters `redrive` selects to their original topics; `on_each` after
/// each one.
pub async fn redrive(
    redrive: &Redrive,
    mut on_each: impl FnMut(&Redriven),
) -> Result<Vec<Redriven>> {
    let consumer = consumer(&redrive.brokers, &redrive.options, &redrive.group)?;
    let topic = redrive.topic.clone();
    let from_committed = redrive.only.is_none();
    let (consumer, letters) = tokio::task::spawn_blocking(move || {
        let letters = read_to_end(&consumer, &topic, from_committed);
        letters.map(|l| (consumer, l))
    })
    .await
    .map_err(|e| Error::DeadLetterTopic(e.to_string()))??;
    let producer = producer(&redrive.brokers, &redrive.options)?;
    let mut done = Vec::new();
    for letter in letters.iter().filter(|l| {
        redrive
            .only
            .is_none_or(|(p, o)| l.partition == p && l.offset == o)
    }) {
        if !redrive.dry_run {
            republish(&producer, &redrive.topic, letter).await?;
            if redrive.only.is_none() {
                commit_past(&consumer, &redrive.topic, letter)?;
            }
        }
        let redriven = Redriven {
            partition: letter.partition,
            offset: letter.offset,
            original_topic: letter.header(header::ORIGINAL_TOPIC).unwrap_or_default(),
        };
        on_each(&redriven);
        done.push(redriven);
    }
    Ok(done)
}

/// Each partition's position of `group` on `topic` (the redrive group: what was redriven).
pub fn committed(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(Error::Kafka)?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// The dead letters counted, by error kind and original topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DlqSummary {
    pub topic: String,
    /// Every dead letter still in the topic (its retention decides how long).
    pub total: u64,
    /// Those not yet redriven (past the redrive group's position).
    pub waiting: u64,
    pub by_kind: Vec<KindCount>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCount {
    pub error_kind: String,
    pub original_topic: String,
    pub total: u64,
    pub waiting: u64,
}

impl DlqSummary {
    pub fn new(topic: &str, letters: &[DeadLetter], redriven: &BTreeMap<i32, i64>) -> Self {
        let mut by_kind: BTreeMap<(String, String), KindCount> = BTreeMap::new();
        let mut summary = DlqSummary {
            topic: topic.to_owned(),
            ..DlqSummary::default()
        };
        for l in letters {
            let kind = l
                .header(header::ERROR_KIND)
                .unwrap_or_else(|| "unknown".into());
            let original = l
                .header(header::ORIGINAL_TOPIC)
                .unwrap_or_else(|| "unknown".into());
            let waiting = redriven.get(&l.partition).is_none_or(|p| l.offset >= *p);
            let entry = by_kind
                .entry((kind.clone(), original.clone()))
                .or_insert_with(|| KindCount {
                    error_kind: kind,
                    original_topic: original,
                    ..KindCount::default()
                });
            entry.total += 1;
            entry.waiting += u64::from(waiting);
            summary.total += 1;
            summary.waiting += u64::from(waiting);
        }
        summary.by_kind = by_kind.into_values().collect();
        summary
    }
}

/// One dead letter as `dlq show --json` prints it: its context, and its body (redacted unless
/// asked; JSON when it is JSON).
pub fn letter_json(topic: &str, letter: &DeadLetter, personal_data: bool) -> Value {
    let h = |name| letter.header(name);
    let text = if personal_data {
        letter
            .value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    } else {
        redacted_body(letter.value.as_deref())
    };
    let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    serde_json::json!({
        "topic": topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "error_kind": h(header::ERROR_KIND),
        "error_message": h(header::ERROR_MESSAGE),
        "original_topic": h(header::ORIGINAL_TOPIC),
        "original_partition": h(header::ORIGINAL_PARTITION).and_then(|v| v.parse::<i32>().ok()),
        "original_offset": h(header::ORIGINAL_OFFSET).and_then(|v| v.parse::<i64>().ok()),
        "attempts": h(header::ATTEMPTS).and_then(|v| v.parse::<u64>().ok()),
        "first_failure_ms": h(header::FIRST_FAILURE_MS).and_then(|v| v.parse::<i64>().ok()),
        "last_failure_ms": h(header::LAST_FAILURE_MS).and_then(|v| v.parse::<i64>().ok()),
        "worker_id": h(header::WORKER_ID),
        "event_id": h(clerk_sync_core::record_header::EVENT_ID),
        "event_type": h(clerk_sync_core::record_header::EVENT_TYPE),
        "body": body,
    })
}

/// Keys whose values are personal data in Clerk payloads.
const PERSONAL: &[&str] = &[
    "email_address",
    "first_name",
    "last_name",
    "username",
    "identifier",
    "name",
    "phone_number",
    "image_url",
    "profile_image_url",
    "public_metadata",
    "private_metadata",
    "unsafe_metadata",
    "client_ip",
    "user_agent",
    "external_id",
    "web3_wallet",
];

/// Replaces personal data in a JSON body with `"[redacted]"`; a body that is not JSON is shown by
/// its size only.
pub fn redacted_body(body: Option<&[u8]>) -> String {
    let Some(body) = body else {
        return "<no value>".to_owned();
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            redact(&mut value);
            value.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if PERSONAL.contains(&key.as_str()) && !v.is_null() {
                    *v = Value::String("[redacted]".to_owned());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_redacted_at_any_depth() {
        let body = br#"{"data":{"id":"user_1","first_name":"Alice","email_addresses":[{"email_address":"a@b.c"}]}}"#;
        let shown = redacted_body(Some(body));
        assert!(
            !shown.contains("Alice") && !shown.contains("a@b.c"),
            "{shown}"
        );
        assert!(shown.contains("user_1"));
    }
}
