//! The `clerk-sync` binary's library: command-line configuration, topic administration and the
//! throwaway local infrastructure (Postgres, tansu) used by `clerk-sync dev` and the tests.

pub mod backfill;
pub mod cli;
pub mod compare;
pub mod local;
pub mod logging;
pub mod topics;
