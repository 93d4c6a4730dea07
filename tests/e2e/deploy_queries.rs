//! The alerts' and dashboard's PromQL is checked against what the binaries export: it parses, and
//! every label it selects, groups by or names in an alert's text or a panel's legend is one the
//! series carry. A typo there does not fail in Prometheus: the alert just never fires, the panel
//! stays empty.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier};

use crate::deploy_artifacts::scrapes;
use crate::harness::repo_file;

/// Every series of a scrape, by metric name: each one's labels.
type Series = BTreeMap<String, Vec<BTreeMap<String, String>>>;

fn series(scrape: &str) -> Series {
    let mut out = Series::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((selector, _value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match selector.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (selector, ""),
        };
        let labels = labels
            .split("\",")
            .filter_map(|pair| pair.split_once("=\""))
            .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
            .collect();
        out.entry(name.to_owned()).or_default().push(labels);
    }
    out
}

/// `up{job, instance}`, which Prometheus itself records for every target of the project's own
/// scrape configuration.
fn with_prometheus_up(series: &mut Series) {
    let config: serde_norway::Value =
        serde_norway::from_str(&repo_file("deploy/prometheus/prometheus.yml")).expect("yaml");
    for job in config["scrape_configs"].as_sequence().into_iter().flatten() {
        let name = job["job_name"].as_str().unwrap_or_default().to_owned();
        series.entry("up".to_owned()).or_default().push(
            [
                ("job".to_owned(), name),
                ("instance".to_owned(), "target".to_owned()),
            ]
            .into_iter()
            .collect(),
        );
    }
}

/// Checks one query's selectors and groupings against the scrape, noting every problem.
struct Checker<'a> {
    series: &'a Series,
    problems: Vec<String>,
}

impl Checker<'_> {
    /// The labels the expression's result carries (the metric name aside).
    fn labels(&mut self, expr: &Expr) -> BTreeSet<String> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs.name.as_deref(), &vs.matchers.matchers),
            Expr::MatrixSelector(ms) => {
                self.selector(ms.vs.name.as_deref(), &ms.vs.matchers.matchers)
            }
            Expr::Aggregate(agg) => {
                let inner = self.labels(&agg.expr);
                if let Some(param) = &agg.param {
                    self.labels(param);
                }
                match &agg.modifier {
                    Some(LabelModifier::Include(by)) => {
                        for label in &by.labels {
                            if !inner.contains(label) {
                                self.problems.push(format!(
                                    "groups by `{label}`, which `{}` lacks",
                                    agg.expr
                                ));
                            }
                        }
                        by.labels.iter().cloned().collect()
                    }
                    Some(LabelModifier::Exclude(without)) => {
                        &inner - &without.labels.iter().cloned().collect()
                    }
                    None => BTreeSet::new(),
                }
            }
            // Comparisons, `and`, arithmetic: the result keeps the left side's labels (one-to-one
            // matching; these queries use no `on`/`group_left`).
            Expr::Binary(b) => {
                let left = self.labels(&b.lhs);
                let right = self.labels(&b.rhs);
                if matches!(*b.lhs, Expr::NumberLiteral(_)) {
                    right
                } else {
                    left
                }
            }
            Expr::Paren(p) => self.labels(&p.expr),
            Expr::Unary(u) => self.labels(&u.expr),
            Expr::Subquery(s) => self.labels(&s.expr),
            Expr::Call(call) => {
                let mut labels = BTreeSet::new();
                for arg in &call.args.args {
                    labels.extend(self.labels(arg));
                }
                // histogram_quantile consumes the buckets' `le`.
                if call.func.name == "histogram_quantile" {
                    labels.remove("le");
                }
                labels
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => BTreeSet::new(),
        }
    }

    fn selector(&mut self, name: Option<&str>, matchers: &[Matcher]) -> BTreeSet<String> {
        let Some(name) = name else {
            self.problems
                .push("a selector without a metric name".into());
            return BTreeSet::new();
        };
        let Some(all) = self.series.get(name) else {
            self.problems.push(format!("`{name}` is not exported"));
            return BTreeSet::new();
        };
        let labels: BTreeSet<String> = all.iter().flat_map(|s| s.keys().cloned()).collect();
        for m in matchers.iter().filter(|m| m.name != "__name__") {
            if !labels.contains(&m.name) {
                self.problems
                    .push(format!("`{name}` has no label `{}`", m.name));
                continue;
            }
            // Every value a matcher names must occur, or the matcher is a typo: `!=` and `!~`
            // would then exclude nothing, `=` and `=~` select nothing.
            let values: Vec<&str> = match &m.op {
                MatchOp::Equal | MatchOp::NotEqual => vec![m.value.as_str()],
                MatchOp::Re(_) | MatchOp::NotRe(_) => m.value.split('|').collect(),
            };
            for value in values {
                if !all
                    .iter()
                    .any(|s| s.get(&m.name).map(String::as_str) == Some(value))
                {
                    self.problems.push(format!(
                        "`{name}` never has {}=\"{value}\" (values are pre-registered at 0)",
                        m.name
                    ));
                }
            }
        }
        labels
    }
}

/// The problems of one query: its parse error, or whatever [`Checker`] finds.
fn check(query: &str, series: &Series) -> Result<BTreeSet<String>, Vec<String>> {
    let expr = parser::parse(query).map_err(|e| vec![format!("does not parse: {e}")])?;
    let mut checker = Checker {
        series,
        problems: Vec::new(),
    };
    let labels = checker.labels(&expr);
    if checker.problems.is_empty() {
        Ok(labels)
    } else {
        Err(checker.problems)
    }
}

/// Every query of a Grafana dashboard (an object with an `"expr"`), with its legend format.
fn dashboard_queries<'a>(value: &'a serde_json::Value, out: &mut Vec<(&'a str, &'a str)>) {
    match value {
        serde_json::Value::Object(map) => match map.get("expr").and_then(|e| e.as_str()) {
            Some(expr) => out.push((
                expr,
                map.get("legendFormat")
                    .and_then(|l| l.as_str())
                    .unwrap_or_default(),
            )),
            None => map.values().for_each(|v| dashboard_queries(v, out)),
        },
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// `{{x}}` in a legend format.
fn legend_labels(format: &str) -> Vec<&str> {
    format
        .split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}"))
        .map(|(label, _)| label.trim())
        .collect()
}

/// `$labels.x` in an alert's annotations.
fn templated_labels(text: &str) -> Vec<String> {
    text.split("$labels.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn every_alert_and_dashboard_query_parses_and_selects_labels_the_metrics_have(
) -> anyhow::Result<()> {
    let mut series = series(&scrapes().await?);
    with_prometheus_up(&mut series);
    let mut problems = Vec::new();

    let alerts: serde_norway::Value =
        serde_norway::from_str(&repo_file("deploy/prometheus/alerts.yml"))?;
    let rules: Vec<&serde_norway::Value> = alerts["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .collect();
    assert!(!rules.is_empty(), "alerts.yml holds no rule");
    for rule in rules {
        let name = rule["alert"].as_str().unwrap_or("(unnamed)");
        let expr = rule["expr"].as_str().unwrap_or_default();
        match check(expr, &series) {
            Ok(labels) => {
                let annotations = serde_norway::to_string(&rule["annotations"])?;
                for label in templated_labels(&annotations) {
                    if !labels.contains(&label) {
                        problems.push(format!(
                            "alert {name}: its text names $labels.{label}, which its query drops"
                        ));
                    }
                }
            }
            Err(found) => problems.extend(found.into_iter().map(|p| format!("alert {name}: {p}"))),
        }
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/grafana/clerk-sync.json"))?;
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(!queries.is_empty(), "the dashboard holds no query");
    for (query, legend) in queries {
        match check(query, &series) {
            Ok(labels) => {
                for label in legend_labels(legend) {
                    if !labels.contains(label) {
                        problems.push(format!(
                            "panel `{query}`: its legend names {{{{{label}}}}}, which its query drops"
                        ));
                    }
                }
            }
            Err(found) => {
                problems.extend(found.into_iter().map(|p| format!("panel `{query}`: {p}")))
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
fn the_query_check_catches_a_misspelt_label_value_and_a_dropped_template_label() {
    let series = series(
        "# TYPE clerk_sync_x_total counter\n\
         clerk_sync_x_total{outcome=\"accepted\",topic=\"clerk.users\"} 0\n\
         clerk_sync_x_total{outcome=\"stale\",topic=\"clerk.users\"} 3\n",
    );
    assert_eq!(
        check(
            "sum by (topic) (rate(clerk_sync_x_total{outcome=~\"accepted|stale\"}[5m]))",
            &series
        ),
        Ok(BTreeSet::from(["topic".to_owned()]))
    );
    let typo = check("sum(clerk_sync_x_total{outcome=\"acepted\"})", &series)
        .expect_err("a misspelt value");
    assert!(
        typo[0].contains("never has outcome=\"acepted\""),
        "{typo:?}"
    );
    let grouping =
        check("sum by (topci) (clerk_sync_x_total)", &series).expect_err("a misspelt label");
    assert!(grouping[0].contains("groups by `topci`"), "{grouping:?}");
    assert_eq!(
        check("sum(clerk_sync_x_total) > 0", &series),
        Ok(BTreeSet::new()),
        "a sum without `by` keeps no label for $labels.topic"
    );
    assert!(check("sum(", &series).expect_err("no query")[0].contains("does not parse"));
    assert_eq!(
        templated_labels("on {{ $labels.topic }}, {{$labels.error_kind}}"),
        ["topic", "error_kind"]
    );
}
