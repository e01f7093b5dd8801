//! The source: a bounded scan of a table, split into ranges of an integer column.
//!
//! `scan.partition.num` ranges of `scan.partition.column` cover
//! `[scan.partition.lower-bound, scan.partition.upper-bound]` in equal strides; unlike
//! Flink, the first range also takes the rows below the lower bound (and NULLs) and
//! the last those above the upper bound, so every row is read exactly once whatever
//! the bounds. Without partitioning the table is one split.
//!
//! Each split is read through a cursor (`scan.fetch-size` rows per fetch) in a
//! read-only repeatable-read transaction, ordered by all selected columns: rows that
//! compare equal there are identical, so skipping the first `n` rows of a split gives
//! the same rest every time. A split's position (rows read, or finished) is
//! checkpointed: after a restore finished splits are not read again and an
//! unfinished one resumes after its last checkpointed row (`OFFSET`). This assumes
//! the table does not change while the job reads it (a bounded snapshot, as in Flink).
//! Splits go to subtasks round robin, and again on restore at another parallelism.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use postgres::{Client, NoTls};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use weir::connector::{ConnectorError, SourceContext};

use super::config::{Partitioning, PgConfig, quote_ident};
use super::error::{PgError, describe, is_retryable};
use super::types::{PgType, column};
use crate::registry::{BatchSource, SourceFactory, TableOptions};

/// A range of the partition column (`lower` inclusive, `upper` exclusive; `None`:
/// unbounded, and the first split also takes NULLs), and how far it was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub id: u32,
    pub lower: Option<i64>,
    pub upper: Option<i64>,
    pub nulls: bool,
    pub read: u64,
    pub finished: bool,
}

/// The splits of a scan.
pub fn splits(p: Option<&Partitioning>) -> Vec<Split> {
    let Some(p) = p else {
        return vec![Split { id: 0, lower: None, upper: None, nulls: true, read: 0, finished: false }];
    };
    let size = p.upper as i128 - p.lower as i128 + 1;
    let num = (p.num as i128).min(size).max(1);
    let stride = (size + num - 1) / num;
    (0..num)
        .map(|i| {
            let start = p.lower as i128 + i * stride;
            let end = start + stride;
            let first = i == 0;
            let last = i == num - 1;
            Split {
                id: i as u32,
                lower: if first { None } else { Some(start as i64) },
                upper: if last { None } else { Some(end as i64) },
                nulls: first,
                read: 0,
                finished: false,
            }
        })
        .collect()
}

/// The `WHERE` condition of a split on `column` (empty: the whole table).
pub fn condition(s: &Split, column: &str) -> String {
    let c = quote_ident(column);
    let mut parts = Vec::new();
    if let Some(l) = s.lower {
        parts.push(format!("{c} >= {l}"));
    }
    if let Some(u) = s.upper {
        parts.push(format!("{c} < {u}"));
    }
    match (parts.is_empty(), s.nulls) {
        (true, _) => String::new(),
        (false, true) => format!("({} OR {c} IS NULL)", parts.join(" AND ")),
        (false, false) => parts.join(" AND "),
    }
}

/// The query reading split `s`, skipping the rows already read.
pub fn scan_sql(cfg: &PgConfig, schema: &SchemaRef, types: &[PgType], s: &Split) -> String {
    let cols: Vec<String> = schema.fields().iter().zip(types).map(|(f, t)| format!("{}{} AS {}", quote_ident(f.name()), t.select_cast(), quote_ident(f.name()))).collect();
    let mut q = format!("SELECT {} FROM {}", cols.join(", "), cfg.quoted_table);
    if let Some(p) = &cfg.partition {
        let w = condition(s, &p.column);
        if !w.is_empty() {
            q.push_str(" WHERE ");
            q.push_str(&w);
        }
    }
    let order: Vec<String> = (1..=cols.len()).map(|i| i.to_string()).collect();
    q.push_str(&format!(" ORDER BY {}", order.join(", ")));
    if s.read > 0 {
        q.push_str(&format!(" OFFSET {}", s.read));
    }
    q
}

/// Makes the scan of each subtask.
pub fn factory(opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
    let cfg = PgConfig::from_options(opts)?;
    let types = schema.fields().iter().map(|f| PgType::of(f)).collect::<Result<Vec<_>, _>>().map_err(|m| format!("connector '{}': {m}", cfg.connector))?;
    let all = splits(cfg.partition.as_ref());
    Ok(Arc::new(move |ctx: &SourceContext| {
        let mine = all.iter().filter(|s| s.id % ctx.parallelism.max(1) == ctx.subtask).cloned().collect();
        Box::new(PgSource { cfg: cfg.clone(), schema: schema.clone(), types: types.clone(), splits: mine, client: None, open_split: None, subtask: ctx.subtask }) as Box<dyn BatchSource>
    }))
}

/// One subtask's scan.
pub struct PgSource {
    cfg: PgConfig,
    schema: SchemaRef,
    types: Vec<PgType>,
    splits: Vec<Split>,
    client: Option<Client>,
    /// the split whose cursor is open
    open_split: Option<u32>,
    subtask: u32,
}

impl PgSource {
    fn connect(&mut self) -> Result<(), PgError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.open_split = None;
        let config = self.cfg.connect_config().map_err(|message| PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message })?;
        let mut attempt = 0;
        loop {
            match config.connect(NoTls) {
                Ok(c) => {
                    self.client = Some(c);
                    return Ok(());
                }
                Err(e) if is_retryable(&e) && attempt < self.cfg.max_retries => {
                    let wait = self.cfg.retry_backoff.saturating_mul(1 << attempt.min(16));
                    attempt += 1;
                    warn!(table = %self.cfg.table, subtask = self.subtask, attempt, error = %describe(&e), "postgres source: connecting failed, retrying in {wait:?}");
                    std::thread::sleep(wait);
                }
                Err(e) => {
                    return Err(PgError::Connect { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), target: self.cfg.target.clone(), message: describe(&e), retryable: false });
                }
            }
        }
    }

    fn scan_error(&self, s: &Split, e: &postgres::Error) -> PgError {
        PgError::Statement {
            connector: self.cfg.connector.clone(),
            table: self.cfg.table.clone(),
            table_name: self.cfg.table_name.clone(),
            statement: format!("scan of split {} (of table '{}')", s.id, self.cfg.table_name),
            message: describe(e),
            retryable: is_retryable(e),
        }
    }
}

impl BatchSource for PgSource {
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            let Some(i) = self.splits.iter().position(|s| !s.finished) else {
                if self.open_split.take().is_some() {
                    if let Some(c) = self.client.as_mut() {
                        let _ = c.batch_execute("COMMIT");
                    }
                }
                return Ok(None);
            };
            self.connect()?;
            let split = self.splits[i].clone();
            if self.open_split != Some(split.id) {
                let sql = scan_sql(&self.cfg, &self.schema, &self.types, &split);
                debug!(table = %self.cfg.table, subtask = self.subtask, split = split.id, "postgres source: {sql}");
                let client = self.client.as_mut().ok_or_else(|| ConnectorError::Other("postgres source: not connected".into()))?;
                // the previous split's cursor and transaction end first
                let close = if self.open_split.is_some() { "CLOSE weir_scan; COMMIT; " } else { "" };
                let r = client.batch_execute(&format!("{close}BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; DECLARE weir_scan NO SCROLL CURSOR FOR {sql}"));
                if let Err(e) = r {
                    self.client = None;
                    return Err(self.scan_error(&split, &e).into());
                }
                self.open_split = Some(split.id);
            }
            let want = max_rows.min(self.cfg.fetch_size).max(1);
            let client = self.client.as_mut().ok_or_else(|| ConnectorError::Other("postgres source: not connected".into()))?;
            let rows = match client.query(&format!("FETCH FORWARD {want} FROM weir_scan"), &[]) {
                Ok(r) => r,
                Err(e) => {
                    self.client = None;
                    return Err(self.scan_error(&split, &e).into());
                }
            };
            let s = &mut self.splits[i];
            s.read += rows.len() as u64;
            if rows.len() < want {
                s.finished = true;
                debug!(table = %self.cfg.table, subtask = self.subtask, split = s.id, rows = s.read, "postgres source: split finished");
            }
            if rows.is_empty() {
                continue;
            }
            let cols = self
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(|(c, f)| column(&rows, c, f))
                .collect::<Result<Vec<_>, String>>()
                .map_err(|m| ConnectorError::from(PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message: m }))?;
            return RecordBatch::try_new(self.schema.clone(), cols).map(Some).map_err(|e| ConnectorError::Other(format!("connector '{}', table '{}': {e}", self.cfg.connector, self.cfg.table)));
        }
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        self.splits.iter().map(|s| serde_json::to_vec(s).map_err(|e| ConnectorError::Other(e.to_string()))).collect()
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.splits = splits
            .iter()
            .map(|b| serde_json::from_slice(b).map_err(|e| ConnectorError::Other(format!("connector '{}', table '{}': bad split position in the checkpoint: {e}", self.cfg.connector, self.cfg.table))))
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(num: u32, lower: i64, upper: i64) -> Partitioning {
        Partitioning { column: "id".into(), num, lower, upper }
    }

    /// Which split a value falls in (by the conditions' meaning).
    fn owner(sp: &[Split], v: Option<i64>) -> Vec<u32> {
        sp.iter()
            .filter(|s| match v {
                None => s.nulls,
                Some(v) => s.lower.is_none_or(|l| v >= l) && s.upper.is_none_or(|u| v < u),
            })
            .map(|s| s.id)
            .collect()
    }

    #[test]
    fn every_value_falls_in_exactly_one_split() {
        for part in [p(3, 0, 99), p(4, -10, 10), p(7, 5, 6), p(1, 0, 0), p(3, i64::MIN, i64::MAX)] {
            let sp = splits(Some(&part));
            assert!(sp.len() <= part.num as usize && !sp.is_empty());
            for v in [None, Some(i64::MIN), Some(part.lower), Some(part.lower.saturating_add(1)), Some(0), Some(part.upper), Some(i64::MAX), Some(part.upper.saturating_sub(1))] {
                assert_eq!(owner(&sp, v).len(), 1, "{part:?}: {v:?} in {sp:?}");
            }
        }
        let sp = splits(Some(&p(3, 0, 89)));
        assert_eq!(sp.iter().map(|s| (s.lower, s.upper)).collect::<Vec<_>>(), vec![(None, Some(30)), (Some(30), Some(60)), (Some(60), None)]);
        assert_eq!(condition(&sp[0], "id"), "(\"id\" < 30 OR \"id\" IS NULL)");
        assert_eq!(condition(&sp[1], "id"), "\"id\" >= 30 AND \"id\" < 60");
        assert_eq!(condition(&sp[2], "id"), "\"id\" >= 60");
        assert_eq!(splits(None).len(), 1);
        assert_eq!(condition(&splits(None)[0], "id"), "");
    }
}
