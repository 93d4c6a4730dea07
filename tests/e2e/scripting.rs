//! What scripts and dashboards rely on: every operator command's `--json` and exit codes as the
//! README documents them, and the Grafana dashboard as Grafana's model reads it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::{clerk_sync, repo_file, run_cli, unique, TestKafka};

/// Every operator command that prints a report, with the word that starts its README line.
const JSON_COMMANDS: [&[&str]; 8] = [
    &["lag"],
    &["dlq", "list"],
    &["dlq", "show"],
    &["dlq", "redrive"],
    &["replay"],
    &["backfill"],
    &["compare"],
    &["topics", "create"],
];

#[test]
fn every_operator_command_takes_json_and_the_readme_documents_it_and_the_exit_codes() {
    let readme = repo_file("README.md");
    let section = readme
        .split("### Scripting: JSON and exit codes")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README: a Scripting section");
    for command in JSON_COMMANDS {
        let help = clerk_sync(&[command, &["--help"]].concat(), &[]);
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("--json"), "{command:?} has no --json");
        let line = format!("clerk-sync {}", command.join(" "));
        assert!(section.contains(&line), "README, Scripting: no `{line}`");
    }
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |"] {
        assert!(
            section.contains(code),
            "README, Scripting: exit code {code}"
        );
    }
    for flag in ["--max-lag", "--fail-if-any", "--dry-run --prune"] {
        assert!(section.contains(flag), "README, Scripting: {flag}");
    }
}

#[tokio::test]
async fn topics_create_prints_every_topic_with_its_settings_as_json_and_a_dry_run_creates_nothing(
) -> anyhow::Result<()> {
    let dry = clerk_sync(
        &[
            "topics",
            "create",
            "--dry-run",
            "--json",
            "--replication",
            "3",
        ],
        &[("TOPIC_USERS", "dry.users")],
    );
    assert!(dry.status.success(), "{dry:?}");
    let plan: Value = serde_json::from_slice(&dry.stdout)?;
    assert_eq!(plan["dry_run"], true);
    let topics = plan["topics"].as_array().expect("topics");
    let names: Vec<&str> = topics.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "dry.users",
            "clerk.organizations",
            "clerk.memberships",
            "clerk.dlq"
        ]
    );
    for topic in topics {
        assert_eq!(topic["replication"], 3);
        assert_eq!(topic["configs"]["min.insync.replicas"], "2");
    }
    assert_eq!(topics[3]["configs"]["retention.ms"], "2592000000");

    // Names of its own: the harness's topics exist already, with the test's partitions.
    let kafka = TestKafka::new().await?;
    let fresh = clerk_sync_core::Topics::with_prefix(&format!("{}.", unique("fresh")));
    let dlq = format!("{}dlq", fresh.users.trim_end_matches("users"));
    let env = [
        ("TOPIC_USERS", fresh.users.as_str()),
        ("TOPIC_ORGANIZATIONS", fresh.organizations.as_str()),
        ("TOPIC_MEMBERSHIPS", fresh.memberships.as_str()),
        ("TOPIC_DLQ", dlq.as_str()),
    ];
    let created: Value =
        serde_json::from_str(&run_cli(&kafka, &["topics", "create", "--json"], &env).await?)?;
    assert_eq!(created["dry_run"], false);
    let names: BTreeSet<&str> = created["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let expected: BTreeSet<&str> = [
        fresh.users.as_str(),
        fresh.organizations.as_str(),
        fresh.memberships.as_str(),
        dlq.as_str(),
    ]
    .into();
    assert_eq!(names, expected);
    Ok(())
}

/// Grafana's unit ids the dashboard may use (Grafana's own list is longer).
const UNITS: [&str; 8] = [
    "s",
    "ms",
    "short",
    "ops",
    "reqps",
    "percentunit",
    "bytes",
    "none",
];

#[test]
fn every_dashboard_panel_reads_the_provisioned_datasource_has_a_unit_a_query_and_a_place() {
    let dashboard: Value = serde_json::from_str(&repo_file("deploy/grafana/clerk-sync.json"))
        .expect("the dashboard is JSON");
    let provisioned: serde_norway::Value = serde_norway::from_str(&repo_file(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
    ))
    .expect("yaml");
    let datasource = &provisioned["datasources"][0];
    let kind = datasource["type"].as_str().expect("a datasource type");
    assert_eq!(datasource["isDefault"].as_bool(), Some(true));

    // The `datasource` variable offers datasources of the provisioned type; panels use it.
    let variable = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(variable["query"], kind);
    let reference = format!("${{{}}}", variable["name"].as_str().expect("name"));
    for field in ["uid", "title", "schemaVersion"] {
        assert!(!dashboard[field].is_null(), "dashboard {field}");
    }

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64()), "{title}: id repeated");
        assert_eq!(panel["datasource"]["type"], kind, "{title}");
        assert_eq!(panel["datasource"]["uid"], reference.as_str(), "{title}");
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default();
        assert!(UNITS.contains(&unit), "{title}: unit `{unit}`");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "{title}: an empty query"
            );
            assert!(refs.insert(target["refId"].as_str()), "{title}: refId");
            if !target["datasource"].is_null() {
                assert_eq!(target["datasource"], panel["datasource"], "{title}");
            }
        }
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().expect("gridPos"));
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {grid}");
        for row in y..y + h {
            for column in x..x + w {
                assert!(cells.insert((row, column)), "{title} overlaps a panel");
            }
        }
    }
}
