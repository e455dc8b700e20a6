//! Dependencies point one way: a check that fails, naming the cycle, when the crate's top-level
//! modules (`app`, `cluster`, `domain`, `service`, ...) import each other in a circle, and one
//! that does the same for files (`cluster/redis/fanout.rs` and `outage.rs` did, through split
//! `impl` blocks); see [`file_graph`] for how a path lands on a file.
//!
//! The module graph is read from the source text: every `crate::x` path (in `use` lines, grouped
//! `use crate::{x, y::z}` imports and inline paths) in a file under `src/x/` or `src/x.rs` is an
//! edge from its top-level module to `x`. Comments (doc links included) and `#[cfg(test)]`
//! modules do not count: they are not what the library is built from. Names `lib.rs` re-exports
//! (`crate::Config`) count as the module they come from. `super::` paths never leave a
//! top-level module except from its root file, where `super` is the crate: those are read as
//! `crate::` too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where one module first names another: the evidence printed with a cycle.
#[derive(Debug, Clone)]
struct Site {
    file: String,
    line: usize,
    text: String,
}

/// Top-level module -> the modules it names, each with its first site.
type Graph = BTreeMap<String, BTreeMap<String, Site>>;

/// The top-level module a source file belongs to (`None` for the crate root and the binary).
fn top_module(path: &str) -> Option<String> {
    let rel = path.strip_prefix("src/")?;
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Names `lib.rs` re-exports at the crate root (`pub use config::Config;` -> `Config` = `config`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.trim();
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    map
}

/// The source without comments and without `#[cfg(test)]` items (a `mod tests { ... }` block).
fn library_code(src: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = src.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip the item that follows: up to its matching closing brace (or its `;`).
            let mut depth = 0i32;
            let mut opened = false;
            for (_, l) in lines.by_ref() {
                let code = strip_comment(l);
                depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
                opened |= code.contains('{');
                if (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        let code = strip_comment(line);
        if !code.trim().is_empty() {
            out.push((i + 1, code.to_owned()));
        }
    }
    out
}

/// A line up to its `//` comment (not inside a string: good enough for this crate's code).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let bytes = line.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_str = !in_str,
            b'/' if !in_str && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The top-level names a line's `crate::` paths start with (`crate::{a, b::c}` gives a and b).
fn crate_paths(code: &str, root_file: bool) -> Vec<String> {
    let mut names = Vec::new();
    let mut prefixes = vec!["crate::"];
    if root_file {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            // `crate::` only as a path start, not the tail of `mycrate::`.
            let before = rest[..at].chars().next_back();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // One level of grouping is what rustfmt writes for `use crate::{...}`.
                let end = group.find('}').unwrap_or(group.len());
                let mut depth = 0;
                let mut start = 0;
                let inner = &group[..end];
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(ident(&inner[start..i]));
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                names.push(ident(&inner[start..]));
            } else {
                names.push(ident(rest));
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn ident(s: &str) -> String {
    s.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The module graph of a crate given as (path relative to the crate, source) pairs.
fn module_graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = files.iter().filter_map(|(p, _)| top_module(p)).collect();
    let lib = files
        .iter()
        .find(|(p, _)| p == "src/lib.rs")
        .map(|(_, s)| reexports(s))
        .unwrap_or_default();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for (path, src) in files {
        let Some(from) = top_module(path) else {
            continue;
        };
        let root_file = path == &format!("src/{from}.rs") || path == &format!("src/{from}/mod.rs");
        for (line, code) in library_code(src) {
            for name in crate_paths(&code, root_file) {
                let to = if modules.contains(&name) {
                    name
                } else if let Some(m) = lib.get(&name) {
                    m.clone()
                } else {
                    continue;
                };
                if to != from {
                    graph.get_mut(&from).unwrap().entry(to).or_insert(Site {
                        file: path.clone(),
                        line,
                        text: code.trim().to_owned(),
                    });
                }
            }
        }
    }
    graph
}

/// Every import cycle, each as the modules in order with the site of each step (empty: none).
fn cycles(graph: &Graph) -> Vec<String> {
    // Tarjan's strongly connected components; every component of two or more modules holds a
    // cycle, printed as one circuit through it found by a breadth-first search.
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<Vec<&'g str>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph[v].keys().map(String::as_str) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    let mut found = Vec::new();
    for component in t.components.into_iter().filter(|c| c.len() > 1) {
        let members: BTreeSet<&str> = component.iter().copied().collect();
        let start = *members.iter().next().unwrap();
        // Shortest way from `start` back to itself inside the component.
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(v) = queue.pop_front() {
            for w in graph[v].keys().map(String::as_str) {
                if !members.contains(w) {
                    continue;
                }
                if w == start {
                    last = Some(v);
                    break 'search;
                }
                if !prev.contains_key(w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut path = vec![start];
        let mut v = last.expect("a component of two or more modules has a circuit");
        while v != start {
            path.push(v);
            v = prev[v];
        }
        path[1..].reverse();
        path.push(start);
        let steps: Vec<String> = path
            .windows(2)
            .map(|w| {
                let site = &graph[w[0]][w[1]];
                format!(
                    "  {} -> {}: {}:{}: {}",
                    w[0], w[1], site.file, site.line, site.text
                )
            })
            .collect();
        // Every import inside the component: each is a candidate for the one to remove.
        let inside: Vec<String> = members
            .iter()
            .flat_map(|from| {
                graph[*from]
                    .iter()
                    .filter(|(to, _)| members.contains(to.as_str()))
                    .map(move |(to, site)| {
                        format!(
                            "  {from} -> {to}: {}:{}: {}",
                            site.file, site.line, site.text
                        )
                    })
            })
            .collect();
        found.push(format!(
            "module import cycle {}\n{}\n modules in a circle together: {}; their imports of each other:\n{}",
            path.join(" -> "),
            steps.join("\n"),
            members.iter().copied().collect::<Vec<_>>().join(", "),
            inside.join("\n")
        ));
    }
    found
}

/// A file's module path (`src/cluster/redis/fanout.rs` -> `cluster::redis::fanout`, a
/// `mod.rs` names its directory, `src/lib.rs` is the crate root).
fn module_of(path: &str) -> Option<Vec<String>> {
    let rel = path.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    (rel != "main").then_some(parts)
}

/// Every path a line names, as segments from the crate root: `crate::`, `super::` and
/// `self::` paths (grouped ones too), and a `use` of a child module by its bare name.
fn file_paths(code: &str, module: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let trimmed = code.trim_start();
    let used = trimmed
        .strip_prefix("pub use ")
        .or_else(|| trimmed.strip_prefix("pub(crate) use "))
        .or_else(|| trimmed.strip_prefix("pub(super) use "))
        .or_else(|| trimmed.strip_prefix("use "));
    let mut starts: Vec<(usize, Vec<String>)> = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("self::", module.to_vec()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix) {
            let at = from + at;
            from = at + prefix.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut base = base.clone();
            let mut rest = &code[at + prefix.len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            starts.push((code.len() - rest.len(), base));
        }
    }
    if let Some(u) = used {
        let first = ident(u);
        if children.contains(&first) {
            starts.push((code.len() - u.len(), module.to_vec()));
        }
    }
    for (at, base) in starts {
        let rest = &code[at..];
        let mut segments = base;
        let mut rest = rest;
        loop {
            let name = ident(rest);
            if name.is_empty() {
                break;
            }
            rest = &rest[name.len()..];
            segments.push(name);
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let mut path = segments.clone();
                path.extend(
                    item.split("::")
                        .map(ident)
                        .take_while(|s| !s.is_empty() && s != "self"),
                );
                found.push(path);
            }
        } else {
            found.push(segments);
        }
    }
    found
}

/// File -> the files it imports from, each with its first site. A path lands on the file of the
/// longest module it names, or, when that file only re-exports the name (`pub use x::Name`),
/// on the file it comes from: a re-export is not a dependency of its own, so a parent that
/// re-exports its children while they use its items is no circle.
fn file_graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter_map(|(p, _)| module_of(p).map(|m| (m, p.clone())))
        .collect();
    let children = |m: &[String]| -> BTreeSet<String> {
        modules
            .keys()
            .filter(|k| k.len() == m.len() + 1 && k.starts_with(m))
            .map(|k| k[m.len()].clone())
            .collect()
    };
    // Per file: name -> the path it re-exports.
    let mut reexported: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (path, src) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let kids = children(&module);
        for (_, code) in library_code(src) {
            if !code.trim_start().starts_with("pub use ") {
                continue;
            }
            for p in file_paths(&code, &module, &kids) {
                if let Some(name) = p.last() {
                    let alias = code.split(" as ").nth(1).map(ident);
                    reexported
                        .entry(path.clone())
                        .or_default()
                        .insert(alias.unwrap_or_else(|| name.clone()), p.clone());
                }
            }
        }
    }
    let resolve = |segments: &[String]| -> Option<String> {
        let mut at = None;
        for n in (0..=segments.len()).rev() {
            if let Some(file) = modules.get(&segments[..n]) {
                at = Some((file.clone(), segments.get(n).cloned()));
                break;
            }
        }
        let (file, name) = at?;
        let through = name
            .and_then(|n| reexported.get(&file)?.get(&n).cloned())
            .and_then(|p| {
                (0..=p.len())
                    .rev()
                    .find_map(|n| modules.get(&p[..n]).cloned())
            });
        Some(through.unwrap_or(file))
    };
    let mut graph: Graph = files
        .iter()
        .filter(|(p, _)| module_of(p).is_some())
        .map(|(p, _)| (p.clone(), BTreeMap::new()))
        .collect();
    for (path, src) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let kids = children(&module);
        for (line, code) in library_code(src) {
            if code.trim_start().starts_with("pub use ") {
                continue;
            }
            for segments in file_paths(&code, &module, &kids) {
                let Some(to) = resolve(&segments) else {
                    continue;
                };
                if &to != path && to != "src/lib.rs" {
                    graph.get_mut(path).unwrap().entry(to).or_insert(Site {
                        file: path.clone(),
                        line,
                        text: code.trim().to_owned(),
                    });
                }
            }
        }
    }
    graph
}

/// Every `.rs` file under `dir`, as (path relative to `root`, source).
fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

// The crate's own sources: a new import that closes a cycle between top-level modules fails
// here, naming the cycle and the file and line of every import on it.
#[test]
fn the_crate_has_no_module_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    sources(root, &root.join("src"), &mut all);
    let graph = module_graph(&all);
    assert!(
        graph.contains_key("service") && graph.contains_key("cluster"),
        "read src/"
    );
    let found = cycles(&graph);
    assert!(found.is_empty(), "\n{}\n", found.join("\n\n"));
}

// The same at file level: no two files import each other through any path (`fanout.rs` and
// `outage.rs` of `cluster/redis` did, through split `impl` blocks).
#[test]
fn the_crate_has_no_file_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    sources(root, &root.join("src"), &mut all);
    let graph = file_graph(&all);
    assert!(
        graph["src/cluster/redis/fanout.rs"].contains_key("src/cluster/redis/outage.rs"),
        "read src/: {:?}",
        graph["src/cluster/redis/fanout.rs"]
    );
    let found = cycles(&graph);
    assert!(found.is_empty(), "\n{}\n", found.join("\n\n"));
}

#[test]
fn the_file_checker_names_a_circle_of_two_files_in_one_module() {
    let crate_src = files(&[
        ("src/lib.rs", "pub mod m;\n"),
        (
            "src/m/mod.rs",
            "mod a;\nmod b;\npub use a::Ay;\npub struct Top;\n",
        ),
        (
            "src/m/a.rs",
            "use super::b::Bee;\nuse super::Top;\npub struct Ay;\n",
        ),
        ("src/m/b.rs", "pub struct Bee;\nimpl crate::m::Ay {}\n"),
    ]);
    let found = cycles(&file_graph(&crate_src));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("src/m/a.rs -> src/m/b.rs"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("src/m/b.rs:2"), "{}", found[0]);
    // A parent that re-exports a child which uses the parent's items is no circle.
    let graph = file_graph(&crate_src);
    assert!(graph["src/m/a.rs"].contains_key("src/m/mod.rs"));
    assert!(!graph["src/m/mod.rs"].contains_key("src/m/a.rs"));
}

#[test]
fn the_checker_names_a_cycle_in_a_small_crate() {
    let crate_src = files(&[
        (
            "src/lib.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub use c::Thing;\n",
        ),
        ("src/a.rs", "//! A.\nuse crate::b::Bee;\n"),
        ("src/b/mod.rs", "use crate::{c::See, a};\n"),
        ("src/b/inner.rs", "fn f() -> crate::c::See { todo!() }\n"),
        (
            "src/c.rs",
            "pub struct See;\npub struct Thing;\nfn g(_: crate::a::Ay) {}\n",
        ),
    ]);
    let found = cycles(&module_graph(&crate_src));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("module import cycle a -> b -> a"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("src/b/mod.rs:1"), "{}", found[0]);
}

#[test]
fn the_checker_ignores_comments_tests_and_one_way_imports() {
    let crate_src = files(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\npub use a::Ay;\n"),
        ("src/a.rs", "pub struct Ay;\nuse crate::b::Bee;\n"),
        (
            "src/b.rs",
            concat!(
                "//! See [`Ay`](crate::a::Ay).\n",
                "pub struct Bee; // not crate::a\n",
                "#[cfg(test)]\nmod tests {\n    use crate::a::Ay;\n    fn t() { let _ = crate::Ay; }\n}\n",
            ),
        ),
    ]);
    let graph = module_graph(&crate_src);
    assert!(graph["a"].contains_key("b"));
    assert!(graph["b"].is_empty(), "{:?}", graph["b"]);
    assert!(cycles(&graph).is_empty());
    // The same import outside the test module is a cycle, also through a re-export.
    let cyclic = files(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\npub use a::Ay;\n"),
        ("src/a.rs", "pub struct Ay;\nuse crate::b::Bee;\n"),
        ("src/b.rs", "pub struct Bee;\nfn f(_: crate::Ay) {}\n"),
    ]);
    assert_eq!(cycles(&module_graph(&cyclic)).len(), 1);
}
