//! Keeps the layering sentence of the crate docs true: a module may use
//! only modules of lower layers. Reads the source tree and fails on any
//! `crate::` path that points up (or sideways into a module of its own
//! layer), naming the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

/// Every top-level module and its layer, lowest first. A new module must be
/// placed here, or the test fails.
const LAYERS: &[(&str, u32)] = &[
    ("config", 0),
    ("crash", 0),
    ("erasure", 0),
    ("ids", 0),
    ("metrics", 0),
    ("placement", 0),
    ("rate", 0),
    ("meta", 1),
    ("shards", 1),
    ("crypto", 2),
    ("tls", 2),
    ("raft", 3),
    ("objects", 4),
    ("workers", 5),
    ("api", 6),
    ("server", 7),
    ("devcluster", 8),
    ("cli", 9),
    ("fuzzing", 10),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level modules a line refers to through `crate::`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first segment of each item.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut wrong = Vec::new();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap_or(file);
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(top.as_str(), "lib" | "main" | "layering") {
            continue;
        }
        let Some(own) = layer(&top) else {
            wrong.push(format!(
                "{}: module `{top}` has no layer in LAYERS",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for target in crate_paths(line) {
                if target == top {
                    continue;
                }
                *edges.entry((top.clone(), target.clone())).or_default() += 1;
                match layer(&target) {
                    Some(l) if l < own => {}
                    Some(l) => wrong.push(format!(
                        "{}:{}: `{top}` (layer {own}) uses `{target}` (layer {l})",
                        relative.display(),
                        n + 1
                    )),
                    None => wrong.push(format!(
                        "{}:{}: `crate::{target}` is not a known module",
                        relative.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
    assert!(
        edges.contains_key(&("api".into(), "raft".into())),
        "the check saw no api → raft import: it reads nothing"
    );
}

#[test]
fn grouped_and_nested_paths_are_seen() {
    assert_eq!(crate_paths("use crate::meta::ObjectId;"), vec!["meta"]);
    assert_eq!(
        crate_paths("use crate::{raft::Cluster, meta};"),
        vec!["raft", "meta"]
    );
    assert_eq!(
        crate_paths("let x = crate::objects::f(crate::rate::g());"),
        vec!["objects", "rate"]
    );
}
