//! A SQL job writes JSON, CSV and Parquet part files into a bucket prefix
//! (`'path' = 's3://bucket/prefix/'`) on the S3-compatible server that `./test.sh`
//! starts (moto): its CSV sink fails mid-stream (an injected fault: the job restarts
//! from its last checkpoint), it is stopped with a savepoint and restored at another
//! parallelism, and the committed objects read back hold every row exactly once, in
//! each format (the multipart uploads of the failed run that no checkpoint references
//! are never completed).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir_connectors::filesystem::store::BucketUrl;
use weir_connectors::filesystem::upload::Objects;

const ROWS: i64 = 30_000;

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

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-sink-s3-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn job(url: &str, parallelism: u32) -> weir::StreamEnv {
    let columns = "id BIGINT, name STRING, x DOUBLE";
    let sql = format!(
        "CREATE TABLE gen ({columns}) WITH ('connector' = 'datagen', 'number-of-rows' = '{ROWS}', 'rows-per-second' = '6000');
CREATE TABLE j ({columns}) WITH ('connector' = 'filesystem', 'path' = '{url}json/', 'format' = 'json');
CREATE TABLE c ({columns}) WITH ('connector' = 'filesystem', 'path' = '{url}csv/', 'format' = 'csv', 'sink.rolling-policy.file-size' = '64kb');
CREATE TABLE q ({columns}) WITH ('connector' = 'filesystem', 'path' = '{url}parquet/', 'format' = 'parquet');
INSERT INTO j SELECT * FROM gen;
INSERT INTO c SELECT * FROM gen;
INSERT INTO q SELECT * FROM gen;"
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    env
}

/// The committed objects under `url` (not the in-progress markers), key and bytes.
fn objects(client: &Objects, url: &str) -> Vec<(String, Vec<u8>)> {
    let p = BucketUrl::parse(url).unwrap().path;
    client.list_all(&p).unwrap().into_iter().filter(|(k, _)| !k.as_ref().contains("/.inprogress/")).map(|(k, _)| (k.to_string(), client.get(&k).unwrap().to_vec())).collect()
}

/// Every committed row of each format, as (id, name, x), sorted.
fn read_back(client: &Objects, url: &str, dir: &std::path::Path) -> [Vec<(i64, String, String)>; 3] {
    let mut json = Vec::new();
    for (_, b) in objects(client, &format!("{url}json/")) {
        for l in std::str::from_utf8(&b).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            json.push((v["id"].as_i64().unwrap(), v["name"].as_str().unwrap().to_string(), v["x"].as_f64().unwrap().to_string()));
        }
    }
    let mut csv = Vec::new();
    for (_, b) in objects(client, &format!("{url}csv/")) {
        for l in std::str::from_utf8(&b).unwrap().lines() {
            let f: Vec<&str> = l.split(',').collect();
            csv.push((f[0].parse().unwrap(), f[1].to_string(), f[2].parse::<f64>().unwrap().to_string()));
        }
    }
    let mut parquet = Vec::new();
    for (i, (_, b)) in objects(client, &format!("{url}parquet/")).into_iter().enumerate() {
        let f = dir.join(format!("{i}.parquet"));
        std::fs::write(&f, &b).unwrap();
        for batch in weir_connectors::filesystem::format::parquet::read_file(&f).unwrap() {
            let (id, name, x) = (batch.column(0).as_primitive::<Int64Type>(), batch.column(1).as_string::<i32>(), batch.column(2).as_primitive::<arrow::datatypes::Float64Type>());
            for r in 0..batch.num_rows() {
                assert!(id.is_valid(r));
                parquet.push((id.value(r), name.value(r).to_string(), x.value(r).to_string()));
            }
        }
    }
    for v in [&mut json, &mut csv, &mut parquet] {
        v.sort();
    }
    [json, csv, parquet]
}

#[test]
fn json_csv_and_parquet_into_a_bucket_exactly_once_across_a_sink_fault_and_a_rescaled_restore() {
    let Some(b) = bucket("json_csv_and_parquet_into_a_bucket_exactly_once_across_a_sink_fault_and_a_rescaled_restore") else { return };
    let url = format!("s3://{b}/sql-sink-{}-{}/", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis());
    let client = Objects::open(&BucketUrl::parse(&url).unwrap()).unwrap();
    let dir = tempdir("exactly-once");
    let settings = || {
        let mut s = CheckpointSettings::new(dir.join("ckpt").to_string_lossy().to_string());
        s.interval = Duration::from_millis(100);
        s
    };

    // at parallelism 2 with the CSV sink failing at its 20th batch; stopped with a
    // savepoint part-way (the input takes 5 s)
    let env = job(&url, 2);
    let mut s = settings();
    s.faults = vec![("sink: c".into(), 20)];
    let stop = StopHandle::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (seen, stopper) = (done.clone(), stop.clone());
    let report = coordinator::run(&env, &s, &stop, move |c| {
        if !c.savepoint && seen.fetch_add(1, Ordering::SeqCst) + 1 == 15 {
            stopper.stop_with_savepoint();
        }
    })
    .unwrap_or_else(|e| panic!("first run: {e}"));
    assert_eq!(report.restarts, 1, "one injected fault, one restart");
    let sp = report.savepoint.expect("stopped with a savepoint");
    let partial = read_back(&client, &url, &dir);
    for (f, rows) in ["json", "csv", "parquet"].iter().zip(&partial) {
        let mut d = rows.clone();
        d.dedup();
        assert_eq!(d.len(), rows.len(), "{f}: no row twice after the first run");
        assert!((rows.len() as i64) < ROWS, "{f}: stopped part-way ({} rows)", rows.len());
    }

    // restored at parallelism 3 from the savepoint, to the end of the input
    let env = job(&url, 3);
    let mut s = settings();
    s.restore_from = Some(sp.url.clone());
    coordinator::run(&env, &s, &StopHandle::default(), |_| {}).unwrap_or_else(|e| panic!("restored run: {e}"));
    let want: Vec<(i64, String, String)> = (0..ROWS).map(|i| (i, i.to_string(), (i as f64).to_string())).collect();
    for (f, (got, before)) in ["json", "csv", "parquet"].iter().zip(read_back(&client, &url, &dir).iter().zip(&partial)) {
        eprintln!("{f}: {} rows after the first run (P=2, a sink fault), {} in all after the restore (P=3)", before.len(), got.len());
        assert_eq!(got.len(), want.len(), "{f}: every row exactly once");
        assert!(*got == want, "{f}: the generated rows");
    }
    let markers = client.list_all(&BucketUrl::parse(&format!("{url}csv/.inprogress/")).unwrap().path).unwrap();
    assert!(markers.is_empty(), "no upload left in progress: {markers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
