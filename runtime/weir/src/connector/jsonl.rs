//! JSON lines: one record per line, from/to files or stdin/stdout.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{ConnectorError, Sink, SinkContext, Source, SourceContext, SourceOutput, SourcePoll};
use crate::record::Rec;

/// Reads lines of a file (or stdin for `-`) and parses each with `parse`.
/// Only subtask 0 reads; the position (line number) is checkpointed.
pub struct LinesSource<T, P> {
    path: PathBuf,
    parse: P,
    reader: Option<Box<dyn BufRead + Send>>,
    /// whether this subtask reads the file (the file is one split)
    owns: Option<bool>,
    line_no: u64,
    skip: u64,
    buf: String,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T, P: FnMut(&str) -> Result<T, String> + Send> LinesSource<T, P> {
    pub fn new(path: impl AsRef<Path>, parse: P) -> Self {
        LinesSource { path: path.as_ref().to_path_buf(), parse, reader: None, owns: None, line_no: 0, skip: 0, buf: String::new(), _t: std::marker::PhantomData }
    }
}

impl<T: crate::Data, P: FnMut(&str) -> Result<T, String> + Send> Source<T> for LinesSource<T, P> {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        if !self.owns.unwrap_or(ctx.subtask == 0) {
            return Ok(());
        }
        self.owns = Some(true);
        let r: Box<dyn Read + Send> = if self.path.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(&self.path).map_err(|e| ConnectorError::io(format!("cannot open {}", self.path.display()), e))?)
        };
        self.reader = Some(Box::new(BufReader::with_capacity(1 << 20, r)));
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, ConnectorError> {
        let Some(reader) = self.reader.as_mut() else { return Ok(SourcePoll::Finished) };
        while out.remaining() > 0 {
            self.buf.clear();
            let n = reader
                .read_line(&mut self.buf)
                .map_err(|e| ConnectorError::io(format!("reading {}", self.path.display()), e))?;
            if n == 0 {
                return Ok(SourcePoll::Finished);
            }
            self.line_no += 1;
            if self.line_no <= self.skip {
                continue;
            }
            let line = self.buf.trim();
            if line.is_empty() {
                continue;
            }
            let v = (self.parse)(line).map_err(|message| ConnectorError::Parse {
                what: self.path.display().to_string(),
                line: self.line_no,
                message,
            })?;
            out.collect(v);
        }
        Ok(SourcePoll::Ready)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(if self.owns == Some(true) { vec![self.line_no.max(self.skip).to_le_bytes().to_vec()] } else { Vec::new() })
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.owns = Some(!splits.is_empty());
        if let Some(pos) = splits.first() {
            let b: [u8; 8] = pos.as_slice().try_into().map_err(|_| ConnectorError::Other("bad lines-source position in the checkpoint".into()))?;
            self.skip = u64::from_le_bytes(b);
        }
        Ok(())
    }
}

/// Writes each record as one JSON line to a file; with parallelism > 1, subtask `i`
/// writes `<path>.<i>` unless `single` was asked for (then run the sink with parallelism 1).
pub struct JsonLinesSink {
    path: PathBuf,
    w: Option<BufWriter<Box<dyn Write + Send>>>,
    buf: Vec<u8>,
}

impl JsonLinesSink {
    /// `path` = `-` writes to stdout.
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesSink { path: path.as_ref().to_path_buf(), w: None, buf: Vec::with_capacity(1 << 16) }
    }

    fn target(&self, ctx: &SinkContext) -> PathBuf {
        if ctx.parallelism > 1 {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{}", ctx.subtask));
            PathBuf::from(p)
        } else {
            self.path.clone()
        }
    }
}

impl<T: serde::Serialize> Sink<T> for JsonLinesSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        let w: Box<dyn Write + Send> = if self.path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            let p = self.target(ctx);
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| ConnectorError::io(format!("cannot create {}", dir.display()), e))?;
            }
            Box::new(File::create(&p).map_err(|e| ConnectorError::io(format!("cannot create {}", p.display()), e))?)
        };
        self.w = Some(BufWriter::with_capacity(1 << 20, w));
        Ok(())
    }

    fn write(&mut self, batch: &[Rec<T>]) -> Result<(), ConnectorError> {
        self.buf.clear();
        for r in batch {
            serde_json::to_writer(&mut self.buf, &r.value)
                .map_err(|e| ConnectorError::Other(format!("cannot write a record as JSON to {}: {e}", self.path.display())))?;
            self.buf.push(b'\n');
        }
        if let Some(w) = self.w.as_mut() {
            w.write_all(&self.buf).map_err(|e| ConnectorError::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        if let Some(w) = self.w.as_mut() {
            w.flush().map_err(|e| ConnectorError::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }
}
