//! Building a resolved job (built-in or SQL) into a job graph.

use weir::cli::{JobProgram, ResolvedJob, SqlScript};
use weir::{JobError, StreamEnv};
use weir_sql::{CompileOptions, SqlError, SqlJob};

/// `SET` keys a SQL script can use to configure the job itself (the planner reads the rest).
const PARALLELISM: &str = "parallelism.default";
const PIPELINE_NAME: &str = "pipeline.name";

/// Builds the job graph of `r`. A SQL script's `SET 'parallelism.default'` and
/// `SET 'pipeline.name'` apply when the command line or job file did not give them;
/// `r.config` is updated to what the job runs with.
pub fn build(r: &mut ResolvedJob) -> Result<StreamEnv, JobError> {
    match &r.program {
        JobProgram::Builtin(_) => weir::cli::build(r),
        JobProgram::Sql(script) => {
            let script = script.clone();
            build_sql(r, &script).map(|(env, _)| env)
        }
    }
}

/// Compiles a SQL job: the job graph and what the planner made of each `INSERT INTO`.
pub fn build_sql(r: &mut ResolvedJob, script: &SqlScript) -> Result<(StreamEnv, SqlJob), JobError> {
    let settings = weir_sql::script_settings(&script.text).map_err(|e| sql_error(script, &e))?;
    if !r.parallelism_given {
        if let Some(v) = settings.get(PARALLELISM) {
            let p: u32 = v.parse().ok().filter(|p| *p > 0).ok_or_else(|| JobError::Invalid(format!("{}: SET '{PARALLELISM}' = '{v}': not a positive number", script.origin)))?;
            if p > r.config.max_parallelism {
                return Err(JobError::Invalid(format!("{}: SET '{PARALLELISM}' = '{p}' exceeds the max parallelism {}", script.origin, r.config.max_parallelism)));
            }
            r.config.parallelism = p;
        }
    } else if let Some(v) = settings.get(PARALLELISM).filter(|v| v.parse::<u32>().ok() != Some(r.config.parallelism)) {
        tracing::info!(script = %script.origin, set = %v, parallelism = r.config.parallelism, "SET '{PARALLELISM}' is overridden by the deployment's parallelism");
    }
    if let Some(name) = settings.get(PIPELINE_NAME).filter(|n| !r.name_given && !n.trim().is_empty()) {
        r.config.name = name.clone();
    }
    let env = StreamEnv::new(r.config.clone());
    let options = CompileOptions { fixed_parallelism: true, ..CompileOptions::default() };
    let job = weir_sql::compile(&script.text, &env, &options).map_err(|e| sql_error(script, &e))?;
    Ok((env, job))
}

/// A SQL error as the user should see it: the file, line and column, the statement,
/// and the offending line of the script with a caret under the column.
pub fn sql_error(script: &SqlScript, e: &SqlError) -> JobError {
    JobError::Invalid(render_sql_error(&script.text, &script.origin, e))
}

fn render_sql_error(text: &str, origin: &str, e: &SqlError) -> String {
    let mut out = format!("{origin}:{}:{}: {}", e.pos.line, e.pos.column, e.message);
    if let Some(stmt) = &e.statement {
        out.push_str(&format!("\n  in: {stmt}"));
    }
    if let Some(line) = text.lines().nth(e.pos.line.saturating_sub(1)).filter(|_| e.pos.line > 0) {
        let n = e.pos.line.to_string();
        let pad = " ".repeat(n.len());
        let caret: String = line.chars().take(e.pos.column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        out.push_str(&format!("\n {n} | {line}\n {pad} | {caret}^"));
    }
    out
}

/// What `weir sql --explain` prints: every `INSERT INTO` with its optimized plan, the
/// operator producing updates (if the query is updating) and the operators' uids.
pub fn explain(job: &SqlJob) -> String {
    let mut out = String::new();
    for (i, ins) in job.inserts.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("INSERT INTO {}\n", ins.sink));
        for line in ins.plan.lines() {
            out.push_str(&format!("  {line}\n"));
        }
        match &ins.updating {
            Some(op) => out.push_str(&format!("  changelog: updating (+I/-U/+U/-D), from {op}\n")),
            None => out.push_str("  changelog: append-only (+I)\n"),
        }
        out.push_str(&format!("  operators (uid): {}\n", ins.uids.join(", ")));
    }
    out
}


/// `weir bench nexmark --sql`: runs the Nexmark query `query` (q0 … q22) as SQL over
/// `events` generated events into its blackhole sink, measured like the built-in jobs.
pub fn bench_nexmark_sql(query: &str, parallelism: u32, events: u64) -> Result<weir::cli::bench::BenchResult, JobError> {
    let settings = weir_sql::NexmarkSettings { events: Some(events), ..weir_sql::NexmarkSettings::default() };
    let script = weir_sql::nexmark_script(query, &settings).map_err(JobError::Invalid)?;
    let origin = format!("the Nexmark DDL + runtime/sql/nexmark/{query}.sql");
    let env = StreamEnv::new(weir::JobConfig { name: format!("nexmark-{query} (SQL)"), parallelism, ..weir::JobConfig::default() });
    let options = CompileOptions { fixed_parallelism: true, ..CompileOptions::default() };
    weir_sql::compile(&script, &env, &options).map_err(|e| sql_error(&SqlScript { text: script.clone(), origin }, &e))?;
    let cpu0 = weir::cli::cpu_seconds();
    let t0 = std::time::Instant::now();
    env.launch()?.wait()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = weir::cli::cpu_seconds() - cpu0;
    // the SQL source emits batches: the events are what the generator was asked for
    Ok(weir::cli::bench::BenchResult { query: format!("{query}-sql"), parallelism, events, wall_s, cpu_s })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_the_line_and_column() {
        let e = SqlError { pos: weir_sql::Pos { line: 2, column: 8 }, statement: Some("INSERT INTO x SELECT".into()), message: "unknown table 'x'".into() };
        let s = render_sql_error("SET 'a' = 'b';\nINSERT INTO x SELECT 1;", "job.sql", &e);
        assert_eq!(s, "job.sql:2:8: unknown table 'x'\n  in: INSERT INTO x SELECT\n 2 | INSERT INTO x SELECT 1;\n   |        ^");
    }
}
