//! The `weir` binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use weir::cli::{self, Overrides, bench, progress, si, thousands};

/// The allocator of every thread: glibc's makes a thread that frees memory another
/// thread allocated (a record handed to the next task) wait on that arena's lock.
/// Built without transparent huge pages (`no_thp`): with them, each page mimalloc
/// purged and reused was faulted in again as a whole 2 MiB page, zeroed (SQL q7
/// spent 45% of its time in the kernel's `clear_page`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "weir", version, about = "Weir: stateful, event-time, exactly-once stream processing", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log filter (e.g. `info`, `weir=debug`); also RUST_LOG.
    #[arg(long, global = true, env = "WEIR_LOG", default_value = "warn")]
    log: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a job embedded in this process (no cluster needed).
    Run(RunArgs),
    /// Run a SQL script embedded in this process, print its streaming plan, or (without
    /// -f) open the interactive SQL shell.
    ///
    /// The script holds Flink-dialect statements: SET, CREATE TABLE ... WITH
    /// ('connector' = ...), CREATE VIEW, INSERT INTO (also in EXECUTE STATEMENT SET
    /// BEGIN ... END). `weir sql -f job.sql` is `weir run job.sql`; a job file with
    /// `job: sql` and `sqlFile:` (or `sql:`) runs the same under run, cluster and worker.
    Sql(SqlArgs),
    /// Run one worker of a distributed job (a pod of the job's StatefulSet).
    ///
    /// Identity and peers come from the environment the operator sets: WEIR_POD_NAME
    /// (ordinal = its suffix), WEIR_PARALLELISM, WEIR_PEERS, WEIR_CHECKPOINT_URL,
    /// WEIR_RESTORE_FROM, WEIR_JOB_ID; the job from /etc/weir/job.yaml (WEIR_JOB_FILE).
    ///
    /// The HTTP server starts first: a job that cannot be loaded is reported as FAILED
    /// on GET /v1/job and in the termination log (WEIR_TERMINATION_LOG, default
    /// /dev/termination-log), and the process serves until SIGTERM. A failing job is
    /// restarted with capped exponential backoff (WEIR_RESTART_ATTEMPTS, default
    /// unlimited); remote storage calls give up after WEIR_STORAGE_RETRY_TIMEOUT_MS
    /// (default 20000), failing that checkpoint, not the job.
    Worker(WorkerArgs),
    /// Run a job on a standalone cluster of worker processes on this machine.
    Cluster(ClusterArgs),
    /// List the built-in jobs.
    Jobs,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Savepoints and checkpoints.
    #[command(subcommand)]
    Savepoint(SavepointCmd),
}

#[derive(Args)]
struct WorkerArgs {
    /// A built-in job or a job file.
    #[arg(env = "WEIR_JOB_FILE", default_value = weir_api::JOB_FILE_PATH)]
    job: String,
    #[command(flatten)]
    opts: JobOpts,
    /// Checkpoint storage of this deployment (file://, s3://, gs://, az://).
    #[arg(long, env = "WEIR_CHECKPOINT_URL", value_name = "URL")]
    checkpoint_dir: Option<String>,
    /// Time between checkpoints in milliseconds.
    #[arg(long, env = "WEIR_CHECKPOINT_INTERVAL_MS", default_value_t = 10_000)]
    checkpoint_interval_ms: u64,
    /// Complete checkpoints to keep.
    #[arg(long, env = "WEIR_CHECKPOINT_RETAIN", default_value_t = 3)]
    retain: usize,
    /// Savepoint or checkpoint to start from (when this deployment has no checkpoint yet).
    #[arg(long, env = "WEIR_RESTORE_FROM", value_name = "URL")]
    restore: Option<String>,
    /// Restore even if the snapshot has state of operators this job no longer has.
    #[arg(long, env = "WEIR_ALLOW_NON_RESTORED_STATE")]
    allow_non_restored_state: bool,
    /// The deployment's id (fresh per deployment).
    #[arg(long, env = "WEIR_JOB_ID")]
    job_id: Option<String>,
    /// Port of the HTTP server (health, metrics, REST API on worker 0).
    #[arg(long, env = "WEIR_HTTP_PORT", default_value_t = weir_api::HTTP_PORT)]
    http_port: u16,
    /// Exit when the job has ended instead of serving its final status until terminated.
    #[arg(long, env = "WEIR_EXIT_ON_FINISH")]
    exit_on_finish: bool,
    /// Restarts after failures (without a completed checkpoint in between) before the
    /// job ends FAILED; default: keep trying (capped exponential backoff, 0.5 s to 60 s).
    #[arg(long, env = "WEIR_RESTART_ATTEMPTS", value_name = "N")]
    restart_attempts: Option<u32>,
    /// A checkpoint or savepoint not complete after this many milliseconds fails
    /// (the job keeps running).
    #[arg(long, env = "WEIR_CHECKPOINT_TIMEOUT_MS", default_value_t = 120_000)]
    checkpoint_timeout_ms: u64,
}

#[derive(Args)]
struct ClusterArgs {
    /// A built-in job (see `weir jobs`) or a job file (YAML).
    job: String,
    /// Worker processes (= the job's parallelism).
    #[arg(long, short = 'w', default_value_t = 2)]
    workers: u32,
    #[command(flatten)]
    opts: JobOpts,
    /// Checkpoint storage (file://, s3://, … or a local path); default: a folder under the system temp dir.
    #[arg(long, value_name = "URL")]
    checkpoint_dir: Option<String>,
    /// Time between checkpoints (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// Start from this savepoint or checkpoint.
    #[arg(long, value_name = "URL")]
    restore: Option<String>,
    /// HTTP port of worker 0 (the REST API); worker i uses this + i.
    #[arg(long, default_value_t = weir_api::HTTP_PORT)]
    rest_port: u16,
    /// Data port of worker 0; worker i uses this + i.
    #[arg(long, default_value_t = weir_api::DATA_PORT)]
    data_port: u16,
}

#[derive(Subcommand)]
enum SavepointCmd {
    /// Print what a savepoint or checkpoint holds: operators, parallelism, key groups, sizes.
    Inspect {
        /// URL of the snapshot directory (…/checkpoints/chk-7 or …/savepoints/sp-…).
        url: String,
    },
}

#[derive(Args, Clone, Default)]
struct CheckpointOpts {
    /// Take checkpoints to this URL (file://, s3://, gs://, az:// or a local path).
    #[arg(long, value_name = "URL")]
    checkpoint_dir: Option<String>,
    /// Time between checkpoints (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    retain: usize,
    /// Start from this savepoint or checkpoint (URL of its directory).
    #[arg(long, value_name = "URL")]
    restore: Option<String>,
    /// Restore even if the snapshot has state of operators this job no longer has.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Restarts after a failure before giving up.
    #[arg(long, default_value_t = 5)]
    restart_attempts: u32,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 10s or 500ms"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" | "min" => std::time::Duration::from_secs(n * 60),
        _ => return Err(format!("'{s}': unit must be ms, s or m")),
    })
}

#[derive(Args)]
struct RunArgs {
    /// A built-in job (see `weir jobs`) or a job file (YAML).
    job: String,
    #[command(flatten)]
    opts: JobOpts,
    #[command(flatten)]
    checkpoints: CheckpointOpts,
    /// No live progress line, only the summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct SqlArgs {
    /// The SQL script to run; without it, an interactive shell reads statements from
    /// the terminal (or standard input).
    #[arg(long, short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Print the plan of every INSERT INTO (operators, changelog mode, uids) and exit.
    #[arg(long)]
    explain: bool,
    /// Parallel subtasks per operator (default: the script's SET 'parallelism.default', else 1).
    #[arg(long, short)]
    parallelism: Option<u32>,
    /// Number of key groups (fixed for the job's lifetime; default 720).
    #[arg(long)]
    max_parallelism: Option<u32>,
    /// Where keyed state lives: memory (heap) or rocksdb (local disk, incremental checkpoints).
    #[arg(long, value_name = "memory|rocksdb")]
    state_backend: Option<weir::state::StateBackend>,
    #[command(flatten)]
    checkpoints: CheckpointOpts,
    /// No live progress line, only the summary.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Clone, Default)]
struct JobOpts {
    /// Parallel subtasks per operator.
    #[arg(long, short)]
    parallelism: Option<u32>,
    /// Number of key groups (fixed for the job's lifetime; default 720).
    #[arg(long)]
    max_parallelism: Option<u32>,
    /// Generate this many events, then finish.
    #[arg(long, conflicts_with = "input")]
    events: Option<u64>,
    /// Read events from a JSON-lines file (`-` for stdin).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Write results as JSON lines to this file (`-` for stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Limit the generator to this many events per second (wall clock).
    #[arg(long)]
    rate: Option<u64>,
    /// Event-time rate of the generator, events per second of event time.
    #[arg(long)]
    event_rate: Option<u64>,
    /// Where keyed state lives: memory (heap) or rocksdb (local disk, incremental checkpoints).
    #[arg(long, value_name = "memory|rocksdb")]
    state_backend: Option<weir::state::StateBackend>,
}

impl From<JobOpts> for Overrides {
    fn from(o: JobOpts) -> Self {
        Overrides {
            parallelism: o.parallelism,
            max_parallelism: o.max_parallelism,
            events: o.events,
            input: o.input,
            output: o.output,
            rate: o.rate,
            event_rate: o.event_rate,
            state_backend: o.state_backend,
        }
    }
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Nexmark queries at full speed into a blackhole sink.
    Nexmark {
        /// Queries to run (q0 q1 q2 q3 q4 q5 q7 q8; with --sql-only any of q0 … q22); default q0 … q8.
        #[arg(long = "query", short, value_delimiter = ',')]
        queries: Vec<String>,
        /// Events per run (generator).
        #[arg(long, default_value_t = 10_000_000, conflicts_with = "input")]
        events: u64,
        /// Parallelism(s) to measure.
        #[arg(long, short, value_delimiter = ',', default_value = "1")]
        parallelism: Vec<u32>,
        /// Read the events from a JSON-lines file instead of the generator.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where keyed state lives: memory or rocksdb.
        #[arg(long, default_value = "memory", value_name = "memory|rocksdb")]
        state_backend: weir::state::StateBackend,
        /// Also run each query as SQL (runtime/sql/nexmark/qN.sql, the Flink benchmark's
        /// text) on the same events, next to the built-in job; `--sql-only` for SQL alone.
        #[arg(long)]
        sql: bool,
        /// Run only the SQL queries (any of q0 … q22 that plans).
        #[arg(long, conflicts_with = "input")]
        sql_only: bool,
    },
    /// Checkpoint, restore and rescale-restore times for a given amount of keyed state.
    State {
        /// Megabytes of keyed state.
        #[arg(long, default_value_t = 1024)]
        megabytes: u64,
        /// Where the checkpoints go.
        #[arg(long, default_value = "weir-state-bench")]
        dir: String,
        /// State backend to measure: memory or rocksdb.
        #[arg(long, default_value = "memory", value_name = "memory|rocksdb")]
        backend: weir::state::StateBackend,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let result = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Sql(a) => sql(a),
        Cmd::Worker(a) => worker(a),
        Cmd::Cluster(a) => cluster(a),
        Cmd::Jobs => {
            for j in weir::jobs::builtins() {
                println!("{:<18} {}", j.name, j.description);
            }
            Ok(())
        }
        Cmd::Bench(BenchCmd::Nexmark { queries, events, parallelism, input, state_backend, sql, sql_only }) => {
            let sql = if sql_only { SqlBench::Only } else if sql { SqlBench::Also } else { SqlBench::No };
            bench_nexmark(queries, events, parallelism, input, state_backend, sql)
        }
        Cmd::Bench(BenchCmd::State { megabytes, dir, backend }) => bench::state::run(megabytes, &dir, backend),
        Cmd::Savepoint(SavepointCmd::Inspect { url }) => cli::inspect(&url),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: RunArgs) -> Result<(), weir::JobError> {
    let resolved = cli::resolve(&a.job, &a.opts.into())?;
    run_resolved(resolved, a.checkpoints, a.quiet)
}

/// `weir sql`: a script run embedded (as `weir run script.sql`), or its plan.
fn sql(a: SqlArgs) -> Result<(), weir::JobError> {
    let Some(file) = a.file else {
        if a.explain {
            return Err(weir::JobError::Invalid("--explain needs the script: weir sql -f job.sql --explain (in the shell: EXPLAIN SELECT ...;)".into()));
        }
        return weir_cli::shell::run(weir_cli::shell::ShellSettings {
            parallelism: a.parallelism,
            max_parallelism: a.max_parallelism.unwrap_or(weir_api::DEFAULT_MAX_PARALLELISM),
            state_backend: a.state_backend.unwrap_or_default(),
        });
    };
    let overrides = Overrides { parallelism: a.parallelism, max_parallelism: a.max_parallelism, state_backend: a.state_backend, ..Overrides::default() };
    let mut resolved = cli::resolve_sql_file(&file, &overrides)?;
    if a.explain {
        let cli::JobProgram::Sql(script) = &resolved.program else { unreachable!("resolved as SQL") };
        let script = script.clone();
        let (_, job) = weir_cli::job::build_sql(&mut resolved, &script)?;
        print!("{}", weir_cli::job::explain(&job));
        return Ok(());
    }
    run_resolved(resolved, a.checkpoints, a.quiet)
}

fn run_resolved(mut resolved: cli::ResolvedJob, checkpoints: CheckpointOpts, quiet: bool) -> Result<(), weir::JobError> {
    if let Some(dir) = checkpoints.checkpoint_dir.clone() {
        return run_checkpointed(resolved, dir, checkpoints);
    }
    if checkpoints.restore.is_some() {
        return Err(weir::JobError::Invalid("--restore needs --checkpoint-dir (where the restored job keeps checkpointing)".into()));
    }
    let env = weir_cli::job::build(&mut resolved)?;
    let label = format!("{} (p={})", resolved.config.name, resolved.config.parallelism);
    let cpu0 = cli::cpu_seconds();
    let t0 = Instant::now();
    let job = env.launch()?;
    progress::watch(&job, &label, !quiet);
    let t = progress::totals(&job);
    job.wait()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cli::cpu_seconds() - cpu0;
    let out = match &resolved.params.output {
        Some(p) if p.as_os_str() != "-" => format!(" -> {}", p.display()),
        _ => String::new(),
    };
    eprintln!(
        "{label}: finished in {wall:.2}s: {} events in ({}ev/s), {} results out{out}, cpu {cpu:.2}s",
        thousands(t.records_in),
        si(t.records_in as f64 / wall.max(1e-9)),
        thousands(t.records_out)
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum SqlBench {
    No,
    Also,
    Only,
}

fn bench_nexmark(queries: Vec<String>, events: u64, parallelism: Vec<u32>, input: Option<PathBuf>, backend: weir::state::StateBackend, sql: SqlBench) -> Result<(), weir::JobError> {
    let queries = if queries.is_empty() { weir::jobs::nexmark::QUERIES.iter().map(|s| s.to_string()).collect() } else { queries };
    if sql != SqlBench::No && input.is_some() {
        return Err(weir::JobError::Invalid("--sql measures generated events: it excludes --input".into()));
    }
    let bounded = if input.is_some() { None } else { Some(events) };
    bench::print_header();
    for q in &queries {
        for &p in &parallelism {
            if sql != SqlBench::Only {
                let r = bench::run_one_on(q, p, bounded, input.clone(), backend)?;
                bench::print_row(&r);
            }
            if sql != SqlBench::No {
                match weir_cli::job::bench_nexmark_sql(q, p, events) {
                    Ok(r) => bench::print_row(&r),
                    Err(e) => println!("{:<6} {p:>3} (SQL does not run: {e})", format!("{q}-sql")),
                }
            }
        }
    }
    Ok(())
}

fn run_checkpointed(mut resolved: cli::ResolvedJob, dir: String, c: CheckpointOpts) -> Result<(), weir::JobError> {
    use weir::checkpoint::coordinator::{self, CheckpointSettings, RestartStrategy, StopHandle};
    let env = weir_cli::job::build(&mut resolved)?;
    let mut settings = CheckpointSettings::new(dir);
    settings.interval = c.checkpoint_interval;
    settings.retain = c.retain;
    settings.restore_from = c.restore;
    settings.allow_non_restored_state = c.allow_non_restored_state;
    settings.restart = RestartStrategy::ExponentialBackoff {
        attempts: c.restart_attempts,
        initial: std::time::Duration::from_millis(500),
        max: std::time::Duration::from_secs(30),
    };
    settings.faults = cli::faults_from_env();
    let stop = StopHandle::default();
    let s = stop.clone();
    ctrlc::set_handler(move || {
        eprintln!("weir: stopping with a savepoint (Ctrl-C again to abort)…");
        if s.is_requested() {
            std::process::exit(130);
        }
        s.stop_with_savepoint();
    })
    .map_err(|e| weir::JobError::Invalid(format!("cannot install the signal handler: {e}")))?;
    let t0 = Instant::now();
    let report = coordinator::run(&env, &settings, &stop, |c| {
        if !c.savepoint {
            eprintln!("checkpoint {} complete: {} in {} ms -> {}", c.id, thousands(c.bytes), c.duration.as_millis(), c.url);
        }
    })?;
    eprintln!(
        "{}: finished in {:.2}s with {} checkpoints, {} restarts",
        resolved.config.name,
        t0.elapsed().as_secs_f64(),
        report.checkpoints.len(),
        report.restarts
    );
    if let Some(sp) = report.savepoint {
        println!("savepoint: {}", sp.url);
    }
    Ok(())
}

/// `weir worker`: one pod of a distributed job. The HTTP server starts first, so that
/// a job that cannot be loaded (bad job file, unknown job, bad environment) is reported
/// as `FAILED` through `/v1/job` and the termination log instead of crash-looping.
fn worker(a: WorkerArgs) -> Result<(), weir::JobError> {
    use weir::checkpoint::coordinator::StopHandle;
    use weir::cluster::WorkerServer;
    let shutdown = StopHandle::default();
    let s = shutdown.clone();
    ctrlc::set_handler(move || s.stop_with_savepoint()).map_err(|e| weir::JobError::Invalid(format!("cannot install the signal handler: {e}")))?;
    let env_var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    // what the board can say before the job is loaded
    let name = env_var(weir_api::env::JOB_NAME).unwrap_or_else(|| "unknown".into());
    let parallelism = env_var(weir_api::env::PARALLELISM).and_then(|p| p.parse().ok()).unwrap_or(0);
    let max_parallelism = env_var(weir_api::env::MAX_PARALLELISM).and_then(|p| p.parse().ok()).unwrap_or(weir_api::DEFAULT_MAX_PARALLELISM);
    let identity = weir::cluster::WorkerIdentity::from_env();
    // the REST API on worker 0, or anywhere when the identity itself is wrong
    let api = identity.as_ref().map_or(true, |i| i.ordinal == 0);
    let board = weir::rest::board::StatusBoard::new(&name, parallelism, max_parallelism);
    if let Some(id) = a.job_id.as_deref().filter(|j| !j.is_empty()) {
        board.set_job_id(id);
    }
    let server = WorkerServer::start(std::net::SocketAddr::from(([0, 0, 0, 0], a.http_port)), board, api)?;
    match load_worker(a, identity) {
        Ok((env, settings)) => weir::cluster::run_worker_on(&env, &settings, &shutdown, server),
        Err(e) => Err(server.fail(e, &shutdown)),
    }
}

/// Loads the job of a worker and its settings from the arguments and environment.
fn load_worker(
    a: WorkerArgs,
    identity: Result<weir::cluster::WorkerIdentity, weir::cluster::ClusterError>,
) -> Result<(weir::StreamEnv, weir::cluster::WorkerSettings), weir::JobError> {
    use weir::checkpoint::coordinator::{CheckpointSettings, RestartStrategy};
    use weir::cluster::WorkerSettings;
    let identity = identity.map_err(|e| weir::JobError::Invalid(e.to_string()))?;
    let mut overrides: Overrides = a.opts.into();
    if overrides.parallelism.is_some_and(|p| p != identity.workers) {
        return Err(weir::JobError::Invalid(format!("--parallelism must equal WEIR_PARALLELISM ({}) for a worker", identity.workers)));
    }
    overrides.parallelism = Some(identity.workers);
    if overrides.state_backend.is_none() {
        if let Ok(b) = std::env::var(weir_api::env::STATE_BACKEND) {
            overrides.state_backend = Some(b.parse().map_err(|e| weir::JobError::Invalid(format!("{}: {e}", weir_api::env::STATE_BACKEND)))?);
        }
    }
    if let Ok(m) = std::env::var(weir_api::env::MAX_PARALLELISM) {
        overrides.max_parallelism = Some(m.parse().map_err(|_| weir::JobError::Invalid(format!("{}={m} is not a number", weir_api::env::MAX_PARALLELISM)))?);
    }
    if !std::path::Path::new(&a.job).exists() && (a.job.contains('/') || a.job.ends_with(".yaml") || a.job.ends_with(".yml")) {
        return Err(weir::JobError::Invalid(format!("job file {} does not exist (WEIR_JOB_FILE; the operator mounts the job's ConfigMap at {})", a.job, weir_api::JOB_FILE_DIR)));
    }
    let mut resolved = cli::resolve(&a.job, &overrides)?;
    let env = weir_cli::job::build(&mut resolved)?;
    let storage = match a.checkpoint_dir {
        Some(d) => d,
        None => {
            let d = std::env::temp_dir().join(format!("weir-{}-checkpoints", identity.job_name));
            tracing::warn!(dir = %d.display(), "no WEIR_CHECKPOINT_URL: checkpoints go to a local folder and do not survive this machine");
            d.display().to_string()
        }
    };
    check_url(weir_api::env::CHECKPOINT_URL, &storage)?;
    let restore = a.restore.filter(|r| !r.is_empty());
    if let Some(r) = &restore {
        check_url(weir_api::env::RESTORE_FROM, r)?;
    }
    let mut checkpoints = CheckpointSettings::new(storage);
    checkpoints.interval = std::time::Duration::from_millis(a.checkpoint_interval_ms.max(10));
    checkpoints.retain = a.retain.max(1);
    checkpoints.restore_from = restore;
    checkpoints.allow_non_restored_state = a.allow_non_restored_state;
    checkpoints.timeout = std::time::Duration::from_millis(a.checkpoint_timeout_ms.max(100));
    checkpoints.restart = RestartStrategy::ExponentialBackoff {
        attempts: a.restart_attempts.unwrap_or(u32::MAX),
        initial: std::time::Duration::from_millis(500),
        max: std::time::Duration::from_secs(60),
    };
    let settings = WorkerSettings {
        identity,
        checkpoints,
        job_id: a.job_id.filter(|j| !j.is_empty()),
        http: std::net::SocketAddr::from(([0, 0, 0, 0], a.http_port)),
        exit_on_finish: a.exit_on_finish,
    };
    Ok((env, settings))
}

/// A storage URL from the environment must be one the runtime can open: a clear
/// error naming the variable otherwise.
fn check_url(var: &str, url: &str) -> Result<(), weir::JobError> {
    const SCHEMES: [&str; 7] = ["file", "s3", "s3a", "gs", "az", "abfs", "abfss"];
    if !url.contains("://") {
        return if std::path::Path::new(url).is_absolute() { Ok(()) } else { Err(weir::JobError::Invalid(format!("{var}={url}: not a URL (file://, s3://, gs://, az://) nor an absolute path"))) };
    }
    match url::Url::parse(url) {
        Ok(u) if SCHEMES.contains(&u.scheme()) => Ok(()),
        Ok(u) => Err(weir::JobError::Invalid(format!("{var}={url}: unknown scheme '{}' (use file://, s3://, gs:// or az://)", u.scheme()))),
        Err(e) => Err(weir::JobError::Invalid(format!("{var}={url}: not a valid URL: {e}"))),
    }
}

/// `weir cluster`: the workers of a job as processes on this machine.
fn cluster(a: ClusterArgs) -> Result<(), weir::JobError> {
    use weir::checkpoint::coordinator::StopHandle;
    use weir::cluster::supervisor::{self, ClusterSpec};
    if a.opts.parallelism.is_some_and(|p| p != a.workers) {
        return Err(weir::JobError::Invalid("a cluster's parallelism is its number of workers: use --workers instead of --parallelism".into()));
    }
    // resolve once here so that a bad job or option fails before any process starts
    let mut overrides: Overrides = a.opts.clone().into();
    overrides.parallelism = Some(a.workers);
    let mut resolved = cli::resolve(&a.job, &overrides)?;
    weir_cli::job::build(&mut resolved)?;
    let name: String = resolved.config.name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let mut args = vec![a.job.clone()];
    let o = &a.opts;
    let mut push = |flag: &str, v: Option<String>| {
        if let Some(v) = v {
            args.push(flag.to_string());
            args.push(v);
        }
    };
    push("--max-parallelism", o.max_parallelism.map(|v| v.to_string()));
    push("--events", o.events.map(|v| v.to_string()));
    push("--input", o.input.as_ref().map(|p| p.display().to_string()));
    push("--output", o.output.as_ref().map(|p| p.display().to_string()));
    push("--rate", o.rate.map(|v| v.to_string()));
    push("--event-rate", o.event_rate.map(|v| v.to_string()));
    push("--state-backend", o.state_backend.map(|v| v.to_string()));
    push("--checkpoint-interval-ms", Some(a.checkpoint_interval.as_millis().to_string()));
    let checkpoint_url = a.checkpoint_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("weir-cluster-{name}")).display().to_string());
    let spec = ClusterSpec {
        name,
        workers: a.workers,
        worker_args: args,
        data_port: a.data_port,
        rest_port: a.rest_port,
        checkpoint_url,
        restore_from: a.restore,
    };
    let stop = StopHandle::default();
    let s = stop.clone();
    ctrlc::set_handler(move || {
        if s.is_requested() {
            std::process::exit(130);
        }
        s.stop_with_savepoint();
    })
    .map_err(|e| weir::JobError::Invalid(format!("cannot install the signal handler: {e}")))?;
    supervisor::run(&spec, &stop)
}
