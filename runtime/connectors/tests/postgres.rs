//! The postgres connector against a real server (`WEIR_TEST_POSTGRES`, started by
//! `scripts/test.d/postgres.sh`): the sink's upserts, deletes and batching, the
//! partitioned scan and its checkpointed positions, and the errors a user sees.
#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir::arrow::ArrowBatch;
use weir::connector::{SinkContext, SourceContext};
use weir::record::Rec;
use weir_connectors::postgres::sink::{PgSink, shape};
use weir_connectors::postgres::{PgConfig, Postgres};
use weir_connectors::{ChangeBatch, Connector, RowKind, TableOptions};

/// The test server's URL, or `None` (and a line on stderr) without one.
fn server(test: &str) -> Option<String> {
    match std::env::var("WEIR_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIPPING {test} (WEIR_TEST_POSTGRES unset)");
            None
        }
    }
}

/// `postgresql://user:password@host:port/db` as (URL without credentials, user, password).
fn split_url(url: &str) -> (String, String, String) {
    let rest = url.split_once("://").expect("a URL").1;
    let (auth, host) = rest.rsplit_once('@').expect("credentials in WEIR_TEST_POSTGRES");
    let (user, pass) = auth.split_once(':').expect("a password in WEIR_TEST_POSTGRES");
    (format!("postgresql://{host}"), user.to_string(), pass.to_string())
}

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect to the test server")
}

fn opts(url: &str, table: &str, pk: &[&str], extra: &[(&str, &str)]) -> TableOptions {
    let (u, user, pass) = split_url(url);
    let mut map: BTreeMap<String, String> = [("url", u.as_str()), ("table-name", table), ("username", user.as_str()), ("password", pass.as_str())].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    TableOptions { table: format!("sql_{table}"), connector: "postgres".into(), map, primary_key: pk.iter().map(|s| s.to_string()).collect(), partition_keys: Vec::new() }
}

fn kv_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("v", DataType::Utf8, true)]))
}

fn batch(rows: &[(RowKind, i64, &str)]) -> Rec<ChangeBatch> {
    let ids = Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let vs = StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>());
    let b = RecordBatch::try_new(kv_schema(), vec![Arc::new(ids), Arc::new(vs)]).unwrap();
    Rec::new(0, ChangeBatch { rows: ArrowBatch(b), kinds: Some(rows.iter().map(|r| r.0).collect()) })
}

fn sink(o: &TableOptions) -> PgSink {
    let cfg = PgConfig::from_options(o).unwrap();
    let sh = shape(&cfg, &kv_schema()).unwrap();
    PgSink::new(cfg, sh)
}

fn rows(c: &mut postgres::Client, table: &str) -> Vec<(i64, Option<String>)> {
    c.query(&format!("SELECT id::int8, v::text FROM {table} ORDER BY id"), &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[test]
fn upserts_deletes_and_the_last_change_per_key_wins() {
    use weir::connector::Sink;
    let Some(url) = server("upserts_deletes_and_the_last_change_per_key_wins") else { return };
    let mut c = client(&url);
    let t = format!("conn_upsert_{}", std::process::id());
    c.batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id bigint PRIMARY KEY, v varchar(20))")).unwrap();
    // nothing is written before a flush: max-rows and the interval are large
    let mut s = sink(&opts(&url, &t, &["id"], &[("sink.buffer-flush.max-rows", "1000"), ("sink.buffer-flush.interval", "1 h")]));
    s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
    use RowKind::*;
    s.write(&[batch(&[(Insert, 1, "a"), (Insert, 2, "b"), (Insert, 3, "c"), (UpdateBefore, 1, "a"), (UpdateAfter, 1, "a2")])]).unwrap();
    // in one batch: a key deleted then inserted again, one inserted then deleted
    s.write(&[batch(&[(Delete, 2, "b"), (Insert, 2, "b2"), (Insert, 4, "d"), (Delete, 4, "d"), (UpdateBefore, 1, "a2"), (UpdateAfter, 1, "a3")])]).unwrap();
    s.flush().unwrap();
    assert!(rows(&mut c, &t).is_empty(), "buffered until the checkpoint");
    s.pre_commit(1).unwrap();
    assert_eq!(rows(&mut c, &t), vec![(1, Some("a3".into())), (2, Some("b2".into())), (3, Some("c".into()))]);
    // a delete across flushes, and a replay of the same changes (as after a restore) converges
    s.write(&[batch(&[(Delete, 3, "c")])]).unwrap();
    s.pre_commit(2).unwrap();
    s.write(&[batch(&[(Delete, 3, "c"), (UpdateBefore, 1, "a2"), (UpdateAfter, 1, "a3")])]).unwrap();
    s.pre_commit(3).unwrap();
    assert_eq!(rows(&mut c, &t), vec![(1, Some("a3".into())), (2, Some("b2".into()))]);
    c.batch_execute(&format!("DROP TABLE {t}")).unwrap();
}

#[test]
fn batches_flush_at_max_rows_and_append_mode_inserts_every_row() {
    use weir::connector::Sink;
    let Some(url) = server("batches_flush_at_max_rows_and_append_mode_inserts_every_row") else { return };
    let mut c = client(&url);
    let t = format!("conn_append_{}", std::process::id());
    c.batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id integer, v text)")).unwrap();
    let mut s = sink(&opts(&url, &t, &[], &[("sink.buffer-flush.max-rows", "10"), ("sink.buffer-flush.interval", "0")]));
    s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
    let b: Vec<(RowKind, i64, &str)> = (0..25).map(|i| (RowKind::Insert, i % 20, "x")).collect();
    s.write(&[batch(&b[..9])]).unwrap();
    assert_eq!(rows(&mut c, &t).len(), 0, "9 rows < max-rows: buffered");
    s.write(&[batch(&b[9..])]).unwrap();
    assert_eq!(rows(&mut c, &t).len(), 25, "max-rows reached: flushed");
    // append mode keeps duplicates (no key): at-least-once
    let got = rows(&mut c, &t);
    assert_eq!(got.iter().filter(|r| r.0 == 3).count(), 2);
    c.batch_execute(&format!("DROP TABLE {t}")).unwrap();
}

#[test]
fn the_interval_flushes_without_a_checkpoint() {
    use weir::connector::Sink;
    let Some(url) = server("the_interval_flushes_without_a_checkpoint") else { return };
    let mut c = client(&url);
    let t = format!("conn_interval_{}", std::process::id());
    c.batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id bigint PRIMARY KEY, v text)")).unwrap();
    let mut s = sink(&opts(&url, &t, &["id"], &[("sink.buffer-flush.interval", "100 ms")]));
    s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
    s.write(&[batch(&[(RowKind::Insert, 7, "x")])]).unwrap();
    s.flush().unwrap();
    assert!(rows(&mut c, &t).is_empty());
    std::thread::sleep(std::time::Duration::from_millis(150));
    s.flush().unwrap(); // what the task calls while it waits
    assert_eq!(rows(&mut c, &t), vec![(7, Some("x".into()))]);
    c.batch_execute(&format!("DROP TABLE {t}")).unwrap();
}

#[test]
fn errors_name_the_table_and_never_the_password() {
    use weir::connector::Sink;
    let Some(url) = server("errors_name_the_table_and_never_the_password") else { return };
    let t = format!("conn_missing_{}", std::process::id());
    // a missing table: named (SQL table and PostgreSQL table), with the server's message
    let e = sink(&opts(&url, &t, &["id"], &[])).open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap_err().to_string();
    assert!(e.contains(&format!("table 'sql_{t}' ({t})")) && e.contains("does not exist") && e.contains("42P01"), "{e}");
    // a wrong password: the user and server are named, the password is not
    let mut o = opts(&url, &t, &[], &[("sink.max-retries", "0")]);
    o.map.insert("password".into(), "not-the-Secret-42".into());
    let e = sink(&o).open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap_err().to_string();
    let (_, user, pass) = split_url(&url);
    assert!(e.contains("password authentication failed") && e.contains(&user) && e.contains("cannot connect to postgresql://"), "{e}");
    assert!(!e.contains("not-the-Secret-42") && !e.contains(&pass), "{e}");
    assert!(!format!("{o:?}").contains("not-the-Secret-42"), "Debug of the options shows the password");
    // the password in the URL is not shown either
    let (u, user, _) = split_url(&url);
    let mut o = opts(&url, &t, &[], &[("sink.max-retries", "0")]);
    o.map.remove("password");
    o.map.remove("username");
    o.map.insert("url".into(), u.replace("postgresql://", &format!("postgresql://{user}:in-url-Secret-7@")));
    let e = sink(&o).open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap_err().to_string();
    assert!(e.contains("password authentication failed") && !e.contains("in-url-Secret-7"), "{e}");
    // a refused connection is retried (with backoff), then named
    let mut o = opts(&url, &t, &[], &[("sink.max-retries", "2"), ("sink.retry-backoff", "10 ms")]);
    o.map.insert("url".into(), "postgresql://127.0.0.1:1/weir".into());
    let started = std::time::Instant::now();
    let e = sink(&o).open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap_err().to_string();
    assert!(e.contains("cannot connect to postgresql://127.0.0.1:1/weir") && started.elapsed() >= std::time::Duration::from_millis(30), "{e}");
    // a column the table lacks: named by the server
    let mut c = client(&url);
    c.batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id bigint PRIMARY KEY)")).unwrap();
    let e = sink(&opts(&url, &t, &["id"], &[])).open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap_err().to_string();
    assert!(e.contains("column \"v\""), "{e}");
    // a primary key PostgreSQL does not know as unique
    c.batch_execute(&format!("DROP TABLE {t}; CREATE TABLE {t} (id bigint, v text)")).unwrap();
    let e = sink(&opts(&url, &t, &["id"], &[])).open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap_err().to_string();
    assert!(e.contains("no primary key or unique constraint on (id)") && e.contains(&t), "{e}");
    // a bad value fails the flush with the statement kind and the server's message
    c.batch_execute(&format!("DROP TABLE {t}; CREATE TABLE {t} (id bigint PRIMARY KEY, v varchar(2))")).unwrap();
    let mut s = sink(&opts(&url, &t, &["id"], &[]));
    s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
    s.write(&[batch(&[(RowKind::Insert, 1, "too long")])]).unwrap();
    let e = s.pre_commit(1).unwrap_err().to_string();
    assert!(e.contains("UPSERT") && e.contains("too long for type character varying(2)") && e.contains(&t), "{e}");
    c.batch_execute(&format!("DROP TABLE {t}")).unwrap();
}

fn scan_table(c: &mut postgres::Client, t: &str) {
    c.batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id bigint, name text)")).unwrap();
    // 0..=999, plus NULL and values outside the bounds
    c.batch_execute(&format!("INSERT INTO {t} SELECT g, 'n' || g FROM generate_series(0, 999) g; INSERT INTO {t} VALUES (NULL, 'null'), (-5, 'below'), (5000, 'above'), (7, 'dup')")).unwrap();
}

fn read_all(src: &mut Box<dyn weir_connectors::BatchSource>, limit: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    while limit.is_none_or(|l| out.len() < l) {
        match src.next_batch(64).unwrap() {
            None => break,
            Some(b) => {
                let names = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                out.extend(names.iter().map(|n| n.unwrap_or("?").to_string()));
            }
        }
    }
    out
}

#[test]
fn a_partitioned_scan_reads_each_row_once_and_resumes_from_its_splits() {
    let Some(url) = server("a_partitioned_scan_reads_each_row_once_and_resumes_from_its_splits") else { return };
    let mut c = client(&url);
    let t = format!("conn_scan_{}", std::process::id());
    scan_table(&mut c, &t);
    let mut want: Vec<String> = (0..1000).map(|g| format!("n{g}")).chain(["null", "below", "above", "dup"].map(String::from)).collect();
    want.sort();
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]));
    let o = opts(&url, &t, &[], &[("scan.partition.column", "id"), ("scan.partition.num", "3"), ("scan.partition.lower-bound", "0"), ("scan.partition.upper-bound", "999"), ("scan.fetch-size", "50")]);
    let pg = Postgres::new();
    pg.validate(&o, &schema).unwrap();
    let factory = pg.source(&o, schema.clone()).unwrap();
    // three subtasks: each reads its split, every row once
    let mut got = Vec::new();
    for i in 0..3 {
        let mut s = factory(&SourceContext { subtask: i, parallelism: 3 });
        s.open(&SourceContext { subtask: i, parallelism: 3 }).unwrap();
        let part = read_all(&mut s, None);
        assert!(part.len() > 300, "subtask {i} read {}", part.len());
        got.extend(part);
    }
    got.sort();
    assert_eq!(got, want);
    // checkpointed mid-scan at parallelism 3, restored at parallelism 2
    let mut first = Vec::new();
    let mut snaps = Vec::new();
    for i in 0..3 {
        let mut s = factory(&SourceContext { subtask: i, parallelism: 3 });
        s.open(&SourceContext { subtask: i, parallelism: 3 }).unwrap();
        // subtask 0 finishes its split, 1 reads a part, 2 nothing
        let part = read_all(&mut s, [None, Some(100), Some(0)][i as usize]);
        first.extend(part);
        snaps.extend(s.snapshot().unwrap());
    }
    assert_eq!(snaps.len(), 3);
    let mut rest = Vec::new();
    for i in 0..2u32 {
        let mine: Vec<Vec<u8>> = snaps.iter().enumerate().filter(|(j, _)| *j as u32 % 2 == i).map(|(_, s)| s.clone()).collect();
        let mut s = factory(&SourceContext { subtask: i, parallelism: 2 });
        s.restore(mine).unwrap();
        s.open(&SourceContext { subtask: i, parallelism: 2 }).unwrap();
        rest.extend(read_all(&mut s, None));
    }
    assert!(!rest.iter().any(|n| n == "below" || n == "null"), "the finished split 0 is not read again");
    let mut all: Vec<String> = first.into_iter().chain(rest).collect();
    all.sort();
    assert_eq!(all, want, "every row once across the restore");
    // a missing table is named
    let o = opts(&url, &format!("{t}_missing"), &[], &[]);
    let mut s = pg.source(&o, schema).unwrap()(&SourceContext { subtask: 0, parallelism: 1 });
    let e = s.next_batch(10).unwrap_err().to_string();
    assert!(e.contains(&format!("{t}_missing")) && e.contains("does not exist"), "{e}");
    c.batch_execute(&format!("DROP TABLE {t}")).unwrap();
}

#[test]
fn column_types_round_trip() {
    use weir::connector::Sink;
    let Some(url) = server("column_types_round_trip") else { return };
    let mut c = client(&url);
    let t = format!("conn_types_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (i8 smallint, i16 smallint, i32 integer, i64 bigint PRIMARY KEY, f32 real, f64 double precision, s varchar(50), b boolean, ts timestamp(3), tz timestamptz, d numeric(12,3), day date)"
    ))
    .unwrap();
    use arrow::array::*;
    use arrow::datatypes::TimeUnit;
    let schema = Arc::new(Schema::new(vec![
        Field::new("i8", DataType::Int8, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("i64", DataType::Int64, false),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("tz", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        Field::new("d", DataType::Decimal128(12, 3), true),
        Field::new("day", DataType::Date32, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int8Array::from(vec![Some(-8), None])),
        Arc::new(Int16Array::from(vec![Some(16), None])),
        Arc::new(Int32Array::from(vec![Some(-32), None])),
        Arc::new(Int64Array::from(vec![1, 2])),
        Arc::new(Float32Array::from(vec![Some(1.5), None])),
        Arc::new(Float64Array::from(vec![Some(-2.25), None])),
        Arc::new(StringArray::from(vec![Some("héllo 'quoted'"), None])),
        Arc::new(BooleanArray::from(vec![Some(true), None])),
        Arc::new(TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None])),
        Arc::new(TimestampMillisecondArray::from(vec![Some(1_700_000_000_456), None]).with_timezone("UTC")),
        Arc::new(Decimal128Array::from(vec![Some(-1_234_567), None]).with_precision_and_scale(12, 3).unwrap()),
        Arc::new(Date32Array::from(vec![Some(19_700), None])),
    ];
    let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let o = opts(&url, &t, &["i64"], &[]);
    let cfg = PgConfig::from_options(&o).unwrap();
    let mut s = PgSink::new(cfg.clone(), shape(&cfg, &schema).unwrap());
    s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
    s.write(&[Rec::new(0, ChangeBatch::inserts(b.clone()))]).unwrap();
    s.pre_commit(1).unwrap();
    let text: Vec<String> = c.simple_query(&format!("SELECT i8, i16, i32, i64, f32, f64, s, b, ts, tz AT TIME ZONE 'UTC', d, day FROM {t} WHERE i64 = 1")).unwrap().iter().filter_map(|m| match m {
        postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect::<Vec<_>>().join("|")),
        _ => None,
    }).collect();
    assert_eq!(text, vec!["-8|16|-32|1|1.5|-2.25|héllo 'quoted'|t|2023-11-14 22:13:20.123|2023-11-14 22:13:20.456|-1234.567|2023-12-09"]);
    // and read back into the same Arrow types, NULLs included
    let mut src = Postgres::new().source(&o, schema.clone()).unwrap()(&SourceContext { subtask: 0, parallelism: 1 });
    let back = src.next_batch(10).unwrap().unwrap();
    assert_eq!(back, b);
    drop(src); // its transaction holds a lock on the table
    // an unsupported type is named
    let bad = Arc::new(Schema::new(vec![Field::new("blob", DataType::Binary, true)]));
    let e = shape(&cfg, &bad).unwrap_err();
    assert!(e.contains("column 'blob'"), "{e}");
    c.batch_execute(&format!("DROP TABLE {t}")).unwrap();
}

/// A lookup source finds each key's rows with one statement per key; with
/// `lookup.cache.max-rows` a key read once is served from the cache (a change in
/// the table is not seen until its TTL passes), without it every lookup reads.
#[test]
fn lookups_read_each_key_and_cache_them() {
    use arrow::array::{Array, ArrayRef, AsArray};
    let Some(url) = server("lookups_read_each_key_and_cache_them") else { return };
    let mut c = client(&url);
    let t = format!("conn_lookup_{}", std::process::id());
    c.batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id bigint, v text); INSERT INTO {t} VALUES (1, 'one'), (2, 'two'), (2, 'deux')")).unwrap();
    let keys: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![Some(2), None, Some(3), Some(1)]))];
    let values = |r: &weir_connectors::LookupRows| -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = r.probe_rows.iter().zip(r.rows.column(1).as_string::<i32>().iter()).map(|(p, s)| (*p, s.unwrap_or("NULL").to_string())).collect();
        v.sort();
        v
    };
    let cached = Postgres::new().lookup(&opts(&url, &t, &[], &[("lookup.cache.max-rows", "100"), ("lookup.cache.ttl", "1 h")]), kv_schema(), &[0]).unwrap();
    let uncached = Postgres::new().lookup(&opts(&url, &t, &[], &[]), kv_schema(), &[0]).unwrap();
    let want = vec![(0, "deux".to_string()), (0, "two".to_string()), (3, "one".to_string())];
    assert_eq!(values(&cached.lookup(&keys).unwrap()), want);
    assert_eq!(values(&uncached.lookup(&keys).unwrap()), want);
    c.batch_execute(&format!("UPDATE {t} SET v = 'uno' WHERE id = 1; INSERT INTO {t} VALUES (3, 'three')")).unwrap();
    assert_eq!(values(&cached.lookup(&keys).unwrap()), want, "served from the cache, the missing key 3 too");
    assert_eq!(values(&uncached.lookup(&keys).unwrap()), vec![(0, "deux".to_string()), (0, "two".to_string()), (2, "three".to_string()), (3, "uno".to_string())]);
    assert!(cached.lookup(&keys).unwrap().rows.column(0).null_count() == 0);
    c.batch_execute(&format!("DROP TABLE {t}")).unwrap();
}
