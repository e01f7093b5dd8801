//! SQL jobs reading and writing Kafka topics on a real Kafka-protocol broker
//! (`WEIR_TEST_KAFKA`, tansu started by `scripts/test.d/kafka.sh`):
//!
//! - Kafka → filter → the exactly-once file sink, with a fault injected in the source
//!   (the job restarts from its last checkpoint), stopped with a savepoint at
//!   parallelism 2 and restored at 3 while more records arrive: every record exactly
//!   once (content checked: ids, partitions, offsets), and the offsets committed to the
//!   consumer group;
//! - Kafka → tumbling-window aggregate (WATERMARK on the record timestamp, per-partition
//!   watermarks) → Kafka, with a fault: every window read back with its exact count
//!   (at-least-once: a window may appear twice, never missing or wrong).
//!
//! Also the benchmarks (`#[ignore]`d: `cargo test -p weir-sql --test kafka -- --ignored
//! --nocapture`): Kafka → Kafka passthrough and Kafka → windowed aggregate → Kafka.
#![cfg(feature = "kafka")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir::connector::files::read_committed;
use weir_connectors::kafka::rdkafka;

fn broker(test: &str) -> Option<String> {
    match std::env::var("WEIR_TEST_KAFKA") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIPPING {test} (WEIR_TEST_KAFKA unset: no Kafka broker; scripts/test.d/kafka.sh starts one)");
            None
        }
    }
}

fn unique(name: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{n}", std::process::id())
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-kafka-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn create_topic(broker: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", broker).create().unwrap();
    for r in futures::executor::block_on(admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", broker).create().unwrap();
    let t0 = Instant::now();
    while !c.fetch_metadata(Some(topic), Duration::from_secs(5)).unwrap().topics().first().is_some_and(|t| t.error().is_none() && t.partitions().len() == partitions as usize) {
        assert!(t0.elapsed() < Duration::from_secs(20), "topic {topic} never showed up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One record per batch: tansu mishandles fetches from inside a batch (see
/// runtime/connectors/tests/kafka.rs, `probe_broker_fetch_inside_a_batch`).
fn producer(broker: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new().set("bootstrap.servers", broker).set("linger.ms", "0").set("batch.num.messages", "1").create().unwrap()
}

/// `{"id": i, "name": "n<i>"}` into partition `i % 3`, at time `ts(i)`.
fn produce(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, ids: impl IntoIterator<Item = i64>, ts: impl Fn(i64) -> i64) {
    for i in ids {
        let v = format!("{{\"id\": {i}, \"name\": \"n{i}\"}}");
        let k = format!("{i}");
        let mut rec = BaseRecord::<str, str>::to(topic).partition((i % 3) as i32).key(&k).payload(&v).timestamp(ts(i));
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(100);
    s
}

fn compile(sql: &str, parallelism: u32) -> weir::StreamEnv {
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    env
}

/// (id, part, off) rows of the exactly-once sink's committed files.
fn committed(dir: &Path) -> Vec<(i64, i64, i64)> {
    let mut v: Vec<(i64, i64, i64)> = read_committed(dir)
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (j["id"].as_i64().unwrap(), j["part"].as_i64().unwrap(), j["off"].as_i64().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kafka_to_files_exactly_once_across_a_fault_and_a_savepoint_restored_from_two_to_three_subtasks() {
    let Some(b) = broker("kafka_to_files_exactly_once_across_a_fault_and_a_savepoint_restored_from_two_to_three_subtasks") else { return };
    let (topic, group) = (unique("sql-in"), unique("sql-group"));
    create_topic(&b, &topic, 3);
    let p = producer(&b);
    produce(&p, &topic, 0..600, |_| now_ms());
    let dir = tempdir("files");
    let (out, ckpt) = (dir.join("out"), dir.join("ckpt"));
    let sql = format!(
        "CREATE TABLE src (
    id BIGINT, name STRING,
    part INT METADATA FROM 'partition' VIRTUAL,
    off BIGINT METADATA FROM 'offset',
    ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'
) WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{b}', 'properties.group.id' = '{group}',
    'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
CREATE TABLE out (id BIGINT, part INT, off BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
INSERT INTO out SELECT id, part, off FROM src WHERE id % 5 <> 4;",
        out.display()
    );
    let want = |n: i64| -> Vec<i64> { (0..n).filter(|i| i % 5 != 4).collect() };
    // at 2 subtasks, a fault in the source mid-stream, more records while it runs;
    // stopped with a savepoint after a checkpoint
    let env = compile(&sql, 2);
    let mut s = settings(&ckpt);
    // the fault counts batches (a SQL source emits record batches)
    s.faults = vec![("source: src".into(), 2)];
    let stop = StopHandle::default();
    let seen = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (b, topic, stop, seen, out) = (b.clone(), topic.clone(), stop.clone(), seen.clone(), out.clone());
        std::thread::spawn(move || {
            let p = producer(&b);
            for k in 0..6 {
                produce(&p, &topic, (600 + k * 50)..(650 + k * 50), |_| now_ms());
                std::thread::sleep(Duration::from_millis(50));
            }
            // after a checkpoint that committed rows (some records are read before the savepoint)
            let t0 = Instant::now();
            while !(seen.load(Ordering::SeqCst) && committed(&out).len() > 100) && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.stop_with_savepoint();
        })
    };
    let report = coordinator::run(&env, &s, &stop, |c| {
        if !c.savepoint && c.id > 3 {
            seen.store(true, Ordering::SeqCst);
        }
    })
    .unwrap_or_else(|e| panic!("first run: {e}"));
    feeder.join().unwrap();
    assert_eq!(report.restarts, 1, "one injected fault, one restart");
    let sp = report.savepoint.expect("stopped with a savepoint");
    let first = committed(&out);
    let mut ids: Vec<i64> = first.iter().map(|r| r.0).collect();
    ids.dedup();
    assert_eq!(ids.len(), first.len(), "no record twice after the first run");
    assert!(!first.is_empty(), "records read before the savepoint");
    // restored at 3 subtasks while more records arrive; stopped once all are out
    let env = compile(&sql, 3);
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url.clone());
    let stop = StopHandle::default();
    let feeder = {
        let (b, topic, stop, out) = (b.clone(), topic.clone(), stop.clone(), out.clone());
        std::thread::spawn(move || {
            let p = producer(&b);
            for k in 0..6 {
                produce(&p, &topic, (900 + k * 50)..(950 + k * 50), |_| now_ms());
                std::thread::sleep(Duration::from_millis(50));
            }
            let n = want(1200).len();
            let t0 = Instant::now();
            while committed(&out).len() < n && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.stop_with_savepoint();
        })
    };
    coordinator::run(&env, &s, &stop, |_| {}).unwrap_or_else(|e| panic!("restored run: {e}"));
    feeder.join().unwrap();
    let got = committed(&out);
    eprintln!("kafka → files: {} rows after the first run (P=2, one fault), {} after the restore (P=3)", first.len(), got.len());
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), want(1200), "every record exactly once");
    // the metadata: the partition each was produced to, one offset per record of it
    assert!(got.iter().all(|r| r.1 == r.0 % 3), "partition metadata");
    let mut offs: Vec<(i64, i64)> = got.iter().map(|r| (r.1, r.2)).collect();
    offs.sort();
    offs.dedup();
    assert_eq!(offs.len(), got.len(), "offset metadata: one per record");
    // the offsets of completed checkpoints are in the consumer group (for lag tools)
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &b).set("group.id", &group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&topic, p);
    }
    let committed_offsets: i64 = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap().elements().iter().map(|e| if let Offset::Offset(n) = e.offset() { n } else { 0 }).sum();
    assert!(committed_offsets >= 600, "the group's committed offsets ({committed_offsets}) follow the checkpoints");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every record of `topic`, values as JSON.
fn read_topic(b: &str, topic: &str, until: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", b).set("group.id", unique("reader")).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let t0 = Instant::now();
    while !until(&out) && t0.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(serde_json::from_slice(m.payload().unwrap_or(b"null")).unwrap());
        }
    }
    out
}

/// Distinct windows of the output: window_start → (cnt, s); panics on a window seen
/// twice with other values (duplicates of at-least-once are identical).
fn windows(rows: &[serde_json::Value]) -> BTreeMap<String, (i64, i64)> {
    let mut m: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in rows {
        let w = (r["cnt"].as_i64().unwrap(), r["s"].as_i64().unwrap());
        let k = r["window_start"].as_str().unwrap().to_string();
        if let Some(old) = m.insert(k.clone(), w) {
            assert_eq!(old, w, "window {k} written twice with other values");
        }
    }
    m
}

fn window_job(b: &str, src: &str, out: &str, group: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE src (id BIGINT, name STRING, ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH ('connector' = 'kafka', 'topic' = '{src}', 'properties.bootstrap.servers' = '{b}', 'properties.group.id' = '{group}',
    'scan.startup.mode' = 'earliest-offset', 'format' = 'json', 'scan.watermark.idle-timeout' = '2 s'{extra});
CREATE TABLE out (window_start TIMESTAMP(3), window_end TIMESTAMP(3), cnt BIGINT, s BIGINT) WITH ('connector' = 'kafka', 'topic' = '{out}',
    'properties.bootstrap.servers' = '{b}', 'format' = 'json');
INSERT INTO out SELECT window_start, window_end, COUNT(*) AS cnt, SUM(id) AS s
FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end;"
    )
}

#[test]
fn kafka_windowed_aggregate_to_kafka_at_least_once_across_a_fault_with_per_partition_watermarks() {
    let Some(b) = broker("kafka_windowed_aggregate_to_kafka_at_least_once_across_a_fault_with_per_partition_watermarks") else { return };
    let (src, out, group) = (unique("sql-events"), unique("sql-windows"), unique("sql-wgroup"));
    create_topic(&b, &src, 3);
    create_topic(&b, &out, 1);
    // 10 windows of 1 s, 100 records each (one every 10 ms); the partitions are
    // produced one after the other (partition 0's records first), so a reader ahead
    // on one partition must not make the others' records late
    let base = 1_700_000_000_000i64;
    let p = producer(&b);
    for part in 0..3 {
        produce(&p, &src, (0..1000).filter(|i| i % 3 == part), |i| base + i * 10);
    }
    // closing records: the watermark passes the 10 windows on every partition
    produce(&p, &src, 3000..3003, |_| base + 20_000);
    let env = compile(&window_job(&b, &src, &out, &group, ""), 2);
    let dir = tempdir("windows");
    let mut s = settings(&dir.join("ckpt"));
    s.faults = vec![("source: src".into(), 2)];
    let stop = StopHandle::default();
    let st = stop.clone();
    let (b2, out2) = (b.clone(), out.clone());
    let reader = std::thread::spawn(move || {
        let rows = read_topic(&b2, &out2, |rows| windows(rows).len() >= 10);
        st.stop_with_savepoint();
        rows
    });
    let report = coordinator::run(&env, &s, &stop, |_| {}).unwrap_or_else(|e| panic!("run: {e}"));
    let rows = reader.join().unwrap();
    let w = windows(&rows);
    eprintln!("kafka → window → kafka: {} window rows written, {} distinct: {w:?}", rows.len(), w.len());
    assert_eq!(report.restarts, 1, "one injected fault, one restart");
    assert_eq!(w.len(), 10, "{w:?}");
    for (k, (cnt, sum)) in w.iter().enumerate().map(|(k, (_, v))| (k as i64, *v)) {
        let want_sum: i64 = (k * 100..k * 100 + 100).sum();
        assert_eq!((cnt, sum), (100, want_sum), "window {k}: every record counted once");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kafka → Kafka passthrough and Kafka → 1 s tumbling window → Kafka, events/s at
/// parallelism 1 (one core for the job; the broker runs beside it).
#[test]
#[ignore]
fn bench_kafka_passthrough_and_windowed_aggregate() {
    let Some(b) = broker("bench_kafka_passthrough_and_windowed_aggregate") else { return };
    const N: i64 = 200_000;
    let src = unique("bench-in");
    create_topic(&b, &src, 3);
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new().set("bootstrap.servers", &b).set("linger.ms", "20").create().unwrap();
    let base = 1_700_000_000_000i64;
    let t0 = Instant::now();
    produce(&p, &src, 0..N, |i| base + i);
    eprintln!("bench: produced {N} records in {:?} ({:.0}/s)", t0.elapsed(), N as f64 / t0.elapsed().as_secs_f64());
    produce(&p, &src, N..N + 3, |_| base + N + 10_000);
    // passthrough
    let out = unique("bench-out");
    create_topic(&b, &out, 3);
    let sql = format!(
        "CREATE TABLE src (id BIGINT, name STRING) WITH ('connector' = 'kafka', 'topic' = '{src}', 'properties.bootstrap.servers' = '{b}', 'scan.startup.mode' = 'earliest-offset', 'format' = 'json');
CREATE TABLE out (id BIGINT, name STRING) WITH ('connector' = 'kafka', 'topic' = '{out}', 'properties.bootstrap.servers' = '{b}', 'format' = 'json', 'properties.linger.ms' = '20');
INSERT INTO out SELECT id, name FROM src;"
    );
    let env = compile(&sql, 1);
    let stop = StopHandle::default();
    let st = stop.clone();
    let (b2, o2) = (b.clone(), out.clone());
    let t0 = Instant::now();
    let r = std::thread::spawn(move || {
        let n = read_topic(&b2, &o2, |r| r.len() >= (N + 3) as usize).len();
        st.stop_with_savepoint();
        n
    });
    let dir = tempdir("bench");
    coordinator::run(&env, &settings(&dir.join("ckpt1")), &stop, |_| {}).unwrap();
    let n = r.join().unwrap();
    let el = t0.elapsed();
    eprintln!("bench: Kafka → Kafka passthrough: {n} records in {el:?}: {:.0} events/s (parallelism 1)", n as f64 / el.as_secs_f64());
    // windowed aggregate
    let out = unique("bench-win");
    create_topic(&b, &out, 1);
    let env = compile(&window_job(&b, &src, &out, &unique("bench-g"), ""), 1);
    let stop = StopHandle::default();
    let st = stop.clone();
    let (b2, o2) = (b.clone(), out.clone());
    let t0 = Instant::now();
    let windows_want = (N / 1000) as usize;
    let r = std::thread::spawn(move || {
        let rows = read_topic(&b2, &o2, |r| windows(r).len() >= windows_want);
        st.stop_with_savepoint();
        rows.len()
    });
    coordinator::run(&env, &settings(&dir.join("ckpt2")), &stop, |_| {}).unwrap();
    let w = r.join().unwrap();
    let el = t0.elapsed();
    eprintln!("bench: Kafka → 1 s tumbling window → Kafka: {N} events ({w} windows) in {el:?}: {:.0} events/s (parallelism 1)", N as f64 / el.as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example job (examples/kafka/orders-to-files.sql) plans (no broker needed:
/// nothing connects before the job runs); bad options are errors naming them.
#[test]
fn the_example_job_plans_and_bad_options_name_the_option() {
    let sql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/kafka/orders-to-files.sql")).unwrap();
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 2, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("the example: {e}"));
    let err = |with: &str| {
        let sql = format!(
            "CREATE TABLE t (id BIGINT, ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp') WITH ('connector' = 'kafka', 'topic' = 't', 'properties.bootstrap.servers' = 'h:1', 'format' = 'json'{with});
CREATE TABLE o (id BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO o SELECT id FROM t;"
        );
        let env = weir::StreamEnv::new(weir::JobConfig::default());
        weir_sql::compile(&sql, &env, &Default::default()).map(|_| ()).unwrap_err().to_string()
    };
    let e = err(", 'scan.startup.mode' = 'newest'");
    assert!(e.contains("table 't'") && e.contains("option 'scan.startup.mode' = 'newest'"), "{e}");
    let e = err(", 'sink.delivery-guarantee' = 'exactly-once'");
    assert!(e.contains("exactly-once") && e.contains("init_transactions"), "{e}");
    let e = err(", 'scan.bounded.mode' = 'latest-offset'");
    assert!(e.contains("has no option 'scan.bounded.mode'"), "{e}");
    let sql = "CREATE TABLE t (id BIGINT, x INT METADATA FROM 'nope') WITH ('connector' = 'kafka', 'topic' = 't', 'properties.bootstrap.servers' = 'h:1', 'format' = 'json');\nSELECT * FROM t;";
    let env = weir::StreamEnv::new(weir::JobConfig::default());
    let e = weir_sql::compile(sql, &env, &Default::default()).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("no metadata 'nope'"), "{e}");
}
