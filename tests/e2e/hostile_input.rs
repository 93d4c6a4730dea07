//! What a Clerk end user controls (`unsafe_metadata`, the names they type) never freezes their
//! row: the worker applies every such event, and every later one (apply path, no broker).

use clerk_sync_core::routing_agreement::{nested, user_event_with};
use clerk_sync_worker::{apply_records, Health};
use tokio_util::sync::CancellationToken;

use crate::harness::records::record;
use crate::harness::TestDb;

#[tokio::test]
async fn a_user_with_unsafe_metadata_nested_50000_deep_and_nul_and_lone_surrogates_in_their_name_is_applied_and_so_are_their_later_updates(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let health = Health::new(db.pool.clone());
    let hostile = nested(50_000, "alice@example.com", r#""\u0000""#);
    let first = user_event_with(&hostile, r"A\u0000da\ud800 \u202e\u001b[31m");
    // The same user renamed later, a millisecond on, the metadata as deep as before.
    let later = user_event_with(&hostile, "Grace")
        .replace(
            r#""updated_at":1754560800000"#,
            r#""updated_at":1754560800001"#,
        )
        .replace(
            r#""timestamp":1754560800000"#,
            r#""timestamp":1754560800001"#,
        );
    for (offset, body) in [(0, &first), (1, &later)] {
        let (report, poison) = apply_records(
            &db.pool,
            &[record(offset, body)],
            &health,
            &crate::harness::records::worker_metrics(),
            &CancellationToken::new(),
        )
        .await?;
        assert!(poison.is_empty(), "nothing dead-lettered: {poison:?}");
        assert_eq!(report.applied, 1);
        if offset == 0 {
            let (name, username): (String, String) =
                sqlx::query_as("SELECT first_name, username FROM users")
                    .fetch_one(&db.pool)
                    .await?;
            assert_eq!(
                name, "Ada\u{FFFD} \u{202E}\u{1b}[31m",
                "stored as typed but for NUL"
            );
            assert_eq!(username, name);
        }
    }
    let (name, role): (String, String) =
        sqlx::query_as("SELECT first_name, public_metadata->>'role' FROM users")
            .fetch_one(&db.pool)
            .await?;
    assert_eq!((name.as_str(), role.as_str()), ("Grace", "admin"));
    Ok(())
}

#[tokio::test]
async fn public_metadata_of_any_depth_postgres_takes_is_stored_and_deeper_dead_letters_only_its_record(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let health = Health::new(db.pool.clone());
    let with_metadata = |id: &str, metadata: &str| {
        user_event_with("{}", "Ada")
            .replace("user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a", id)
            .replace(
                r#""public_metadata":{"role":"admin"}"#,
                &format!(r#""public_metadata":{metadata}"#),
            )
    };
    // Beyond serde_json's 128 levels, within Postgres's (about 10,000 at its default stack).
    let deep = nested(5_000, "k", r#""v\u0000""#);
    // Past Postgres's own limit: no retry makes it fit.
    let too_deep = nested(60_000, "k", "1");
    let batch = [
        record(0, &with_metadata("user_deep", &deep)),
        record(1, &with_metadata("user_too_deep", &too_deep)),
        record(2, &with_metadata("user_plain", r#"{"role":"admin"}"#)),
    ];
    let (report, poison) = apply_records(
        &db.pool,
        &batch,
        &health,
        &crate::harness::records::worker_metrics(),
        &CancellationToken::new(),
    )
    .await?;
    assert_eq!(report.applied, 2);
    assert_eq!(poison.len(), 1);
    assert_eq!(batch[poison[0].index].offset, 1);
    assert_eq!(poison[0].failure.kind.as_str(), "database_rejected");
    let depth: i64 = sqlx::query_scalar(
        "SELECT (length(public_metadata::text) - length(replace(public_metadata::text, '[', '')))::int8 FROM users WHERE clerk_id = 'user_deep'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(depth, 2_500, "every level stored");
    let leaf_has_nul: bool = sqlx::query_scalar(
        "SELECT position('\\u0000' in public_metadata::text) > 0 FROM users WHERE clerk_id = 'user_deep'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert!(!leaf_has_nul);
    Ok(())
}
