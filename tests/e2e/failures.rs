//! Fault tests: real processes, a real broker and Postgres, things broken on purpose.

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    cli_output, eventually, post_all, post_fixture, run_cli, signed_post, sim, Ingest, TestDb,
    TestKafka, WorkerProcess, STDERR_FILE, TEST_SECRET,
};
use crate::observability::{scrape, sum_of};
use crate::pipeline::{wait_until_all_committed, WAIT};

/// A killed worker holds its partitions until its session expires: short, so that the group
/// moves on within the test's wait.
const SHORT_SESSION: (&str, &str) = ("KAFKA_SESSION_TIMEOUT_MS", "6000");

#[tokio::test]
async fn a_worker_killed_mid_stream_loses_nothing_after_it_restarts() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let (history, delivery) = sim::history_and_delivery(60)?;
    let (first, rest) = delivery.split_at(delivery.len() / 2);

    let worker = WorkerProcess::start_with(&db, &kafka, &[SHORT_SESSION]).await?;
    post_all(&ingest, first).await?;
    eventually("some rows", WAIT, || async {
        (db.count("SELECT count(*) FROM users").await > 0).then_some(())
    })
    .await;
    worker.kill().await?;
    post_all(&ingest, rest).await?;

    let _worker = WorkerProcess::start(&db, &kafka).await?;
    wait_until_all_committed(&kafka).await?;
    sim::assert_tables_equal(&db, &sim::expected(&history)?).await
}

#[tokio::test]
async fn two_workers_in_a_group_finish_the_stream_when_one_is_killed() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let (history, delivery) = sim::history_and_delivery(60)?;
    let (first, rest) = delivery.split_at(delivery.len() / 3);

    let doomed = WorkerProcess::start_with(&db, &kafka, &[SHORT_SESSION]).await?;
    let _survivor = WorkerProcess::start_with(&db, &kafka, &[SHORT_SESSION]).await?;
    post_all(&ingest, first).await?;
    doomed.kill().await?;
    post_all(&ingest, rest).await?;

    wait_until_all_committed(&kafka).await?;
    sim::assert_tables_equal(&db, &sim::expected(&history)?).await
}

#[tokio::test]
async fn a_database_outage_pauses_the_worker_without_dead_letters_or_loss() -> anyhow::Result<()> {
    let db = TestDb::private().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let worker = WorkerProcess::start(&db, &kafka).await?;
    let (history, delivery) = sim::history_and_delivery(40)?;
    let (first, rest) = delivery.split_at(delivery.len() / 2);
    post_all(&ingest, first).await?;

    let server = db.server().expect("a private server");
    server.stop()?;
    post_all(&ingest, rest).await?;
    let client = reqwest::Client::new();
    // The worker stays alive but reports itself not ready while it retries.
    eventually("worker not ready", WAIT, || async {
        let ready = client
            .get(format!("{}/readyz", worker.base))
            .send()
            .await
            .ok()?;
        (ready.status() == 503).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.resume()?;

    wait_until_all_committed(&kafka).await?;
    assert_eq!(
        kafka.record_count(&kafka.dlq)?,
        0,
        "an outage never produces dead letters"
    );
    sim::assert_tables_equal(&db, &sim::expected(&history)?).await
}

#[tokio::test]
async fn a_database_outage_longer_than_the_poll_deadline_keeps_the_group_and_applies_each_record_once(
) -> anyhow::Result<()> {
    let db = TestDb::private().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    // librdkafka's poll deadline as short as it may be (not below the session timeout): a
    // worker that stopped polling while it retries would leave the group, lose its
    // uncommitted batch and apply it a second time after rejoining.
    let log = tempfile::NamedTempFile::new()?;
    let worker = WorkerProcess::start_with(
        &db,
        &kafka,
        &[
            // One setting for every role, as one ConfigMap gives it: linger.ms is ingest's.
            ("KAFKA_OPTIONS", "max.poll.interval.ms=7000,linger.ms=5"),
            // librdkafka wants the session no longer than the poll deadline.
            SHORT_SESSION,
            (STDERR_FILE, log.path().to_str().expect("path")),
        ],
    )
    .await?;
    let (history, delivery) = sim::history_and_delivery(40)?;
    let server = db.server().expect("a private server");
    server.stop()?;
    post_all(&ingest, &delivery).await?;
    eventually("the worker retrying a batch", WAIT, || async {
        let retries = sum_of(
            &scrape(&worker.base).await,
            "clerk_sync_worker_retries_total",
        );
        (retries > 0.0).then_some(())
    })
    .await;
    // Twice the poll deadline.
    tokio::time::sleep(Duration::from_secs(14)).await;
    server.resume()?;

    wait_until_all_committed(&kafka).await?;
    sim::assert_tables_equal(&db, &sim::expected(&history)?).await?;
    let processed = sum_of(
        &scrape(&worker.base).await,
        "clerk_sync_worker_events_total",
    );
    assert_eq!(
        processed,
        kafka.total_records()? as f64,
        "every record applied once (outcomes counted: applied, stale, duplicate, ignored)"
    );
    // librdkafka logs MAXPOLL when it gives up on the application and leaves the group.
    let logged = std::fs::read_to_string(log.path())?;
    assert!(
        !logged.contains("MAXPOLL"),
        "the worker left its group while the batch waited for the database"
    );
    // Each client took only the properties it reads: no "is a producer property and will be
    // ignored by this consumer instance" (or the reverse) at start-up.
    assert!(
        !logged.contains("CONFWARN"),
        "configuration warnings: {logged}"
    );
    Ok(())
}

#[tokio::test]
async fn poison_records_are_dead_lettered_with_context_and_everything_around_them_applies(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    let users = kafka.topics.users.clone();
    let good = |id: &str| {
        json!({"type": "user.created", "timestamp": 1_754_560_800_000_i64, "data": {
            "id": id, "first_name": "Good", "created_at": 1_754_560_800_000_i64, "updated_at": 1_754_560_800_000_i64}})
        .to_string()
    };
    let wrong_type = json!({"type": "user.created", "timestamp": 1_754_560_800_000_i64, "data": {
        "id": "user_bad", "first_name": "Mallory", "created_at": "yesterday", "updated_at": 1}})
    .to_string();
    let unknown_shape =
        json!({"type": "user.updated", "timestamp": 1, "data": {"user": "user_bad"}}).to_string();
    kafka
        .produce(&users, "user_a", good("user_a").as_bytes(), "msg_a")
        .await?;
    kafka.produce(&users, "x", b"{not json", "msg_p1").await?;
    kafka
        .produce(&users, "user_bad", unknown_shape.as_bytes(), "msg_p2")
        .await?;
    kafka
        .produce(&users, "user_bad", wrong_type.as_bytes(), "msg_p3")
        .await?;
    kafka
        .produce(&users, "user_b", good("user_b").as_bytes(), "msg_b")
        .await?;

    wait_until_all_committed(&kafka).await?;
    assert_eq!(
        db.count("SELECT count(*) FROM users").await,
        2,
        "the good records around the poison applied"
    );
    assert_eq!(kafka.record_count(&kafka.dlq)?, 3);

    let listed = run_cli(&kafka, &["dlq", "list"], &[]).await?;
    assert!(listed.contains("3 dead letters"), "{listed}");
    assert!(
        listed.contains("not_an_envelope") && listed.contains("invalid_data"),
        "{listed}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&run_cli(&kafka, &["dlq", "list", "--json"], &[]).await?)?;
    assert_eq!(
        (&listed["total"], &listed["waiting"]),
        (&3.into(), &3.into())
    );
    let kinds: Vec<(&str, u64)> = listed["by_kind"]
        .as_array()
        .expect("by_kind")
        .iter()
        .map(|k| {
            (
                k["error_kind"].as_str().unwrap_or(""),
                k["total"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("invalid_data", 2), ("not_an_envelope", 1)],
        "{listed}"
    );
    let gate = cli_output(&kafka, &["dlq", "list", "--fail-if-any"], &[]).await?;
    assert_eq!(
        gate.status.code(),
        Some(3),
        "dead letters waiting: exit code 3"
    );
    let shown_json: serde_json::Value =
        serde_json::from_str(&run_cli(&kafka, &["dlq", "show", "--json"], &[]).await?)?;
    let letters = shown_json.as_array().expect("an array");
    assert_eq!(letters.len(), 3);
    let p3 = letters
        .iter()
        .find(|l| l["event_id"] == "msg_p3")
        .expect("msg_p3 shown");
    assert_eq!(p3["original_topic"], users.as_str());
    assert_eq!(p3["attempts"], 1);
    assert!(
        p3["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("expected i64")),
        "{shown_json}"
    );
    assert!(!shown_json.to_string().contains("Mallory"), "redacted");

    let shown = run_cli(&kafka, &["dlq", "show"], &[]).await?;
    assert!(shown.contains(&format!("from={users}:")), "{shown}");
    assert!(
        shown.contains("attempts=1") && shown.contains("svix-id: msg_p3"),
        "{shown}"
    );
    assert!(
        shown.contains("expected i64"),
        "the error says what is wrong: {shown}"
    );
    assert!(
        !shown.contains("Mallory"),
        "personal data is redacted: {shown}"
    );
    Ok(())
}

#[tokio::test]
async fn a_record_the_database_rejects_is_dead_lettered_and_redriven_once_after_the_fix(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    // An operator's constraint that the event can never satisfy: a permanent rejection.
    sqlx::query(
        "ALTER TABLE users ADD CONSTRAINT no_moreau CHECK (last_name IS DISTINCT FROM 'Moreau')",
    )
    .execute(&db.pool)
    .await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    for (id, name) in [
        ("msg_u", "user.created.json"),
        ("msg_o", "organization.created.json"),
    ] {
        let r = post_fixture(&ingest, id, name).await?;
        assert_eq!(r.status(), 200);
    }
    wait_until_all_committed(&kafka).await?;
    assert_eq!(db.count("SELECT count(*) FROM organizations").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM users").await, 0);
    let listed = run_cli(&kafka, &["dlq", "list"], &[]).await?;
    assert!(
        listed.contains("1 dead letters") && listed.contains("database_rejected"),
        "{listed}"
    );

    // The fix, then the redrive.
    sqlx::query("ALTER TABLE users DROP CONSTRAINT no_moreau")
        .execute(&db.pool)
        .await?;
    let dry = run_cli(&kafka, &["dlq", "redrive", "--dry-run"], &[]).await?;
    assert!(dry.contains("1 dead letters would be redriven"), "{dry}");
    let dry: serde_json::Value = serde_json::from_str(
        &run_cli(&kafka, &["dlq", "redrive", "--dry-run", "--json"], &[]).await?,
    )?;
    assert_eq!(
        (&dry["dry_run"], &dry["count"]),
        (&true.into(), &1.into()),
        "{dry}"
    );
    let gate = cli_output(&kafka, &["dlq", "list", "--fail-if-any"], &[]).await?;
    assert_eq!(gate.status.code(), Some(3), "one waits for its redrive");
    let redriven = run_cli(&kafka, &["dlq", "redrive"], &[]).await?;
    assert!(redriven.contains("1 dead letters redriven"), "{redriven}");
    let gate = cli_output(&kafka, &["dlq", "list", "--fail-if-any", "--json"], &[]).await?;
    assert_eq!(gate.status.code(), Some(0), "redriven: none waits");
    let listed: serde_json::Value = serde_json::from_slice(&gate.stdout)?;
    assert_eq!(
        (&listed["total"], &listed["waiting"]),
        (&1.into(), &0.into())
    );
    eventually("user applied after redrive", WAIT, || async {
        (db.count("SELECT count(*) FROM users WHERE last_name = 'Moreau'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let again = run_cli(&kafka, &["dlq", "redrive"], &[]).await?;
    assert!(
        again.contains("0 dead letters redriven"),
        "a redrive is never applied twice: {again}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_while_the_broker_is_stopped_and_2xx_once_it_is_back_and_loses_nothing_acknowledged(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut kafka = TestKafka::private().await?;
    let ingest = Ingest::start(&kafka, &[("PUBLISH_DEADLINE_MS", "1500")]).await?;
    let client = reqwest::Client::new();
    let post = |id: &'static str, name: &'static str| {
        signed_post(
            &client,
            &ingest.webhook_url(),
            TEST_SECRET,
            id,
            &crate::harness::fixture(name),
        )
        .send()
    };
    assert_eq!(post("msg_1", "user.created.json").await?.status(), 200);

    // A real stop (SIGTERM, a controlled shutdown), its data kept on disk.
    kafka.broker().stop_node(1).await?;
    let down = post("msg_2", "organization.created.json").await?;
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    // Readiness comes from a background check every 5 s.
    let readyz = format!("{}/readyz", ingest.base);
    eventually(
        "not ready while the broker is unreachable",
        WAIT,
        || async {
            let r = client.get(&readyz).send().await.ok()?;
            (r.status() == 503).then_some(())
        },
    )
    .await;

    kafka.broker().start_node(1).await?;
    // Svix retries the same message until it is accepted.
    eventually("ingest accepts again", WAIT, || async {
        let r = post("msg_2", "organization.created.json").await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    wait_until_all_committed(&kafka).await?;
    assert_eq!(
        db.count("SELECT count(*) FROM users").await,
        1,
        "acknowledged before the outage"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM organizations").await,
        1,
        "acknowledged after it"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_in_flight_ingest_sheds_load_with_503_at_once() -> anyhow::Result<()> {
    let mut kafka = TestKafka::private().await?;
    let ingest = Ingest::start(
        &kafka,
        &[("PUBLISH_DEADLINE_MS", "4000"), ("MAX_IN_FLIGHT", "1")],
    )
    .await?;
    // With the broker frozen (SIGSTOP: connections open, nothing answered), the one request
    // allowed in flight waits for its deadline.
    kafka.broker().pause_node(1)?;
    let client = reqwest::Client::new();
    let body = crate::harness::fixture("user.created.json");
    let slow = signed_post(
        &client,
        &ingest.webhook_url(),
        TEST_SECRET,
        "msg_slow",
        &body,
    )
    .send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shed = signed_post(
        &client,
        &ingest.webhook_url(),
        TEST_SECRET,
        "msg_shed",
        &body,
    )
    .send()
    .await?;
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    let error: serde_json::Value = shed.json().await?;
    assert_eq!(error["error"], "overloaded");
    assert!(
        !slow.is_finished(),
        "the shed request was answered while the first was still in flight"
    );
    let first = slow.await??;
    assert_eq!(first.status(), 503);
    kafka.broker().resume_node(1)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_finishes_in_flight_requests_on_sigterm_then_exits_cleanly() -> anyhow::Result<()> {
    let mut kafka = TestKafka::private().await?;
    let ingest = Ingest::start(&kafka, &[("PUBLISH_DEADLINE_MS", "8000")]).await?;
    // Frozen: the request stays in flight until the broker answers.
    kafka.broker().pause_node(1)?;
    let client = reqwest::Client::new();
    let body = crate::harness::fixture("user.created.json");
    let in_flight = tokio::spawn(
        signed_post(
            &client,
            &ingest.webhook_url(),
            TEST_SECRET,
            "msg_inflight",
            &body,
        )
        .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = ingest.webhook_url();
    let terminated = tokio::spawn(ingest.terminate());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Shutting down: no new requests are taken.
    assert!(
        reqwest::Client::new().post(&url).send().await.is_err(),
        "stopped accepting"
    );
    kafka.broker().resume_node(1)?;
    let answer = in_flight.await??;
    assert_eq!(
        answer.status(),
        200,
        "the in-flight request was finished and acknowledged"
    );
    let status = terminated.await??;
    assert!(status.success(), "exit 0 after draining: {status}");
    assert_eq!(kafka.total_records()?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_dead_letter_topic_is_missing_waits_not_ready_saying_so_and_starts_once_it_exists(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let missing = format!("{}-missing", kafka.dlq);
    let worker = WorkerProcess::start_with(&db, &kafka, &[("TOPIC_DLQ", missing.as_str())]).await?;
    let client = reqwest::Client::new();
    let readyz = format!("{}/readyz", worker.base);
    let reason = eventually("not ready, naming the dead-letter topic", WAIT, || async {
        let r = client.get(&readyz).send().await.ok()?;
        let body: serde_json::Value = r.json().await.ok()?;
        let reason = body["reason"].as_str()?.to_owned();
        reason.contains("dead-letter topic").then_some(reason)
    })
    .await;
    assert!(
        reason.contains(&missing) && reason.contains("clerk-sync topics create"),
        "{reason}"
    );
    clerk_sync_kafka::topics::ensure_topics(&kafka.brokers, &[], &[missing], 1, 1).await?;
    eventually("ready once the topic exists", WAIT, || async {
        let r = client.get(&readyz).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    Ok(())
}
