//! Replay from the Kafka log, through the real binary.

use crate::harness::{run_cli, sim, Ingest, TestDb, TestKafka, WorkerProcess};
use crate::pipeline::wait_until_all_committed;

fn body(id: &str, updated_at: i64) -> Vec<u8> {
    serde_json::json!({"type": "user.created", "timestamp": updated_at, "data": {
        "id": id, "first_name": "Replayed", "created_at": updated_at, "updated_at": updated_at}})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn replay_from_the_beginning_into_an_empty_database_gives_the_live_tables_and_leaves_the_live_group_alone(
) -> anyhow::Result<()> {
    let live = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&live, &kafka).await?;
    let (history, delivery) = sim::history_and_delivery(40)?;
    crate::harness::post_all(&ingest, &delivery).await?;
    wait_until_all_committed(&kafka).await?;
    let committed_before = kafka.committed()?;

    let rebuilt = TestDb::new().await?;
    let dry = run_cli(
        &kafka,
        &[
            "replay",
            "--from-beginning",
            "--dry-run",
            "--into",
            &rebuilt.url,
        ],
        &[],
    )
    .await?;
    assert!(dry.starts_with("dry run"), "{dry}");
    assert_eq!(
        rebuilt.count("SELECT count(*) FROM users").await,
        0,
        "a dry run writes nothing"
    );

    let out = run_cli(
        &kafka,
        &[
            "replay",
            "--from-beginning",
            "--into",
            &rebuilt.url,
            "--json",
        ],
        &[],
    )
    .await?;
    let published = kafka.total_records()?;
    let summary: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(summary["read"], published, "{out}");
    assert_eq!(summary["dry_run"], false, "{out}");
    assert!(summary["applied"].as_u64() > Some(0), "{out}");
    sim::assert_tables_equal(&rebuilt, &sim::expected(&history)?).await?;
    assert_eq!(rebuilt.users().await?, live.users().await?);
    assert_eq!(rebuilt.memberships().await?, live.memberships().await?);
    assert_eq!(
        kafka.committed()?,
        committed_before,
        "the live group's offsets did not move"
    );
    Ok(())
}

#[tokio::test]
async fn replay_from_an_offset_reads_only_that_partition_from_there() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let users = kafka.topics.users.clone();
    for (i, id) in ["user_a", "user_b", "user_c"].iter().enumerate() {
        kafka
            .produce(
                &users,
                "k",
                &body(id, 1_754_560_800_000 + i as i64),
                &format!("msg_{i}"),
            )
            .await?;
    }
    let lag: serde_json::Value = serde_json::from_str(
        &run_cli(&kafka, &["lag", "--json", "--group", &kafka.group], &[]).await?,
    )?;
    let partition = lag
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["topic"] == users.as_str() && p["log_end_offset"] == 3)
        .and_then(|p| p["partition"].as_i64())
        .expect("the partition with the records");
    let db = TestDb::new().await?;
    run_cli(
        &kafka,
        &[
            "replay",
            "--from-offset",
            &format!("{users}:{partition}:1"),
            "--into",
            &db.url,
        ],
        &[],
    )
    .await?;
    let mut ids: Vec<String> = sqlx::query_scalar("SELECT clerk_id FROM users")
        .fetch_all(&db.pool)
        .await?;
    ids.sort();
    assert_eq!(ids, vec!["user_b".to_owned(), "user_c".to_owned()]);
    Ok(())
}
