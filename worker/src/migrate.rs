use sqlx::migrate::Migrator;
use sqlx::{Connection, PgPool};

use crate::{Error, Result};

/// The table contract, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Brings the schema up to date; safe to run concurrently (sqlx takes an advisory lock).
///
/// On a connection of its own that waits for locks as long as it takes: another process may
/// hold the advisory lock for as long as its migrations run, and the pool's `lock_timeout` is
/// meant for batches. The connection is closed after, never handed back to the pool so changed.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SET lock_timeout = 0")
        .execute(&mut conn)
        .await?;
    let result = MIGRATOR.run(&mut conn).await.map_err(Error::Migrate);
    // Closing politely is best effort: the migrations' outcome is what counts.
    let _ = conn.close().await;
    result
}

/// What the database's schema lacks for this worker, or `None` when every migration the worker
/// embeds has been applied (a newer schema, from a newer release, is fine: migrations only add).
pub async fn schema_missing(pool: &PgPool) -> Result<Option<String>> {
    let needed: Vec<i64> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    let newest_needed = needed.iter().copied().max().unwrap_or(0);
    let tracked: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !tracked {
        return Ok(Some(format!(
            "the database is not migrated (this worker needs version {newest_needed}): run `clerk-sync migrate`"
        )));
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?;
    let missing: Vec<i64> = needed
        .into_iter()
        .filter(|v| !applied.contains(v))
        .collect();
    Ok((!missing.is_empty()).then(|| {
        format!(
            "the schema is at version {}, this worker needs {newest_needed} (missing {missing:?}): run `clerk-sync migrate`",
            applied.last().copied().unwrap_or(0)
        )
    }))
}

/// Waits until the schema is the one this worker was built for (another process runs the
/// migrations: a Kubernetes Job, `clerk-sync migrate`), not ready meanwhile, saying why once per
/// `log_every`. Consuming before would only meet missing tables: retried, but every batch costs.
pub async fn wait_for_schema(
    pool: &PgPool,
    health: &crate::Health,
    cancel: &tokio_util::sync::CancellationToken,
    log_every: std::time::Duration,
) -> Result<()> {
    let mut last_log: Option<std::time::Instant> = None;
    loop {
        let missing = match schema_missing(pool).await {
            Ok(None) => {
                if last_log.is_some() {
                    tracing::info!("the schema is current; starting");
                }
                health.set_waiting(None);
                return Ok(());
            }
            Ok(Some(missing)) => missing,
            Err(e) => format!(
                "cannot read the schema's version: {}",
                crate::error_chain(&e)
            ),
        };
        if last_log.is_none_or(|at| at.elapsed() >= log_every) {
            tracing::warn!(reason = %missing, "waiting for migrations; not ready");
            last_log = Some(std::time::Instant::now());
        }
        health.set_waiting(Some(format!("migrations: {missing}")));
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
