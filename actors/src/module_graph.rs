//! Keeps the module graph of this crate as ARCHITECTURE.md describes it: acyclic, with
//! actor modules importing one another only to start one another. The test reads the
//! sources and looks at every `crate::<module>` path outside comments.

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
];

/// The only imports of an actor module by another: the importer starts the imported actor.
/// (`producer`, the wiring, starts the router, the metadata actor and the sealer.)
const STARTS: &[(&str, &str)] = &[
    ("router", "accumulator"),
    ("router", "interceptor"),
    ("metadata", "connection"),
];

/// Top-level module of every source file, and the top-level modules its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
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
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a file name");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "module_graph" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        let used = graph.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    used.insert(name);
                }
            }
        }
    }
    graph
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
