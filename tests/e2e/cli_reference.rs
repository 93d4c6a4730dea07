//! `docs/cli.md`, the command reference, is the binary's own `--help` for every command: this
//! test fails when the two drift. `CLERK_SYNC_WRITE_CLI_DOC=1 cargo nextest run cli_reference`
//! rewrites it. Also the operator habits: `--version` names the commit, `completions` prints a
//! script for each shell.

use clap::CommandFactory;

use crate::harness::clerk_sync;

/// Every command's path below the root, depth first, the root first.
fn paths(command: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    out.push(prefix.to_vec());
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_owned());
        paths(sub, &path, out);
    }
}

fn reference() -> String {
    let mut all = Vec::new();
    paths(&clerk_sync::cli::Cli::command(), &[], &mut all);
    let mut doc = String::from(
        "# clerk-sync command reference\n\n\
         Every command's `--help`, generated from the binary (a test fails when this file\n\
         drifts from it; `CLERK_SYNC_WRITE_CLI_DOC=1 cargo nextest run cli_reference` rewrites\n\
         it). Each flag's environment variable is shown as `[env: NAME=]`; the README's settings\n\
         table says more.\n",
    );
    for path in all {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        // No environment at all: help shows a variable's value when it is set.
        let out = clerk_sync(&args, &[]);
        assert!(out.status.success(), "clerk-sync {args:?}");
        let title = std::iter::once("clerk-sync")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        doc.push_str(&format!(
            "\n## `{title}`\n\n```text\n{}\n```\n",
            String::from_utf8_lossy(&out.stdout).trim_end()
        ));
    }
    doc
}

#[test]
fn the_command_reference_is_the_binarys_own_help_for_every_command() {
    let generated = reference();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
    if std::env::var_os("CLERK_SYNC_WRITE_CLI_DOC").is_some() {
        std::fs::write(file, &generated).expect("docs/cli.md");
        return;
    }
    let written = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        written == generated,
        "docs/cli.md drifted from --help: run `CLERK_SYNC_WRITE_CLI_DOC=1 cargo nextest run cli_reference`"
    );
}

#[test]
fn version_names_the_commit_and_completions_cover_every_shell() {
    let version = clerk_sync(&["--version"], &[]);
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.starts_with("clerk-sync ") && text.contains("(commit "),
        "{text}"
    );
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = clerk_sync(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["clerk-sync", "backfill", "redrive", "dry-run"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}
