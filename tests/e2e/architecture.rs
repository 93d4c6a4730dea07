//! The layout as `docs/ARCHITECTURE.md` draws it, checked against the code: every workspace
//! crate has its row, the crates each row says it depends on are the ones its Cargo.toml names,
//! no crate's modules import each other in a circle, and the binary stays a thin mapping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::harness::repo_file;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Each crate's folder (`""` for the binary at the root) and the workspace crates (by folder)
/// it depends on, from the manifests.
fn crates() -> BTreeMap<String, BTreeSet<String>> {
    let manifest: toml_edit_lite::Table = toml_edit_lite::parse(&repo_file("Cargo.toml"));
    let members = manifest.members();
    let folder_of: BTreeMap<String, String> =
        std::iter::once(("clerk-sync".to_owned(), String::new()))
            .chain(members.iter().map(|folder| {
                let name = toml_edit_lite::parse(&repo_file(&format!("{folder}/Cargo.toml")))
                    .package_name();
                (name, folder.clone())
            }))
            .collect();
    folder_of
        .values()
        .map(|folder| {
            let path = if folder.is_empty() {
                "Cargo.toml".to_owned()
            } else {
                format!("{folder}/Cargo.toml")
            };
            let deps = toml_edit_lite::parse(&repo_file(&path))
                .dependencies()
                .into_iter()
                .filter_map(|name| folder_of.get(&name).cloned())
                .filter(|dep| dep != folder)
                .collect();
            (folder.clone(), deps)
        })
        .collect()
}

/// The minimal reading of Cargo manifests this test needs: workspace members, the package
/// name, the names under `[dependencies]`.
mod toml_edit_lite {
    pub struct Table(Vec<(String, String)>);

    /// `(section, line)` pairs, comments dropped.
    pub fn parse(text: &str) -> Table {
        let mut section = String::new();
        let mut lines = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']).to_owned();
            } else if !line.is_empty() {
                lines.push((section.clone(), line.to_owned()));
            }
        }
        Table(lines)
    }

    impl Table {
        fn value(&self, section: &str, key: &str) -> Option<String> {
            self.0.iter().find_map(|(s, line)| {
                let (k, v) = line.split_once('=')?;
                (s == section && k.trim() == key).then(|| v.trim().to_owned())
            })
        }

        pub fn members(&self) -> Vec<String> {
            self.value("workspace", "members")
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .split(',')
                .map(|m| m.trim().trim_matches('"').to_owned())
                .filter(|m| !m.is_empty())
                .collect()
        }

        pub fn package_name(&self) -> String {
            self.value("package", "name")
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned()
        }

        pub fn dependencies(&self) -> Vec<String> {
            self.0
                .iter()
                .filter(|(s, _)| s == "dependencies")
                .filter_map(|(_, line)| {
                    let key = line.split(['=', '.']).next()?.trim();
                    (!key.is_empty()).then(|| key.to_owned())
                })
                .collect()
        }
    }
}

#[test]
fn every_crate_has_its_row_in_the_architecture_and_the_row_names_exactly_the_crates_it_depends_on()
{
    let doc = repo_file("docs/ARCHITECTURE.md");
    let crates = crates();
    let folders: BTreeSet<&str> = crates.keys().map(String::as_str).collect();
    for (folder, deps) in &crates {
        let label = if folder.is_empty() {
            "`src/`".to_owned()
        } else {
            format!("`{folder}/`")
        };
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no row for {label}"));
        let depends_on = row
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap_or_default();
        let named: BTreeSet<String> = depends_on
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| folders.contains(word) && !word.is_empty())
            .map(str::to_owned)
            .collect();
        assert_eq!(
            &named, deps,
            "{label}: the document says it depends on {named:?}, its Cargo.toml on {deps:?}"
        );
    }
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules of the crate under `src` and those each one names through
/// `crate::` (comments and test modules aside).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(src);
    let top = |path: &Path| -> String {
        let relative = path.strip_prefix(src).expect("inside src");
        let first = relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        first.trim_end_matches(".rs").to_owned()
    };
    let tops: BTreeSet<String> = files
        .iter()
        .map(|f| top(f))
        .filter(|t| !["lib", "main", "mod"].contains(&t.as_str()))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top(file);
        let text = std::fs::read_to_string(file).expect("a source file");
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or_default();
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if tops.contains(&name) && name != from {
                    graph.entry(from.clone()).or_default().insert(name);
                }
            }
        }
    }
    graph
}

/// A circle of modules in `graph`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_circle() {
    for folder in crates().keys() {
        let src = if folder.is_empty() {
            root().join("src")
        } else {
            root().join(folder).join("src")
        };
        let graph = module_graph(&src);
        assert_eq!(
            circle(&graph),
            None,
            "{}: modules import each other in a circle",
            src.display()
        );
    }
}

#[test]
fn the_binary_crate_only_maps_arguments_and_stays_under_two_thousand_lines_of_code() {
    let src = root().join("src");
    let files: Vec<(PathBuf, String)> = rust_files(&src)
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("file");
            (path, text)
        })
        .collect();
    let lines: usize = files.iter().map(|(_, text)| text.lines().count()).sum();
    // Lines of code as tokei counts them: blank and comment lines aside (the flags' doc
    // comments are --help's text).
    let code: usize = files
        .iter()
        .flat_map(|(_, text)| text.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count();
    println!("the binary crate: {lines} lines, {code} of code");
    assert!(code < 2000, "src/ holds {code} lines of code");
    // What a library owns is not here: no Kafka admin, Clerk API, SQL or local stack.
    for owned in ["backfill", "compare.rs", "topics.rs", "local"] {
        assert!(
            !src.join(owned).exists(),
            "src/{owned} belongs in a library crate"
        );
    }
    let sql = ["SELECT ", "INSERT ", "UPDATE ", "DELETE FROM"];
    for (path, text) in &files {
        assert!(
            !sql.iter().any(|s| text.contains(s)),
            "{} holds SQL: the SQL lives in the library crates",
            path.display()
        );
    }
}
