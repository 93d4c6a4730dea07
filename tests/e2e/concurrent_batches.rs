//! Two batches written at the same time, as two workers (or a worker and a replay) do: each
//! case holds one batch's transaction open while the other is written from another connection.

use std::time::Duration;

use clerk_sync_core::{ClerkEvent, EventMeta};
use clerk_sync_worker::apply::{apply_all, apply_events, Intent};

use crate::harness::TestDb;
use crate::mirror_cases::{membership, org, org_deleted, user, user_deleted, T};

type Event = (EventMeta, ClerkEvent);

/// A user and an organization that exist (full rows): a membership's stubs of them change
/// nothing, as in a running system.
async fn known_user_and_org() -> anyhow::Result<TestDb> {
    let db = TestDb::new().await?;
    apply_all(
        &db.pool,
        &[
            user("user_1", "created", T + 1, "Ada"),
            org("org_1", "created", T + 1, "Acme"),
        ],
    )
    .await?;
    Ok(db)
}

fn joins() -> Event {
    membership(
        "orgmem_1",
        "created",
        "user_1",
        "org_1",
        "org:member",
        T + 50,
        T + 50,
        T + 50,
    )
}

/// Writes `first` in a transaction left open while `second` is written from another
/// connection, then commits `first` and waits for `second`.
async fn race(db: &TestDb, first: Event, second: Event) -> anyhow::Result<()> {
    let mut tx = db.pool.begin().await?;
    apply_events(&mut tx, &[first], Intent::Commit).await?;
    let pool = db.pool.clone();
    let other = tokio::spawn(async move {
        // As the worker does: a conflict with the open transaction is retried after a pause.
        loop {
            match apply_all(&pool, std::slice::from_ref(&second)).await {
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(50)).await,
                done => return done,
            }
        }
    });
    // Time for the other batch to reach the rows this one holds: it waits there or retries
    // (or, were the rows not locked, runs to its end on what it can see).
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await?;
    other.await??;
    Ok(())
}

async fn membership_is_deleted(db: &TestDb) -> bool {
    db.count("SELECT count(*) FROM org_memberships WHERE deleted_at IS NOT NULL")
        .await
        == 1
}

#[tokio::test]
async fn a_member_joining_while_another_worker_deletes_the_user_ends_deleted() -> anyhow::Result<()>
{
    let db = known_user_and_org().await?;
    race(&db, user_deleted("user_1", T + 100), joins()).await?;
    assert!(
        membership_is_deleted(&db).await,
        "the member of a deleted user is deleted"
    );
    Ok(())
}

#[tokio::test]
async fn a_user_deleted_while_another_worker_writes_their_membership_takes_the_membership_along(
) -> anyhow::Result<()> {
    let db = known_user_and_org().await?;
    race(&db, joins(), user_deleted("user_1", T + 100)).await?;
    assert!(
        membership_is_deleted(&db).await,
        "the member of a deleted user is deleted"
    );
    Ok(())
}

#[tokio::test]
async fn a_member_joining_while_another_worker_deletes_the_organization_ends_deleted(
) -> anyhow::Result<()> {
    let db = known_user_and_org().await?;
    race(&db, org_deleted("org_1", T + 100), joins()).await?;
    assert!(
        membership_is_deleted(&db).await,
        "the member of a deleted organization is deleted"
    );
    Ok(())
}

#[tokio::test]
async fn an_organization_deleted_while_another_worker_writes_a_membership_takes_it_along(
) -> anyhow::Result<()> {
    let db = known_user_and_org().await?;
    race(&db, joins(), org_deleted("org_1", T + 100)).await?;
    assert!(
        membership_is_deleted(&db).await,
        "the member of a deleted organization is deleted"
    );
    Ok(())
}

#[tokio::test]
async fn a_dry_run_replaying_a_membership_neither_holds_up_nor_fails_on_a_live_deletion_of_its_organization(
) -> anyhow::Result<()> {
    let db = known_user_and_org().await?;
    // The live worker's deletion is open first: the dry run's read of the organization must not
    // fail on it (a committing batch would, and be retried).
    let mut live = db.pool.begin().await?;
    apply_events(&mut live, &[org_deleted("org_1", T + 100)], Intent::Commit).await?;
    let mut dry = db.pool.begin().await?;
    apply_events(&mut dry, &[joins()], Intent::DryRun).await?;
    live.commit().await?;
    // And a deletion while the dry run is open does not wait for it; were the dry run holding
    // the organization, this would wait until the rollback below, which never comes first.
    let deleted = tokio::time::timeout(
        Duration::from_secs(30),
        apply_all(&db.pool, &[org_deleted("org_1", T + 90)]),
    )
    .await;
    dry.rollback().await?;
    deleted.map_err(|_| anyhow::anyhow!("the live deletion waited for the dry run"))??;
    Ok(())
}
