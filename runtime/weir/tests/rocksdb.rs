//! The RocksDB state backend end to end: incremental checkpoints upload only new SST
//! files, retention deletes shared files no retained checkpoint references, an
//! incremental checkpoint restores at other parallelisms and on the heap backend, and
//! a checkpoint whose shared file is missing is refused (recovery falls back).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use weir::checkpoint::coordinator::{self, CheckpointSettings, CompletedCheckpoint, RestartStrategy, StopHandle};
use weir::checkpoint::{CheckpointMetadata, CheckpointStorage};
use weir::cli::{Overrides, build, resolve};
use weir::connector::files::read_committed;
use weir::connector::{ConnectorError, Source, SourceOutput, SourcePoll};
use weir::state::{OpenContext, StateBackend, ValueState};
use weir::{JobConfig, KeyedContext, KeyedProcessFunction, StreamEnv, WatermarkStrategy};
use weir_nexmark::generator::{GeneratorConfig, event};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-rocks-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Emits keys `0..keys` (this subtask's share), then, each time `round` grows, the
/// first `changed` keys again; idles in between.
struct Keys {
    subtask: u64,
    stride: u64,
    keys: u64,
    changed: u64,
    next: u64,
    done_round: u64,
    round: Arc<AtomicU64>,
    emitted: Arc<AtomicU64>,
}

impl Source<(u64, u64)> for Keys {
    fn poll(&mut self, out: &mut SourceOutput<'_, (u64, u64)>) -> Result<SourcePoll, ConnectorError> {
        let round = self.round.load(Ordering::SeqCst);
        let limit = if self.done_round == 0 { self.keys } else { self.changed };
        if self.next >= limit {
            if round > self.done_round {
                self.done_round += 1;
                self.next = self.subtask;
            } else {
                return Ok(SourcePoll::Idle);
            }
        }
        let limit = if self.done_round == 0 { self.keys } else { self.changed };
        let mut n = 0;
        while out.remaining() > 0 && self.next < limit {
            out.collect_at(0, (self.next, self.done_round));
            self.next += self.stride;
            n += 1;
        }
        self.emitted.fetch_add(n, Ordering::SeqCst);
        Ok(SourcePoll::Ready)
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(vec![])
    }
}

#[derive(Clone, Default)]
struct Store {
    v: Option<ValueState<Vec<u8>>>,
}

impl KeyedProcessFunction<u64, (u64, u64), ()> for Store {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), weir::JobError> {
        self.v = Some(ctx.value_state("payload")?);
        Ok(())
    }
    fn process(&mut self, (k, round): (u64, u64), ctx: &mut KeyedContext<'_, u64, ()>) {
        if let Some(v) = &self.v {
            v.update(ctx, vec![(k.wrapping_mul(31).wrapping_add(round) % 251) as u8; 100]);
        }
    }
}

fn shared_files(ckpt: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(ckpt.join("checkpoints/shared")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn shared_refs(m: &CheckpointMetadata) -> BTreeSet<String> {
    m.database_files().filter_map(|f| f.path.strip_prefix("../shared/")).map(String::from).collect()
}

#[test]
fn incremental_checkpoints_upload_only_new_files_and_retention_counts_references() {
    let dir = tempdir("incremental");
    let ckpt = dir.join("ckpt");
    let (keys, changed, p) = (40_000u64, 400u64, 2u32);
    let round = Arc::new(AtomicU64::new(0));
    let emitted = Arc::new(AtomicU64::new(0));
    let env = StreamEnv::new(JobConfig { name: "incremental".into(), parallelism: p, state_backend: StateBackend::RocksDb, ..Default::default() });
    {
        let (round, emitted) = (round.clone(), emitted.clone());
        env.source(
            "keys",
            move |c| Keys { subtask: c.subtask as u64, stride: c.parallelism as u64, keys, changed, next: c.subtask as u64, done_round: 0, round: round.clone(), emitted: emitted.clone() },
            WatermarkStrategy::none(),
        )
        .uid("keys")
        .key_by(|e: &(u64, u64)| e.0)
        .process(Store::default())
        .uid("store");
    }
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_secs(3600);
    s.retain = 2;
    s.restart = RestartStrategy::None;
    let stop = StopHandle::default();
    let (tx, rx) = crossbeam_channel::unbounded::<CompletedCheckpoint>();
    let ctl = {
        let (stop, ckpt) = (stop.clone(), ckpt.clone());
        let stop_on_panic = stop.clone();
        std::thread::spawn(move || {
            // a failed assertion stops the job instead of leaving it running forever
            struct Stop(StopHandle);
            impl Drop for Stop {
                fn drop(&mut self) {
                    self.0.stop_with_savepoint();
                }
            }
            let _stop = Stop(stop_on_panic);
            let wait_emitted = |n: u64| {
                while emitted.load(Ordering::SeqCst) < n {
                    std::thread::sleep(Duration::from_millis(10));
                }
                // let the records reach the keyed operator
                std::thread::sleep(Duration::from_millis(200));
            };
            let storage = CheckpointStorage::open(&ckpt.to_string_lossy()).unwrap();
            let mut rows = Vec::new();
            wait_emitted(keys);
            let mut total = keys;
            for r in 0..6u64 {
                if r > 0 {
                    round.fetch_add(1, Ordering::SeqCst);
                    total += changed;
                    wait_emitted(total);
                }
                let before = shared_files(&ckpt);
                stop.checkpoint_now();
                let c = rx.recv_timeout(Duration::from_secs(60)).expect("checkpoint completes");
                let after = shared_files(&ckpt);
                let meta = storage.read_metadata(&format!("checkpoints/chk-{}", c.id), Some(720)).unwrap();
                let refs = shared_refs(&meta);
                let new: BTreeSet<String> = refs.difference(&before).cloned().collect();
                // what is in the bucket is exactly what the retained checkpoints reference
                let mut retained = BTreeSet::new();
                let ids = storage.list_checkpoints().unwrap();
                assert!(ids.len() <= 2, "retain 2: {ids:?}");
                for id in ids {
                    retained.extend(shared_refs(&storage.read_metadata(&format!("checkpoints/chk-{id}"), Some(720)).unwrap()));
                }
                assert_eq!(after, retained, "round {r}: shared files == references of retained checkpoints");
                assert!(refs.is_subset(&after));
                rows.push((c.bytes, refs.len(), new.len()));
            }
            stop.stop_with_savepoint();
            rows
        })
    };
    let report = coordinator::run(&env, &s, &stop, |c| {
        if !c.savepoint {
            let _ = tx.send(c.clone());
        }
    })
    .unwrap();
    let rows = ctl.join().unwrap();
    eprintln!("(bytes, shared refs, new shared files) per checkpoint: {rows:?}");
    // the first checkpoint uploads every subtask's SST file(s)
    assert!(rows[0].2 >= p as usize, "{rows:?}");
    // 1% of keys changed: each subtask flushes one new small SST, far less than the
    // full state; a background compaction (every few flushes) uploads its merged file
    // once, and retention then drops the files it replaced
    let mut small = 0;
    for (i, r) in rows.iter().enumerate().skip(1) {
        if r.2 <= p as usize {
            assert!(r.0 * 4 < rows[0].0, "checkpoint {i} wrote {} bytes, the full one {}: {rows:?}", r.0, rows[0].0);
            small += 1;
        }
    }
    assert!(small >= 3, "most checkpoints are small increments: {rows:?}");
    let sp = report.savepoint.expect("savepoint");
    // the savepoint is canonical: no database files, format version 1
    let m = CheckpointStorage::open(&sp.url).unwrap().read_metadata("", Some(720)).unwrap();
    assert_eq!(m.format_version, 1);
    assert_eq!(m.database_files().count(), 0);
    assert_eq!(m.operators["store"].key_groups.len(), 720);
}

fn generated_q5(n: u64) -> Vec<weir_nexmark::queries::Q5Row> {
    let c = GeneratorConfig::default();
    let events: Vec<_> = (0..n).map(|i| event(&c, i)).collect();
    let mut w = weir_nexmark::reference::q5(&events);
    w.sort();
    w
}

fn committed<T: DeserializeOwned + Ord>(dir: &Path) -> Vec<T> {
    let mut v: Vec<T> = read_committed(dir).unwrap().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    v.sort();
    v
}

fn q5(backend: StateBackend, p: u32, n: u64, out: &Path, rate: Option<u64>) -> StreamEnv {
    let o = Overrides { parallelism: Some(p), events: Some(n), output: Some(PathBuf::from(format!("{}/", out.display()))), rate, state_backend: Some(backend), ..Default::default() };
    build(&resolve("nexmark-q5", &o).unwrap()).unwrap()
}

/// A job on RocksDB fails for good; a new job restores the latest (incremental)
/// checkpoint at another parallelism, on either backend: output exactly once.
#[test]
fn incremental_checkpoint_restores_at_other_parallelism_and_backend() {
    let n = 400_000;
    let want = generated_q5(n);
    for (i, (p2, to)) in [(2u32, StateBackend::RocksDb), (5, StateBackend::Memory), (3, StateBackend::RocksDb), (4, StateBackend::RocksDb)].into_iter().enumerate() {
        let dir = tempdir(&format!("chk-rescale-{i}"));
        let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
        let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
        s.interval = Duration::from_millis(50);
        s.restart = RestartStrategy::None;
        s.faults = vec![("nexmark".into(), 100_000)];
        let e = coordinator::run(&q5(StateBackend::RocksDb, 3, n, &out, Some(200_000)), &s, &StopHandle::default(), |_| {});
        assert!(e.is_err(), "the injected fault ends the first job");
        let storage = CheckpointStorage::open(&ckpt.to_string_lossy()).unwrap();
        let (latest, meta) = storage.latest(Some(720)).unwrap().expect("a complete checkpoint");
        assert_eq!(meta.format_version, 2, "an incremental checkpoint");
        assert!(meta.database_files().any(|f| f.path.starts_with("../shared/")), "references shared SST files");
        let partial: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
        assert!(partial.len() < want.len());
        let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
        s.interval = Duration::from_millis(50);
        s.restore_from = Some(storage.url_of(&latest));
        coordinator::run(&q5(to, p2, n, &out, None), &s, &StopHandle::default(), |_| {}).unwrap();
        let got: Vec<weir_nexmark::queries::Q5Row> = committed(&out);
        assert_eq!(got.len(), want.len(), "P=3 rocksdb -> P={p2} {to}");
        assert!(got == want, "P=3 rocksdb -> P={p2} {to}: results differ");
    }
}

/// A nexmark-q5 run on RocksDB (P=2) checkpointing every 50 ms, 10 retained: the
/// checkpoint and output directories, the storage, the retained ids and the newest.
fn rocksdb_checkpoints(tag: &str) -> (PathBuf, PathBuf, CheckpointStorage, Vec<u64>, CheckpointMetadata) {
    let dir = tempdir(tag);
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s.retain = 10;
    coordinator::run(&q5(StateBackend::RocksDb, 2, 300_000, &out, Some(300_000)), &s, &StopHandle::default(), |_| {}).unwrap();
    let storage = CheckpointStorage::open(&ckpt.to_string_lossy()).unwrap();
    let ids = storage.list_checkpoints().unwrap();
    assert!(ids.len() >= 3, "{ids:?}");
    let newest = storage.latest(Some(720)).unwrap().unwrap().1;
    (ckpt, out, storage, ids, newest)
}

#[test]
fn checkpoint_with_a_missing_shared_file_is_refused_and_recovery_falls_back() {
    let (ckpt, _out, storage, ids, newest) = rocksdb_checkpoints("missing-sst");
    assert_eq!(Some(newest.checkpoint_id), ids.last().copied());
    // a shared SST only the newest checkpoint references disappears
    let older = shared_refs(&storage.read_metadata(&format!("checkpoints/chk-{}", ids[ids.len() - 2]), None).unwrap());
    let only_newest: Vec<String> = shared_refs(&newest).difference(&older).cloned().collect();
    let victim = only_newest.first().cloned().unwrap_or_else(|| shared_refs(&newest).into_iter().next().unwrap());
    let victim_path = ckpt.join("checkpoints/shared").join(&victim);
    let victim_bytes = std::fs::read(&victim_path).unwrap();
    std::fs::remove_file(&victim_path).unwrap();
    let e = storage.read_metadata(&format!("checkpoints/chk-{}", newest.checkpoint_id), None).unwrap_err().to_string();
    assert!(e.contains("shared RocksDB file missing") && e.contains(&victim), "{e}");
    // recovery falls back to the newest checkpoint that does not need the file (on a
    // loaded machine every retained checkpoint may share it: then there is none)
    let mut valid = Vec::new();
    for id in &ids {
        let m = storage.read_metadata(&format!("checkpoints/chk-{id}"), None);
        let needs = m.as_ref().map_or(true, |m| shared_refs(m).contains(&victim));
        assert_eq!(m.is_ok(), !needs, "checkpoint {id} is valid exactly when it does not need {victim}");
        if !needs {
            valid.push(*id);
        }
    }
    let fallback = storage.latest(Some(720)).unwrap().map(|(_, m)| m.checkpoint_id);
    assert_eq!(fallback, valid.last().copied(), "falls back to the newest valid checkpoint");
    if !older.contains(&victim) {
        assert_eq!(fallback, Some(ids[ids.len() - 2]));
    }
    // put it back: all valid again; a truncated shared file is refused too
    std::fs::write(&victim_path, victim_bytes).unwrap();
    let (dir2, m2) = storage.latest(Some(720)).unwrap().unwrap();
    assert_eq!(m2.checkpoint_id, newest.checkpoint_id);
    let f = shared_refs(&m2).into_iter().next().unwrap();
    let path = ckpt.join("checkpoints/shared").join(&f);
    let len = path.metadata().unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let e = storage.read_metadata(&dir2, None).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn checkpoint_with_a_corrupt_shared_file_is_refused_on_restore_and_the_previous_one_restores() {
    let (ckpt, out, storage, ids, newest) = rocksdb_checkpoints("corrupt-sst");
    assert!(newest.database_files().all(|f| f.hash.is_some()), "every uploaded file has its content hash");
    let older_id = ids[ids.len() - 2];
    let older = shared_refs(&storage.read_metadata(&format!("checkpoints/chk-{older_id}"), None).unwrap());
    // a file only the newest checkpoint has, if it uploaded one (on a loaded machine it
    // may not have: then the older checkpoint needs the corrupt file too)
    let victim = shared_refs(&newest).difference(&older).next().cloned().unwrap_or_else(|| shared_refs(&newest).into_iter().next().unwrap());
    // same size, other bytes: only the hash tells
    let path = ckpt.join("checkpoints/shared").join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let uids = q5(StateBackend::RocksDb, 2, 300_000, &out, None).uids();
    let newest_url = storage.url_of(&format!("checkpoints/chk-{}", newest.checkpoint_id));
    let e = weir::checkpoint::load_restore_state(&newest_url, 720, &uids, false).unwrap_err();
    assert!(e.is_bad_snapshot() && e.to_string().contains("content hash") && e.to_string().contains(&victim), "{e}");
    let older_url = storage.url_of(&format!("checkpoints/chk-{older_id}"));
    let r = weir::checkpoint::load_restore_state(&older_url, 720, &uids, false);
    if older.contains(&victim) {
        let e = r.unwrap_err();
        assert!(e.is_bad_snapshot() && e.to_string().contains("content hash"), "the previous checkpoint needs the corrupt file too: {e}");
    } else {
        r.expect("the previous checkpoint restores");
    }
}

/// Runs a Keys/Store job at P=2 on RocksDB in `storage`: loads `keys` keys unless
/// restoring, checkpoints once, then stops with a savepoint — or, with `fail`, sends
/// every key again and fails on the way (the job ends with an error).
/// Returns the checkpoint, or the run's error.
fn keys_job(storage: &Path, keys: u64, restore: Option<String>, fail: bool) -> Result<CompletedCheckpoint, String> {
    let p = 2u32;
    let round = Arc::new(AtomicU64::new(0));
    let emitted = Arc::new(AtomicU64::new(0));
    let env = StreamEnv::new(JobConfig { name: "keys-job".into(), parallelism: p, state_backend: StateBackend::RocksDb, ..Default::default() });
    let load = restore.is_none();
    {
        let (round, emitted) = (round.clone(), emitted.clone());
        env.source(
            "keys",
            move |c| {
                let next = if load { c.subtask as u64 } else { keys };
                Keys { subtask: c.subtask as u64, stride: c.parallelism as u64, keys, changed: if fail { keys } else { keys / 100 }, next, done_round: 0, round: round.clone(), emitted: emitted.clone() }
            },
            WatermarkStrategy::none(),
        )
        .uid("keys")
        .key_by(|e: &(u64, u64)| e.0)
        .process(Store::default())
        .uid("store");
    }
    let mut s = CheckpointSettings::new(storage.to_string_lossy().to_string());
    s.interval = Duration::from_secs(3600);
    s.restart = RestartStrategy::None;
    s.restore_from = restore;
    if fail {
        // each of the 2 subtasks of `store` gets about half of the keys in each round
        // (by key group): the fault comes in the second round, after the checkpoint
        s.faults = vec![("store".into(), keys * 3 / 4)];
    }
    let stop = StopHandle::default();
    let (tx, rx) = crossbeam_channel::unbounded::<CompletedCheckpoint>();
    // set when the run returned (a restore that fails ends it before any checkpoint)
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ctl = {
        let (stop, ended) = (stop.clone(), ended.clone());
        std::thread::spawn(move || {
            let want = if load { keys } else { 0 };
            while emitted.load(Ordering::SeqCst) < want && !ended.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(200));
            stop.checkpoint_now();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let c = loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(c) => break Ok(c),
                    Err(_) if ended.load(Ordering::SeqCst) || std::time::Instant::now() > deadline => break Err("the run ended without a checkpoint"),
                    Err(_) => {}
                }
            };
            if fail {
                round.fetch_add(1, Ordering::SeqCst);
            } else {
                stop.stop_with_savepoint();
            }
            c
        })
    };
    let result = coordinator::run(&env, &s, &stop, |c| {
        if !c.savepoint {
            let _ = tx.send(c.clone());
        }
    });
    ended.store(true, Ordering::SeqCst);
    let c = ctl.join().unwrap();
    result.map_err(|e| e.to_string())?;
    c.map_err(|e| format!("no checkpoint: {e}"))
}

/// A job restarted from one of its own incremental checkpoints references that
/// checkpoint's shared files from its next checkpoints instead of uploading the whole
/// state again; a job restored from another job's checkpoint uploads its own copy.
#[test]
fn restart_from_own_checkpoint_does_not_upload_the_state_again() {
    let dir = tempdir("own-restart");
    let ckpt = dir.join("ckpt");
    let keys = 30_000;
    let full = keys_job(&ckpt, keys, None, false).unwrap();
    let full_up: u64 = full.uploaded.values().sum();
    assert!(full_up > 300_000, "the first checkpoint uploads the state: {full:?}");
    let again = keys_job(&ckpt, keys, Some(full.url.clone()), false).unwrap();
    let again_up: u64 = again.uploaded.values().sum();
    assert!(again_up * 20 < full_up, "after a restart from its own checkpoint: {again_up} bytes uploaded, the full state is {full_up}");
    let storage = CheckpointStorage::open(&ckpt.to_string_lossy()).unwrap();
    let m = storage.read_metadata(&format!("checkpoints/chk-{}", again.id), Some(720)).unwrap();
    let first = storage.read_metadata(&format!("checkpoints/chk-{}", full.id), Some(720)).unwrap();
    assert!(!shared_refs(&m).is_disjoint(&shared_refs(&first)), "the new checkpoint references the restored files");
    assert!(shared_refs(&m).is_subset(&shared_files(&ckpt)), "every referenced file is in storage");
    // and it restores (sizes and hashes checked on download)
    let third = keys_job(&ckpt, keys, Some(again.url.clone()), false).unwrap();
    assert!(third.bytes > 0);
    // another job's checkpoint: this job uploads its own copy
    let other = keys_job(&dir.join("other"), keys, Some(again.url.clone()), false).unwrap();
    let other_up: u64 = other.uploaded.values().sum();
    assert!(other_up * 2 > full_up, "restored from another job's checkpoint: {other_up} of {full_up} bytes uploaded");
}

/// Local recovery: after a failure, the restart links the files of the last completed
/// checkpoint from the local copies this machine kept, instead of downloading them —
/// shown by corrupting every shared file in storage: the restart still restores (the
/// local copies pass the size and hash check), and a later restore that has no local
/// copies left refuses the corrupt checkpoint.
#[test]
fn restart_after_a_failure_links_local_copies_instead_of_downloading() {
    let dir = tempdir("local-recovery");
    let ckpt = dir.join("ckpt");
    let keys = 30_000;
    // the injected fault ends the job (its message, or that of a task it broke)
    keys_job(&ckpt, keys, None, true).unwrap_err();
    let storage = CheckpointStorage::open(&ckpt.to_string_lossy()).unwrap();
    let (latest, meta) = storage.latest(Some(720)).unwrap().expect("a completed checkpoint");
    let shared = shared_refs(&meta);
    assert!(!shared.is_empty());
    for f in &shared {
        let path = ckpt.join("checkpoints/shared").join(f);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![0x5a; len]).unwrap();
    }
    let url = storage.url_of(&latest);
    let restored = keys_job(&ckpt, keys, Some(url.clone()), false).unwrap_or_else(|e| panic!("the restart restores from the local copies: {e}"));
    assert!(restored.bytes > 0);
    // the local copies were consumed by that restore: now the corrupt files are read
    let e = keys_job(&dir.join("other"), keys, Some(url), false).unwrap_err();
    assert!(e.contains("hash") || e.contains("corrupt"), "{e}");
}
