//! The `filesystem` part-file sink on a bucket prefix (`'path' = 's3://bucket/prefix/'`)
//! against a real S3-compatible server (moto, started by `./test.sh`): a part file is a
//! multipart upload whose parts are uploaded as it grows and which is completed only at
//! the commit (before it the objects are invisible), a restore commits the restored
//! committables again idempotently and aborts the uploads no checkpoint references, a
//! lost upload is an error naming the key, partitions get their `_SUCCESS` objects, and
//! the write throughput into the server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use weir::connector::{Sink, SinkContext};
use weir::record::Rec;
use weir_connectors::filesystem::options::FsOptions;
use weir_connectors::filesystem::sink::FileSink;
use weir_connectors::filesystem::store::BucketUrl;
use weir_connectors::filesystem::upload::Objects;
use weir_connectors::{ChangeBatch, TableOptions};

/// The bucket of the test server, or `None` outside `./test.sh` (then the test says
/// so loudly; under CI it fails instead of skipping).
fn bucket(test: &str) -> Option<String> {
    match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(b) => Some(b),
        Err(_) if std::env::var_os("CI").is_some() => panic!("WEIR_TEST_S3_BUCKET is not set: CI must run the tests through ./test.sh"),
        Err(_) => {
            eprintln!("SKIPPING {test} (WEIR_TEST_S3_BUCKET is not set: no S3 test server; ./test.sh starts one)");
            None
        }
    }
}

/// A fresh prefix of the test bucket (its URL, with `/`).
fn prefix(bucket: &str, tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("s3://{bucket}/sink-{tag}-{}-{nanos}/", std::process::id())
}

/// A raw client of the test server (to look at uploads behind the sink's back).
fn raw(bucket: &str) -> Arc<object_store::aws::AmazonS3> {
    Arc::new(object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).build().unwrap())
}

fn schema(partitioned: bool) -> SchemaRef {
    let mut f = vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)];
    if partitioned {
        f.push(Field::new("k", DataType::Utf8, true));
    }
    Arc::new(Schema::new(f))
}

fn fs_options(url: &str, extra: &[(&str, &str)], partitioned: bool) -> FsOptions {
    let mut map: BTreeMap<String, String> = [("path", url), ("format", "csv")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    let o = TableOptions { table: "out".into(), connector: "filesystem".into(), map, primary_key: Vec::new(), partition_keys: if partitioned { vec!["k".into()] } else { Vec::new() } };
    FsOptions::parse(&o, &schema(partitioned)).unwrap()
}

fn sink(url: &str, extra: &[(&str, &str)], subtask: u32, parallelism: u32, restore: Option<Vec<Vec<u8>>>) -> FileSink {
    let mut s = FileSink::on_bucket(BucketUrl::parse(url).unwrap(), &fs_options(url, extra, false), &schema(false));
    if let Some(c) = restore {
        s.restore(c).unwrap();
    }
    s.open(&SinkContext { subtask, parallelism }).unwrap();
    s
}

/// Rows `ids`, named with a padding of `pad` characters (to make megabytes).
fn rows(ids: std::ops::Range<i64>, pad: usize) -> Vec<Rec<ChangeBatch>> {
    let names: Vec<String> = ids.clone().map(|i| format!("n{i}-{}", "x".repeat(pad))).collect();
    let b = RecordBatch::try_new(schema(false), vec![Arc::new(Int64Array::from(ids.collect::<Vec<_>>())), Arc::new(StringArray::from(names))]).unwrap();
    vec![Rec::new(i64::MIN, ChangeBatch::inserts(b))]
}

/// The committed objects under the prefix (not the in-progress markers): key and text.
fn committed(objects: &Objects, url: &str) -> Vec<(String, String)> {
    let p = BucketUrl::parse(url).unwrap().path;
    objects
        .list_all(&p)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.as_ref().contains("/.inprogress/"))
        .map(|(k, _)| {
            let t = String::from_utf8(objects.get(&k).unwrap().to_vec()).unwrap();
            (k.to_string(), t)
        })
        .collect()
}

fn ids_of(objects: &[(String, String)]) -> Vec<i64> {
    let mut v: Vec<i64> = objects.iter().flat_map(|(_, t)| t.lines().map(|l| l.split(',').next().unwrap().parse::<i64>().unwrap()).collect::<Vec<_>>()).collect();
    v.sort();
    v
}

/// The in-progress markers under the prefix: (marker key, object key, upload id).
fn markers(objects: &Objects, url: &str) -> Vec<(String, String, String)> {
    let p = Path::from(format!("{}/.inprogress", BucketUrl::parse(url).unwrap().path));
    objects
        .list_all(&p)
        .unwrap()
        .into_iter()
        .map(|(k, _)| {
            let m: serde_json::Value = serde_json::from_slice(&objects.get(&k).unwrap()).unwrap();
            (k.to_string(), m["key"].as_str().unwrap().to_string(), m["upload_id"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Waits (up to 20 s) for `n` markers: an upload task writes its marker in the background.
fn wait_markers(objects: &Objects, url: &str, n: usize) -> Vec<(String, String, String)> {
    let t = Instant::now();
    loop {
        let m = markers(objects, url);
        if m.len() >= n || t.elapsed().as_secs() >= 20 {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether the store still knows the upload (a part can be added to it).
fn upload_alive(store: &object_store::aws::AmazonS3, key: &str, id: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(store.put_part(&Path::from(key), &id.to_string(), 9, object_store::PutPayload::from_static(b"x"))).is_ok()
}

#[test]
fn multipart_part_files_appear_only_at_the_commit_and_commit_again_idempotently() {
    let Some(b) = bucket("multipart_part_files_appear_only_at_the_commit_and_commit_again_idempotently") else { return };
    let url = prefix(&b, "commit");
    let objects = Objects::open(&BucketUrl::parse(&url).unwrap()).unwrap();
    let mut s = sink(&url, &[], 0, 1, None);
    // 12 MB of rows: three parts of the part file (5 MiB, 5 MiB, the rest)
    let pad = 1000;
    for k in 0..12 {
        s.write(&rows(k * 1000..(k + 1) * 1000, pad)).unwrap();
    }
    assert_eq!(wait_markers(&objects, &url, 1).len(), 1, "the upload started with its first part: one marker");
    assert!(committed(&objects, &url).is_empty(), "nothing visible while the part file is written");
    let c = s.pre_commit(1).unwrap().expect("a committable");
    let j: serde_json::Value = serde_json::from_slice(&c).unwrap();
    assert_eq!(j["uploads"].as_array().unwrap().len(), 1);
    assert_eq!(j["uploads"][0]["parts"].as_array().unwrap().len(), 3, "{}", j["uploads"][0]);
    assert!(committed(&objects, &url).is_empty(), "nothing visible after the pre-commit: the upload is not completed");
    // written after the checkpoint: its own upload
    s.write(&rows(12_000..12_010, 10)).unwrap();
    s.commit(c.clone()).unwrap();
    let got = committed(&objects, &url);
    assert_eq!(got.len(), 1, "one object: {:?}", got.iter().map(|g| &g.0).collect::<Vec<_>>());
    assert!(got[0].0.contains("/no-time/part-") && got[0].0.ends_with("-0-1.csv"), "{}", got[0].0);
    assert_eq!(ids_of(&got), (0..12_000).collect::<Vec<_>>());
    // committed again (a restore of that checkpoint): nothing changes
    s.commit(c.clone()).unwrap();
    assert_eq!(ids_of(&committed(&objects, &url)), (0..12_000).collect::<Vec<_>>());
    let c2 = s.pre_commit(2).unwrap().unwrap();
    s.commit(c2).unwrap();
    assert_eq!(ids_of(&committed(&objects, &url)), (0..12_010).collect::<Vec<_>>());
    assert!(markers(&objects, &url).is_empty(), "the markers of completed uploads are deleted");

    // an upload aborted behind its back, with no object: an error naming the key
    let mut s = sink(&url, &[], 0, 1, None);
    s.write(&rows(20_000..20_010, 10)).unwrap();
    let c = s.pre_commit(3).unwrap().unwrap();
    let (_, key, id) = markers(&objects, &url).pop().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(raw(&b).abort_multipart(&Path::from(key.as_str()), &id)).unwrap();
    let e = s.commit(c).unwrap_err().to_string();
    assert!(e.contains(&format!("cannot commit s3://{b}/{key}")) && e.contains("is gone") && e.contains("no such object"), "{e}");
}

#[test]
fn a_restore_commits_the_checkpoint_and_aborts_the_uploads_no_checkpoint_references() {
    let Some(b) = bucket("a_restore_commits_the_checkpoint_and_aborts_the_uploads_no_checkpoint_references") else { return };
    let url = prefix(&b, "restore");
    let objects = Objects::open(&BucketUrl::parse(&url).unwrap()).unwrap();
    let store = raw(&b);
    // two subtasks; checkpoint 1 pre-committed by both, then more written (and a
    // second checkpoint pre-committed by subtask 1 only) before the failure
    let mut s0 = sink(&url, &[], 0, 2, None);
    let mut s1 = sink(&url, &[], 1, 2, None);
    s0.write(&rows(0..100, 10)).unwrap();
    s1.write(&rows(100..200, 10)).unwrap();
    let c1 = vec![s0.pre_commit(1).unwrap().unwrap(), s1.pre_commit(1).unwrap().unwrap()];
    s1.write(&rows(200..300, 10)).unwrap();
    let _c2 = s1.pre_commit(2).unwrap().unwrap(); // checkpoint 2 never completes
    // in progress at the failure: 6 MB, its first part uploaded
    s0.write(&rows(300..6300, 1000)).unwrap();
    let orphans = wait_markers(&objects, &url, 4);
    assert_eq!(orphans.len(), 4, "two uploads of checkpoint 1, one of checkpoint 2, one in progress");
    drop((s0, s1)); // the failure
    assert!(committed(&objects, &url).is_empty(), "nothing of a checkpoint that did not complete is visible");

    // restored at parallelism 1 from checkpoint 1 (its committables, as the engine gives them)
    let mut r = sink(&url, &[], 0, 1, Some(c1.clone()));
    assert_eq!(ids_of(&committed(&objects, &url)), (0..200).collect::<Vec<_>>(), "the restore committed checkpoint 1");
    let left = markers(&objects, &url);
    assert_eq!(left.len(), 2, "the orphans wait for the first checkpoint of the new run");
    assert!(left.iter().all(|(_, k, id)| upload_alive(&store, k, id)));
    // restored twice (a failure before the first checkpoint of the new run): idempotent
    let mut again = sink(&url, &[], 0, 1, Some(c1.clone()));
    again.write(&rows(300..310, 10)).unwrap();
    let c = again.pre_commit(3).unwrap().unwrap();
    again.commit(c).unwrap();
    assert!(markers(&objects, &url).is_empty(), "the orphans' markers are gone");
    assert!(left.iter().all(|(_, k, id)| !upload_alive(&store, k, id)), "the orphans' uploads are aborted");
    assert_eq!(ids_of(&committed(&objects, &url)), (0..200).chain(300..310).collect::<Vec<_>>(), "every row once");
    // the first restored run commits nothing more and finds nothing to abort
    let c = r.pre_commit(4).unwrap().expect("a run's first checkpoint always has a committable on a bucket");
    r.commit(c).unwrap();
    assert!(r.pre_commit(5).unwrap().is_none(), "then, with nothing written, none");
    assert_eq!(ids_of(&committed(&objects, &url)), (0..200).chain(300..310).collect::<Vec<_>>());
}

#[test]
fn partitions_get_their_success_objects_on_a_bucket() {
    let Some(b) = bucket("partitions_get_their_success_objects_on_a_bucket") else { return };
    let url = prefix(&b, "partitions");
    let objects = Objects::open(&BucketUrl::parse(&url).unwrap()).unwrap();
    let fs = fs_options(&url, &[("sink.partition-commit.policy.kind", "success-file")], true);
    let mut s = FileSink::on_bucket(BucketUrl::parse(&url).unwrap(), &fs, &schema(true));
    s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
    let batch = RecordBatch::try_new(schema(true), vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(StringArray::from(vec!["a", "b", "c"])), Arc::new(StringArray::from(vec!["x", "y", "x"]))])
        .unwrap();
    s.write(&[Rec::new(0, ChangeBatch::inserts(batch))]).unwrap();
    let c = s.pre_commit(u64::MAX).unwrap().unwrap();
    assert!(committed(&objects, &url).is_empty());
    s.commit(c).unwrap();
    let got = committed(&objects, &url);
    let p = BucketUrl::parse(&url).unwrap().path.to_string();
    let names: Vec<String> = got.iter().map(|(k, _)| k.strip_prefix(&format!("{p}/")).unwrap().split("/part-").next().unwrap().to_string()).collect();
    assert_eq!(names, vec!["k=x/_SUCCESS", "k=x", "k=y/_SUCCESS", "k=y"], "{got:?}");
    let x = got.iter().find(|(k, _)| k.contains("k=x/part-")).unwrap();
    assert_eq!(x.1, "1,a\n3,c\n");
}

#[test]
fn write_throughput_into_the_s3_test_server() {
    let Some(b) = bucket("write_throughput_into_the_s3_test_server") else { return };
    let url = prefix(&b, "throughput");
    let objects = Objects::open(&BucketUrl::parse(&url).unwrap()).unwrap();
    let mut s = sink(&url, &[("sink.rolling-policy.file-size", "64MB"), ("sink.upload.part-size", "8MB")], 0, 1, None);
    let (batches, per, pad) = (100, 5_000i64, 100);
    let input: Vec<Vec<Rec<ChangeBatch>>> = (0..batches).map(|k| rows(k * per..(k + 1) * per, pad)).collect();
    let t = Instant::now();
    for r in &input {
        s.write(r).unwrap();
    }
    let c = s.pre_commit(1).unwrap().unwrap();
    s.commit(c).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let bytes: u64 = objects.list_all(&BucketUrl::parse(&url).unwrap().path).unwrap().iter().map(|(_, n)| n).sum();
    let n = (batches * per) as f64;
    eprintln!(
        "filesystem sink into moto (a Python S3 server on this machine), CSV, 8 MB parts: {} rows, {:.1} MB in {secs:.2} s: {:.0} rows/s, {:.1} MB/s",
        n,
        bytes as f64 / 1e6,
        n / secs,
        bytes as f64 / 1e6 / secs
    );
    assert!(bytes > 50_000_000, "{bytes} bytes");
}

#[test]
fn dead_letters_into_a_bucket_prefix_once_each() {
    use weir_connectors::bad_input::{BadInputConfig, Policy, count};
    let Some(b) = bucket("dead_letters_into_a_bucket_prefix_once_each") else { return };
    let url = prefix(&b, "dead-letters");
    let objects = Objects::open(&BucketUrl::parse(&url).unwrap()).unwrap();
    let cfg = BadInputConfig { policy: Policy::DeadLetter(url.clone()), table: "dl-bucket".into(), connector: "filesystem".into() };
    let mut h = cfg.handler();
    h.record("s3://in/a.json", 7, "expected value at line 1 column 2", b"{x").unwrap();
    // read again after a restore: the same object
    cfg.handler().record("s3://in/a.json", 7, "expected value at line 1 column 2", b"{x").unwrap();
    h.record("s3://in/a.json", 9, "bad", b"[").unwrap();
    let got = committed(&objects, &url);
    assert_eq!(got.len(), 2, "one object per bad record: {got:?}");
    let v: serde_json::Value = serde_json::from_str(&got.iter().find(|(_, t)| t.contains("\"position\":7")).unwrap().1).unwrap();
    assert_eq!(v, serde_json::json!({"source": "s3://in/a.json", "position": 7, "error": "expected value at line 1 column 2", "raw": "{x"}));
    assert_eq!(count("filesystem", "dl-bucket"), 3);
}
