use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

/// `clerk-sync probe URL`: exits 0 when the URL answers 2xx. For container health checks in
/// images without curl.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// e.g. http://127.0.0.1:8080/readyz
    pub url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

pub async fn run(args: ProbeArgs) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("GET {}", args.url))?;
    if !response.status().is_success() {
        bail!("GET {} answered {}", args.url, response.status());
    }
    Ok(())
}
