//! SQL jobs on the `kinesis` connector against a real Kinesis API (moto's server,
//! started by `./test.sh` through scripts/test.d/kinesis.sh; a Python server, so the
//! figures printed are moto's, not Kinesis'):
//!
//! - a 2-shard stream → filter and projection → the exactly-once filesystem sink,
//!   records put while the job runs, an injected fault (restart from the latest
//!   checkpoint), a savepoint restored at another parallelism while more records
//!   arrive: every record that passes the filter exactly once;
//! - a table written into a Kinesis stream (with an injected sink fault) and read
//!   back: every record at least once.
//!
//! Without the server each test prints `SKIPPING` and returns.
#![cfg(feature = "kinesis")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir::connector::files::read_committed;
use weir_connectors::TableOptions;
use weir_connectors::kinesis::client::{KinesisClient, entry};
use weir_connectors::kinesis::options::KinesisOptions;

fn server(test: &str) -> Option<String> {
    match (std::env::var("WEIR_TEST_KINESIS").as_deref(), std::env::var("WEIR_TEST_KINESIS_ENDPOINT")) {
        (Ok("1"), Ok(e)) if !e.is_empty() => Some(e),
        _ => {
            eprintln!("SKIPPING {test} (WEIR_TEST_KINESIS unset: run ./test.sh, which starts the Kinesis test server)");
            None
        }
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-kinesis-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stream_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("weir-sql-{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn client(stream: &str, endpoint: &str) -> KinesisClient {
    let map = [("stream", stream), ("aws.endpoint", endpoint), ("format", "json")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let t = TableOptions { table: "t".into(), connector: "kinesis".into(), map, primary_key: vec![], partition_keys: vec![] };
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, true)]));
    KinesisClient::new(&KinesisOptions::parse(&t, &schema).unwrap()).unwrap()
}

/// Puts records `ids`: `{"id": n, "k": "k<n % 13>", "v": n * 7 % 10}`.
fn put(c: &KinesisClient, ids: std::ops::Range<i64>) {
    let all: Vec<i64> = ids.collect();
    for chunk in all.chunks(250) {
        let entries = chunk.iter().map(|i| entry(format!("{{\"id\": {i}, \"k\": \"k{}\", \"v\": {}}}", i % 13, i * 7 % 10).into_bytes(), format!("k{}", i % 13)).unwrap()).collect();
        c.put_records(entries).unwrap();
    }
}

/// The rows the query keeps of records `ids`: (id, k, v * 10) where v is not 0 or 5.
fn expected(ids: std::ops::Range<i64>) -> Vec<(i64, String, i64)> {
    ids.filter(|i| (i * 7 % 10) % 5 != 0).map(|i| (i, format!("k{}", i % 13), i * 7 % 10 * 10)).collect()
}

fn committed(dir: &Path) -> Vec<(i64, String, i64)> {
    let mut v: Vec<(i64, String, i64)> = read_committed(dir)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (j["id"].as_i64().unwrap(), j["k"].as_str().unwrap().to_string(), j["v10"].as_i64().unwrap())
        })
        .collect();
    v.sort();
    v
}

fn job(stream: &str, endpoint: &str, out: &Path, parallelism: u32) -> weir::StreamEnv {
    let sql = format!(
        "CREATE TABLE src (id BIGINT, k STRING, v BIGINT) WITH ('connector' = 'kinesis', 'stream' = '{stream}', 'aws.endpoint' = '{endpoint}',
    'format' = 'json', 'scan.stream.initial-position' = 'TRIM_HORIZON',
    'scan.shard.discovery.intervalmillis' = '200', 'scan.shard.getrecords.intervalmillis' = '20', 'scan.shard.getrecords.maxrecordcount' = '50');
CREATE TABLE out (id BIGINT, k STRING, v10 BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
INSERT INTO out SELECT id, k, v * 10 FROM src WHERE v % 5 <> 0;",
        out.display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    env
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(100);
    s
}

/// Puts `ids` in chunks of 100 every `every`, then stops the job with a savepoint
/// once `until` holds (or after two minutes: the assertions then fail).
fn feed_then_stop(c: KinesisClient, ids: std::ops::Range<i64>, every: Duration, stop: StopHandle, until: impl Fn() -> bool + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = ids.start;
        while i < ids.end {
            let j = (i + 100).min(ids.end);
            put(&c, i..j);
            i = j;
            std::thread::sleep(every);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !until() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.stop_with_savepoint();
    })
}

#[test]
fn kinesis_to_files_exactly_once_across_a_fault_and_a_savepoint_at_another_parallelism() {
    let Some(ep) = server("kinesis_to_files_exactly_once_across_a_fault_and_a_savepoint_at_another_parallelism") else { return };
    let name = stream_name("eo");
    let c = client(&name, &ep);
    c.create_stream(2).unwrap();
    put(&c, 0..1500);
    let dir = tempdir("eo");
    let (out, ckpt) = (dir.join("out"), dir.join("ckpt"));

    // P=2, a fault in the source's task, 1500 more records put while it runs; stopped
    // with a savepoint once they are put and a checkpoint completed
    let env = job(&name, &ep, &out, 2);
    let mut s = settings(&ckpt);
    s.faults = vec![("source: src".into(), 10)];
    let stop = StopHandle::default();
    let checkpoints = Arc::new(AtomicU64::new(0));
    let seen = checkpoints.clone();
    let feeder = feed_then_stop(client(&name, &ep), 1500..3000, Duration::from_millis(20), stop.clone(), move || seen.load(Ordering::SeqCst) >= 3);
    let t = Instant::now();
    let report = coordinator::run(&env, &s, &stop, |ck| {
        if !ck.savepoint {
            checkpoints.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap_or_else(|e| panic!("first run: {e}"));
    feeder.join().unwrap();
    assert_eq!(report.restarts, 1, "one injected fault, one restart");
    let sp = report.savepoint.expect("stopped with a savepoint");
    let partial = committed(&out);
    let mut dedup = partial.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), partial.len(), "no row twice after the first run");
    let want_first = expected(0..3000);
    assert!(partial.iter().all(|r| want_first.binary_search(r).is_ok()), "only rows of the input");

    // restored at P=3 while 1000 more records arrive; stopped once all are out
    let env = job(&name, &ep, &out, 3);
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url.clone());
    let stop = StopHandle::default();
    let want = expected(0..4000);
    let (o, n) = (out.clone(), want.len());
    let feeder = feed_then_stop(client(&name, &ep), 3000..4000, Duration::from_millis(20), stop.clone(), move || committed(&o).len() >= n);
    coordinator::run(&env, &s, &stop, |_| {}).unwrap_or_else(|e| panic!("restored run: {e}"));
    feeder.join().unwrap();
    let got = committed(&out);
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "kinesis -> files: {} rows after the first run (P=2, a fault), {} in all after the restore (P=3); 4000 records in {secs:.1} s end to end (moto, a Python server)",
        partial.len(),
        got.len()
    );
    assert_eq!(got.len(), want.len(), "P=2 -> P=3: every row exactly once");
    assert!(got == want, "P=2 -> P=3: other rows than the input's");
    let _ = c.delete_stream();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_table_written_to_kinesis_is_read_back_at_least_once() {
    let Some(ep) = server("a_table_written_to_kinesis_is_read_back_at_least_once") else { return };
    let name = stream_name("sink");
    let c = client(&name, &ep);
    c.create_stream(2).unwrap();
    let dir = tempdir("sink");
    const N: i64 = 5000;
    let rows: String = (0..N).map(|i| format!("{{\"id\": {i}, \"k\": \"k{}\", \"v\": {}}}\n", i % 13, i * 7 % 10)).collect();
    std::fs::write(dir.join("in.json"), rows).unwrap();
    let sql = format!(
        "CREATE TABLE src (id BIGINT, k STRING, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
CREATE TABLE sink (id BIGINT, k STRING, v BIGINT) WITH ('connector' = 'kinesis', 'stream' = '{name}', 'aws.endpoint' = '{ep}', 'format' = 'csv',
    'sink.partition-key' = 'k', 'sink.batch.max-size' = '300');
INSERT INTO sink SELECT * FROM src;",
        dir.join("in.json").display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 2, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    let mut s = settings(&dir.join("ckpt"));
    s.faults = vec![("sink: sink".into(), 3)];
    let t = Instant::now();
    let report = coordinator::run(&env, &s, &StopHandle::default(), |_| {}).unwrap_or_else(|e| panic!("sink job: {e}"));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(report.restarts, 1, "one injected sink fault");

    // read back with the connector's own source (CSV, partition keys as metadata)
    let read_sql = format!(
        "CREATE TABLE back (id BIGINT, k STRING, v BIGINT) WITH ('connector' = 'kinesis', 'stream' = '{name}', 'aws.endpoint' = '{ep}', 'format' = 'csv',
    'scan.stream.initial-position' = 'TRIM_HORIZON', 'scan.shard.getrecords.intervalmillis' = '20');
CREATE TABLE copy (id BIGINT, k STRING, v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
INSERT INTO copy SELECT * FROM back;",
        dir.join("copy").display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 2, ..Default::default() });
    weir_sql::compile(&read_sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    let stop = StopHandle::default();
    let st = stop.clone();
    let copy = dir.join("copy");
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let got: std::collections::BTreeSet<i64> =
                read_committed(&copy).unwrap_or_default().iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap()).collect();
            if got.len() as i64 >= N || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        st.stop_with_savepoint();
    });
    coordinator::run(&env, &settings(&dir.join("ckpt2")), &stop, |_| {}).unwrap_or_else(|e| panic!("read-back job: {e}"));
    watcher.join().unwrap();
    let lines = read_committed(&dir.join("copy")).unwrap();
    let mut ids: Vec<i64> = Vec::new();
    for l in &lines {
        let j: serde_json::Value = serde_json::from_str(l).unwrap();
        let id = j["id"].as_i64().unwrap();
        assert_eq!(j["k"].as_str().unwrap(), format!("k{}", id % 13));
        assert_eq!(j["v"].as_i64().unwrap(), id * 7 % 10);
        ids.push(id);
    }
    let total = ids.len();
    ids.sort();
    ids.dedup();
    eprintln!(
        "kinesis sink: {N} rows written in {secs:.2} s across a fault ({:.0} rows/s, moto, a Python server); read back {total} records, {} distinct ({} written twice)",
        N as f64 / secs,
        ids.len(),
        total - ids.len()
    );
    assert_eq!(ids, (0..N).collect::<Vec<_>>(), "every row at least once");
    let _ = c.delete_stream();
    let _ = std::fs::remove_dir_all(&dir);
}
