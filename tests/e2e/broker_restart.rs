//! The broker stopped (SIGTERM) or killed (SIGKILL) while webhooks stream in, then started
//! again on its data: nothing ingest acknowledged is lost, the tables end in Clerk's state,
//! nothing is dead-lettered (an absent broker is never a record's fault), and the worker carries
//! on from the offsets it had committed rather than from either end of the log.

use std::time::Duration;

use crate::harness::stream::{stored_event_ids, synced_ids, CommitWatch, Stream};
use crate::harness::{sim, Ingest, TestDb, TestKafka, WorkerProcess};
use crate::observability::{scrape, sum_of};
use crate::pipeline::wait_until_all_committed;

/// Webhooks per second while the broker goes away: a steady production rate.
const RATE: u32 = 50;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A controlled shutdown: the broker finishes its requests and flushes its logs.
    Stop,
    /// A crash: the broker recovers its logs from what reached the disk (the page cache).
    Kill,
}

async fn broker_restarted_mid_stream(fault: Fault) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut kafka = TestKafka::private().await?;
    let ingest = Ingest::start(&kafka, &[("PUBLISH_DEADLINE_MS", "2000")]).await?;
    let worker = WorkerProcess::start(&db, &kafka).await?;

    let (history, delivery) = sim::lively_history_and_delivery(400, 40, 12)?;
    let sent = delivery.len();
    let synced = synced_ids(&delivery);
    let watch = CommitWatch::start(&kafka)?;
    let stream = Stream::start(ingest.webhook_url(), delivery, RATE);

    // A third of the way into the stream, with records flowing and offsets being committed.
    tokio::time::sleep(Duration::from_secs(sent as u64 / RATE as u64 / 3)).await;
    let committed_before: i64 = kafka.committed()?.iter().map(|(_, _, o)| o).sum();
    let stored_before = kafka.total_records()?;
    match fault {
        Fault::Stop => kafka.broker().stop_node(1).await?,
        Fault::Kill => kafka.broker().kill_node(1).await?,
    }
    // Down long enough for ingest to refuse webhooks and the worker's fetches to fail.
    tokio::time::sleep(Duration::from_secs(3)).await;
    kafka.broker().start_node(1).await?;

    let delivered = stream.finish().await?;
    wait_until_all_committed(&kafka).await?;
    let commits = watch.finish();
    let stored = stored_event_ids(&kafka)?;
    let lost = delivered.lost(&synced, &stored);
    let dead_letters = kafka.record_count(&kafka.dlq)?;
    let total = kafka.total_records()?;
    let consumed = sum_of(
        &scrape(&worker.base).await,
        "clerk_sync_worker_events_total",
    ) as i64;
    let mismatch = sim::assert_tables_equal(&db, &sim::expected(&history)?).await;
    println!(
        "{fault:?}: {sent} webhooks sent, {} acknowledged, {} refused while the broker was away, \
         {} without an answer, {} lost, {} abandoned; {total} records stored, {consumed} consumed \
         ({} again), {dead_letters} dead letters; committed {committed_before} of \
         {stored_before} just before the fault; longest unconsumed gap {:?}; {} commit samples \
         ({} failed)",
        delivered.acknowledged.len(),
        delivered.refused,
        delivered.failed,
        lost.len(),
        delivered.abandoned.len(),
        consumed - total,
        commits.longest_gap,
        commits.samples,
        commits.failed_samples,
    );

    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(
        delivered.abandoned.is_empty(),
        "never accepted: {:?}",
        delivered.abandoned
    );
    assert!(
        delivered.refused + delivered.failed > 0,
        "the fault was felt by ingest"
    );
    assert_eq!(
        dead_letters, 0,
        "an absent broker is never a record's fault"
    );
    mismatch?;
    assert!(
        commits.regressions.is_empty(),
        "committed offsets went back: {:?}",
        commits.regressions
    );
    // From the committed offsets, not from the start of the log: at most what was stored but not
    // yet committed when the broker went away is consumed twice (plus what arrived in the
    // instant between reading those two figures: a second's worth at most).
    let uncommitted = stored_before - committed_before + i64::from(RATE);
    assert!(
        consumed - total <= uncommitted,
        "{} records consumed again, more than the {uncommitted} uncommitted at the fault",
        consumed - total
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_mid_stream_and_restarted_loses_no_acknowledged_webhook_and_the_worker_resumes_from_its_committed_offsets(
) -> anyhow::Result<()> {
    broker_restarted_mid_stream(Fault::Stop).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_stream_and_restarted_loses_no_acknowledged_webhook_and_the_worker_resumes_from_its_committed_offsets(
) -> anyhow::Result<()> {
    broker_restarted_mid_stream(Fault::Kill).await
}
