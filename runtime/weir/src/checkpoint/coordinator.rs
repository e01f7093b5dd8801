//! Runs a job with checkpoints in one process (`weir run`): triggers aligned
//! barriers at the sources every interval (never two at once), collects every
//! task's snapshot, writes the checkpoint (files, then `_metadata`, then `_latest`),
//! tells the sinks to commit, and restarts the job from the newest valid checkpoint
//! when a task fails (fixed delay or exponential backoff, bounded attempts).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::layout;
use super::metadata::{CheckpointMetadata, DatabaseFile, DatabaseFiles, FORMAT_VERSION, FileRange, INCREMENTAL_FORMAT_VERSION, OperatorState};
use super::restore::RestoreState;
use super::storage::CheckpointStorage;
use crate::error::JobError;
use crate::exec::plan::{CheckpointSetup, RunningJob};
use crate::exec::{Barrier, SnapshotReport, TaskCommand};
use crate::record::now_ms;
use crate::stream::StreamEnv;

/// When to restart a failed job.
#[derive(Clone, Debug)]
pub enum RestartStrategy {
    None,
    FixedDelay { attempts: u32, delay: Duration },
    ExponentialBackoff { attempts: u32, initial: Duration, max: Duration },
}

impl RestartStrategy {
    fn delay(&self, attempt: u32) -> Option<Duration> {
        match self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => (attempt < *attempts).then_some(*delay),
            RestartStrategy::ExponentialBackoff { attempts, initial, max } => {
                (attempt < *attempts).then(|| (*initial * 2u32.saturating_pow(attempt)).min(*max))
            }
        }
    }
}

/// Checkpointing settings of a job run.
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    /// Where checkpoints go (`file://`, `s3://`, …, or a local path).
    pub storage: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Complete checkpoints to keep.
    pub retain: usize,
    /// Start from this checkpoint or savepoint (its directory URL).
    pub restore_from: Option<String>,
    pub allow_non_restored_state: bool,
    pub restart: RestartStrategy,
    /// Test-only: fail the task running `operator` at its `n`-th input record, one
    /// fault per attempt (`[(operator, n)]`, attempt i uses entry i).
    pub faults: Vec<(String, u64)>,
}

impl CheckpointSettings {
    pub fn new(storage: impl Into<String>) -> Self {
        CheckpointSettings {
            storage: storage.into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retain: 3,
            restore_from: None,
            allow_non_restored_state: false,
            restart: RestartStrategy::ExponentialBackoff { attempts: 5, initial: Duration::from_millis(200), max: Duration::from_secs(10) },
            faults: Vec::new(),
        }
    }
}

/// A completed checkpoint or savepoint.
#[derive(Clone, Debug)]
pub struct CompletedCheckpoint {
    pub id: u64,
    pub url: String,
    pub bytes: u64,
    pub duration: Duration,
    pub savepoint: bool,
}

/// What happened during a run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub checkpoints: Vec<CompletedCheckpoint>,
    pub restarts: u32,
    /// The final savepoint, when the run was stopped with one.
    pub savepoint: Option<CompletedCheckpoint>,
}

/// Asks a running job to stop with a savepoint (or to checkpoint now).
#[derive(Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>, Arc<AtomicBool>);

impl StopHandle {
    pub fn stop_with_savepoint(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Triggers a checkpoint as soon as none is in flight (benchmarks, tests).
    pub fn checkpoint_now(&self) {
        self.1.store(true, Ordering::SeqCst)
    }
    fn take_checkpoint_request(&self) -> bool {
        self.1.swap(false, Ordering::SeqCst)
    }
}

struct Pending {
    barrier: Barrier,
    started: Instant,
    reports: Vec<SnapshotReport>,
}

fn random_id() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&(t, std::process::id()).0.to_le_bytes()))
}

/// Opens the snapshot at `url` (a `chk-<n>` or `sp-<id>` directory).
pub fn open_snapshot(url: &str, max_parallelism: u32) -> Result<(CheckpointStorage, CheckpointMetadata), JobError> {
    let s = CheckpointStorage::open(url).map_err(|e| JobError::State(e.to_string()))?;
    let meta = s.read_metadata("", Some(max_parallelism)).map_err(|e| JobError::State(e.to_string()))?;
    Ok((s, meta))
}

/// Runs `env` with checkpoints until its input ends (or it is stopped with a savepoint).
pub fn run(env: &StreamEnv, settings: &CheckpointSettings, stop: &StopHandle, mut on_checkpoint: impl FnMut(&CompletedCheckpoint)) -> Result<RunReport, JobError> {
    let config = env.config().clone();
    let storage = CheckpointStorage::open(&settings.storage).map_err(|e| JobError::State(e.to_string()))?;
    let uids = env.uids();
    let job_id = random_id();
    let mut next_id = storage.list_checkpoints().map_err(|e| JobError::State(e.to_string()))?.last().copied().unwrap_or(0) + 1;
    let mut restore: Option<Arc<RestoreState>> = match &settings.restore_from {
        Some(url) => {
            let (s, meta) = open_snapshot(url, config.max_parallelism)?;
            let r = RestoreState::load(&s, "", &meta, &uids, settings.allow_non_restored_state).map_err(|e| JobError::State(e.to_string()))?;
            tracing::info!(from = %url, "restoring");
            Some(Arc::new(r))
        }
        None => None,
    };
    let mut report = RunReport::default();
    let mut shared = HashSet::new();
    let mut attempt = 0u32;
    loop {
        let (tx, rx) = crossbeam_channel::unbounded();
        let fault = settings.faults.get(attempt as usize).cloned();
        let job = env.launch_with(CheckpointSetup { reports: tx, restore: restore.clone(), fault })?;
        let outcome = coordinate(&job, &rx, &storage, settings, &job_id, &config, &mut next_id, stop, &mut report, &mut shared, &mut on_checkpoint);
        let result = job.wait();
        match (outcome, result) {
            (Ok(()), Ok(())) => return Ok(report),
            (Err(e), _) | (_, Err(e)) => {
                let Some(delay) = settings.restart.delay(attempt) else { return Err(e) };
                attempt += 1;
                report.restarts += 1;
                tracing::warn!(error = %e, attempt, ?delay, "job failed; restarting from the latest checkpoint");
                eprintln!("weir: job failed ({e}); restart {attempt} in {delay:?}");
                std::thread::sleep(delay);
                match storage.latest(Some(config.max_parallelism)).map_err(|e| JobError::State(e.to_string()))? {
                    Some((dir, meta)) => {
                        let r = RestoreState::load(&storage, &dir, &meta, &uids, settings.allow_non_restored_state).map_err(|e| JobError::State(e.to_string()))?;
                        restore = Some(Arc::new(r));
                    }
                    None => {} // nothing newer: keep the initial state (restore_from, or empty)
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn coordinate(
    job: &RunningJob,
    rx: &crossbeam_channel::Receiver<SnapshotReport>,
    storage: &CheckpointStorage,
    settings: &CheckpointSettings,
    job_id: &str,
    config: &crate::exec::plan::JobConfig,
    next_id: &mut u64,
    stop: &StopHandle,
    report: &mut RunReport,
    shared: &mut HashSet<String>,
    on_checkpoint: &mut impl FnMut(&CompletedCheckpoint),
) -> Result<(), JobError> {
    let mut pending: Option<Pending> = None;
    let mut last_trigger = Instant::now();
    let mut stopping = false;
    loop {
        if job.is_failing() {
            if let Some(p) = pending.take() {
                discard(p);
            }
            return Ok(()); // the job's own error is returned by wait()
        }
        let any_finished = job.metrics.iter().any(|m| m.finished.load(Ordering::Relaxed));
        if pending.is_none() && !any_finished {
            let stop_now = stop.is_requested() && !stopping;
            if stop_now || stop.take_checkpoint_request() || last_trigger.elapsed() >= settings.interval {
                let barrier = Barrier { checkpoint_id: *next_id, timestamp: now_ms(), savepoint: stop_now, stop: stop_now };
                *next_id += 1;
                stopping |= stop_now;
                job.broadcast(TaskCommand::Trigger(barrier), true);
                pending = Some(Pending { barrier, started: Instant::now(), reports: Vec::new() });
                last_trigger = Instant::now();
            }
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => {
                match pending.as_mut().filter(|p| p.barrier.checkpoint_id == r.barrier.checkpoint_id) {
                    Some(p) => p.reports.push(r),
                    None => discard_reports(vec![r]),
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
        if let Some(p) = pending.as_ref() {
            if p.reports.len() == job.task_count() {
                let p = pending.take().expect("pending");
                let done = write(storage, settings, job_id, config, p, shared).map_err(|e| {
                    job.fail(format!("checkpoint failed: {e}"));
                    e
                })?;
                job.broadcast(TaskCommand::Complete(done.id), false);
                on_checkpoint(&done);
                if done.savepoint {
                    report.savepoint = Some(done.clone());
                }
                report.checkpoints.push(done);
            } else if p.started.elapsed() > settings.timeout {
                tracing::warn!(checkpoint = p.barrier.checkpoint_id, "checkpoint timed out; discarded");
                if p.barrier.stop {
                    job.fail("the savepoint timed out".into());
                }
                if let Some(p) = pending.take() {
                    discard(p);
                }
            }
        }
        if job.is_finished() && pending.is_none() {
            // end of input: sinks commit what they pre-committed at the end
            job.broadcast(TaskCommand::Complete(u64::MAX), false);
            return Ok(());
        }
        if job.is_finished() && pending.is_some() && !stopping {
            // tasks finished while a checkpoint was in flight: it cannot complete
            if let Some(p) = pending.take() {
                discard(p);
            }
        }
    }
}

/// Removes the local database checkpoints of an abandoned checkpoint.
fn discard(p: Pending) {
    discard_reports(p.reports)
}

fn discard_reports(reports: Vec<SnapshotReport>) {
    for r in reports {
        for snap in r.operators {
            if let Some(db) = snap.database {
                let _ = std::fs::remove_dir_all(&db.local_dir);
            }
        }
    }
}

/// Plans the upload of a subtask's local RocksDB checkpoint: SST files not uploaded
/// before go to `checkpoints/shared/` (named by database instance and file number,
/// so the same file is never uploaded twice), the rest into the checkpoint's directory.
/// Returns the metadata entry, the uploads and the shared files they add.
fn plan_database_upload(
    dir: &str,
    uid: &str,
    subtask: u32,
    db: &crate::state::rocksdb::DbCheckpoint,
    shared: &HashSet<String>,
) -> (DatabaseFiles, Vec<(String, std::path::PathBuf)>, Vec<String>) {
    let private = layout::state_file(uid, subtask).replace(".state", ".db");
    let mut uploads = Vec::new();
    let mut files = Vec::new();
    let mut new_shared = Vec::new();
    for f in &db.files {
        let path = if f.name.ends_with(".sst") {
            let name = format!("{}-{}", db.instance, f.name);
            let rel = format!("{}/{}/{name}", layout::CHECKPOINTS, layout::SHARED);
            if !shared.contains(&rel) {
                uploads.push((rel.clone(), db.local_dir.join(&f.name)));
                new_shared.push(rel);
            }
            format!("../{}/{name}", layout::SHARED)
        } else {
            uploads.push((format!("{dir}/{private}/{}", f.name), db.local_dir.join(&f.name)));
            format!("{private}/{}", f.name)
        };
        files.push(DatabaseFile { name: f.name.clone(), path, size: f.size });
    }
    (DatabaseFiles { key_groups: [db.start, db.end], files }, uploads, new_shared)
}

/// Writes one checkpoint: a state file per operator subtask (and, on RocksDB, the
/// database files not uploaded before), then `_metadata`.
fn write(
    storage: &CheckpointStorage,
    settings: &CheckpointSettings,
    job_id: &str,
    config: &crate::exec::plan::JobConfig,
    p: Pending,
    shared: &mut HashSet<String>,
) -> Result<CompletedCheckpoint, JobError> {
    let id = p.barrier.checkpoint_id;
    let dir = if p.barrier.savepoint { layout::savepoint_dir(&format!("{id}-{}", &job_id[..8])) } else { layout::checkpoint_dir(id) };
    let mut operators: BTreeMap<String, OperatorState> = BTreeMap::new();
    let mut files = Vec::new();
    let mut uploads = Vec::new();
    let mut new_shared = Vec::new();
    let mut local_dirs = Vec::new();
    for r in p.reports {
        for mut snap in r.operators {
            if let Some(db) = snap.database.take() {
                let (files, up, new) = plan_database_upload(&dir, &snap.uid, snap.subtask, &db, shared);
                operators.entry(snap.uid.clone()).or_default().databases.insert(snap.subtask, files);
                uploads.extend(up);
                new_shared.extend(new);
                local_dirs.push(db.local_dir);
            }
            let name = layout::state_file(&snap.uid, snap.subtask);
            let op = operators.entry(snap.uid.clone()).or_default();
            op.parallelism = op.parallelism.max(snap.subtask + 1);
            let mut bytes = Vec::new();
            for (kg, blob) in snap.keyed {
                op.key_groups.insert(kg, FileRange { file: name.clone(), offset: bytes.len() as u64, length: blob.len() as u64 });
                bytes.extend_from_slice(&blob);
            }
            if let Some(blob) = snap.operator {
                op.subtasks.insert(snap.subtask, FileRange { file: name.clone(), offset: bytes.len() as u64, length: blob.len() as u64 });
                bytes.extend_from_slice(&blob);
            }
            if !bytes.is_empty() {
                files.push((name, bytes));
            }
        }
    }
    // RocksDB files first (all subtasks' at once), then the state files and `_metadata`
    let uploaded = storage.put_files(uploads);
    for d in local_dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    let uploaded = uploaded.map_err(|e| JobError::State(e.to_string()))?;
    shared.extend(new_shared);
    let incremental = operators.values().any(|o| !o.databases.is_empty());
    let meta = CheckpointMetadata {
        format_version: if incremental { INCREMENTAL_FORMAT_VERSION } else { FORMAT_VERSION },
        job_id: job_id.to_string(),
        job_name: config.name.clone(),
        checkpoint_id: id,
        savepoint: p.barrier.savepoint,
        max_parallelism: config.max_parallelism,
        timestamp: p.barrier.timestamp,
        operators,
    };
    let bytes = uploaded + storage.write_snapshot(&dir, files, &meta).map_err(|e| JobError::State(e.to_string()))?;
    if !p.barrier.savepoint {
        storage.set_latest(id).map_err(|e| JobError::State(e.to_string()))?;
        match storage.retain(settings.retain) {
            Ok(deleted) => {
                for f in deleted {
                    shared.remove(&f);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not delete old checkpoints"),
        }
    }
    Ok(CompletedCheckpoint { id, url: storage.url_of(&dir), bytes, duration: p.started.elapsed(), savepoint: p.barrier.savepoint })
}
