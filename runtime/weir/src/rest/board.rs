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
                    last_checkpoint: None,
                    restarts: 0,
                    error: None,
                },
                ready: false,
                checkpoints: VecDeque::new(),
                savepoints: HashMap::new(),
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

    pub fn job(&self) -> JobStatus {
        self.lock().job.clone()
    }

    pub fn set_job_id(&self, id: &str) {
        self.lock().job.id = id.to_string();
    }

    /// A new state; `error` is kept for `FAILED` (and cleared when running again).
    pub fn set_state(&self, state: JobState, error: Option<String>) {
        let mut b = self.lock();
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
            for s in b.savepoints.values_mut().filter(|s| s.status == OperationStatus::InProgress) {
                s.status = OperationStatus::Failed;
                s.error = Some(format!("the job ended ({state}) before the savepoint was taken"));
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
        let mut b = self.lock();
        let id = format!("sp-req-{}", b.next_request);
        b.next_request += 1;
        b.savepoints.insert(id.clone(), SavepointStatus { id: id.clone(), status: OperationStatus::InProgress, url: None, error: None });
        id
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
                });
                if !c.savepoint {
                    b.job.last_checkpoint = Some(CheckpointRef { id: c.id, url: c.url.clone(), timestamp: ts, bytes: c.bytes });
                }
                if let Some(r) = request.and_then(|r| b.savepoints.get_mut(r)) {
                    r.status = OperationStatus::Completed;
                    r.url = Some(c.url.clone());
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
                });
                if let Some(r) = request.and_then(|r| b.savepoints.get_mut(r)) {
                    r.status = OperationStatus::Failed;
                    r.error = Some(error.to_string());
                }
                self.metrics.failed();
            }
        }
        while b.checkpoints.len() > HISTORY {
            b.checkpoints.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::coordinator::CompletedCheckpoint;

    #[test]
    fn savepoint_requests_follow_the_coordinator() {
        let b = StatusBoard::new("q5", 3, 720);
        let id = b.new_savepoint_request();
        assert_eq!(b.savepoint(&id).unwrap().status, OperationStatus::InProgress);
        let c = CompletedCheckpoint { id: 7, url: "file:///x/savepoints/sp-7".into(), bytes: 10, duration: std::time::Duration::from_millis(5), savepoint: true };
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
}
