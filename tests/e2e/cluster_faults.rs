//! A three-node cluster (replication 3, `min.insync.replicas=2`, no unclean election) losing
//! nodes while a steady stream of signed webhooks flows through ingest and two workers: nothing
//! ingest acknowledged is lost, the tables end in Clerk's state, nothing is dead-lettered (a
//! missing node is never a record's fault), and while fewer than `min.insync.replicas` nodes
//! are up ingest answers 503, never 2xx, and recovers by itself when a node returns.

use std::time::{Duration, Instant};

use crate::harness::stream::{stored_event_ids, synced_ids, CommitWatch, Stream};
use crate::harness::{eventually, sim, Ingest, TestDb, TestKafka, WorkerProcess};
use crate::pipeline::wait_until_all_committed;

/// Webhooks per second while nodes go away.
const RATE: u32 = 100;
/// How long the stream runs around a fault.
const STREAM: Duration = Duration::from_secs(30);
/// Into the stream before the fault, so records flow and offsets are committed first.
const BEFORE_FAULT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The leader of a busy partition killed (SIGKILL), started again 10 s later.
    LeaderKilled,
    /// Each node stopped (SIGTERM) and started again in turn, the next only once every
    /// partition has all its replicas in sync again.
    RollingRestart,
    /// A leader frozen (SIGSTOP) for longer than the worker's session (30 s), the clients'
    /// request timeouts (30 s) and the controller's broker session (9 s), then resumed.
    NodePaused,
    /// Two of the three nodes down (one stopped, one killed): no write can reach two in-sync
    /// replicas, nor the controllers a quorum; then one returns.
    TwoOfThreeDown,
}

/// What happened during the fault, for the report.
struct Window {
    /// While the cluster could not meet `min.insync.replicas` (the two-down fault only).
    below_min_insync: Option<(Instant, Instant)>,
    fault: (Instant, Instant),
}

async fn cluster_fault(fault: Fault) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut kafka = TestKafka::cluster().await?;
    // Svix delivers from many addresses; this stream comes from one and retries at once, so
    // ingest's own shedding (per address, and its slots) is lifted to the load an outage
    // builds (100/s × the 5 s publish deadline): the 503s counted are the cluster's.
    let ingest = Ingest::start(
        &kafka,
        &[
            ("MAX_IN_FLIGHT", "1024"),
            ("MAX_IN_FLIGHT_PER_PEER", "1024"),
        ],
    )
    .await?;
    let workers = [
        WorkerProcess::start(&db, &kafka).await?,
        WorkerProcess::start(&db, &kafka).await?,
    ];

    let stream_for = match fault {
        // The pause alone outlasts the usual stream.
        Fault::NodePaused => STREAM + Duration::from_secs(20),
        _ => STREAM,
    };
    let events = RATE as usize * stream_for.as_secs() as usize;
    let (history, delivery) = sim::lively_history_and_delivery(events, 60, 16)?;
    let sent = delivery.len();
    let synced = synced_ids(&delivery);
    let watch = CommitWatch::start(&kafka)?;
    let stream = Stream::start(ingest.webhook_url(), delivery, RATE);
    tokio::time::sleep(BEFORE_FAULT).await;

    let busy = kafka.topics.synced()[0].clone();
    let window = inflict(&mut kafka, fault, &busy).await?;

    let delivered = stream.finish().await?;
    wait_until_all_committed(&kafka).await?;
    let commits = watch.finish();
    let stored = stored_event_ids(&kafka)?;
    let lost = delivered.lost(&synced, &stored);
    let dead_letters = kafka.record_count(&kafka.dlq)?;
    let mismatch = sim::assert_tables_equal(&db, &sim::expected(&history)?).await;
    let (from, to) = window.fault;
    let refused_in_fault = delivered.refused_between(from, to + Duration::from_secs(5));
    let with_quorum = match window.below_min_insync {
        Some((down, up)) => {
            delivered.refused_between(from, down) + delivered.refused_between(up, Instant::now())
        }
        None => delivered.refused as usize,
    };
    println!(
        "{fault:?} (fault lasting {:.1} s): {sent} webhooks sent, {} acknowledged, {} lost, {}, \
         {dead_letters} dead letters, {} 503s ({refused_in_fault} during the fault and the 5 s \
         after, {with_quorum} while the cluster held min.insync.replicas), {} without an answer, \
         {} abandoned; longest unconsumed gap {:.1} s",
        (to - from).as_secs_f64(),
        delivered.acknowledged.len(),
        lost.len(),
        match &mismatch {
            Ok(()) => "0 mismatches".to_owned(),
            Err(e) => format!("tables differ: {e}"),
        },
        delivered.refused,
        delivered.failed,
        delivered.abandoned.len(),
        commits.longest_gap.as_secs_f64(),
    );

    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(
        delivered.abandoned.is_empty(),
        "never accepted: {:?}",
        delivered.abandoned
    );
    assert_eq!(dead_letters, 0, "a missing node is never a record's fault");
    mismatch?;
    // Not asserted here, unlike with one worker (broker_restart.rs): while two members hand a
    // partition over, the old owner's last auto-commit can land after the new owner's first,
    // so the committed offset may go back a few records for a moment; those are applied again,
    // which the version rules absorb, and nothing is skipped.
    if !commits.regressions.is_empty() {
        println!(
            "committed offsets went back during a hand-over: {:?}",
            commits.regressions
        );
    }
    if let Some((down, up)) = window.below_min_insync {
        // A write answered in the second after the kill may have reached both replicas first.
        let acknowledged = delivered.accepted_between(&synced, down + Duration::from_secs(1), up);
        assert_eq!(
            acknowledged, 0,
            "ingest acknowledged webhooks that only one in-sync replica could hold"
        );
        assert!(
            delivered.refused_between(down, up) > 0,
            "ingest answered 503 while min.insync.replicas could not be met"
        );
    }
    for worker in workers {
        worker.stop().await?;
    }
    Ok(())
}

/// Breaks the cluster as `fault` says and mends it; returns when it is whole again.
async fn inflict(kafka: &mut TestKafka, fault: Fault, busy: &str) -> anyhow::Result<Window> {
    let started = Instant::now();
    let mut below_min_insync = None;
    match fault {
        Fault::LeaderKilled => {
            let leader = kafka.leader_of(busy, 0)?;
            kafka.broker().kill_node(leader).await?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            kafka.broker().start_node(leader).await?;
        }
        Fault::RollingRestart => {
            for id in kafka.broker().node_ids() {
                kafka.broker().stop_node(id).await?;
                kafka.broker().start_node(id).await?;
                wait_until_fully_replicated(kafka).await;
            }
        }
        Fault::NodePaused => {
            let leader = kafka.leader_of(busy, 0)?;
            kafka.broker().pause_node(leader)?;
            tokio::time::sleep(Duration::from_secs(35)).await;
            kafka.broker().resume_node(leader)?;
        }
        Fault::TwoOfThreeDown => {
            // The node leading the busy partition stays; the other two go, the first cleanly,
            // the second as a crash (a clean shutdown needs the quorum the first one's absence
            // leaves it).
            let stays = kafka.leader_of(busy, 0)?;
            let going: Vec<u32> = kafka
                .broker()
                .node_ids()
                .into_iter()
                .filter(|id| *id != stays)
                .collect();
            kafka.broker().stop_node(going[0]).await?;
            kafka.broker().kill_node(going[1]).await?;
            let down = Instant::now();
            tokio::time::sleep(Duration::from_secs(10)).await;
            let up = Instant::now();
            kafka.broker().start_node(going[1]).await?;
            below_min_insync = Some((down, up));
            kafka.broker().start_node(going[0]).await?;
        }
    }
    let ended = Instant::now();
    wait_until_fully_replicated(kafka).await;
    Ok(Window {
        below_min_insync,
        fault: (started, ended),
    })
}

async fn wait_until_fully_replicated(kafka: &TestKafka) {
    eventually(
        "every partition with all its replicas in sync",
        Duration::from_secs(120),
        || async { kafka.fully_replicated().ok()?.then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_of_a_busy_partition_killed_mid_stream_and_restarted_loses_no_acknowledged_webhook(
) -> anyhow::Result<()> {
    cluster_fault(Fault::LeaderKilled).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_nodes_mid_stream_loses_no_acknowledged_webhook(
) -> anyhow::Result<()> {
    cluster_fault(Fault::RollingRestart).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_every_timeout_and_resumed_loses_no_acknowledged_webhook(
) -> anyhow::Result<()> {
    cluster_fault(Fault::NodePaused).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_three_nodes_down_ingest_answers_503_and_recovers_by_itself_when_one_returns(
) -> anyhow::Result<()> {
    cluster_fault(Fault::TwoOfThreeDown).await
}
