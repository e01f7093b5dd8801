//! The loop of a source task: polls the source, assigns timestamps, generates
//! watermarks, marks the source idle, and ends with the final watermark.

use std::time::{Duration, Instant};

use super::{BATCH_SIZE, BoxDown, FLUSH_INTERVAL_MS, TaskCommand, TaskEnv};
use crate::state::snapshot::OperatorSnapshot;
use crate::connector::{Source, SourceContext, SourceOutput, SourcePoll};
use crate::record::{Rec, now_ms};
use crate::time::{MAX_WATERMARK, WatermarkGenerator, WatermarkStrategy};

pub(crate) fn run<T: crate::Data>(env: TaskEnv, mut source: Box<dyn Source<T>>, strategy: WatermarkStrategy<T>, mut head: BoxDown<T>) {
    let ctx = SourceContext { subtask: env.info.subtask, parallelism: env.info.parallelism };
    // restored with fewer splits than subtasks, this one got none: while it has
    // nothing to read it is idle at once (it must not hold back the watermark)
    let mut owns_no_split = false;
    if let Some(r) = &env.restore {
        if let Some(splits) = r.operator(&env.info.uid, env.info.subtask, env.info.parallelism, source.redistribution()) {
            let any = r.operator(&env.info.uid, 0, 1, crate::checkpoint::restore::Redistribution::Union).is_some_and(|all| !all.is_empty());
            owns_no_split = splits.is_empty() && any;
            if let Err(e) = source.restore(splits) {
                env.control.fail(format!("{} (subtask {}): restoring its position: {e}", env.info.operator, env.info.subtask));
                return;
            }
        }
    }
    if let Err(e) = source.open(&ctx) {
        env.control.fail(format!("{} (subtask {}): {e}", env.info.operator, env.info.subtask));
        return;
    }
    let mut buf: Vec<Rec<T>> = Vec::with_capacity(BATCH_SIZE);
    let mut wmgen = WatermarkGenerator::new(strategy.out_of_orderness_ms);
    let extract = strategy.has_event_time();
    let mut last_wm = Instant::now();
    let mut last_flush = Instant::now();
    let mut idle_since: Option<Instant> = None;
    let mut marked_idle = false;
    let mut emitted_wm = i64::MIN;
    let mut stopped = false;
    // after a stop-with-savepoint barrier the source pauses until that savepoint
    // completes (then it ends) or fails (then it resumes: the job keeps running)
    let mut paused: Option<u64> = None;
    loop {
        if env.control.is_cancelled() {
            return;
        }
        if let Some(cmds) = &env.commands {
            while let Ok(cmd) = cmds.try_recv() {
                match cmd {
                    TaskCommand::Trigger(b) => {
                        if !snapshot(&env, source.as_mut(), head.as_mut(), b) {
                            return;
                        }
                        if b.stop {
                            paused = Some(b.checkpoint_id);
                        }
                    }
                    TaskCommand::Complete(id) => {
                        if let Err(e) = source.checkpoint_complete(id) {
                            env.control.fail(format!("{} (subtask {}): checkpoint {id} complete: {e}", env.info.operator, env.info.subtask));
                            return;
                        }
                        head.checkpoint_complete(id);
                        if paused.is_some_and(|p| id >= p) {
                            stopped = true;
                        }
                    }
                    TaskCommand::Abort(id) => {
                        if paused == Some(id) {
                            tracing::info!(task = %env.info.operator, subtask = env.info.subtask, checkpoint = id, "the stop-with-savepoint failed; resuming");
                            paused = None;
                        }
                    }
                }
            }
        }
        if stopped {
            break;
        }
        if paused.is_some() {
            head.flush();
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let (status, explicit_wm) = {
            let mut out = SourceOutput { buf: &mut buf, limit: BATCH_SIZE, watermark: None };
            let st = source.poll(&mut out);
            (st, out.watermark)
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                env.control.fail(format!("{} (subtask {}): {e}", env.info.operator, env.info.subtask));
                return;
            }
        };
        if !buf.is_empty() {
            if marked_idle {
                marked_idle = false;
                head.idle(false);
            }
            idle_since = None;
            if extract {
                for r in buf.iter_mut() {
                    r.ts = strategy.timestamp_of(&r.value);
                    wmgen.observe(r.ts);
                }
            } else if strategy.generate {
                for r in buf.iter() {
                    wmgen.observe(r.ts);
                }
            }
            env.metrics.add_in(buf.len());
            env.check_fault();
            head.push(&mut buf);
        }
        if let Some(wm) = explicit_wm {
            if wm > emitted_wm {
                emitted_wm = wm;
                head.watermark(wm);
                env.metrics.watermark.store(wm, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if strategy.generate && last_wm.elapsed() >= strategy.interval {
            last_wm = Instant::now();
            if let Some(wm) = wmgen.poll().filter(|w| *w > emitted_wm) {
                emitted_wm = wm;
                head.watermark(wm);
                env.metrics.watermark.store(wm, std::sync::atomic::Ordering::Relaxed);
            }
        }
        match status {
            SourcePoll::Ready => {}
            SourcePoll::Finished => break,
            SourcePoll::Idle => {
                head.flush();
                last_flush = Instant::now();
                let since = *idle_since.get_or_insert_with(Instant::now);
                let timed_out = strategy.idle_timeout.is_some_and(|t| since.elapsed() >= t);
                if !marked_idle && (timed_out || owns_no_split) {
                    marked_idle = true;
                    head.idle(true);
                }
                if let Some(d) = head.next_deadline() {
                    let now = now_ms();
                    if d <= now {
                        head.processing_time(now);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if last_flush.elapsed() >= Duration::from_millis(FLUSH_INTERVAL_MS) {
            head.flush();
            last_flush = Instant::now();
            if let Some(d) = head.next_deadline() {
                let now = now_ms();
                if d <= now {
                    head.processing_time(now);
                }
            }
        }
    }
    if !stopped {
        head.watermark(MAX_WATERMARK);
    }
    head.end();
    env.metrics.finished.store(true, std::sync::atomic::Ordering::Relaxed);
    // a sink chained to this source may still have a checkpoint to commit, and the
    // other tasks keep checkpointing: this task's part of those is its final state
    if let Some(cmds) = &env.commands {
        // until the coordinator is done with the job (it closes the channel)
        while let Ok(cmd) = cmds.recv() {
            match cmd {
                TaskCommand::Complete(id) => {
                    if let Err(e) = source.checkpoint_complete(id) {
                        env.control.fail(format!("{} (subtask {}): checkpoint {id} complete: {e}", env.info.operator, env.info.subtask));
                        return;
                    }
                    head.checkpoint_complete(id)
                }
                TaskCommand::Trigger(b) => {
                    if !snapshot(&env, source.as_mut(), head.as_mut(), b) {
                        return;
                    }
                }
                TaskCommand::Abort(_) => {}
            }
        }
    }
}

/// Snapshots the source's splits and the chain for barrier `b` (forwarding the barrier
/// unless the task has finished) and reports it. False when the job failed.
fn snapshot<T: crate::Data>(env: &TaskEnv, source: &mut dyn Source<T>, head: &mut dyn super::Downstream<T>, b: super::Barrier) -> bool {
    let mut snaps = Vec::new();
    match source.snapshot_for(b.checkpoint_id) {
        Ok(splits) => snaps.push(OperatorSnapshot {
            uid: env.info.uid.to_string(),
            subtask: env.info.subtask,
            keyed: Vec::new(),
            operator: Some(postcard::to_allocvec(&splits).unwrap_or_default()),
            ..Default::default()
        }),
        Err(e) => {
            env.control.fail(format!("{} (subtask {}): snapshot: {e}", env.info.operator, env.info.subtask));
            return false;
        }
    }
    head.barrier(&b, &mut snaps);
    env.report_snapshot(b, snaps);
    true
}
