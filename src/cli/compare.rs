use anyhow::{Context, Result};
use clap::Args;
use clerk_sync_core::Secret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

use serde_json::{json, Value};

use super::Found;
use crate::compare::{compare, Difference, TableReport};

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

async fn connect(url: &Secret, setting: &str) -> Result<PgConnection> {
    let options: PgConnectOptions = url
        .expose()
        .parse()
        .with_context(|| format!("{setting}: expected a postgres:// URL"))?;
    super::args::check_verified(&options, setting, false)?;
    // The first page waits for the whole table to be sorted: not a slow statement to warn of.
    options
        .disable_statement_logging()
        .connect()
        .await
        .with_context(|| format!("{setting}: cannot connect to the database"))
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
            .map(|r| report_json(r, args.show_personal_data))
            .collect();
        let out = json!({"tables": tables, "differences": differences});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for report in &reports {
            print!("{}", render(report, args.show_personal_data));
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

fn report_json(report: &TableReport, values: bool) -> Value {
    let examples: Vec<Value> = report
        .examples
        .iter()
        .map(|example| match example {
            Difference::OnlyHere(key) => json!({"kind": "only_here", "key": key}),
            Difference::OnlyThere(key) => json!({"kind": "only_there", "key": key}),
            Difference::Differs { key, columns } => {
                let columns: Vec<Value> = columns
                    .iter()
                    .map(|(name, here, there)| {
                        if values {
                            json!({"column": name, "here": here, "there": there})
                        } else {
                            json!({"column": name})
                        }
                    })
                    .collect();
                json!({"kind": "differs", "key": key, "columns": columns})
            }
        })
        .collect();
    json!({"table": report.table, "rows_here": report.rows_here, "rows_there": report.rows_there,
        "only_here": report.only_here, "only_there": report.only_there,
        "differing": report.differing, "examples": examples})
}

fn render(report: &TableReport, values: bool) -> String {
    let mut out = format!(
        "{}: {} rows in DATABASE_URL, {} in --with",
        report.table, report.rows_here, report.rows_there
    );
    if report.differences() == 0 {
        out.push_str("; identical\n");
        return out;
    }
    let counts = [
        (report.only_here, "only in DATABASE_URL"),
        (report.only_there, "only in --with"),
        (report.differing, "differ"),
    ];
    for (n, what) in counts.iter().filter(|(n, _)| *n > 0) {
        out.push_str(&format!("; {n} {what}"));
    }
    out.push('\n');
    for example in &report.examples {
        let line = match example {
            Difference::OnlyHere(key) => format!("  only in DATABASE_URL  {key}"),
            Difference::OnlyThere(key) => format!("  only in --with        {key}"),
            Difference::Differs { key, columns } => {
                let columns: Vec<String> = columns
                    .iter()
                    .map(|(name, here, there)| {
                        if values {
                            format!("{name}: {here} / {there}")
                        } else {
                            name.clone()
                        }
                    })
                    .collect();
                format!("  differs               {key} ({})", columns.join(", "))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    let listed = report.examples.len() as u64;
    if listed < report.differences() {
        out.push_str(&format!(
            "  … and {} more (--show N lists more)\n",
            report.differences() - listed
        ));
    }
    out
}
