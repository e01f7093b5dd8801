//! The sending side of an exchange between tasks, and the in-chain fan-out.

use std::sync::Arc;

use super::{Barrier, BoxDown, Downstream, JobControl, Msg, TaskMetrics, BATCH_SIZE};
use crate::exchange::OutChannel;
use crate::keygroup::Key;
use crate::record::{Data, Rec, Timestamp};
use crate::state::snapshot::OperatorSnapshot;

/// Chooses the consumer subtask(s) of each record.
pub(crate) trait Partitioner<T>: Send {
    /// The channel index for `rec`, or `None` to send it to every channel.
    fn route(&mut self, rec: &Rec<T>) -> Option<usize>;
}

/// One consumer only (forward edges).
pub(crate) struct ToOne;
impl<T> Partitioner<T> for ToOne {
    #[inline]
    fn route(&mut self, _rec: &Rec<T>) -> Option<usize> {
        Some(0)
    }
}

/// By key group of the record's key.
pub(crate) struct ByKeyGroup<KF> {
    pub key_fn: KF,
    pub max_parallelism: u32,
    pub table: Vec<u16>,
}
impl<T, K: Key, KF: Fn(&T) -> K + Send> Partitioner<T> for ByKeyGroup<KF> {
    #[inline]
    fn route(&mut self, rec: &Rec<T>) -> Option<usize> {
        let kg = crate::keygroup::key_group(&(self.key_fn)(&rec.value), self.max_parallelism);
        Some(self.table[kg as usize] as usize)
    }
}

/// Round robin.
pub(crate) struct RoundRobin {
    pub next: usize,
    pub n: usize,
}
impl<T> Partitioner<T> for RoundRobin {
    #[inline]
    fn route(&mut self, _rec: &Rec<T>) -> Option<usize> {
        let i = self.next;
        self.next += 1;
        if self.next == self.n {
            self.next = 0;
        }
        Some(i)
    }
}

/// Every consumer.
pub(crate) struct ToAll;
impl<T> Partitioner<T> for ToAll {
    #[inline]
    fn route(&mut self, _rec: &Rec<T>) -> Option<usize> {
        None
    }
}

/// Buffers records per consumer channel and sends full batches.
pub(crate) struct ExchangeOut<T, P> {
    part: P,
    senders: Vec<OutChannel<T>>,
    bufs: Vec<Vec<Rec<T>>>,
    control: Arc<JobControl>,
    metrics: Arc<TaskMetrics>,
    /// End of input was sent: the consumers read nothing more from these channels
    /// (a finished task still snapshots for later checkpoints, but sends nothing).
    ended: bool,
}

impl<T: Data, P: Partitioner<T>> ExchangeOut<T, P> {
    pub(crate) fn new(part: P, senders: Vec<OutChannel<T>>, control: Arc<JobControl>, metrics: Arc<TaskMetrics>) -> Self {
        let bufs = senders.iter().map(|_| Vec::with_capacity(BATCH_SIZE)).collect();
        ExchangeOut { part, senders, bufs, control, metrics, ended: false }
    }

    fn closed(&self) {
        if !self.control.is_cancelled() {
            self.control.fail("a downstream task stopped unexpectedly".into());
        }
    }

    fn send(&mut self, i: usize, msg: Msg<T>) {
        if self.senders[i].send(msg, &self.control, &self.metrics).is_err() {
            self.closed();
        }
    }

    fn send_batch(&mut self, i: usize) {
        if self.bufs[i].is_empty() {
            return;
        }
        self.metrics.add_out(self.bufs[i].len());
        if self.senders[i].send_batch(&mut self.bufs[i], BATCH_SIZE, &self.control, &self.metrics).is_err() {
            self.closed();
        }
    }

    fn broadcast(&mut self, make: impl Fn() -> Msg<T>) {
        if self.ended {
            return;
        }
        self.flush();
        for i in 0..self.senders.len() {
            self.send(i, make());
        }
    }
}

impl<T: Data, P: Partitioner<T>> Downstream<T> for ExchangeOut<T, P> {
    fn push(&mut self, batch: &mut Vec<Rec<T>>) {
        for rec in batch.drain(..) {
            match self.part.route(&rec) {
                Some(i) => {
                    self.bufs[i].push(rec);
                    if self.bufs[i].len() >= BATCH_SIZE {
                        self.send_batch(i);
                    }
                }
                None => {
                    let n = self.bufs.len();
                    for i in 0..n {
                        self.bufs[i].push(rec.clone());
                        if self.bufs[i].len() >= BATCH_SIZE {
                            self.send_batch(i);
                        }
                    }
                }
            }
        }
    }
    fn watermark(&mut self, wm: Timestamp) {
        self.metrics.watermark.store(wm, std::sync::atomic::Ordering::Relaxed);
        self.broadcast(|| Msg::Watermark(wm));
    }
    fn idle(&mut self, idle: bool) {
        self.broadcast(|| Msg::Idle(idle));
    }
    fn processing_time(&mut self, _now: Timestamp) {}
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn flush(&mut self) {
        for i in 0..self.bufs.len() {
            self.send_batch(i);
        }
    }
    fn barrier(&mut self, barrier: &Barrier, _snaps: &mut Vec<OperatorSnapshot>) {
        let b = *barrier;
        self.broadcast(|| Msg::Barrier(b));
    }
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) {}
    fn end(&mut self) {
        self.broadcast(|| Msg::End);
        self.ended = true;
    }
}

/// Sends each batch to several downstream consumers (a stream used more than once).
pub(crate) struct Fanout<T> {
    outs: Vec<BoxDown<T>>,
    scratch: Vec<Rec<T>>,
}

impl<T: Data> Fanout<T> {
    pub(crate) fn new(outs: Vec<BoxDown<T>>) -> Self {
        Fanout { outs, scratch: Vec::new() }
    }
}

impl<T: Data> Downstream<T> for Fanout<T> {
    fn push(&mut self, batch: &mut Vec<Rec<T>>) {
        let last = self.outs.len() - 1;
        for o in &mut self.outs[..last] {
            self.scratch.extend(batch.iter().cloned());
            o.push(&mut self.scratch);
            self.scratch.clear();
        }
        self.outs[last].push(batch);
    }
    fn watermark(&mut self, wm: Timestamp) {
        self.outs.iter_mut().for_each(|o| o.watermark(wm));
    }
    fn idle(&mut self, idle: bool) {
        self.outs.iter_mut().for_each(|o| o.idle(idle));
    }
    fn processing_time(&mut self, now: Timestamp) {
        self.outs.iter_mut().for_each(|o| o.processing_time(now));
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        self.outs.iter().filter_map(|o| o.next_deadline()).min()
    }
    fn flush(&mut self) {
        self.outs.iter_mut().for_each(|o| o.flush());
    }
    fn barrier(&mut self, barrier: &Barrier, snaps: &mut Vec<OperatorSnapshot>) {
        self.outs.iter_mut().for_each(|o| o.barrier(barrier, snaps));
    }
    fn checkpoint_complete(&mut self, id: u64) {
        self.outs.iter_mut().for_each(|o| o.checkpoint_complete(id));
    }
    fn end(&mut self) {
        self.outs.iter_mut().for_each(|o| o.end());
    }
}

/// Output of an operator nobody consumes.
pub(crate) struct Discard;
impl<T: Data> Downstream<T> for Discard {
    fn push(&mut self, batch: &mut Vec<Rec<T>>) {
        batch.clear();
    }
    fn watermark(&mut self, _wm: Timestamp) {}
    fn idle(&mut self, _idle: bool) {}
    fn processing_time(&mut self, _now: Timestamp) {}
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn flush(&mut self) {}
    fn barrier(&mut self, _b: &Barrier, _s: &mut Vec<OperatorSnapshot>) {}
    fn checkpoint_complete(&mut self, _id: u64) {}
    fn end(&mut self) {}
}

/// Combines the outputs of one port into a single downstream.
pub(crate) fn combine<T: Data>(mut outs: Vec<BoxDown<T>>) -> BoxDown<T> {
    match outs.len() {
        0 => Box::new(Discard),
        1 => outs.pop().expect("one output"),
        _ => Box::new(Fanout::new(outs)),
    }
}
