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
    run_one_on(query, parallelism, events, input, crate::state::StateBackend::Memory)
}

/// Runs `query` once with keyed state on `backend`.
pub fn run_one_on(query: &str, parallelism: u32, events: Option<u64>, input: Option<std::path::PathBuf>, backend: crate::state::StateBackend) -> Result<BenchResult, JobError> {
    let o = Overrides { parallelism: Some(parallelism), events, input, state_backend: Some(backend), ..Default::default() };
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
    println!("{:<6} {:>3} {:>13} {:>9.3} {:>13} {:>9.3} {:>16}", r.query, r.parallelism, thousands(r.events), r.wall_s, si(r.events_per_s()), r.cpu_s, si(r.events_per_core_s()));
}

/// `weir bench state`: checkpoint, restore and rescale-restore times for a given
/// amount of keyed state, on the heap or RocksDB backend, to any checkpoint storage.
pub mod state {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use crate::checkpoint::coordinator::{self, CheckpointSettings, CompletedCheckpoint, RestartStrategy, StopHandle};
    use crate::cli::thousands;
    use crate::connector::{ConnectorError, Source, SourceOutput, SourcePoll};
    use crate::error::JobError;
    use crate::exec::plan::JobConfig;
    use crate::operator::keyed::{KeyedContext, KeyedProcessFunction};
    use crate::state::{OpenContext, StateBackend, ValueState};
    use crate::stream::StreamEnv;
    use crate::time::WatermarkStrategy;

    const VALUE_BYTES: usize = 100;

    /// Emits keys `subtask, subtask+P, … < keys` once (unless restored), then, each
    /// time `round` grows, every 100th key again (1% changed); idles in between.
    struct Keys {
        next: u64,
        first: u64,
        stride: u64,
        keys: u64,
        done_round: u64,
        round: Arc<AtomicU64>,
        emitted: Arc<AtomicU64>,
        /// Rewrite every key again and again, without pause, until `round` grows; then finish.
        continuous: bool,
    }

    impl Source<(u64, u64)> for Keys {
        fn poll(&mut self, out: &mut SourceOutput<'_, (u64, u64)>) -> Result<SourcePoll, ConnectorError> {
            if self.continuous {
                if self.round.load(Ordering::Relaxed) > 0 {
                    return Ok(SourcePoll::Finished);
                }
                let mut n = 0;
                while out.remaining() > 0 {
                    if self.next >= self.keys {
                        self.next = self.first;
                        self.done_round += 1;
                    }
                    out.collect_at(0, (self.next, self.done_round + 1));
                    self.next += self.stride;
                    n += 1;
                }
                self.emitted.fetch_add(n, Ordering::Relaxed);
                return Ok(SourcePoll::Ready);
            }
            if self.next >= self.keys {
                if self.round.load(Ordering::SeqCst) > self.done_round {
                    self.done_round += 1;
                    self.next = self.first;
                } else {
                    return Ok(SourcePoll::Idle);
                }
            }
            // round 0 loads every key; later rounds change every 100th
            let step = if self.done_round == 0 { self.stride } else { self.stride * 100 };
            let mut n = 0;
            while out.remaining() > 0 && self.next < self.keys {
                out.collect_at(0, (self.next, self.done_round));
                self.next += step;
                n += 1;
            }
            self.emitted.fetch_add(n, Ordering::SeqCst);
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

    impl KeyedProcessFunction<u64, (u64, u64), ()> for Store {
        fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), JobError> {
            self.v = Some(ctx.value_state("payload")?);
            Ok(())
        }
        fn process(&mut self, (k, round): (u64, u64), ctx: &mut KeyedContext<'_, u64, ()>) {
            if let Some(v) = &self.v {
                v.update(ctx, vec![(k.wrapping_add(round) % 251) as u8; VALUE_BYTES]);
            }
        }
    }

    struct Phase {
        round: Arc<AtomicU64>,
        emitted: Arc<AtomicU64>,
        env: StreamEnv,
    }

    fn env(p: u32, keys: u64, backend: StateBackend, load: bool) -> Phase {
        env_with(p, keys, backend, load, false)
    }

    fn env_with(p: u32, keys: u64, backend: StateBackend, load: bool, continuous: bool) -> Phase {
        let round = Arc::new(AtomicU64::new(0));
        let emitted = Arc::new(AtomicU64::new(0));
        let env = StreamEnv::new(JobConfig { name: "state-bench".into(), parallelism: p, state_backend: backend, ..Default::default() });
        let (r, e) = (round.clone(), emitted.clone());
        env.source(
            "keys",
            move |c| {
                let first = c.subtask as u64;
                // a restored job does not load again: it starts with its keys emitted
                let next = if load { first } else { keys };
                let next = if continuous { first } else { next };
                Keys { next, first, stride: c.parallelism as u64, keys, done_round: 0, round: r.clone(), emitted: e.clone(), continuous }
            },
            WatermarkStrategy::none(),
        )
        .uid("keys")
        .key_by(|k: &(u64, u64)| k.0)
        .process(Store::default())
        .uid("store");
        Phase { round, emitted, env }
    }

    /// What one run measured.
    struct Measured {
        /// Start of the run until the job was running (restore included).
        started: Duration,
        checkpoints: Vec<CompletedCheckpoint>,
        savepoint: Option<CompletedCheckpoint>,
        loaded: Duration,
    }

    /// Runs at parallelism `p`: loads `keys` (unless restoring), checkpoints, then
    /// `changes` times changes 1% of the keys and checkpoints again; stops with a savepoint.
    fn measure(dir: &str, p: u32, keys: u64, backend: StateBackend, restore: Option<String>, changes: u32) -> Result<Measured, JobError> {
        let load = restore.is_none();
        let ph = env(p, keys, backend, load);
        let mut s = CheckpointSettings::new(dir.to_string());
        s.interval = Duration::from_secs(24 * 3600);
        s.timeout = Duration::from_secs(1800);
        s.restart = RestartStrategy::None;
        s.retain = 2;
        s.restore_from = restore;
        let stop = StopHandle::default();
        let (tx, rx) = crossbeam_channel::unbounded::<(Duration, CompletedCheckpoint)>();
        let t0 = Instant::now();
        let ctl = {
            let (stop, round, emitted) = (stop.clone(), ph.round.clone(), ph.emitted.clone());
            std::thread::spawn(move || -> Option<Duration> {
                let wait_emitted = |n: u64| {
                    while emitted.load(Ordering::SeqCst) < n {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                };
                let mut want = if load { keys } else { 0 };
                wait_emitted(want);
                let loaded = t0.elapsed();
                stop.checkpoint_now();
                rx.recv().ok()?;
                for _ in 0..changes {
                    round.fetch_add(1, Ordering::SeqCst);
                    want += keys.div_ceil(100);
                    wait_emitted(want.saturating_sub(p as u64));
                    stop.checkpoint_now();
                    rx.recv().ok()?;
                }
                stop.stop_with_savepoint();
                Some(loaded)
            })
        };
        let mut started = None;
        let report = coordinator::run(&ph.env, &s, &stop, |c| {
            if !c.savepoint {
                // the first checkpoint is triggered as soon as the job runs
                started.get_or_insert(t0.elapsed().saturating_sub(c.duration));
                let _ = tx.send((t0.elapsed(), c.clone()));
            }
        })?;
        let loaded = ctl.join().ok().flatten().unwrap_or_default();
        let checkpoints = report.checkpoints.into_iter().filter(|c| !c.savepoint).collect();
        Ok(Measured { started: started.unwrap_or_default(), checkpoints, savepoint: report.savepoint, loaded })
    }

    /// What [`throughput_while_checkpointing`] measured: records per second.
    struct Throughput {
        steady: f64,
        checkpointing: f64,
        checkpoints: usize,
    }

    /// Restored from `from`, rewrites every key without pause for `run`, checkpointing
    /// every `every`; compares the rate while a checkpoint runs (trigger to completion)
    /// with the rate while none does, from the records emitted sampled every 50 ms.
    fn throughput_while_checkpointing(dir: &str, p: u32, keys: u64, backend: StateBackend, from: &str, run: Duration, every: Duration) -> Result<Throughput, JobError> {
        let t0 = Instant::now();
        // the restore is not measured: the run starts when the sources emit
        let ph = env_with(p, keys, backend, false, true);
        let mut s = CheckpointSettings::new(dir.to_string());
        s.interval = every;
        s.timeout = Duration::from_secs(600);
        s.restart = RestartStrategy::None;
        s.retain = 2;
        s.restore_from = Some(from.to_string());
        let stop = StopHandle::default();
        let samples = Arc::new(std::sync::Mutex::new(Vec::<(Instant, u64)>::new()));
        let sampler = {
            let (emitted, samples, round) = (ph.emitted.clone(), samples.clone(), ph.round.clone());
            std::thread::spawn(move || {
                while emitted.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(600) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let start = Instant::now();
                while start.elapsed() < run {
                    if let Ok(mut v) = samples.lock() {
                        v.push((Instant::now(), emitted.load(Ordering::Relaxed)));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                // the sources finish: the job ends
                round.store(1, Ordering::SeqCst);
            })
        };
        let mut spans: Vec<(Instant, Instant)> = Vec::new();
        coordinator::run(&ph.env, &s, &stop, |c| {
            if !c.savepoint {
                let end = Instant::now();
                spans.push((end.checked_sub(c.duration).unwrap_or(end), end));
            }
        })?;
        let _ = sampler.join();
        let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
        let (mut busy, mut idle) = ((0u64, Duration::ZERO), (0u64, Duration::ZERO));
        for w in samples.windows(2) {
            let ((a, na), (b, nb)) = (w[0], w[1]);
            let during = spans.iter().any(|(s, e)| a < *e && b > *s);
            let acc = if during { &mut busy } else { &mut idle };
            acc.0 += nb - na;
            acc.1 += b - a;
        }
        let rate = |(n, d): (u64, Duration)| if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() };
        Ok(Throughput { steady: rate(idle), checkpointing: rate(busy), checkpoints: spans.len() })
    }

    fn secs(d: Duration) -> String {
        format!("{:.2} s", d.as_secs_f64())
    }

    pub fn run(megabytes: u64, dir: &str, backend: StateBackend) -> Result<(), JobError> {
        let keys = megabytes * 1_000_000 / (VALUE_BYTES as u64 + 24);
        println!("keyed state: {} keys x {VALUE_BYTES} B values (~{megabytes} MB), {backend} backend, checkpoints in {dir}", thousands(keys));
        let m = measure(&format!("{dir}/{backend}-p4"), 4, keys, backend, None, 1)?;
        let ckpt = |i: usize| m.checkpoints.get(i).ok_or_else(|| JobError::State(format!("checkpoint {i} did not complete")));
        println!("load {} keys at P=4: {}", thousands(keys), secs(m.loaded));
        let (full, incr) = (ckpt(0)?, ckpt(1)?);
        println!("full checkpoint at P=4:                      {:>9}, {:>15} bytes", secs(full.duration), thousands(full.bytes));
        let what = if backend == StateBackend::RocksDb { "incremental checkpoint, 1% of keys changed:" } else { "checkpoint after 1% of keys changed (full): " };
        println!("{what} {:>9}, {:>15} bytes", secs(incr.duration), thousands(incr.bytes));
        if backend == StateBackend::RocksDb {
            // every subtask's process uploads its own database files (subtask i = worker i
            // of a distributed job)
            for (sub, full_b) in &full.uploaded {
                let inc_b = incr.uploaded.get(sub).copied().unwrap_or(0);
                println!(
                    "  subtask {sub}: RocksDB files uploaded, full {:>15} bytes, incremental {:>13} bytes ({:.2}%)",
                    thousands(*full_b),
                    thousands(inc_b),
                    100.0 * inc_b as f64 / (*full_b).max(1) as f64
                );
            }
        }
        if let Some(sp) = &m.savepoint {
            println!("savepoint (canonical format):                {:>9}, {:>15} bytes", secs(sp.duration), thousands(sp.bytes));
        }
        let restore = |p: u32, from: &CompletedCheckpoint, tag: &str| -> Result<Measured, JobError> { measure(&format!("{dir}/{backend}-{tag}"), p, keys, backend, Some(from.url.clone()), 0) };
        let r = restore(4, incr, "r44")?;
        println!("restore 4 -> 4 from the checkpoint (download, rebuild, start): {}", secs(r.started));
        let r42 = restore(2, incr, "r42")?;
        println!("rescale-restore 4 -> 2 from the checkpoint:                    {}", secs(r42.started));
        let c2 = r42.checkpoints.first().ok_or_else(|| JobError::State("no checkpoint at P=2".into()))?;
        let r24 = restore(4, c2, "r24")?;
        println!("rescale-restore 2 -> 4 from a checkpoint:                      {}", secs(r24.started));
        let t = throughput_while_checkpointing(&format!("{dir}/{backend}-tput"), 4, keys, backend, &incr.url, Duration::from_secs(20), Duration::from_secs(2))?;
        println!(
            "throughput rewriting every key for 20 s, a checkpoint every 2 s ({} completed): {} records/s while checkpointing, {} otherwise ({:.0}%)",
            t.checkpoints,
            thousands(t.checkpointing as u64),
            thousands(t.steady as u64),
            100.0 * t.checkpointing / t.steady.max(1.0)
        );
        Ok(())
    }
}
