//! A test of the tree's shape, not of its behaviour: it reads every `src/**/*.rs` file
//! at test time, collects the paths each one names into the crate (`crate::x`,
//! `super::x`, a child `x::`, `mfad::x` in `main.rs`), and checks STYLE's one direction
//! of dependence: `main` → `cli`/`lib` → `http` → `service` → `store` → leaves, with
//! `config` read by all and importing only leaves, `http` never naming the store and
//! `log` naming nothing of ours. A folder (`http/`, `service/`, `store/`, …) is one
//! module; between the files of one folder, only circles are refused (a file using its
//! folder's `mod.rs`, which re-exports it, is how a folder is built). Comments and
//! string literals are skipped, so a doc link is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module's layer: a module may name its own layer or one below.
const LAYERS: [(&str, u8); 21] = [
    ("main", 6),
    ("cli", 5),
    ("lib", 5),
    ("http", 4),
    ("service", 3),
    ("store", 2),
    ("access", 1),
    ("auth", 1),
    ("crypto", 1),
    ("durability", 1),
    ("error", 1),
    ("json", 1),
    ("log", 1),
    ("metrics", 1),
    ("oidc", 1),
    ("qr", 1),
    ("time", 1),
    ("totp", 1),
    ("web", 1),
    ("webauthn", 1),
    // Read by every layer; it may name leaves only (checked apart).
    ("config", 0),
];
const LEAF: u8 = 1;

/// Named by no one of ours but `main`, `cli`, `lib`: nothing else may.
const NAMES_NOTHING: [&str; 1] = ["log"];
/// (who, what): `http` hands requests to `App`, which owns the `Db`.
const NEVER: [(&str, &str); 1] = [("http", "store")];

/// This file: a test of the tree, not part of it.
const SELF: &str = "layers";

/// One module (a file) by its path from the crate root: `["service", "passkey"]`.
type Module = Vec<String>;

/// Where a reference was found, for the report.
#[derive(Debug, Clone)]
struct Seen {
    file: String,
    line: usize,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file is: `lib.rs` → `[]`, `main.rs` → `["main"]` (a crate of its own,
/// which names the library as `mfad::`), `x/mod.rs` → `["x"]`, `x/y.rs` → `["x", "y"]`.
fn module_of(relative: &Path) -> Module {
    let mut segments: Module = relative
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if segments.last().is_some_and(|s| s == "mod") {
        segments.pop();
    }
    if segments == ["lib"] {
        segments.clear();
    }
    segments
}

/// The source with comments and the contents of string and char literals blanked (line
/// breaks kept, so that line numbers still hold).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(chars[i - 1]))
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(&ch) => out.push(blank(ch)),
                }
                j += 1;
            }
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), left as it is.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads a path from `at` (just after a `::`): its segments, or a `{…}` group of paths;
/// each full path (`prefix` + what follows) is pushed to `out`.
fn read_path(chars: &[char], mut at: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let skip_space = |mut k: usize| {
        while chars.get(k).is_some_and(|c| c.is_whitespace()) {
            k += 1;
        }
        k
    };
    let mut path = prefix;
    loop {
        at = skip_space(at);
        match chars.get(at) {
            Some('{') => {
                // A group: each member is a path of its own under `path`.
                let mut depth = 0;
                let mut start = at + 1;
                let mut k = at;
                while let Some(&c) = chars.get(k) {
                    match c {
                        '{' => depth += 1,
                        '}' | ',' if depth == 1 => {
                            read_path(&chars[..k], start, path.clone(), out);
                            start = k + 1;
                            if c == '}' {
                                return;
                            }
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                    k += 1;
                }
                return;
            }
            Some(&c) if is_ident(c) => {
                let begin = at;
                while chars.get(at).is_some_and(|c| is_ident(*c)) {
                    at += 1;
                }
                path.push(chars[begin..at].iter().collect());
                let after = skip_space(at);
                if chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':') {
                    at = after + 2;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// What a module re-exports (`pub use x::Name;`): (module, name) → the module the
/// name comes from. A path through a re-export depends on where the item lives
/// (`crate::unix_now` on `time`), not on the module that passes it on.
type ReExports = BTreeMap<(Module, String), Module>;

/// Every path the code names that starts at the crate (`crate::`, `mfad::` in
/// `main.rs`), at a parent (`super::`), at itself (`self::`) or at one of its child
/// modules (`child::`), made absolute from the crate root: the module it lands in, what
/// follows it, the line, and whether it is a `pub use`.
fn references(
    code: &str,
    module: &Module,
    modules: &BTreeSet<Module>,
) -> Vec<(Module, Vec<String>, usize, bool)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // Inline modules (`mod tests { … }`) by name and the brace depth they opened at.
    let mut depth = 0usize;
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    // The words before the current one: `pub use` makes a re-export.
    let mut last_words: Vec<String> = Vec::new();
    let mut in_pub_use = false;
    while i < chars.len() {
        match chars[i] {
            '\n' => line += 1,
            '{' => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
            }
            '}' => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            ';' => {
                pending_mod = None;
                in_pub_use = false;
            }
            _ => {}
        }
        let starts_path = is_ident(chars[i])
            && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':'))
            && !(i >= 1 && chars[i - 1] == '$');
        if !starts_path {
            i += 1;
            continue;
        }
        let mut end = i;
        while chars.get(end).is_some_and(|c| is_ident(*c)) {
            end += 1;
        }
        let word: String = chars[i..end].iter().collect();
        if last_words.last().is_some_and(|w| w == "mod") {
            pending_mod = Some(word.clone());
        }
        if word == "use" {
            in_pub_use = last_words.iter().rev().take(2).any(|w| w == "pub");
        }
        let is_path = chars.get(end) == Some(&':') && chars.get(end + 1) == Some(&':');
        if !is_path {
            last_words.push(word);
            if last_words.len() > 3 {
                last_words.remove(0);
            }
            i = end;
            continue;
        }
        let mut here = module.clone();
        here.extend(inline.iter().map(|(n, _)| n.clone()));
        let mut paths = Vec::new();
        read_path(&chars, i, Vec::new(), &mut paths);
        for path in paths {
            if let Some((target, rest)) = resolve(&path, &here, module, modules) {
                found.push((target, rest, line, in_pub_use));
            }
        }
        i = end;
    }
    found
}

/// The module `path` (as written in `here`, inside the file of `module`) lands in, if
/// it is one of ours, and the segments that follow it.
fn resolve(
    path: &[String],
    here: &Module,
    module: &Module,
    modules: &BTreeSet<Module>,
) -> Option<(Module, Vec<String>)> {
    let main = module.first().is_some_and(|m| m == "main");
    let mut at: Module = here.clone();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            if main {
                return None;
            }
            at.clear();
            rest = &rest[1..];
        }
        Some("mfad") if main => {
            at.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                at.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) => {
            if main {
                return None;
            }
            // A child of where the path is written, or (through `use super::*` in an
            // inline test module) of the file's own module.
            let child = |m: &Module| {
                let mut c = m.clone();
                c.push(first.to_string());
                modules.contains(&c).then_some(m.clone())
            };
            at = child(here).or_else(|| child(module))?;
        }
        None => return None,
    }
    // Inside an inline module: its file's module.
    while !at.is_empty() && !modules.contains(&at) {
        at.pop();
    }
    // The longest module the path names; a name that is no module is an item of `at`.
    let mut used = 0;
    for segment in rest {
        let mut deeper = at.clone();
        deeper.push(segment.clone());
        if !modules.contains(&deeper) {
            break;
        }
        at = deeper;
        used += 1;
    }
    Some((at, rest[used..].to_vec()))
}

/// Where a path that lands in `module` with `rest` after it depends on: through the
/// re-exports, the module its item comes from.
fn follow(mut module: Module, rest: &[String], re_exports: &ReExports) -> Module {
    for _ in 0..8 {
        match rest
            .first()
            .and_then(|name| re_exports.get(&(module.clone(), name.clone())))
        {
            Some(from) if *from != module => module = from.clone(),
            _ => break,
        }
    }
    module
}

/// A module's top-level name: `lib` for the crate root.
fn top(module: &Module) -> String {
    module.first().cloned().unwrap_or_else(|| "lib".into())
}

/// A circle in `edges`, as the modules on it, if there is one.
fn circles<N: Ord + Clone>(edges: &BTreeMap<(N, N), Seen>) -> Vec<Vec<N>> {
    let mut next: BTreeMap<N, Vec<N>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        next.entry(a.clone()).or_default().push(b.clone());
    }
    let mut found = Vec::new();
    let mut done: BTreeSet<N> = BTreeSet::new();
    for start in next.keys() {
        // A depth-first walk with its path: an edge back onto the path is a circle.
        let mut stack: Vec<(N, usize)> = vec![(start.clone(), 0)];
        let mut on_path: Vec<N> = vec![start.clone()];
        while let Some((node, i)) = stack.pop() {
            let targets = next.get(&node).cloned().unwrap_or_default();
            if let Some(t) = targets.get(i) {
                stack.push((node, i + 1));
                if let Some(at) = on_path.iter().position(|n| n == t) {
                    let circle = on_path[at..].to_vec();
                    let mut key = circle.clone();
                    key.sort();
                    if !found.iter().any(|c: &Vec<N>| {
                        let mut k = c.clone();
                        k.sort();
                        k == key
                    }) {
                        found.push(circle);
                    }
                } else if !done.contains(t) {
                    stack.push((t.clone(), 0));
                    on_path.push(t.clone());
                }
            } else {
                on_path.pop();
                done.insert(node);
            }
        }
    }
    found
}

/// Every edge of the tree: (from module, to module) → where it was first seen.
fn edges_of(src: &Path) -> BTreeMap<(Module, Module), Seen> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Module> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(src).unwrap()))
        .collect();
    let mut read = Vec::new();
    let mut re_exports = ReExports::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap();
        let module = module_of(relative);
        if module.first().is_some_and(|m| m == SELF) {
            continue;
        }
        let code = code_only(&fs::read_to_string(file).unwrap());
        let found = references(&code, &module, &modules);
        for (target, rest, _, public) in &found {
            if let (true, [name]) = (*public, rest.as_slice()) {
                re_exports.insert((module.clone(), name.clone()), target.clone());
            }
        }
        read.push((format!("src/{}", relative.display()), module, found));
    }
    let mut edges = BTreeMap::new();
    for (file, module, found) in read {
        for (target, rest, line, _) in found {
            let target = follow(target, &rest, &re_exports);
            if target != module {
                edges
                    .entry((module.clone(), target))
                    .or_insert_with(|| Seen {
                        file: file.clone(),
                        line,
                    });
            }
        }
    }
    edges
}

/// What is wrong with `edges`, one line each (empty when the tree has the shape).
fn offences(edges: &BTreeMap<(Module, Module), Seen>) -> Vec<String> {
    let layer = |m: &str| LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l);
    let mut wrong = Vec::new();
    let mut tops: BTreeMap<(String, String), Seen> = BTreeMap::new();
    let mut inner: BTreeMap<(Module, Module), Seen> = BTreeMap::new();
    for ((from, to), seen) in edges {
        let (a, b) = (top(from), top(to));
        if a != b {
            tops.entry((a, b)).or_insert_with(|| seen.clone());
        } else if !(from.starts_with(to) || to.starts_with(from)) {
            // Two files of one folder, neither the other's parent.
            inner.insert((from.clone(), to.clone()), seen.clone());
        }
    }
    for ((a, b), seen) in &tops {
        let at = format!("{}:{}", seen.file, seen.line);
        let (Some(la), Some(lb)) = (layer(a), layer(b)) else {
            let unknown = if layer(a).is_none() { a } else { b };
            wrong.push(format!(
                "{unknown} has no layer in LAYERS ({a} -> {b}, {at})"
            ));
            continue;
        };
        let upward = match (a.as_str(), b.as_str()) {
            (_, "config") => false,
            ("config", _) => lb != LEAF,
            _ => lb > la,
        };
        if upward {
            wrong.push(format!("upward: {a} -> {b} ({at})"));
        }
        if NAMES_NOTHING.contains(&a.as_str()) {
            wrong.push(format!("{a} names nothing of ours: {a} -> {b} ({at})"));
        }
        if NEVER.contains(&(a.as_str(), b.as_str())) {
            wrong.push(format!("{a} never names {b}: {a} -> {b} ({at})"));
        }
    }
    let show = |m: &Module| format!("{} ", m.join("::"));
    for circle in circles(&tops) {
        let mut steps = Vec::new();
        for (i, a) in circle.iter().enumerate() {
            let b = &circle[(i + 1) % circle.len()];
            let seen = &tops[&(a.clone(), b.clone())];
            steps.push(format!("{a} -> {b} ({}:{})", seen.file, seen.line));
        }
        wrong.push(format!("circle: {}", steps.join(", ")));
    }
    for circle in circles(&inner) {
        let mut steps = Vec::new();
        for (i, a) in circle.iter().enumerate() {
            let b = &circle[(i + 1) % circle.len()];
            let seen = &inner[&(a.clone(), b.clone())];
            steps.push(format!(
                "{}-> {}({}:{})",
                show(a),
                show(b),
                seen.file,
                seen.line
            ));
        }
        wrong.push(format!("circle inside a folder: {}", steps.join(", ")));
    }
    wrong
}

#[test]
fn the_tree_has_one_direction_of_dependence() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges_of(&src);
    let mut tops: BTreeSet<(String, String)> = BTreeSet::new();
    for (a, b) in edges.keys() {
        if top(a) != top(b) {
            tops.insert((top(a), top(b)));
        }
    }
    // Seen when run with --nocapture: the whole picture, one edge a line.
    for (a, b) in &tops {
        println!("{a} -> {b}");
    }
    // The picture is the tree's, not an empty one: the reader found the edges.
    for known in [("http", "service"), ("service", "store"), ("main", "cli")] {
        assert!(
            tops.contains(&(known.0.to_string(), known.1.to_string())),
            "the reader missed {known:?}"
        );
    }
    let wrong = offences(&edges);
    assert!(wrong.is_empty(), "\n{}\n", wrong.join("\n"));
}

#[test]
fn the_reader_finds_paths_and_skips_comments_and_strings() {
    let modules: BTreeSet<Module> = [
        vec![],
        vec!["http".to_string()],
        vec!["service".to_string()],
        vec!["service".to_string(), "passkey".to_string()],
        vec!["service".to_string(), "login".to_string()],
        vec!["store".to_string()],
    ]
    .into_iter()
    .collect();
    let here = vec!["service".to_string()];
    let code = code_only(
        "use crate::{store::{Db, Tx}, http};\n\
         // crate::nothing\n\
         let s = \"crate::nothing\"; let c = '\"'; fn f<'a>() {}\n\
         passkey::judge(); super::unix_now(); self::login::x();\n",
    );
    let mut found: Vec<(String, usize)> = references(&code, &here, &modules)
        .into_iter()
        .map(|(m, _, line, _)| (m.join("::"), line))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (String::new(), 4),
            ("http".into(), 1),
            ("service::login".into(), 4),
            ("service::passkey".into(), 4),
            ("store".into(), 1),
            ("store".into(), 1),
        ]
    );
}

#[test]
fn a_circle_and_an_upward_edge_are_reported_with_where_they_are() {
    let m = |s: &str| -> Module { s.split("::").map(String::from).collect() };
    let seen = |line| Seen {
        file: "src/x.rs".into(),
        line,
    };
    let edges: BTreeMap<(Module, Module), Seen> = [
        ((m("service::mfa"), m("store")), seen(1)),
        ((m("store::sqlite"), m("service")), seen(2)),
        ((m("config"), m("http")), seen(3)),
        (
            (m("service::passkey"), m("service::second_factor")),
            seen(4),
        ),
        (
            (m("service::second_factor"), m("service::passkey")),
            seen(5),
        ),
        ((m("service::login"), m("service")), seen(6)),
    ]
    .into_iter()
    .collect();
    let wrong = offences(&edges);
    assert_eq!(
        wrong,
        [
            "upward: config -> http (src/x.rs:3)",
            "upward: store -> service (src/x.rs:2)",
            "circle: service -> store (src/x.rs:1), store -> service (src/x.rs:2)",
            "circle inside a folder: service::passkey -> service::second_factor (src/x.rs:4), \
             service::second_factor -> service::passkey (src/x.rs:5)",
        ]
    );
}
