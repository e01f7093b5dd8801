//! `weir bench nexmark`: runs Nexmark queries at full speed into a blackhole and
//! reports throughput per query and parallelism, per wall second and per CPU second.

use std::time::Instant;

use super::{Overrides, cpu_seconds, resolve, si, thousands};
use crate::error::JobError;

/// One measured run.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub query: String,
    pub parallelism: u32,
    pub events: u64,
    pub wall_s: f64,
    pub cpu_s: f64,
}

impl BenchResult {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.wall_s.max(1e-9)
    }
    /// Events per CPU second: what one fully busy core processes.
    pub fn events_per_core_s(&self) -> f64 {
        self.events as f64 / self.cpu_s.max(1e-9)
    }
}

/// Runs `query` (`q0`…`q8`) once.
pub fn run_one(query: &str, parallelism: u32, events: Option<u64>, input: Option<std::path::PathBuf>) -> Result<BenchResult, JobError> {
    let o = Overrides { parallelism: Some(parallelism), events, input, ..Default::default() };
    let r = resolve(&format!("nexmark-{query}"), &o)?;
    let env = super::build(&r)?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let job = env.launch()?;
    let metrics = job.metrics.clone();
    job.wait()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds() - cpu0;
    let events = metrics.iter().filter(|m| m.is_source).map(|m| m.records_in.load(std::sync::atomic::Ordering::Relaxed)).sum();
    Ok(BenchResult { query: query.to_string(), parallelism, events, wall_s, cpu_s })
}

pub fn print_header() {
    println!("{:<6} {:>3} {:>13} {:>9} {:>13} {:>9} {:>16}", "query", "P", "events", "wall s", "events/s", "cpu s", "events/s/core");
}

pub fn print_row(r: &BenchResult) {
    println!(
        "{:<6} {:>3} {:>13} {:>9.3} {:>13} {:>9.3} {:>16}",
        r.query,
        r.parallelism,
        thousands(r.events),
        r.wall_s,
        si(r.events_per_s()),
        r.cpu_s,
        si(r.events_per_core_s())
    );
}

/// `weir bench state`: checkpoint, restore and rescale-restore times for a given
/// amount of keyed state (heap backend, local checkpoint storage).
pub mod state {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use crate::checkpoint::coordinator::{self, CheckpointSettings, RestartStrategy, StopHandle};
    use crate::cli::thousands;
    use crate::connector::{ConnectorError, Source, SourceOutput, SourcePoll};
    use crate::error::JobError;
    use crate::exec::plan::JobConfig;
    use crate::operator::keyed::{KeyedContext, KeyedProcessFunction};
    use crate::state::{OpenContext, ValueState};
    use crate::stream::StreamEnv;
    use crate::time::WatermarkStrategy;

    const VALUE_BYTES: usize = 100;

    /// Emits keys `subtask, subtask+P, … < keys` once, then idles until stopped.
    struct Keys {
        next: u64,
        stride: u64,
        keys: u64,
        loaded: Arc<AtomicU64>,
    }

    impl Source<u64> for Keys {
        fn poll(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourcePoll, ConnectorError> {
            if self.next >= self.keys {
                return Ok(SourcePoll::Idle);
            }
            let mut n = 0;
            while out.remaining() > 0 && self.next < self.keys {
                out.collect_at(0, self.next);
                self.next += self.stride;
                n += 1;
            }
            self.loaded.fetch_add(n, Ordering::Relaxed);
            Ok(SourcePoll::Ready)
        }
        fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
            Ok(vec![])
        }
    }

    #[derive(Clone, Default)]
    struct Store {
        v: Option<ValueState<Vec<u8>>>,
    }

    impl KeyedProcessFunction<u64, u64, ()> for Store {
        fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), JobError> {
            self.v = Some(ctx.value_state("payload")?);
            Ok(())
        }
        fn process(&mut self, k: u64, ctx: &mut KeyedContext<'_, u64, ()>) {
            if let Some(v) = &self.v {
                v.update(ctx, vec![(k % 251) as u8; VALUE_BYTES]);
            }
        }
    }

    fn env(p: u32, keys: u64, loaded: Arc<AtomicU64>) -> StreamEnv {
        let env = StreamEnv::new(JobConfig { name: "state-bench".into(), parallelism: p, ..Default::default() });
        env.source("keys", move |c| Keys { next: c.subtask as u64, stride: c.parallelism as u64, keys, loaded: loaded.clone() }, WatermarkStrategy::none())
            .uid("keys")
            .key_by(|k: &u64| *k)
            .process(Store::default())
            .uid("store");
        env
    }

    /// Loads `keys` keys at parallelism `p`, stops with a savepoint; returns its URL, bytes and duration.
    fn load_and_savepoint(dir: &str, p: u32, keys: u64, restore: Option<String>) -> Result<(String, u64, Duration, Duration), JobError> {
        let loaded = Arc::new(AtomicU64::new(0));
        let env = env(p, keys, loaded.clone());
        let mut s = CheckpointSettings::new(dir.to_string());
        s.interval = Duration::from_secs(3600);
        s.timeout = Duration::from_secs(600);
        s.restart = RestartStrategy::None;
        s.restore_from = restore.clone();
        let stop = StopHandle::default();
        let st = stop.clone();
        let t0 = Instant::now();
        let started = Arc::new(AtomicU64::new(0));
        let watcher = {
            let loaded = loaded.clone();
            std::thread::spawn(move || {
                // restored state needs no loading: stop as soon as the job runs
                let target = if restore.is_some() { 0 } else { keys };
                while loaded.load(Ordering::Relaxed) < target {
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(100));
                st.stop_with_savepoint();
            })
        };
        let report = coordinator::run(&env, &s, &stop, |_| {})?;
        let _ = watcher.join();
        let _ = started;
        let sp = report.savepoint.ok_or_else(|| JobError::State("no savepoint was taken".into()))?;
        Ok((sp.url, sp.bytes, sp.duration, t0.elapsed()))
    }

    pub fn run(megabytes: u64, dir: &str) -> Result<(), JobError> {
        let keys = megabytes * 1_000_000 / (VALUE_BYTES as u64 + 24);
        println!("keyed state: {} keys x {VALUE_BYTES} B values (~{megabytes} MB), heap backend, checkpoints in {dir}", thousands(keys));
        let (sp4, bytes, dur, _) = load_and_savepoint(&format!("{dir}/p4"), 4, keys, None)?;
        println!("full checkpoint (savepoint) at P=4: {} in {:.2} s", thousands(bytes), dur.as_secs_f64());
        for p in [4u32, 2] {
            let (_, _, _, total) = load_and_savepoint(&format!("{dir}/r{p}"), p, keys, Some(sp4.clone()))?;
            println!("restore 4 -> {p} (load snapshot, rebuild state, run, savepoint again): {:.2} s", total.as_secs_f64());
        }
        let (sp2, _, _, _) = load_and_savepoint(&format!("{dir}/p2"), 2, keys, None)?;
        let (_, _, _, total) = load_and_savepoint(&format!("{dir}/r24"), 4, keys, Some(sp2))?;
        println!("restore 2 -> 4 (load snapshot, rebuild state, run, savepoint again): {:.2} s", total.as_secs_f64());
        Ok(())
    }
}
