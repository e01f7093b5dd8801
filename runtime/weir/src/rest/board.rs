//! What the coordinator knows about its job, shared with the REST handlers and the
//! metrics exporter: job state, recent checkpoints, savepoint requests, the live task
//! counters of the current attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use weir_api::{CheckpointInfo, CheckpointRef, JobState, JobStatus, OperationStatus, SavepointStatus};

use crate::checkpoint::coordinator::CheckpointEvent;
use crate::exec::TaskMetrics;
use crate::record::now_ms;

/// Checkpoints listed by `GET /v1/checkpoints`.
const HISTORY: usize = 32;
/// Finished (completed or failed) savepoint requests remembered for repeated requests
/// and `GET /v1/savepoints/{id}`; requests in progress are always kept.
const SAVEPOINT_HISTORY: usize = 100;

/// The answer to a savepoint request ([`StatusBoard::register_savepoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new request with this id: send it to the coordinator.
    New(String),
    /// A request with this id exists already (any state): the same savepoint.
    Existing(String),
    /// A stop-with-savepoint with another id is in progress.
    StopInProgress(String),
}

/// The shared status of one job (one per process).
pub struct StatusBoard {
    inner: Mutex<Board>,
    /// Coordinator metrics (checkpoint durations, restarts), kept across scrapes.
    pub(crate) metrics: crate::metrics::CoordinatorMetrics,
}

struct Board {
    job: JobStatus,
    ready: bool,
    checkpoints: VecDeque<CheckpointInfo>,
    savepoints: HashMap<String, SavepointStatus>,
    /// Ids of finished savepoint requests, oldest first (bounded by SAVEPOINT_HISTORY).
    finished_savepoints: VecDeque<String>,
    /// The stop-with-savepoint request in progress, if any.
    stop_request: Option<String>,
    next_request: u64,
    tasks: Vec<Arc<TaskMetrics>>,
    /// Bytes sent/received per peer worker over the data port.
    network: Vec<(u32, Arc<crate::exchange::net::PeerCounters>)>,
}

impl StatusBoard {
    pub fn new(name: &str, parallelism: u32, max_parallelism: u32) -> Arc<Self> {
        Arc::new(StatusBoard {
            inner: Mutex::new(Board {
                job: JobStatus {
                    id: String::new(),
                    name: name.to_string(),
                    state: JobState::Created,
                    parallelism,
                    max_parallelism,
                    started: now_ms(),
                    running_since: None,
                    last_checkpoint: None,
                    restarts: 0,
                    watermark: None,
                    error: None,
                },
                ready: false,
                checkpoints: VecDeque::new(),
                savepoints: HashMap::new(),
                finished_savepoints: VecDeque::new(),
                stop_request: None,
                next_request: 1,
                tasks: Vec::new(),
                network: Vec::new(),
            }),
            metrics: crate::metrics::CoordinatorMetrics::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // a handler that panicked mid-update leaves plain data: keep serving it
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job status, with the watermark of this process's running tasks.
    pub fn job(&self) -> JobStatus {
        let b = self.lock();
        let mut job = b.job.clone();
        job.watermark = watermark(&b.tasks);
        job
    }

    /// The job's name and parallelism, once the job is loaded.
    pub fn configure(&self, name: &str, parallelism: u32, max_parallelism: u32) {
        let mut b = self.lock();
        b.job.name = name.to_string();
        b.job.parallelism = parallelism;
        b.job.max_parallelism = max_parallelism;
    }

    pub fn set_job_id(&self, id: &str) {
        self.lock().job.id = id.to_string();
    }

    /// A new state; `error` is kept for `FAILED` (and cleared when running again).
    pub fn set_state(&self, state: JobState, error: Option<String>) {
        let mut b = self.lock();
        if state == JobState::Running && b.job.state != JobState::Running {
            b.job.running_since = Some(now_ms());
        }
        b.job.state = state;
        if state == JobState::Running {
            b.job.error = None;
        }
        if error.is_some() {
            b.job.error = error;
        }
        b.ready = state == JobState::Running;
        if state.is_terminal() {
            // requests nobody will serve any more
            let open: Vec<String> = b.savepoints.values().filter(|s| s.status == OperationStatus::InProgress).map(|s| s.id.clone()).collect();
            for id in open {
                b.finish_savepoint(&id, None, Some(format!("the job ended ({state}) before the savepoint was taken")));
            }
        }
    }

    pub fn restarted(&self) {
        self.lock().job.restarts += 1;
        self.metrics.restarts.inc();
    }

    /// Ready = connected to all peers and running.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    pub fn set_tasks(&self, tasks: Vec<Arc<TaskMetrics>>) {
        self.lock().tasks = tasks;
    }

    pub(crate) fn tasks(&self) -> Vec<Arc<TaskMetrics>> {
        self.lock().tasks.clone()
    }

    pub(crate) fn set_network(&self, peers: Vec<(u32, Arc<crate::exchange::net::PeerCounters>)>) {
        self.lock().network = peers;
    }

    pub(crate) fn network(&self) -> Vec<(u32, Arc<crate::exchange::net::PeerCounters>)> {
        self.lock().network.clone()
    }

    pub fn checkpoints(&self) -> Vec<CheckpointInfo> {
        self.lock().checkpoints.iter().rev().cloned().collect()
    }

    /// Registers a savepoint request; returns its id (`IN_PROGRESS` until the
    /// coordinator reports on it).
    pub fn new_savepoint_request(&self) -> String {
        match self.register_savepoint(None, false) {
            Registered::New(id) | Registered::Existing(id) | Registered::StopInProgress(id) => id,
        }
    }

    /// Registers savepoint request `request_id` (the client's idempotency key; a fresh
    /// `sp-req-<n>` without one). A known id is the same savepoint, whatever its
    /// state; a second stop-with-savepoint while one is in progress is refused.
    pub fn register_savepoint(&self, request_id: Option<&str>, stop: bool) -> Registered {
        let mut b = self.lock();
        if let Some(id) = request_id
            && b.savepoints.contains_key(id)
        {
            return Registered::Existing(id.to_string());
        }
        if stop && let Some(other) = b.stop_request.clone() {
            return Registered::StopInProgress(other);
        }
        let id = match request_id {
            Some(id) => id.to_string(),
            None => {
                let id = format!("sp-req-{}", b.next_request);
                b.next_request += 1;
                id
            }
        };
        b.savepoints.insert(id.clone(), SavepointStatus { id: id.clone(), status: OperationStatus::InProgress, url: None, error: None });
        if stop {
            b.stop_request = Some(id.clone());
        }
        Registered::New(id)
    }

    /// Savepoint request `id` could not even be started.
    pub fn fail_savepoint_request(&self, id: &str, error: &str) {
        self.lock().finish_savepoint(id, None, Some(error.to_string()));
    }

    pub fn new_checkpoint_request(&self) -> String {
        let mut b = self.lock();
        let id = format!("chk-req-{}", b.next_request);
        b.next_request += 1;
        id
    }

    pub fn savepoint(&self, id: &str) -> Option<SavepointStatus> {
        self.lock().savepoints.get(id).cloned()
    }

    /// Records what the coordinator reports.
    pub fn on_event(&self, e: &CheckpointEvent<'_>) {
        let mut b = self.lock();
        match e {
            CheckpointEvent::Completed { checkpoint: c, request } => {
                let ts = now_ms();
                b.checkpoints.push_back(CheckpointInfo {
                    id: c.id,
                    status: OperationStatus::Completed,
                    savepoint: c.savepoint,
                    bytes: c.bytes,
                    duration_ms: c.duration.as_millis() as u64,
                    url: c.url.clone(),
                    timestamp: ts,
                    error: None,
                });
                if !c.savepoint {
                    b.job.last_checkpoint = Some(CheckpointRef { id: c.id, url: c.url.clone(), timestamp: ts, bytes: c.bytes });
                }
                if let Some(r) = request {
                    b.finish_savepoint(r, Some(c.url.clone()), None);
                }
                self.metrics.completed(c.duration.as_secs_f64(), c.bytes, ts);
            }
            CheckpointEvent::Failed { id, savepoint, request, error } => {
                b.checkpoints.push_back(CheckpointInfo {
                    id: *id,
                    status: OperationStatus::Failed,
                    savepoint: *savepoint,
                    bytes: 0,
                    duration_ms: 0,
                    url: String::new(),
                    timestamp: now_ms(),
                    error: Some(error.to_string()),
                });
                if let Some(r) = request {
                    b.finish_savepoint(r, None, Some(error.to_string()));
                }
                self.metrics.failed();
            }
        }
        while b.checkpoints.len() > HISTORY {
            b.checkpoints.pop_front();
        }
    }
}

impl Board {
    /// Savepoint request `id` completed (`url`) or failed (`error`).
    fn finish_savepoint(&mut self, id: &str, url: Option<String>, error: Option<String>) {
        let Some(r) = self.savepoints.get_mut(id) else { return };
        if r.status != OperationStatus::InProgress {
            return;
        }
        r.status = if error.is_some() { OperationStatus::Failed } else { OperationStatus::Completed };
        r.url = url;
        r.error = error;
        if self.stop_request.as_deref() == Some(id) {
            self.stop_request = None;
        }
        self.finished_savepoints.push_back(id.to_string());
        while self.finished_savepoints.len() > SAVEPOINT_HISTORY {
            if let Some(old) = self.finished_savepoints.pop_front() {
                self.savepoints.remove(&old);
            }
        }
    }
}

/// The minimum event-time watermark of the tasks still running that have one (a finished
/// task's watermark is final and says nothing about progress).
fn watermark(tasks: &[Arc<TaskMetrics>]) -> Option<i64> {
    use std::sync::atomic::Ordering;
    tasks
        .iter()
        .filter(|t| !t.finished.load(Ordering::Relaxed))
        .map(|t| t.watermark.load(Ordering::Relaxed))
        .filter(|wm| *wm > i64::MIN && *wm < i64::MAX)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::coordinator::CompletedCheckpoint;

    #[test]
    fn job_status_reports_the_minimum_watermark_of_running_tasks() {
        use std::sync::atomic::Ordering;
        let b = StatusBoard::new("q5", 1, 720);
        let task = |wm: i64, finished: bool| {
            let t = TaskMetrics::new("t".into(), 0, false, false);
            t.watermark.store(wm, Ordering::Relaxed);
            t.finished.store(finished, Ordering::Relaxed);
            Arc::new(t)
        };
        assert_eq!(b.job().watermark, None);
        b.set_tasks(vec![task(i64::MIN, false), task(5_000, false), task(3_000, false), task(1_000, true), task(i64::MAX, false)]);
        assert_eq!(b.job().watermark, Some(3_000));
        b.set_tasks(vec![task(i64::MIN, false)]);
        assert_eq!(b.job().watermark, None, "no watermark yet");
    }

    #[test]
    fn savepoint_requests_follow_the_coordinator() {
        let b = StatusBoard::new("q5", 3, 720);
        let id = b.new_savepoint_request();
        assert_eq!(b.savepoint(&id).unwrap().status, OperationStatus::InProgress);
        let c = CompletedCheckpoint { id: 7, url: "file:///x/savepoints/sp-7".into(), bytes: 10, duration: std::time::Duration::from_millis(5), savepoint: true, uploaded: Default::default() };
        b.on_event(&CheckpointEvent::Completed { checkpoint: &c, request: Some(&id) });
        let s = b.savepoint(&id).unwrap();
        assert_eq!((s.status, s.url.as_deref()), (OperationStatus::Completed, Some("file:///x/savepoints/sp-7")));
        assert!(b.job().last_checkpoint.is_none(), "a savepoint is not the last checkpoint");

        let id2 = b.new_savepoint_request();
        b.on_event(&CheckpointEvent::Failed { id: 8, savepoint: true, request: Some(&id2), error: "timed out" });
        assert_eq!(b.savepoint(&id2).unwrap().error.as_deref(), Some("timed out"));
        assert_eq!(b.checkpoints().len(), 2);
    }

    #[test]
    fn a_terminal_state_fails_open_requests() {
        let b = StatusBoard::new("q5", 1, 720);
        let id = b.new_savepoint_request();
        b.set_state(JobState::Failed, Some("boom".into()));
        assert_eq!(b.savepoint(&id).unwrap().status, OperationStatus::Failed);
        assert_eq!(b.job().error.as_deref(), Some("boom"));
        assert!(!b.is_ready());
    }

    #[test]
    fn request_ids_make_savepoint_requests_idempotent() {
        let b = StatusBoard::new("q5", 1, 720);
        assert_eq!(b.register_savepoint(Some("j1-sp-1"), false), Registered::New("j1-sp-1".into()));
        assert_eq!(b.register_savepoint(Some("j1-sp-1"), false), Registered::Existing("j1-sp-1".into()));
        let c = CompletedCheckpoint { id: 7, url: "file:///x/sp".into(), bytes: 10, duration: std::time::Duration::from_millis(5), savepoint: true, uploaded: Default::default() };
        b.on_event(&CheckpointEvent::Completed { checkpoint: &c, request: Some("j1-sp-1") });
        assert_eq!(b.register_savepoint(Some("j1-sp-1"), true), Registered::Existing("j1-sp-1".into()), "completed: still the same savepoint");
        // one stop at a time
        assert_eq!(b.register_savepoint(Some("stop-1"), true), Registered::New("stop-1".into()));
        assert_eq!(b.register_savepoint(Some("stop-2"), true), Registered::StopInProgress("stop-1".into()));
        assert_eq!(b.register_savepoint(None, true), Registered::StopInProgress("stop-1".into()));
        assert_eq!(b.register_savepoint(Some("stop-1"), true), Registered::Existing("stop-1".into()));
        b.on_event(&CheckpointEvent::Failed { id: 8, savepoint: true, request: Some("stop-1"), error: "writing s3://b/sp: refused" });
        assert_eq!(b.savepoint("stop-1").unwrap().status, OperationStatus::Failed);
        assert_eq!(b.checkpoints()[0].error.as_deref(), Some("writing s3://b/sp: refused"));
        assert_eq!(b.register_savepoint(Some("stop-2"), true), Registered::New("stop-2".into()), "the failed stop is over");
    }

    #[test]
    fn finished_savepoints_are_remembered_up_to_a_bound() {
        let b = StatusBoard::new("q5", 1, 720);
        for i in 0..(SAVEPOINT_HISTORY + 10) {
            let id = format!("r-{i}");
            b.register_savepoint(Some(&id), false);
            b.on_event(&CheckpointEvent::Failed { id: i as u64, savepoint: true, request: Some(&id), error: "x" });
        }
        assert!(b.savepoint("r-0").is_none(), "the oldest are forgotten");
        assert!(b.savepoint(&format!("r-{}", SAVEPOINT_HISTORY + 9)).is_some());
        assert_eq!(b.lock().savepoints.len(), SAVEPOINT_HISTORY);
    }
}
