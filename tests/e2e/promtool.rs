//! The alert rules and scrape configuration checked and evaluated by Prometheus's own `promtool`
//! (Debian's `prometheus` package, which scripts/test installs): every alert has a unit test in
//! `deploy/prometheus/alerts.test.yml` that fires it, and all of them pass.

use std::collections::BTreeSet;
use std::process::Command;

use crate::harness::repo_file;

/// `promtool` from `PROMTOOL` or the PATH.
fn promtool(args: &[&str]) -> std::process::Output {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    Command::new(&bin)
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!("{bin}: {e} (install Debian's prometheus package: apt-get install prometheus; scripts/test does)")
        })
}

fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_alert_rules_and_the_scrape_configuration() {
    assert_success(
        "promtool check rules",
        &promtool(&["check", "rules", "alerts.yml"]),
    );
    assert_success(
        "promtool check config",
        &promtool(&["check", "config", "prometheus.yml"]),
    );
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it_and_promtool_passes_them_all() {
    let rules: serde_norway::Value =
        serde_norway::from_str(&repo_file("deploy/prometheus/alerts.yml")).expect("alerts.yml");
    let alerts: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    assert!(!alerts.is_empty());
    let tests: serde_norway::Value =
        serde_norway::from_str(&repo_file("deploy/prometheus/alerts.test.yml"))
            .expect("alerts.test.yml");
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_sequence().into_iter().flatten() {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default().to_owned();
            match case["exp_alerts"].as_sequence() {
                Some(expected) if !expected.is_empty() => fired.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    for alert in &alerts {
        assert!(fired.contains(alert), "{alert}: no test fires it");
        assert!(quiet.contains(alert), "{alert}: no test shows it quiet");
    }
    assert_success(
        "promtool test rules",
        &promtool(&["test", "rules", "alerts.test.yml"]),
    );
}
