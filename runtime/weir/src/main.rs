//! The `weir` binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use weir::cli::{self, Overrides, bench, progress, si, thousands};

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
    /// List the built-in jobs.
    Jobs,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Args)]
struct RunArgs {
    /// A built-in job (see `weir jobs`) or a job file (YAML).
    job: String,
    #[command(flatten)]
    opts: JobOpts,
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
        }
    }
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Nexmark queries at full speed into a blackhole sink.
    Nexmark {
        /// Queries to run (q0 q1 q2 q3 q4 q5 q7 q8); default all.
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Jobs => {
            for j in weir::jobs::builtins() {
                println!("{:<18} {}", j.name, j.description);
            }
            Ok(())
        }
        Cmd::Bench(BenchCmd::Nexmark { queries, events, parallelism, input }) => bench_nexmark(queries, events, parallelism, input),
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
    let env = cli::build(&resolved)?;
    let label = format!("{} (p={})", resolved.config.name, resolved.config.parallelism);
    let cpu0 = cli::cpu_seconds();
    let t0 = Instant::now();
    let job = env.launch()?;
    progress::watch(&job, &label, !a.quiet);
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

fn bench_nexmark(queries: Vec<String>, events: u64, parallelism: Vec<u32>, input: Option<PathBuf>) -> Result<(), weir::JobError> {
    let queries = if queries.is_empty() { weir::jobs::nexmark::QUERIES.iter().map(|s| s.to_string()).collect() } else { queries };
    let events = if input.is_some() { None } else { Some(events) };
    bench::print_header();
    for q in &queries {
        for &p in &parallelism {
            let r = bench::run_one(q, p, events, input.clone())?;
            bench::print_row(&r);
        }
    }
    Ok(())
}
