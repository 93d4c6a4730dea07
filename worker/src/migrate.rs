use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::{Error, Result};

/// The table contract, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Brings the schema up to date; safe to run concurrently (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await.map_err(Error::Migrate)
}
