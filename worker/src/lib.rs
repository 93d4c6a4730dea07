//! The worker: consumes Clerk events from Kafka and applies them to Postgres.
//!
//! Offsets are stored only after the database transaction that applied their records has
//! committed, so a crash re-applies at most one batch; version-guarded upserts make that harmless.

pub mod apply;
mod config;
mod consumer;
mod decode;
mod error;
mod health;
mod migrate;

pub use config::WorkerConfig;
pub use consumer::{BatchReport, Worker};
pub use decode::{decode_record, Record};
pub use error::{Error, Result};
pub use health::{health_router, Health};
pub use migrate::{migrate, MIGRATOR};
