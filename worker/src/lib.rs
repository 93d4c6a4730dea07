//! The worker: consumes Clerk events from Kafka and applies them to Postgres.
//!
//! Offsets are stored only after the database transaction that applied their records has
//! committed (or after their dead letter is written), and librdkafka commits stored offsets
//! every second: a crash re-applies what was applied in the last second or so (several batches
//! under load), never skips anything; version-guarded upserts make re-applying harmless.

pub mod apply;
mod batch;
mod clock;
pub mod compare;
mod config;
mod consumer;
pub mod database;
pub mod dead_letter;
mod decode;
mod error;
pub mod fate;
mod health;
pub mod lag;
mod metrics;
mod migrate;
pub mod replay;
pub mod tables;
mod watermarks;

pub use batch::{apply_records, error_chain, BatchReport, Rejected};
pub use config::WorkerConfig;
pub use consumer::Worker;
pub use decode::{decode_record, Record, Trust};
pub use error::{Error, ErrorKind, Result};
pub use health::{health_router, Health};
pub use metrics::{EventOutcome, WorkerMetrics};
pub use migrate::{migrate, schema_missing, wait_for_schema, MIGRATOR};
