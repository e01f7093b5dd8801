//! A `postgres` table as the dimension of a lookup join: per probe key one
//! `SELECT ... WHERE k = $1 [AND ...]`, with Flink's JDBC lookup cache
//! (`lookup.cache.max-rows` keys, each kept for `lookup.cache.ttl`; no cache without
//! `lookup.cache.max-rows`). Missing keys are cached too (as no rows). The join's
//! subtasks in a process share one connection and one cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use weir::connector::ConnectorError;

use super::config::{PgConfig, parse_duration, quote_ident};
use super::error::{PgError, describe};
use super::types::{PgType, Value, column, value};
use crate::registry::{LookupRows, LookupSource, TableOptions};

struct State {
    client: Option<Client>,
    /// key bytes -> (when it was read, its rows)
    cache: HashMap<Vec<u8>, (Instant, RecordBatch)>,
}

pub struct PgLookup {
    cfg: PgConfig,
    schema: SchemaRef,
    sql: String,
    max_rows: usize,
    ttl: Option<Duration>,
    state: Mutex<State>,
}

/// The statement looking up one key.
pub fn lookup_sql(cfg: &PgConfig, schema: &SchemaRef, types: &[PgType], key_columns: &[usize]) -> String {
    let cols: Vec<String> = schema.fields().iter().zip(types).map(|(f, t)| format!("{}{} AS {}", quote_ident(f.name()), t.select_cast(), quote_ident(f.name()))).collect();
    let conds: Vec<String> = key_columns.iter().enumerate().map(|(n, c)| format!("{} = ${}{}", quote_ident(schema.field(*c).name()), n + 1, types[*c].param_cast())).collect();
    format!("SELECT {} FROM {} WHERE {}", cols.join(", "), cfg.quoted_table, conds.join(" AND "))
}

impl PgLookup {
    pub fn new(opts: &TableOptions, schema: SchemaRef, key_columns: &[usize]) -> Result<PgLookup, String> {
        let cfg = PgConfig::from_options(opts)?;
        let types = schema.fields().iter().map(|f| PgType::of(f)).collect::<Result<Vec<_>, _>>().map_err(|m| format!("connector '{}': {m}", cfg.connector))?;
        let max_rows: usize = opts.parse("lookup.cache.max-rows")?.unwrap_or(0);
        let ttl = opts.get("lookup.cache.ttl").map(|v| parse_duration(v).map_err(|m| format!("connector '{}': option 'lookup.cache.ttl': {m}", cfg.connector))).transpose()?;
        let sql = lookup_sql(&cfg, &schema, &types, key_columns);
        Ok(PgLookup { cfg, schema, sql, max_rows, ttl, state: Mutex::new(State { client: None, cache: HashMap::new() }) })
    }

    fn other(&self, message: String) -> ConnectorError {
        PgError::Other { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), message }.into()
    }

    fn query(&self, st: &mut State, key: &[Value]) -> Result<RecordBatch, ConnectorError> {
        if !st.client.as_ref().is_some_and(|c| !c.is_closed()) {
            let config = self.cfg.connect_config().map_err(|m| self.other(m))?;
            let c = config.connect(NoTls).map_err(|e| PgError::Connect { connector: self.cfg.connector.clone(), table: self.cfg.table.clone(), target: self.cfg.target.clone(), message: describe(&e), retryable: false })?;
            st.client = Some(c);
        }
        let client = st.client.as_mut().ok_or_else(|| self.other("not connected".into()))?;
        let params: Vec<&(dyn ToSql + Sync)> = key.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let rows = match client.query(self.sql.as_str(), &params) {
            Ok(r) => r,
            Err(e) => {
                st.client = None;
                return Err(PgError::Statement {
                    connector: self.cfg.connector.clone(),
                    table: self.cfg.table.clone(),
                    table_name: self.cfg.table_name.clone(),
                    statement: "lookup".into(),
                    message: describe(&e),
                    retryable: false,
                }
                .into());
            }
        };
        let cols = self.schema.fields().iter().enumerate().map(|(c, f)| column(&rows, c, f)).collect::<Result<Vec<ArrayRef>, String>>().map_err(|m| self.other(m))?;
        RecordBatch::try_new_with_options(self.schema.clone(), cols, &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()))).map_err(|e| self.other(e.to_string()))
    }
}

impl LookupSource for PgLookup {
    fn lookup(&self, keys: &[ArrayRef]) -> Result<LookupRows, ConnectorError> {
        let n = keys.first().map_or(0, |k| k.len());
        let mut st = self.state.lock().map_err(|_| self.other("a lookup failed before (poisoned)".into()))?;
        let (mut probe_rows, mut found) = (Vec::new(), Vec::new());
        let mut kb = Vec::new();
        for i in 0..n {
            let key: Vec<Value> = keys.iter().map(|k| value(k.as_ref(), i)).collect::<Result<_, _>>().map_err(|m| self.other(format!("the lookup key: {m}")))?;
            if key.contains(&Value::Null) {
                continue;
            }
            kb.clear();
            key.iter().for_each(|v| v.key_bytes(&mut kb));
            let cached = st.cache.get(&kb).filter(|(at, _)| self.ttl.is_none_or(|t| at.elapsed() < t)).map(|(_, b)| b.clone());
            let rows = match cached {
                Some(b) => b,
                None => {
                    let b = self.query(&mut st, &key)?;
                    if self.max_rows > 0 {
                        if st.cache.len() >= self.max_rows
                            && let Some(k) = st.cache.keys().next().cloned()
                        {
                            st.cache.remove(&k);
                        }
                        st.cache.insert(kb.clone(), (Instant::now(), b.clone()));
                    }
                    b
                }
            };
            probe_rows.extend(std::iter::repeat_n(i as u32, rows.num_rows()));
            if rows.num_rows() > 0 {
                found.push(rows);
            }
        }
        let rows = arrow::compute::concat_batches(&self.schema, &found).map_err(|e| self.other(e.to_string()))?;
        Ok(LookupRows { probe_rows, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn one_statement_per_key_with_typed_parameters() {
        let o = TableOptions {
            table: "dim".into(),
            connector: "postgres".into(),
            map: [("url", "postgresql://h:5432/db"), ("username", "u"), ("table-name", "public.products"), ("lookup.cache.max-rows", "10"), ("lookup.cache.ttl", "10 min")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            primary_key: vec![],
            partition_keys: vec![],
        };
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true), Field::new("region", DataType::Utf8, true)]));
        let l = PgLookup::new(&o, schema, &[0, 2]).unwrap();
        assert_eq!(l.sql, "SELECT \"id\"::int8 AS \"id\", \"name\"::text AS \"name\", \"region\"::text AS \"region\" FROM \"public\".\"products\" WHERE \"id\" = $1::int8 AND \"region\" = $2::text");
        assert_eq!((l.max_rows, l.ttl), (10, Some(Duration::from_secs(600))));
    }
}
