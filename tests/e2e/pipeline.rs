//! Ingest → broker → worker → Postgres, through the real binary.

use std::time::{Duration, Instant};

use clerk_sync_local::free_port;
use serde_json::Value;

use crate::harness::{
    eventually, fixture, post_fixture, signed_post, sim, Ingest, TestDb, TestKafka, WorkerProcess,
    TEST_SECRET,
};

pub const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn signed_user_org_and_membership_events_become_rows() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;

    for (i, name) in [
        "user.created.json",
        "organization.created.json",
        "organizationMembership.created.json",
    ]
    .iter()
    .enumerate()
    {
        let response = post_fixture(&ingest, &format!("msg_e2e{i}"), name).await?;
        assert_eq!(response.status(), 200, "{name}");
        let body: Value = response.json().await?;
        assert_eq!(body["status"], "accepted");
    }

    eventually("membership row", WAIT, || async {
        (db.count("SELECT count(*) FROM org_memberships").await == 1).then_some(())
    })
    .await;
    let (email, name, external_id): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT email, name, external_id FROM users WHERE clerk_id = 'user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a'")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!(email.as_deref(), Some("alice.moreau@example.com"));
    assert_eq!(name.as_deref(), Some("Alice Moreau"));
    assert_eq!(external_id.as_deref(), Some("acct_00042"));
    let (org_name, role): (String, String) = sqlx::query_as(
        "SELECT o.name, m.role FROM org_memberships m JOIN organizations o ON o.clerk_id = m.org_id",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(
        (org_name.as_str(), role.as_str()),
        ("Acme Robotics", "org:admin")
    );
    Ok(())
}

#[tokio::test]
async fn a_bad_signature_gets_401_and_nothing_is_published() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let client = reqwest::Client::new();
    let wrong_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    let response = signed_post(
        &client,
        &ingest.webhook_url(),
        wrong_secret,
        "msg_bad",
        &fixture("user.created.json"),
    )
    .send()
    .await?;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "invalid_signature");
    assert!(body["message"].is_string());

    let unsigned = client
        .post(ingest.webhook_url())
        .body(fixture("user.created.json"))
        .send()
        .await?;
    assert_eq!(unsigned.status(), 401);
    assert_eq!(kafka.total_records()?, 0);
    Ok(())
}

#[tokio::test]
async fn a_verified_body_that_is_not_a_clerk_event_gets_400() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let client = reqwest::Client::new();
    let response = signed_post(
        &client,
        &ingest.webhook_url(),
        TEST_SECRET,
        "msg_x",
        br#"{"hello":"world"}"#,
    )
    .send()
    .await?;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "bad_payload");
    assert_eq!(kafka.total_records()?, 0);
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[("WEBHOOK_BODY_LIMIT", "1024")]).await?;
    let response = post_fixture(&ingest, "msg_big", "user.created.json").await?;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(kafka.total_records()?, 0);
    Ok(())
}

#[tokio::test]
async fn event_types_the_sync_ignores_are_acknowledged_and_not_published() -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let response = post_fixture(&ingest, "msg_s", "session.created.json").await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["status"], "ignored_type");
    assert_eq!(kafka.total_records()?, 0);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_broker_gets_503_with_retry_after_within_the_deadline() -> anyhow::Result<()>
{
    let kafka = TestKafka::new().await?;
    // Nothing listens on this port: the broker is down.
    let dead = format!("127.0.0.1:{}", free_port()?);
    let ingest =
        Ingest::start_with_brokers(&kafka, &dead, &[("PUBLISH_DEADLINE_MS", "1500")]).await?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = post_fixture(&ingest, "msg_down", "user.created.json").await?;
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // Functional bound, not a benchmark: Svix abandons a request after 15 s.
    assert!(
        waited < Duration::from_secs(15),
        "answered after {waited:?}"
    );
    let ready = client.get(format!("{}/readyz", ingest.base)).send().await?;
    assert_eq!(ready.status(), 503);
    Ok(())
}

#[tokio::test]
async fn a_restarted_worker_resumes_from_its_committed_offsets() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let client = reqwest::Client::new();

    let worker = WorkerProcess::start(&db, &kafka).await?;
    let post = |id: &'static str, name: &'static str| {
        signed_post(
            &client,
            &ingest.webhook_url(),
            TEST_SECRET,
            id,
            &fixture(name),
        )
        .send()
    };
    assert_eq!(post("msg_r1", "user.created.json").await?.status(), 200);
    eventually("user row", WAIT, || async {
        (db.count("SELECT count(*) FROM users").await == 1).then_some(())
    })
    .await;
    let status = worker.stop().await?;
    assert!(status.success(), "graceful stop exits 0, got {status}");

    let committed = kafka.committed()?;
    assert_eq!(
        committed.iter().map(|(_, _, o)| o).sum::<i64>(),
        1,
        "one record committed: {committed:?}"
    );
    let first_sync: String = sqlx::query_scalar("SELECT synced_at::text FROM users")
        .fetch_one(&db.pool)
        .await?;

    // While no worker runs, more events arrive.
    assert_eq!(
        post("msg_r2", "organization.created.json").await?.status(),
        200
    );
    assert_eq!(post("msg_r3", "user.updated.json").await?.status(), 200);

    let _worker = WorkerProcess::start(&db, &kafka).await?;
    eventually("updated user and org", WAIT, || async {
        let updated = db
            .count("SELECT count(*) FROM users WHERE sync_event_id = 'msg_r3'")
            .await
            == 1;
        let org = db.count("SELECT count(*) FROM organizations").await == 1;
        (updated && org).then_some(())
    })
    .await;
    let resynced: String = sqlx::query_scalar("SELECT synced_at::text FROM users")
        .fetch_one(&db.pool)
        .await?;
    assert_ne!(first_sync, resynced, "the update was applied");
    eventually("all three records committed", WAIT, || async {
        let total: i64 = kafka.committed().ok()?.iter().map(|(_, _, o)| o).sum();
        (total == 3).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn a_shuffled_and_duplicated_history_through_ingest_broker_and_worker_ends_in_clerks_state(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;

    let (history, delivery) = sim::history_and_delivery(40)?;
    assert!(
        delivery.len() > history.len(),
        "the delivery repeats events"
    );
    crate::harness::post_all(&ingest, &delivery).await?;

    wait_until_all_committed(&kafka).await?;
    sim::assert_tables_equal(&db, &sim::expected(&history)?).await
}

/// Waits until the group has committed every record on the synced topics.
pub async fn wait_until_all_committed(kafka: &TestKafka) -> anyhow::Result<()> {
    let published = kafka.total_records()?;
    eventually(
        "every published record applied and committed",
        WAIT,
        || async {
            let committed: i64 = kafka.committed().ok()?.iter().map(|(_, _, o)| o).sum();
            (committed == published).then_some(())
        },
    )
    .await;
    Ok(())
}
