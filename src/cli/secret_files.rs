//! `<NAME>_FILE` variables: secrets mounted as files (Docker and Kubernetes secrets) instead of
//! environment values. A value read from a file is handed to the argument parser as the
//! setting's (hidden) default, never copied into the process environment, where child
//! processes and `/proc/<pid>/environ` would see it.

use std::ffi::OsStr;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches};

use super::Cli;

/// The settings that may come from a file.
pub const FILE_BACKED: &[&str] = &[
    "CLERK_WEBHOOK_SECRET",
    "RECORD_SIGNING_KEY",
    "DATABASE_URL",
    "REPLAY_INTO_DATABASE_URL",
    "COMPARE_WITH_DATABASE_URL",
    "PUSHGATEWAY_URL",
    "CLERK_SECRET_KEY",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_OPTIONS",
];

/// For each `<NAME>_FILE` that is set, the file's content (trailing newlines trimmed). Setting
/// both `<NAME>` and `<NAME>_FILE` is a mistake and fails.
pub fn read_secret_files() -> Result<Vec<(&'static str, String)>> {
    let mut found = Vec::new();
    for name in FILE_BACKED {
        let file_var = format!("{name}_FILE");
        let Some(path) = std::env::var_os(&file_var) else {
            continue;
        };
        if std::env::var_os(name).is_some() {
            bail!("{name} and {file_var} are both set: expected one of them");
        }
        let value = std::fs::read_to_string(&path)
            .with_context(|| format!("{file_var}: cannot read {}", path.to_string_lossy()))?;
        let value = value.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            bail!("{file_var}: {} is empty", path.to_string_lossy());
        }
        found.push((*name, value.to_owned()));
    }
    Ok(found)
}

/// Parses the command line and environment, with the settings read from `<NAME>_FILE` as the
/// defaults of the arguments that read `<NAME>` (hidden from `--help`). Exits on a usage error,
/// as `Cli::parse` does.
pub fn parse_with_secret_files() -> Result<Cli> {
    let mut command = Cli::command();
    for (name, value) in read_secret_files()? {
        // clap keeps defaults as `&'static str`: one small value per file, for the process's life.
        let value: &'static str = Box::leak(value.into_boxed_str());
        command = with_default(command, name, value);
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).map_err(|e| e.exit())
}

/// `command` and its subcommands, the arguments reading `env` defaulting to `value`.
fn with_default(command: clap::Command, env: &str, value: &'static str) -> clap::Command {
    command
        .mut_args(|arg| {
            if arg.get_env() != Some(OsStr::new(env)) {
                return arg;
            }
            let arg = arg.hide_default_value(true);
            match arg.get_value_delimiter() {
                Some(delimiter) => {
                    let values: Vec<&'static str> = value.split(delimiter).collect();
                    arg.default_values(values)
                }
                None => arg.default_value(value),
            }
        })
        .mut_subcommands(|sub| with_default(sub, env, value))
}
