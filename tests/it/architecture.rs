//! The shape of the crate: above the bottom layer, the top-level modules under `src/` depend on
//! each other without a cycle, so each one can be read, tested and changed knowing only what is
//! below it. The graph is read from the source text: every `crate::x` path (also inside
//! `use crate::{a::b, c}` groups) and every `super::` that climbs to the crate root names the
//! top-level module `x` it refers to. Comments and string literals are not code and are skipped.
//!
//! The same reading keeps the SQL in `store/` (and the queue's in `sync/`): nowhere else does the
//! crate run a statement (`sqlx::query`, `query_as`, `query_scalar`, …) or reach the pool.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// The bottom layer: modules every feature may use and which are left out of the graph.
const BOTTOM: &[&str] = &[
    "store",      // owns all SQL; every feature reads and writes through it
    "sync",       // the queue, workers and journal every delivery goes through
    "connectors", // the HTTP builder and the one Failure every vendor reports in
    "dialog",     // the pure conversation engine; no network, no vendor
    "domain",     // the shared types: bookings, clients, sources, money
    "clock",      // time, faked in tests
    "normalize",  // phones and e-mails in one form
    "i18n",       // the words clients read
    "metrics",    // counters anything may bump
    "secrets",    // secret checks and log scrubbing
    "shutdown",   // the stop signal
];

/// Where the bottom layer still reaches above itself; each such edge can close a cycle the
/// check above cannot see, so the list may shrink but not grow.
const BOTTOM_REACHES_UP: &[(&str, &str)] = &[
    ("dialog", "support"),     // `Context` carries the admin chat's hours
    ("dialog", "unfinished"),  // a dialog state becomes an unfinished booking's draft
    ("secrets", "config"),     // the scrubber is built from the whole configuration
    ("store", "booking"),      // analytics tests book through the sandbox
    ("store", "config"),       // analytics tests start from the demo configuration
    ("store", "conversation"), // analytics tests drive a chat
];

/// Where SQL may be run: the store owns it, the queue's statements stay with the queue.
const SQL_HOMES: &[&str] = &["src/store/", "src/sync/"];

/// Files outside [`SQL_HOMES`] that still run SQL or reach the pool, each with what it uses
/// and why; the list may shrink but not grow.
const SQL_ELSEWHERE: &[(&str, &str, &str)] = &[];

/// The `sqlx` functions that run a statement.
const SQL_RUNNERS: &[&str] = &[
    "query",
    "query_as",
    "query_scalar",
    "query_with",
    "query_as_with",
    "query_scalar_with",
    "raw_sql",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    /// `.`
    Dot,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

/// Rust source as the tokens that matter for paths, each with its line; comments, string,
/// byte-string and char literals are dropped so that text about a module is no dependency.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal whose opening `"` is at `i`; `hashes` > 0 for raw strings.
    let skip_string = |mut i: usize, raw: bool, hashes: usize, line: &mut usize| -> usize {
        i += 1;
        while i < c.len() {
            match c[i] {
                '\n' => *line += 1,
                '\\' if !raw => {
                    if at(i + 1) == '\n' {
                        *line += 1;
                    }
                    i += 1;
                }
                '"' if (1..=hashes).all(|k| at(i + k) == '#') => return i + 1 + hashes,
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(i, false, 0, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char literal: `'\''`, `'\n'`, `'\u{1F600}'`.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or a label; its name follows as an identifier.
                out.push((Tok::Other, line));
                i += 1;
            }
        } else if is_ident(ch) {
            let start = i;
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            let hashes = (i..).take_while(|&k| at(k) == '#').count();
            if raw_prefix && at(i + hashes) == '"' {
                i = skip_string(i + hashes, true, hashes, &mut line);
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_string(i, false, 0, &mut line);
            } else if word == "b" && at(i) == '\'' {
                // A byte literal: `b'x'`, `b'\''`.
                i += if at(i + 1) == '\\' { 3 } else { 2 };
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if word == "r" && hashes == 1 && is_ident(at(i + 1)) {
                // A raw identifier, `r#type`: the name that follows is the identifier.
                i += 1;
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else {
            let tok = match ch {
                ':' if at(i + 1) == ':' => {
                    i += 1;
                    Tok::Path
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                '.' => Tok::Dot,
                _ => Tok::Other,
            };
            out.push((tok, line));
            i += 1;
        }
    }
    out
}

fn ident(tokens: &[(Tok, usize)], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn is(tokens: &[(Tok, usize)], i: usize, tok: &Tok) -> bool {
    tokens.get(i).is_some_and(|(t, _)| t == tok)
}

/// The first segments of the path(s) that start at `i`: `x` of `x::…`, or `a` and `c` of
/// `{a::b, c}`.
fn heads(tokens: &[(Tok, usize)], i: usize) -> Vec<String> {
    if let Some(name) = ident(tokens, i) {
        return vec![name.to_string()];
    }
    if !is(tokens, i, &Tok::Open) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (tok, _) in &tokens[i..] {
        match tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Comma if depth == 1 => item_start = true,
            Tok::Ident(name) if depth == 1 && item_start => {
                out.push(name.clone());
                item_start = false;
            }
            _ => {}
        }
    }
    out
}

/// The crate-root names one file refers to, with the line of each reference. `depth` is how
/// far below the crate root the file's module is: 1 for `src/x.rs` and `src/x/mod.rs`, 2 for
/// `src/x/y.rs`; inline `mod name { … }` blocks go one deeper.
fn root_references(src: &str, depth: usize) -> Vec<(String, usize)> {
    let tokens = tokens(src);
    let mut out = Vec::new();
    let mut braces = 0usize;
    // The brace depth outside each open inline module.
    let mut inline: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (tok, line) = &tokens[i];
        match tok {
            Tok::Open => braces += 1,
            Tok::Close => {
                braces = braces.saturating_sub(1);
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
            }
            Tok::Ident(word)
                if word == "mod"
                    && ident(&tokens, i + 1).is_some()
                    && is(&tokens, i + 2, &Tok::Open) =>
            {
                inline.push(braces);
            }
            Tok::Ident(word) if word == "crate" && is(&tokens, i + 1, &Tok::Path) => {
                out.extend(heads(&tokens, i + 2).into_iter().map(|h| (h, *line)));
            }
            Tok::Ident(word) if word == "super" && is(&tokens, i + 1, &Tok::Path) => {
                let mut up = 0;
                let mut j = i;
                while ident(&tokens, j) == Some("super") && is(&tokens, j + 1, &Tok::Path) {
                    up += 1;
                    j += 2;
                }
                if depth + inline.len() == up {
                    out.extend(heads(&tokens, j).into_iter().map(|h| (h, *line)));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The modules `src/lib.rs` declares: the top level of the crate.
fn top_level_modules(lib: &str) -> BTreeSet<String> {
    let tokens = tokens(lib);
    let mut out = BTreeSet::new();
    let mut braces = 0usize;
    for i in 0..tokens.len() {
        match &tokens[i].0 {
            Tok::Open => braces += 1,
            Tok::Close => braces = braces.saturating_sub(1),
            Tok::Ident(word) if word == "mod" && braces == 0 => {
                if let Some(name) = ident(&tokens, i + 1)
                    && is(&tokens, i + 2, &Tok::Semi)
                {
                    out.insert(name.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Where an edge was seen first: file (relative to the crate) and line.
type Evidence = (String, usize);
type Graph = BTreeMap<String, BTreeMap<String, Evidence>>;

/// Every top-level module and the other top-level modules its files refer to.
fn module_graph(root: &Path) -> (BTreeSet<String>, Graph) {
    let src = root.join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let modules = top_level_modules(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        // lib.rs only declares the modules; main.rs is the binary, a crate of its own.
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        let top = parts[0].clone();
        assert!(
            modules.contains(&top),
            "{} belongs to no module src/lib.rs declares",
            rel.display()
        );
        let text = std::fs::read_to_string(&file).expect("readable source");
        let shown = format!("src/{}", rel.display());
        for (name, line) in root_references(&text, parts.len()) {
            if name != top && modules.contains(&name) {
                graph
                    .get_mut(&top)
                    .expect("every module has a row")
                    .entry(name)
                    .or_insert_with(|| (shown.clone(), line));
            }
        }
    }
    (modules, graph)
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

/// A shortest cycle through `start` inside `component`: `[start, …, start]`.
fn cycle_through(
    graph: &BTreeMap<String, BTreeSet<String>>,
    component: &[String],
    start: &str,
) -> Vec<String> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            if !component.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start.to_string(), v.to_string()];
                let mut at = v;
                while at != start {
                    at = came_from[at];
                    path.push(at.to_string());
                }
                path.reverse();
                return path;
            }
            if !came_from.contains_key(w.as_str()) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    Vec::new()
}

fn without_bottom(graph: &Graph) -> BTreeMap<String, BTreeSet<String>> {
    graph
        .iter()
        .filter(|(m, _)| !BOTTOM.contains(&m.as_str()))
        .map(|(m, deps)| {
            let deps = deps
                .keys()
                .filter(|d| !BOTTOM.contains(&d.as_str()))
                .cloned()
                .collect();
            (m.clone(), deps)
        })
        .collect()
}

#[test]
fn the_modules_above_the_bottom_layer_depend_on_each_other_without_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (modules, graph) = module_graph(root);
    for bottom in BOTTOM {
        assert!(
            modules.contains(*bottom),
            "the bottom layer names `{bottom}`, which src/lib.rs does not declare"
        );
    }
    // The scan reads the tree: the top of the crate builds the deployment from its config.
    assert!(
        graph["app"].contains_key("config") && graph["cli"].contains_key("app"),
        "the scan found none of the known dependencies: {graph:#?}"
    );
    let upper = without_bottom(&graph);
    let found = cycles(&upper);
    let mut report = String::new();
    for component in &found {
        let cycle = cycle_through(&upper, component, &component[0]);
        report.push_str(&format!(
            "\ncycle: {}\nall the modules that reach each other: {}\nthe edges among them:\n",
            cycle.join(" → "),
            component.join(", ")
        ));
        for from in component {
            for (to, (file, line)) in &graph[from] {
                if component.contains(to) {
                    report.push_str(&format!("  {from} → {to}  ({file}:{line})\n"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "top-level modules above the bottom layer ({}) depend on each other in a cycle; \
         move what the lower one needs down to it, or pass it in, instead:{report}",
        BOTTOM.join(", ")
    );
}

#[test]
fn the_bottom_layer_reaches_up_no_further_than_it_did() {
    let (_, graph) = module_graph(Path::new(env!("CARGO_MANIFEST_DIR")));
    let mut found = BTreeMap::new();
    for bottom in BOTTOM {
        for (to, evidence) in &graph[*bottom] {
            if !BOTTOM.contains(&to.as_str()) {
                found.insert((bottom.to_string(), to.clone()), evidence.clone());
            }
        }
    }
    let known: BTreeSet<(String, String)> = BOTTOM_REACHES_UP
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<String> = found
        .iter()
        .filter(|(edge, _)| !known.contains(*edge))
        .map(|((a, b), (file, line))| format!("{a} → {b} ({file}:{line})"))
        .collect();
    assert!(
        new.is_empty(),
        "the bottom layer reaches up to a module above it: {new:?}; move what it needs down"
    );
    let gone: Vec<&(String, String)> = known.iter().filter(|e| !found.contains_key(*e)).collect();
    assert!(
        gone.is_empty(),
        "no longer used, remove from BOTTOM_REACHES_UP so it cannot come back: {gone:?}"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_a_cycle() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let looped = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")]);
    let found = cycles(&looped);
    assert_eq!(found, [["a", "b", "c"]]);
    assert_eq!(cycle_through(&looped, &found[0], "a"), ["a", "b", "c", "a"]);
    let two = graph(&[("x", "y"), ("y", "x"), ("p", "q"), ("q", "p"), ("x", "p")]);
    assert_eq!(cycles(&two).len(), 2);
    let layered = graph(&[("a", "b"), ("a", "c"), ("b", "c"), ("c", "d")]);
    assert!(cycles(&layered).is_empty());
}

#[test]
fn the_scan_reads_every_path_form_the_crate_uses_and_nothing_else() {
    let src = r##"
        //! Docs name `crate::docs_only`.
        use crate::alpha::Thing;
        use crate::{beta::{One, two::Three}, gamma, delta::Four as F};
        use super::sibling;
        pub(crate) fn f() -> crate::epsilon::E {
            let _ = "crate::in_a_string";
            let _ = r#"crate::in_a_raw_string " "#;
            let _ = b"crate::in_bytes";
            let _ = ('"', '\'', b'"', b'\'', '{');
            /* crate::in_a_block /* nested */ crate::still_comment */
            fn g<'a>(x: &'a str) -> &'a str { x }
            crate::zeta::call();
            $crate::eta::from_a_macro();
        }
        mod tests {
            use super::*;
            use super::super::theta;
            mod deeper {
                use super::super::super::iota;
            }
        }
        use super::super::kappa;
        "##;
    // As `src/x/y.rs`: two levels below the crate root.
    let names: Vec<String> = root_references(src, 2)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        names,
        [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "kappa"
        ]
    );
    // As `src/x.rs`: `super::` is the crate root outside the inline modules.
    let names: Vec<String> = root_references(src, 1)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        names,
        [
            "alpha", "beta", "gamma", "delta", "sibling", "epsilon", "zeta", "eta", "theta", "iota"
        ]
    );
    let lib = "//! x\npub mod a;\nmod b;\n#[cfg(test)]\nmod c { mod inner; }\n";
    assert_eq!(
        top_level_modules(lib),
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
}

/// What in one file runs SQL or reaches the pool, with its line: `sqlx::query…` (also brought
/// in by `use sqlx::{query, …}`), a `.pool()` call and the tests' `raw_pool`.
fn sql_uses(src: &str) -> Vec<(String, usize)> {
    let tokens = tokens(src);
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        let line = tokens[i].1;
        match ident(&tokens, i) {
            Some("sqlx") if is(&tokens, i + 1, &Tok::Path) => {
                for name in heads(&tokens, i + 2) {
                    if SQL_RUNNERS.contains(&name.as_str()) {
                        out.push((format!("sqlx::{name}"), line));
                    }
                }
            }
            Some("pool") if i > 0 && is(&tokens, i - 1, &Tok::Dot) => {
                out.push((".pool()".to_string(), line));
            }
            Some("raw_pool") => out.push(("raw_pool".to_string(), line)),
            _ => {}
        }
    }
    out
}

/// Every use of SQL or of the pool in `src/` outside [`SQL_HOMES`]: file, what, line.
fn sql_outside_its_homes(root: &Path) -> Vec<(String, String, usize)> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root).expect("under the crate");
        let shown = rel
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if SQL_HOMES.iter().any(|home| shown.starts_with(home)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (what, line) in sql_uses(&text) {
            out.push((shown.clone(), what, line));
        }
    }
    out
}

#[test]
fn sql_runs_only_in_the_store_and_the_queue() {
    let found = sql_outside_its_homes(Path::new(env!("CARGO_MANIFEST_DIR")));
    let known = |file: &str, what: &str| {
        SQL_ELSEWHERE
            .iter()
            .any(|(f, w, _)| *f == file && *w == what)
    };
    let new: Vec<String> = found
        .iter()
        .filter(|(file, what, _)| !known(file, what))
        .map(|(file, what, line)| format!("{file}:{line}: {what}"))
        .collect();
    assert!(
        new.is_empty(),
        "SQL outside {}: {new:#?}; add a method to the store (store/<aggregate>.rs) and call \
         that instead",
        SQL_HOMES.join(" and ")
    );
    let gone: Vec<&(&str, &str, &str)> = SQL_ELSEWHERE
        .iter()
        .filter(|(f, w, _)| !found.iter().any(|(file, what, _)| file == f && what == w))
        .collect();
    assert!(
        gone.is_empty(),
        "no longer used, remove from SQL_ELSEWHERE so it cannot come back: {gone:?}"
    );
}

#[test]
fn the_sql_scan_sees_statements_and_the_pool_in_code_only() {
    let src = r##"
        //! Docs mention `sqlx::query` and `store.pool()`.
        use sqlx::{Row, query_scalar};
        async fn f(store: &Store) {
            let _ = "sqlx::query(\"SELECT 1\").execute(store.pool())";
            /* sqlx::query_as */
            sqlx::query("SELECT 1")
                .execute(store.pool())
                .await;
            let _ = sqlx::query_as::<_, (i64,)>("SELECT 1");
            let _ = zapis::store::test_support::raw_pool(&store);
            let _ = store.pooled();
            let _ = sqlx::Row::try_get;
            let _ = pool();
        }
        "##;
    let found: Vec<(String, usize)> = sql_uses(src);
    assert_eq!(
        found,
        [
            ("sqlx::query_scalar".to_string(), 3),
            ("sqlx::query".to_string(), 7),
            (".pool()".to_string(), 8),
            ("sqlx::query_as".to_string(), 10),
            ("raw_pool".to_string(), 11),
        ]
    );
}

/// DESIGN.md: "no source file over ~800 lines without a reason in its header". A file longer
/// than this says in its `//!` header, after `Long file:`, why it stays whole.
const LONG_FILE: usize = 850;

/// The `//!` lines a file opens with.
fn header(text: &str) -> String {
    text.lines()
        .take_while(|l| l.trim_start().starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_source_file_is_long_without_a_reason_in_its_header() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 100, "read only {} files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(file).expect("readable source");
            let lines = text.lines().count();
            let reason = header(&text)
                .split_once("Long file:")
                .is_some_and(|(_, why)| why.trim().len() >= 20);
            (lines > LONG_FILE && !reason).then(|| {
                let rel = file.strip_prefix(root).expect("under the crate");
                format!("{} ({lines} lines)", rel.display())
            })
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these along their seams, or say in their header after `Long file:` why they \
         stay whole: {long:#?}"
    );
}

#[test]
fn a_long_files_reason_is_read_from_its_header_only() {
    let with = "//! The exchange.\n//!\n//! Long file: one state machine read top to bottom.\n\
                use x;\n";
    assert!(header(with).contains("Long file: one state machine"));
    let in_code = "//! The exchange.\nuse x;\n// Long file: not a header\n";
    assert!(!header(in_code).contains("Long file:"));
}
