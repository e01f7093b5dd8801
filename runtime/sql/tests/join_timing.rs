//! Joins whose result depends on when rows arrive (processing-time state TTL, late
//! rows of interval joins): sources that follow a script of rows and waits.
//!
//! A script is JSON lines (consecutive lines are one batch) and `wait <ms>` lines;
//! `hold <ms>` keeps the source open (idle, its watermark unchanged) until that many
//! ms after its start.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir::connector::{ConnectorError, SourceContext};
use weir_sql::connectors::{BatchSource, ChangelogMode, Connector, ConnectorRegistry, SinkArgs, SourceFactory, TableOptions};
use weir_sql::CompileOptions;

mod common;
use common::{CollectSink, Collected};

enum Step {
    Rows(String),
    Wait(u64),
    Hold(u64),
}

/// `'connector' = 'script'`, `'script'` = the steps (one per line).
struct Script(Collected);

struct ScriptSource {
    schema: SchemaRef,
    steps: Vec<Step>,
    at: usize,
    owns: bool,
    start: Option<Instant>,
    until: Option<Instant>,
}

impl BatchSource for ScriptSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.owns = ctx.subtask == 0;
        Ok(())
    }
    fn next_batch(&mut self, _max: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        let start = *self.start.get_or_insert_with(Instant::now);
        if !self.owns {
            return Ok(None);
        }
        if let Some(u) = self.until {
            if Instant::now() < u {
                std::thread::sleep(Duration::from_millis(5));
                return Ok(Some(RecordBatch::new_empty(self.schema.clone())));
            }
            self.until = None;
            self.at += 1;
        }
        match self.steps.get(self.at) {
            None => Ok(None),
            Some(Step::Rows(json)) => {
                let mut r = arrow::json::ReaderBuilder::new(self.schema.clone()).build(Cursor::new(json.clone().into_bytes())).map_err(|e| ConnectorError::Other(e.to_string()))?;
                let b = r.next().transpose().map_err(|e| ConnectorError::Other(e.to_string()))?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
                self.at += 1;
                Ok(Some(b))
            }
            Some(Step::Wait(ms)) => {
                self.until = Some(Instant::now() + Duration::from_millis(*ms));
                Ok(Some(RecordBatch::new_empty(self.schema.clone())))
            }
            Some(Step::Hold(ms)) => {
                self.until = Some(start + Duration::from_millis(*ms));
                Ok(Some(RecordBatch::new_empty(self.schema.clone())))
            }
        }
    }
}

fn steps(script: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for l in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(ms) = l.strip_prefix("wait ") {
            out.push(Step::Wait(ms.trim().parse().expect("wait <ms>")));
        } else if let Some(ms) = l.strip_prefix("hold ") {
            out.push(Step::Hold(ms.trim().parse().expect("hold <ms>")));
        } else if let Some(Step::Rows(r)) = out.last_mut() {
            r.push('\n');
            r.push_str(l);
        } else {
            out.push(Step::Rows(l.to_string()));
        }
    }
    out
}

impl Connector for Script {
    fn name(&self) -> &str {
        "script"
    }
    fn options(&self) -> &[&str] {
        &["script"]
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        let script = opts.required("script")?.to_string();
        Ok(Arc::new(move |_ctx: &SourceContext| Box::new(ScriptSource { schema: schema.clone(), steps: steps(&script), at: 0, owns: false, start: None, until: None }) as Box<dyn BatchSource>))
    }
    fn sink_mode(&self, _o: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::All)
    }
    fn add_sink(&self, o: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let (t, out) = (o.table.clone(), self.0.clone());
        args.stream.sink(args.name, move |_| CollectSink { table: t.clone(), out: out.clone() }).uid(args.uid);
        Ok(())
    }
}

/// Runs `sql` (tables with `'connector' = 'script'`, sink `out`): the rows of `out`, sorted.
fn run(sql: &str, parallelism: u32) -> Vec<String> {
    let collected: Collected = Arc::default();
    let mut reg = ConnectorRegistry::default();
    reg.register(Arc::new(Script(collected.clone())));
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(sql, &env, &CompileOptions { connectors: reg, ..CompileOptions::default() }).unwrap_or_else(|e| panic!("compile: {e}"));
    env.execute().unwrap_or_else(|e| panic!("run: {e}"));
    let mut rows = collected.lock().unwrap().remove("out").unwrap_or_default();
    rows.sort();
    rows
}

fn ttl_job(ttl: &str) -> String {
    format!(
        "{ttl}
CREATE TABLE a (k BIGINT, x STRING) WITH ('connector' = 'script', 'script' = '{{\"k\": 1, \"x\": \"a1\"}}');
CREATE TABLE b (k BIGINT, y STRING) WITH ('connector' = 'script', 'script' = 'wait 1500
{{\"k\": 1, \"y\": \"b1\"}}
{{\"k\": 2, \"y\": \"b2\"}}');
CREATE TABLE out (x STRING, y STRING) WITH ('connector' = 'script', 'script' = '');
INSERT INTO out SELECT a.x, b.y FROM a JOIN b ON a.k = b.k;"
    )
}

#[test]
fn state_ttl_expires_idle_join_state() {
    // the left row waits 1.5 s for its partner: kept without a TTL, gone with 200 ms
    assert_eq!(run(&ttl_job(""), 1), vec!["+I[a1, b1]"]);
    assert_eq!(run(&ttl_job("SET 'table.exec.state.ttl' = '1 h';"), 2), vec!["+I[a1, b1]"]);
    assert_eq!(run(&ttl_job("SET 'table.exec.state.ttl' = '200 ms';"), 1), Vec::<String>::new());
    assert_eq!(run(&ttl_job("SET 'table.exec.state.ttl' = '200';"), 2), Vec::<String>::new());
}

#[test]
fn interval_join_drops_late_rows() {
    // b's watermark reaches 00:59 at once (and stays: b holds); a's first row moves
    // a's watermark to 01:09, so the join's is 00:59; then a45 (45 s + 10 s < 59 s) is
    // late and dropped although b50 (still in state) would match it; a55 is in time.
    let sql = "
CREATE TABLE a (k BIGINT, x STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'script', 'script' = 'wait 400
{\"k\": 1, \"x\": \"a70\", \"ts\": \"2024-01-01 00:01:10\"}
wait 400
{\"k\": 1, \"x\": \"a45\", \"ts\": \"2024-01-01 00:00:45\"}
{\"k\": 1, \"x\": \"a55\", \"ts\": \"2024-01-01 00:00:55\"}');
CREATE TABLE b (k BIGINT, y STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'script', 'script' = '{\"k\": 1, \"y\": \"b50\", \"ts\": \"2024-01-01 00:00:50\"}
{\"k\": 1, \"y\": \"b60\", \"ts\": \"2024-01-01 00:01:00\"}
hold 1500');
CREATE TABLE out (x STRING, y STRING) WITH ('connector' = 'script', 'script' = '');
INSERT INTO out SELECT a.x, b.y FROM a JOIN b ON a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '10' SECOND AND b.ts + INTERVAL '10' SECOND;";
    for p in [1, 2] {
        assert_eq!(run(sql, p), vec!["+I[a55, b50]", "+I[a55, b60]", "+I[a70, b60]"], "parallelism {p}");
    }
}
