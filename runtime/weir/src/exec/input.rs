//! The loop of a task whose head reads channels: selects over its input channels,
//! tracks watermarks per channel, aligns checkpoint barriers, fires processing-time
//! timers and flushes output when it would otherwise wait.

use std::time::{Duration, Instant};

use crossbeam_channel::Select;

use super::{Barrier, BoxDown, Downstream, FLUSH_INTERVAL_MS, Msg, TaskCommand, TaskEnv};
use crate::exchange::InChannel;
use crate::record::{Rec, now_ms};
use crate::state::snapshot::OperatorSnapshot;
use crate::time::{MAX_WATERMARK, WatermarkTracker, WatermarkUpdate};

/// The head of a task: a one-input chain or a two-input operator.
/// `push` (from [`Downstream`]) receives input 1, `push2` input 2.
pub(crate) trait TwoInput<A, B>: Downstream<A> {
    fn push2(&mut self, batch: &mut Vec<Rec<B>>);
}

/// Adapts a one-input chain to the [`TwoInput`] loop (it has no second input).
pub(crate) struct OneInput<A>(pub BoxDown<A>);

impl<A: crate::Data> Downstream<A> for OneInput<A> {
    fn push(&mut self, batch: &mut Vec<Rec<A>>) {
        self.0.push(batch)
    }
    fn watermark(&mut self, wm: i64) {
        self.0.watermark(wm)
    }
    fn idle(&mut self, idle: bool) {
        self.0.idle(idle)
    }
    fn processing_time(&mut self, now: i64) {
        self.0.processing_time(now)
    }
    fn next_deadline(&self) -> Option<i64> {
        self.0.next_deadline()
    }
    fn flush(&mut self) {
        self.0.flush()
    }
    fn barrier(&mut self, b: &Barrier, s: &mut Vec<OperatorSnapshot>) {
        self.0.barrier(b, s)
    }
    fn checkpoint_complete(&mut self, id: u64) {
        self.0.checkpoint_complete(id)
    }
    fn end(&mut self) {
        self.0.end()
    }
}

impl<A: crate::Data> TwoInput<A, ()> for OneInput<A> {
    fn push2(&mut self, batch: &mut Vec<Rec<()>>) {
        batch.clear();
    }
}

/// A message off a channel: records, a control event, or a closed channel.
enum Received<T> {
    Data(Vec<Rec<T>>),
    Ctl(Ctl),
    Closed,
}

fn received<T>(r: Result<Msg<T>, crossbeam_channel::RecvError>) -> Received<T> {
    match r {
        Ok(Msg::Data(b)) => Received::Data(b),
        Ok(Msg::Watermark(w)) => Received::Ctl(Ctl::Watermark(w)),
        Ok(Msg::Idle(i)) => Received::Ctl(Ctl::Idle(i)),
        Ok(Msg::Barrier(b)) => Received::Ctl(Ctl::Barrier(b)),
        Ok(Msg::End) => Received::Ctl(Ctl::End),
        Err(_) => Received::Closed,
    }
}

#[inline]
fn on_data(env: &TaskEnv, n: usize) {
    env.metrics.add_in(n);
    env.check_fault();
}

enum Ctl {
    Watermark(i64),
    Idle(bool),
    Barrier(Barrier),
    End,
}

/// Barrier alignment of one checkpoint in progress.
struct Alignment {
    barrier: Barrier,
    blocked: Vec<bool>,
    remaining: usize,
}

/// Runs the task until all inputs ended (or the job is cancelled).
pub(crate) fn run<A: crate::Data, B: crate::Data>(
    env: TaskEnv,
    head: &mut dyn TwoInput<A, B>,
    in1: Vec<InChannel<A>>,
    in2: Vec<InChannel<B>>,
) {
    let n1 = in1.len();
    let total = n1 + in2.len();
    let mut tracker = WatermarkTracker::new(total);
    let mut ended = vec![false; total];
    let mut live = total;
    let mut align: Option<Alignment> = None;

    let mut sel = Select::new();
    // select operation index -> global channel index
    let mut ops: Vec<usize> = Vec::with_capacity(total);
    let mut op_of: Vec<usize> = vec![usize::MAX; total];
    for (i, r) in in1.iter().enumerate() {
        op_of[i] = sel.recv(&r.rx);
        ops.push(i);
    }
    for (j, r) in in2.iter().enumerate() {
        op_of[n1 + j] = sel.recv(&r.rx);
        ops.push(n1 + j);
    }
    // commands from the coordinator: a pseudo-channel after the inputs
    let cmd_ch = total;
    let cmds = env.commands.clone();
    let mut cmd_op = None;
    if let Some(c) = &cmds {
        let op = sel.recv(c);
        set_op(&mut ops, op, cmd_ch);
        cmd_op = Some(op);
    }
    let mut stopping = false;
    // the newest checkpoint this task reported, and the newest one the coordinator
    // triggered: a task whose inputs all ended before that barrier reached it reports
    // its final state for it instead (checkpoints continue after tasks finished)
    let mut reported = 0u64;
    let mut triggered: Option<Barrier> = None;
    let mut last_flush = Instant::now();
    let control = env.control.clone();

    while live > 0 {
        if control.is_cancelled() {
            return;
        }
        let oper = match sel.try_select() {
            Ok(op) => op,
            Err(_) => {
                // Input is momentarily empty. Flushing now would send tiny batches
                // whenever this task is faster than its producers; instead flush once
                // the buffered output is FLUSH_INTERVAL old (bounded latency).
                let flush_in = Duration::from_millis(FLUSH_INTERVAL_MS).saturating_sub(last_flush.elapsed());
                if flush_in.is_zero() {
                    head.flush();
                    last_flush = Instant::now();
                }
                let mut wait = if flush_in.is_zero() { Duration::from_millis(100) } else { flush_in };
                if let Some(d) = head.next_deadline() {
                    let now = now_ms();
                    if d <= now {
                        head.processing_time(now);
                        continue;
                    }
                    wait = wait.min(Duration::from_millis((d - now) as u64));
                }
                let idle_from = Instant::now();
                let r = sel.select_timeout(wait);
                env.metrics.add_idle(idle_from.elapsed());
                match r {
                    Ok(op) => op,
                    Err(_) => continue,
                }
            }
        };
        let ch = ops[oper.index()];
        if ch == cmd_ch {
            if let Some(c) = &cmds {
                match oper.recv(c) {
                    Ok(TaskCommand::Complete(id)) => head.checkpoint_complete(id),
                    Ok(TaskCommand::Abort(_)) => {}
                    Ok(TaskCommand::Trigger(b)) => {
                        if b.checkpoint_id > reported {
                            triggered = Some(b);
                        }
                    }
                    // the coordinator is gone: stop selecting on it (a closed channel
                    // is always ready and would make this loop spin)
                    Err(_) => {
                        if let Some(op) = cmd_op.take() {
                            sel.remove(op);
                        }
                    }
                }
            }
            continue;
        }
        // None: records were processed; Some(Ok(ctl)): a control event; Some(Err(())): closed
        let event: Option<Result<Ctl, ()>> = if ch < n1 {
            let r = received(oper.recv(&in1[ch].rx));
            in1[ch].taken();
            match r {
                Received::Data(mut b) => {
                    on_data(&env, b.len());
                    head.push(&mut b);
                    None
                }
                Received::Ctl(c) => Some(Ok(c)),
                Received::Closed => Some(Err(())),
            }
        } else {
            let r = received(oper.recv(&in2[ch - n1].rx));
            in2[ch - n1].taken();
            match r {
                Received::Data(mut b) => {
                    on_data(&env, b.len());
                    head.push2(&mut b);
                    None
                }
                Received::Ctl(c) => Some(Ok(c)),
                Received::Closed => Some(Err(())),
            }
        };
        let ctl = match event {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(())) => {
                if !control.is_cancelled() {
                    control.fail(format!("{}: an upstream task stopped without finishing", env.info.operator));
                }
                return;
            }
        };
        if let Some(ctl) = ctl {
            if stopping && matches!(ctl, Ctl::Watermark(_) | Ctl::Barrier(_)) {
                // the stop-with-savepoint failed and the sources resumed
                stopping = false;
            }
            let update = match ctl {
                Ctl::Watermark(w) => tracker.on_watermark(ch, w),
                Ctl::Idle(i) => tracker.on_idle(ch, i),
                Ctl::End => {
                    ended[ch] = true;
                    live -= 1;
                    sel.remove(op_of[ch]);
                    if let Some(a) = &mut align {
                        if !a.blocked[ch] {
                            a.blocked[ch] = true;
                            a.remaining -= 1;
                        }
                    }
                    tracker.on_end(ch)
                }
                Ctl::Barrier(b) => {
                    if align.as_ref().is_some_and(|a| a.barrier.checkpoint_id != b.checkpoint_id) {
                        // A newer barrier overtook an unfinished alignment: the old
                        // checkpoint was aborted upstream; unblock and start over.
                        let old = align.take().expect("alignment present");
                        tracing::warn!(task = %env.info.operator, old = old.barrier.checkpoint_id, new = b.checkpoint_id, "checkpoint alignment superseded");
                        for c in 0..total {
                            if old.blocked[c] && !ended[c] {
                                op_of[c] = if c < n1 { sel.recv(&in1[c].rx) } else { sel.recv(&in2[c - n1].rx) };
                                set_op(&mut ops, op_of[c], c);
                            }
                        }
                    }
                    let a = align.get_or_insert_with(|| Alignment {
                        barrier: b,
                        blocked: ended.clone(),
                        remaining: ended.iter().filter(|e| !**e).count(),
                    });
                    if !a.blocked[ch] {
                        a.blocked[ch] = true;
                        a.remaining -= 1;
                        sel.remove(op_of[ch]);
                    }
                    WatermarkUpdate::default()
                }
            };
            // after a stop-with-savepoint barrier only ends of input follow; they must
            // not advance the watermark (that would fire windows after the savepoint)
            if !stopping {
                apply(head, update);
            }
            // alignment complete?
            if align.as_ref().is_some_and(|a| a.remaining == 0) {
                let a = align.take().expect("alignment present");
                stopping |= a.barrier.stop;
                let mut snaps = Vec::new();
                head.barrier(&a.barrier, &mut snaps);
                env.report_snapshot(a.barrier, snaps);
                reported = reported.max(a.barrier.checkpoint_id);
                for ch in 0..total {
                    if !ended[ch] {
                        op_of[ch] = if ch < n1 { sel.recv(&in1[ch].rx) } else { sel.recv(&in2[ch - n1].rx) };
                        set_op(&mut ops, op_of[ch], ch);
                    }
                }
            }
        }
        if let Some(d) = head.next_deadline() {
            let now = now_ms();
            if d <= now {
                head.processing_time(now);
            }
        }
        if last_flush.elapsed() >= Duration::from_millis(FLUSH_INTERVAL_MS) {
            head.flush();
            last_flush = Instant::now();
        }
    }
    // stop-with-savepoint ends without the final watermark: the job resumes later
    if !stopping && tracker.current() < MAX_WATERMARK {
        head.watermark(MAX_WATERMARK);
    }
    head.end();
    env.metrics.finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let final_snapshot = |head: &mut dyn TwoInput<A, B>, b: Barrier, reported: &mut u64| {
        if b.checkpoint_id > *reported {
            let mut snaps = Vec::new();
            head.barrier(&b, &mut snaps);
            env.report_snapshot(b, snaps);
            *reported = b.checkpoint_id;
        }
    };
    if let Some(b) = triggered {
        final_snapshot(head, b, &mut reported);
    }
    if let Some(c) = &cmds {
        // until the coordinator is done with the job (it closes the channel)
        while let Ok(cmd) = c.recv() {
            match cmd {
                TaskCommand::Complete(id) => head.checkpoint_complete(id),
                TaskCommand::Trigger(b) => final_snapshot(head, b, &mut reported),
                TaskCommand::Abort(_) => {}
            }
        }
    }
}

fn set_op(ops: &mut Vec<usize>, op: usize, ch: usize) {
    if ops.len() <= op {
        ops.resize(op + 1, usize::MAX);
    }
    ops[op] = ch;
}

fn apply<A, B>(head: &mut dyn TwoInput<A, B>, up: WatermarkUpdate) {
    if let Some(false) = up.idle {
        head.idle(false);
    }
    if let Some(w) = up.advanced {
        head.watermark(w);
    }
    if let Some(true) = up.idle {
        head.idle(true);
    }
}
