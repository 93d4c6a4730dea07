//! The queries of Clerk's reference architecture, against synced tables.

use crate::harness::TestDb;

#[tokio::test]
async fn placeholder_reference_queries_compile() -> anyhow::Result<()> {
    let _ = TestDb::new().await?;
    Ok(())
}
