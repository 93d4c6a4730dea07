//! A large batch with a few records the database rejects for good (apply path, no broker).

use clerk_sync_worker::{apply_records, Health, Record};
use tokio_util::sync::CancellationToken;

use crate::harness::records::user_record;
use crate::harness::TestDb;

#[tokio::test]
async fn a_batch_the_database_rejects_sets_aside_only_the_records_it_rejects_and_applies_the_rest(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    // An operator's constraint that three records of the batch can never satisfy.
    sqlx::query(
        "ALTER TABLE users ADD CONSTRAINT no_moreau CHECK (last_name IS DISTINCT FROM 'Moreau')",
    )
    .execute(&db.pool)
    .await?;
    let bad = [3_i64, 150, 151];
    let records: Vec<Record> = (0..200)
        .map(|i| {
            user_record(
                i,
                "Ada",
                if bad.contains(&i) {
                    "Moreau"
                } else {
                    "Lovelace"
                },
            )
        })
        .collect();
    let health = Health::new(db.pool.clone());

    // Every transaction that writes takes a transaction id: the difference counts them.
    let xid = || async {
        sqlx::query_scalar::<_, i64>("SELECT txid_current()")
            .fetch_one(&db.pool)
            .await
    };
    let before = xid().await?;
    let (report, poison) = apply_records(
        &db.pool,
        &records,
        &health,
        &crate::harness::records::worker_metrics(),
        &CancellationToken::new(),
    )
    .await?;
    let transactions = xid().await? - before - 1;

    let set_aside: Vec<i64> = poison.iter().map(|p| records[p.index].offset).collect();
    assert_eq!(set_aside, bad, "exactly the rejected records, in order");
    assert!(poison
        .iter()
        .all(|p| p.failure.kind.as_str() == "database_rejected" && p.failure.attempts == 2));
    assert!(
        transactions <= 60,
        "halves, not one transaction per record: {transactions} transactions for 200 records"
    );
    assert_eq!(report.applied, 197);
    assert_eq!(report.dead_lettered, 3);
    assert_eq!(
        db.count("SELECT count(*) FROM users WHERE last_name = 'Lovelace'")
            .await,
        197
    );
    Ok(())
}
