//! The `kinesis` source against a real Kinesis API (moto's server, started by
//! `./test.sh` through scripts/test.d/kinesis.sh): shards split across subtasks and
//! reassigned on rescale, the initial positions, checkpointed sequence numbers
//! restored exactly, a SplitShard while the source runs (the parent read to its end
//! before its children, nothing lost or repeated, per-key order kept), errors naming
//! the stream, and the read throughput. Without the server each test prints
//! `SKIPPING` and returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir::connector::SourceContext;
use weir_connectors::kinesis::client::{KinesisClient, entry};
use weir_connectors::kinesis::options::KinesisOptions;
use weir_connectors::{BatchSource, ConnectorRegistry, TableOptions};

/// The test server's endpoint, or `None` (and a line on stderr) without one.
fn server(test: &str) -> Option<String> {
    match (std::env::var("WEIR_TEST_KINESIS").as_deref(), std::env::var("WEIR_TEST_KINESIS_ENDPOINT")) {
        (Ok("1"), Ok(e)) if !e.is_empty() => Some(e),
        _ => {
            eprintln!(
                "SKIPPING {test} (WEIR_TEST_KINESIS unset: run ./test.sh, or start scripts/test.d/moto_kinesis.py and set WEIR_TEST_KINESIS=1, WEIR_TEST_KINESIS_ENDPOINT, AWS_REGION and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            );
            None
        }
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("k", DataType::Utf8, true)]))
}

fn stream_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("weir-{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn opts(stream: &str, endpoint: &str, extra: &[(&str, &str)]) -> TableOptions {
    let mut map: BTreeMap<String, String> = [
        ("stream", stream),
        ("aws.endpoint", endpoint),
        ("format", "json"),
        ("scan.stream.initial-position", "TRIM_HORIZON"),
        ("scan.shard.discovery.intervalmillis", "100"),
        ("scan.shard.getrecords.intervalmillis", "20"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    TableOptions { table: "events".into(), connector: "kinesis".into(), map, primary_key: Vec::new(), partition_keys: Vec::new() }
}

/// A client of `stream` (for putting records and resharding).
fn client(stream: &str, endpoint: &str) -> KinesisClient {
    let o = KinesisOptions::parse(&opts(stream, endpoint, &[]), &schema()).unwrap();
    KinesisClient::new(&o).unwrap()
}

/// Puts records `ids` (`{"id": n, "k": "k<n % keys>"}`, partition key `k<n % keys>`).
fn put(c: &KinesisClient, ids: std::ops::Range<i64>, keys: i64) {
    let all: Vec<i64> = ids.collect();
    for chunk in all.chunks(500) {
        let entries = chunk.iter().map(|i| entry(format!("{{\"id\": {i}, \"k\": \"k{}\"}}", i % keys).into_bytes(), format!("k{}", i % keys)).unwrap()).collect();
        let r = c.put_records(entries).unwrap();
        assert_eq!(r.len(), chunk.len());
    }
}

fn sources(o: &TableOptions, parallelism: u32, restore: Option<&[Vec<u8>]>) -> Vec<Box<dyn BatchSource>> {
    let c = ConnectorRegistry::default().check(o, &schema()).unwrap();
    let f = c.source(o, schema()).unwrap();
    (0..parallelism)
        .map(|subtask| {
            let ctx = SourceContext { subtask, parallelism };
            let mut s = f(&ctx);
            if let Some(r) = restore {
                s.restore(r.to_vec()).unwrap();
            }
            s.open(&ctx).unwrap();
            s
        })
        .collect()
}

/// Reads from every source in turn until `n` rows are read in all (or `timeout`):
/// per subtask, the (id, key) pairs in the order read.
fn read(srcs: &mut [Box<dyn BatchSource>], n: usize, timeout: Duration) -> Vec<Vec<(i64, String)>> {
    let mut out: Vec<Vec<(i64, String)>> = vec![Vec::new(); srcs.len()];
    let deadline = Instant::now() + timeout;
    while out.iter().map(Vec::len).sum::<usize>() < n && Instant::now() < deadline {
        let mut any = false;
        for (i, s) in srcs.iter_mut().enumerate() {
            let b = s.next_batch(1000).unwrap().expect("unbounded");
            any |= b.num_rows() > 0;
            let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let ks = b.column(1).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            for j in 0..b.num_rows() {
                out[i].push((ids.value(j), ks.value(j).to_string()));
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    out
}

fn snapshot(srcs: &mut [Box<dyn BatchSource>]) -> Vec<Vec<u8>> {
    srcs.iter_mut().flat_map(|s| s.snapshot().unwrap()).collect()
}

fn ids(per_subtask: &[Vec<(i64, String)>]) -> Vec<i64> {
    let mut v: Vec<i64> = per_subtask.iter().flatten().map(|r| r.0).collect();
    v.sort();
    v
}

/// The shard ids (numbers) each source reads, from its checkpointed entries.
fn shards_of(s: &mut Box<dyn BatchSource>) -> Vec<u64> {
    let mut v: Vec<u64> = s
        .snapshot()
        .unwrap()
        .iter()
        .map(|b| {
            let j: serde_json::Value = serde_json::from_slice(b).unwrap();
            weir_connectors::kinesis::shards::shard_number(j["shard"].as_str().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn shards_are_split_across_subtasks_and_reassigned_on_rescale() {
    let Some(ep) = server("shards_are_split_across_subtasks_and_reassigned_on_rescale") else { return };
    let name = stream_name("assign");
    let c = client(&name, &ep);
    c.create_stream(4).unwrap();
    put(&c, 0..400, 40);
    let o = opts(&name, &ep, &[]);
    let mut srcs = sources(&o, 2, None);
    assert_eq!(shards_of(&mut srcs[0]), vec![0, 2]);
    assert_eq!(shards_of(&mut srcs[1]), vec![1, 3]);
    let got = read(&mut srcs, 400, Duration::from_secs(30));
    assert_eq!(ids(&got), (0..400).collect::<Vec<_>>(), "every record once at P=2");
    assert!(got.iter().all(|s| !s.is_empty()), "both subtasks read");
    let snap = snapshot(&mut srcs);
    drop(srcs);

    // restored at P=3: shard n is read by subtask n % 3; only new records are read
    put(&c, 400..700, 40);
    let mut srcs = sources(&o, 3, Some(&snap));
    assert_eq!(shards_of(&mut srcs[0]), vec![0, 3]);
    assert_eq!(shards_of(&mut srcs[1]), vec![1]);
    assert_eq!(shards_of(&mut srcs[2]), vec![2]);
    let got = read(&mut srcs, 300, Duration::from_secs(30));
    let extra = read(&mut srcs, 1, Duration::from_millis(300));
    assert_eq!(ids(&got), (400..700).collect::<Vec<_>>(), "P=2 -> P=3: the new records, each once");
    assert!(ids(&extra).is_empty(), "nothing more: {:?}", ids(&extra));

    // and back to P=1 from there
    let snap = snapshot(&mut srcs);
    put(&c, 700..750, 40);
    let mut srcs = sources(&o, 1, Some(&snap));
    assert_eq!(shards_of(&mut srcs[0]), vec![0, 1, 2, 3]);
    let got = read(&mut srcs, 50, Duration::from_secs(30));
    assert_eq!(ids(&got), (700..750).collect::<Vec<_>>(), "P=3 -> P=1");
    let _ = c.delete_stream();
}

#[test]
fn initial_positions_latest_trim_horizon_and_at_timestamp() {
    let Some(ep) = server("initial_positions_latest_trim_horizon_and_at_timestamp") else { return };
    let name = stream_name("initpos");
    let c = client(&name, &ep);
    c.create_stream(2).unwrap();
    put(&c, 0..50, 7);
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64 / 1000.0;
    std::thread::sleep(Duration::from_millis(300));
    put(&c, 50..80, 7);

    let mut latest = sources(&opts(&name, &ep, &[("scan.stream.initial-position", "LATEST")]), 2, None);
    let mut horizon = sources(&opts(&name, &ep, &[]), 2, None);
    let ts = format!("{t:.3}");
    let mut at = sources(&opts(&name, &ep, &[("scan.stream.initial-position", "AT_TIMESTAMP"), ("scan.stream.initial-timestamp", &ts)]), 2, None);
    // a checkpoint of the LATEST source before anything arrived: its restore must not
    // lose what arrives in between
    let latest_snap = snapshot(&mut latest);
    put(&c, 80..100, 7);

    assert_eq!(ids(&read(&mut horizon, 100, Duration::from_secs(30))), (0..100).collect::<Vec<_>>(), "TRIM_HORIZON: everything");
    assert_eq!(ids(&read(&mut at, 50, Duration::from_secs(30))), (50..100).collect::<Vec<_>>(), "AT_TIMESTAMP: from the time on");
    assert_eq!(ids(&read(&mut latest, 20, Duration::from_secs(30))), (80..100).collect::<Vec<_>>(), "LATEST: what was put after the start");
    let mut restored = sources(&opts(&name, &ep, &[("scan.stream.initial-position", "LATEST")]), 2, Some(&latest_snap));
    assert_eq!(ids(&read(&mut restored, 20, Duration::from_secs(30))), (80..100).collect::<Vec<_>>(), "LATEST restored before its first record");
    for s in [&mut horizon, &mut at, &mut latest, &mut restored] {
        assert!(ids(&read(s, 1, Duration::from_millis(200))).is_empty(), "nothing more");
    }
    let _ = c.delete_stream();
}

#[test]
fn checkpointed_sequence_numbers_are_restored_exactly() {
    let Some(ep) = server("checkpointed_sequence_numbers_are_restored_exactly") else { return };
    let name = stream_name("restore");
    let c = client(&name, &ep);
    c.create_stream(3).unwrap();
    put(&c, 0..900, 30);
    let o = opts(&name, &ep, &[("scan.shard.getrecords.maxrecordcount", "37")]);
    for (p1, p2) in [(3, 2), (2, 3), (1, 1)] {
        let mut srcs = sources(&o, p1, None);
        let first = read(&mut srcs, 250, Duration::from_secs(30));
        let snap = snapshot(&mut srcs);
        // what is read after the checkpoint is read again after the restore: drop it
        let _after = read(&mut srcs, 100, Duration::from_secs(30));
        drop(srcs);
        let mut srcs = sources(&o, p2, Some(&snap));
        let n_first = first.iter().map(Vec::len).sum::<usize>();
        let rest = read(&mut srcs, 900 - n_first, Duration::from_secs(30));
        let mut all = ids(&first);
        all.extend(ids(&rest));
        all.sort();
        assert_eq!(all, (0..900).collect::<Vec<_>>(), "P={p1} -> P={p2}: every record exactly once ({n_first} before the checkpoint)");
        assert!(ids(&read(&mut srcs, 1, Duration::from_millis(200))).is_empty());
    }
    let _ = c.delete_stream();
}

#[test]
fn a_split_while_running_reads_the_parent_then_its_children() {
    let Some(ep) = server("a_split_while_running_reads_the_parent_then_its_children") else { return };
    let name = stream_name("split");
    let c = client(&name, &ep);
    c.create_stream(2).unwrap();
    put(&c, 0..600, 20);
    let o = opts(&name, &ep, &[("scan.shard.getrecords.maxrecordcount", "5")]);
    let mut srcs = sources(&o, 2, None);
    let mut got = read(&mut srcs, 20, Duration::from_secs(30));
    // split shard 0 while its subtask is early in it (about 290 of its records left,
    // read 5 per call: its children are found long before it is read to its end), and put more
    let (lo, hi) = c.hash_key_range("shardId-000000000000").unwrap();
    c.split_shard("shardId-000000000000", &(lo + (hi - lo) / 2).to_string()).unwrap();
    put(&c, 600..900, 20);
    // a checkpoint mid-way, restored at another parallelism later
    let more = read(&mut srcs, 200, Duration::from_secs(30));
    for (g, m) in got.iter_mut().zip(more) {
        g.extend(m);
    }
    let snap = snapshot(&mut srcs);
    let n = got.iter().map(Vec::len).sum::<usize>();
    let tail = read(&mut srcs, 900 - n, Duration::from_secs(30));
    let mut all = got.clone();
    for (g, m) in all.iter_mut().zip(tail) {
        g.extend(m);
    }
    assert_eq!(ids(&all), (0..900).collect::<Vec<_>>(), "every record once across the split");
    // the children (2, 3) of shard 0 are read by shard 0's subtask
    assert_eq!(shards_of(&mut srcs[0]), vec![0, 2, 3]);
    assert_eq!(shards_of(&mut srcs[1]), vec![1]);
    // per key, records are read in the order they were put: the parent's before the children's
    for (i, s) in all.iter().enumerate() {
        let mut last: HashMap<&str, i64> = HashMap::new();
        for (id, k) in s {
            if let Some(prev) = last.insert(k.as_str(), *id) {
                assert!(prev < *id, "subtask {i}: key {k}: {id} read after {prev}");
            }
        }
    }
    // the parent is remembered as finished; a restore at P=3 reads the rest once
    let finished: Vec<String> = srcs[0].snapshot().unwrap().iter().map(|b| String::from_utf8_lossy(b).to_string()).filter(|e| e.contains("Finished")).collect();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert!(finished[0].contains("shardId-000000000000"), "{finished:?}");
    drop(srcs);
    let mut srcs = sources(&o, 3, Some(&snap));
    let rest = read(&mut srcs, 900 - n, Duration::from_secs(30));
    let mut again = ids(&got);
    again.extend(ids(&rest));
    again.sort();
    assert_eq!(again, (0..900).collect::<Vec<_>>(), "restored after the split at P=3: every record once");
    assert!(ids(&read(&mut srcs, 1, Duration::from_millis(300))).is_empty());
    let _ = c.delete_stream();
}

#[test]
fn a_missing_stream_fails_naming_it() {
    let Some(ep) = server("a_missing_stream_fails_naming_it") else { return };
    let o = opts("weir-no-such-stream", &ep, &[]);
    let c = ConnectorRegistry::default().check(&o, &schema()).unwrap();
    let f = c.source(&o, schema()).unwrap();
    let ctx = SourceContext { subtask: 0, parallelism: 1 };
    let e = f(&ctx).open(&ctx).unwrap_err().to_string();
    assert!(e.contains("stream 'weir-no-such-stream'") && e.contains("ListShards") && e.contains("ResourceNotFoundException"), "{e}");
    let e = ConnectorRegistry::default().check(&opts("s", &ep, &[("scan.stream.initial-position", "NOW")]), &schema()).err().unwrap();
    assert!(e.contains("option 'scan.stream.initial-position' = 'NOW'"), "{e}");
}

#[test]
fn read_throughput() {
    let Some(ep) = server("read_throughput") else { return };
    let name = stream_name("rate");
    let c = client(&name, &ep);
    c.create_stream(2).unwrap();
    const N: i64 = 20_000;
    let t = Instant::now();
    put(&c, 0..N, 1000);
    let put_s = t.elapsed().as_secs_f64();
    let mut srcs = sources(&opts(&name, &ep, &[]), 2, None);
    let t = Instant::now();
    let got = read(&mut srcs, N as usize, Duration::from_secs(120));
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(ids(&got).len(), N as usize);
    eprintln!(
        "kinesis (moto, a Python server): put {N} records in {put_s:.2} s ({:.0} records/s, PutRecords of 500), read them in {read_s:.2} s ({:.0} records/s, 2 shards, 2 subtasks)",
        N as f64 / put_s,
        N as f64 / read_s
    );
    let _ = c.delete_stream();
}
