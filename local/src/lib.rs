//! Throwaway infrastructure for `clerk-sync dev`, `clerk-sync local` (which the scripts call) and
//! the tests: a Postgres cluster made with the machine's server binaries, and Apache Kafka run
//! from its jars. Both stop, and their data is removed, when dropped.

mod error;
pub mod kafka;
mod port;
mod postgres;

pub use error::{Error, Result};
pub use kafka::{KafkaSettings, LocalKafka};
pub use port::free_port;
pub use postgres::TempPostgres;
