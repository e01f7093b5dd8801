//! Stateless one-input operators and the sink operator.

use super::forward_events;
use super::side::Sides;
use crate::connector::{Sink, SinkContext};
use crate::exec::{Barrier, BoxDown, Downstream, TaskEnv};
use crate::record::{Collector, Data, OutputTag, Rec, Timestamp};
use crate::checkpoint::restore::Redistribution;
use crate::state::snapshot::OperatorSnapshot;

pub(crate) struct Map<F, O> {
    pub f: F,
    pub out: Vec<Rec<O>>,
    pub next: BoxDown<O>,
}

impl<I: Data, O: Data, F: FnMut(I) -> O + Send> Downstream<I> for Map<F, O> {
    fn push(&mut self, batch: &mut Vec<Rec<I>>) {
        let f = &mut self.f;
        self.out.extend(batch.drain(..).map(|r| Rec::new(r.ts, f(r.value))));
        self.next.push(&mut self.out);
    }
    forward_events!(next);
}

pub(crate) struct Filter<F, T> {
    pub f: F,
    pub next: BoxDown<T>,
}

impl<T: Data, F: FnMut(&T) -> bool + Send> Downstream<T> for Filter<F, T> {
    fn push(&mut self, batch: &mut Vec<Rec<T>>) {
        let f = &mut self.f;
        batch.retain(|r| f(&r.value));
        if !batch.is_empty() {
            self.next.push(batch);
        }
    }
    forward_events!(next);
}

pub(crate) struct FlatMap<F, O> {
    pub f: F,
    pub out: Vec<Rec<O>>,
    pub next: BoxDown<O>,
}

impl<I: Data, O: Data, F: FnMut(I, &mut Collector<O>) + Send> Downstream<I> for FlatMap<F, O> {
    fn push(&mut self, batch: &mut Vec<Rec<I>>) {
        for r in batch.drain(..) {
            let mut c = Collector::new(&mut self.out, r.ts);
            (self.f)(r.value, &mut c);
        }
        if !self.out.is_empty() {
            self.next.push(&mut self.out);
        }
    }
    forward_events!(next);
}

/// A function applied to every record of a (non-keyed) stream, with access to
/// timestamps, the watermark and side outputs.
pub trait ProcessFunction<I, O>: Send {
    fn process(&mut self, value: I, ctx: &mut ProcessContext<'_, O>);
}

impl<I, O, F: FnMut(I, &mut ProcessContext<'_, O>) + Send> ProcessFunction<I, O> for F {
    fn process(&mut self, value: I, ctx: &mut ProcessContext<'_, O>) {
        self(value, ctx)
    }
}

/// What a [`ProcessFunction`] can do for the record at hand.
pub struct ProcessContext<'a, O> {
    out: Collector<'a, O>,
    sides: &'a mut Sides,
    watermark: Timestamp,
}

impl<O> ProcessContext<'_, O> {
    pub fn timestamp(&self) -> Timestamp {
        self.out.timestamp()
    }
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    pub fn emit(&mut self, value: O) {
        self.out.emit(value)
    }
    pub fn emit_at(&mut self, ts: Timestamp, value: O) {
        self.out.emit_at(ts, value)
    }
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        let ts = self.out.timestamp();
        self.sides.emit(tag, ts, value)
    }
}

pub(crate) struct Process<F, O> {
    pub f: F,
    pub out: Vec<Rec<O>>,
    pub next: BoxDown<O>,
    pub sides: Sides,
    pub watermark: Timestamp,
}

impl<I: Data, O: Data, F: ProcessFunction<I, O>> Downstream<I> for Process<F, O> {
    fn push(&mut self, batch: &mut Vec<Rec<I>>) {
        for r in batch.drain(..) {
            let mut ctx = ProcessContext { out: Collector::new(&mut self.out, r.ts), sides: &mut self.sides, watermark: self.watermark };
            self.f.process(r.value, &mut ctx);
        }
        if !self.out.is_empty() {
            self.next.push(&mut self.out);
        }
        self.sides.push_pending();
    }
    fn watermark(&mut self, wm: Timestamp) {
        self.watermark = wm;
        self.sides.watermark(wm);
        self.next.watermark(wm)
    }
    fn idle(&mut self, idle: bool) {
        self.sides.idle(idle);
        self.next.idle(idle)
    }
    fn processing_time(&mut self, now: Timestamp) {
        self.next.processing_time(now)
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        self.next.next_deadline()
    }
    fn flush(&mut self) {
        self.sides.flush();
        self.next.flush()
    }
    fn barrier(&mut self, b: &Barrier, s: &mut Vec<OperatorSnapshot>) {
        self.sides.barrier(b, s);
        self.next.barrier(b, s)
    }
    fn checkpoint_complete(&mut self, id: u64) {
        self.next.checkpoint_complete(id)
    }
    fn end(&mut self) {
        self.sides.end();
        self.next.end()
    }
}

/// Writes its input to a [`Sink`]; the end of a chain. Runs the sink's two-phase
/// commit: pre-commit at barriers, commit when the coordinator says the checkpoint
/// is complete (or right away at end of input when the job has no checkpoints).
pub(crate) struct SinkOp<S> {
    pub sink: S,
    pub env: TaskEnv,
    pub failed: bool,
    /// pre-committed, not yet committed: (checkpoint id, committable)
    pending: Vec<(u64, Vec<u8>)>,
    /// End of input was reached (what is left was pre-committed as `u64::MAX`).
    ended: bool,
    /// the last watermark given to the sink
    last_watermark: Timestamp,
}

impl<S> SinkOp<S> {
    pub(crate) fn new<T>(mut sink: S, env: TaskEnv) -> Self
    where
        S: Sink<T>,
    {
        let ctx = SinkContext { subtask: env.info.subtask, parallelism: env.info.parallelism };
        let mut failed = false;
        let restored = env
            .restore
            .as_ref()
            .and_then(|r| r.operator(&env.info.uid, env.info.subtask, env.info.parallelism, Redistribution::Split))
            .unwrap_or_default();
        let r = sink.restore(restored).and_then(|_| sink.open(&ctx));
        if let Err(e) = r {
            env.control.fail(format!("sink {} (subtask {}): {e}", env.info.operator, env.info.subtask));
            failed = true;
        }
        SinkOp { sink, env, failed, pending: Vec::new(), ended: false, last_watermark: Timestamp::MIN }
    }

    fn check(&mut self, r: Result<(), crate::connector::ConnectorError>) {
        if let Err(e) = r {
            if !self.failed {
                self.failed = true;
                self.env.control.fail(format!("sink {} (subtask {}): {e}", self.env.info.operator, self.env.info.subtask));
            }
        }
    }

    fn pre_commit<T>(&mut self, id: u64) -> Result<(), crate::connector::ConnectorError>
    where
        S: Sink<T>,
    {
        if let Some(c) = self.sink.pre_commit(id)? {
            self.pending.push((id, c));
        }
        Ok(())
    }

    fn commit_up_to<T>(&mut self, id: u64) -> Result<(), crate::connector::ConnectorError>
    where
        S: Sink<T>,
    {
        while self.pending.first().is_some_and(|(c, _)| *c <= id) {
            let (_, c) = self.pending.remove(0);
            self.sink.commit(c)?;
        }
        Ok(())
    }
}

impl<T: Data, S: Sink<T>> Downstream<T> for SinkOp<S> {
    fn push(&mut self, batch: &mut Vec<Rec<T>>) {
        if !self.failed {
            self.env.metrics.add_out(batch.len());
            let r = self.sink.write(batch);
            self.check(r);
        }
        batch.clear();
    }
    fn watermark(&mut self, wm: Timestamp) {
        self.env.metrics.watermark.store(wm, std::sync::atomic::Ordering::Relaxed);
        // the sink sees the watermark only advance
        if !self.failed && wm > self.last_watermark {
            self.last_watermark = wm;
            let r = self.sink.on_watermark(wm);
            self.check(r);
        }
    }
    fn idle(&mut self, _idle: bool) {}
    fn processing_time(&mut self, _now: Timestamp) {}
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn flush(&mut self) {
        let r = self.sink.flush();
        self.check(r);
    }
    fn barrier(&mut self, b: &Barrier, snaps: &mut Vec<OperatorSnapshot>) {
        if self.failed {
            return;
        }
        if self.ended {
            // a finished task in a later checkpoint: its last output (pre-committed at
            // the end) belongs to this checkpoint and is committed when it completes
            for p in self.pending.iter_mut().filter(|p| p.0 == u64::MAX) {
                p.0 = b.checkpoint_id;
            }
        } else {
            let r = self.pre_commit(b.checkpoint_id);
            self.check(r);
        }
        let entries: Vec<&Vec<u8>> = self.pending.iter().map(|(_, c)| c).collect();
        snaps.push(OperatorSnapshot {
            uid: self.env.info.uid.to_string(),
            subtask: self.env.info.subtask,
            keyed: Vec::new(),
            operator: Some(postcard::to_allocvec(&entries).unwrap_or_default()),
            ..Default::default()
        });
    }
    fn checkpoint_complete(&mut self, id: u64) {
        if !self.failed {
            let r = self.commit_up_to(id);
            self.check(r);
        }
    }
    fn end(&mut self) {
        if self.failed {
            return;
        }
        let r = self.pre_commit(u64::MAX);
        self.check(r);
        self.ended = true;
        if self.env.snapshots.is_none() {
            // no checkpoints: nothing can replay this data, commit now
            let r = self.commit_up_to(u64::MAX);
            self.check(r);
        }
    }
}
