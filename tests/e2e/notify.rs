//! `LISTEN clerk_sync`: every row a run changes is announced, and only once its batch has
//! committed, so an application can wait for a row (a user who just signed up) instead of
//! polling.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};

use crate::harness::{post_all, sim, Ingest, TestDb, TestKafka, WorkerProcess};
use crate::pipeline::wait_until_all_committed;

/// Whether the row a notification names is visible, in the state it announces, to a session
/// that is not the worker's.
async fn visible(conn: &mut PgConnection, table: &str, clerk_id: &str, op: &str) -> bool {
    let deleted: Option<bool> = sqlx::query_scalar(&format!(
        "SELECT deleted_at IS NOT NULL FROM {table} WHERE clerk_id = $1 ORDER BY deleted_at DESC NULLS FIRST LIMIT 1"
    ))
    .bind(clerk_id)
    .fetch_optional(conn)
    .await
    .unwrap_or(None);
    match op {
        "delete" => deleted == Some(true),
        _ => deleted.is_some(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_of_a_run_is_notified_once_committed_and_never_before() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let mut listener = PgListener::connect(&db.url).await?;
    listener.listen("clerk_sync").await?;
    let heard: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let early: Arc<Mutex<Vec<String>>> = Arc::default();
    let listening = {
        let (heard, early, url) = (heard.clone(), early.clone(), db.url.clone());
        tokio::spawn(async move {
            let mut reader = PgConnection::connect(&url).await.expect("reader");
            while let Ok(n) = listener.recv().await {
                let v: serde_json::Value = serde_json::from_str(n.payload()).expect("JSON payload");
                let (table, id, op) = (
                    v["table"].as_str().unwrap_or_default().to_owned(),
                    v["clerk_id"].as_str().unwrap_or_default().to_owned(),
                    v["op"].as_str().unwrap_or_default().to_owned(),
                );
                // The moment it is heard, the row must already be there.
                if !visible(&mut reader, &table, &id, &op).await {
                    early.lock().expect("lock").push(n.payload().to_owned());
                }
                heard.lock().expect("lock").insert((table, id));
            }
        })
    };
    let ingest = Ingest::start(&kafka, &[]).await?;
    let _worker = WorkerProcess::start(&db, &kafka).await?;
    let (history, delivery) = sim::history_and_delivery(60)?;
    post_all(&ingest, &delivery).await?;
    wait_until_all_committed(&kafka).await?;
    sim::assert_tables_equal(&db, &sim::expected(&history)?).await?;

    let mut rows: BTreeSet<(String, String)> = BTreeSet::new();
    for table in ["users", "organizations", "org_memberships"] {
        let ids: Vec<String> = sqlx::query_scalar(&format!("SELECT clerk_id FROM {table}"))
            .fetch_all(&db.pool)
            .await?;
        rows.extend(ids.into_iter().map(|id| (table.to_owned(), id)));
    }
    assert!(!rows.is_empty());
    crate::harness::eventually("every row heard of", crate::pipeline::WAIT, || async {
        let heard = heard.lock().expect("lock");
        rows.iter().all(|r| heard.contains(r)).then_some(())
    })
    .await;
    listening.abort();
    assert!(
        early.lock().expect("lock").is_empty(),
        "heard before the row was visible: {:?}",
        early.lock().expect("lock")
    );
    Ok(())
}
