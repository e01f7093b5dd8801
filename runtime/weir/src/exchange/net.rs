//! Streams between processes: one TCP connection per pair of workers, multiplexing
//! every producer→consumer stream between them plus the control protocol.
//!
//! Per connection a writer thread drains the queue of frames for that peer (flushing
//! when the queue runs dry, sending heartbeats when idle) and a reader thread decodes
//! incoming frames straight into the consumers' queues. The reader never blocks on a
//! consumer: credits guarantee there is room. Connection loss and protocol errors are
//! reported as [`NetEvent::Lost`]; the worker then restarts the job.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded, unbounded};
use serde::Serialize;

use super::{CREDITS, Closed, Credits, InChannel, MsgRef, Placement, frame};
use crate::exec::{JobControl, Msg, TaskMetrics};
use crate::record::Data;

pub(crate) type Frame = Vec<u8>;

/// A peer that sends nothing for this long is considered dead.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// An idle connection sends a heartbeat this often.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Bytes on the connection to one peer (metrics).
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub sent: std::sync::atomic::AtomicU64,
    pub received: std::sync::atomic::AtomicU64,
}

/// The sending end of a stream to a consumer in another process.
pub(crate) struct RemoteOut {
    stream: u64,
    queue: Sender<Frame>,
    credits: Arc<Credits>,
}

impl RemoteOut {
    pub(crate) fn send<T: Serialize>(&mut self, msg: &MsgRef<'_, T>, control: &JobControl, metrics: &TaskMetrics) -> Result<(), Closed> {
        if !self.credits.try_acquire() && !self.credits.acquire(control, metrics) {
            return Err(Closed);
        }
        let f = frame::start(self.stream, 4096);
        let f = match postcard::to_extend(msg, f) {
            Ok(f) => f,
            Err(e) => {
                control.fail(format!("a record cannot be serialized for the network: {e}"));
                return Err(Closed);
            }
        };
        self.queue.send(frame::finish(f)).map_err(|_| Closed)
    }
}

/// Gives a remote producer credit back as its messages are consumed.
pub(crate) struct CreditReturn {
    stream: u64,
    queue: Sender<Frame>,
}

impl CreditReturn {
    #[inline]
    pub(crate) fn give(&self, n: u32) {
        let _ = self.queue.send(frame::credit(self.stream, n));
    }
}

/// Decodes the frames of one inbound stream into its consumer's queue.
trait Deliver: Send + Sync {
    fn deliver(&self, payload: &[u8]) -> Result<(), String>;
}

struct Deliverer<T> {
    tx: Sender<Msg<T>>,
}

impl<T: Data> Deliver for Deliverer<T> {
    fn deliver(&self, payload: &[u8]) -> Result<(), String> {
        let msg: Msg<T> = postcard::from_bytes(payload).map_err(|e| format!("undecodable message: {e}"))?;
        match self.tx.try_send(msg) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => Ok(()),
            Err(TrySendError::Full(_)) => Err("the peer sent beyond its credit".into()),
        }
    }
}

/// Collects, while a job is being built, the remote ends of its streams.
pub(crate) struct NetBuilder {
    pub placement: Placement,
    queues: Vec<(Sender<Frame>, Receiver<Frame>)>,
    inbound: HashMap<u64, Box<dyn Deliver>>,
    credits: HashMap<u64, Arc<Credits>>,
}

impl NetBuilder {
    pub(crate) fn new(placement: Placement) -> Self {
        NetBuilder { placement, queues: (0..placement.workers).map(|_| unbounded()).collect(), inbound: HashMap::new(), credits: HashMap::new() }
    }

    /// The queue of frames to `worker` (for control messages).
    pub(crate) fn queue(&self, worker: u32) -> Sender<Frame> {
        self.queues[worker as usize].0.clone()
    }

    /// The sending end of `stream`, whose consumer runs in `worker`.
    pub(crate) fn remote_out(&mut self, stream: u64, worker: u32) -> RemoteOut {
        let credits = Arc::new(Credits::new(CREDITS));
        self.credits.insert(stream, credits.clone());
        RemoteOut { stream, queue: self.queue(worker), credits }
    }

    /// The receiving end of `stream`, whose producer runs in `worker`.
    pub(crate) fn remote_in<T: Data>(&mut self, stream: u64, worker: u32) -> InChannel<T> {
        let (tx, rx) = bounded(CREDITS as usize);
        self.inbound.insert(stream, Box::new(Deliverer { tx }));
        InChannel { rx, credit: Some(CreditReturn { stream, queue: self.queue(worker) }) }
    }

    /// Starts a reader and a writer thread per peer connection (`conns[w]` for every
    /// other worker `w`); events (control messages, lost peers) go to `events`.
    pub(crate) fn start(self, conns: Vec<Option<TcpStream>>, events: Sender<NetEvent>) -> std::io::Result<Network> {
        let inbound = Arc::new(self.inbound);
        let credits = Arc::new(self.credits);
        let mut sockets = Vec::new();
        let mut threads = Vec::new();
        let mut queues = Vec::new();
        let mut counters = Vec::new();
        for (w, ((tx, rx), conn)) in self.queues.into_iter().zip(conns).enumerate() {
            queues.push(tx);
            let Some(conn) = conn else { continue };
            let count = Arc::new(PeerCounters::default());
            counters.push((w as u32, count.clone()));
            conn.set_nodelay(true)?;
            conn.set_read_timeout(Some(PEER_TIMEOUT))?;
            let reader = conn.try_clone()?;
            sockets.push(conn.try_clone()?);
            let (ev, inb, cr, c) = (events.clone(), inbound.clone(), credits.clone(), count.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("weir-net-read-{w}"))
                    .spawn(move || read_loop(w as u32, reader, &inb, &cr, &ev, &c))?,
            );
            let ev = events.clone();
            threads.push(std::thread::Builder::new().name(format!("weir-net-write-{w}")).spawn(move || write_loop(w as u32, conn, rx, &ev, &count))?);
        }
        Ok(Network { sockets, credits, queues, threads, counters })
    }
}

/// What the connections report to the worker.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// A control frame's payload from worker `from`.
    Control { from: u32, payload: Vec<u8> },
    /// The connection to `peer` is gone (or broke the protocol).
    Lost { peer: u32, reason: String },
}

fn read_loop(
    peer: u32,
    conn: TcpStream,
    inbound: &HashMap<u64, Box<dyn Deliver>>,
    credits: &HashMap<u64, Arc<Credits>>,
    events: &Sender<NetEvent>,
    count: &PeerCounters,
) {
    let mut r = BufReader::with_capacity(256 << 10, conn);
    let mut buf = Vec::new();
    let reason = loop {
        let stream = match frame::read(&mut r, &mut buf) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break "connection closed".to_string(),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                break format!("no message for {}s", PEER_TIMEOUT.as_secs())
            }
            Err(e) => break e.to_string(),
        };
        count.received.fetch_add(buf.len() as u64 + 12, std::sync::atomic::Ordering::Relaxed);
        match stream {
            frame::HEARTBEAT => {}
            frame::CREDIT => match frame::parse_credit(&buf).and_then(|(s, n)| Some((credits.get(&s)?, n))) {
                Some((c, n)) => c.grant(n),
                None => break "credit for an unknown stream".into(),
            },
            frame::CONTROL => {
                if events.send(NetEvent::Control { from: peer, payload: std::mem::take(&mut buf) }).is_err() {
                    return;
                }
            }
            s => match inbound.get(&s) {
                Some(d) => {
                    if let Err(e) = d.deliver(&buf) {
                        break format!("stream {s:#x}: {e}");
                    }
                }
                None => break format!("a frame for unknown stream {s:#x}"),
            },
        }
    };
    let _ = events.send(NetEvent::Lost { peer, reason });
}

fn write_loop(peer: u32, conn: TcpStream, rx: Receiver<Frame>, events: &Sender<NetEvent>, count: &PeerCounters) {
    let mut w = BufWriter::with_capacity(256 << 10, conn);
    let heartbeat = frame::encode(frame::HEARTBEAT, &[]);
    let result: std::io::Result<()> = (|| loop {
        match rx.recv_timeout(HEARTBEAT_EVERY) {
            Ok(f) => {
                let mut n = f.len();
                frame::write(&mut w, &f)?;
                while let Ok(f) = rx.try_recv() {
                    n += f.len();
                    frame::write(&mut w, &f)?;
                }
                w.flush()?;
                count.sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {
                frame::write(&mut w, &heartbeat)?;
                w.flush()?;
            }
            Err(RecvTimeoutError::Disconnected) => {
                w.flush()?;
                return Ok(());
            }
        }
    })();
    if let Err(e) = result {
        let _ = events.send(NetEvent::Lost { peer, reason: format!("sending: {e}") });
    }
}

/// The running connections of one job attempt.
pub(crate) struct Network {
    sockets: Vec<TcpStream>,
    credits: Arc<HashMap<u64, Arc<Credits>>>,
    queues: Vec<Sender<Frame>>,
    threads: Vec<JoinHandle<()>>,
    counters: Vec<(u32, Arc<PeerCounters>)>,
}

impl Network {
    /// Byte counters per peer.
    pub(crate) fn counters(&self) -> Vec<(u32, Arc<PeerCounters>)> {
        self.counters.clone()
    }

    /// Queues a control message for `worker`.
    pub(crate) fn send_control(&self, worker: u32, payload: &[u8]) {
        let _ = self.queues[worker as usize].send(frame::encode(frame::CONTROL, payload));
    }

    /// Closes every connection and wakes producers waiting for credit. Threads end
    /// once the tasks holding queue ends are gone.
    pub(crate) fn shutdown(self) {
        for c in self.credits.values() {
            c.close();
        }
        for s in &self.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(self.queues);
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Waits (up to `limit`) until every queued frame was handed to the OS, then
    /// closes the connections (a clean end of the job).
    pub(crate) fn close_gracefully(self, limit: Duration) {
        let t = Instant::now();
        while t.elapsed() < limit && self.queues.iter().any(|q| !q.is_empty()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{OutChannel, stream_id};
    use crate::record::Rec;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Two "workers" in one process, connected by a real loopback TCP connection.
    fn pair() -> (NetBuilder, NetBuilder, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let w0 = NetBuilder::new(Placement { worker: 0, workers: 2 });
        let w1 = NetBuilder::new(Placement { worker: 1, workers: 2 });
        (w0, w1, a, b)
    }

    #[test]
    fn a_consumer_that_stops_taking_blocks_its_producer_after_its_credit() {
        let (mut w0, mut w1, a, b) = pair();
        let s = stream_id(0, 0, 1);
        let mut out = OutChannel::<u64>::Remote(w0.remote_out(s, 1));
        let inc = w1.remote_in::<u64>(s, 0);
        let (ev0, _e0) = unbounded();
        let (ev1, _e1) = unbounded();
        let n0 = w0.start(vec![None, Some(a)], ev0).unwrap();
        let n1 = w1.start(vec![Some(b), None], ev1).unwrap();

        let sent = Arc::new(AtomicU64::new(0));
        let control = Arc::new(JobControl::default());
        let metrics = Arc::new(TaskMetrics::new("producer".into(), 0, true, false));
        let (s2, c2, m2) = (sent.clone(), control.clone(), metrics.clone());
        let producer = std::thread::spawn(move || {
            for i in 0..100u64 {
                let mut batch: Vec<Rec<u64>> = (0..1000).map(|j| Rec::new(0, i * 1000 + j)).collect();
                if out.send_batch(&mut batch, 1024, &c2, &m2).is_err() {
                    return;
                }
                s2.fetch_add(1, Ordering::SeqCst);
            }
            let _ = out.send(Msg::End, &c2, &m2);
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(sent.load(Ordering::SeqCst), CREDITS as u64, "the producer stops after its credit");
        assert_eq!(inc.rx.len(), CREDITS as usize, "the consumer buffers no more than its credit");
        assert!(metrics.backpressured_ns.load(Ordering::Relaxed) > 100_000_000, "the wait counts as backpressure");

        // taking messages gives credit back; everything arrives in order
        let mut next = 0u64;
        loop {
            let m = inc.rx.recv_timeout(Duration::from_secs(5)).expect("a message");
            inc.taken();
            match m {
                Msg::Data(b) => {
                    for r in b {
                        assert_eq!(r.value, next);
                        next += 1;
                    }
                }
                Msg::End => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(next, 100_000);
        producer.join().unwrap();
        drop(inc);
        n0.shutdown();
        n1.shutdown();
    }

    #[test]
    fn a_lost_peer_is_reported_and_wakes_blocked_producers() {
        let (mut w0, mut w1, a, b) = pair();
        let s = stream_id(0, 0, 1);
        let mut out = OutChannel::<u64>::Remote(w0.remote_out(s, 1));
        let _inc = w1.remote_in::<u64>(s, 0);
        let (ev0, e0) = unbounded();
        let (ev1, _e1) = unbounded();
        let n0 = w0.start(vec![None, Some(a)], ev0).unwrap();
        let n1 = w1.start(vec![Some(b), None], ev1).unwrap();
        let control = Arc::new(JobControl::default());
        let metrics = Arc::new(TaskMetrics::new("producer".into(), 0, true, false));
        let c2 = control.clone();
        let producer = std::thread::spawn(move || {
            let mut sent = 0;
            loop {
                let mut batch = vec![Rec::new(0, 1u64)];
                if out.send_batch(&mut batch, 1024, &c2, &metrics).is_err() {
                    return sent;
                }
                sent += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        n1.shutdown(); // the consumer's process goes away
        match e0.recv_timeout(Duration::from_secs(5)).expect("an event") {
            NetEvent::Lost { peer, .. } => assert_eq!(peer, 1),
            other => panic!("unexpected {other:?}"),
        }
        n0.shutdown(); // the worker tears the attempt down: the blocked producer wakes
        assert_eq!(producer.join().unwrap(), CREDITS, "it sent its credit, then stopped");
    }
}
