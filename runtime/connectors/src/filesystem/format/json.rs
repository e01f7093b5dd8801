//! `'format' = 'json'`: JSON lines, read into the table's physical columns by name
//! (Arrow's JSON decoder) and written one object per row.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir::connector::{ConnectorError, SourceContext};

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
/// path are read by subtask 0 in name order; the position (file, line) is checkpointed.
pub struct JsonFileSource {
    path: PathBuf,
    schema: SchemaRef,
    batch_rows: usize,
    files: Vec<PathBuf>,
    file: usize,
    line: u64,
    skip: (usize, u64),
    reader: Option<Box<dyn BufRead + Send>>,
    owns: Option<bool>,
    buf: String,
}

impl JsonFileSource {
    pub fn new(path: PathBuf, schema: SchemaRef, batch_rows: usize) -> Self {
        JsonFileSource { path, schema, batch_rows: batch_rows.max(1), files: Vec::new(), file: 0, line: 0, skip: (0, 0), reader: None, owns: None, buf: String::new() }
    }

    fn decode(&self, lines: &[(u64, String)]) -> Result<RecordBatch, ConnectorError> {
        let mut d = arrow::json::ReaderBuilder::new(self.schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()))?;
        for (n, l) in lines {
            let r = d.decode(l.as_bytes()).and_then(|_| d.decode(b"\n"));
            if let Err(e) = r {
                return Err(ConnectorError::Parse { what: self.files[self.file].display().to_string(), line: *n, message: e.to_string() });
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
                        return Err(ConnectorError::Parse { what: self.files[self.file].display().to_string(), line: *n, message: e.to_string() });
                    }
                }
                Err(ConnectorError::Other(format!("{}: {e}", self.path.display())))
            }
        }
    }
}

impl BatchSource for JsonFileSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        if !self.owns.unwrap_or(ctx.subtask == 0) {
            return Ok(());
        }
        self.owns = Some(true);
        self.files = super::super::list_files(&self.path)?;
        self.file = self.skip.0;
        Ok(())
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if self.owns != Some(true) {
            return Ok(None);
        }
        let mut lines = Vec::new();
        let want = max_rows.min(self.batch_rows);
        while lines.len() < want {
            if self.file >= self.files.len() {
                break;
            }
            if self.reader.is_none() {
                let p = &self.files[self.file];
                let f = std::fs::File::open(p).map_err(|e| ConnectorError::io(format!("cannot open {}", p.display()), e))?;
                self.reader = Some(Box::new(BufReader::new(f)));
                self.line = 0;
            }
            self.buf.clear();
            let n = self.reader.as_mut().expect("opened").read_line(&mut self.buf).map_err(|e| ConnectorError::io(format!("reading {}", self.files[self.file].display()), e))?;
            if n == 0 {
                if !lines.is_empty() {
                    break; // decode this file's lines first (errors name the file)
                }
                self.reader = None;
                self.file += 1;
                continue;
            }
            self.line += 1;
            if self.file == self.skip.0 && self.line <= self.skip.1 {
                continue;
            }
            let l = self.buf.trim();
            if !l.is_empty() {
                lines.push((self.line, l.to_string()));
            }
        }
        if lines.is_empty() {
            return Ok(None);
        }
        self.decode(&lines).map(Some)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        if self.owns != Some(true) {
            return Ok(Vec::new());
        }
        let pos = if self.file == self.skip.0 { (self.file as u64, self.line.max(self.skip.1)) } else { (self.file as u64, self.line) };
        let mut b = pos.0.to_le_bytes().to_vec();
        b.extend_from_slice(&pos.1.to_le_bytes());
        Ok(vec![b])
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.owns = Some(!splits.is_empty());
        if let Some(s) = splits.first() {
            if s.len() != 16 {
                return Err(ConnectorError::Other("bad filesystem source position in the checkpoint".into()));
            }
            let f = u64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
            let l = u64::from_le_bytes(s[8..].try_into().expect("8 bytes"));
            self.skip = (f as usize, l);
        }
        Ok(())
    }
}
