//! The image's build context (`.dockerignore`) leaves out build output and history, which would
//! otherwise be sent to the Docker daemon on every build (a working tree's `target/` is
//! gigabytes), and keeps every file the build reads.

use std::path::Path;

use crate::harness::repo_file;

/// Whether a `.dockerignore` pattern leaves out a path (relative to the root, `/`-separated).
/// Only the pattern forms the file uses are understood; another form fails the test, so that
/// this check is extended rather than silently wrong.
fn ignores(pattern: &str, path: &str) -> bool {
    if let Some(name) = pattern.strip_prefix("**/") {
        assert!(
            !name.contains(['*', '/', '?', '[']),
            "unsupported pattern {pattern}"
        );
        return path.split('/').any(|component| component == name);
    }
    if let Some(ext) = pattern.strip_prefix("*.") {
        assert!(
            !ext.contains(['*', '/', '?', '[']),
            "unsupported pattern {pattern}"
        );
        // Docker matches from the context's root: `*.log` is a root-level file only.
        return !path.contains('/') && path.ends_with(&format!(".{ext}"));
    }
    assert!(
        !pattern.contains(['*', '?', '[', '!']),
        "unsupported pattern {pattern}"
    );
    path == pattern || path.starts_with(&format!("{pattern}/"))
}

fn patterns() -> Vec<String> {
    repo_file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir` (relative to the root), build output skipped.
fn files(root: &Path, dir: &str, out: &mut Vec<String>) {
    let full = root.join(dir);
    if full.is_file() {
        out.push(dir.to_owned());
        return;
    }
    for entry in std::fs::read_dir(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display())) {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name != "target" {
            files(root, &format!("{dir}/{name}"), out);
        }
    }
}

#[test]
fn the_docker_build_context_leaves_out_build_output_and_history_but_keeps_every_source() {
    let patterns = patterns();
    let ignored = |path: &str| patterns.iter().any(|p| ignores(p, path));
    for path in [
        "target/release/clerk-sync",
        "fuzz/target/debug/x",
        ".git/HEAD",
    ] {
        assert!(ignored(path), "{path} would be sent as build context");
    }
    // What the build reads: manifests, every crate's sources, the migrations and fixtures the
    // binary embeds, the tests and benchmarks Cargo.toml declares.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut needed = Vec::new();
    // Every workspace member, as Cargo.toml lists them.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let members: Vec<String> = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = ["))
        .expect("workspace members")
        .trim_end_matches(']')
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .collect();
    assert!(members.len() >= 4, "{members:?}");
    let fixed = [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "migrations",
        "tests",
        "benches",
        "deploy/Dockerfile",
    ];
    for dir in fixed
        .iter()
        .copied()
        .chain(members.iter().map(String::as_str))
    {
        files(root, dir, &mut needed);
    }
    assert!(needed.len() > 50, "found only {needed:?}");
    let left_out: Vec<&String> = needed.iter().filter(|p| ignored(p)).collect();
    assert!(left_out.is_empty(), "the build needs {left_out:?}");
}

#[test]
fn the_ignore_check_reads_patterns_as_docker_does() {
    assert!(ignores("**/target", "target"));
    assert!(ignores("**/target", "fuzz/target/a"));
    assert!(!ignores("**/target", "src/targets.rs"));
    assert!(ignores(".git", ".git/objects/ab"));
    assert!(!ignores(".git", ".github/workflows/ci.yml"));
    assert!(ignores("*.log", "pg.log"));
    assert!(!ignores("*.log", "docs/changes.log"));
}
