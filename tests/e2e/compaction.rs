//! Log compaction, measured on a real broker: why the entity topics keep time retention
//! (`cleanup.policy=delete`, set explicitly by `topics create`) instead of being compacted.

use std::collections::BTreeMap;
use std::time::Duration;

use clerk_sync_local::KafkaSettings;

use crate::harness::{post_all, run_cli, sim, Ingest, TestDb, TestKafka};

const CONFIGS_TOOL: &str = "org.apache.kafka.tools.ConfigCommand";

/// Records `replay` reads from the beginning to the log end (fewer than the offsets once the
/// cleaner has run).
async fn readable(kafka: &TestKafka, db: &TestDb) -> anyhow::Result<i64> {
    let out = run_cli(
        kafka,
        &[
            "replay",
            "--from-beginning",
            "--dry-run",
            "--json",
            "--into",
            &db.url,
        ],
        &[],
    )
    .await?;
    let summary: serde_json::Value = serde_json::from_str(&out)?;
    summary["read"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no read count: {out}"))
}

/// Keys of `rebuilt` whose row differs from (or is missing against) `expected`, with whether the
/// expected row is a deleted one.
fn differing<K: Ord + Clone, R: PartialEq>(
    expected: &BTreeMap<K, R>,
    rebuilt: &BTreeMap<K, R>,
    deleted: impl Fn(&R) -> bool,
) -> (usize, usize) {
    let (mut live, mut gone) = (0, 0);
    for (key, row) in expected {
        if rebuilt.get(key) != Some(row) {
            if deleted(row) {
                gone += 1;
            } else {
                live += 1;
            }
        }
    }
    let extra = rebuilt.keys().filter(|k| !expected.contains_key(k)).count();
    (live + extra, gone)
}

#[tokio::test]
async fn a_compacted_log_rebuilds_every_live_row_but_not_what_deleted_entities_carried_so_the_entity_topics_keep_time_retention(
) -> anyhow::Result<()> {
    // The cleaner looks for work every half second instead of every 15 s.
    let kafka =
        TestKafka::private_with(KafkaSettings::default().property("log.cleaner.backoff.ms", "500"))
            .await?;
    for topic in kafka.topics.synced() {
        kafka
            .kafka_tool(
                CONFIGS_TOOL,
                &[
                    "--bootstrap-server",
                    &kafka.brokers,
                    "--alter",
                    "--entity-type",
                    "topics",
                    "--entity-name",
                    &topic,
                    "--add-config",
                    "cleanup.policy=compact,segment.ms=100,min.cleanable.dirty.ratio=0.01,min.compaction.lag.ms=0",
                ],
            )
            .await?;
    }
    let ingest = Ingest::start(&kafka, &[]).await?;
    let (history, delivery) = sim::lively_history_and_delivery(300, 30, 8)?;
    post_all(&ingest, &delivery).await?;
    // The active segment is never cleaned: once segment.ms has passed, one more record per
    // topic (a redelivery of its first event, which changes nothing) rolls it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rolls = Vec::new();
    for prefix in ["user.", "organization.", "organizationMembership."] {
        if let Some(first) = delivery.iter().find(|e| e.event_type().starts_with(prefix)) {
            rolls.push(first.clone());
        }
    }
    post_all(&ingest, &rolls).await?;
    let written = kafka.total_records()?;
    let rebuilt = TestDb::new().await?;

    // Compacted when the count read has dropped and holds still for three looks in a row.
    let started = std::time::Instant::now();
    let (mut compacted, mut steady) = (written, 0);
    while steady < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the cleaner never compacted the topics: {compacted} of {written} records left"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = readable(&kafka, &rebuilt).await?;
        steady = if now < written && now == compacted {
            steady + 1
        } else {
            0
        };
        compacted = now;
    }
    assert!(compacted < written, "{compacted} of {written}");

    run_cli(
        &kafka,
        &["replay", "--from-beginning", "--into", &rebuilt.url],
        &[],
    )
    .await?;
    let expected = sim::expected(&history)?;
    let users = differing(&expected.users(), &rebuilt.users().await?, |r| {
        r.deleted_at.is_some()
    });
    let orgs = differing(&expected.orgs(), &rebuilt.orgs().await?, |r| {
        r.deleted_at.is_some()
    });
    let memberships = differing(
        &expected.memberships(),
        &rebuilt.memberships().await?,
        |r| r.deleted_at.is_some(),
    );
    println!(
        "compaction: {written} records, {compacted} after the cleaner; rows differing from \
         Clerk's after a rebuild (live, deleted): users {users:?}, organizations {orgs:?}, \
         memberships {memberships:?}"
    );
    assert_eq!(
        (users.0, orgs.0, memberships.0),
        (0, 0, 0),
        "every live row rebuilds exactly from the compacted log"
    );
    // The reason not to compact: a deletion carries only the entity's id, so the compacted log
    // forgets a deleted user's or organization's times and names, and a rebuild cannot give the
    // tables Clerk's history gives.
    assert!(
        users.1 + orgs.1 > 0,
        "deleted entities lose what their earlier events carried"
    );
    Ok(())
}
