//! core's top-level modules stack in one direction: no module reaches, through its `crate::`
//! paths, a module that reaches back to it. Settings, errors and events sit low; the parts
//! of the protocol above them; `node`, then `resilience`, on top.
//!
//! Read from the source, as a reader meets it: `use crate::…` lines and paths written in
//! code (`crate::x::y`, `crate::{x, y}`, and names the crate root re-exports), comments and
//! test-only code left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("the source directory reads") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = text.find("#[cfg(test)]\nmod tests {").map_or(text, |at| &text[..at]);
    text.lines().map(|line| line.find("//").map_or(line, |at| &line[..at])).collect::<Vec<_>>().join("\n")
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first name of every path that starts with `crate::`.
fn crate_paths(code: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b, c::{D, E}}`: the first name of each item at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        heads.push(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            heads.push(ident(rest));
        }
    }
    heads
}

#[test]
fn core_modules_import_each_other_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs reads");
    let mut modules = BTreeSet::new();
    for line in lib.lines() {
        for prefix in ["pub mod ", "mod "] {
            if let Some(name) = line.strip_prefix(prefix) {
                modules.insert(name.trim_end_matches(';').to_string());
            }
        }
    }
    // Names the crate root re-exports, by the module they come from: `pub use x::{A, B};`.
    let mut reexported = BTreeMap::new();
    for line in lib.lines() {
        if let Some(rest) = line.strip_prefix("pub use ") {
            let (module, names) = rest.split_once("::").expect("a re-export names its module");
            for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|n| !n.is_empty()) {
                reexported.insert(name.to_string(), module.to_string());
            }
        }
    }
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        let top = rel.split('/').next().expect("a first component").trim_end_matches(".rs").to_string();
        if top == "lib" || top == "testkit" || rel.ends_with("tests.rs") || !modules.contains(&top) {
            continue;
        }
        let text = fs::read_to_string(&file).expect("a source file reads");
        for head in crate_paths(&code(&text)) {
            let target = if modules.contains(head) { Some(head.to_string()) } else { reexported.get(head).cloned() };
            if let Some(target) = target.filter(|t| *t != top) {
                edges.entry(top.clone()).or_default().entry(target).or_default().insert(rel.clone());
            }
        }
    }
    assert!(edges.get("node").is_some_and(|e| e.contains_key("election")), "the check reads the source: {edges:?}");

    // A depth-first search that reports the first cycle it closes, with the files behind it.
    fn visit(
        at: &str,
        edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(from) = path.iter().position(|m| m == at) {
            let mut cycle = path[from..].to_vec();
            cycle.push(at.to_string());
            return Some(cycle);
        }
        if !done.insert(at.to_string()) {
            return None;
        }
        path.push(at.to_string());
        for next in edges.get(at).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in &modules {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            let why: Vec<String> =
                cycle.windows(2).map(|w| format!("{} -> {} in {:?}", w[0], w[1], edges[&w[0]][&w[1]])).collect();
            panic!("core's modules import each other in a circle: {}\n{}", cycle.join(" -> "), why.join("\n"));
        }
    }
}
