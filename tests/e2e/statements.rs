//! Every statement the worker applies events with is prepared by Postgres against the migrated
//! schema: a column renamed in a migration, or a statement edited wrong, fails here by name.

use sqlx::Executor;

use crate::harness::TestDb;

#[tokio::test]
async fn every_statement_of_the_worker_prepares_against_the_migrated_schema() -> anyhow::Result<()>
{
    let db = TestDb::new().await?;
    let mut conn = db.pool.acquire().await?;
    let mut failures = Vec::new();
    for (name, statement) in clerk_sync_worker::apply::sql::ALL {
        if let Err(e) = conn.prepare(statement).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    Ok(())
}

#[tokio::test]
async fn a_statement_naming_a_column_the_schema_lacks_fails_to_prepare() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut conn = db.pool.acquire().await?;
    let broken = clerk_sync_worker::apply::sql::UPSERT_USERS.replace("external_id", "external_ref");
    assert!(conn.prepare(broken.as_str()).await.is_err());
    Ok(())
}
