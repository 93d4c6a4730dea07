//! A row the application keeps locked holds a batch up only until `DATABASE_LOCK_TIMEOUT_MS`:
//! the batch is then given up, counted and logged as a retry, and applied once the lock goes.

use crate::harness::{
    eventually, post_fixture, Ingest, TestDb, TestKafka, WorkerProcess, STDERR_FILE,
};
use crate::observability::{scrape, sum_of};
use crate::pipeline::WAIT;

const USER: &str = "user_2nF8kQ3xLmZ7rT1vB9cW4yHsJ6a";

async fn post(ingest: &Ingest, id: &str, name: &str) -> anyhow::Result<()> {
    let response = post_fixture(ingest, id, name).await?;
    anyhow::ensure!(response.status() == 200, "{name}: {}", response.status());
    Ok(())
}

async fn first_name(db: &TestDb) -> Option<String> {
    sqlx::query_scalar("SELECT first_name FROM users WHERE clerk_id = $1")
        .bind(USER)
        .fetch_optional(&db.pool)
        .await
        .ok()
        .flatten()
        .flatten()
}

#[tokio::test]
async fn a_row_the_application_keeps_locked_holds_its_batch_up_only_until_the_lock_timeout_then_it_is_retried_and_applied(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let log = tempfile::NamedTempFile::new()?;
    let worker = WorkerProcess::start_with(
        &db,
        &kafka,
        &[
            ("DATABASE_LOCK_TIMEOUT_MS", "300"),
            (STDERR_FILE, log.path().to_str().expect("path")),
        ],
    )
    .await?;
    post(&ingest, "msg_created", "user.created.json").await?;
    eventually("the user", WAIT, || async {
        (first_name(&db).await.as_deref() == Some("Alice")).then_some(())
    })
    .await;

    // The application's transaction locks the row and stays open.
    let mut app = db.pool.begin().await?;
    sqlx::query("SELECT 1 FROM users WHERE clerk_id = $1 FOR UPDATE")
        .bind(USER)
        .execute(&mut *app)
        .await?;
    post(&ingest, "msg_updated", "user.updated.json").await?;
    eventually("the batch given up and retried, twice", WAIT, || async {
        let retries = sum_of(
            &scrape(&worker.base).await,
            "clerk_sync_worker_retries_total{error_kind=\"database_conflict\"}",
        );
        (retries >= 2.0).then_some(())
    })
    .await;
    let logged = std::fs::read_to_string(log.path())?;
    assert!(
        logged.contains("lock timeout"),
        "the log names the lock timeout: {logged}"
    );
    assert_eq!(first_name(&db).await.as_deref(), Some("Alice"));

    app.rollback().await?;
    eventually("the update applied once the lock is gone", WAIT, || async {
        (first_name(&db).await.as_deref() == Some("Alicia")).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn migrations_wait_for_their_locks_longer_than_the_lock_timeout() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    // Something holds the migrations' own table (as another process migrating would) for
    // several lock timeouts; the worker's start-up waits for it rather than failing.
    let mut other = db.pool.begin().await?;
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *other)
        .await?;
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        other.rollback().await
    });
    let worker =
        WorkerProcess::start_with(&db, &kafka, &[("DATABASE_LOCK_TIMEOUT_MS", "300")]).await?;
    release.await??;
    let ready = reqwest::get(format!("{}/healthz", worker.base)).await?;
    assert_eq!(ready.status(), 200);
    Ok(())
}
