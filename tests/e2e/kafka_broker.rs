//! What only a real Apache Kafka can show: its offsets-for-times lookup, its log end after
//! multi-record batches, its own tools' view of our group and topics, and what it does with
//! topics nobody created.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clerk_sync_local::KafkaSettings;
use serde_json::Value;

use crate::harness::{
    cli_output, eventually, run_cli, signed_post, sim, Ingest, TestDb, TestKafka, WorkerProcess,
    TEST_SECRET,
};
use crate::pipeline::{wait_until_all_committed, WAIT};

const CONSUMER_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const TOPICS_TOOL: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS_TOOL: &str = "org.apache.kafka.tools.ConfigCommand";
const DUMP_LOG: &str = "org.apache.kafka.tools.DumpLogSegments";

fn user_body(id: &str, updated_at: i64) -> Vec<u8> {
    serde_json::json!({"type": "user.created", "timestamp": updated_at, "data": {
        "id": id, "first_name": "Logged", "created_at": updated_at, "updated_at": updated_at}})
    .to_string()
    .into_bytes()
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn user_ids(db: &TestDb) -> anyhow::Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT clerk_id FROM users ORDER BY clerk_id")
            .fetch_all(&db.pool)
            .await?,
    )
}

#[tokio::test]
async fn replay_from_a_time_starts_at_the_first_record_at_or_after_it_by_the_brokers_lookup(
) -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let users = kafka.topics.users.clone();
    // Two partitions' worth (two keys), six records each, a second apart, ten minutes ago.
    let t0 = now_ms() - 600_000;
    for key in ["a", "b"] {
        for i in 0..6 {
            let at = t0 + i * 1000;
            let id = format!("user_{key}{i}");
            kafka
                .produce_at(
                    &users,
                    key,
                    &user_body(&id, at),
                    &format!("msg_{key}{i}"),
                    at,
                )
                .await?;
        }
    }
    // Between records 2 and 3, and exactly at record 3.
    for (from, label) in [(t0 + 2500, "between"), (t0 + 3000, "at")] {
        let db = TestDb::new().await?;
        let out = run_cli(
            &kafka,
            &[
                "replay",
                "--from-time",
                &rfc3339(from),
                "--into",
                &db.url,
                "--json",
            ],
            &[],
        )
        .await?;
        let summary: Value = serde_json::from_str(&out)?;
        assert_eq!(
            (
                &summary["read"],
                &summary["skipped_by_time"],
                &summary["applied"]
            ),
            (&6.into(), &0.into(), &6.into()),
            "{label}: the lookup started each partition at its first record at or after the \
             time, so no older record was even read: {out}"
        );
        let expected: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|k| (3..6).map(move |i| format!("user_{k}{i}")))
            .collect();
        assert_eq!(user_ids(&db).await?, expected, "{label}");
    }
    Ok(())
}

#[tokio::test]
async fn replay_from_a_time_skips_a_record_stamped_earlier_that_follows_the_start_in_the_log(
) -> anyhow::Result<()> {
    // Record timestamps need not grow along a partition: ingest replicas stamp records with
    // their own clocks. The lookup finds the first record at or after the time; one behind it
    // stamped earlier (a clock a few seconds slow) is still older than asked, and skipped.
    let kafka = TestKafka::new().await?;
    let users = kafka.topics.users.clone();
    let t0 = now_ms() - 600_000;
    kafka
        .produce_at(&users, "k", &user_body("user_old", t0), "msg_old", t0)
        .await?;
    kafka
        .produce_at(
            &users,
            "k",
            &user_body("user_new", t0 + 10_000),
            "msg_new",
            t0 + 10_000,
        )
        .await?;
    kafka
        .produce_at(
            &users,
            "k",
            &user_body("user_skew", t0 + 4000),
            "msg_skew",
            t0 + 4000,
        )
        .await?;
    let db = TestDb::new().await?;
    let out = run_cli(
        &kafka,
        &[
            "replay",
            "--from-time",
            &rfc3339(t0 + 5000),
            "--into",
            &db.url,
            "--json",
        ],
        &[],
    )
    .await?;
    let summary: Value = serde_json::from_str(&out)?;
    assert_eq!(
        (&summary["read"], &summary["skipped_by_time"]),
        (&2.into(), &1.into()),
        "{out}"
    );
    assert_eq!(user_ids(&db).await?, vec!["user_new".to_owned()]);
    Ok(())
}

/// How many records each batch of a partition's first segment holds, as Kafka's own
/// DumpLogSegments reads the file.
async fn batch_sizes(
    kafka: &mut TestKafka,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Vec<u64>> {
    let segment = kafka.broker().dir().join(format!(
        "node-1/data/{topic}-{partition}/00000000000000000000.log"
    ));
    let dump = kafka
        .kafka_tool(DUMP_LOG, &["--files", segment.to_str().expect("a path")])
        .await?;
    Ok(dump
        .lines()
        .filter_map(|l| {
            l.split(" count: ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect())
}

#[tokio::test]
async fn lag_and_a_replays_end_agree_with_the_log_end_after_multi_record_batches(
) -> anyhow::Result<()> {
    // A broker of the test's own: its log files are read to show the batches are multi-record.
    let mut kafka = TestKafka::private().await?;
    let users = kafka.topics.users.clone();
    let t = now_ms() - 60_000;
    let records: Vec<(String, Vec<u8>, String)> = (0..300)
        .map(|i| {
            let id = format!("user_{i:04}");
            (id.clone(), user_body(&id, t + i), format!("msg_{i}"))
        })
        .collect();
    let produced = kafka.produce_batched(&users, &records).await?;
    let mut largest = 0;
    for partition in produced.keys() {
        let sizes = batch_sizes(&mut kafka, &users, *partition).await?;
        assert_eq!(
            sizes.iter().sum::<u64>(),
            produced[partition] as u64,
            "partition {partition}'s batches hold every record"
        );
        largest = largest.max(sizes.iter().copied().max().unwrap_or(0));
    }
    assert!(largest > 1, "several records per batch: {largest}");

    let lag: Value = serde_json::from_str(
        &run_cli(&kafka, &["lag", "--json", "--group", &kafka.group], &[]).await?,
    )?;
    let ends: BTreeMap<i32, i64> = lag
        .as_array()
        .expect("an array")
        .iter()
        .filter(|p| p["topic"] == users.as_str())
        .map(|p| {
            (
                p["partition"].as_i64().unwrap_or(-1) as i32,
                p["log_end_offset"].as_i64().unwrap_or(-1),
            )
        })
        .filter(|(_, end)| *end > 0)
        .collect();
    assert_eq!(
        ends, produced,
        "the log end is the offset after each partition's last record"
    );
    let unconsumed: i64 = lag
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|p| p["lag"].as_i64())
        .sum();
    assert_eq!(unconsumed, 300, "nothing consumed: the lag is every record");

    let db = TestDb::new().await?;
    let out = run_cli(
        &kafka,
        &["replay", "--from-beginning", "--into", &db.url, "--json"],
        &[],
    )
    .await?;
    let summary: Value = serde_json::from_str(&out)?;
    assert_eq!(
        (&summary["read"], &summary["applied"]),
        (&300.into(), &300.into()),
        "{out}"
    );
    assert_eq!(db.count("SELECT count(*) FROM users").await, 300);
    Ok(())
}

/// One row of `kafka-consumer-groups --describe`: current offset, log end, lag; `None` where it
/// prints `-`.
type DescribedRow = (Option<i64>, i64, Option<i64>);

/// `kafka-consumer-groups --describe`'s rows by (topic, partition).
fn described_offsets(text: &str, topics: &[String]) -> BTreeMap<(String, i32), DescribedRow> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (topic, partition) = (cols.get(1)?, cols.get(2)?.parse().ok()?);
            if !topics.iter().any(|t| t == topic) {
                return None;
            }
            let number = |i: usize| cols.get(i).and_then(|c| c.parse::<i64>().ok());
            Some((
                (topic.to_string(), partition),
                (number(3), number(4)?, number(5)),
            ))
        })
        .collect()
}

#[tokio::test]
async fn clerk_sync_lag_agrees_partition_by_partition_with_kafkas_consumer_groups_tool(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let worker = WorkerProcess::start(&db, &kafka).await?;
    let (_, delivery) = sim::history_and_delivery(60)?;
    let (applied, waiting) = delivery.split_at(delivery.len() / 2);
    crate::harness::post_all(&ingest, applied).await?;
    wait_until_all_committed(&kafka).await?;
    worker.stop().await?;
    // Published while no worker runs: the group lags by these.
    crate::harness::post_all(&ingest, waiting).await?;

    let ours: Value = serde_json::from_str(
        &run_cli(&kafka, &["lag", "--json", "--group", &kafka.group], &[]).await?,
    )?;
    let theirs = kafka
        .kafka_tool(
            CONSUMER_GROUPS,
            &[
                "--bootstrap-server",
                &kafka.brokers,
                "--describe",
                "--group",
                &kafka.group,
            ],
        )
        .await?;
    let theirs = described_offsets(&theirs, &kafka.topics.synced());
    assert!(!theirs.is_empty(), "the tool lists the group's partitions");
    let mut lagging = 0;
    for p in ours.as_array().expect("an array") {
        let key = (
            p["topic"].as_str().unwrap_or_default().to_owned(),
            p["partition"].as_i64().unwrap_or(-1) as i32,
        );
        let committed = p["committed_offset"].as_i64();
        let Some(&(current, end, lag)) = theirs.get(&key) else {
            assert_eq!(
                committed, None,
                "{key:?}: the tool lists every committed partition"
            );
            continue;
        };
        assert_eq!(
            (committed, p["log_end_offset"].as_i64(), p["lag"].as_i64()),
            (current, Some(end), lag.or(Some(end))),
            "{key:?}"
        );
        lagging += i64::from(p["lag"].as_i64() > Some(0));
    }
    assert!(lagging > 0, "a group with lag: {ours}");
    Ok(())
}

#[tokio::test]
async fn topics_create_makes_what_it_was_asked_as_kafkas_own_tools_describe_it_and_refuses_a_topic_made_otherwise(
) -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let prefix = crate::harness::unique("tc");
    let names = [
        ("TOPIC_USERS", format!("{prefix}.users")),
        ("TOPIC_ORGANIZATIONS", format!("{prefix}.orgs")),
        ("TOPIC_MEMBERSHIPS", format!("{prefix}.memberships")),
        ("TOPIC_DLQ", format!("{prefix}.dlq")),
    ];
    let mut env: Vec<(&str, &str)> = names.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([("TOPIC_RETENTION_MS", "604800000")]);
    let out = run_cli(
        &kafka,
        &[
            "topics",
            "create",
            "--partitions",
            "4",
            "--replication",
            "1",
        ],
        &env,
    )
    .await?;
    assert!(out.contains("present, as asked"), "{out}");
    for (variable, topic) in &names {
        let described = kafka
            .kafka_tool(
                TOPICS_TOOL,
                &[
                    "--bootstrap-server",
                    &kafka.brokers,
                    "--describe",
                    "--topic",
                    topic,
                ],
            )
            .await?;
        assert!(
            described.contains("PartitionCount: 4") && described.contains("ReplicationFactor: 1"),
            "{described}"
        );
        let configs = kafka
            .kafka_tool(
                CONFIGS_TOOL,
                &[
                    "--bootstrap-server",
                    &kafka.brokers,
                    "--describe",
                    "--entity-type",
                    "topics",
                    "--entity-name",
                    topic,
                ],
            )
            .await?;
        assert!(configs.contains("min.insync.replicas=1"), "{configs}");
        assert!(configs.contains("cleanup.policy=delete"), "{configs}");
        let retention = if *variable == "TOPIC_DLQ" {
            "retention.ms=2592000000"
        } else {
            "retention.ms=604800000"
        };
        assert!(configs.contains(retention), "{topic}: {configs}");
    }
    // Made by hand with one partition: asked for four, `topics create` names the difference.
    let odd = format!("{prefix}.odd");
    clerk_sync_kafka::topics::ensure_topics(&kafka.brokers, &[], std::slice::from_ref(&odd), 1, 1)
        .await?;
    let output = cli_output(
        &kafka,
        &["topics", "create", "--partitions", "4"],
        &[
            ("TOPIC_USERS", odd.as_str()),
            ("TOPIC_ORGANIZATIONS", &names[1].1),
            ("TOPIC_MEMBERSHIPS", &names[2].1),
            ("TOPIC_DLQ", &names[3].1),
        ],
    )
    .await?;
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{odd} has 1 partitions (asked 4)")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    Ok(())
}

/// With the broker's `auto.create.topics.enable` on or off, a worker whose dead-letter topic is
/// missing waits not ready, and ingest whose topics are missing answers 503 and is not ready:
/// neither makes the topic with the broker's defaults. Once `topics create` has run, both work.
async fn missing_topics_stay_missing_until_topics_create(auto_create: bool) -> anyhow::Result<()> {
    let settings =
        KafkaSettings::default().property("auto.create.topics.enable", auto_create.to_string());
    let kafka = TestKafka::private_with(settings).await?;
    let prefix = crate::harness::unique("missing");
    let names = [
        ("TOPIC_USERS", format!("{prefix}.users")),
        ("TOPIC_ORGANIZATIONS", format!("{prefix}.orgs")),
        ("TOPIC_MEMBERSHIPS", format!("{prefix}.memberships")),
        ("TOPIC_DLQ", format!("{prefix}.dlq")),
    ];
    let env: Vec<(&str, &str)> = names.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let db = TestDb::new().await?;
    let worker = WorkerProcess::start_with(&db, &kafka, &env).await?;
    let ingest = Ingest::start(&kafka, &env).await?;
    let client = reqwest::Client::new();
    let reason = |base: String| {
        let client = client.clone();
        async move {
            let r = client.get(format!("{base}/readyz")).send().await.ok()?;
            let body: Value = r.json().await.ok()?;
            (body["ready"] == false).then(|| body["reason"].as_str().unwrap_or_default().to_owned())
        }
    };
    let worker_reason =
        eventually("the worker not ready", WAIT, || reason(worker.base.clone())).await;
    assert!(
        worker_reason.contains(&names[3].1) && worker_reason.contains("clerk-sync topics create"),
        "{worker_reason}"
    );
    let ingest_reason = eventually("ingest saying which topics are missing", WAIT, || async {
        reason(ingest.base.clone())
            .await
            .filter(|r| r.contains("topics missing"))
    })
    .await;
    assert!(ingest_reason.contains(&names[0].1), "{ingest_reason}");
    let body = crate::harness::fixture("user.created.json");
    let refused = signed_post(
        &client,
        &ingest.webhook_url(),
        TEST_SECRET,
        "msg_early",
        &body,
    )
    .send()
    .await?;
    assert_eq!(
        refused.status(),
        503,
        "not acknowledged: there is no topic to hold it"
    );
    let listed = kafka
        .kafka_tool(
            TOPICS_TOOL,
            &["--bootstrap-server", &kafka.brokers, "--list"],
        )
        .await?;
    assert!(
        !listed.contains(&prefix),
        "auto.create.topics.enable={auto_create}: nothing made a topic with the broker's defaults: {listed}"
    );

    let out = run_cli(&kafka, &["topics", "create", "--partitions", "3"], &env).await?;
    assert!(out.contains("present, as asked"), "{out}");
    eventually("ingest accepts", WAIT, || async {
        let r = signed_post(
            &client,
            &ingest.webhook_url(),
            TEST_SECRET,
            "msg_early",
            &body,
        )
        .send()
        .await
        .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    eventually("the user applied", WAIT, || async {
        (db.count("SELECT count(*) FROM users").await == 1).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_create_on_a_missing_topic_is_reported_and_never_made_with_the_brokers_defaults(
) -> anyhow::Result<()> {
    missing_topics_stay_missing_until_topics_create(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_create_off_a_missing_topic_is_reported_until_topics_create_makes_it(
) -> anyhow::Result<()> {
    missing_topics_stay_missing_until_topics_create(false).await
}
