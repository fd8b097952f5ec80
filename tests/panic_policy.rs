//! DESIGN.md's panic policy lists every public function with what bad input does to it: an
//! `Err`, a panic, both, or nothing (no input is bad). This test reads that table and the
//! source, and fails when they disagree:
//!
//! * every `pub fn` (and every method a `pub trait` declares) is listed, and nothing else is;
//! * `Err` functions return `Result` and document `# Errors`; `panic` functions document
//!   `# Panics` and carry `#[track_caller]`, so the panic names the caller's line; `—`
//!   functions return no `Result` and document no panic.
//!
//! After adding a public function, run
//! `VGRAD_PRINT_POLICY=1 cargo test --test panic_policy -- --nocapture` for the table as the
//! source has it, check each row is what you meant, and paste it into DESIGN.md.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// One public function as the source declares it.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    returns_result: bool,
    errors_doc: bool,
    panics_doc: bool,
    track_caller: bool,
}

impl Item {
    /// The class the signature and docs give.
    fn class(&self) -> &'static str {
        match (self.returns_result, self.panics_doc) {
            (true, true) => "Err, panic",
            (true, false) => "Err",
            (false, true) => "panic",
            (false, false) => "—",
        }
    }
}

/// `(file, Type::name)` → item, for every public function under `src/`.
fn scan_source() -> BTreeMap<(String, String), Item> {
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    collect_rs(Path::new("src"), &mut files);
    files.sort();
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        let file = path.to_string_lossy().replace('\\', "/");
        scan_file(&file, &text, &mut out);
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The type an `impl` line is for (`impl<T: Element> Tensor<T> {` → `Tensor`), or `None` for a
/// trait impl (`impl Add for Var`), whose methods are the trait's.
fn impl_target(line: &str) -> Option<String> {
    let rest = line.strip_prefix("impl")?;
    // Drop the impl's own generics.
    let rest = if rest.starts_with('<') {
        let mut depth = 0;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        &rest[end..]
    } else {
        rest
    };
    if rest.contains(" for ") {
        return None;
    }
    let name: String = rest
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    Some(name.rsplit("::").next().unwrap_or("").to_string())
}

fn scan_file(file: &str, text: &str, out: &mut BTreeMap<(String, String), Item>) {
    let lines: Vec<&str> = text.lines().collect();
    // The context of a top-level block: Some(type) in an inherent impl or a pub trait, None in
    // a trait impl or a private trait.
    let mut context: Option<Option<String>> = None;
    let mut in_trait = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("#[cfg(test)]") {
            break; // unit tests sit at the end of each file
        }
        if line.starts_with("macro_rules!") {
            // Skip the macro's body: what it expands to is checked where it is invoked.
            while i < lines.len() && lines[i] != "}" {
                i += 1;
            }
        } else if line.starts_with("impl") {
            context = Some(impl_target(line));
            in_trait = false;
        } else if let Some(rest) = line.strip_prefix("pub trait ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            context = Some(Some(name));
            in_trait = true;
        } else if line.starts_with("trait ") || line.starts_with("pub(crate) trait ") {
            context = Some(None);
            in_trait = false;
        } else if line == "}" {
            context = None;
            in_trait = false;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let is_fn = trimmed.starts_with("pub fn ")
            || trimmed.starts_with("pub const fn ")
            || trimmed.starts_with("pub unsafe fn ")
            || (in_trait && indent == 4 && trimmed.starts_with("fn "));
        let owner = match (&context, indent) {
            (None, 0) => Some(String::new()),
            (Some(Some(t)), 4) => Some(t.clone()),
            _ => None,
        };
        if let (true, Some(owner)) = (is_fn, owner) {
            let name: String = trimmed
                .split("fn ")
                .nth(1)
                .unwrap()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The signature runs to the body's brace or the declaration's semicolon.
            let mut sig = String::new();
            let mut j = i;
            while j < lines.len() {
                sig.push_str(lines[j]);
                sig.push(' ');
                let l = lines[j].trim_end();
                if l.ends_with('{') || l.ends_with(';') || l.ends_with('}') {
                    break;
                }
                j += 1;
            }
            // The last arrow: earlier ones may belong to closure parameters (`impl Fn(&str) -> String`).
            let ret = sig.rsplit_once("->").map_or("", |(_, r)| r);
            let ret = ret.split(" where ").next().unwrap_or("");
            // Attributes and docs above the function.
            let (mut docs, mut track_caller) = (String::new(), false);
            let mut k = i;
            while k > 0 {
                k -= 1;
                let l = lines[k].trim_start();
                if l.starts_with("///") {
                    docs.push_str(l);
                    docs.push('\n');
                } else if l.starts_with("#[") {
                    track_caller |= l.starts_with("#[track_caller]");
                } else {
                    break;
                }
            }
            let key = if owner.is_empty() {
                name
            } else {
                format!("{owner}::{name}")
            };
            let item = Item {
                returns_result: ret.contains("Result<") || ret.trim() == "Result",
                errors_doc: docs.contains("# Errors"),
                panics_doc: docs.contains("# Panics"),
                track_caller,
            };
            out.insert((file.to_string(), key), item);
        }
        i += 1;
    }
}

/// `(file, Type::name)` → class, from DESIGN.md's "Panic policy" table.
fn read_table() -> BTreeMap<(String, String), String> {
    let design = fs::read_to_string("DESIGN.md").unwrap();
    let section = design
        .split("\n## Panic policy")
        .nth(1)
        .expect("DESIGN.md has a `## Panic policy` section");
    let section = section.split("\n## ").next().unwrap();
    let mut out = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `file` | `Type::name` | class |
        if cells.len() == 5 && cells[1].starts_with('`') && cells[1].ends_with(".rs`") {
            let unquote = |s: &str| s.trim_matches('`').to_string();
            let key = (unquote(cells[1]), unquote(cells[2]));
            assert!(
                out.insert(key.clone(), cells[3].to_string()).is_none(),
                "DESIGN.md lists {key:?} twice"
            );
        }
    }
    out
}

#[test]
fn the_panic_policy_table_matches_the_source() {
    let source = scan_source();
    assert!(
        source.len() > 300,
        "the scan found only {} functions",
        source.len()
    );
    if std::env::var_os("VGRAD_PRINT_POLICY").is_some() {
        println!("| file | function | bad input gives |\n|---|---|---|");
        for ((file, name), item) in &source {
            println!("| `{file}` | `{name}` | {} |", item.class());
        }
    }
    let table = read_table();
    let mut problems = Vec::new();
    for (key, item) in &source {
        match table.get(key) {
            None => problems.push(format!("not in DESIGN.md: {key:?} ({})", item.class())),
            Some(class) if class != item.class() => problems.push(format!(
                "{key:?}: DESIGN.md says {class}, the source says {}",
                item.class()
            )),
            Some(_) => {}
        }
        if item.returns_result && !item.errors_doc {
            problems.push(format!(
                "{key:?} returns Result without an `# Errors` section"
            ));
        }
        if item.panics_doc && !item.track_caller {
            problems.push(format!("{key:?} documents a panic without #[track_caller]"));
        }
    }
    for key in table.keys() {
        if !source.contains_key(key) {
            problems.push(format!(
                "DESIGN.md lists {key:?}, which the source no longer has"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} disagreement(s) between DESIGN.md's panic policy and the source:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
