//! The database being wrong is never a record's fault: a schema not yet migrated, a read-only
//! database, privileges revoked, or a trigger refusing everything are retried until they are put
//! right, the worker saying why it is not ready meanwhile, and nothing is dead-lettered. Only a
//! value Postgres rejects (a data or constraint error no race explains) is.

use std::time::Duration;

use clerk_sync_worker::{apply_records, BatchReport, Health, Record, Rejected};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::harness::records::user_record;
use crate::harness::{eventually, TestDb};

/// Long enough for the retries' backoff (jittered, growing) to come round after a fix.
const SETTLED: Duration = Duration::from_secs(60);

fn records(n: i64) -> Vec<Record> {
    (0..n).map(|i| user_record(i, "Ada", "Lovelace")).collect()
}

fn health(pool: &PgPool) -> anyhow::Result<Health> {
    Ok(Health::new(pool.clone()))
}

type Applied = clerk_sync_worker::Result<(BatchReport, Vec<Rejected>)>;

/// Applies `records` in the background, as the worker's batch step does.
fn apply_in_background(
    pool: &PgPool,
    records: Vec<Record>,
    health: &Health,
) -> tokio::task::JoinHandle<Applied> {
    let (pool, health) = (pool.clone(), health.clone());
    tokio::spawn(async move {
        apply_records(
            &pool,
            &records,
            &health,
            &crate::harness::records::worker_metrics(),
            &CancellationToken::new(),
        )
        .await
    })
}

/// Waits until the worker, retrying, gives a reason for not being ready that contains `what`.
async fn until_not_ready_because(health: &Health, what: &str) -> String {
    eventually(&format!("not ready because of {what}"), SETTLED, || async {
        health.not_ready_reason().filter(|r| r.contains(what))
    })
    .await
}

/// Cuts every other session of the database, as a failover does.
async fn terminate_sessions(admin: &mut sqlx::PgConnection, db: &TestDb) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(db.name())
        .execute(admin)
        .await?;
    Ok(())
}

async fn assert_all_applied(
    task: tokio::task::JoinHandle<Applied>,
    db: &TestDb,
    n: i64,
) -> anyhow::Result<()> {
    let (report, poison) = tokio::time::timeout(SETTLED, task).await???;
    assert!(poison.is_empty(), "nothing dead-lettered: {poison:?}");
    assert_eq!(report.applied as i64, n);
    assert_eq!(db.count("SELECT count(*) FROM users").await, n);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_not_yet_migrated_dead_letters_nothing_and_everything_applies_once_it_is(
) -> anyhow::Result<()> {
    let db = TestDb::unmigrated().await?;
    let health = health(&db.pool)?;
    let task = apply_in_background(&db.pool, records(20), &health);
    let reason = until_not_ready_because(&health, "42P01").await;
    assert!(reason.starts_with("database_environment"), "{reason}");
    clerk_sync_worker::migrate(&db.pool).await?;
    assert_all_applied(task, &db, 20).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_made_read_only_mid_stream_dead_letters_nothing_and_everything_applies_once_writable(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut admin = db.admin().await?;
    // A failover's read-only window: new sessions are read-only, old ones are cut.
    sqlx::query(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        db.name()
    ))
    .execute(&mut admin)
    .await?;
    terminate_sessions(&mut admin, &db).await?;
    let health = health(&db.pool)?;
    let task = apply_in_background(&db.pool, records(20), &health);
    until_not_ready_because(&health, "25006").await;
    sqlx::query(&format!(
        "ALTER DATABASE {} RESET default_transaction_read_only",
        db.name()
    ))
    .execute(&mut admin)
    .await?;
    terminate_sessions(&mut admin, &db).await?;
    assert_all_applied(task, &db, 20).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileges_revoked_from_the_workers_role_dead_letter_nothing_and_everything_applies_once_granted(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let role = format!("{}_worker", db.name());
    let mut admin = db.admin().await?;
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        format!("REVOKE INSERT, UPDATE ON users FROM {role}"),
    ] {
        sqlx::query(&statement).execute(&mut admin).await?;
    }
    let options: PgConnectOptions = db.url.parse::<PgConnectOptions>()?.username(&role);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await?;
    let health = health(&pool)?;
    let task = apply_in_background(&pool, records(20), &health);
    until_not_ready_because(&health, "42501").await;
    sqlx::query(&format!("GRANT INSERT, UPDATE ON users TO {role}"))
        .execute(&mut admin)
        .await?;
    let applied = assert_all_applied(task, &db, 20).await;
    pool.close().await;
    sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&mut admin)
        .await?;
    applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_every_record_fails_alone_with_the_same_error_is_the_databases_fault_and_is_retried(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    // A trigger refusing every write with a constraint error, as an application's might.
    sqlx::query(
        "CREATE FUNCTION refuse_all() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'users are frozen for maintenance' USING ERRCODE = 'check_violation'; END $$",
    )
    .execute(&db.pool)
    .await?;
    sqlx::query("CREATE TRIGGER refuse_all BEFORE INSERT OR UPDATE ON users FOR EACH ROW EXECUTE FUNCTION refuse_all()")
        .execute(&db.pool)
        .await?;
    let health = health(&db.pool)?;
    let task = apply_in_background(&db.pool, records(8), &health);
    let reason = until_not_ready_because(&health, "each of the 8 records").await;
    assert!(
        reason.contains("23514"),
        "the shared cause is named: {reason}"
    );
    sqlx::query("DROP TRIGGER refuse_all ON users")
        .execute(&db.pool)
        .await?;
    assert_all_applied(task, &db, 8).await
}

#[tokio::test]
async fn a_value_postgres_rejects_with_a_data_error_dead_letters_exactly_that_record_and_applies_the_rest(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    // An operator narrowed a column: one record's name no longer fits (22001, a data error).
    sqlx::query("ALTER TABLE users ALTER COLUMN first_name TYPE varchar(12)")
        .execute(&db.pool)
        .await?;
    let mut batch = records(30);
    batch[17] = user_record(17, "Bartholomew-Maximilian-Alexander", "Lovelace");
    let health = health(&db.pool)?;
    let (report, poison) = apply_records(
        &db.pool,
        &batch,
        &health,
        &crate::harness::records::worker_metrics(),
        &CancellationToken::new(),
    )
    .await?;
    assert_eq!(poison.len(), 1);
    assert_eq!(batch[poison[0].index].offset, 17);
    assert_eq!(poison[0].failure.kind.as_str(), "database_rejected");
    assert!(
        poison[0].failure.message.contains("22001"),
        "{}",
        poison[0].failure.message
    );
    assert_eq!(report.applied, 29);
    assert_eq!(db.count("SELECT count(*) FROM users").await, 29);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_before_the_migrations_waits_not_ready_and_applies_everything_once_they_run_with_no_dead_letter(
) -> anyhow::Result<()> {
    use crate::harness::{post_all, run_cli, sim, Ingest, TestKafka, WorkerProcess};

    let db = TestDb::unmigrated().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let (history, delivery) = sim::history_and_delivery(40)?;
    post_all(&ingest, &delivery).await?;
    // As the Kubernetes manifests run it: the migration Job may not have run yet.
    let worker = WorkerProcess::start_with(&db, &kafka, &[("SKIP_MIGRATIONS", "true")]).await?;
    let client = reqwest::Client::new();
    let readyz = format!("{}/readyz", worker.base);
    let answer = eventually("not ready, naming the migrations", SETTLED, || async {
        let r = client.get(&readyz).send().await.ok()?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.ok()?;
        let reason = body["reason"].as_str().unwrap_or_default().to_owned();
        (status == 503 && reason.contains("clerk-sync migrate")).then_some(body)
    })
    .await;
    assert_eq!(answer["migrations_pending"], true, "{answer}");

    run_cli(&kafka, &["migrate"], &[("DATABASE_URL", db.url.as_str())]).await?;
    crate::pipeline::wait_until_all_committed(&kafka).await?;
    sim::assert_tables_equal(&db, &sim::expected(&history)?).await?;
    assert_eq!(kafka.record_count(&kafka.dlq)?, 0, "nothing dead-lettered");
    eventually("ready once migrated", SETTLED, || async {
        let r = client.get(&readyz).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn several_deliveries_of_one_bad_event_are_the_records_fault_and_dead_lettered_not_retried(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    sqlx::query("ALTER TABLE users ALTER COLUMN first_name TYPE varchar(12)")
        .execute(&db.pool)
        .await?;
    // One event, redelivered (Svix's retries, a replay): same id, same body, same error.
    let body = serde_json::json!({"type": "user.created", "object": "event", "timestamp": 1_754_560_800_000_i64,
        "data": {"id": "user_0007", "object": "user", "first_name": "Bartholomew-Maximilian-Alexander",
                 "last_name": "Lovelace", "created_at": 1_754_560_800_000_i64, "updated_at": 1_754_560_800_000_i64}})
    .to_string();
    let batch: Vec<_> = (0..3)
        .map(|offset| {
            let mut r = crate::harness::records::record(offset, &body);
            r.decoded = r.decoded.map(|(mut meta, event)| {
                meta.id = clerk_sync_core::EventId::parse("msg_same").expect("id");
                (meta, event)
            });
            r
        })
        .collect();
    let health = health(&db.pool)?;
    let (_, poison) = tokio::time::timeout(
        SETTLED,
        apply_records(
            &db.pool,
            &batch,
            &health,
            &crate::harness::records::worker_metrics(),
            &CancellationToken::new(),
        ),
    )
    .await??;
    assert_eq!(
        poison.len(),
        3,
        "each delivery dead-lettered, none retried forever"
    );
    assert!(poison
        .iter()
        .all(|p| p.failure.kind.as_str() == "database_rejected"));
    Ok(())
}
