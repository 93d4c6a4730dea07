//! The README's settings table is the binary's own: every environment variable a command reads
//! is in it, with the flag and the default `--help` shows (docs/cli.md, itself kept equal to
//! `--help` by `cli_reference`).

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::repo_file;

/// What `--help` says of one environment variable, across every command that reads it.
#[derive(Debug, Default)]
struct Setting {
    flags: BTreeSet<String>,
    defaults: BTreeSet<String>,
    /// Some command reads it with no default.
    without_default: bool,
}

fn from_help(reference: &str) -> BTreeMap<String, Setting> {
    let mut settings: BTreeMap<String, Setting> = BTreeMap::new();
    let mut flag = String::new();
    for line in reference.lines() {
        let trimmed = line.trim_start();
        if line.starts_with("  ") && trimmed.starts_with('-') {
            flag = trimmed
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .unwrap_or_default()
                .to_owned();
            continue;
        }
        // The preamble, before the first flag, only describes the format.
        let Some(env) = trimmed.split("[env: ").nth(1).filter(|_| !flag.is_empty()) else {
            continue;
        };
        let name: String = env
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let setting = settings.entry(name).or_default();
        setting.flags.insert(flag.clone());
        match trimmed.split("[default: ").nth(1) {
            Some(default) => {
                setting
                    .defaults
                    .insert(default.split(']').next().unwrap_or_default().to_owned());
            }
            None => setting.without_default = true,
        }
    }
    settings
}

/// `(variables, flags, default)` of each row of the README's settings table.
fn readme_rows(readme: &str) -> Vec<(Vec<String>, String, String)> {
    let table = readme
        .split("### Settings")
        .nth(1)
        .and_then(|rest| rest.split("### HTTP endpoints").next())
        .expect("README: a Settings section");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            (ticked(cells[0]), cells[1].to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_readme_settings_table_names_every_variable_with_its_flag_and_default() {
    let settings = from_help(&repo_file("docs/cli.md"));
    assert!(settings.len() > 30, "{settings:?}");
    let rows = readme_rows(&repo_file("README.md"));
    let mut problems = Vec::new();
    let documented: BTreeSet<&str> = rows
        .iter()
        .flat_map(|(vars, _, _)| vars.iter().map(String::as_str))
        .collect();
    for name in settings.keys() {
        if !documented.contains(name.as_str()) {
            problems.push(format!("{name}: not in the README's settings table"));
        }
    }
    for (vars, flags, default) in &rows {
        for var in vars {
            let Some(setting) = settings.get(var) else {
                continue;
            };
            for flag in &setting.flags {
                if !flags.contains(flag.as_str()) {
                    problems.push(format!("{var}: --help names {flag}, the README {flags}"));
                }
            }
            let required = default.trim() == "required";
            if required && !setting.defaults.is_empty() {
                problems.push(format!(
                    "{var}: the README says required, --help defaults it to {:?}",
                    setting.defaults
                ));
            }
            for d in &setting.defaults {
                if !default.contains(d.as_str()) {
                    problems.push(format!(
                        "{var}: --help defaults it to {d}, the README says {default}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
