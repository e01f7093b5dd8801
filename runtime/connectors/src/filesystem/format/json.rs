//! `'format' = 'json'`: JSON lines, read into the table's physical columns by name
//! (Arrow's JSON decoder) and written one object per row. A line that does not parse
//! (not JSON, a value of the wrong type, a `NOT NULL` column missing, not UTF-8) goes
//! where the table's bad-input policy says ([`crate::bad_input`]; Flink's
//! `json.ignore-parse-errors` = `'true'` is `'skip'`).

use std::io::{BufRead, BufReader};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir::connector::{ConnectorError, SourceContext};

use super::{Input, Position};
use crate::bad_input::{BadInput, BadInputConfig};
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
    buf: Vec<u8>,
    bad: BadInput,
}

impl JsonFileSource {
    /// Reads `path`: a local path (`PathBuf`) or an [`Input`].
    pub fn new(path: impl Into<Input>, schema: SchemaRef, batch_rows: usize) -> Self {
        JsonFileSource { path: path.into(), schema, batch_rows: batch_rows.max(1), pos: Position::default(), reader: None, buf: Vec::new(), bad: BadInputConfig::fail("", "filesystem").handler() }
    }

    /// Bad lines as `cfg` says (by default they fail the job).
    pub fn bad_input(mut self, cfg: &BadInputConfig) -> Self {
        self.bad = cfg.handler();
        self
    }

    /// The error of one line, if it does not decode.
    fn line_error(&self, line: &str) -> Result<Option<String>, ConnectorError> {
        let mut one = arrow::json::ReaderBuilder::new(self.schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()))?;
        Ok(one.decode(line.as_bytes()).and_then(|_| one.decode(b"\n")).and_then(|_| one.flush()).err().map(|e| e.to_string()))
    }

    /// The lines as a batch, the bad ones given to the bad-input policy: decoded
    /// together, and one by one only when that fails.
    fn decode_good(&mut self, lines: Vec<(u64, String)>) -> Result<RecordBatch, ConnectorError> {
        if let Ok(b) = self.decode(&lines) {
            return Ok(b);
        }
        let file = self.pos.files[self.pos.file].display().to_string();
        let mut good = Vec::with_capacity(lines.len());
        for (n, l) in lines {
            match self.line_error(&l)? {
                None => good.push((n, l)),
                Some(e) => self.bad.record(&file, n, &e, l.as_bytes())?,
            }
        }
        self.decode(&good)
    }

    fn decode(&self, lines: &[(u64, String)]) -> Result<RecordBatch, ConnectorError> {
        let mut d = arrow::json::ReaderBuilder::new(self.schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()))?;
        let mut failed = None;
        for (_, l) in lines {
            if let Err(e) = d.decode(l.as_bytes()).and_then(|_| d.decode(b"\n")) {
                failed = Some(e);
                break;
            }
        }
        let e = match failed {
            Some(e) => e,
            None => match d.flush() {
                Ok(Some(b)) => return Ok(b),
                Ok(None) => return Ok(RecordBatch::new_empty(self.schema.clone())),
                Err(e) => e,
            },
        };
        // the line that fails alone (a truncated line fails the decoder lines later)
        for (n, l) in lines {
            if let Some(e) = self.line_error(l)? {
                return Err(ConnectorError::Parse { what: self.pos.files[self.pos.file].display().to_string(), line: *n, message: e });
            }
        }
        Err(ConnectorError::Other(format!("{}: {e}", self.path.display())))
    }
}

impl BatchSource for JsonFileSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.pos.open(&self.path, ctx)
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            match self.read_batch(max_rows)? {
                // every record of it was bad (skipped or a dead letter): on to the next ones
                Some(b) if b.num_rows() == 0 && !self.bad.fails() => continue,
                other => return Ok(other),
            }
        }
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.pos.snapshot())
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.pos.restore(splits)
    }
}

impl JsonFileSource {
    fn read_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
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
            let n = self.reader.as_mut().expect("opened").read_until(b'\n', &mut self.buf).map_err(|e| ConnectorError::io(format!("reading {}", p.display()), e))?;
            if n == 0 {
                if !lines.is_empty() {
                    break; // decode this file's lines first (errors name the file)
                }
                self.reader = None;
                self.pos.next_file();
                continue;
            }
            let what = p.display().to_string();
            if !self.pos.count_record() {
                continue;
            }
            let l = match std::str::from_utf8(&self.buf) {
                Ok(l) => l.trim(),
                Err(e) => {
                    let raw = self.buf.trim_ascii_end().to_vec();
                    self.bad.record(&what, self.pos.read, &format!("not UTF-8: {e}"), &raw)?;
                    continue;
                }
            };
            if !l.is_empty() {
                lines.push((self.pos.read, l.to_string()));
            }
        }
        if lines.is_empty() {
            return Ok(None);
        }
        if self.bad.fails() {
            return self.decode(&lines).map(Some);
        }
        self.decode_good(lines).map(Some)
    }
}
