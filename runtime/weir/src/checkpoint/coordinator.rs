//! Runs a job with checkpoints in one process (`weir run`): triggers aligned
//! barriers at the sources every interval (never two at once), collects every
//! task's snapshot, writes the checkpoint (files, then `_metadata`, then `_latest`),
//! tells the sinks to commit, and restarts the job from the newest valid checkpoint
//! when a task fails (fixed delay or exponential backoff, bounded attempts).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::layout;
use super::metadata::{CheckpointMetadata, FORMAT_VERSION, INCREMENTAL_FORMAT_VERSION, OperatorState};
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
    // `attempts: u32::MAX` = keep trying (workers on Kubernetes)
    FixedDelay { attempts: u32, delay: Duration },
    ExponentialBackoff { attempts: u32, initial: Duration, max: Duration },
}

impl RestartStrategy {
    pub(crate) fn delay(&self, attempt: u32) -> Option<Duration> {
        match self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => (attempt < *attempts).then_some(*delay),
            RestartStrategy::ExponentialBackoff { attempts, initial, max } => {
                (attempt < *attempts).then(|| initial.checked_mul(2u32.saturating_pow(attempt.min(31))).unwrap_or(*max).min(*max))
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
    /// RocksDB files uploaded for this checkpoint, in bytes, per subtask (summed
    /// over operators): what each worker uploaded.
    pub uploaded: BTreeMap<u32, u64>,
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
    /// The request this checkpoint answers (REST savepoints), and its target directory.
    request: Option<String>,
    target: Option<String>,
}

/// What a client can ask of a running job's coordinator (the REST API).
#[derive(Clone, Debug)]
pub enum Request {
    /// A checkpoint now (instead of waiting for the interval).
    Checkpoint,
    /// A savepoint; `stop` = stop-with-savepoint; `target` = the savepoint's own
    /// directory (`<target>/_metadata`); `id` names the request in [`CheckpointEvent`]s.
    Savepoint { id: String, stop: bool, target: Option<String> },
}

/// What the coordinator tells its observer (progress output, the REST status).
#[derive(Debug)]
pub enum CheckpointEvent<'a> {
    Completed { checkpoint: &'a CompletedCheckpoint, request: Option<&'a str> },
    Failed { id: u64, savepoint: bool, request: Option<&'a str>, error: &'a str },
}

/// The job as the coordinator drives it: the tasks of this process, or of a whole
/// distributed job.
pub(crate) trait JobHandle {
    /// Sends `cmd` to every task (or only the sources).
    fn broadcast(&self, cmd: TaskCommand, sources_only: bool);
    /// Tasks that report a snapshot per checkpoint.
    fn task_count(&self) -> usize;
    /// Every task has finished (or the job failed).
    fn is_finished(&self) -> bool;
    fn fail(&self, msg: String);
    fn is_failing(&self) -> bool;
    /// Takes in what arrived from elsewhere (remote reports, failures); called every
    /// iteration of the coordinator loop.
    fn poll(&self) {}
}

impl JobHandle for RunningJob {
    fn broadcast(&self, cmd: TaskCommand, sources_only: bool) {
        RunningJob::broadcast(self, cmd, sources_only)
    }
    fn task_count(&self) -> usize {
        RunningJob::task_count(self)
    }
    fn is_finished(&self) -> bool {
        RunningJob::is_finished(self)
    }
    fn fail(&self, msg: String) {
        RunningJob::fail(self, msg)
    }
    fn is_failing(&self) -> bool {
        RunningJob::is_failing(self)
    }
}

pub(crate) fn random_id() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&(t, std::process::id()).0.to_le_bytes()))
}

/// Opens the snapshot at `url` (a `chk-<n>` or `sp-<id>` directory).
/// A `…/checkpoints/_latest` pointer opens the newest complete checkpoint there.
pub fn open_snapshot(url: &str, max_parallelism: u32) -> Result<(CheckpointStorage, CheckpointMetadata), JobError> {
    let url = &super::resolve_restore_url(url, max_parallelism).map_err(|e| JobError::State(e.to_string()))?;
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
            // one of this job's own checkpoints: its RocksDB files stay shared
            let own = super::checkpoint_number(&storage, s.url()).is_some();
            Some(Arc::new(if own { r.of_own_storage() } else { r }))
        }
        None => None,
    };
    let mut report = RunReport::default();
    let mut attempt = 0u32;
    loop {
        let (tx, rx) = crossbeam_channel::unbounded();
        let fault = settings.faults.get(attempt as usize).cloned();
        let job = env.launch_with(CheckpointSetup { reports: tx, restore: restore.clone(), fault, storage: settings.storage.clone(), job_id: job_id.clone() })?;
        let no_requests = crossbeam_channel::never();
        let mut observe = |e: CheckpointEvent<'_>| {
            if let CheckpointEvent::Completed { checkpoint, .. } = e {
                on_checkpoint(checkpoint)
            }
        };
        let outcome = coordinate(&job, &rx, &storage, settings, &job_id, &config, &mut next_id, stop, &no_requests, &mut report, &mut observe);
        let result = job.wait();
        // the uploads still running (of checkpoints that cannot complete now) end: the
        // channel closes with the upload thread; then their files are deleted
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(r) = rx.recv_deadline(deadline) {
            discard_reports(vec![r]);
        }
        delete_incomplete(&storage);
        match (outcome, result) {
            (Ok(()), Ok(())) => return Ok(report),
            (Err(e), _) | (_, Err(e)) => {
                let mut e = e;
                // restart; while the newest checkpoint cannot be read (storage down),
                // that is one more failed attempt
                loop {
                    let Some(delay) = settings.restart.delay(attempt) else { return Err(e) };
                    attempt += 1;
                    report.restarts += 1;
                    tracing::warn!(error = %e, attempt, ?delay, "job failed; restarting from the latest checkpoint");
                    eprintln!("weir: job failed ({e}); restart {attempt} in {delay:?}");
                    std::thread::sleep(delay);
                    // the newest checkpoint that restores; one with a missing or corrupt
                    // file is skipped (recovery falls back to the previous one)
                    let mut bad = std::collections::BTreeSet::new();
                    let latest = loop {
                        let l = match storage.latest_excluding(Some(config.max_parallelism), &bad) {
                            Ok(l) => l,
                            Err(e) => break Err(e.to_string()),
                        };
                        let Some((dir, meta)) = l else { break Ok(None) };
                        match RestoreState::load(&storage, &dir, &meta, &uids, settings.allow_non_restored_state) {
                            Ok(r) => break Ok(Some(r.of_own_storage())),
                            Err(e) if e.is_bad_snapshot() => {
                                tracing::warn!(checkpoint = meta.checkpoint_id, error = %e, "checkpoint cannot be restored; falling back to an older one");
                                eprintln!("weir: checkpoint {} cannot be restored ({e}); trying an older one", meta.checkpoint_id);
                                bad.insert(meta.checkpoint_id);
                            }
                            Err(e) => break Err(e.to_string()),
                        }
                    };
                    match latest {
                        Ok(Some(r)) => {
                            restore = Some(Arc::new(r));
                            break;
                        }
                        Ok(None) => break, // nothing newer: keep the initial state (restore_from, or empty)
                        Err(msg) => e = JobError::State(format!("cannot restore the latest checkpoint: {msg}")),
                    }
                }
            }
        }
    }
}

/// Drives checkpoints of one job attempt until the job ends or fails: triggers a
/// barrier every interval (or on request), never two at once, completes a checkpoint
/// when every task reported (finished tasks report their final state), and tells the
/// tasks so. A checkpoint or savepoint that fails (storage error, timeout) is reported
/// and the job keeps running: sources paused by a failed stop-with-savepoint resume
/// (tolerable checkpoint failures, as in Flink).
#[allow(clippy::too_many_arguments)]
pub(crate) fn coordinate(
    job: &impl JobHandle,
    rx: &crossbeam_channel::Receiver<SnapshotReport>,
    storage: &CheckpointStorage,
    settings: &CheckpointSettings,
    job_id: &str,
    config: &crate::exec::plan::JobConfig,
    next_id: &mut u64,
    stop: &StopHandle,
    requests: &crossbeam_channel::Receiver<Request>,
    report: &mut RunReport,
    observe: &mut dyn FnMut(CheckpointEvent<'_>),
) -> Result<(), JobError> {
    let mut pending: Option<Pending> = None;
    let mut last_trigger = Instant::now();
    let mut stopping = false;
    // after a failed stop-with-savepoint of the StopHandle (Ctrl-C), when to try again
    let mut stop_retry: Option<Instant> = None;
    let fail_pending = |p: &Pending, observe: &mut dyn FnMut(CheckpointEvent<'_>), error: &str| {
        if !p.barrier.savepoint {
            storage.shared_failed(p.barrier.checkpoint_id);
        }
        observe(CheckpointEvent::Failed { id: p.barrier.checkpoint_id, savepoint: p.barrier.savepoint, request: p.request.as_deref(), error });
    };
    // shared files nothing references (failed checkpoints, uploads of killed workers,
    // a coordinator that died): nothing is in flight yet in this attempt
    match storage.collect_orphans(settings.retain) {
        Ok(o) if !o.is_empty() => tracing::info!(files = o.len(), "deleted unreferenced shared checkpoint files"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot collect unreferenced shared checkpoint files"),
    }
    // and the directories of checkpoints that never completed (here, and by the
    // caller once the job has ended)
    delete_incomplete(storage);
    loop {
        job.poll();
        if job.is_failing() {
            if let Some(p) = pending.take() {
                fail_pending(&p, observe, "the job failed while the checkpoint was in progress");
                discard_reports(p.reports);
            }
            return Ok(()); // the job's own error is returned by wait()
        }
        if pending.is_none() && !job.is_finished() && !stopping {
            let mut next: Option<(bool, bool, Option<String>, Option<String>)> = None; // (savepoint, stop, request, target)
            if stop.is_requested() && stop_retry.is_none_or(|t| Instant::now() >= t) {
                next = Some((true, true, None, None));
            } else if let Ok(r) = requests.try_recv() {
                next = Some(match r {
                    Request::Checkpoint => (false, false, None, None),
                    Request::Savepoint { id, stop, target } => (true, stop, Some(id), target),
                });
            } else if stop.take_checkpoint_request() || last_trigger.elapsed() >= settings.interval {
                next = Some((false, false, None, None));
            }
            if let Some((savepoint, stop_now, request, target)) = next {
                let barrier = Barrier { checkpoint_id: *next_id, timestamp: now_ms(), savepoint, stop: stop_now, target: target.is_some() };
                *next_id += 1;
                stopping |= stop_now;
                if !savepoint {
                    if let Err(e) = storage.shared_begin(barrier.checkpoint_id, settings.retain) {
                        tracing::warn!(checkpoint = barrier.checkpoint_id, error = %e, "cannot read the references of shared checkpoint files");
                    }
                }
                // sources inject the barrier; the other tasks only answer it once they
                // have finished (with their final state), so it goes to every task
                job.broadcast(TaskCommand::Trigger(barrier), false);
                pending = Some(Pending { barrier, started: Instant::now(), reports: Vec::new(), request, target });
                last_trigger = Instant::now();
            }
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => match pending.as_mut().filter(|p| p.barrier.checkpoint_id == r.barrier.checkpoint_id) {
                Some(p) => {
                    if !p.barrier.savepoint {
                        storage.shared_acked(p.barrier.checkpoint_id, r.operators.iter().filter_map(|o| o.files.as_ref()).flat_map(|d| d.files.iter()).map(|f| f.path.as_str()));
                    }
                    p.reports.push(r)
                }
                None => discard_reports(vec![r]),
            },
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {}
        }
        let upload_error = pending.as_ref().and_then(|p| p.reports.iter().find_map(|r| r.error.clone()));
        let failure = if let Some(p) = pending.as_ref() {
            if let Some(error) = upload_error {
                fail_pending(p, observe, &error);
                let barrier = p.barrier;
                if let Some(p) = pending.take() {
                    discard_reports(p.reports);
                }
                Some((barrier, error))
            } else if p.reports.len() >= job.task_count() {
                let p = pending.take().expect("pending");
                let request = p.request.clone();
                let barrier = p.barrier;
                let (id, savepoint) = (barrier.checkpoint_id, barrier.savepoint);
                match write(storage, settings, job_id, config, p) {
                    Ok(done) => {
                        job.broadcast(TaskCommand::Complete(done.id), false);
                        observe(CheckpointEvent::Completed { checkpoint: &done, request: request.as_deref() });
                        if done.savepoint {
                            report.savepoint = Some(done.clone());
                        }
                        report.checkpoints.push(done);
                        None
                    }
                    Err(e) => {
                        let error = e.to_string();
                        if !savepoint {
                            storage.shared_failed(id);
                        }
                        observe(CheckpointEvent::Failed { id, savepoint, request: request.as_deref(), error: &error });
                        Some((barrier, error))
                    }
                }
            } else if p.started.elapsed() > settings.timeout {
                let error = format!("timed out after {:?} ({} of {} tasks reported)", settings.timeout, p.reports.len(), job.task_count());
                fail_pending(p, observe, &error);
                let barrier = p.barrier;
                if let Some(p) = pending.take() {
                    discard_reports(p.reports);
                }
                Some((barrier, error))
            } else {
                None
            }
        } else {
            None
        };
        if let Some((barrier, error)) = failure {
            let (id, stop_now) = (barrier.checkpoint_id, barrier.stop);
            if barrier.savepoint && !barrier.target {
                // the state files the processes wrote for it
                if let Err(e) = storage.delete_dir(&layout::snapshot_dir(id, true, job_id)) {
                    tracing::warn!(savepoint = id, error = %e, "cannot delete the files of a failed savepoint");
                }
            }
            let what = if stop_now { "stop-with-savepoint" } else { "checkpoint" };
            tracing::warn!(checkpoint = id, %error, "{what} failed; the job keeps running");
            eprintln!("weir: {what} {id} failed ({error}); the job keeps running");
            // sources paused by a stop barrier resume; nothing else changes
            job.broadcast(TaskCommand::Abort(id), false);
            if stop_now {
                stopping = false;
                if stop.is_requested() {
                    stop_retry = Some(Instant::now() + settings.interval);
                }
            }
        }
        if job.is_finished() && pending.is_none() {
            // end of input: sinks commit what they pre-committed at the end (not when
            // the job failed: the next attempt restores, and this process keeps its
            // local checkpoint copies for it)
            if !job.is_failing() {
                job.broadcast(TaskCommand::Complete(u64::MAX), false);
            }
            return Ok(());
        }
        if job.is_finished() && !stopping {
            // tasks finished while a checkpoint was in flight: it cannot complete
            if let Some(p) = pending.take() {
                fail_pending(&p, observe, "the job finished before the checkpoint completed");
                discard_reports(p.reports);
            }
        }
    }
}

/// Deletes what checkpoints that never completed had uploaded (see
/// [`CheckpointStorage::delete_incomplete`]).
pub(crate) fn delete_incomplete(storage: &CheckpointStorage) {
    match storage.delete_incomplete() {
        Ok(ids) if !ids.is_empty() => tracing::info!(checkpoints = ?ids, "deleted the files of checkpoints that did not complete"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot delete the files of checkpoints that did not complete"),
    }
}

/// Removes the local database checkpoints of reports that will not be written.
fn discard_reports(reports: Vec<SnapshotReport>) {
    for r in reports {
        super::upload::discard(r);
    }
}

/// Writes one checkpoint: a state file per operator subtask (and, on RocksDB, the
/// database files not uploaded before), then `_metadata`.
fn write(
    storage: &CheckpointStorage,
    settings: &CheckpointSettings,
    job_id: &str,
    config: &crate::exec::plan::JobConfig,
    p: Pending,
) -> Result<CompletedCheckpoint, JobError> {
    let id = p.barrier.checkpoint_id;
    // a savepoint with a target is written right into it: `<target>/_metadata`
    let target = match &p.target {
        Some(url) => {
            let t = CheckpointStorage::open(url).map_err(|e| JobError::State(format!("savepoint target {url}: {e}")))?;
            if t.has_metadata("").map_err(|e| JobError::State(e.to_string()))? {
                return Err(JobError::State(format!("savepoint target {url} already holds a snapshot (_metadata): refusing to overwrite it")));
            }
            Some((t, url.clone()))
        }
        None => None,
    };
    let dir = match &target {
        Some(_) => String::new(),
        None => layout::snapshot_dir(id, p.barrier.savepoint, job_id),
    };
    let mut operators: BTreeMap<String, OperatorState> = BTreeMap::new();
    let mut files = Vec::new();
    let mut uploaded: BTreeMap<u32, u64> = BTreeMap::new();
    let mut stray = Vec::new();
    let mut written_bytes = 0u64;
    for r in p.reports {
        for mut snap in r.operators {
            if let Some(db) = snap.database.take() {
                // every process uploads its own files before reporting (upload.rs)
                stray.push(db.local_dir);
                continue;
            }
            if let Some(files) = snap.files.take() {
                operators.entry(snap.uid.clone()).or_default().databases.insert(snap.subtask, files);
                *uploaded.entry(snap.subtask).or_default() += snap.uploaded_bytes;
            }
            let w = match snap.written.take() {
                // the process wrote its state file itself (upload.rs)
                Some(w) => {
                    written_bytes += w.bytes;
                    w
                }
                // a savepoint into an explicit target: written here
                None => {
                    let (name, bytes, w) = super::upload::pack_state_file(&mut snap);
                    if !bytes.is_empty() {
                        files.push((name, bytes));
                    }
                    w
                }
            };
            let op = operators.entry(snap.uid.clone()).or_default();
            op.parallelism = op.parallelism.max(snap.subtask + 1);
            op.key_groups.extend(w.key_groups);
            if let Some(r) = w.operator {
                op.subtasks.insert(snap.subtask, r);
            }
        }
    }
    if !stray.is_empty() {
        for d in &stray {
            let _ = std::fs::remove_dir_all(d);
        }
        return Err(JobError::State(format!("checkpoint {id}: {} RocksDB snapshot(s) arrived without their files uploaded", stray.len())));
    }
    // the workers uploaded the RocksDB files; now the state files and `_metadata`
    let db_bytes: u64 = uploaded.values().sum();
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
    let (storage, url) = match &target {
        Some((t, url)) => (t, url.clone()),
        None => (storage, storage.url_of(&dir)),
    };
    let bytes = db_bytes + written_bytes + storage.write_snapshot(&dir, files, &meta).map_err(|e| JobError::State(format!("checkpoint {id}: {e}")))?;
    if !p.barrier.savepoint {
        storage.set_latest(id).map_err(|e| JobError::State(format!("checkpoint {id}: {e}")))?;
        if let Err(e) = storage.shared_complete(id, settings.retain) {
            tracing::warn!(checkpoint = id, error = %e, "could not delete old checkpoints");
        }
    }
    Ok(CompletedCheckpoint { id, url, bytes, duration: p.started.elapsed(), savepoint: p.barrier.savepoint, uploaded })
}
