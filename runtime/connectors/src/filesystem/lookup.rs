//! The `filesystem` table as the dimension of a lookup join (as Flink's filesystem
//! lookup): the whole file (or directory) is read at the first lookup into a hash
//! map by the join key, shared by the join's subtasks, and read again once it is
//! older than `lookup.join.cache.ttl` (default 60 min).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use weir::connector::{ConnectorError, SourceContext};

use crate::registry::{BatchSource, LookupRows, LookupSource, SourceFactory};

struct Loaded {
    at: Instant,
    rows: RecordBatch,
    conv: RowConverter,
    /// key (row format) -> the rows with it, in file order
    by_key: HashMap<Vec<u8>, Vec<u32>>,
}

pub struct FileLookup {
    name: String,
    source: SourceFactory,
    schema: SchemaRef,
    key_columns: Vec<usize>,
    ttl: Duration,
    loaded: RwLock<Option<Loaded>>,
}

impl FileLookup {
    pub fn new(name: String, source: SourceFactory, schema: SchemaRef, key_columns: Vec<usize>, ttl: Duration) -> Self {
        FileLookup { name, source, schema, key_columns, ttl, loaded: RwLock::new(None) }
    }

    fn other(&self, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Other(format!("lookup table '{}': {e}", self.name))
    }

    fn load(&self) -> Result<Loaded, ConnectorError> {
        let ctx = SourceContext { subtask: 0, parallelism: 1 };
        let mut src: Box<dyn BatchSource> = (self.source)(&ctx);
        src.open(&ctx)?;
        let mut batches = Vec::new();
        while let Some(b) = src.next_batch(8192)? {
            if b.num_rows() > 0 {
                batches.push(b);
            }
        }
        let rows = concat_batches(&self.schema, &batches).map_err(|e| self.other(e))?;
        let key_cols: Vec<ArrayRef> = self.key_columns.iter().map(|c| rows.column(*c).clone()).collect();
        let conv = RowConverter::new(key_cols.iter().map(|c| SortField::new(c.data_type().clone())).collect()).map_err(|e| self.other(e))?;
        let keys = conv.convert_columns(&key_cols).map_err(|e| self.other(e))?;
        let mut by_key: HashMap<Vec<u8>, Vec<u32>> = HashMap::new();
        for i in 0..rows.num_rows() {
            if key_cols.iter().any(|c| c.is_null(i)) {
                continue; // a null key matches nothing
            }
            by_key.entry(keys.row(i).as_ref().to_vec()).or_default().push(i as u32);
        }
        Ok(Loaded { at: Instant::now(), rows, conv, by_key })
    }

    fn find(&self, l: &Loaded, keys: &[ArrayRef]) -> Result<LookupRows, ConnectorError> {
        let n = keys.first().map_or(0, |k| k.len());
        let probe = l.conv.convert_columns(keys).map_err(|e| self.other(format!("the probe keys: {e}")))?;
        let (mut probe_rows, mut found) = (Vec::new(), Vec::new());
        for i in 0..n {
            if keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            if let Some(rows) = l.by_key.get(probe.row(i).as_ref()) {
                for r in rows {
                    probe_rows.push(i as u32);
                    found.push(*r);
                }
            }
        }
        let rows = take_record_batch(&l.rows, &UInt32Array::from(found)).map_err(|e| self.other(e))?;
        Ok(LookupRows { probe_rows, rows })
    }
}

impl LookupSource for FileLookup {
    fn lookup(&self, keys: &[ArrayRef]) -> Result<LookupRows, ConnectorError> {
        {
            let g = self.loaded.read().map_err(|_| self.other("a lookup failed before (poisoned cache)"))?;
            if let Some(l) = g.as_ref().filter(|l| l.at.elapsed() < self.ttl) {
                return self.find(l, keys);
            }
        }
        let mut g = self.loaded.write().map_err(|_| self.other("a lookup failed before (poisoned cache)"))?;
        if !g.as_ref().is_some_and(|l| l.at.elapsed() < self.ttl) {
            *g = Some(self.load()?);
        }
        let l = g.as_ref().ok_or_else(|| self.other("not loaded"))?;
        self.find(l, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filesystem::format::json::JsonFileSource;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    #[test]
    fn finds_every_row_of_a_key_and_reloads_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dim.json");
        std::fs::write(&file, "{\"k\": 1, \"v\": 10}\n{\"k\": 2, \"v\": 20}\n{\"k\": 1, \"v\": 11}\n{\"k\": null, \"v\": 0}\n").unwrap();
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("v", DataType::Int64, true)]));
        let (f, s) = (file.clone(), schema.clone());
        let factory: SourceFactory = Arc::new(move |_: &SourceContext| Box::new(JsonFileSource::new(f.clone(), s.clone(), 100)) as Box<dyn BatchSource>);
        let l = FileLookup::new("dim".into(), factory, schema, vec![0], Duration::from_millis(200));
        let keys: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![Some(2), None, Some(1), Some(3)]))];
        let r = l.lookup(&keys).unwrap();
        assert_eq!(r.probe_rows, vec![0, 2, 2]);
        assert_eq!(r.rows.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![20, 10, 11]);
        std::fs::write(&file, "{\"k\": 3, \"v\": 30}\n").unwrap();
        assert_eq!(l.lookup(&keys).unwrap().probe_rows, vec![0, 2, 2], "cached");
        std::thread::sleep(Duration::from_millis(250));
        let r = l.lookup(&keys).unwrap();
        assert_eq!((r.probe_rows, r.rows.column(1).as_primitive::<Int64Type>().values().to_vec()), (vec![3], vec![30]), "reloaded");
    }
}
