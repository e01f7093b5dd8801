//! `weir sql` without a script: an interactive SQL shell, like Flink's SQL client.
//!
//! Statements end with `;` and run as they are typed. `CREATE TABLE`, `CREATE VIEW`
//! and `SET` are checked and kept for the statements after them; a `SELECT` runs as a
//! streaming job whose changelog is applied to a result table redrawn in place; an
//! `INSERT INTO` runs with live progress. Ctrl-C stops the running query or job, not
//! the shell; `QUIT;` or Ctrl-D leaves. `EXPLAIN`, `SHOW TABLES`, `DESCRIBE t` and
//! `HELP` answer without running anything.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::util::display::{ArrayFormatter, FormatOptions};
use weir::connector::{ConnectorError, Sink};
use weir::record::Rec;
use weir::{JobConfig, JobError, StreamEnv};
use weir_sql::ops::ChangeBatch;
use weir_sql::{CompileOptions, RowKind, SqlError};

/// Ctrl-C was pressed (since the current query started).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// A query or job is running (Ctrl-C stops it), rather than the prompt waiting.
static RUNNING: AtomicBool = AtomicBool::new(false);

const PROMPT: &str = "weir> ";
const MORE: &str = "   -> ";
const HELP: &str = "\
Statements end with ';'.
  CREATE TABLE t (...) WITH ('connector' = ...);   a table (checked, kept for what follows)
  CREATE VIEW v AS SELECT ...;                      a view
  SET 'key' = 'value';   SET;                       a setting (e.g. 'parallelism.default'); all settings
  SELECT ...;                                       run a query: its result table updates in place
  INSERT INTO t SELECT ...;                         run a job into a table, with progress
  EXPLAIN SELECT ...;   EXPLAIN INSERT INTO ...;    the streaming plan
  SHOW TABLES;   DESCRIBE t;                        the catalog
  QUIT;                                             leave (or Ctrl-D)
Ctrl-C stops the running query or job, not the shell.";

/// How the shell runs: where its defaults come from.
pub struct ShellSettings {
    pub parallelism: Option<u32>,
    pub max_parallelism: u32,
    pub state_backend: weir::state::StateBackend,
}

/// What the session has accumulated: the statements that define the catalog and settings.
struct Session {
    settings: ShellSettings,
    /// Checked `CREATE` and `SET` statements, in order, each ending with `;`.
    ddl: Vec<String>,
    /// Tables and views by name: "TABLE" or "VIEW".
    names: BTreeMap<String, &'static str>,
    tty: bool,
}

/// Runs the shell on standard input until `QUIT;` or end of input.
pub fn run(settings: ShellSettings) -> Result<(), JobError> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        if !RUNNING.load(Ordering::SeqCst) {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\n(Ctrl-C stops a running query; QUIT; or Ctrl-D leaves the shell)\n{PROMPT}");
            let _ = out.flush();
        }
    })
    .map_err(|e| JobError::Invalid(format!("cannot install the Ctrl-C handler: {e}")))?;
    let mut s = Session { settings, ddl: Vec::new(), names: BTreeMap::new(), tty };
    if tty {
        println!("Weir SQL shell. Statements end with ';'. HELP; for help, QUIT; or Ctrl-D to leave.");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut buf = String::new();
    loop {
        if tty {
            print!("{}", if buf.is_empty() { PROMPT } else { MORE });
            let _ = std::io::stdout().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| JobError::Invalid(format!("cannot read standard input: {e}")))?;
        if buf.is_empty() && line.trim().is_empty() {
            continue;
        }
        buf.push_str(&line);
        buf.push('\n');
        if !complete(&buf) {
            continue;
        }
        let stmt = std::mem::take(&mut buf);
        if !s.execute(stmt.trim()) {
            return Ok(());
        }
    }
    if !buf.trim().is_empty() {
        eprintln!("[ERROR] the input ended inside a statement (missing ';'): {}", buf.trim());
    }
    if tty {
        println!();
    }
    Ok(())
}

/// The buffer holds a whole statement: it ends with `;` outside quotes and comments,
/// and a statement set has reached its `END;`.
fn complete(buf: &str) -> bool {
    let pieces = weir_sql::script::split(buf);
    // a piece ends where its `;` is; an unterminated one runs to the end
    let terminated = pieces.last().is_some_and(|p| buf[p.end..].starts_with(';') && buf[p.end + 1..].trim().is_empty());
    if !terminated {
        return false;
    }
    let first = pieces.first().map(|p| weir_sql::script::leading_words(p.text(buf), 4)).unwrap_or_default();
    let is_set = matches!(first.iter().map(String::as_str).collect::<Vec<_>>().as_slice(), ["EXECUTE", "STATEMENT", "SET", "BEGIN"] | ["BEGIN", "STATEMENT", "SET", ..]);
    !is_set || pieces.last().is_some_and(|p| weir_sql::script::leading_words(p.text(buf), 2) == ["END"])
}

impl Session {
    /// Runs one statement; false when the shell should end.
    fn execute(&mut self, stmt: &str) -> bool {
        let words = weir_sql::script::leading_words(stmt, 3);
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let result = match w.as_slice() {
            ["QUIT" | "EXIT", ..] => return false,
            ["HELP", ..] => {
                println!("{HELP}");
                Ok(())
            }
            ["SHOW", "TABLES", ..] => {
                if self.names.is_empty() {
                    println!("Empty set");
                }
                for (n, kind) in &self.names {
                    println!("{n} ({})", kind.to_ascii_lowercase());
                }
                Ok(())
            }
            ["SET"] => {
                self.show_settings();
                Ok(())
            }
            ["DESCRIBE" | "DESC", ..] => self.describe(stmt),
            ["EXPLAIN", ..] => self.explain(stmt),
            ["SELECT" | "WITH", ..] => self.query(stmt),
            ["INSERT", ..] | ["EXECUTE", "STATEMENT", ..] | ["BEGIN", "STATEMENT", ..] => self.insert(stmt),
            ["CREATE" | "SET" | "RESET", ..] => self.define(stmt, &w),
            _ => self.define(stmt, &w),
        };
        if let Err(e) = result {
            eprintln!("[ERROR] {e}");
        }
        true
    }

    fn config(&self, name: &str) -> JobConfig {
        JobConfig { name: name.into(), parallelism: self.settings.parallelism.unwrap_or(1), max_parallelism: self.settings.max_parallelism, state_backend: self.settings.state_backend }
    }

    fn options(&self) -> CompileOptions {
        CompileOptions { fixed_parallelism: self.settings.parallelism.is_some(), ..CompileOptions::default() }
    }

    /// The session's statements followed by `stmt`, and the line where `stmt` starts.
    fn script_with(&self, stmt: &str) -> (String, usize) {
        let mut s = String::new();
        for d in &self.ddl {
            s.push_str(d);
            s.push('\n');
        }
        let first_line = s.matches('\n').count();
        s.push_str(stmt);
        if !stmt.trim_end().ends_with(';') {
            s.push(';');
        }
        (s, first_line)
    }

    /// A planning error, with its line counted within the statement typed.
    fn error(&self, stmt: &str, first_line: usize, e: SqlError) -> String {
        let line = e.pos.line.saturating_sub(first_line).max(1);
        let mut out = format!("line {line}, column {}: {}", e.pos.column, e.message);
        if let Some(text) = stmt.lines().nth(line - 1) {
            let caret: String = text.chars().take(e.pos.column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            out.push_str(&format!("\n  {text}\n  {caret}^"));
        }
        out
    }

    fn define(&mut self, stmt: &str, w: &[&str]) -> Result<(), String> {
        let (script, first) = self.script_with(stmt);
        let env = StreamEnv::new(self.config("check"));
        weir_sql::compile_statements(&script, &env, &self.options()).map_err(|e| self.error(stmt, first, e))?;
        let stmt = if stmt.trim_end().ends_with(';') { stmt.to_string() } else { format!("{stmt};") };
        match w {
            ["CREATE", "TEMPORARY", kind, ..] | ["CREATE", kind, ..] => {
                let kind: &'static str = if *kind == "VIEW" { "VIEW" } else { "TABLE" };
                let skip = if w.get(1) == Some(&"TEMPORARY") { 3 } else { 2 };
                let rest = &stmt[weir_sql::script::after_words(&stmt, skip)..];
                let name: String = rest.trim_start().chars().take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '`' | '.')).filter(|c| *c != '`').collect();
                println!("[INFO] {} '{name}' created.", if kind == "VIEW" { "View" } else { "Table" });
                self.names.insert(name, kind);
            }
            ["SET", ..] => println!("[INFO] Session property set."),
            _ => println!("[INFO] Done."),
        }
        self.ddl.push(stmt);
        Ok(())
    }

    fn show_settings(&self) {
        let (script, _) = self.script_with("");
        match weir_sql::script_settings(&script) {
            Ok(m) if m.is_empty() => println!("Empty set"),
            Ok(m) => m.iter().for_each(|(k, v)| println!("'{k}' = '{v}'")),
            Err(e) => eprintln!("[ERROR] {e}"),
        }
    }

    fn describe(&self, stmt: &str) -> Result<(), String> {
        let name = stmt.split_whitespace().nth(1).map(|n| n.trim_end_matches(';').trim_matches('`').to_string()).ok_or("DESCRIBE needs a table or view name")?;
        let (script, _) = self.script_with(&format!("SELECT * FROM `{name}`;"));
        let env = StreamEnv::new(self.config("describe"));
        let q = weir_sql::compile_query(&script, &env, &self.options()).map_err(|e| e.message)?;
        let rows: Vec<Vec<String>> = q.schema.fields().iter().map(|f| vec![f.name().clone(), sql_type(f.data_type())]).collect();
        print!("{}", table(&["name".into(), "type".into()], rows.iter(), usize::MAX));
        Ok(())
    }

    fn explain(&self, stmt: &str) -> Result<(), String> {
        let inner = &stmt[weir_sql::script::after_words(stmt, 1)..];
        let first = weir_sql::script::leading_words(inner, 1);
        let (script, line) = self.script_with(inner);
        let env = StreamEnv::new(self.config("explain"));
        match first.first().map(String::as_str) {
            Some("SELECT" | "WITH") => {
                let q = weir_sql::compile_query(&script, &env, &self.options()).map_err(|e| self.error(inner, line, e))?;
                println!("{}", q.plan);
                match q.updating {
                    Some(op) => println!("changelog: updating (+I/-U/+U/-D), from {op}"),
                    None => println!("changelog: append-only (+I)"),
                }
            }
            _ => {
                let job = weir_sql::compile(&script, &env, &self.options()).map_err(|e| self.error(inner, line, e))?;
                print!("{}", crate::job::explain(&job));
            }
        }
        Ok(())
    }

    fn query(&self, stmt: &str) -> Result<(), String> {
        let (script, line) = self.script_with(stmt);
        let env = StreamEnv::new(self.config("shell query"));
        let q = weir_sql::compile_query(&script, &env, &self.options()).map_err(|e| self.error(stmt, line, e))?;
        let columns: Vec<String> = q.schema.fields().iter().map(|f| f.name().clone()).collect();
        let result = Arc::new(Mutex::new(ResultTable::default()));
        let r = result.clone();
        q.stream.sink("shell result", move |_| ResultSink(r.clone())).uid("shell-result").parallelism(1);
        let job = env.launch().map_err(|e| e.to_string())?;
        let mode = if q.updating.is_some() { "updating" } else { "append-only" };
        let mut view = View { tty: self.tty, drawn: 0 };
        let t0 = Instant::now();
        start_running();
        let mut stopped = false;
        while !job.is_finished() {
            std::thread::sleep(Duration::from_millis(200));
            if INTERRUPTED.load(Ordering::SeqCst) && !stopped {
                job.cancel();
                stopped = true;
            }
            if self.tty {
                let status = format!("{mode} result, running {:.0}s, Ctrl-C to stop", t0.elapsed().as_secs_f64());
                view.draw(&columns, &lock(&result), &status);
            }
        }
        RUNNING.store(false, Ordering::SeqCst);
        let outcome = job.wait();
        let status = match (&outcome, stopped) {
            (_, true) => "query stopped (Ctrl-C)".to_string(),
            (Ok(()), false) => format!("query finished in {:.1}s", t0.elapsed().as_secs_f64()),
            (Err(e), false) => format!("query failed: {e}"),
        };
        view.draw(&columns, &lock(&result), &status);
        match outcome {
            Err(e) if !stopped => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    fn insert(&self, stmt: &str) -> Result<(), String> {
        let (script, line) = self.script_with(stmt);
        let env = StreamEnv::new(self.config("shell job"));
        weir_sql::compile(&script, &env, &self.options()).map_err(|e| self.error(stmt, line, e))?;
        let job = env.launch().map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        start_running();
        let mut stopped = false;
        let mut last = String::new();
        while !job.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            if INTERRUPTED.load(Ordering::SeqCst) && !stopped {
                job.cancel();
                stopped = true;
            }
            let t = weir::cli::progress::totals(&job);
            let line = format!("running {:.0}s: {} records in, {} out (Ctrl-C to stop)", t0.elapsed().as_secs_f64(), weir::cli::thousands(t.records_in), weir::cli::thousands(t.records_out));
            if self.tty && line != last {
                print!("\r\x1b[2K{line}");
                let _ = std::io::stdout().flush();
                last = line;
            }
        }
        RUNNING.store(false, Ordering::SeqCst);
        let t = weir::cli::progress::totals(&job);
        if self.tty {
            print!("\r\x1b[2K");
        }
        match job.wait() {
            _ if stopped => println!("[INFO] job stopped (Ctrl-C) after {:.1}s: {} records out", t0.elapsed().as_secs_f64(), weir::cli::thousands(t.records_out)),
            Ok(()) => println!("[INFO] job finished in {:.1}s: {} records out", t0.elapsed().as_secs_f64(), weir::cli::thousands(t.records_out)),
            Err(e) => return Err(format!("job failed: {e}")),
        }
        Ok(())
    }
}

/// The SQL name of an Arrow type, as `CREATE TABLE` spells it.
fn sql_type(t: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::{DataType as D, TimeUnit};
    match t {
        D::Boolean => "BOOLEAN".into(),
        D::Int8 => "TINYINT".into(),
        D::Int16 => "SMALLINT".into(),
        D::Int32 => "INT".into(),
        D::Int64 => "BIGINT".into(),
        D::Float32 => "FLOAT".into(),
        D::Float64 => "DOUBLE".into(),
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "STRING".into(),
        D::Binary | D::LargeBinary | D::BinaryView => "BYTES".into(),
        D::Date32 | D::Date64 => "DATE".into(),
        D::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        D::Timestamp(u, tz) => {
            let p = match u {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            if tz.is_some() { format!("TIMESTAMP_LTZ({p})") } else { format!("TIMESTAMP({p})") }
        }
        other => other.to_string(),
    }
}

fn start_running() {
    INTERRUPTED.store(false, Ordering::SeqCst);
    RUNNING.store(true, Ordering::SeqCst);
}

fn lock(t: &Mutex<ResultTable>) -> std::sync::MutexGuard<'_, ResultTable> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// A query's result with its changelog applied: `+I`/`+U` add a row, `-U`/`-D` remove one.
#[derive(Default)]
struct ResultTable {
    rows: Vec<Vec<String>>,
    changes: u64,
}

impl ResultTable {
    fn apply(&mut self, b: &ChangeBatch) -> Result<(), String> {
        let opts = FormatOptions::default().with_null("NULL");
        let cols: Vec<ArrayFormatter<'_>> = b.rows.0.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        for i in 0..b.num_rows() {
            let row: Vec<String> = cols.iter().map(|c| c.value(i).to_string()).collect();
            self.changes += 1;
            match b.kind(i) {
                RowKind::Insert | RowKind::UpdateAfter => self.rows.push(row),
                RowKind::UpdateBefore | RowKind::Delete => {
                    if let Some(at) = self.rows.iter().position(|r| *r == row) {
                        self.rows.remove(at);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The shell's sink: applies the changelog to the shared result table.
struct ResultSink(Arc<Mutex<ResultTable>>);

impl Sink<ChangeBatch> for ResultSink {
    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        let mut t = lock(&self.0);
        for r in batch {
            t.apply(&r.value).map_err(ConnectorError::Other)?;
        }
        Ok(())
    }
}

/// The result table on the terminal, redrawn in place.
struct View {
    tty: bool,
    /// Lines drawn last time (moved up over and cleared before the next draw).
    drawn: usize,
}

impl View {
    fn draw(&mut self, columns: &[String], t: &ResultTable, status: &str) {
        let height = terminal_rows().saturating_sub(6).max(5);
        let shown = if self.tty { height } else { usize::MAX };
        let start = t.rows.len().saturating_sub(shown);
        let mut text = table(columns, t.rows[start..].iter(), 40);
        let hidden = if start > 0 { format!(", first {start} not shown") } else { String::new() };
        text.push_str(&format!("{} rows ({} changes{hidden}); {status}\n", t.rows.len(), t.changes));
        let mut out = std::io::stdout().lock();
        if self.tty && self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[0J", self.drawn);
        }
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.drawn = text.matches('\n').count();
    }
}

fn terminal_rows() -> usize {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
    unsafe {
        let mut w: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut w) == 0 && w.ws_row > 0 { w.ws_row as usize } else { 24 }
    }
}

/// `rows` under `columns` as a text table; cells longer than `max_width` are cut.
fn table<'a>(columns: &[String], rows: impl Iterator<Item = &'a Vec<String>> + Clone, max_width: usize) -> String {
    let cut = |s: &str| -> String {
        if s.chars().count() > max_width { format!("{}…", s.chars().take(max_width.saturating_sub(1)).collect::<String>()) } else { s.to_string() }
    };
    let mut widths: Vec<usize> = columns.iter().map(|c| cut(c).chars().count()).collect();
    for r in rows.clone() {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(cut(c).chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = String>| -> String {
        let parts: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let rule = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let mut out = rule.clone();
    out.push_str(&line(&mut columns.iter().map(|c| cut(c))));
    out.push_str(&rule);
    for r in rows {
        out.push_str(&line(&mut r.iter().map(|c| cut(c))));
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_complete_at_a_semicolon_outside_quotes() {
        assert!(!complete("SELECT 1\n"));
        assert!(complete("SELECT 1;\n"));
        assert!(!complete("SELECT ';\n"));
        assert!(complete("SELECT ';';\n"));
        assert!(!complete("EXECUTE STATEMENT SET BEGIN\nINSERT INTO a SELECT * FROM b;\n"));
        assert!(complete("EXECUTE STATEMENT SET BEGIN\nINSERT INTO a SELECT * FROM b;\nEND;\n"));
    }

    #[test]
    fn the_changelog_is_applied_to_the_result_table() {
        use arrow::array::{Int64Array, RecordBatch};
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, true)]));
        let b = |v: Vec<i64>, k: Vec<RowKind>| ChangeBatch { rows: weir::arrow::ArrowBatch(RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap()), kinds: Some(k) };
        let mut t = ResultTable::default();
        t.apply(&b(vec![1, 2], vec![RowKind::Insert, RowKind::Insert])).unwrap();
        t.apply(&b(vec![1, 3], vec![RowKind::UpdateBefore, RowKind::UpdateAfter])).unwrap();
        t.apply(&b(vec![2], vec![RowKind::Delete])).unwrap();
        assert_eq!(t.rows, vec![vec!["3".to_string()]]);
        assert_eq!(t.changes, 5);
    }

    #[test]
    fn tables_line_up() {
        let rows = [vec!["a".to_string(), "10".to_string()]];
        let t = table(&["name".into(), "n".into()], rows.iter(), 40);
        assert_eq!(t, "+------+----+\n| name | n  |\n+------+----+\n| a    | 10 |\n+------+----+\n");
    }
}
