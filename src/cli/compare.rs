use anyhow::Result;
use clap::Args;
use clerk_sync_core::Secret;
use serde_json::{json, Value};

use super::Found;
use clerk_sync_worker::compare::{compare, connect, TableReport};

/// `clerk-sync compare`: the synced tables of DATABASE_URL against another database.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The database to compare with (e.g. one rebuilt by `replay --into`); from the environment
    /// (or COMPARE_WITH_DATABASE_URL_FILE) to keep its password out of `ps`.
    #[arg(
        long = "with",
        value_name = "URL",
        env = "COMPARE_WITH_DATABASE_URL",
        hide_env_values = true
    )]
    pub other: Secret,
    /// The database compared (usually the live one).
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Rows listed per table.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub show: usize,
    /// Print the values that differ (names, email addresses: personal data), not only the columns.
    #[arg(long)]
    pub show_personal_data: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: CompareArgs) -> Result<()> {
    let mut here = connect(&args.database_url, "DATABASE_URL").await?;
    let mut there = connect(&args.other, "--with").await?;
    // Large tables take a while: a line on stderr every few seconds.
    let mut last = std::time::Instant::now();
    let reports = compare(&mut here, &mut there, args.show, |table, rows| {
        if last.elapsed() >= std::time::Duration::from_secs(5) {
            eprintln!("compare: {table}, {rows} rows read");
            last = std::time::Instant::now();
        }
    })
    .await?;
    let differences: u64 = reports.iter().map(TableReport::differences).sum();
    if args.json {
        let tables: Vec<Value> = reports
            .iter()
            .map(|r| r.json(args.show_personal_data))
            .collect();
        let out = json!({"tables": tables, "differences": differences});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for report in &reports {
            print!("{}", report.text(args.show_personal_data));
        }
    }
    if differences > 0 {
        let listed = if args.json { "" } else { " (listed above)" };
        return Err(Found(format!("the tables differ: {differences} rows{listed}")).into());
    }
    if !args.json {
        println!("the tables match");
    }
    Ok(())
}
