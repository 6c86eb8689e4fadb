//! Each crate's modules form layers: no module reaches, through `crate::` paths, one that
//! reaches back to it. A module is a file or directory directly under `src/`; an edge is any
//! `crate::name` (or a name inside `use crate::{..}`) in its code, its unit tests left out.
//! ARCHITECTURE.md describes the layers this keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "core",
    "store",
    "identity",
    "hub",
    "host-smol",
    "host-tokio",
    "proto",
    "bench",
    "tests",
];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source dir") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests`.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a readable source");
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The words of `text` (identifiers and path segments).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// Module -> the modules of the same crate it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut all = Vec::new();
    sources(src, &mut all);
    for path in all {
        let rel = path.strip_prefix(src).expect("under src");
        let top = rel.components().next().expect("a first component");
        let name = top.as_os_str().to_string_lossy();
        let name = name.trim_end_matches(".rs").to_owned();
        if matches!(name.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        files.entry(name).or_default().push(path);
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (module, paths) in &files {
        let mut to = BTreeSet::new();
        for path in paths {
            let code = code(path);
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let named: Vec<&str> = if rest.starts_with('{') {
                    words(&rest[..rest.find('}').unwrap_or(rest.len())]).collect()
                } else {
                    words(rest).take(1).collect()
                };
                to.extend(
                    named
                        .into_iter()
                        .filter(|w| modules.contains(*w) && *w != module)
                        .map(str::to_owned),
                );
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// A cycle through `graph`, if there is one, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
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
            if let Some(found) = visit(next, graph, done, path) {
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
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_crate_has_an_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let graph = graph(&src);
        assert!(
            graph.len() > 1 || *krate == "proto",
            "{krate}: no modules found"
        );
        if let Some(cycle) = cycle(&graph) {
            panic!("{krate} has an import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_owned(), to.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        cycle(&graph).map(|c| c.join(" -> ")),
        Some("a -> b -> c -> a".to_owned())
    );
    let mut acyclic = graph;
    acyclic.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(cycle(&acyclic), None);
}
