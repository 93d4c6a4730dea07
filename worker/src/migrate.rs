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
