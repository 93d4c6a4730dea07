//! Applying a batch: one transaction, transient failures retried, poison records isolated.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use clerk_sync_core::{ClerkEvent, EventMeta};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::apply::{apply_all, apply_all_in_spans, Outcome};
use crate::clock::now_ms;
use crate::dead_letter::Failure;
use crate::{Error, EventOutcome, Health, Record, Result, WorkerMetrics};

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub records: usize,
    pub applied: usize,
    pub stale: usize,
    pub ignored: usize,
    /// Records that can never be applied; each went to the dead-letter topic.
    pub dead_lettered: usize,
    /// Outcome counts by (topic, outcome), for metrics.
    pub by_topic: std::collections::BTreeMap<(String, EventOutcome), u64>,
    /// Clerk timestamp (ms) of the newest event applied.
    pub newest_event_ms: Option<i64>,
}

/// A record of the batch that can never be applied, by index into the batch.
#[derive(Debug)]
pub struct Rejected {
    pub index: usize,
    pub failure: Failure,
}

/// Applies the decodable records of a batch in one transaction, retrying transient database
/// failures with backoff until they succeed or `cancel` fires. When the database rejects the
/// batch for good, it is split in halves, each in its own transaction, until only the bad records
/// are set aside. Undecodable records are set aside at once.
pub async fn apply_records(
    pool: &PgPool,
    records: &[Record],
    health: &Health,
    metrics: &WorkerMetrics,
    cancel: &CancellationToken,
) -> Result<(BatchReport, Vec<Rejected>)> {
    let mut report = BatchReport {
        records: records.len(),
        ..BatchReport::default()
    };
    let (all, indexes, mut poison) = decodable(records);
    let first_failure = now_ms();
    // Retried whole when the guard in `apply_or_isolate` finds the database at fault (every
    // part failed, so nothing of it was committed).
    let (outcomes, rejected) = with_retry(
        || apply_or_isolate(pool, records, &all, &indexes, health, metrics, cancel),
        health,
        metrics,
        cancel,
    )
    .await?;
    for (i, outcome) in outcomes {
        count(&mut report, &records[indexes[i]].topic, &all[i].0, outcome);
    }
    for (i, e) in rejected {
        let index = indexes[i];
        let record = &records[index];
        warn!(topic = %record.topic, partition = record.partition, offset = record.offset,
              event_id = %all[i].0.id, error_kind = e.kind().as_str(), error = %error_chain(&e),
              "the database rejects this record");
        poison.push(Rejected {
            index,
            failure: failure(&e, 2, first_failure),
        });
    }
    report.dead_lettered = poison.len();
    for p in &poison {
        *report
            .by_topic
            .entry((records[p.index].topic.clone(), EventOutcome::DeadLettered))
            .or_default() += 1;
    }
    poison.sort_by_key(|p| p.index);
    Ok((report, poison))
}

/// The decodable events, borrowed from their records, with the record each came from; the
/// undecodable records set aside.
fn decodable(records: &[Record]) -> (Vec<&(EventMeta, ClerkEvent)>, Vec<usize>, Vec<Rejected>) {
    let mut all = Vec::with_capacity(records.len());
    let mut indexes = Vec::with_capacity(records.len());
    let mut poison = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match &record.decoded {
            Ok(event) => {
                all.push(event);
                indexes.push(index);
            }
            Err(e) => {
                warn_undecodable(record, e);
                poison.push(Rejected {
                    index,
                    failure: failure(e, 1, now_ms()),
                });
            }
        }
    }
    (all, indexes, poison)
}

/// Outcomes by position in `all`, and the positions the database rejects with their errors.
type Isolated = (Vec<(usize, Outcome)>, Vec<(usize, Error)>);

/// Applies `all` in one transaction, retrying transient failures. When the database rejects it
/// for good, it is split in halves, each in its own transaction, until the rejected records
/// stand alone: a few bad records in a large batch cost a few dozen transactions, not one per
/// record. Any split converges to the same rows (the rules hold whatever the grouping).
///
/// The guard: when every record of a batch of several distinct events fails alone with the same
/// error, the records are not what is wrong (a trigger, a constraint or a setting refuses everything):
/// [`Error::EveryRecordRejected`], retried like an outage and never dead-lettered.
async fn apply_or_isolate(
    pool: &PgPool,
    records: &[Record],
    all: &[&(EventMeta, ClerkEvent)],
    indexes: &[usize],
    health: &Health,
    metrics: &WorkerMetrics,
    cancel: &CancellationToken,
) -> Result<Isolated> {
    let timed = || async {
        let started = std::time::Instant::now();
        // One span per event, in the trace it was published in, for this attempt.
        let spans: Vec<tracing::Span> = (0..all.len())
            .map(|i| event_span(&records[indexes[i]], &all[i].0))
            .collect();
        let outcomes = apply_all_in_spans(pool, all, &spans).await?;
        metrics
            .transaction_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(outcomes)
    };
    let first = match with_retry(timed, health, metrics, cancel).await {
        Ok(outcomes) => return Ok((outcomes.into_iter().enumerate().collect(), Vec::new())),
        Err(e) if e.is_retryable() || matches!(e, Error::Cancelled) => return Err(e),
        Err(e) => e,
    };
    warn!(error_kind = first.kind().as_str(), error = %error_chain(&first), "batch rejected; splitting it to find the records the database rejects");
    let (applied, rejected) = bisect(pool, all, health, metrics, cancel).await?;
    every_record_alike(all, applied, rejected)
}

/// Applies `all` in halves, each in its own transaction, until the records the database
/// rejects stand alone.
async fn bisect(
    pool: &PgPool,
    all: &[&(EventMeta, ClerkEvent)],
    health: &Health,
    metrics: &WorkerMetrics,
    cancel: &CancellationToken,
) -> Result<Isolated> {
    let mut applied = Vec::with_capacity(all.len());
    let mut rejected = Vec::new();
    let mut pending = Vec::from(halves(0..all.len()));
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        let part = &all[range.clone()];
        match with_retry(|| apply_all(pool, part), health, metrics, cancel).await {
            Ok(outcomes) => applied.extend(range.zip(outcomes)),
            Err(e) if !e.is_retryable() && !matches!(e, Error::Cancelled) && range.len() > 1 => {
                pending.extend(halves(range));
            }
            Err(e) if !e.is_retryable() && !matches!(e, Error::Cancelled) => {
                rejected.push((range.start, e));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((applied, rejected))
}

/// The guard: every record of several distinct events rejected alone with the same error is
/// the database's fault, not the records'. (Several deliveries of one event fail alike because
/// they are alike: that is the record.)
fn every_record_alike(
    all: &[&(EventMeta, ClerkEvent)],
    applied: Vec<(usize, Outcome)>,
    mut rejected: Vec<(usize, Error)>,
) -> Result<Isolated> {
    let distinct_events = all
        .iter()
        .map(|e| e.0.id.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct_events > 1 && rejected.len() == all.len() {
        let alike = |e: &Error| (e.sqlstate(), error_chain(e));
        let (first_code, first_text) = alike(&rejected[0].1);
        if rejected
            .iter()
            .all(|(_, e)| alike(e) == (first_code.clone(), first_text.clone()))
        {
            let records = rejected.len();
            let (_, source) = rejected.swap_remove(0);
            return Err(Error::EveryRecordRejected {
                records,
                source: Box::new(source),
            });
        }
    }
    Ok((applied, rejected))
}

/// Logs a record that cannot be decoded, with where it is in the log.
pub(crate) fn warn_undecodable(record: &Record, e: &Error) {
    warn!(topic = %record.topic, partition = record.partition, offset = record.offset,
          error_kind = e.kind().as_str(), error = %error_chain(e), "undecodable record");
}

/// A range split in two, the first half last (it is popped first: records keep their order).
fn halves(range: std::ops::Range<usize>) -> [std::ops::Range<usize>; 2] {
    let middle = range.start + range.len() / 2;
    [middle..range.end, range.start..middle]
}

/// The span of one event's apply: a child of the span that published it (ingest's), so one
/// trace runs from the HTTP request to the database row; linked from the batch's span.
fn event_span(record: &Record, meta: &EventMeta) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "apply_event",
        event_id = %meta.id,
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
    );
    if let Some(cx) = &record.trace {
        use opentelemetry::trace::TraceContextExt;
        tracing::Span::current().add_link(cx.span().span_context().clone());
        let _ = span.set_parent(cx.clone());
    }
    span
}

fn failure(e: &Error, attempts: u32, first_failure_ms: i64) -> Failure {
    Failure {
        kind: e.kind(),
        message: error_chain(e),
        attempts,
        first_failure_ms,
        last_failure_ms: now_ms(),
    }
}

fn count(report: &mut BatchReport, topic: &str, meta: &EventMeta, outcome: Outcome) {
    match outcome {
        Outcome::Applied => report.applied += 1,
        Outcome::Stale | Outcome::Duplicate => report.stale += 1,
        Outcome::Ignored => report.ignored += 1,
    }
    *report
        .by_topic
        .entry((topic.to_owned(), EventOutcome::from(outcome)))
        .or_default() += 1;
    if outcome != Outcome::Ignored {
        let at = meta.timestamp.get();
        report.newest_event_ms = Some(report.newest_event_ms.map_or(at, |n| n.max(at)));
    }
}

/// The pause before retrying: a tenth of the backoff's for a conflict with another worker (its
/// transaction ends within a batch's time: 10 ms, growing), the backoff's own otherwise (an
/// outage: 100 ms, growing to 30 s).
fn retry_delay(conflict: bool, backoff: Duration) -> Duration {
    if conflict {
        backoff / 10
    } else {
        backoff
    }
}

/// Retries transient failures with capped exponential backoff and jitter, without limit, until
/// success, a permanent error, or cancellation. Marks the worker degraded while retrying.
pub(crate) async fn with_retry<T, F, Fut>(
    op: F,
    health: &Health,
    metrics: &WorkerMetrics,
    cancel: &CancellationToken,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let policy = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times();
    let retried = op
        .retry(policy)
        .when(|e: &Error| e.is_retryable() && !cancel.is_cancelled())
        .adjust(|e: &Error, delay| delay.map(|d| retry_delay(e.is_conflict(), d)))
        .notify(|e: &Error, delay| {
            health.set_retrying_because(Some(format!("{}: {}", e.kind(), error_chain(e))));
            metrics.retries.with_label_values(&[e.kind().as_str()]).inc();
            warn!(error_kind = e.kind().as_str(), error = %error_chain(e), ?delay, "transient failure; retrying");
        });
    let result = tokio::select! {
        result = retried => result,
        _ = cancel.cancelled() => Err(Error::Cancelled),
    };
    health.set_retrying_because(None);
    result
}

pub use clerk_sync_core::error_chain;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_delay;

    #[test]
    fn a_conflict_with_another_worker_is_retried_ten_times_sooner_than_an_outage() {
        let backoff = Duration::from_millis(100);
        assert_eq!(retry_delay(true, backoff), Duration::from_millis(10));
        assert_eq!(retry_delay(false, backoff), backoff);
    }
}
