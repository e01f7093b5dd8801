//! `'format' = 'json'`: JSON lines, read into the table's physical columns by name
//! (Arrow's JSON decoder) and written one object per row.

use std::io::{BufRead, BufReader};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir::connector::{ConnectorError, SourceContext};

use super::{Input, Position};
use crate::registry::BatchSource;

/// The rows of `batch` as JSON lines (`\n` after each).
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for r in crate::rows::json_rows(batch)? {
        out.extend_from_slice(r.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

/// Reads JSON lines into batches of the table's physical schema; the files of the
/// path are read as [`Position`] says, and the position (file, line) is checkpointed.
pub struct JsonFileSource {
    path: Input,
    schema: SchemaRef,
    batch_rows: usize,
    pos: Position,
    reader: Option<Box<dyn BufRead + Send>>,
    buf: String,
}

impl JsonFileSource {
    /// Reads `path`: a local path (`PathBuf`) or an [`Input`].
    pub fn new(path: impl Into<Input>, schema: SchemaRef, batch_rows: usize) -> Self {
        JsonFileSource { path: path.into(), schema, batch_rows: batch_rows.max(1), pos: Position::default(), reader: None, buf: String::new() }
    }

    fn decode(&self, lines: &[(u64, String)]) -> Result<RecordBatch, ConnectorError> {
        let mut d = arrow::json::ReaderBuilder::new(self.schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()))?;
        for (n, l) in lines {
            let r = d.decode(l.as_bytes()).and_then(|_| d.decode(b"\n"));
            if let Err(e) = r {
                return Err(ConnectorError::Parse { what: self.pos.files[self.pos.file].display().to_string(), line: *n, message: e.to_string() });
            }
        }
        match d.flush() {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Ok(RecordBatch::new_empty(self.schema.clone())),
            Err(e) => {
                // find the line
                for (n, l) in lines {
                    let mut one = arrow::json::ReaderBuilder::new(self.schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()))?;
                    if let Err(e) = one.decode(l.as_bytes()).and_then(|_| one.flush()) {
                        return Err(ConnectorError::Parse { what: self.pos.files[self.pos.file].display().to_string(), line: *n, message: e.to_string() });
                    }
                }
                Err(ConnectorError::Other(format!("{}: {e}", self.path.display())))
            }
        }
    }
}

impl BatchSource for JsonFileSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.pos.open(&self.path, ctx)
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.pos.owns() {
            return Ok(None);
        }
        let mut lines = Vec::new();
        let want = max_rows.min(self.batch_rows);
        while lines.len() < want {
            let Some(p) = self.pos.current() else { break };
            if self.reader.is_none() {
                self.reader = Some(Box::new(BufReader::with_capacity(64 << 10, p.open()?)));
            }
            self.buf.clear();
            let n = self.reader.as_mut().expect("opened").read_line(&mut self.buf).map_err(|e| ConnectorError::io(format!("reading {}", p.display()), e))?;
            if n == 0 {
                if !lines.is_empty() {
                    break; // decode this file's lines first (errors name the file)
                }
                self.reader = None;
                self.pos.next_file();
                continue;
            }
            if !self.pos.count_record() {
                continue;
            }
            let l = self.buf.trim();
            if !l.is_empty() {
                lines.push((self.pos.read, l.to_string()));
            }
        }
        if lines.is_empty() {
            return Ok(None);
        }
        self.decode(&lines).map(Some)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.pos.snapshot())
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.pos.restore(splits)
    }
}
