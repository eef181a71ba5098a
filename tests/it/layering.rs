//! The layering of `src/`, checked: every `crate::` path in a module's files names a
//! module of a lower layer, and the edges the design forbids never appear. A new
//! top-level module must be given its layer here. The layers, lowest first:
//!
//! | layer | modules | what they are |
//! |---|---|---|
//! | 0 | `stable_hash`, `time`, `secret`, `html` | identity, time as text, secrets, HTML escaping: no I/O |
//! | 1 | `stats`, `telemetry`, `scenario` | pure statistics; counters and the summary; the traffic generator |
//! | 2 | `decode` | raw batches → Arrow |
//! | 3 | `kafka`, `window`, `baseline` | Kafka clients; event time and windows; baseline files |
//! | 4 | `source`, `tables` | where records come from; the window tables |
//! | 5 | `rescore` | the embedded model |
//! | 6 | `rules`, `labels` | the rule engine and templates; delayed labels and the performance tables |
//! | 7 | `alert` | the alert state machine and its receivers |
//! | 8 | `otlp`, `report` | OpenTelemetry export; the HTML report |
//! | 9 | `notify` | the wall-clock side: dispatch, routes, silences, e-mail |
//! | 10 | `http`, `deadletter`, `state` | the API; dead letters; checkpoints |
//! | 11 | `config` | the config file, which gathers every component's section |
//! | 12 | `pipeline` | wires the stages |
//! | 13 | `cli` | the command line |

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("stable_hash", 0),
    ("time", 0),
    ("secret", 0),
    ("html", 0),
    ("stats", 1),
    ("telemetry", 1),
    ("scenario", 1),
    ("decode", 2),
    ("kafka", 3),
    ("window", 3),
    ("baseline", 3),
    ("source", 4),
    ("tables", 4),
    ("rescore", 5),
    ("rules", 6),
    ("labels", 6),
    ("alert", 7),
    ("otlp", 8),
    ("report", 8),
    ("notify", 9),
    ("http", 10),
    ("deadletter", 10),
    ("state", 10),
    ("config", 11),
    ("pipeline", 12),
    ("cli", 13),
];

/// Edges the layers alone would allow but the design forbids.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("rules", "source", "rules read tables, never a source"),
    (
        "alert",
        "source",
        "alerts know rules and windows, not where records came from",
    ),
    ("stats", "telemetry", "statistics are pure"),
    ("stats", "scenario", "statistics are pure"),
];

/// Top-level module of a file under `src/` (`None` for `lib.rs` and `main.rs`), and its
/// module path (`tables/clients/mod.rs` → `[tables, clients]`).
fn module_of(src: &Path, file: &Path) -> Option<(String, Vec<String>)> {
    let rel = file.strip_prefix(src).ok()?;
    let mut path: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = path.pop()?;
    match last.as_str() {
        "mod.rs" => {}
        "lib.rs" | "main.rs" if path.is_empty() => return None,
        f => path.push(f.trim_end_matches(".rs").to_owned()),
    }
    Some((path[0].clone(), path))
}

/// Source text without comments, string literals kept (a path inside a string is not
/// an import, but none of ours look like one).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// First path segments of a `{a::b, c, d::{e, f}}` group starting at `s` (just after
/// the `{`).
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for ch in s.chars() {
        match ch {
            '{' => {
                depth += 1;
                item.push(ch);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                item.push(ch);
            }
            ',' if depth == 0 => heads.push(std::mem::take(&mut item)),
            _ => item.push(ch),
        }
    }
    heads.push(item);
    heads
        .iter()
        .filter_map(|i| {
            let head: String = i
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!head.is_empty() && head != "self").then_some(head)
        })
        .collect()
}

/// Top-level modules a file's text names through `crate::` (and through `super::`
/// chains that climb out of its own top-level module).
fn targets(text: &str, module_path: &[String]) -> BTreeSet<String> {
    let text = strip_comments(text);
    let mut out = BTreeSet::new();
    let ident_end = |s: &str| {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `some_crate::`
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_heads(group));
        } else {
            out.insert(ident_end(rest));
        }
    }
    // `super::super::x` from `a/b/c.rs` ([a, b, c]) reaches `x` at the root.
    for (i, _) in text.match_indices("super::") {
        if text[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        {
            continue; // counted from the first `super` of a chain
        }
        let mut rest = &text[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if ups >= module_path.len() {
            if let Some(group) = rest.strip_prefix('{') {
                out.extend(group_heads(group));
            } else {
                out.insert(ident_end(rest));
            }
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every edge between top-level modules, with the files that make it.
fn edges(src: &Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some((top, path)) = module_of(src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        for t in targets(&text, &path) {
            if t != top {
                let rel = f.strip_prefix(src).unwrap().display().to_string();
                edges.entry((top.clone(), t)).or_default().insert(rel);
            }
        }
    }
    edges
}

fn layer(m: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l)
}

/// Every `crate::` edge between top-level modules goes down the layers; none is on the
/// forbidden list; every top-level module has a layer.
#[test]
fn modules_import_only_from_lower_layers() {
    let src = crate::cli::root().join("src");
    let mut problems = Vec::new();
    let mut tops = BTreeSet::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let m = name.trim_end_matches(".rs").to_owned();
        if m != "lib" && m != "main" {
            tops.insert(m);
        }
    }
    for m in &tops {
        if layer(m).is_none() {
            problems.push(format!("src/{m}: no layer; add it to LAYERS in this test"));
        }
    }
    for ((from, to), files) in edges(&src) {
        // A module without a layer is reported above.
        let (Some(a), Some(b)) = (layer(&from), layer(&to)) else {
            continue;
        };
        let files: Vec<_> = files.into_iter().collect();
        if b >= a {
            problems.push(format!(
                "{from} (layer {a}) uses {to} (layer {b}): {}",
                files.join(", ")
            ));
        }
        if let Some((_, _, why)) = FORBIDDEN.iter().find(|(f, t, _)| *f == from && *t == to) {
            problems.push(format!(
                "{from} uses {to}, forbidden ({why}): {}",
                files.join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// The checker sees what it must: grouped, nested and `super::` paths, and not what it
/// must not (comments, `$crate`, other crates' `crate::`-like names).
#[test]
fn the_layering_check_finds_grouped_nested_and_super_paths() {
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let text = "use crate::{alert::{A, B}, rules, self};\n\
                use crate::window::Spec; // crate::pipeline in a comment\n\
                fn f() { crate::time::rfc3339(0); $crate::x; my_crate::y; }\n\
                use super::super::config::Config;\n\
                use super::Sibling;\n";
    let found = targets(text, &path(&["tables", "clients"]));
    let want: BTreeSet<String> = ["alert", "rules", "window", "time", "config"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, want);
    // From a top-level file, `super::` is the crate root.
    assert!(targets("use super::state::X;", &path(&["decode"])).contains("state"));
    assert!(!targets("use super::raw::X;", &path(&["decode", "mod_x"])).contains("raw"));
}
