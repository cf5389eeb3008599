//! Keeps this crate as ARCHITECTURE.md describes it: the module graph acyclic, with actor
//! modules importing one another only to start one another (every `crate::<module>` path
//! outside comments counts), and the table of messages naming every message and its module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules that define an actor.
const ACTORS: &[&str] = &[
    "router",
    "accumulator",
    "connection",
    "metadata",
    "interceptor",
    "sealer",
    "transaction",
];

/// The only imports of an actor module by another: the importer starts the imported actor.
/// (`producer`, the wiring, starts the router, the metadata actor and the sealer.)
const STARTS: &[(&str, &str)] = &[
    ("router", "accumulator"),
    ("router", "interceptor"),
    ("metadata", "connection"),
];

/// Every source file of the crate, with its path below `src/`.
fn sources() -> Vec<(std::path::PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("a source file");
            let relative = file.strip_prefix(&src).expect("under src").to_path_buf();
            (relative, text)
        })
        .collect()
}

/// Top-level module of every source file, and the top-level modules its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (relative, text) in sources() {
        let first = relative.components().next().expect("a file name");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "architecture" {
            continue;
        }
        let used = graph.entry(module.clone()).or_default();
        used.extend(named_modules(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

/// The top-level modules `text` names through `crate::` paths outside line comments, those
/// in a brace group (`use crate::{router::Router, shared::Shared};`, over several lines too)
/// included.
fn named_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.insert(ident(rest));
            continue;
        };
        // Each item of the group at its top level names a module first.
        let mut depth = 0;
        let mut item_start = true;
        for (i, c) in group.char_indices() {
            if item_start && depth == 0 && !c.is_whitespace() {
                names.insert(ident(&group[i..]));
                item_start = false;
            }
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                _ => {}
            }
        }
    }
    names.remove("");
    names
}

#[test]
fn crate_paths_in_brace_groups_are_imports_too() {
    let text = "use crate::{\n    router::{Route, Router},\n    shared::Shared,\n};\n\
                // crate::metadata in a comment\n\
                let x = crate::cluster::View::default();\n\
                use crate::{memory, backoff::delay};\n";
    let names: Vec<String> = named_modules(text).into_iter().collect();
    assert_eq!(names, ["backoff", "cluster", "memory", "router", "shared"]);
}

#[test]
fn actor_modules_import_each_other_only_to_start_one_another() {
    for (module, used) in imports() {
        for u in used {
            let actor_to_actor = ACTORS.contains(&module.as_str()) && ACTORS.contains(&u.as_str());
            if actor_to_actor {
                assert!(
                    STARTS.contains(&(module.as_str(), u.as_str())),
                    "{module} imports the actor module {u} without starting it: put what they \
                     share in a module that knows no actor (messages, cluster, shared, ...)"
                );
            }
            if !ACTORS.contains(&module.as_str()) && module != "producer" {
                assert!(
                    !ACTORS.contains(&u.as_str()) && u != "producer",
                    "{module} knows no actor, but imports {u}"
                );
            }
        }
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = imports();
    // Depth-first search; a module met again while on the stack closes a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = stack.iter().position(|s| *s == m) {
            panic!("module cycle: {} -> {m}", stack[at..].join(" -> "));
        }
        stack.push(m);
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, stack, done);
        }
        stack.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph.contains_key("router") && graph.contains_key("messages"));
}

/// The module path of a source file: `messages/cluster.rs` is `messages::cluster`,
/// `connection/mod.rs` is `connection`.
fn module_path(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// Every actix message defined in the crate (outside tests), with its module.
fn messages() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (relative, text) in sources() {
        let module = module_path(&relative);
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let mut derives_message = false;
        for line in code.lines().map(str::trim) {
            if line.starts_with("#[derive(") {
                derives_message = line.contains("Message");
            } else if let Some(rest) = line
                .strip_prefix("impl Message for ")
                .or_else(|| line.strip_prefix("impl actix::Message for "))
            {
                let name = rest.trim_end_matches(" {");
                found.insert(name.to_string(), module.clone());
            } else if line.starts_with("pub")
                || line.starts_with("struct")
                || line.starts_with("enum")
            {
                if derives_message {
                    let after = line
                        .split("struct ")
                        .nth(1)
                        .or_else(|| line.split("enum ").nth(1))
                        .expect("a struct or enum name");
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    found.insert(name.to_string(), module.clone());
                }
                derives_message = false;
            }
        }
    }
    found
}

#[test]
fn the_message_table_names_every_message_and_its_module() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md");
    let doc = std::fs::read_to_string(doc).expect("ARCHITECTURE.md");
    let mut table = BTreeMap::new();
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        let module = cells[4].split('`').nth(1).unwrap_or_default();
        table.insert(name.to_string(), module.to_string());
    }
    let code = messages();
    assert!(code.len() > 20, "messages found in the code: {code:?}");
    for (name, module) in &code {
        assert_eq!(
            table.get(name),
            Some(module),
            "ARCHITECTURE.md's message table: `{name}` should be listed in `{module}`"
        );
    }
    for name in table.keys() {
        assert!(
            code.contains_key(name),
            "ARCHITECTURE.md lists `{name}`, which the code does not define"
        );
    }
}
