//! The deployment artifacts stay true to the binary: every metric the dashboards and alerts
//! use is one the processes export.

use std::collections::BTreeSet;

use crate::harness::{repo_file, Ingest, TestDb, TestKafka, WorkerProcess};

/// Metric names a scrape offers, histogram series included.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// Every `clerk_sync_…` token in a text.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("clerk_sync_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        out.insert(text[start..end].to_owned());
        i = end;
    }
    out
}

/// What ingest's and the worker's `/metrics` offer, one text after the other (the worker's once
/// its lag gauges have appeared).
pub(crate) async fn scrapes() -> anyhow::Result<String> {
    let db = TestDb::new().await?;
    let kafka = TestKafka::new().await?;
    let ingest = Ingest::start(&kafka, &[]).await?;
    let worker = WorkerProcess::start(&db, &kafka).await?;
    let ingest_metrics = reqwest::get(format!("{}/metrics", ingest.base))
        .await?
        .text()
        .await?;
    // Lag gauges appear after the worker's first measurement.
    let worker_metrics =
        crate::harness::eventually("lag gauges", crate::pipeline::WAIT, || async {
            let text = reqwest::get(format!("{}/metrics", worker.base))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains("clerk_sync_consumer_lag_seconds{")
                .then_some(text)
        })
        .await;
    Ok(format!(
        "{ingest_metrics}\n{worker_metrics}\n{}",
        drift_figures()
    ))
}

/// What the drift check pushes to a Pushgateway, as the Pushgateway serves it: every table and
/// kind, with the `job` label it is grouped under.
fn drift_figures() -> String {
    use clerk_sync_backfill::{report, BackfillSummary, TableDrift};
    let summary = BackfillSummary {
        drift: Some(
            ["organizations", "users", "org_memberships"]
                .map(|table| TableDrift {
                    table,
                    ..TableDrift::default()
                })
                .to_vec(),
        ),
        ..BackfillSummary::default()
    };
    report::exposition(&summary, std::time::SystemTime::now())
        .replace("{table=", &format!("{{job=\"{}\",table=", report::PUSH_JOB))
}

#[tokio::test]
async fn dashboards_and_alerts_use_only_metrics_the_binaries_export() -> anyhow::Result<()> {
    let metrics = exported(&scrapes().await?);

    let alerts = repo_file("deploy/prometheus/alerts.yml");
    let scrape = repo_file("deploy/prometheus/prometheus.yml");
    let dashboard = repo_file("deploy/grafana/clerk-sync.json");
    let _: serde_norway::Value = serde_norway::from_str(&alerts)?;
    let _: serde_norway::Value = serde_norway::from_str(&scrape)?;
    let _: serde_json::Value = serde_json::from_str(&dashboard)?;

    for (file, text) in [("alerts.yml", &alerts), ("clerk-sync.json", &dashboard)] {
        let used = referenced(text);
        assert!(!used.is_empty(), "{file} references no metric");
        let unknown: Vec<_> = used.difference(&metrics).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the binaries do not export: {unknown:?}"
        );
    }
    // The README's metrics table has one row per metric family, and only real ones.
    let readme = repo_file("README.md");
    let rows: String = readme
        .lines()
        .filter(|l| l.starts_with("| `clerk_sync_"))
        .collect::<Vec<_>>()
        .join("\n");
    let documented = referenced(&rows);
    let unknown: Vec<_> = documented.difference(&metrics).collect();
    assert!(
        unknown.is_empty(),
        "README documents metrics the binaries do not export: {unknown:?}"
    );
    let families: BTreeSet<String> = metrics
        .iter()
        .filter(|m| !(m.ends_with("_bucket") || m.ends_with("_sum") || m.ends_with("_count")))
        .cloned()
        .collect();
    let undocumented: Vec<_> = families.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from the README: {undocumented:?}"
    );
    Ok(())
}
