//! Command-line front end: running jobs with live progress, benchmarks.

pub mod bench;
pub mod progress;

use std::path::{Path, PathBuf};

use crate::error::JobError;
use crate::exec::plan::JobConfig;
use crate::jobs::{self, BuiltinJob, JobFile, JobParams};
use crate::stream::StreamEnv;

/// A job ready to run: which built-in, with what settings.
pub struct ResolvedJob {
    pub job: BuiltinJob,
    pub config: JobConfig,
    pub params: JobParams,
}

/// Overrides from the command line (they win over the job file).
#[derive(Default, Clone, Debug)]
pub struct Overrides {
    pub parallelism: Option<u32>,
    pub max_parallelism: Option<u32>,
    pub events: Option<u64>,
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub rate: Option<u64>,
    pub event_rate: Option<u64>,
    /// Where keyed state lives (`--state-backend`).
    pub state_backend: Option<crate::state::StateBackend>,
}

fn looks_like_file(s: &str) -> bool {
    s.ends_with(".yaml") || s.ends_with(".yml") || s.contains('/')
}

/// Resolves `spec` (a built-in job name or a job file) and applies the overrides.
pub fn resolve(spec: &str, o: &Overrides) -> Result<ResolvedJob, JobError> {
    let file = if looks_like_file(spec) || Path::new(spec).is_file() {
        Some(JobFile::load(Path::new(spec))?)
    } else {
        None
    };
    let from_file = file.is_some();
    let (name, mut params, p, m, job_name, backend) = match file {
        Some(f) => (f.job.clone(), f.params, f.parallelism, f.max_parallelism, f.name.unwrap_or(f.job), f.state_backend),
        None => (spec.to_string(), JobParams::default(), None, None, spec.to_string(), None),
    };
    let job = jobs::find(&name).ok_or_else(|| {
        let names: Vec<&str> = jobs::builtins().iter().map(|j| j.name).collect();
        if from_file {
            JobError::Invalid(format!("job file {spec}: unknown job '{name}' (known: {})", names.join(", ")))
        } else {
            JobError::Invalid(format!("unknown job '{name}': not a built-in job ({}) nor a job file", names.join(", ")))
        }
    })?;
    if o.events.is_some() {
        params.events = o.events;
    }
    if o.input.is_some() {
        params.input = o.input.clone();
    }
    if o.output.is_some() {
        params.output = o.output.clone();
    }
    if o.rate.is_some() {
        params.rate = o.rate;
    }
    if o.event_rate.is_some() {
        params.event_rate = o.event_rate;
    }
    if params.events.is_some() && params.input.is_some() {
        return Err(JobError::Invalid("--events and --input exclude each other: the input file decides how many events there are".into()));
    }
    let max_parallelism = o.max_parallelism.or(m).unwrap_or(crate::keygroup::DEFAULT_MAX_PARALLELISM);
    let parallelism = o.parallelism.or(p).unwrap_or(1);
    if parallelism == 0 || parallelism > max_parallelism {
        return Err(JobError::Invalid(format!("parallelism {parallelism} must be between 1 and the max parallelism {max_parallelism}")));
    }
    Ok(ResolvedJob { job, config: JobConfig { name: job_name, parallelism, max_parallelism, state_backend: o.state_backend.or(backend).unwrap_or_default() }, params })
}

/// Builds the job graph of a resolved job.
pub fn build(r: &ResolvedJob) -> Result<StreamEnv, JobError> {
    let env = StreamEnv::new(r.config.clone());
    (r.job.build)(&env, &r.params)?;
    Ok(env)
}

/// CPU time (user + system) this process has used, in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1_234_567.0` → `1.23 M`.
pub fn si(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0} ")
    }
}

/// Test-only fault injection from `WEIR_FAULTS=op:n,op:n,…` (one fault per attempt).
pub fn faults_from_env() -> Vec<(String, u64)> {
    std::env::var("WEIR_FAULTS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|f| {
                    let (op, n) = f.rsplit_once(':')?;
                    Some((op.to_string(), n.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `weir savepoint inspect <url>`.
pub fn inspect(url: &str) -> Result<(), JobError> {
    let s = crate::checkpoint::CheckpointStorage::open(url).map_err(|e| JobError::State(e.to_string()))?;
    let m = s.read_metadata("", None).map_err(|e| JobError::State(e.to_string()))?;
    println!("{} {} of job '{}' ({}), max parallelism {}", if m.savepoint { "savepoint" } else { "checkpoint" }, m.checkpoint_id, m.job_name, m.job_id, m.max_parallelism);
    println!("taken {} UTC, {} bytes of state", weir_nexmark::time::format_timestamp(m.timestamp), thousands(m.state_size()));
    println!("{:<28} {:>11} {:>11} {:>14} {:>14}", "operator (uid)", "parallelism", "key groups", "keyed bytes", "operator bytes");
    for (uid, op) in &m.operators {
        let keyed: u64 = op.key_groups.values().map(|r| r.length).sum();
        let other: u64 = op.subtasks.values().map(|r| r.length).sum();
        println!("{uid:<28} {:>11} {:>11} {:>14} {:>14}", op.parallelism, op.key_groups.len(), thousands(keyed), thousands(other));
    }
    for (uid, op) in m.operators.iter().filter(|(_, o)| !o.databases.is_empty()) {
        for (subtask, db) in &op.databases {
            let shared: Vec<_> = db.files.iter().filter(|f| f.is_shared()).collect();
            let total: u64 = db.files.iter().map(|f| f.size).sum();
            println!(
                "{uid} subtask {subtask}: RocksDB key groups {}-{}, {} files, {} bytes ({} shared SST files)",
                db.key_groups[0],
                db.key_groups[1],
                db.files.len(),
                thousands(total),
                shared.len()
            );
        }
    }
    Ok(())
}
