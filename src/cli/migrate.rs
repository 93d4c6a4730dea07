use anyhow::{Context, Result};

use super::DatabaseArgs;

pub async fn run(args: DatabaseArgs) -> Result<()> {
    let pool = args.connect().await?;
    clerk_sync_worker::migrate(&pool)
        .await
        .context("applying migrations")?;
    tracing::info!("migrations applied");
    Ok(())
}
