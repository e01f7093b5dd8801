//! Sources and sinks: the traits users implement, and the built-in connectors.

pub mod blackhole;
pub mod collection;
pub mod files;
pub mod jsonl;
pub mod sequence;
pub mod stdout;

use crate::record::{Rec, Timestamp, NO_TIMESTAMP};

/// A failure of a source or sink, naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{what}: {source}")]
    Io { what: String, #[source] source: std::io::Error },
    #[error("{what}, line {line}: {message}")]
    Parse { what: String, line: u64, message: String },
    #[error("{0}")]
    Other(String),
}

impl ConnectorError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ConnectorError::Io { what: what.into(), source }
    }
}

/// Where a source subtask runs.
#[derive(Clone, Debug)]
pub struct SourceContext {
    pub subtask: u32,
    pub parallelism: u32,
}

/// What a call to [`Source::poll`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// Produced records (or may produce more right away).
    Ready,
    /// Nothing available now; poll again a little later.
    Idle,
    /// End of input: this subtask will produce nothing more.
    Finished,
}

/// Where a source puts the records it reads.
pub struct SourceOutput<'a, T> {
    pub(crate) buf: &'a mut Vec<Rec<T>>,
    pub(crate) limit: usize,
    pub(crate) watermark: Option<Timestamp>,
}

impl<T> SourceOutput<'_, T> {
    /// Emits a record; its timestamp comes from the watermark strategy's extractor.
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.buf.push(Rec::new(NO_TIMESTAMP, value));
    }
    /// Emits a record with a timestamp the source knows.
    #[inline]
    pub fn collect_at(&mut self, ts: Timestamp, value: T) {
        self.buf.push(Rec::new(ts, value));
    }
    /// Emits a watermark after the records of this poll (for sources that know
    /// their event-time progress, e.g. per partition).
    pub fn emit_watermark(&mut self, wm: Timestamp) {
        self.watermark = Some(self.watermark.map_or(wm, |w| w.max(wm)));
    }
    /// How many more records this poll should produce at most.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }
}

/// A parallel source: one instance per subtask, created by the job's source factory.
pub trait Source<T>: Send {
    fn open(&mut self, _ctx: &SourceContext) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// Emits up to `out.remaining()` records without blocking for long.
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, ConnectorError>;
    /// The positions of the splits this subtask reads (one entry per split),
    /// checkpointed with the barrier.
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(Vec::new())
    }
    /// `snapshot` for checkpoint `checkpoint_id` (what the engine calls at a barrier;
    /// by default `snapshot`): for sources that act when that checkpoint completes.
    fn snapshot_for(&mut self, _checkpoint_id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        self.snapshot()
    }
    /// Checkpoint `checkpoint_id` is complete (every task's state of it is durable):
    /// e.g. a Kafka source commits the offsets it snapshotted for it to its consumer
    /// group (for monitoring; a restore uses the checkpoint's positions). An error
    /// fails the job.
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// Resumes from split positions returned by `snapshot` — of any subtask of the
    /// snapshotted job: on restore with another parallelism, splits are handed out
    /// round robin. Called before `open`, and replaces the initial assignment.
    fn restore(&mut self, _splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// How the snapshotted splits are handed to the subtasks on restore:
    /// [`Redistribution::Split`] (default) gives each split to one subtask, round
    /// robin (a subtask may get none: it then finishes, or idles, at once);
    /// [`Redistribution::Union`] gives every subtask all of them, and `restore` takes
    /// its own share (e.g. re-divides the remaining range to the new parallelism).
    fn redistribution(&self) -> crate::checkpoint::restore::Redistribution {
        crate::checkpoint::restore::Redistribution::Split
    }
}

/// Where a sink subtask runs.
#[derive(Clone, Debug)]
pub struct SinkContext {
    pub subtask: u32,
    pub parallelism: u32,
}

/// A parallel sink: one instance per subtask.
///
/// Exactly-once sinks use two-phase commit: at each checkpoint barrier `pre_commit`
/// makes what was written so far durable but invisible and returns a committable;
/// when the checkpoint is complete, `commit` makes it visible. After a failure the
/// job restarts from the last complete checkpoint and `restore` gets the committables
/// of that checkpoint (commit them — idempotently — and discard anything else).
/// The defaults give at-least-once sinks that just flush.
pub trait Sink<T>: Send {
    fn open(&mut self, _ctx: &SinkContext) -> Result<(), ConnectorError> {
        Ok(())
    }
    fn write(&mut self, batch: &[Rec<T>]) -> Result<(), ConnectorError>;
    /// Pushes buffered output on (called when the task is about to wait).
    fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// The sink's input watermark advanced to `wm` (after the records before it were
    /// written): for sinks whose output depends on event-time progress, e.g. one
    /// committing a partition once the watermark passes its time. `i64::MAX` at the
    /// end of the input.
    fn on_watermark(&mut self, _wm: Timestamp) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// Phase one, at a barrier (and at end of input with `checkpoint_id = u64::MAX`).
    fn pre_commit(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        self.flush()?;
        Ok(None)
    }
    /// Phase two, when the checkpoint is complete.
    fn commit(&mut self, _committable: Vec<u8>) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// On restore: the committables pending in the restored checkpoint. Called before `open`.
    fn restore(&mut self, committables: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        for c in committables {
            self.commit(c)?;
        }
        Ok(())
    }
}
