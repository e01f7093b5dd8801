//! Checkpoint storage against a real S3-compatible server (started by `./test.sh`):
//! a job checkpoints to `s3://`, fails, recovers from the bucket, stops with a
//! savepoint there and resumes from it at another parallelism — output exactly once.

use std::path::PathBuf;
use std::time::Duration;

use weir::checkpoint::CheckpointStorage;
use weir::checkpoint::coordinator::{self, CheckpointSettings, RestartStrategy, StopHandle};
use weir::cli::{Overrides, build, resolve};
use weir::connector::files::read_committed;
use weir::state::StateBackend;
use weir_nexmark::generator::{GeneratorConfig, event};

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

#[test]
fn checkpoints_recovery_and_savepoints_in_s3() {
    checkpoints_in_s3(StateBackend::Memory);
}

/// RocksDB incremental checkpoints in the bucket: shared SST files, recovery
/// downloads them, then a savepoint and a restore at another parallelism.
#[test]
fn rocksdb_incremental_checkpoints_in_s3() {
    checkpoints_in_s3(StateBackend::RocksDb);
}

fn checkpoints_in_s3(backend: StateBackend) {
    let Some(bucket) = bucket() else { return };
    let prefix = format!("s3://{bucket}/q7-{backend}-{}", std::process::id());
    let out = std::env::temp_dir().join(format!("weir-s3-out-{backend}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let n = 300_000;
    let job = |p: u32, rate: Option<u64>| {
        let o = Overrides { parallelism: Some(p), events: Some(n), output: Some(PathBuf::from(format!("{}/", out.display()))), rate, state_backend: Some(backend), ..Default::default() };
        build(&resolve("nexmark-q7", &o).unwrap()).unwrap()
    };
    let mut s = CheckpointSettings::new(prefix.clone());
    s.interval = Duration::from_millis(100);
    s.restart = RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_millis(10) };
    s.faults = vec![("q7-highest".into(), 120_000)];

    // run 1: fails once, recovers from the bucket, then stops with a savepoint
    let stop = StopHandle::default();
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        s2.stop_with_savepoint();
    });
    let report = coordinator::run(&job(2, Some(150_000)), &s, &stop, |_| {}).expect("recovers from S3");
    t.join().unwrap();
    assert_eq!(report.restarts, 1);
    assert!(!report.checkpoints.is_empty());
    let sp = report.savepoint.expect("savepoint taken");
    assert!(sp.url.starts_with(&prefix), "{}", sp.url);

    // the bucket holds complete checkpoints and the savepoint
    let storage = CheckpointStorage::open(&prefix).unwrap();
    let (_, latest) = storage.latest(Some(720)).unwrap().expect("_latest points at a valid checkpoint in S3");
    if backend == StateBackend::RocksDb {
        assert_eq!(latest.format_version, 2, "incremental checkpoint");
        assert!(latest.database_files().any(|f| f.is_shared()), "shared SST files in the bucket");
    }
    let sp_storage = CheckpointStorage::open(&sp.url).unwrap();
    assert!(sp_storage.read_metadata("", Some(720)).unwrap().savepoint);

    // run 2: resume from the savepoint in S3 at parallelism 3
    let mut s = CheckpointSettings::new(prefix);
    s.restore_from = Some(sp.url.clone());
    coordinator::run(&job(3, None), &s, &StopHandle::default(), |_| {}).expect("resumes from the S3 savepoint");

    let c = GeneratorConfig::default();
    let events: Vec<_> = (0..n).map(|i| event(&c, i)).collect();
    let mut want = weir_nexmark::reference::q7(&events);
    want.sort();
    let mut got: Vec<weir_nexmark::queries::Q7Row> = read_committed(&out).unwrap().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    got.sort();
    assert_eq!(got, want, "exactly once across a failure and a savepoint in S3");
}
