//! Data-driven SQL cases: every `tests/cases/*.case` file holds one or more cases.
//!
//! ```text
//! # a case starts with '# name'
//! == sql
//! CREATE TABLE ...('path' = '$DIR/in.json') ...; INSERT INTO ...;
//! == file in.json            (written to the case's temp dir, $DIR in the SQL)
//! {"a": 1}
//! == rows out.json           (expected JSON lines of that file or directory, any order)
//! == lines out/              (expected text lines of that file, any order; of a directory:
//!                             `k=v/k2=v2: line` for the lines of its partition directories
//!                             (just the line outside partitions) and `k=v/k2=v2/_SUCCESS`
//!                             for each success file)
//! == changelog name          (expected +I[...] rows of the 'collect' table 'name', any order)
//! == result name             (the 'collect' table 'name' after applying its changelog in order,
//!                             as +I[...] rows, any order; each -U/-D must retract an existing row)
//! == error                   (the compile error contains each line)
//! == run-error               (it compiles, and the run fails with an error containing each line)
//! == streaming-only reason   (why batch mode legitimately differs: late rows, ...)
//! ```
//! Each case is compiled and run on the engine for real, at parallelism 1 and 4.
//! Every case with expected rows also runs in batch mode (`SET
//! 'execution.runtime-mode' = 'batch'` prepended: DataFusion's batch engine over
//! the bounded sources) and must give the streaming run's final result: the same
//! rows of each file sink, and the materialized changelog of each 'collect' table
//! (as inserts only). A case marked `== streaming-only` gives its reason instead.

use std::path::Path;
use std::sync::Arc;

use weir_sql::connectors::ConnectorRegistry;
use weir_sql::CompileOptions;

mod common;
use common::{Collect, Collected, materialize};

#[derive(Default, Debug)]
struct Case {
    name: String,
    sql: String,
    files: Vec<(String, String)>,
    rows: Vec<(String, Vec<String>)>,
    lines: Vec<(String, Vec<String>)>,
    changelog: Vec<(String, Vec<String>)>,
    result: Vec<(String, Vec<String>)>,
    error: Option<Vec<String>>,
    run_error: Option<Vec<String>>,
    streaming_only: Option<String>,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut section: Option<(String, String)> = None;
    let mut body: Vec<String> = Vec::new();
    fn close(c: &mut Case, section: Option<(String, String)>, body: &mut Vec<String>) {
        let lines: Vec<String> = std::mem::take(body).into_iter().filter(|l| !l.trim().is_empty()).collect();
        if let Some((k, arg)) = section {
            match k.as_str() {
                "sql" => c.sql = lines.join("\n"),
                "file" => c.files.push((arg, lines.join("\n") + "\n")),
                "rows" => c.rows.push((arg, lines)),
                "lines" => c.lines.push((arg, lines)),
                "run-error" => c.run_error = Some(lines),
                "changelog" => c.changelog.push((arg, lines)),
                "result" => c.result.push((arg, lines)),
                "error" => c.error = Some(lines),
                "streaming-only" => {
                    assert!(!arg.is_empty(), "case '{}': '== streaming-only' needs the reason", c.name);
                    c.streaming_only = Some(arg);
                }
                other => panic!("unknown section {other}"),
            }
        }
    }
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("# ") {
            if let Some(c) = cases.last_mut() {
                close(c, section.take(), &mut body);
            }
            cases.push(Case { name: name.trim().to_string(), ..Default::default() });
        } else if let Some(h) = line.strip_prefix("== ") {
            let c = cases.last_mut().expect("a case starts with '# name'");
            close(c, section.take(), &mut body);
            let (k, a) = h.split_once(' ').unwrap_or((h, ""));
            section = Some((k.trim().to_string(), a.trim().to_string()));
        } else {
            body.push(line.to_string());
        }
    }
    if let Some(c) = cases.last_mut() {
        close(c, section.take(), &mut body);
    }
    cases
}

/// The lines of file `p` and of its `<path>.<i>` files (a JSON-lines sink at
/// parallelism > 1 writes one per subtask).
fn file_lines(p: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let dir = p.parent().unwrap();
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().to_string();
        if n == name || n.strip_prefix(&format!("{name}.")).is_some_and(|s| s.chars().all(|c| c.is_ascii_digit())) {
            lines.extend(std::fs::read_to_string(e.path()).unwrap().lines().map(str::to_string));
        }
    }
    lines
}

fn read_rows(p: &Path) -> Vec<String> {
    let mut lines = if p.is_dir() { weir::connector::files::read_committed(p).unwrap() } else { file_lines(p) };
    lines.retain(|l| !l.trim().is_empty());
    lines
}

/// The text lines of a file (or of its `<path>.<i>` files), or of the part files and
/// success files of a directory (see the module's documentation), sorted.
fn read_lines(p: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if p.is_dir() {
        fn partition(rel: &Path) -> String {
            rel.components().map(|c| c.as_os_str().to_string_lossy().to_string()).filter(|c| c.contains('=')).collect::<Vec<_>>().join("/")
        }
        for (rel, text) in weir::connector::files::committed_files(p).unwrap() {
            let part = partition(rel.parent().unwrap_or(Path::new("")));
            lines.extend(text.lines().map(|l| if part.is_empty() { l.to_string() } else { format!("{part}: {l}") }));
        }
        fn successes(root: &Path, at: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(at).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                    successes(root, &e.path(), out);
                } else if e.file_name() == "_SUCCESS" {
                    out.push(e.path().strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        successes(p, p, &mut lines);
    } else {
        lines = file_lines(p);
    }
    lines.retain(|l| !l.trim().is_empty());
    lines.sort();
    lines
}

/// JSON lines compared as values (key order and number formatting do not matter).
fn norm_json(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).map(|v| v.to_string()).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}"))).collect();
    v.sort();
    v
}

fn run_case(c: &Case, parallelism: u32) -> Result<(), String> {
    run_mode(c, parallelism, false)
}

/// The case in batch mode: its final rows must be the streaming run's final rows
/// (the expected changelogs materialized; the streaming run checks those).
fn run_batch(c: &Case, parallelism: u32) -> Result<(), String> {
    let batch = Case {
        name: c.name.clone(),
        sql: format!("SET 'execution.runtime-mode' = 'batch';\n{}", c.sql),
        files: c.files.clone(),
        rows: c.rows.clone(),
        lines: c.lines.clone(),
        changelog: Vec::new(),
        result: c.result.iter().cloned().chain(c.changelog.iter().map(|(t, log)| (t.clone(), materialize(log).unwrap_or_else(|e| panic!("case '{}': changelog of {t}: {e}", c.name))))).collect(),
        error: None,
        run_error: c.run_error.clone(),
        streaming_only: None,
    };
    run_mode(&batch, parallelism, true)
}

fn run_mode(c: &Case, parallelism: u32, batch: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &c.files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let sql = c.sql.replace("$DIR", &dir.path().display().to_string());
    let collected: Collected = Arc::default();
    let mut reg = ConnectorRegistry::default();
    reg.register(Arc::new(Collect(collected.clone())));
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    let res = weir_sql::compile(&sql, &env, &CompileOptions { connectors: reg, ..CompileOptions::default() });
    if let Some(expected) = &c.error {
        let e = match res {
            Ok(_) => return Err("compiled, but an error was expected".into()),
            Err(e) => e.to_string(),
        };
        for l in expected {
            if !e.contains(l.trim()) {
                return Err(format!("error\n  {e}\ndoes not contain\n  {}", l.trim()));
            }
        }
        return Ok(());
    }
    res.map_err(|e| format!("compile: {e}"))?;
    let run = env.execute();
    if let Some(expected) = &c.run_error {
        let e = match run {
            Ok(()) => return Err("ran, but a run error was expected".into()),
            Err(e) => e.to_string(),
        };
        for l in expected {
            if !e.contains(l.trim()) {
                return Err(format!("run error\n  {e}\ndoes not contain\n  {}", l.trim()));
            }
        }
        return Ok(());
    }
    run.map_err(|e| format!("run: {e}"))?;
    for (file, expected) in &c.lines {
        let got = read_lines(&dir.path().join(file));
        let mut want: Vec<String> = expected.iter().map(|l| l.trim().to_string()).collect();
        want.sort();
        if got != want {
            return Err(format!("lines of {file}:\n got: {got:#?}\nwant: {want:#?}"));
        }
    }
    for (file, expected) in &c.rows {
        let got = norm_json(&read_rows(&dir.path().join(file)));
        let want = norm_json(expected);
        if got != want {
            return Err(format!("rows of {file}:\n got: {got:#?}\nwant: {want:#?}"));
        }
    }
    let m = collected.lock().unwrap();
    for (table, expected) in &c.changelog {
        let mut got = m.get(table).cloned().unwrap_or_default();
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.trim().to_string()).collect();
        want.sort();
        if got != want {
            return Err(format!("changelog of {table}:\n got: {got:#?}\nwant: {want:#?}"));
        }
    }
    for (table, expected) in &c.result {
        if let Some(r) = m.get(table).into_iter().flatten().find(|r| batch && !r.starts_with("+I")) {
            return Err(format!("batch mode wrote an update to {table}: {r}"));
        }
        let mut got = materialize(m.get(table).map(Vec::as_slice).unwrap_or_default()).map_err(|e| format!("changelog of {table}: {e}"))?;
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.trim().to_string()).collect();
        want.sort();
        if got != want {
            return Err(format!("result of {table}:\n got: {got:#?}\nwant: {want:#?}\nchangelog: {:#?}", m.get(table)));
        }
    }
    Ok(())
}

#[test]
fn sql_cases() {
    let dir = manifest_dir().join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "case")).collect();
    files.sort();
    let filter = std::env::var("SQL_CASE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    let (mut batch_checked, mut streaming_only) = (0, 0);
    for f in files {
        for c in parse(&std::fs::read_to_string(&f).unwrap()) {
            if filter.as_ref().is_some_and(|x| !c.name.contains(x.as_str())) {
                continue;
            }
            let has_rows = !(c.rows.is_empty() && c.lines.is_empty() && c.changelog.is_empty() && c.result.is_empty() && c.run_error.is_none());
            let batch = has_rows && c.streaming_only.is_none();
            if has_rows && !batch {
                streaming_only += 1;
            }
            if batch {
                batch_checked += 1;
            }
            // changelog order across keys depends on parallelism; multisets do not
            for p in [1, 4] {
                ran += 1;
                if let Err(e) = run_case(&c, p) {
                    failures.push(format!("{} :: {} (parallelism {p}): {e}", f.file_name().unwrap().to_string_lossy(), c.name));
                }
                if batch {
                    ran += 1;
                    if let Err(e) = run_batch(&c, p) {
                        failures.push(format!("{} :: {} (batch mode, parallelism {p}): {e}", f.file_name().unwrap().to_string_lossy(), c.name));
                    }
                }
            }
        }
    }
    assert!(ran > 0, "no cases ran");
    eprintln!("{ran} case runs; {batch_checked} cases also checked in batch mode, {streaming_only} marked streaming-only");
    assert!(failures.is_empty(), "{} of {ran} case runs failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` at run time (the build's
/// value only as a fallback: a test binary built from another checkout carries that
/// checkout's path).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from)
}
