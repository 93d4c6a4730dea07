//! The worker as a library: its settings checked in one place, and runnable on any Tokio
//! runtime, a current-thread one included (nothing blocks an async thread).

use std::time::Duration;

use clerk_sync_worker::{Health, Worker, WorkerConfig, WorkerMetrics};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::harness::{clerk_sync, eventually, TestDb, TestKafka};

fn config(kafka: &TestKafka) -> WorkerConfig {
    WorkerConfig {
        brokers: kafka.brokers.clone(),
        group_id: kafka.group.clone(),
        topics: kafka.topics.synced(),
        batch_max: 100,
        batch_linger: Duration::ZERO,
        membership: clerk_sync_kafka::Membership::Classic {
            session_timeout: Duration::from_secs(6),
        },
        dlq_topic: kafka.dlq.clone(),
        kafka_options: Default::default(),
        lag_interval: Duration::from_secs(1),
        worker_id: "current-thread".to_owned(),
        trust: crate::harness::trust(),
    }
}

// The default test runtime is a current-thread one.
#[tokio::test]
async fn a_worker_on_a_current_thread_runtime_applies_what_arrives_and_stops_when_asked(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let config = config(&kafka);
    let metrics = WorkerMetrics::new(prometheus::Registry::new(), &config.topics)?;
    let worker = Worker::new(
        config,
        db.pool.clone(),
        Health::new(db.pool.clone()),
        metrics,
    )?;
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let cancel = cancel.clone();
        async move { worker.run(cancel).await }
    });
    let body = json!({"type": "user.created", "object": "event", "timestamp": 1_754_560_800_000_i64,
        "data": {"id": "user_ct", "object": "user", "first_name": "Cy",
                 "created_at": 1_754_560_800_000_i64, "updated_at": 1_754_560_800_000_i64}});
    kafka
        .produce(
            &kafka.topics.users,
            "user_ct",
            body.to_string().as_bytes(),
            "msg_ct",
        )
        .await?;
    eventually("the record applied", Duration::from_secs(60), || async {
        (db.count("SELECT count(*) FROM users WHERE clerk_id = 'user_ct'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), run).await???;
    Ok(())
}

#[test]
fn a_worker_setting_that_cannot_work_is_refused_at_start_up_naming_it_not_clamped() {
    for (setting, value) in [
        ("LAG_REFRESH_MS", "50"),
        ("BATCH_MAX", "0"),
        ("KAFKA_SESSION_TIMEOUT_MS", "0"),
    ] {
        let out = clerk_sync(
            &["worker"],
            &[
                ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
                ("CLERK_WEBHOOK_SECRET", crate::harness::TEST_SECRET),
                (setting, value),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{setting}={value} accepted");
        assert!(
            stderr
                .trim()
                .starts_with(&format!("error: {setting}: expected")),
            "{setting}: {stderr}"
        );
    }
}

/// The group's committed offsets, summed over the synced topics.
fn committed(kafka: &TestKafka) -> anyhow::Result<i64> {
    Ok(kafka.committed()?.iter().map(|(_, _, o)| o).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_giving_partitions_up_commits_what_it_applied_at_once_not_at_its_next_periodic_commit(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    // Periodic commits two minutes apart: only the commit at the revoke (librdkafka's, with
    // enable.auto.commit) can commit within the test.
    let slow_commits = [("KAFKA_OPTIONS", "auto.commit.interval.ms=120000")];
    let _first = crate::harness::WorkerProcess::start_with(&db, &kafka, &slow_commits).await?;
    for i in 0..20 {
        let id = format!("user_rb{i:02}");
        let body = json!({"type": "user.created", "object": "event",
            "timestamp": 1_754_560_800_000_i64, "data": {"id": id, "object": "user",
            "created_at": 1_754_560_800_000_i64, "updated_at": 1_754_560_800_000_i64}});
        kafka
            .produce(
                &kafka.topics.users,
                &id,
                body.to_string().as_bytes(),
                &format!("msg_rb{i}"),
            )
            .await?;
    }
    eventually("all applied", Duration::from_secs(60), || async {
        (db.count("SELECT count(*) FROM users").await == 20).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(committed(&kafka)?, 0, "nothing committed periodically yet");
    // A second worker joins: the first gives its partitions up and commits as it does.
    let _second = crate::harness::WorkerProcess::start_with(&db, &kafka, &slow_commits).await?;
    eventually(
        "committed at the revoke",
        Duration::from_secs(60),
        || async { (committed(&kafka).ok()? == 20).then_some(()) },
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM users").await,
        20,
        "nothing applied twice or lost"
    );
    Ok(())
}
