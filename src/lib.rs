//! The `clerk-sync` binary's library: command-line configuration, topic administration and the
//! throwaway local infrastructure (Postgres, Apache Kafka) used by `clerk-sync dev`, `clerk-sync
//! local` and the tests.

pub mod backfill;
pub mod cli;
pub mod compare;
pub mod local;
pub mod logging;
pub mod topics;
