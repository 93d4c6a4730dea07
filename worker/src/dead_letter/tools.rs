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
        let committed = crate::watermarks::committed_offsets(consumer, &tpl, TIMEOUT)?;
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

/// Where a dead letter may go back to, and how it is signed on the way.
#[derive(Clone, Debug)]
pub struct Destination {
    /// Only these topics (the synced ones) take a redriven record: a dead letter's headers are
    /// whatever its record carried, and naming another topic must not make redrive write there.
    pub allowed_topics: Vec<String>,
    /// Signs a record that carries no signature, or whose signature failed, when the operator
    /// vouches for it (`--vouch`); `None` when not vouching.
    pub vouch: Option<clerk_sync_kafka::provenance::RecordSigner>,
}

/// Why a dead letter was not redriven.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Its original topic is not one of the synced topics.
    ForeignTopic,
    /// Nobody signed it (or its signature failed), and the operator did not vouch for it.
    Unsigned,
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::ForeignTopic => "its original topic is not a synced topic",
            Refusal::Unsigned => "it is not signed (check it, then redrive it with --vouch)",
        }
    }
}

/// What redriving `letter` would do: its destination, or why it is refused.
pub fn destination(letter: &DeadLetter, to: &Destination) -> std::result::Result<String, Refusal> {
    let topic = letter.header(header::ORIGINAL_TOPIC).unwrap_or_default();
    if !to.allowed_topics.contains(&topic) {
        return Err(Refusal::ForeignTopic);
    }
    if needs_vouching(letter) && to.vouch.is_none() {
        return Err(Refusal::Unsigned);
    }
    Ok(topic)
}

/// A letter dead-lettered for its signature, or carrying none, would only be refused again.
fn needs_vouching(letter: &DeadLetter) -> bool {
    let signed = letter.original_headers().any(|(k, _)| {
        k == clerk_sync_core::record_header::SIGNATURE
            || k == clerk_sync_core::record_header::OWN_SIGNATURE
    });
    !signed
        || letter.header(header::ERROR_KIND).as_deref() == Some(crate::ErrorKind::Unsigned.as_str())
}

/// Re-publishes a dead letter to its original topic (one of `to`'s) with its original key and
/// headers, marked with where it came from, and waits for the broker's acknowledgement. A letter
/// that needs vouching is signed with the project's key instead of its own signatures.
pub async fn republish(
    producer: &FutureProducer,
    dlq_topic: &str,
    letter: &DeadLetter,
    to: &Destination,
) -> Result<String> {
    let topic = destination(letter, to).map_err(|refusal| {
        Error::DeadLetterTopic(format!(
            "dead letter {}:{} not redriven: {}",
            letter.partition,
            letter.offset,
            refusal.as_str()
        ))
    })?;
    use clerk_sync_core::record_header::{EVENT_ID, EVENT_TYPE, OWN_SIGNATURE, SIGNATURE};
    let vouched = needs_vouching(letter)
        .then_some(to.vouch.as_ref())
        .flatten();
    let mut headers = OwnedHeaders::new();
    for (key, value) in letter.original_headers() {
        let replaced = vouched.is_some() && (key == SIGNATURE || key == OWN_SIGNATURE);
        if key != header::REDRIVEN_FROM && !replaced {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
    }
    if let Some(signer) = vouched {
        // The id and type the worker will read: the record's own, or added here (the worker
        // would otherwise name it by its new coordinates, which the signature cannot know).
        let id = letter.header(EVENT_ID).unwrap_or_else(|| {
            format!(
                "kafka:{topic}:{}:{}",
                letter
                    .header(header::ORIGINAL_PARTITION)
                    .unwrap_or_default(),
                letter.header(header::ORIGINAL_OFFSET).unwrap_or_default()
            )
        });
        let body = letter.value.as_deref().unwrap_or_default();
        let event_type = letter.header(EVENT_TYPE).unwrap_or_else(|| {
            clerk_sync_core::Envelope::parse(body)
                .map(|e| e.event_type)
                .unwrap_or_default()
        });
        let signature = signer.sign(&id, &event_type, body);
        for (key, value) in [(EVENT_ID, &id), (EVENT_TYPE, &event_type)] {
            if letter.header(key).is_none() {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
        }
        headers = headers.insert(Header {
            key: OWN_SIGNATURE,
            value: Some(&signature),
        });
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
        .map_err(|(e, _)| Error::Kafka(clerk_sync_kafka::delivery_error(producer, e)))?;
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
    pub to: Destination,
}

/// A dead letter redriven (or that would be, in a dry run), or refused.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Redriven {
    pub partition: i32,
    pub offset: i64,
    pub original_topic: String,
    /// Why it was not produced anywhere; `None` when it was (or would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
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
        // A refused letter is passed like a redriven one (the group's position moves past it):
        // it is reported, and `--only` still reaches it.
        let refused = destination(letter, &redrive.to).err();
        if !redrive.dry_run {
            if refused.is_none() {
                republish(&producer, &redrive.topic, letter, &redrive.to).await?;
            }
            if redrive.only.is_none() {
                commit_past(&consumer, &redrive.topic, letter)?;
            }
        }
        let redriven = Redriven {
            partition: letter.partition,
            offset: letter.offset,
            original_topic: letter.header(header::ORIGINAL_TOPIC).unwrap_or_default(),
            refused,
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
    let committed = crate::watermarks::committed_offsets(consumer, &tpl, TIMEOUT)?;
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

/// What a redacted body keeps: ids, types, times and roles — nothing an end user typed, and no
/// key an end user named (metadata keys are theirs). An allow-list, so a field Clerk adds
/// tomorrow is hidden until someone decides it may be shown.
const SHOWN: &[&str] = &[
    "id",
    "object",
    "type",
    "timestamp",
    "created_at",
    "updated_at",
    "deleted",
    "role",
    "permissions",
    "user_id",
    "organization_id",
    "primary_email_address_id",
    "instance_id",
];

/// Objects whose allowed fields are shown (everything else is replaced whole).
const OPENED: &[&str] = &["data", "organization", "public_user_data"];

/// Keeps only the allowed fields of a JSON body, everything else `"[redacted]"`; a body that is
/// not JSON is shown by its size only.
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
    let Value::Object(map) = value else {
        *value = Value::String("[redacted]".to_owned());
        return;
    };
    for (key, v) in map.iter_mut() {
        if OPENED.contains(&key.as_str()) && v.is_object() {
            redact(v);
        } else if v.is_null() || (SHOWN.contains(&key.as_str()) && !v.is_object()) {
            // Shown as it is (a null says nothing either).
        } else {
            *v = Value::String("[redacted]".to_owned());
        }
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

    #[test]
    fn a_field_not_on_the_allow_list_is_hidden_whole_keys_included() {
        let body = br#"{"type":"user.updated","data":{"id":"user_1","role":"org:admin","nickname":"Ally","public_metadata":{"ssn-123-45":"x"},"created_at":1}}"#;
        let shown = redacted_body(Some(body));
        assert!(
            !shown.contains("Ally") && !shown.contains("ssn-123-45"),
            "{shown}"
        );
        assert!(
            shown.contains("org:admin") && shown.contains("user.updated"),
            "{shown}"
        );
    }
}
