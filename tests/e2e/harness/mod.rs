//! Test harness: a real Postgres and a real Apache Kafka, one database and one set of
//! topics and consumer group per test, and the real `clerk-sync` binary as child processes.
//!
//! `DATABASE_URL` / `KAFKA_BROKERS` point the tests at running servers (scripts/test starts
//! them once for the whole run); without them each test starts its own throwaway ones.

pub mod db;
pub mod kafka;
pub mod otlp;
pub mod process;
pub mod records;
pub mod signing;
pub mod sim;
pub mod stream;
pub mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

pub use db::TestDb;
pub use kafka::TestKafka;
pub use process::{
    clerk_sync, clerk_sync_expecting_exit, cli_output, post_all, post_fixture, run_cli, spawn_cli,
    Ingest, WorkerProcess, STDERR_FILE,
};
pub use signing::{fixture, signed_post, svix_signature, trust, TEST_RECORD_KEY, TEST_SECRET};

/// A file of the repository, by its path from the root.
pub fn repo_file(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Polls `check` until it returns `Some`, or fails after `timeout`. A bounded wait, not a
/// timing assertion.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A unique, short suffix for names of databases, topics and groups.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
