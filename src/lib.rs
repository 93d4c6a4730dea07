//! The `clerk-sync` binary's library: the command line (flags and environment mapped to each
//! library crate's configuration) and logging. Everything a command does lives in a library.

pub mod cli;
pub mod logging;
