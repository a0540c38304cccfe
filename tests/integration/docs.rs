//! The guides' pointers stay true: every test and every file that README.md and README.es.md
//! name in backticks exists in the checkout.
//!
//! A test is named as `cargo test -- --list` prints it: `proxy::round_robin_…` is a `fn` in
//! tests/integration/proxy.rs, `cache::store::tests::…` a unit test in src/cache/store.rs
//! (the `tests` module is the file's own). A path of modules alone (`proxy::routing`) names a
//! module, a file or folder under src/; paths of other crates (`std::net`) are not ours to
//! check. A file is named by its path from the checkout under src/, tests/, deploy/ and
//! bench/ (what .gitignore lists, such as `bench/results/`, is output and may be absent), by
//! its path from src/ when it ends in `.rs` (`proxy/balancer.rs`), or by its bare name
//! (`ring.rs`), which must be somewhere under src/ or tests/. Fenced code blocks are not read.

use std::path::{Path, PathBuf};

/// The guides checked, from the checkout's root.
const GUIDES: [&str; 2] = ["README.md", "README.es.md"];

/// First segments of item paths that belong to other crates.
const OTHER_CRATES: [&str; 8] = [
    "std",
    "core",
    "alloc",
    "clap",
    "chrono",
    "log",
    "simplelog",
    "sha1_smol",
];

/// Folders whose paths a guide gives from the checkout's root.
const ROOT_FOLDERS: [&str; 4] = ["src/", "tests/", "deploy/", "bench/"];

/// Fewer named tests than this means the guide's form changed and nothing is being checked.
const MIN_TESTS_NAMED: usize = 10;

fn checkout() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_test_and_file_the_guides_name_exists() {
    let mut stale = Vec::new();
    for guide in GUIDES {
        let text = std::fs::read_to_string(checkout().join(guide))
            .unwrap_or_else(|e| panic!("cannot read {guide}: {e}"));
        let named = code_spans(&text)
            .iter()
            .filter(|span| is_our_item(span))
            .count();
        assert!(
            named >= MIN_TESTS_NAMED,
            "{guide} names only {named} tests as `module::test_name`"
        );
        let found = stale_pointers(checkout(), &text);
        stale.extend(found.into_iter().map(|line| format!("{guide}: {line}")));
    }
    assert!(stale.is_empty(), "stale pointers:\n{}", stale.join("\n"));
    let readme = std::fs::read_to_string(checkout().join("README.md")).unwrap();
    assert!(
        readme.contains("](README.es.md)"),
        "README.md links to the Spanish guide"
    );
}

#[test]
fn a_wrong_test_name_or_path_in_a_guide_is_reported() {
    let guide = "\
Right: `proxy::round_robin_cycles_through_three_backends_in_order`,
`cache::store::tests::flush_removes_entries_and_temporaries_only`, the module `proxy::routing`,
`std::net`, `src/proxy/balancer.rs`, `proxy/rewrite.rs`, `ring.rs`, `docs.rs`,
`bench/run.py
--quick`, ``deploy/relevo.logrotate``, `bench/results/` and `client LOG_FILE URL`.

Wrong: `proxy::round_robin_cycles_through_four_backends`, `cache::store::tests::no_such_test`,
`proxy::routingz`, `src/proxy/balancer.rx`, `proxy/nowhere.rs`, `nowhere.rs` and a span
broken over two lines, `tests/gen_www.pl
--seed 1`. A backtick left open` ends with its paragraph.

`tests/nowhere/` is wrong: the open backtick above did not swallow it.

```text
`proxy::in_a_fenced_block_is_not_read`
```
";
    assert_eq!(
        stale_pointers(checkout(), guide),
        [
            "`proxy::round_robin_cycles_through_four_backends`: no such test, function or module",
            "`cache::store::tests::no_such_test`: no such test, function or module",
            "`proxy::routingz`: no such test, function or module",
            "`src/proxy/balancer.rx`: no such file",
            "`proxy/nowhere.rs`: no such file",
            "`nowhere.rs`: no such file",
            "`tests/gen_www.pl`: no such file",
            "`tests/nowhere/`: no such file",
        ]
    );
}

/// What `text` names in backticks that is not in the checkout at `root`, one line each.
fn stale_pointers(root: &Path, text: &str) -> Vec<String> {
    let mut stale = Vec::new();
    for span in code_spans(text) {
        if is_our_item(&span) && !item_exists(root, &span) {
            stale.push(format!("`{span}`: no such test, function or module"));
        }
        let path = span.split_whitespace().next().unwrap_or("");
        if is_file_pointer(path) && !file_exists(root, path) {
            stale.push(format!("`{path}`: no such file"));
        }
    }
    stale
}

/// The contents of the inline code spans of a Markdown text, outside fenced blocks: a run of
/// backticks up to the next run of as many in the same paragraph, line breaks as spaces.
fn code_spans(text: &str) -> Vec<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            prose.push('\n');
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut spans = Vec::new();
    for paragraph in prose.split("\n\n") {
        let mut rest = paragraph;
        while let Some(start) = rest.find('`') {
            let ticks = backticks_at(rest, start);
            let after = &rest[start + ticks..];
            match closing_run(after, ticks) {
                Some(end) => {
                    spans.push(after[..end].replace('\n', " ").trim().to_string());
                    rest = &after[end + ticks..];
                }
                None => rest = after,
            }
        }
    }
    spans
}

fn backticks_at(text: &str, at: usize) -> usize {
    text[at..].bytes().take_while(|&b| b == b'`').count()
}

/// Where the first run of exactly `ticks` backticks in `text` starts.
fn closing_run(text: &str, ticks: usize) -> Option<usize> {
    let mut at = 0;
    while let Some(found) = text[at..].find('`') {
        let run = backticks_at(text, at + found);
        if run == ticks {
            return Some(at + found);
        }
        at += found + run;
    }
    None
}

/// `a::b` or longer, lower-case identifiers only, the first not another crate's.
fn is_our_item(span: &str) -> bool {
    let segments: Vec<&str> = span.split("::").collect();
    let identifier = |s: &&str| {
        s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    segments.len() >= 2 && segments.iter().all(identifier) && !OTHER_CRATES.contains(&segments[0])
}

/// Whether `item` is a `fn` in its module's file (an integration test file, or a file of
/// src/ for unit tests and functions), or is itself a module of src/.
fn item_exists(root: &Path, item: &str) -> bool {
    let segments: Vec<&str> = item.split("::").filter(|s| *s != "tests").collect();
    let Some((name, modules)) = segments.split_last() else {
        return false;
    };
    let mut files = module_files(root, modules).to_vec();
    if let [module] = modules {
        files.push(root.join(format!("tests/integration/{module}.rs")));
    }
    let defines = |file: &PathBuf| {
        let source = std::fs::read_to_string(file).unwrap_or_default();
        source.contains(&format!("fn {name}(")) || source.contains(&format!("fn {name}<"))
    };
    files.iter().any(defines) || module_files(root, &segments).iter().any(|f| f.exists())
}

/// The places module `a::b` may live: src/a/b.rs, src/a/b/mod.rs, and the folder src/a/b.
fn module_files(root: &Path, modules: &[&str]) -> [PathBuf; 3] {
    let folder = modules
        .iter()
        .fold(root.join("src"), |path, m| path.join(m));
    [folder.with_extension("rs"), folder.join("mod.rs"), folder]
}

fn is_file_pointer(path: &str) -> bool {
    ROOT_FOLDERS.iter().any(|folder| path.starts_with(folder))
        || (path.ends_with(".rs") && !path.contains("::"))
}

/// Whether `path` is in the checkout, as the module's `//!` says each kind is read.
fn file_exists(root: &Path, path: &str) -> bool {
    if ROOT_FOLDERS.iter().any(|folder| path.starts_with(folder)) {
        root.join(path).exists() || ignored(root, path)
    } else if path.contains('/') {
        root.join("src").join(path).exists()
    } else {
        ["src", "tests"]
            .iter()
            .flat_map(|folder| files_under(&root.join(folder)))
            .any(|file| file.file_name().is_some_and(|n| n == path))
    }
}

/// Whether .gitignore lists `path` or a folder above it, as `/bench/results/`.
fn ignored(root: &Path, path: &str) -> bool {
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
    gitignore
        .lines()
        .filter(|line| !line.starts_with(['!', '#']) && !line.contains('*'))
        .map(|line| line.trim().trim_start_matches('/'))
        .any(|entry| !entry.is_empty() && path.starts_with(entry))
}

fn files_under(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for path in entries.flatten().map(|entry| entry.path()) {
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
