//! The sink: changes buffered (coalesced by primary key in upsert mode), written in
//! one transaction per flush with prepared multi-row statements, retried with
//! exponential backoff on a new connection when the connection fails.
//!
//! Flushes happen when `sink.buffer-flush.max-rows` changes are buffered, when the
//! oldest buffered change is `sink.buffer-flush.interval` old (checked on every write
//! and whenever the task is about to wait), and at every checkpoint barrier and at
//! end of input (`pre_commit`), so a completed checkpoint never leaves rows behind.
//!
//! Guarantees: in **upsert** mode (the table declares a primary key) the last change
//! per key wins, within a batch and across batches, and replaying changes after a
//! restore converges to the same table (idempotent, so effectively exactly-once). In
//! **append** mode every row of a completed checkpoint is in the table, and rows
//! flushed after it are written again after a restore (at-least-once).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use postgres::{Client, NoTls, Statement};
use tracing::{debug, info, warn};
use weir::connector::{ConnectorError, Sink, SinkContext};
use weir::record::Rec;

use super::config::{PgConfig, quote_ident};
use super::error::{PgError, describe, is_retryable};
use super::types::{PgType, Value, value};
use crate::changelog::{ChangeBatch, RowKind};
use crate::registry::{SinkArgs, TableOptions};

/// PostgreSQL takes at most 65 535 parameters per statement.
const MAX_PARAMS: usize = 65_535;
/// Rows per statement at most (bigger statements gain little).
const MAX_ROWS_PER_STATEMENT: usize = 512;
/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a statement does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatementKind {
    Insert,
    Upsert,
    Delete,
}

impl StatementKind {
    fn describe(self) -> &'static str {
        match self {
            StatementKind::Insert => "INSERT",
            StatementKind::Upsert => "UPSERT (INSERT ... ON CONFLICT DO UPDATE)",
            StatementKind::Delete => "DELETE",
        }
    }
}

/// The columns a sink writes and how their statements read.
#[derive(Clone, Debug)]
pub struct TableShape {
    /// `"schema"."table"`
    pub table: String,
    pub columns: Vec<String>,
    pub types: Vec<PgType>,
    /// indices of the primary key columns (empty: append mode)
    pub key: Vec<usize>,
}

impl TableShape {
    fn params(&self, cols: &[usize], first: &mut usize) -> String {
        let p: Vec<String> = cols
            .iter()
            .map(|&c| {
                *first += 1;
                format!("${}{}", *first, self.types[c].param_cast())
            })
            .collect();
        format!("({})", p.join(", "))
    }

    fn column_list(&self, cols: &[usize]) -> String {
        cols.iter().map(|&c| quote_ident(&self.columns[c])).collect::<Vec<_>>().join(", ")
    }

    /// How many rows one statement of `kind` holds at most.
    pub fn rows_per_statement(&self, kind: StatementKind) -> usize {
        let per_row = if kind == StatementKind::Delete { self.key.len() } else { self.columns.len() };
        (MAX_PARAMS / per_row.max(1)).clamp(1, MAX_ROWS_PER_STATEMENT)
    }

    /// The text of a statement of `kind` for `rows` rows.
    pub fn sql(&self, kind: StatementKind, rows: usize) -> String {
        let all: Vec<usize> = (0..self.columns.len()).collect();
        let mut n = 0;
        match kind {
            StatementKind::Insert | StatementKind::Upsert => {
                let values: Vec<String> = (0..rows).map(|_| self.params(&all, &mut n)).collect();
                let mut s = format!("INSERT INTO {} ({}) VALUES {}", self.table, self.column_list(&all), values.join(", "));
                if kind == StatementKind::Upsert {
                    let rest: Vec<usize> = all.iter().copied().filter(|c| !self.key.contains(c)).collect();
                    s.push_str(&format!(" ON CONFLICT ({}) ", self.column_list(&self.key)));
                    if rest.is_empty() {
                        s.push_str("DO NOTHING");
                    } else {
                        let set: Vec<String> = rest.iter().map(|&c| format!("{0} = EXCLUDED.{0}", quote_ident(&self.columns[c]))).collect();
                        s.push_str(&format!("DO UPDATE SET {}", set.join(", ")));
                    }
                }
                s
            }
            StatementKind::Delete => {
                let keys: Vec<String> = (0..rows).map(|_| self.params(&self.key, &mut n)).collect();
                format!("DELETE FROM {} WHERE ({}) IN ({})", self.table, self.column_list(&self.key), keys.join(", "))
            }
        }
    }
}

/// A change to one key, as buffered.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The row, inserted or replacing the row of its key.
    Upsert(Vec<Value>),
    /// The key's row removed (the values of the key columns).
    Delete(Vec<Value>),
}

/// Buffered changes by key: the last change per key wins, so a batch holds at most
/// one change per key and the order of keys does not matter.
#[derive(Debug, Default)]
pub struct Coalesced {
    index: HashMap<Vec<u8>, usize>,
    changes: Vec<Change>,
}

impl Coalesced {
    pub fn push(&mut self, key: Vec<u8>, change: Change) {
        match self.index.get(&key) {
            Some(&i) => self.changes[i] = change,
            None => {
                self.index.insert(key, self.changes.len());
                self.changes.push(change);
            }
        }
    }
    pub fn len(&self) -> usize {
        self.changes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    /// The upserted rows and the deleted keys.
    pub fn split(&self) -> (Vec<&[Value]>, Vec<&[Value]>) {
        let mut up = Vec::new();
        let mut del = Vec::new();
        for c in &self.changes {
            match c {
                Change::Upsert(r) => up.push(r.as_slice()),
                Change::Delete(k) => del.push(k.as_slice()),
            }
        }
        (up, del)
    }
    pub fn clear(&mut self) {
        self.index.clear();
        self.changes.clear();
    }
}

/// The key of a row: an encoding of its key columns' values.
pub fn key_of(row: &[Value], key: &[usize]) -> Vec<u8> {
    let mut b = Vec::new();
    for &k in key {
        row[k].key_bytes(&mut b);
    }
    b
}

/// Chunk sizes for `n` rows: full chunks of `per`, then the rest in powers of two
/// (so a sink prepares at most a few distinct statements per kind).
pub fn chunks(n: usize, per: usize) -> Vec<usize> {
    let per = per.max(1);
    let mut v = vec![per; n / per];
    let mut rest = n % per;
    while rest > 0 {
        let p = 1usize << (usize::BITS - 1 - rest.leading_zeros());
        v.push(p);
        rest -= p;
    }
    v
}

enum Buffer {
    Append(Vec<Vec<Value>>),
    Upsert(Coalesced),
}

/// One subtask's sink.
pub struct PgSink {
    cfg: PgConfig,
    shape: TableShape,
    client: Option<Client>,
    statements: HashMap<(StatementKind, usize), Statement>,
    buffer: Buffer,
    /// changes received since the last flush (before coalescing)
    pending: usize,
    oldest: Option<Instant>,
    subtask: u32,
    /// rows written, flushes (for the log at the end)
    written: u64,
    flushes: u64,
}

impl PgSink {
    pub fn new(cfg: PgConfig, shape: TableShape) -> Self {
        let buffer = if shape.key.is_empty() { Buffer::Append(Vec::new()) } else { Buffer::Upsert(Coalesced::default()) };
        PgSink { cfg, shape, client: None, statements: HashMap::new(), buffer, pending: 0, oldest: None, subtask: 0, written: 0, flushes: 0 }
    }

    fn statement_error(&self, kind: StatementKind, rows: usize, what: &str, e: &postgres::Error) -> PgError {
        PgError::Statement {
            connector: self.cfg.connector.clone(),
            table: self.cfg.table.clone(),
            table_name: self.cfg.table_name.clone(),
            statement: format!("{what}{} of {rows} row{}", kind.describe(), if rows == 1 { "" } else { "s" }),
            message: describe(e),
            retryable: is_retryable(e),
        }
    }

    fn connect(&mut self) -> Result<(), PgError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        self.statements.clear();
        let other = |message: String| PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message };
        let config = self.cfg.connect_config().map_err(other)?;
        let client = config.connect(NoTls).map_err(|e| PgError::Connect {
            connector: self.cfg.connector.clone(),
            table: self.cfg.table.clone(),
            target: self.cfg.target.clone(),
            message: describe(&e),
            retryable: is_retryable(&e),
        })?;
        debug!(table = %self.cfg.table, target = %self.cfg.target, subtask = self.subtask, "postgres sink connected");
        self.client = Some(client);
        Ok(())
    }

    fn kinds(&self) -> &'static [StatementKind] {
        if self.shape.key.is_empty() { &[StatementKind::Insert] } else { &[StatementKind::Upsert, StatementKind::Delete] }
    }

    /// Connects and prepares a one-row statement of each kind: a missing table or
    /// column, or a primary key without a unique constraint, fails here.
    fn check_table(&mut self) -> Result<(), PgError> {
        self.connect()?;
        for &kind in self.kinds() {
            self.prepared(kind, 1, "preparing ")?;
        }
        if !self.shape.key.is_empty() {
            // ON CONFLICT needs a unique index on exactly the key columns (PostgreSQL
            // only notices when a row conflicts, so check now)
            let mut key: Vec<String> = self.shape.key.iter().map(|&k| self.shape.columns[k].clone()).collect();
            key.sort();
            let sql = "SELECT 1 FROM pg_index i WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indpred IS NULL \
                       AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = $2::text[] \
                       AND i.indnkeyatts = cardinality($2::text[])";
            let table = self.shape.table.clone();
            let client = self.client.as_mut().ok_or_else(|| PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message: "not connected".into() })?;
            let found = client.query(sql, &[&table, &key]).map_err(|e| self.statement_error(StatementKind::Upsert, 0, "checking the primary key for ", &e))?;
            if found.is_empty() {
                return Err(PgError::Other {
                    connector: self.cfg.connector.clone(),
                    table: self.cfg.table.clone(),
                    message: format!("the PostgreSQL table {} has no primary key or unique constraint on ({}), which upserts by PRIMARY KEY need (INSERT ... ON CONFLICT)", self.cfg.table_name, key.join(", ")),
                });
            }
        }
        Ok(())
    }

    fn prepared(&mut self, kind: StatementKind, rows: usize, what: &str) -> Result<Statement, PgError> {
        if let Some(s) = self.statements.get(&(kind, rows)) {
            return Ok(s.clone());
        }
        let sql = self.shape.sql(kind, rows);
        let client = self.client.as_mut().ok_or_else(|| PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message: "not connected".into() })?;
        match client.prepare(&sql) {
            Ok(s) => {
                self.statements.insert((kind, rows), s.clone());
                Ok(s)
            }
            Err(e) => Err(self.statement_error(kind, rows, what, &e)),
        }
    }

    /// Runs `f` with retries: a retryable failure waits (exponential backoff),
    /// reconnects and tries again, up to `sink.max-retries` times.
    fn with_retries(&mut self, what: &str, mut f: impl FnMut(&mut Self) -> Result<(), PgError>) -> Result<(), PgError> {
        let mut attempt = 0u32;
        loop {
            match f(self) {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempt < self.cfg.max_retries => {
                    let wait = self.cfg.retry_backoff.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
                    attempt += 1;
                    warn!(table = %self.cfg.table, subtask = self.subtask, attempt, max_retries = self.cfg.max_retries, error = %e, "postgres sink: {what} failed, retrying in {wait:?}");
                    self.client = None;
                    self.statements.clear();
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write_once(&mut self) -> Result<(), PgError> {
        self.connect()?;
        // the statements of this flush: deletes, then upserts (their keys are
        // disjoint after coalescing, so the order does not matter) or inserts
        let counts: Vec<(StatementKind, usize)> = match &self.buffer {
            Buffer::Append(r) => vec![(StatementKind::Insert, r.len())],
            Buffer::Upsert(c) => {
                let (up, del) = c.split();
                vec![(StatementKind::Delete, del.len()), (StatementKind::Upsert, up.len())]
            }
        };
        let mut sizes = Vec::new();
        for (kind, count) in counts {
            sizes.extend(chunks(count, self.shape.rows_per_statement(kind)).into_iter().map(|n| (kind, n)));
        }
        let mut stmts = Vec::with_capacity(sizes.len());
        for &(kind, n) in &sizes {
            stmts.push(self.prepared(kind, n, "preparing ")?);
        }
        let (inserts, upserts, deletes): (Vec<&[Value]>, Vec<&[Value]>, Vec<&[Value]>) = match &self.buffer {
            Buffer::Append(r) => (r.iter().map(Vec::as_slice).collect(), Vec::new(), Vec::new()),
            Buffer::Upsert(c) => {
                let (up, del) = c.split();
                (Vec::new(), up, del)
            }
        };
        let Some(client) = self.client.as_mut() else {
            return Err(PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message: "not connected".into() });
        };
        let mut failed: Option<(StatementKind, usize, &str, postgres::Error)> = None;
        match client.transaction() {
            Err(e) => failed = Some((sizes.first().map_or(StatementKind::Insert, |s| s.0), 0, "starting the transaction for ", e)),
            Ok(mut tx) => {
                let mut at = [0usize; 3];
                for (&(kind, n), stmt) in sizes.iter().zip(&stmts) {
                    let (rows, at) = match kind {
                        StatementKind::Insert => (&inserts, &mut at[0]),
                        StatementKind::Upsert => (&upserts, &mut at[1]),
                        StatementKind::Delete => (&deletes, &mut at[2]),
                    };
                    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = rows[*at..*at + n].iter().flat_map(|r| r.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync))).collect();
                    *at += n;
                    if let Err(e) = tx.execute(stmt, &params) {
                        failed = Some((kind, n, "", e));
                        break;
                    }
                }
                if failed.is_none() {
                    if let Err(e) = tx.commit() {
                        failed = Some((sizes.first().map_or(StatementKind::Insert, |s| s.0), 0, "committing ", e));
                    }
                }
            }
        }
        match failed {
            Some((kind, n, what, e)) => Err(self.statement_error(kind, n, what, &e)),
            None => Ok(()),
        }
    }

    /// Writes everything buffered (one transaction), with retries.
    fn flush_now(&mut self) -> Result<(), ConnectorError> {
        let rows = match &self.buffer {
            Buffer::Append(r) => r.len(),
            Buffer::Upsert(c) => c.len(),
        };
        if rows == 0 {
            self.pending = 0;
            self.oldest = None;
            return Ok(());
        }
        let started = Instant::now();
        self.with_retries("writing", |s| s.write_once())?;
        match &mut self.buffer {
            Buffer::Append(r) => r.clear(),
            Buffer::Upsert(c) => c.clear(),
        }
        self.written += rows as u64;
        self.flushes += 1;
        debug!(table = %self.cfg.table, subtask = self.subtask, rows, changes = self.pending, took = ?started.elapsed(), "postgres sink flushed");
        self.pending = 0;
        self.oldest = None;
        Ok(())
    }

    fn add_batch(&mut self, b: &ChangeBatch) -> Result<(), ConnectorError> {
        let batch: &RecordBatch = &b.rows.0;
        let cols = batch.columns();
        if cols.len() != self.shape.columns.len() {
            return Err(PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message: format!("a batch has {} columns, the table {}", cols.len(), self.shape.columns.len()) }.into());
        }
        for i in 0..batch.num_rows() {
            let kind = b.kind(i);
            if kind == RowKind::UpdateBefore && !self.shape.key.is_empty() {
                continue; // the +U that follows replaces the row
            }
            let row = cols
                .iter()
                .enumerate()
                .map(|(c, a)| value(a.as_ref(), i).map_err(|m| format!("column '{}': {m}", self.shape.columns[c])))
                .collect::<Result<Vec<Value>, String>>()
                .map_err(|message| PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message })?;
            match &mut self.buffer {
                Buffer::Append(rows) => {
                    if !kind.is_accumulate() {
                        return Err(PgError::Other {
                            connector: self.cfg.connector.clone(),
                            table: self.cfg.table.clone(),
                            message: format!("a {} row reached a table without a primary key (append-only); declare PRIMARY KEY (...) NOT ENFORCED to write updates", kind.short()),
                        }
                        .into());
                    }
                    rows.push(row);
                }
                Buffer::Upsert(c) => {
                    let key = key_of(&row, &self.shape.key);
                    let change = if kind.is_accumulate() { Change::Upsert(row) } else { Change::Delete(self.shape.key.iter().map(|&k| row[k].clone()).collect()) };
                    c.push(key, change);
                }
            }
            self.pending += 1;
            self.oldest.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    fn due(&self) -> bool {
        (self.cfg.max_rows > 0 && self.pending >= self.cfg.max_rows) || self.cfg.interval.zip(self.oldest).is_some_and(|(i, o)| o.elapsed() >= i)
    }
}

impl Sink<ChangeBatch> for PgSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        self.subtask = ctx.subtask;
        self.with_retries("connecting", |s| s.check_table())?;
        info!(table = %self.cfg.table, target = %self.cfg.target, table_name = %self.cfg.table_name, subtask = ctx.subtask, mode = if self.shape.key.is_empty() { "append" } else { "upsert" }, "postgres sink opened");
        Ok(())
    }

    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        for r in batch {
            self.add_batch(&r.value)?;
            if self.cfg.max_rows > 0 && self.pending >= self.cfg.max_rows {
                self.flush_now()?;
            }
        }
        if self.due() { self.flush_now() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.due() { self.flush_now() } else { Ok(()) }
    }

    fn pre_commit(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        self.flush_now()?;
        if checkpoint_id == u64::MAX {
            debug!(table = %self.cfg.table, subtask = self.subtask, rows = self.written, flushes = self.flushes, "postgres sink: end of input");
        }
        Ok(None)
    }
}

/// Adds the sink of a `postgres` table to `args.stream`.
pub fn add(opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
    let cfg = PgConfig::from_options(opts)?;
    let shape = shape(&cfg, &args.schema)?;
    let h = args.stream.sink(args.name, move |_ctx| PgSink::new(cfg.clone(), shape.clone())).uid(args.uid);
    if let Some(p) = args.parallelism {
        h.parallelism(p);
    }
    Ok(())
}

/// The columns and key of the sink for `schema`.
pub fn shape(cfg: &PgConfig, schema: &arrow::datatypes::Schema) -> Result<TableShape, String> {
    let types = schema.fields().iter().map(|f| PgType::of(f)).collect::<Result<Vec<_>, _>>().map_err(|m| format!("connector '{}': {m}", cfg.connector))?;
    let key = cfg.primary_key.iter().map(|k| schema.index_of(k).map_err(|_| format!("connector '{}': the primary key column '{k}' is not a column of the table", cfg.connector))).collect::<Result<Vec<_>, _>>()?;
    Ok(TableShape { table: cfg.quoted_table.clone(), columns: schema.fields().iter().map(|f| f.name().clone()).collect(), types, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn shape(key: Vec<usize>) -> TableShape {
        TableShape { table: "\"public\".\"t\"".into(), columns: vec!["id".into(), "name".into(), "n".into()], types: vec![PgType::Int8, PgType::Text, PgType::Numeric], key }
    }

    #[test]
    fn statements() {
        assert_eq!(shape(vec![]).sql(StatementKind::Insert, 2), "INSERT INTO \"public\".\"t\" (\"id\", \"name\", \"n\") VALUES ($1::int8, $2::text, $3::text::numeric), ($4::int8, $5::text, $6::text::numeric)");
        assert_eq!(
            shape(vec![0]).sql(StatementKind::Upsert, 1),
            "INSERT INTO \"public\".\"t\" (\"id\", \"name\", \"n\") VALUES ($1::int8, $2::text, $3::text::numeric) ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\", \"n\" = EXCLUDED.\"n\""
        );
        assert_eq!(shape(vec![0, 1]).sql(StatementKind::Delete, 2), "DELETE FROM \"public\".\"t\" WHERE (\"id\", \"name\") IN (($1::int8, $2::text), ($3::int8, $4::text))");
        let all_key = TableShape { key: vec![0, 1, 2], ..shape(vec![]) };
        assert!(all_key.sql(StatementKind::Upsert, 1).ends_with("ON CONFLICT (\"id\", \"name\", \"n\") DO NOTHING"));
    }

    #[test]
    fn statement_sizes_respect_the_parameter_limit() {
        let wide = TableShape { table: "t".into(), columns: (0..1000).map(|i| format!("c{i}")).collect(), types: vec![PgType::Int8; 1000], key: vec![0] };
        assert_eq!(wide.rows_per_statement(StatementKind::Upsert), 65);
        assert_eq!(wide.rows_per_statement(StatementKind::Delete), MAX_ROWS_PER_STATEMENT);
        assert_eq!(chunks(0, 512), Vec::<usize>::new());
        assert_eq!(chunks(1100, 512), vec![512, 512, 64, 8, 4]);
        assert_eq!(chunks(7, 512), vec![4, 2, 1]);
    }

    /// A change of the model: key, kind, value.
    fn apply(table: &mut BTreeMap<i64, i64>, key: i64, upsert: bool, v: i64) {
        if upsert {
            table.insert(key, v);
        } else {
            table.remove(&key);
        }
    }

    proptest! {
        /// Coalescing any changelog by key, then applying the coalesced changes in any
        /// order, gives the table that applying the whole changelog in order gives.
        #[test]
        fn coalescing_preserves_the_result(initial in proptest::collection::btree_map(0i64..8, any::<i64>(), 0..8), log in proptest::collection::vec((0i64..8, any::<bool>(), any::<i64>()), 0..64), reverse in any::<bool>()) {
            let mut whole = initial.clone();
            for &(k, up, v) in &log {
                apply(&mut whole, k, up, v);
            }
            let mut c = Coalesced::default();
            for &(k, up, v) in &log {
                let row = vec![Value::I64(k), Value::I64(v)];
                let key = key_of(&row, &[0]);
                c.push(key, if up { Change::Upsert(row) } else { Change::Delete(vec![Value::I64(k)]) });
            }
            let keys: std::collections::BTreeSet<i64> = log.iter().map(|l| l.0).collect();
            prop_assert_eq!(c.len(), keys.len(), "one change per key");
            let mut changes: Vec<&Change> = c.changes.iter().collect();
            if reverse {
                changes.reverse();
            }
            let mut coalesced = initial;
            for ch in changes {
                match ch {
                    Change::Upsert(r) => match (&r[0], &r[1]) {
                        (Value::I64(k), Value::I64(v)) => apply(&mut coalesced, *k, true, *v),
                        _ => unreachable!(),
                    },
                    Change::Delete(k) => match &k[0] {
                        Value::I64(k) => apply(&mut coalesced, *k, false, 0),
                        _ => unreachable!(),
                    },
                }
            }
            prop_assert_eq!(coalesced, whole);
        }
    }
}
