//! Checkpoints after tasks finished: a source subtask that owns no split finishes at
//! once, and the job still checkpoints, stops with a savepoint and restores from it
//! with every record delivered exactly once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weir::checkpoint::coordinator::{self, CheckpointSettings, RestartStrategy, StopHandle};
use weir::connector::files::{ExactlyOnceFileSink, read_committed};
use weir::connector::{ConnectorError, Source, SourceOutput, SourcePoll};
use weir::{JobConfig, KeyedContext, StreamEnv, WatermarkStrategy};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-finished-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Numbers `0..end` from ONE split (initially subtask 0's), `per_poll` per
/// millisecond or so: every other subtask owns no split and finishes at once.
struct OneSplit {
    next: Option<u64>,
    end: u64,
    per_poll: u64,
}

impl Source<u64> for OneSplit {
    fn poll(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourcePoll, ConnectorError> {
        let Some(n) = self.next.as_mut() else { return Ok(SourcePoll::Finished) };
        if *n >= self.end {
            return Ok(SourcePoll::Finished);
        }
        for _ in 0..self.per_poll {
            if *n >= self.end {
                break;
            }
            out.collect(*n);
            *n += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
        Ok(SourcePoll::Ready)
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.next.iter().map(|n| n.to_le_bytes().to_vec()).collect())
    }
    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.next = match splits.first() {
            Some(b) => Some(u64::from_le_bytes(b.as_slice().try_into().map_err(|_| ConnectorError::Other("bad split".into()))?)),
            None => None,
        };
        Ok(())
    }
}

fn job(p: u32, end: u64, out: &Path) -> StreamEnv {
    let env = StreamEnv::new(JobConfig { name: "one-split".into(), parallelism: p, ..Default::default() });
    let out = out.to_path_buf();
    env.source("numbers", move |c| OneSplit { next: (c.subtask == 0).then_some(0), end, per_poll: 20 }, WatermarkStrategy::none())
        .uid("numbers")
        .key_by(|n: &u64| n % 7)
        .process(|n: u64, ctx: &mut KeyedContext<'_, u64, u64>| ctx.emit(n))
        .uid("pass")
        .sink("out", move |_| ExactlyOnceFileSink::new(&out));
    env
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s.timeout = Duration::from_secs(20);
    s.restart = RestartStrategy::None;
    s
}

/// Runs `env` until `n` checkpoints completed, then stops it with a savepoint.
fn run_and_stop_after(env: &StreamEnv, s: &CheckpointSettings, n: usize) -> coordinator::RunReport {
    let stop = StopHandle::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (st, d) = (stop.clone(), done.clone());
    let report = coordinator::run(env, s, &stop, move |c| {
        if !c.savepoint && d.fetch_add(1, Ordering::SeqCst) + 1 == n {
            st.stop_with_savepoint();
        }
    })
    .expect("the job runs");
    assert!(done.load(Ordering::SeqCst) >= n, "checkpoints completed: {}", done.load(Ordering::SeqCst));
    report
}

#[test]
fn a_subtask_without_a_split_does_not_block_checkpoints() {
    let end = 40_000;
    let dir = tempdir("one-split");
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    // P=3: subtasks 1 and 2 of the source finish at once
    let report = run_and_stop_after(&job(3, end, &out), &settings(&ckpt), 3);
    let sp = report.savepoint.expect("stopped with a savepoint");
    let partial = read_committed(&out).unwrap().len() as u64;
    assert!(partial > 0 && partial < end, "stopped mid-way: {partial} of {end}");
    // restore at P=2 (the split goes to subtask 0 again) and run to the end
    let mut s = settings(&ckpt);
    s.restore_from = Some(sp.url);
    let report = coordinator::run(&job(2, end, &out), &s, &StopHandle::default(), |_| {}).expect("the restored job finishes");
    assert!(report.savepoint.is_none());
    let mut got: Vec<u64> = read_committed(&out).unwrap().iter().map(|l| l.parse().unwrap()).collect();
    got.sort();
    assert_eq!(got.len() as u64, end, "nothing lost, nothing duplicated");
    assert!(got.iter().enumerate().all(|(i, &n)| n == i as u64));
}
