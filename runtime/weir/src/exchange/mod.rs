//! The channels between tasks: in-process bounded queues, and streams over TCP to
//! tasks in other processes (`net`) with credit-based flow control.
//!
//! A producer holds one [`OutChannel`] per consumer subtask; a consumer one
//! [`InChannel`] per producer subtask. Either side may be local or remote; the
//! operators and the task loops do not care which.
//!
//! Flow control of a remote stream: the consumer grants the producer [`CREDITS`]
//! messages up front and one more each time its task takes a message off the stream.
//! A producer without credit blocks (backpressure), so memory per stream is bounded and
//! one slow stream never blocks the other streams multiplexed on the same connection.

pub(crate) mod frame;
pub(crate) mod net;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use crate::exec::{JobControl, Msg, TaskMetrics};
use crate::record::{Data, Rec};

/// Messages a remote consumer buffers per stream (its credit window).
pub(crate) const CREDITS: u32 = 16;

/// A blocked sender wakes this often (to count backpressure, notice cancellation).
const BLOCK_SLICE: Duration = Duration::from_millis(50);

/// Why a message could not be sent: the consumer is gone.
#[derive(Debug)]
pub(crate) struct Closed;

/// The sending end of one producer→consumer stream.
pub(crate) enum OutChannel<T> {
    Local(Sender<Msg<T>>),
    Remote(net::RemoteOut),
}

impl<T: Data> OutChannel<T> {
    /// Sends the records of `buf` (leaving it empty, ready for reuse), blocking while
    /// the consumer has no room; time spent blocked counts as backpressure.
    pub(crate) fn send_batch(&mut self, buf: &mut Vec<Rec<T>>, batch_size: usize, control: &JobControl, metrics: &TaskMetrics) -> Result<(), Closed> {
        match self {
            OutChannel::Local(_) => {
                let full = std::mem::replace(buf, Vec::with_capacity(batch_size));
                self.send(Msg::Data(full), control, metrics)
            }
            OutChannel::Remote(r) => {
                let res = r.send(&MsgRef::Data(buf.as_slice()), control, metrics);
                buf.clear();
                res
            }
        }
    }

    /// Sends a control message (or a batch already taken out of a buffer).
    pub(crate) fn send(&mut self, msg: Msg<T>, control: &JobControl, metrics: &TaskMetrics) -> Result<(), Closed> {
        match self {
            OutChannel::Local(tx) => match tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(mut msg)) => loop {
                    // blocked: count the wait as it goes, so a long block shows at once
                    let t = Instant::now();
                    let r = tx.send_timeout(msg, BLOCK_SLICE);
                    metrics.add_backpressure(t.elapsed());
                    match r {
                        Ok(()) => return Ok(()),
                        Err(SendTimeoutError::Timeout(m)) => msg = m,
                        Err(SendTimeoutError::Disconnected(_)) => return Err(Closed),
                    }
                },
                Err(TrySendError::Disconnected(_)) => Err(Closed),
            },
            OutChannel::Remote(r) => {
                let m = match &msg {
                    Msg::Data(b) => MsgRef::Data(b.as_slice()),
                    Msg::Watermark(w) => MsgRef::Watermark(*w),
                    Msg::Idle(i) => MsgRef::Idle(*i),
                    Msg::Barrier(b) => MsgRef::Barrier(*b),
                    Msg::End => MsgRef::End,
                };
                r.send(&m, control, metrics)
            }
        }
    }
}

/// The wire form of a [`Msg`], serialized by reference (variant order = `Msg`'s).
#[derive(serde::Serialize)]
pub(crate) enum MsgRef<'a, T> {
    Data(&'a [Rec<T>]),
    Watermark(i64),
    Idle(bool),
    Barrier(crate::exec::Barrier),
    End,
}

/// The receiving end of one producer→consumer stream.
pub(crate) struct InChannel<T> {
    pub rx: Receiver<Msg<T>>,
    /// For remote streams: gives the producer credit back for each message taken.
    pub credit: Option<net::CreditReturn>,
}

impl<T> InChannel<T> {
    pub(crate) fn local(rx: Receiver<Msg<T>>) -> Self {
        InChannel { rx, credit: None }
    }

    /// Call after taking one message off `rx`.
    #[inline]
    pub(crate) fn taken(&self) {
        if let Some(c) = &self.credit {
            c.give(1);
        }
    }
}

/// The credit a producer has on one remote stream.
pub(crate) struct Credits {
    avail: Mutex<u32>,
    cv: Condvar,
    closed: AtomicBool,
}

impl Credits {
    pub(crate) fn new(initial: u32) -> Self {
        Credits { avail: Mutex::new(initial), cv: Condvar::new(), closed: AtomicBool::new(false) }
    }

    /// Takes one credit, waiting for it (the wait counts as backpressure of
    /// `metrics`); `false` when the stream was closed or the job cancelled meanwhile.
    pub(crate) fn acquire(&self, control: &JobControl, metrics: &TaskMetrics) -> bool {
        let Ok(mut n) = self.avail.lock() else { return false };
        loop {
            if self.closed.load(Ordering::Relaxed) || control.is_cancelled() {
                return false;
            }
            if *n > 0 {
                *n -= 1;
                return true;
            }
            let t = Instant::now();
            n = match self.cv.wait_timeout(n, BLOCK_SLICE) {
                Ok((g, _)) => g,
                Err(_) => return false,
            };
            metrics.add_backpressure(t.elapsed());
        }
    }

    /// Takes one credit if there is one, without waiting.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        match self.avail.lock() {
            Ok(mut n) if *n > 0 && !self.closed.load(Ordering::Relaxed) => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Credits available right now (tests, metrics).
    #[cfg(test)]
    pub(crate) fn available(&self) -> u32 {
        self.avail.lock().map(|n| *n).unwrap_or(0)
    }

    pub(crate) fn grant(&self, n: u32) {
        if let Ok(mut a) = self.avail.lock() {
            *a += n;
        }
        self.cv.notify_all();
    }

    /// Wakes waiting producers for good (the connection is gone).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.cv.notify_all();
    }
}

/// The identity of a remote stream on the wire: edge, producer and consumer subtask.
#[inline]
pub(crate) fn stream_id(edge: usize, producer: u32, consumer: u32) -> u64 {
    ((edge as u64) << 40) | ((producer as u64) << 20) | consumer as u64
}

/// Which process runs which subtask: subtask `i` runs in worker `i mod workers`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub worker: u32,
    pub workers: u32,
}

impl Placement {
    /// Everything in this process.
    pub const EMBEDDED: Placement = Placement { worker: 0, workers: 1 };

    #[inline]
    pub fn worker_of(&self, subtask: u32) -> u32 {
        subtask % self.workers
    }
    #[inline]
    pub fn is_local(&self, subtask: u32) -> bool {
        self.worker_of(subtask) == self.worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn stream_ids_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for e in 0..4 {
            for a in 0..5 {
                for b in 0..5 {
                    assert!(seen.insert(stream_id(e, a, b)));
                }
            }
        }
    }

    #[test]
    fn placement_round_robins_subtasks() {
        let p = Placement { worker: 1, workers: 3 };
        assert!(p.is_local(1) && p.is_local(4) && !p.is_local(0) && !p.is_local(2));
        assert!((0..10).all(|s| Placement::EMBEDDED.is_local(s)));
    }

    #[test]
    fn credits_block_until_granted_and_wake_on_close() {
        let c = Arc::new(Credits::new(1));
        let ctl = JobControl::default();
        let m = TaskMetrics::new("t".into(), 0, true, false);
        assert!(c.acquire(&ctl, &m));
        assert_eq!(c.available(), 0);
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            c2.grant(2);
        });
        assert!(c.acquire(&ctl, &m));
        assert!(m.backpressured_ns.load(Ordering::Relaxed) > 0);
        t.join().unwrap();
        assert_eq!(c.available(), 1);
        c.close();
        assert!(!c.acquire(&ctl, &m), "a closed stream gives no credit");
    }
}
