//! Command-line front end: running jobs with live progress, benchmarks.

pub mod bench;
pub mod progress;

use std::path::{Path, PathBuf};

use crate::error::JobError;
use crate::exec::plan::JobConfig;
use crate::jobs::{self, BuiltinJob, JobFile, JobParams};

use crate::stream::StreamEnv;

/// A job ready to run: what it runs, with what settings.
pub struct ResolvedJob {
    pub program: JobProgram,
    pub config: JobConfig,
    pub params: JobParams,
    /// The parallelism was given (flag or job file), not defaulted: a SQL script's
    /// `SET 'parallelism.default'` applies only when it was not.
    pub parallelism_given: bool,
    /// The name was given by a job file's `name:`.
    pub name_given: bool,
}

/// What a job runs.
pub enum JobProgram {
    /// A job that ships with the runtime.
    Builtin(BuiltinJob),
    /// A SQL script; the `weir` binary compiles it (crate `weir-sql`, kept out of the engine).
    Sql(SqlScript),
}

/// A SQL job's script and where it came from.
#[derive(Clone, Debug)]
pub struct SqlScript {
    pub text: String,
    /// For errors: the script's path, or `<job file> (sql:)` for an inline script.
    pub origin: String,
}

/// The job name a job file uses for SQL scripts.
pub const SQL_JOB: &str = "sql";

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
    s.ends_with(".yaml") || s.ends_with(".yml") || s.ends_with(".sql") || s.contains('/')
}

fn read_script(path: &Path, what: &str) -> Result<String, JobError> {
    std::fs::read_to_string(path).map_err(|e| JobError::Invalid(format!("cannot read the SQL script {} ({what}): {e}", path.display())))
}

/// What a job spec names, before the command line's overrides.
struct Named {
    program: JobProgram,
    params: JobParams,
    parallelism: Option<u32>,
    max_parallelism: Option<u32>,
    name: String,
    name_given: bool,
    state_backend: Option<crate::state::StateBackend>,
}

/// Resolves `spec` (a built-in job name, a job file or a `.sql` script) and applies the overrides.
pub fn resolve(spec: &str, o: &Overrides) -> Result<ResolvedJob, JobError> {
    let path = Path::new(spec);
    let is_file = looks_like_file(spec) || path.is_file();
    let named = if is_file && spec.ends_with(".sql") {
        sql_file(path)?
    } else if is_file {
        let f = JobFile::load(path)?;
        let program = program_of(&f, path)?;
        let name_given = f.name.is_some();
        Named { program, params: f.params, parallelism: f.parallelism, max_parallelism: f.max_parallelism, name: f.name.unwrap_or(f.job), name_given, state_backend: f.state_backend }
    } else {
        let job = jobs::find(spec).ok_or_else(|| JobError::Invalid(format!("unknown job '{spec}': not a built-in job ({}) nor a job file", builtin_names())))?;
        Named { program: JobProgram::Builtin(job), params: JobParams::default(), parallelism: None, max_parallelism: None, name: spec.to_string(), name_given: false, state_backend: None }
    };
    finish(named, o)
}

/// Resolves the SQL script at `path` (whatever its name) as a job named after the file.
pub fn resolve_sql_file(path: &Path, o: &Overrides) -> Result<ResolvedJob, JobError> {
    finish(sql_file(path)?, o)
}

fn sql_file(path: &Path) -> Result<Named, JobError> {
    let text = read_script(path, "given on the command line")?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| SQL_JOB.into());
    let program = JobProgram::Sql(SqlScript { text, origin: path.display().to_string() });
    Ok(Named { program, params: JobParams::default(), parallelism: None, max_parallelism: None, name, name_given: false, state_backend: None })
}

fn finish(named: Named, o: &Overrides) -> Result<ResolvedJob, JobError> {
    let Named { program, mut params, parallelism: p, max_parallelism: m, name: job_name, name_given, state_backend: backend } = named;
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
    if let JobProgram::Sql(s) = &program {
        let given: Vec<&str> = [
            ("events", params.events.is_some()),
            ("input", params.input.is_some()),
            ("output", params.output.is_some()),
            ("rate", params.rate.is_some()),
            ("event-rate", params.event_rate.is_some()),
            ("params.extra", !params.extra.is_empty()),
        ]
        .into_iter()
        .filter_map(|(n, g)| g.then_some(n))
        .collect();
        if !given.is_empty() {
            return Err(JobError::Invalid(format!(
                "{}: {} do not apply to a SQL job: its CREATE TABLE ... WITH (...) statements say what it reads and writes",
                s.origin,
                given.join(", ")
            )));
        }
    }
    if params.events.is_some() && params.input.is_some() {
        return Err(JobError::Invalid("--events and --input exclude each other: the input file decides how many events there are".into()));
    }
    let max_parallelism = o.max_parallelism.or(m).unwrap_or(crate::keygroup::DEFAULT_MAX_PARALLELISM);
    let parallelism_given = o.parallelism.or(p).is_some();
    let parallelism = o.parallelism.or(p).unwrap_or(1);
    if parallelism == 0 || parallelism > max_parallelism {
        return Err(JobError::Invalid(format!("parallelism {parallelism} must be between 1 and the max parallelism {max_parallelism}")));
    }
    Ok(ResolvedJob {
        program,
        config: JobConfig { name: job_name, parallelism, max_parallelism, state_backend: o.state_backend.or(backend).unwrap_or_default() },
        params,
        parallelism_given,
        name_given,
    })
}

fn builtin_names() -> String {
    jobs::builtins().iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
}

/// What the job file at `path` runs: a built-in job, or `job: sql` with `sql:` or `sqlFile:`.
fn program_of(f: &JobFile, path: &Path) -> Result<JobProgram, JobError> {
    let at = path.display();
    if f.job != SQL_JOB {
        if f.sql.is_some() || f.sql_file.is_some() {
            return Err(JobError::Invalid(format!("job file {at}: sql and sqlFile belong to 'job: sql', not to 'job: {}'", f.job)));
        }
        return jobs::find(&f.job)
            .map(JobProgram::Builtin)
            .ok_or_else(|| JobError::Invalid(format!("job file {at}: unknown job '{}' (known: {}, {SQL_JOB})", f.job, builtin_names())));
    }
    match (&f.sql, &f.sql_file) {
        (Some(text), None) => Ok(JobProgram::Sql(SqlScript { text: text.clone(), origin: format!("{at} (sql:)") })),
        (None, Some(file)) => {
            let file = if file.is_relative() { path.parent().unwrap_or(Path::new(".")).join(file) } else { file.clone() };
            let text = read_script(&file, &format!("sqlFile of job file {at}"))?;
            Ok(JobProgram::Sql(SqlScript { text, origin: file.display().to_string() }))
        }
        (Some(_), Some(_)) => Err(JobError::Invalid(format!("job file {at}: give the script either inline (sql:) or as a file (sqlFile:), not both"))),
        (None, None) => Err(JobError::Invalid(format!("job file {at}: 'job: sql' needs the script: sql: <statements> or sqlFile: <path>"))),
    }
}

/// Builds the job graph of a resolved built-in job. SQL jobs are compiled by the
/// `weir` binary (crate `weir-cli`), which plans them with `weir-sql`.
pub fn build(r: &ResolvedJob) -> Result<StreamEnv, JobError> {
    match &r.program {
        JobProgram::Builtin(job) => {
            let env = StreamEnv::new(r.config.clone());
            (job.build)(&env, &r.params)?;
            Ok(env)
        }
        JobProgram::Sql(s) => Err(JobError::Invalid(format!("{}: SQL jobs are compiled by the weir binary (weir-sql), not by this program", s.origin))),
    }
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
