//! Two batches that meet on rows neither has committed yet take them in one order, so they wait
//! for each other at most once and never deadlock. A trigger pauses one batch in the middle of
//! its users pass (on an advisory lock the test holds) while the other reaches the same rows.

use std::time::Duration;

use clerk_sync_core::{ClerkEvent, EventMeta};
use clerk_sync_worker::apply::{apply_all, apply_events, Intent};
use sqlx::{Connection, PgConnection};

use crate::harness::TestDb;
use crate::mirror_cases::{membership, org, org_deleted, user, user_deleted, T};

type Event = (EventMeta, ClerkEvent);

const PAUSE_KEY: i64 = 4242;

/// Pauses an insert of `user_b` in sessions that ask for it, until the test lets go.
const PAUSE: &str = r#"
CREATE FUNCTION pause_before_user_b() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.clerk_id = 'user_b' AND current_setting('clerk_sync_test.pause', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock_shared(4242);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pause_before_user_b BEFORE INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION pause_before_user_b();
"#;

/// Pauses a session that asks for it at its first membership update, holding that row.
const PAUSE_MEMBERSHIP_UPDATE: &str = r#"
CREATE FUNCTION pause_membership_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('clerk_sync_test.pause', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock_shared(4242);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pause_membership_update BEFORE UPDATE ON org_memberships
    FOR EACH ROW EXECUTE FUNCTION pause_membership_update();
"#;

async fn connect(db: &TestDb) -> anyhow::Result<(PgConnection, i32)> {
    let mut conn = PgConnection::connect(&db.url).await?;
    let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    Ok((conn, pid))
}

/// Waits until the backend `pid` waits on a lock of this kind (`advisory`, `transactionid`).
async fn until_waiting(db: &TestDb, pid: i32, kind: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        let waiting: Option<String> =
            sqlx::query_scalar("SELECT wait_event FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_optional(&db.pool)
                .await?
                .flatten();
        if waiting.as_deref() == Some(kind) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("backend {pid} never waited on {kind}")
}

/// Applies `paused` in a session whose trigger stops it (holding what it has locked so far),
/// then `other` until it waits for the first, then lets go: both must commit.
async fn meet(db: &TestDb, paused: Vec<Event>, other: Vec<Event>) -> anyhow::Result<()> {
    let (mut control, _) = connect(db).await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PAUSE_KEY)
        .execute(&mut control)
        .await?;
    let (mut first_conn, first_pid) = connect(db).await?;
    sqlx::raw_sql("SET clerk_sync_test.pause = 'on'")
        .execute(&mut first_conn)
        .await?;
    let first = tokio::spawn(async move {
        let mut tx = first_conn.begin().await?;
        apply_events(&mut tx, &paused, Intent::Commit).await?;
        tx.commit().await?;
        anyhow::Ok(())
    });
    until_waiting(db, first_pid, "advisory").await?;
    let (mut second_conn, second_pid) = connect(db).await?;
    let second = tokio::spawn(async move {
        let mut tx = second_conn.begin().await?;
        apply_events(&mut tx, &other, Intent::Commit).await?;
        tx.commit().await?;
        anyhow::Ok(())
    });
    until_waiting(db, second_pid, "transactionid").await?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PAUSE_KEY)
        .execute(&mut control)
        .await?;
    let finish = Duration::from_secs(30);
    tokio::time::timeout(finish, first).await???;
    tokio::time::timeout(finish, second).await???;
    Ok(())
}

/// One batch stubs user_a and user_b (memberships) and is paused before user_b's stub; the
/// other creates user_b and deletes user_a. The second must wait for user_a before it holds
/// user_b: had it taken user_b first, each batch would now wait for the other.
async fn stubs_and_a_deletion_meet(before: &[Event]) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    if !before.is_empty() {
        apply_all(&db.pool, before).await?;
    }
    sqlx::raw_sql(PAUSE).execute(&db.pool).await?;
    // One worker: memberships of both users. It writes their stubs in key order and stops
    // before user_b's. The other creates user_b and deletes user_a.
    let stub = |u: &str, at| {
        let id = format!("orgmem_{u}");
        membership(&id, "created", u, "org_1", "org:member", T, T, at)
    };
    let stubs = vec![stub("user_a", T + 5), stub("user_b", T + 6)];
    let writes = vec![
        user("user_b", "created", T + 10, "Bea"),
        user_deleted("user_a", T + 20),
    ];
    meet(&db, stubs, writes).await?;
    let users: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT clerk_id, first_name, deleted_at IS NOT NULL FROM users ORDER BY clerk_id",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(
        users,
        vec![
            ("user_a".to_owned(), None, true),
            ("user_b".to_owned(), Some("Bea".to_owned()), false),
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM org_memberships WHERE deleted_at IS NOT NULL")
            .await,
        1,
        "user_a's membership went with user_a"
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_deleting_a_new_user_and_another_stubbing_it_wait_for_each_other_without_deadlock(
) -> anyhow::Result<()> {
    stubs_and_a_deletion_meet(&[]).await
}

#[tokio::test]
async fn a_batch_redelivering_a_deletion_and_another_stubbing_the_same_user_never_deadlock(
) -> anyhow::Result<()> {
    // user_a is known only by an earlier deletion: the stub overwrites its placeholder.
    stubs_and_a_deletion_meet(&[user_deleted("user_a", T + 1)]).await
}

#[tokio::test]
async fn a_batch_deleting_two_members_and_another_deleting_their_organization_never_deadlock(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    apply_all(
        &db.pool,
        &[
            user("user_1", "created", T, "Ada"),
            user("user_2", "created", T, "Bo"),
            org("org_1", "created", T, "Acme"),
        ],
    )
    .await?;
    // user_2's membership first: the table's own order is not the users'.
    for (id, member, at) in [("orgmem_2", "user_2", T + 1), ("orgmem_1", "user_1", T + 2)] {
        let joins = membership(id, "created", member, "org_1", "org:member", T, T, at);
        apply_all(&db.pool, &[joins]).await?;
    }
    sqlx::raw_sql(PAUSE_MEMBERSHIP_UPDATE)
        .execute(&db.pool)
        .await?;
    // One worker deletes the organization and stops at the first membership it ends; the
    // other deletes both users, ending their memberships too.
    meet(
        &db,
        vec![org_deleted("org_1", T + 100)],
        vec![
            user_deleted("user_1", T + 90),
            user_deleted("user_2", T + 90),
        ],
    )
    .await?;
    assert_eq!(
        db.count("SELECT count(*) FROM org_memberships WHERE deleted_at IS NOT NULL")
            .await,
        2
    );
    Ok(())
}
