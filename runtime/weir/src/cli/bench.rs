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
