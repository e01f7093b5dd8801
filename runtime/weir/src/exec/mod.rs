//! Physical execution: tasks (chains of operators) on threads, connected by bounded
//! channels that carry batches of records plus in-band watermarks, idleness markers,
//! checkpoint barriers and end-of-input.
//!
//! Hot-path rules: operators hand whole batches (`Vec<Rec<T>>`) to the next chained
//! operator through one virtual call per batch; a channel send moves a whole batch;
//! buffers are reused; a full channel blocks the sender (backpressure).

pub(crate) mod input;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod source;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::record::{Rec, Timestamp};
use crate::state::snapshot::OperatorSnapshot;

/// Records per batch before an output buffer is sent downstream.
pub(crate) const BATCH_SIZE: usize = 1024;
/// Batches a channel holds before its sender blocks.
pub(crate) const CHANNEL_CAPACITY: usize = 8;
/// Longest time a non-full output buffer waits before it is flushed.
pub(crate) const FLUSH_INTERVAL_MS: u64 = 10;

/// A checkpoint barrier (issue: checkpoints). Travels in-band with the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Barrier {
    pub checkpoint_id: u64,
    pub timestamp: Timestamp,
    /// A savepoint: state in the canonical format, never deleted by the runtime.
    pub savepoint: bool,
    /// Stop-with-savepoint: sources stop after this barrier.
    pub stop: bool,
    /// A savepoint into an explicit target directory: each process sends its state to
    /// the coordinator, which writes it there. Otherwise every process writes its own
    /// state files into the snapshot's directory (`checkpoint/upload.rs`).
    #[serde(default)]
    pub target: bool,
}

/// What travels on a channel (between processes: postcard-encoded, see `exchange`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Msg<T> {
    Data(Vec<Rec<T>>),
    Watermark(Timestamp),
    Idle(bool),
    Barrier(Barrier),
    End,
}

/// The receiving side of one operator in a chain. Every method is called once per
/// batch or event, never per record.
pub(crate) trait Downstream<T>: Send {
    /// Takes the records out of `batch` (leaving it empty, capacity kept).
    fn push(&mut self, batch: &mut Vec<Rec<T>>);
    fn watermark(&mut self, wm: Timestamp);
    fn idle(&mut self, idle: bool);
    /// Fires processing-time timers due at `now`.
    fn processing_time(&mut self, now: Timestamp);
    /// The earliest processing-time timer in this part of the chain.
    fn next_deadline(&self) -> Option<Timestamp>;
    /// Sends buffered output on.
    fn flush(&mut self);
    /// Snapshots operator state for `barrier` (appending to `snaps`) and forwards it.
    fn barrier(&mut self, barrier: &Barrier, snaps: &mut Vec<OperatorSnapshot>);
    /// A checkpoint completed: two-phase-commit sinks commit what they pre-committed.
    fn checkpoint_complete(&mut self, checkpoint_id: u64);
    /// End of input: flush everything and propagate.
    fn end(&mut self);
}

pub(crate) type BoxDown<T> = Box<dyn Downstream<T>>;

/// Live counters of one task, read by the progress display and metrics.
#[derive(Debug)]
pub struct TaskMetrics {
    pub name: String,
    pub subtask: u32,
    pub is_source: bool,
    pub is_sink: bool,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub watermark: AtomicI64,
    pub finished: AtomicBool,
    /// Nanoseconds spent blocked because a downstream queue was full (backpressure).
    pub backpressured_ns: AtomicU64,
    /// Nanoseconds spent waiting for input (idle).
    pub idle_ns: AtomicU64,
    /// When the task started (for busy = elapsed - idle - backpressured).
    pub started: std::time::Instant,
}

impl TaskMetrics {
    pub(crate) fn new(name: String, subtask: u32, is_source: bool, is_sink: bool) -> Self {
        TaskMetrics {
            name,
            subtask,
            is_source,
            is_sink,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            finished: AtomicBool::new(false),
            backpressured_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }
    #[inline]
    pub(crate) fn add_backpressure(&self, d: std::time::Duration) {
        self.backpressured_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn add_idle(&self, d: std::time::Duration) {
        self.idle_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn add_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn add_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What a running task knows about where it runs.
#[derive(Clone)]
pub struct TaskInfo {
    pub job_name: Arc<str>,
    /// The operator's display name.
    pub operator: Arc<str>,
    /// The operator's stable id (matches its state in snapshots).
    pub uid: Arc<str>,
    pub subtask: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Where keyed state lives.
    pub state_backend: crate::state::StateBackend,
}

impl TaskInfo {
    pub fn key_groups(&self) -> crate::keygroup::KeyGroupRange {
        crate::keygroup::range_for_subtask(self.subtask, self.parallelism, self.max_parallelism)
    }
}

/// Shared by all tasks of one job run: the cancel flag and the first failure.
#[derive(Default)]
pub(crate) struct JobControl {
    pub cancelled: AtomicBool,
    pub failure: std::sync::Mutex<Option<String>>,
}

impl JobControl {
    pub(crate) fn fail(&self, msg: String) {
        if let Ok(mut f) = self.failure.lock() {
            if f.is_none() {
                *f = Some(msg);
            }
        }
        self.cancelled.store(true, Ordering::SeqCst);
    }
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Everything a task needs from the job run it belongs to.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    pub info: TaskInfo,
    pub control: Arc<JobControl>,
    pub metrics: Arc<TaskMetrics>,
    /// Where a task reports its snapshots when a barrier has passed it.
    pub snapshots: Option<crossbeam_channel::Sender<SnapshotReport>>,
    /// Commands from the checkpoint coordinator.
    pub commands: Option<crossbeam_channel::Receiver<TaskCommand>>,
    /// The state to start from.
    pub restore: Option<Arc<crate::checkpoint::restore::RestoreState>>,
    /// Test-only: fail when this task's input reaches this many records.
    pub fault: Option<(String, u64)>,
}

/// What the checkpoint coordinator tells a task.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TaskCommand {
    /// (sources) Snapshot now and send this barrier downstream.
    Trigger(Barrier),
    /// Checkpoint `n` is complete: commit what was pre-committed for it.
    Complete(u64),
    /// Checkpoint `n` failed (storage error, timeout): sources paused by its
    /// stop-with-savepoint barrier resume.
    Abort(u64),
}

/// One task's contribution to a checkpoint.
#[derive(Debug)]
pub(crate) struct SnapshotReport {
    pub barrier: Barrier,
    pub operators: Vec<OperatorSnapshot>,
    /// The snapshot could not be completed (its files could not be uploaded): the
    /// checkpoint fails.
    pub error: Option<String>,
}

impl TaskEnv {
    /// Test-only fault injection: panics once the task has read `n` records.
    #[inline]
    pub(crate) fn check_fault(&self) {
        if let Some((op, n)) = &self.fault {
            if self.metrics.records_in.load(Ordering::Relaxed) >= *n {
                panic!("injected fault in {op} at record {n}");
            }
        }
    }

    pub(crate) fn report_snapshot(&self, barrier: Barrier, operators: Vec<OperatorSnapshot>) {
        if let Some(tx) = &self.snapshots {
            let _ = tx.send(SnapshotReport { barrier, operators, error: None });
        }
    }
}

/// The earlier of two optional deadlines.
#[inline]
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
