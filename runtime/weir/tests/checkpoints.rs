//! Checkpoints, recovery and savepoints of embedded jobs: exactly-once output under
//! injected failures, rescaling through savepoints, and refusing corrupt snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use weir::checkpoint::CheckpointStorage;
use weir::checkpoint::coordinator::{self, CheckpointSettings, RestartStrategy, StopHandle};
use weir::cli::{Overrides, build, resolve};
use weir::connector::files::read_committed;
use weir::state::StateBackend;
use weir_nexmark::generator::{GeneratorConfig, event};
use weir_nexmark::model::Event;
use weir_nexmark::reference;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-ckpt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn generated(n: u64) -> Vec<Event> {
    let c = GeneratorConfig::default();
    (0..n).map(|i| event(&c, i)).collect()
}

fn committed<T: DeserializeOwned + Ord>(dir: &Path) -> Vec<T> {
    let mut v: Vec<T> = read_committed(dir).unwrap().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    v.sort();
    v
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s.restart = RestartStrategy::FixedDelay { attempts: 10, delay: Duration::from_millis(10) };
    s
}

fn job(query: &str, p: u32, events: u64, out: &Path, rate: Option<u64>) -> weir::StreamEnv {
    job_on(StateBackend::Memory, query, p, events, out, rate)
}

fn job_on(backend: StateBackend, query: &str, p: u32, events: u64, out: &Path, rate: Option<u64>) -> weir::StreamEnv {
    let o = Overrides {
        parallelism: Some(p),
        events: Some(events),
        output: Some(PathBuf::from(format!("{}/", out.display()))),
        rate,
        state_backend: Some(backend),
        ..Default::default()
    };
    build(&resolve(&format!("nexmark-{query}"), &o).unwrap()).unwrap()
}

#[test]
fn exactly_once_output_despite_failures() {
    exactly_once_despite_failures(StateBackend::Memory);
}

#[test]
fn exactly_once_output_despite_failures_rocksdb() {
    exactly_once_despite_failures(StateBackend::RocksDb);
}

fn exactly_once_despite_failures(backend: StateBackend) {
    let n = 600_000;
    let want = {
        let mut w = reference::q7(&generated(n));
        w.sort();
        w
    };
    let dir = tempdir(&format!("faults-{backend}"));
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let mut s = settings(&ckpt);
    // attempt 0 fails in the keyed operator, attempt 1 in the source, attempt 2 in
    // the sink: each after some checkpoints have completed (50 ms interval, so a
    // fault may also hit while a checkpoint is in flight)
    s.faults = vec![("q7-highest".into(), 150_000), ("nexmark".into(), 200_000), ("output".into(), 2)];
    // slow enough that checkpoints complete between the faults
    let env = job_on(backend, "q7", 2, n, &out, Some(400_000));
    let report = coordinator::run(&env, &s, &StopHandle::default(), |_| {}).expect("the job recovers and finishes");
    assert_eq!(report.restarts, 3, "three injected faults, three restarts");
    assert!(report.checkpoints.len() >= 3, "checkpoints completed: {}", report.checkpoints.len());
    let got: Vec<weir_nexmark::queries::Q7Row> = committed(&out);
    assert_eq!(got.len(), want.len(), "nothing lost, nothing duplicated");
    assert!(got == want);
}

#[test]
fn savepoint_at_p3_restores_at_other_parallelisms() {
    use StateBackend::Memory;
    savepoint_rescale("mem", &[(1, Memory, Memory), (2, Memory, Memory), (5, Memory, Memory)]);
}

/// Savepoints are canonical: taken on RocksDB they restore on RocksDB and on the
/// heap, and heap savepoints restore on RocksDB, at any parallelism.
#[test]
fn savepoint_at_p3_restores_at_other_parallelisms_across_backends() {
    use StateBackend::{Memory, RocksDb};
    savepoint_rescale("rocks", &[(1, RocksDb, RocksDb), (2, RocksDb, Memory), (5, Memory, RocksDb), (5, RocksDb, RocksDb), (2, RocksDb, RocksDb), (1, RocksDb, Memory)]);
}

fn savepoint_rescale(tag: &str, cases: &[(u32, StateBackend, StateBackend)]) {
    let n = 400_000;
    let want = {
        let mut w = reference::q5(&generated(n));
        w.sort();
        w
    };
    for (i, &(p2, from, to)) in cases.iter().enumerate() {
        let dir = tempdir(&format!("rescale-{tag}-{i}"));
        let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
        // run at P=3, rate-limited, and stop with a savepoint after a while
        let env = job_on(from, "q5", 3, n, &out, Some(200_000));
        let stop = StopHandle::default();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            s2.stop_with_savepoint();
        });
        let report = coordinator::run(&env, &settings(&ckpt), &stop, |_| {}).unwrap();
        t.join().unwrap();
        let sp = report.savepoint.expect("a savepoint was taken");
        let partial: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
        assert!(partial.len() < want.len(), "stopped before the end ({} of {})", partial.len(), want.len());
        // resume from the savepoint at another parallelism, same output directory
        let env = job_on(to, "q5", p2, n, &out, None);
        let mut s = settings(&ckpt);
        s.restore_from = Some(sp.url.clone());
        coordinator::run(&env, &s, &StopHandle::default(), |_| {}).unwrap();
        let got: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
        if got != want {
            let mut extra = got.clone();
            for w in &want {
                if let Some(i) = extra.iter().position(|g| g == w) {
                    extra.remove(i);
                }
            }
            eprintln!("partial {} rows; extra rows: {extra:?}", partial.len());
        }
        assert_eq!(got.len(), want.len(), "P=3 {from} -> P={p2} {to}");
        assert!(got == want, "P=3 {from} -> P={p2} {to}: results differ");
    }
}

/// Issue 10: a P=2 savepoint restored at P=4 keeps checkpointing (the generator's
/// remaining range is re-divided over all four subtasks), stops with a savepoint again,
/// and the output stays exactly once through both restores.
#[test]
fn savepoint_at_p2_restored_at_p4_keeps_checkpointing() {
    let n = 400_000;
    let want = {
        let mut w = reference::q5(&generated(n));
        w.sort();
        w
    };
    let dir = tempdir("p2-p4");
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let stop_after = |env: &weir::StreamEnv, s: &CheckpointSettings, checkpoints: usize| {
        let stop = StopHandle::default();
        let st = stop.clone();
        let mut seen = 0;
        let report = coordinator::run(env, s, &stop, move |c| {
            seen += usize::from(!c.savepoint);
            if seen == checkpoints {
                st.stop_with_savepoint();
            }
        })
        .unwrap();
        assert!(report.checkpoints.iter().filter(|c| !c.savepoint).count() >= checkpoints, "{:?}", report.checkpoints);
        report.savepoint.expect("stopped with a savepoint")
    };
    let sp = stop_after(&job("q5", 2, n, &out, Some(150_000)), &settings(&ckpt), 3);
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url.clone());
    let sp = stop_after(&job("q5", 4, n, &out, Some(150_000)), &s, 3);
    let partial: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
    assert!(partial.len() < want.len(), "stopped before the end");
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url.clone());
    coordinator::run(&job("q5", 3, n, &out, None), &s, &StopHandle::default(), |_| {}).unwrap();
    let got: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
    assert_eq!(got.len(), want.len(), "P=2 -> P=4 -> P=3: nothing lost, nothing duplicated");
    assert!(got == want, "results differ");
}

#[test]
fn corrupt_checkpoints_are_refused_and_recovery_falls_back() {
    let dir = tempdir("corrupt");
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let env = job("q7", 2, 300_000, &out, Some(300_000));
    let mut s = settings(&ckpt);
    s.retain = 10;
    coordinator::run(&env, &s, &StopHandle::default(), |_| {}).unwrap();
    let storage = CheckpointStorage::open(&ckpt.to_string_lossy()).unwrap();
    let ids = storage.list_checkpoints().unwrap();
    assert!(ids.len() >= 4, "enough checkpoints to corrupt: {ids:?}");
    let newest = |s: &CheckpointStorage| s.latest(Some(720)).unwrap().map(|(_, m)| m.checkpoint_id);
    assert_eq!(newest(&storage), ids.last().copied());
    let path = |n: u64, f: &str| ckpt.join(format!("checkpoints/chk-{n}/{f}"));

    // 1. missing _metadata: the checkpoint does not exist
    let k = ids[ids.len() - 1];
    std::fs::remove_file(path(k, "_metadata")).unwrap();
    let e = storage.read_metadata(&format!("checkpoints/chk-{k}"), None).unwrap_err().to_string();
    assert!(e.contains("no _metadata"), "{e}");
    assert_eq!(newest(&storage), Some(ids[ids.len() - 2]));

    // 2. a truncated state file
    let k = ids[ids.len() - 2];
    let f = std::fs::read_dir(ckpt.join(format!("checkpoints/chk-{k}"))).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "state") && p.metadata().unwrap().len() > 100).unwrap();
    let len = f.metadata().unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&f).unwrap().set_len(len / 2).unwrap();
    let e = storage.read_metadata(&format!("checkpoints/chk-{k}"), None).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    assert_eq!(newest(&storage), Some(ids[ids.len() - 3]));

    // 3. a format version this runtime does not read
    let k = ids[ids.len() - 3];
    let m = std::fs::read_to_string(path(k, "_metadata")).unwrap().replace("\"formatVersion\": 1", "\"formatVersion\": 99");
    std::fs::write(path(k, "_metadata"), m).unwrap();
    let e = storage.read_metadata(&format!("checkpoints/chk-{k}"), None).unwrap_err().to_string();
    assert!(e.contains("format version 99"), "{e}");
    assert_eq!(newest(&storage), Some(ids[ids.len() - 4]));

    // 4. another max parallelism is refused outright (never silently repartitioned)
    let e = storage.latest(Some(128)).unwrap_err().to_string();
    assert!(e.contains("max parallelism 720") && e.contains("128"), "{e}");

    // 5. restoring a job from a checkpoint with state it lacks is refused unless allowed
    let env = build(&resolve("nexmark-q5", &Overrides { events: Some(1000), ..Default::default() }).unwrap()).unwrap();
    let mut s = settings(&dir.join("other"));
    s.restore_from = Some(format!("{}/checkpoints/chk-{}", ckpt.display(), ids[ids.len() - 4]));
    let e = coordinator::run(&env, &s, &StopHandle::default(), |_| {}).unwrap_err().to_string();
    assert!(e.contains("q7-highest") && e.contains("--allow-non-restored-state"), "{e}");
}

/// Issue 10: with the checkpoint storage unavailable, checkpoints and a
/// stop-with-savepoint fail but the job keeps running (no restart); once the storage
/// is back the stop is retried and succeeds, and the output stays exactly once.
#[test]
fn failed_checkpoints_and_savepoints_do_not_fail_the_job() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = 400_000;
    let want = {
        let mut w = reference::q5(&generated(n));
        w.sort();
        w
    };
    let dir = tempdir("storage-down");
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let away = dir.join("ckpt-away");
    let env = job("q5", 2, n, &out, Some(100_000));
    let stop = StopHandle::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (st, d, c2, a2) = (stop.clone(), done.clone(), ckpt.clone(), away.clone());
    let t = std::thread::spawn(move || {
        while d.load(Ordering::SeqCst) < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // the storage goes away: its directory becomes a file (fails even for root)
        std::fs::rename(&c2, &a2).unwrap();
        std::fs::write(&c2, b"not a directory").unwrap();
        let before = d.load(Ordering::SeqCst);
        st.stop_with_savepoint();
        std::thread::sleep(Duration::from_millis(800));
        let during = d.load(Ordering::SeqCst) - before;
        // and comes back
        std::fs::remove_file(&c2).unwrap();
        std::fs::rename(&a2, &c2).unwrap();
        during
    });
    let mut s = settings(&ckpt);
    s.restart = RestartStrategy::None; // a failed checkpoint must not need a restart
    let report = coordinator::run(&env, &s, &stop, |_| {
        done.fetch_add(1, Ordering::SeqCst);
    })
    .expect("failed checkpoints do not fail the job");
    let during = t.join().unwrap();
    assert_eq!(during, 0, "nothing completes while the storage is down");
    assert_eq!(report.restarts, 0);
    let sp = report.savepoint.expect("the stop-with-savepoint succeeded once the storage was back");
    let partial: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
    assert!(partial.len() < want.len(), "stopped before the end");
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url.clone());
    coordinator::run(&job("q5", 2, n, &out, None), &s, &StopHandle::default(), |_| {}).unwrap();
    let got: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
    assert_eq!(got.len(), want.len(), "nothing lost, nothing duplicated");
    assert!(got == want, "results differ");
}

/// The `keyed-state` job (`jobs/keyed_state.rs`) on RocksDB: `keys` keys overwritten
/// round-robin, each write checking how often its key was written before.
fn keyed_state_job(dir: &Path, keys: u64, p: u32, events: u64, rate: Option<u64>) -> weir::StreamEnv {
    let file = dir.join(format!("keyed-state-{keys}.yaml"));
    let yaml = format!("job: keyed-state\nstateBackend: rocksdb\nparams:\n  extra: {{ keys: {keys}, valueBytes: 32 }}\n");
    std::fs::write(&file, yaml).unwrap();
    let o = Overrides { parallelism: Some(p), events: Some(events), output: Some(PathBuf::from(format!("{}/", dir.join("out").display()))), rate, ..Default::default() };
    build(&resolve(&file.to_string_lossy(), &o).unwrap()).unwrap()
}

fn mismatches(dir: &Path) -> Vec<weir::jobs::keyed_state::StateMismatch> {
    read_committed(&dir.join("out")).unwrap_or_default().iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Its check holds across injected faults and a savepoint restored at another
/// parallelism, and catches state that does not belong to the input (a savepoint of
/// the job with another number of keys).
#[test]
fn keyed_state_job_finds_its_state_right_across_faults_and_rescales_and_catches_wrong_state() {
    let (keys, n) = (5_000, 120_000);
    let dir = tempdir("keyed-state");
    let ckpt = dir.join("ckpt");
    let mut s = settings(&ckpt);
    s.faults = vec![("state".into(), 4_000), ("writes".into(), 8_000)];
    let stop = StopHandle::default();
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        s2.stop_with_savepoint();
    });
    let report = coordinator::run(&keyed_state_job(&dir, keys, 2, n, Some(30_000)), &s, &stop, |_| {}).expect("runs");
    t.join().unwrap();
    assert_eq!(report.restarts, 2, "two injected faults");
    let sp = report.savepoint.expect("stopped with a savepoint");
    // resumed at P=3 to the end: every write found its key as the input left it
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url.clone());
    coordinator::run(&keyed_state_job(&dir, keys, 3, n, None), &s, &StopHandle::default(), |_| {}).expect("resumes");
    assert_eq!(mismatches(&dir), vec![], "state right across faults and 2 -> 3");
    // the same savepoint under another key count: the check sees the state is wrong
    let other = tempdir("keyed-state-wrong");
    let mut s = settings(&other.join("ckpt"));
    s.restore_from = Some(sp.url);
    coordinator::run(&keyed_state_job(&other, keys - 1, 3, n, None), &s, &StopHandle::default(), |_| {}).expect("runs");
    assert!(!mismatches(&other).is_empty(), "state of another input is reported");
}
