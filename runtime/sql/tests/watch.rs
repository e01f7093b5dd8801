//! A SQL job reading a watched directory (`'source.monitor-interval'`) into the
//! exactly-once file sink while files are renamed into the directory: killed
//! mid-stream (an injected fault: the job restarts from its last checkpoint), stopped
//! with a savepoint, and restored at another parallelism, the output has every input
//! row exactly once (and nothing of the hidden, in-progress files). The same with a
//! bucket prefix (`'path' = 's3://bucket/prefix/'`) on the S3-compatible server that
//! `./test.sh` starts: objects put while the job runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir::connector::files::read_committed;
use weir_connectors::filesystem::store::{Bucket, BucketUrl};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-watch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const ROWS_PER_FILE: i64 = 20;

#[derive(Clone, Copy, PartialEq)]
enum Fmt {
    Json,
    Csv,
}

/// Where the job reads: a local directory, or a bucket prefix (with a client to put
/// objects into it).
#[derive(Clone)]
enum Input {
    Dir(PathBuf),
    Bucket { url: String, client: Arc<Bucket> },
}

impl Input {
    /// The table's `'path'`.
    fn path(&self) -> String {
        match self {
            Input::Dir(d) => format!("{}/", d.display()),
            Input::Bucket { url, .. } => url.clone(),
        }
    }

    /// A finished file: renamed into place in a directory; an object is complete once
    /// it is visible.
    fn add(&self, name: &str, text: &str) {
        match self {
            Input::Dir(d) => {
                let tmp = d.join(format!(".{name}.inprogress"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, d.join(name)).unwrap();
            }
            Input::Bucket { .. } => self.add_hidden(name, text),
        }
    }

    /// A file under its own name (the hidden ones, which are never read).
    fn add_hidden(&self, name: &str, text: &str) {
        match self {
            Input::Dir(d) => std::fs::write(d.join(name), text).unwrap(),
            Input::Bucket { url, client } => client.put(&BucketUrl::parse(&format!("{url}{name}")).unwrap().path, text.as_bytes().to_vec()).unwrap(),
        }
    }
}

/// The bucket of the test server, or `None` outside `./test.sh` (then the test
/// explains how to run it; under CI it fails instead of skipping).
fn bucket() -> Option<String> {
    match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(b) => Some(b),
        Err(_) if std::env::var_os("CI").is_some() => panic!("WEIR_TEST_S3_BUCKET is not set: CI must run the tests through ./test.sh"),
        Err(_) => {
            eprintln!("skipped: no S3 test server (run ./test.sh, which starts one)");
            None
        }
    }
}

fn job(input: &Input, out: &Path, fmt: Fmt, parallelism: u32) -> weir::StreamEnv {
    let format = match fmt {
        Fmt::Json => "'format' = 'json'",
        Fmt::Csv => "'format' = 'csv', 'csv.field-delimiter' = '|'",
    };
    let sql = format!(
        "CREATE TABLE src (id BIGINT, file STRING) WITH ('connector' = 'filesystem', 'path' = '{}', {format},
    'source.monitor-interval' = '20 ms', 'source.batch-rows' = '7');
CREATE TABLE out (id BIGINT, file STRING) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
INSERT INTO out SELECT id, file FROM src;",
        input.path(),
        out.display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    env
}

/// Adds file `k` (rows `k * 1000 + i`): in a directory under a hidden name, then
/// renamed into place.
fn add_file(input: &Input, fmt: Fmt, k: i64) {
    let name = format!("part-{k:04}.{}", if fmt == Fmt::Json { "json" } else { "csv" });
    let text: String = (0..ROWS_PER_FILE)
        .map(|i| match fmt {
            Fmt::Json => format!("{{\"id\": {}, \"file\": \"{name}\"}}\n", k * 1000 + i),
            Fmt::Csv => format!("{}|{name}\n", k * 1000 + i),
        })
        .collect();
    input.add(&name, &text);
}

fn expected(files: std::ops::Range<i64>, fmt: Fmt) -> Vec<(i64, String)> {
    let ext = if fmt == Fmt::Json { "json" } else { "csv" };
    let mut v: Vec<(i64, String)> = files.flat_map(|k| (0..ROWS_PER_FILE).map(move |i| (k * 1000 + i, format!("part-{k:04}.{ext}")))).collect();
    v.sort();
    v
}

fn committed(dir: &Path) -> Vec<(i64, String)> {
    let mut v: Vec<(i64, String)> = read_committed(dir)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (j["id"].as_i64().unwrap(), j["file"].as_str().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s
}

/// Adds files `files` to `input` one every `every`, then stops the job with a
/// savepoint once `until` holds (or after a minute: the assertions then fail).
fn feed_then_stop(input: Input, fmt: Fmt, files: std::ops::Range<i64>, every: Duration, stop: StopHandle, until: impl Fn() -> bool + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for k in files {
            add_file(&input, fmt, k);
            std::thread::sleep(every);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !until() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.stop_with_savepoint();
    })
}

fn run_case(tag: &str, fmt: Fmt, p1: u32, p2: u32, fault: bool) {
    let dir = tempdir(tag);
    std::fs::create_dir_all(dir.join("in")).unwrap();
    run_case_on(tag, &dir, Input::Dir(dir.join("in")), fmt, p1, p2, fault);
}

/// The case with the input `input`, the output and checkpoints in `dir`.
fn run_case_on(tag: &str, dir: &Path, input: Input, fmt: Fmt, p1: u32, p2: u32, fault: bool) {
    let (out, ckpt) = (dir.join("out"), dir.join("ckpt"));
    // there before the job starts; in-progress files (hidden) are never read
    for k in 0..10 {
        add_file(&input, fmt, k);
    }
    input.add_hidden(".writing.json", "{\"id\": -1, \"file\": \"hidden\"}\n-1|hidden\n");
    input.add_hidden("_writing.csv", "{\"id\": -2, \"file\": \"hidden\"}\n-2|hidden\n");

    // at p1, files added while it runs; with a fault in the source's task mid-stream;
    // stopped with a savepoint once the files are added (some of them not read yet)
    let env = job(&input, &out, fmt, p1);
    let mut s = settings(&ckpt);
    if fault {
        s.faults = vec![("source: src".into(), 40)];
    }
    let stop = StopHandle::default();
    let checkpoints = Arc::new(AtomicBool::new(false));
    let seen = checkpoints.clone();
    let feeder = feed_then_stop(input.clone(), fmt, 10..40, Duration::from_millis(15), stop.clone(), move || seen.load(Ordering::SeqCst));
    let report = coordinator::run(&env, &s, &stop, |c| {
        if !c.savepoint {
            checkpoints.store(true, Ordering::SeqCst);
        }
    })
    .unwrap_or_else(|e| panic!("{tag}: first run: {e}"));
    feeder.join().unwrap();
    if fault {
        assert_eq!(report.restarts, 1, "{tag}: one injected fault, one restart");
    }
    let sp = report.savepoint.expect("stopped with a savepoint");
    let partial = committed(&out);
    let want_first = expected(0..40, fmt);
    assert!(partial.iter().all(|r| want_first.binary_search(r).is_ok()), "{tag}: only rows of the input");
    let mut dedup = partial.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), partial.len(), "{tag}: no row twice after the first run");

    // restored at p2 from the savepoint, more files added; stopped once all are out
    let env = job(&input, &out, fmt, p2);
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url.clone());
    let stop = StopHandle::default();
    let want = expected(0..60, fmt);
    let (o, n) = (out.clone(), want.len());
    let feeder = feed_then_stop(input.clone(), fmt, 40..60, Duration::from_millis(10), stop.clone(), move || committed(&o).len() >= n);
    coordinator::run(&env, &s, &stop, |_| {}).unwrap_or_else(|e| panic!("{tag}: restored run: {e}"));
    feeder.join().unwrap();
    let got = committed(&out);
    eprintln!("{tag}: {} rows after the first run (P={p1}), {} in all after the restore (P={p2})", partial.len(), got.len());
    assert_eq!(got.len(), want.len(), "{tag}: P={p1} -> P={p2}: every row exactly once");
    assert!(got == want, "{tag}: P={p1} -> P={p2}: other rows than the input's");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_files_added_while_it_runs_exactly_once_across_a_fault_and_a_rescaled_restore() {
    run_case("json", Fmt::Json, 2, 3, true);
}

#[test]
fn csv_files_exactly_once_across_a_savepoint_at_another_parallelism() {
    run_case("csv", Fmt::Csv, 3, 1, false);
}

/// Objects put into a bucket prefix while the job runs, a fault, a savepoint and a
/// restore at another parallelism: every row exactly once.
#[test]
fn json_objects_in_a_bucket_prefix_exactly_once_across_a_fault_and_a_rescaled_restore() {
    let Some(bucket) = bucket() else { return };
    let url = format!("s3://{bucket}/sql-watch-{}-{}/", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis());
    let client = Arc::new(Bucket::open(&BucketUrl::parse(&url).unwrap()).unwrap());
    run_case_on("s3-json", &tempdir("s3-json"), Input::Bucket { url, client }, Fmt::Json, 2, 3, true);
}

#[test]
fn a_bad_interval_names_the_table_and_batch_mode_refuses_a_watched_directory() {
    let dir = tempdir("errors");
    let compile = |sql: &str| {
        let env = weir::StreamEnv::new(weir::JobConfig::default());
        weir_sql::compile(sql, &env, &Default::default()).map(|_| ()).map_err(|e| e.to_string())
    };
    let table = |interval: &str| format!("CREATE TABLE src (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json', 'source.monitor-interval' = '{interval}');", dir.display());
    let e = compile(&format!("{}\nSELECT * FROM src;", table("0 s"))).unwrap_err();
    assert!(e.contains("table 'src'") && e.contains("'source.monitor-interval' = '0 s': must be positive"), "{e}");
    let e = compile(&format!("{}\nSELECT * FROM src;", table("soon"))).unwrap_err();
    assert!(e.contains("table 'src'") && e.contains("'source.monitor-interval' = 'soon'"), "{e}");
    let e = compile(&format!("SET 'execution.runtime-mode' = 'batch';\n{}\nCREATE TABLE o (id BIGINT) WITH ('connector' = 'blackhole');\nINSERT INTO o SELECT * FROM src;", table("1 s"))).unwrap_err();
    assert!(e.contains("table 'src' is unbounded"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
