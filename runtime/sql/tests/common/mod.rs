//! What the SQL test binaries share: an in-memory sink keeping each table's rows in
//! print form (`+I[a, b]`), changelogs included, and the `collect` connector writing to it.
#![allow(dead_code)] // each test binary uses a part

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use weir::connector::{ConnectorError, Sink};
use weir::record::Rec;
use weir_sql::connectors::{ChangelogMode, Connector, SinkArgs, TableOptions, print_rows};
use weir_sql::ops::ChangeBatch;

/// Rows in print form, per table.
pub type Collected = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Appends the rows it is given to `out[table]`.
pub struct CollectSink {
    pub table: String,
    pub out: Collected,
}

impl Sink<ChangeBatch> for CollectSink {
    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        let mut m = self.out.lock().unwrap();
        for r in batch {
            m.entry(self.table.clone()).or_default().extend(print_rows(&r.value).map_err(ConnectorError::Other)?);
        }
        Ok(())
    }
}

/// The test connector `collect`: rows in print form, per table, in memory (accepts changelogs).
pub struct Collect(pub Collected);

impl Connector for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn options(&self) -> &[&str] {
        &[]
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

/// Applies a changelog (`+I[..]`, `-U[..]`, `+U[..]`, `-D[..]` in order): the final rows as `+I[..]`.
pub fn materialize(log: &[String]) -> Result<Vec<String>, String> {
    let mut rows: Vec<String> = Vec::new();
    for l in log.iter().map(|l| l.trim()) {
        let (kind, row) = l.split_at(2.min(l.len()));
        match kind {
            "+I" | "+U" => rows.push(row.to_string()),
            "-U" | "-D" => {
                let i = rows.iter().position(|r| r == row).ok_or_else(|| format!("{l} retracts a row that is not there"))?;
                rows.swap_remove(i);
            }
            _ => return Err(format!("bad changelog row {l}")),
        }
    }
    Ok(rows.into_iter().map(|r| format!("+I{r}")).collect())
}

/// Runs `sql` with `t.json` = `rows` in a temp dir (`$DIR` in the script) at
/// `parallelism`, in streaming or batch mode, compiled with `options` (given the
/// collect tables' rows): each collect table's final rows, sorted.
pub fn run_collected(sql: &str, rows: &str, parallelism: u32, batch: bool, options: impl Fn(&Collected) -> weir_sql::CompileOptions) -> Result<BTreeMap<String, Vec<String>>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("t.json"), rows).map_err(|e| e.to_string())?;
    let sql = sql.replace("$DIR", &dir.path().display().to_string());
    let sql = if batch { format!("SET 'execution.runtime-mode' = 'batch';\n{sql}") } else { sql };
    let collected: Collected = Arc::default();
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(&sql, &env, &options(&collected)).map_err(|e| e.to_string())?;
    env.execute().map_err(|e| e.to_string())?;
    let m = collected.lock().map_err(|e| e.to_string())?;
    m.iter()
        .map(|(t, log)| {
            let mut rows = materialize(log)?;
            rows.sort();
            Ok((t.clone(), rows))
        })
        .collect()
}
