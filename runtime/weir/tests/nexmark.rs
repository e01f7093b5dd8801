//! Every Nexmark query, streamed by the engine, equals the reference result computed
//! directly from the SQL semantics over the same generated events — at several
//! parallelisms, from the generator and from a JSON-lines file of the same events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use weir::cli::{Overrides, build, resolve};
use weir_nexmark::generator::{GeneratorConfig, event};
use weir_nexmark::model::Event;
use weir_nexmark::queries::Q4Row;
use weir_nexmark::reference;

/// A scratch directory, removed when the test ends (also when it fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn tempdir() -> Scratch {
    let d = std::env::temp_dir().join(format!("weir-nexmark-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

fn run(query: &str, p: u32, events: Option<u64>, input: Option<&Path>, out: &Path) {
    let o = Overrides {
        parallelism: Some(p),
        events,
        input: input.map(|i| i.to_path_buf()),
        output: Some(out.to_path_buf()),
        ..Default::default()
    };
    let env = build(&resolve(&format!("nexmark-{query}"), &o).expect("resolves")).expect("builds");
    env.execute().expect("runs");
}

fn rows<T: DeserializeOwned + Ord>(path: &Path) -> Vec<T> {
    let text = std::fs::read_to_string(path).expect("output written");
    let mut v: Vec<T> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    v.sort();
    v
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn generated(n: u64) -> Vec<Event> {
    let c = GeneratorConfig::default();
    (0..n).map(|i| event(&c, i)).collect()
}

/// Runs `query` at parallelism 1 and 3 and compares with `want`.
fn check<T: DeserializeOwned + Ord + std::fmt::Debug>(query: &str, n: u64, want: Vec<T>) {
    let dir = tempdir();
    let want = sorted(want);
    assert!(!want.is_empty(), "{query}: the reference result is not empty");
    for p in [1, 3] {
        let out = dir.join(format!("{query}-{p}.jsonl"));
        run(query, p, Some(n), None, &out);
        let got: Vec<T> = rows(&out);
        assert_eq!(got.len(), want.len(), "{query} p={p}: row count");
        assert!(got == want, "{query} p={p}: rows differ");
    }
}

const N: u64 = 200_000;

#[test]
fn q0_q1_q2() {
    let ev = generated(N);
    check("q0", N, reference::q0(&ev));
    check("q1", N, reference::q1(&ev));
    check("q2", N, reference::q2(&ev));
}

#[test]
fn q3_join() {
    check("q3", N, reference::q3(&generated(N)));
}

#[test]
fn q4_updating_average() {
    // q4 is an updating query: the last row per category is its current value
    let ev = generated(N);
    let want = reference::q4(&ev);
    let dir = tempdir();
    for p in [1, 3] {
        let out = dir.join(format!("q4-{p}.jsonl"));
        run("q4", p, Some(N), None, &out);
        let text = std::fs::read_to_string(&out).unwrap();
        let mut last: BTreeMap<i64, i64> = BTreeMap::new();
        for l in text.lines() {
            let r: Q4Row = serde_json::from_str(l).unwrap();
            last.insert(r.id, r.final_);
        }
        let got: Vec<Q4Row> = last.into_iter().map(|(id, final_)| Q4Row { id, final_ }).collect();
        assert_eq!(got, want, "q4 p={p}");
    }
}

#[test]
fn q5_hot_items() {
    check("q5", N, reference::q5(&generated(N)));
}

#[test]
fn q7_highest_bid() {
    check("q7", N, reference::q7(&generated(N)));
}

#[test]
fn q8_new_users() {
    check("q8", N, reference::q8(&generated(N)));
}

#[test]
fn events_from_a_flink_shaped_file_give_the_same_results() {
    let n = 50_000;
    let ev = generated(n);
    let dir = tempdir();
    let input = dir.join("events.jsonl");
    let mut buf = Vec::new();
    for e in &ev {
        weir_nexmark::json::write_event(e, &mut buf);
    }
    std::fs::write(&input, buf).unwrap();
    let out = dir.join("q7-file.jsonl");
    run("q7", 2, None, Some(&input), &out);
    assert_eq!(rows::<weir_nexmark::queries::Q7Row>(&out), sorted(reference::q7(&ev)));
}
