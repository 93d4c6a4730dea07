//! How a backfill reports: a summary for people, the drift figures for Prometheus (pushed the
//! Pushgateway way, for a scheduled check), and progress while it runs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::{Error, Result};

use super::{BackfillSummary, TableDrift, RESOURCES};

/// The Pushgateway job the drift check's figures are grouped under.
pub const PUSH_JOB: &str = "clerk_sync_drift";

/// The summary as text: one line of counts, then the drift per table.
pub fn render(summary: &BackfillSummary) -> String {
    let counts: Vec<String> = RESOURCES
        .iter()
        .zip(summary.listed)
        .map(|((name, _), n)| format!("{n} {name}"))
        .collect();
    let mut out = format!(
        "{}listed {}; published {} events ({} requests, {} rate-limited)\n",
        if summary.dry_run { "dry run: " } else { "" },
        counts.join(", "),
        summary.published,
        summary.requests,
        summary.rate_limited
    );
    for table in summary.drift.iter().flatten() {
        out.push_str(&render_table(table));
    }
    if let Some(reason) = &summary.prune_refused {
        let _ = writeln!(out, "pruning refused: {reason}");
    } else if summary.drift.is_some() {
        let verb = if summary.dry_run {
            "would publish"
        } else {
            "published"
        };
        let deletions: u64 = summary
            .drift
            .iter()
            .flatten()
            .map(|t| t.deleted.count)
            .sum();
        let _ = writeln!(
            out,
            "prune: {deletions} rows deleted in Clerk; {verb} {} deletions (memberships of deleted users and organizations end with them)",
            if summary.dry_run { deletions } else { summary.pruned }
        );
    }
    out
}

fn render_table(table: &TableDrift) -> String {
    if table.rows() == 0 {
        return format!(
            "{}: no drift ({} live rows)\n",
            table.table, table.live_rows
        );
    }
    let mut out = format!(
        "{}: {} missing, {} stale, {} deleted in Clerk ({} live rows)\n",
        table.table, table.missing.count, table.stale.count, table.deleted.count, table.live_rows
    );
    for (kind, ids) in [
        ("missing", &table.missing),
        ("stale", &table.stale),
        ("deleted", &table.deleted),
    ] {
        for id in &ids.ids {
            let _ = writeln!(out, "  {kind:<8} {id}");
        }
        if (ids.ids.len() as u64) < ids.count {
            let _ = writeln!(
                out,
                "  {kind:<8} … and {} more",
                ids.count - ids.ids.len() as u64
            );
        }
    }
    out
}

/// The drift figures in Prometheus's text format.
pub fn exposition(summary: &BackfillSummary, now: std::time::SystemTime) -> String {
    let mut out = String::from(
        "# HELP clerk_sync_drift_rows Rows that differ from Clerk at the last drift check: missing here, older here (stale), or deleted in Clerk and live here.\n\
         # TYPE clerk_sync_drift_rows gauge\n",
    );
    for table in summary.drift.iter().flatten() {
        for (kind, n) in [
            ("missing", table.missing.count),
            ("stale", table.stale.count),
            ("deleted", table.deleted.count),
        ] {
            let _ = writeln!(
                out,
                "clerk_sync_drift_rows{{table=\"{}\",kind=\"{kind}\"}} {n}",
                table.table
            );
        }
    }
    let seconds = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let _ = write!(
        out,
        "# HELP clerk_sync_drift_check_timestamp_seconds When the last drift check completed.\n\
         # TYPE clerk_sync_drift_check_timestamp_seconds gauge\n\
         clerk_sync_drift_check_timestamp_seconds {seconds}\n"
    );
    out
}

/// Replaces the figures of [`PUSH_JOB`] in a Pushgateway (`PUT /metrics/job/<job>`).
pub async fn push(pushgateway: &str, summary: &BackfillSummary) -> Result<()> {
    let url = format!(
        "{}/metrics/job/{PUSH_JOB}",
        pushgateway.trim_end_matches('/')
    );
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|source| Error::Http {
            what: "building the HTTP client for PUSHGATEWAY_URL".to_owned(),
            source,
        })?
        .put(&url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(exposition(summary, std::time::SystemTime::now()))
        .send()
        .await
        .map_err(|e| {
            Error::Push(format!(
                "PUSHGATEWAY_URL: cannot push to {}: {}",
                shown(&url),
                e.without_url()
            ))
        })?;
    if !response.status().is_success() {
        return Err(Error::Push(format!(
            "PUSHGATEWAY_URL: {} answered {}",
            shown(&url),
            response.status()
        )));
    }
    Ok(())
}

/// A URL as it may be shown: without the user name and password it may carry.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "[the configured URL]".to_owned(),
    }
}

/// Progress for people: the resource, objects against Clerk's count, pages, objects per second.
pub struct ProgressLine {
    started: Instant,
    last_line: Option<Instant>,
}

impl Default for ProgressLine {
    fn default() -> Self {
        ProgressLine {
            started: Instant::now(),
            last_line: None,
        }
    }
}

impl ProgressLine {
    pub fn line(&self, summary: &BackfillSummary) -> String {
        let i = summary.resource.min(RESOURCES.len() - 1);
        let listed = summary.listed[i];
        let of = summary.totals[i].map_or_else(String::new, |t| format!("/{t}"));
        let all: u64 = summary.listed.iter().sum();
        let rate = all as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "{} {listed}{of} ({}/3), {} pages, {rate:.0} objects/s, {} published",
            RESOURCES[i].0,
            i + 1,
            summary.pages,
            summary.published
        )
    }

    /// For a log rather than a terminal: a line every `every` at most.
    pub fn due(&mut self, every: Duration) -> bool {
        let due = self.last_line.is_none_or(|t| t.elapsed() >= every);
        if due {
            self.last_line = Some(Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ids;

    #[test]
    fn the_drift_figures_are_one_gauge_per_table_and_kind_with_the_check_time() {
        let summary = BackfillSummary {
            drift: Some(vec![TableDrift {
                table: "users",
                missing: Ids {
                    count: 2,
                    ids: vec![],
                },
                ..TableDrift::default()
            }]),
            ..BackfillSummary::default()
        };
        let text = exposition(
            &summary,
            std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        assert!(text.contains("clerk_sync_drift_rows{table=\"users\",kind=\"missing\"} 2\n"));
        assert!(text.contains("clerk_sync_drift_rows{table=\"users\",kind=\"deleted\"} 0\n"));
        assert!(text.ends_with("clerk_sync_drift_check_timestamp_seconds 1700000000\n"));
    }
}
