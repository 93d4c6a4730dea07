//! Throwaway infrastructure for `clerk-sync dev` and the tests: a Postgres cluster made with the
//! machine's server binaries, and a tansu broker. Both stop when dropped.

mod port;
mod postgres;
mod tansu;

pub use port::free_port;
pub use postgres::TempPostgres;
pub use tansu::TansuBroker;
