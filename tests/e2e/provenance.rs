//! Records are believed only when Clerk (through Svix) or clerk-sync's own key signed them:
//! whoever can reach a topic can write to it, and may never grant a role, erase a user or freeze
//! a row. Each test writes to the topics as such an attacker would.

use serde_json::{json, Value};

use crate::harness::kafka::{signed_headers, signed_headers_with};
use crate::harness::{run_cli, TestDb, TestKafka, WorkerProcess, TEST_SECRET};
use crate::pipeline::wait_until_all_committed;

const T: i64 = 1_754_560_800_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn membership_body(role: &str, updated_at: i64) -> Vec<u8> {
    json!({"type": "organizationMembership.updated", "object": "event", "timestamp": updated_at,
        "data": {"id": "orgmem_victim", "object": "organization_membership", "role": role,
            "permissions": [], "created_at": T, "updated_at": updated_at,
            "organization": {"id": "org_acme", "object": "organization", "name": "Acme",
                "slug": "acme", "created_at": T, "updated_at": T},
            "public_user_data": {"user_id": "user_victim", "identifier": "victim@example.com"}}})
    .to_string()
    .into_bytes()
}

fn user_body(id: &str, first_name: &str, updated_at: i64) -> Vec<u8> {
    json!({"type": "user.updated", "object": "event", "timestamp": updated_at, "data": {
        "id": id, "object": "user", "first_name": first_name,
        "created_at": T, "updated_at": updated_at}})
    .to_string()
    .into_bytes()
}

async fn role(db: &TestDb) -> anyhow::Result<String> {
    Ok(
        sqlx::query_scalar("SELECT role FROM org_memberships WHERE clerk_id = 'orgmem_victim'")
            .fetch_one(&db.pool)
            .await?,
    )
}

/// `dlq list --json`'s counts by error kind.
async fn dead_letter_kinds(kafka: &TestKafka) -> anyhow::Result<Vec<(String, u64)>> {
    let listed: Value =
        serde_json::from_str(&run_cli(kafka, &["dlq", "list", "--json"], &[]).await?)?;
    Ok(listed["by_kind"]
        .as_array()
        .map(|kinds| {
            kinds
                .iter()
                .map(|k| {
                    (
                        k["error_kind"].as_str().unwrap_or_default().to_owned(),
                        k["total"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn a_membership_written_straight_to_its_topic_unsigned_or_with_one_byte_changed_is_dead_lettered_as_unsigned_and_grants_nothing(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    let topic = kafka.topics.memberships.clone();
    kafka
        .produce(
            &topic,
            "org_acme",
            &membership_body("org:member", T),
            "msg_real",
        )
        .await?;

    // The attack as it was tried: a newer version making the member an admin, no signature.
    let forged = membership_body("org:admin", T + 1_000);
    kafka
        .produce_with_headers(
            &topic,
            "org_acme",
            &forged,
            &[("svix-id".to_owned(), "msg_forged".to_owned())],
        )
        .await?;
    // A real signature over a real body, one byte of which is then changed.
    let genuine = membership_body("org:member", T + 2_000);
    let headers = signed_headers("msg_tampered", &genuine);
    let mut tampered = genuine.clone();
    let at = tampered
        .windows(10)
        .position(|w| w == b"org:member")
        .expect("the role in the body")
        + 9;
    tampered[at] = b'x';
    kafka
        .produce_with_headers(&topic, "org_acme", &tampered, &headers)
        .await?;
    // Signed with a secret the worker was never given.
    let other = membership_body("org:admin", T + 3_000);
    kafka
        .produce_with_headers(
            &topic,
            "org_acme",
            &other,
            &signed_headers_with(
                "whsec_bm90LXRoZS1lbmRwb2ludHMtc2VjcmV0IQ==",
                "msg_other",
                &other,
            ),
        )
        .await?;

    wait_until_all_committed(&kafka).await?;
    assert_eq!(
        role(&db).await?,
        "org:member",
        "no forged record granted a role"
    );
    let updated: i64 = sqlx::query_scalar(
        "SELECT (extract(epoch FROM updated_at) * 1000)::bigint FROM org_memberships",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(updated, T, "the row is the signed one's, untouched since");
    assert_eq!(
        dead_letter_kinds(&kafka).await?,
        [("unsigned".to_owned(), 3)],
        "each forgery parked as unsigned"
    );
    Ok(())
}

#[tokio::test]
async fn a_signed_event_dated_far_in_the_future_is_refused_so_later_real_updates_still_apply(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    let users = kafka.topics.users.clone();
    let now = now_ms();
    // Year 9999: applied, every real update after it would be "older".
    let frozen = user_body("user_f", "Frozen", 253_402_300_799_000);
    kafka
        .produce(&users, "user_f", &frozen, "msg_future")
        .await?;
    kafka
        .produce(
            &users,
            "user_f",
            &user_body("user_f", "Real", now),
            "msg_now",
        )
        .await?;
    wait_until_all_committed(&kafka).await?;
    let name: String = sqlx::query_scalar("SELECT first_name FROM users WHERE clerk_id = 'user_f'")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(name, "Real");
    assert_eq!(
        dead_letter_kinds(&kafka).await?,
        [("future_version".to_owned(), 1)]
    );
    Ok(())
}

/// `replay --from-beginning` of the users topic into `db`, believing `secrets`; its summary.
async fn replay(kafka: &TestKafka, db: &TestDb, secrets: &str) -> anyhow::Result<Value> {
    let out = run_cli(
        kafka,
        &[
            "replay",
            "--from-beginning",
            "--into",
            &db.url,
            "--json",
            "--topics",
            &kafka.topics.users,
        ],
        &[("CLERK_WEBHOOK_SECRET", secrets)],
    )
    .await?;
    Ok(serde_json::from_str(&out)?)
}

#[tokio::test]
async fn a_replay_after_a_secret_rotation_applies_every_record_while_the_old_secret_is_kept_and_none_it_signed_without_it(
) -> anyhow::Result<()> {
    let kafka = TestKafka::new().await?;
    let users = kafka.topics.users.clone();
    const OLD: &str = "whsec_dGhlLWVuZHBvaW50cy1vbGQtc2VjcmV0IQ==";
    // Three records from before the rotation (the old secret), two after (the new one).
    for i in 0..5 {
        let id = format!("user_r{i}");
        let body = user_body(&id, "Rotated", T + i);
        let svix_id = format!("msg_rot_{i}");
        let secret = if i < 3 { OLD } else { TEST_SECRET };
        kafka
            .produce_with_headers(
                &users,
                &id,
                &body,
                &signed_headers_with(secret, &svix_id, &body),
            )
            .await?;
    }
    let kept = TestDb::new().await?;
    let summary = replay(&kafka, &kept, &format!("{TEST_SECRET} {OLD}")).await?;
    assert_eq!(
        (&summary["applied"], &summary["rejected"]),
        (&5.into(), &0.into()),
        "{summary}"
    );
    assert_eq!(kept.count("SELECT count(*) FROM users").await, 5);

    let dropped = TestDb::new().await?;
    let summary = replay(&kafka, &dropped, TEST_SECRET).await?;
    assert_eq!(
        (&summary["applied"], &summary["rejected"]),
        (&2.into(), &3.into()),
        "{summary}"
    );
    assert_eq!(dropped.count("SELECT count(*) FROM users").await, 2);
    Ok(())
}

#[tokio::test]
async fn a_redrive_refuses_a_dead_letter_naming_a_foreign_topic_and_an_unsigned_one_until_vouched_for(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    let users = kafka.topics.users.clone();
    // A topic redrive must never write to, though it exists and the tool could.
    let foreign = format!("{users}.elsewhere");
    clerk_sync_kafka::topics::ensure_topics(
        &kafka.brokers,
        &[],
        std::slice::from_ref(&foreign),
        crate::harness::kafka::PARTITIONS,
        1,
    )
    .await?;

    let unsigned = user_body("user_u", "Unsigned", T);
    kafka
        .produce_with_headers(
            &users,
            "user_u",
            &unsigned,
            &[("svix-id".into(), "msg_u".into())],
        )
        .await?;
    wait_until_all_committed(&kafka).await?;
    // A dead letter written straight to the dead-letter topic, signed, naming another topic.
    let planted = user_body("user_p", "Planted", T);
    let mut headers = signed_headers("msg_p", &planted);
    headers.push(("clerk-sync-original-topic".into(), foreign.clone()));
    headers.push(("clerk-sync-error-kind".into(), "database_rejected".into()));
    kafka
        .produce_with_headers(&kafka.dlq, "user_p", &planted, &headers)
        .await?;

    let out: Value =
        serde_json::from_str(&run_cli(&kafka, &["dlq", "redrive", "--json"], &[]).await?)?;
    assert_eq!(
        (&out["count"], &out["refused"]),
        (&0.into(), &2.into()),
        "{out}"
    );
    let mut refusals: Vec<&str> = out["dead_letters"]
        .as_array()
        .expect("letters")
        .iter()
        .filter_map(|l| l["refused"].as_str())
        .collect();
    refusals.sort_unstable();
    assert_eq!(refusals, ["foreign_topic", "unsigned"]);
    assert_eq!(
        kafka.record_count(&foreign)?,
        0,
        "nothing written to the named topic"
    );
    assert_eq!(kafka.record_count(&users)?, 1, "nothing re-published");

    // The operator checked the unsigned one and vouches for it: signed with the project's key.
    let letter = out["dead_letters"]
        .as_array()
        .expect("letters")
        .iter()
        .find(|l| l["refused"] == "unsigned")
        .expect("the unsigned letter");
    let only = format!("{}:{}", letter["partition"], letter["offset"]);
    run_cli(&kafka, &["dlq", "redrive", "--only", &only, "--vouch"], &[]).await?;
    wait_until_all_committed(&kafka).await?;
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE clerk_id = 'user_u'")
            .await,
        1,
        "applied once vouched for"
    );
    Ok(())
}
