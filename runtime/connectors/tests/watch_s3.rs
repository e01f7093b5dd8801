//! The `filesystem` connector on a bucket prefix (`'path' = 's3://bucket/prefix/'`),
//! against a real S3-compatible server (started by `./test.sh`): objects put while
//! the source runs are read exactly once, a restore mid-way at another parallelism
//! repeats and loses nothing (JSON and CSV), a prefix is read bounded too, errors
//! name the URL, and the throughput of reading from the bucket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir::connector::SourceContext;
use weir_connectors::filesystem::store::{Bucket, BucketUrl};
use weir_connectors::{BatchSource, ConnectorRegistry, TableOptions};

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

/// A fresh prefix of the test bucket: its URL (with `/`) and a client to put objects.
fn prefix(bucket: &str, tag: &str) -> (String, Bucket) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let url = format!("s3://{bucket}/watch-{tag}-{}-{nanos}/", std::process::id());
    let client = Bucket::open(&BucketUrl::parse(&url).unwrap()).unwrap();
    (url, client)
}

fn put(client: &Bucket, url: &str, name: &str, ids: std::ops::Range<i64>, csv: bool) {
    let text: String = ids.map(|i| if csv { format!("{i},n{i}\n") } else { format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n") }).collect();
    let key = BucketUrl::parse(&format!("{url}{name}")).unwrap().path;
    client.put(&key, text.into_bytes()).unwrap();
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
}

fn opts(url: &str, extra: &[(&str, &str)]) -> TableOptions {
    let mut map: BTreeMap<String, String> = [("path".to_string(), url.to_string())].into_iter().collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    TableOptions { table: "objects".into(), connector: "filesystem".into(), map, primary_key: Vec::new(), partition_keys: Vec::new() }
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

/// Reads until a call finds nothing now (an empty batch) or the input ends, up to
/// about `limit` ids: the ids read.
fn drain(s: &mut dyn BatchSource, limit: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.len() < limit {
        let Some(b) = s.next_batch(1024).unwrap() else { break };
        if b.num_rows() == 0 {
            break;
        }
        ids.extend(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
    }
    ids
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort();
    v
}

#[test]
fn objects_put_while_it_runs_are_read_exactly_once() {
    let Some(bucket) = bucket() else { return };
    let (url, client) = prefix(&bucket, "live");
    let o = opts(&url, &[("format", "json"), ("source.monitor-interval", "20 ms"), ("source.batch-rows", "4")]);
    for k in 0..5 {
        put(&client, &url, &format!("f{k:02}.json"), k * 100..k * 100 + 10, false);
    }
    // never read: hidden, in-progress by convention, under a "subdirectory"
    put(&client, &url, ".f99.json", -10..-5, false);
    put(&client, &url, "_f98.json", -5..0, false);
    put(&client, &url, "sub/f97.json", -20..-10, false);
    let mut subtasks = sources(&o, 2, None);
    let writer = {
        let url = url.clone();
        std::thread::spawn(move || {
            for k in 5..30 {
                put(&client, &url, &format!("f{k:02}.json"), k * 100..k * 100 + 10, false);
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let want: Vec<i64> = (0..30).flat_map(|k| k * 100..k * 100 + 10).collect();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (got.len() < want.len() || !writer.is_finished()) && Instant::now() < deadline {
        for s in subtasks.iter_mut() {
            got.extend(drain(s.as_mut(), usize::MAX));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    // a few more listings find nothing new
    std::thread::sleep(Duration::from_millis(50));
    for s in subtasks.iter_mut() {
        got.extend(drain(s.as_mut(), usize::MAX));
    }
    assert_eq!(sorted(got), want, "every object once, nothing of the hidden ones");
}

#[test]
fn a_restore_mid_way_at_another_parallelism_repeats_and_loses_nothing() {
    let Some(bucket) = bucket() else { return };
    for (format, csv) in [("json", false), ("csv", true)] {
        let (url, client) = prefix(&bucket, &format!("restore-{format}"));
        let o = opts(&url, &[("format", format), ("source.monitor-interval", "1 ms"), ("source.batch-rows", "3")]);
        for k in 0..8 {
            put(&client, &url, &format!("f{k}.{format}"), k * 100..k * 100 + 10, csv);
        }
        let mut got = Vec::new();
        let mut snaps = Vec::new();
        for mut s in sources(&o, 2, None) {
            got.extend(drain(s.as_mut(), 13)); // some objects read, one part-way
            snaps.extend(s.snapshot().unwrap());
            // read after the checkpoint, then lost with the failure
            let _ = s.next_batch(1024).unwrap();
        }
        for k in 8..12 {
            put(&client, &url, &format!("f{k}.{format}"), k * 100..k * 100 + 10, csv);
        }
        for mut s in sources(&o, 3, Some(&snaps)) {
            got.extend(drain(s.as_mut(), usize::MAX));
        }
        let want: Vec<i64> = (0..12).flat_map(|k| k * 100..k * 100 + 10).collect();
        assert_eq!(sorted(got), want, "{format}: every record once");
    }
}

#[test]
fn a_prefix_or_an_object_is_read_bounded_without_an_interval() {
    let Some(bucket) = bucket() else { return };
    let (url, client) = prefix(&bucket, "bounded");
    for k in 0..4 {
        put(&client, &url, &format!("f{k}.json"), k * 10..k * 10 + 10, false);
    }
    put(&client, &url, ".hidden.json", -3..0, false);
    put(&client, &url, "_SUCCESS", 0..0, false);
    assert!(ConnectorRegistry::default().get("filesystem").unwrap().bounded(&opts(&url, &[("format", "json")])));
    let mut got = Vec::new();
    for mut s in sources(&opts(&url, &[("format", "json")]), 2, None) {
        got.extend(drain(s.as_mut(), usize::MAX));
        assert!(s.next_batch(1024).unwrap().is_none(), "the end of the input");
    }
    assert_eq!(sorted(got), (0..40).collect::<Vec<_>>());
    // one object; and a prefix named without its `/`
    let one = format!("{url}f2.json");
    let mut s = sources(&opts(&one, &[("format", "json")]), 1, None).pop().unwrap();
    assert_eq!(drain(s.as_mut(), usize::MAX), (20..30).collect::<Vec<_>>());
    let mut s = sources(&opts(url.trim_end_matches('/'), &[("format", "json")]), 1, None).pop().unwrap();
    assert_eq!(drain(s.as_mut(), usize::MAX).len(), 40);
}

#[test]
fn a_missing_bucket_is_an_error_naming_the_url() {
    let Some(_) = bucket() else { return };
    // watched: the first listing fails
    let o = opts("s3://weir-no-such-bucket/in/", &[("format", "json"), ("source.monitor-interval", "1 ms")]);
    let mut s = sources(&o, 1, None).pop().unwrap();
    let e = s.next_batch(10).unwrap_err().to_string();
    assert!(e.contains("table 'objects'") && e.contains("listing s3://weir-no-such-bucket/in/"), "{e}");
    // bounded: the open (which lists) fails
    let o = opts("s3://weir-no-such-bucket/x.json", &[("format", "json")]);
    let f = ConnectorRegistry::default().check(&o, &schema()).unwrap().source(&o, schema()).unwrap();
    let ctx = SourceContext { subtask: 0, parallelism: 1 };
    let e = f(&ctx).open(&ctx).err().unwrap().to_string();
    assert!(e.contains("s3://weir-no-such-bucket/x.json"), "{e}");
}

#[test]
fn throughput_of_reading_objects() {
    let Some(bucket) = bucket() else { return };
    for (format, csv) in [("json", false), ("csv", true)] {
        let (url, client) = prefix(&bucket, &format!("speed-{format}"));
        let (files, rows) = (20i64, 10_000i64);
        for k in 0..files {
            put(&client, &url, &format!("f{k:03}.{format}"), k * rows..(k + 1) * rows, csv);
        }
        let o = opts(&url, &[("format", format), ("source.monitor-interval", "1 ms")]);
        let mut s = sources(&o, 1, None).pop().unwrap();
        let t = Instant::now();
        let n = drain(s.as_mut(), usize::MAX).len();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(n as i64, files * rows);
        eprintln!("watched prefix, {format}: {n} rows of {files} objects in {:.0} ms: {:.0} rows/s", secs * 1000.0, n as f64 / secs);
    }
}
