//! `<NAME>_FILE` variables: secrets mounted as files (Docker and Kubernetes secrets) instead of
//! environment values.

use anyhow::{bail, Context, Result};

/// The settings that may come from a file.
pub const FILE_BACKED: &[&str] = &[
    "CLERK_WEBHOOK_SECRET",
    "DATABASE_URL",
    "CLERK_SECRET_KEY",
    "KAFKA_SASL_PASSWORD",
];

/// For each `<NAME>_FILE` that is set, reads the file into `<NAME>`. Runs first thing in `main`,
/// before any thread starts. Setting both is a mistake and fails.
pub fn load_secret_files() -> Result<()> {
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
        std::env::set_var(name, value);
    }
    Ok(())
}
