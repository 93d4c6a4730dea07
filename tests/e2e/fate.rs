//! A batch's fate with fakes where Kafka would be (`clerk_sync_worker::fate`): a real database,
//! a fake dead-letter sink and a fake offset store, so that the order of what is written and
//! stored can be seen.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clerk_sync_worker::dead_letter::Failure;
use clerk_sync_worker::fate::{settle, BoxFuture, DeadLetterSink, OffsetStore};
use clerk_sync_worker::{Error, Health};
use rdkafka::error::KafkaError;
use rdkafka::message::{OwnedMessage, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::harness::TestDb;

const T: i64 = 1_754_560_800_000;

/// What happened, in order: `dead-letter <offset> <kind>` and `offsets <map>`.
type Log = Arc<Mutex<Vec<String>>>;

struct Sink {
    log: Log,
    /// Every write fails (a broker that does not take it) while set.
    failing: AtomicBool,
}

impl DeadLetterSink for Sink {
    fn send<'a>(
        &'a self,
        message: &'a OwnedMessage,
        failure: &'a Failure,
    ) -> BoxFuture<'a, clerk_sync_worker::Result<()>> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                return Err(Error::Kafka(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut,
                )));
            }
            use rdkafka::Message;
            self.log.lock().expect("lock").push(format!(
                "dead-letter {} {}",
                message.offset(),
                failure.kind.as_str()
            ));
            Ok(())
        })
    }

    fn topic(&self) -> &str {
        "fake.dlq"
    }
}

struct Offsets(Log);

impl OffsetStore for Offsets {
    fn store(&self, next: &BTreeMap<(String, i32), i64>) -> clerk_sync_worker::Result<()> {
        self.0
            .lock()
            .expect("lock")
            .push(format!("offsets {next:?}"));
        Ok(())
    }
}

fn message(offset: i64, body: &str) -> OwnedMessage {
    let id = format!("msg_fate_{offset}");
    let headers = crate::harness::kafka::owned_headers(&crate::harness::kafka::signed_headers(
        &id,
        body.as_bytes(),
    ));
    OwnedMessage::new(
        Some(body.as_bytes().to_vec()),
        Some(b"user".to_vec()),
        "clerk.users".to_owned(),
        Timestamp::CreateTime(T),
        0,
        offset,
        Some(headers),
    )
}

fn user(id: &str, last_name: &str) -> String {
    json!({"type": "user.created", "object": "event", "timestamp": T, "data": {
        "id": id, "object": "user", "first_name": "A", "last_name": last_name,
        "created_at": T, "updated_at": T}})
    .to_string()
}

fn health(db: &TestDb) -> anyhow::Result<Health> {
    Ok(Health::new(db.pool.clone()))
}

#[tokio::test]
async fn what_can_never_be_applied_is_dead_lettered_before_the_batchs_offsets_are_stored(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    // An operator's constraint the record at offset 2 can never satisfy.
    sqlx::query(
        "ALTER TABLE users ADD CONSTRAINT no_moreau CHECK (last_name IS DISTINCT FROM 'Moreau')",
    )
    .execute(&db.pool)
    .await?;
    let log = Log::default();
    let sink = Sink {
        log: log.clone(),
        failing: AtomicBool::new(false),
    };
    let batch = [
        message(10, &user("user_a", "Ada")),
        message(11, "{not json"),
        message(12, &user("user_m", "Moreau")),
        message(13, &user("user_b", "Bea")),
    ];
    let report = settle(
        &batch,
        &crate::harness::trust(),
        &db.pool,
        &health(&db)?,
        &crate::harness::records::worker_metrics(),
        &sink,
        &Offsets(log.clone()),
        &CancellationToken::new(),
    )
    .await?;
    assert_eq!((report.applied, report.dead_lettered), (2, 2));
    assert_eq!(
        *log.lock().expect("lock"),
        [
            "dead-letter 11 not_an_envelope",
            "dead-letter 12 database_rejected",
            r#"offsets {("clerk.users", 0): 14}"#,
        ]
    );
    assert_eq!(db.count("SELECT count(*) FROM users").await, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_written_is_retried_and_no_offset_is_stored_meanwhile(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let log = Log::default();
    let sink = Arc::new(Sink {
        log: log.clone(),
        failing: AtomicBool::new(true),
    });
    let batch = vec![message(0, &user("user_a", "Ada")), message(1, "{not json")];
    let health = health(&db)?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (pool, sink, log, health, cancel) = (
            db.pool.clone(),
            sink.clone(),
            log.clone(),
            health.clone(),
            cancel.clone(),
        );
        async move {
            settle(
                &batch,
                &crate::harness::trust(),
                &pool,
                &health,
                &crate::harness::records::worker_metrics(),
                sink.as_ref(),
                &Offsets(log),
                &cancel,
            )
            .await
        }
    });
    // The broker refuses for a while: retried, nothing stored.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(log.lock().expect("lock").is_empty(), "nothing stored yet");
    assert!(!task.is_finished(), "still retrying the dead letter");
    sink.failing.store(false, Ordering::SeqCst);
    let report = tokio::time::timeout(Duration::from_secs(30), task).await???;
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(
        *log.lock().expect("lock"),
        [
            "dead-letter 1 not_an_envelope",
            r#"offsets {("clerk.users", 0): 2}"#
        ]
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_cut_off_by_shutdown_while_its_dead_letter_fails_stores_no_offset(
) -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let log = Log::default();
    let sink = Sink {
        log: log.clone(),
        failing: AtomicBool::new(true),
    };
    let cancel = CancellationToken::new();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let result = settle(
        &[message(5, "{not json")],
        &crate::harness::trust(),
        &db.pool,
        &health(&db)?,
        &crate::harness::records::worker_metrics(),
        &sink,
        &Offsets(log.clone()),
        &cancel,
    )
    .await;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(
        log.lock().expect("lock").is_empty(),
        "the batch will be read again"
    );
    Ok(())
}
