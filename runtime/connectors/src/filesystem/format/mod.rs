//! The file formats of the `filesystem` connector: one module each, with its
//! reader (a [`crate::BatchSource`] over the files of a path) and its encoder.

pub mod csv;
pub mod json;
pub mod parquet;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use weir::connector::{ConnectorError, SourceContext};

use super::options::Format;
use super::store::Bucket;

/// What a file source reads: a local file or directory, or an object or prefix of
/// a bucket. Read as one file, or (a directory, a prefix) as the files in it.
#[derive(Clone, Debug)]
pub enum Input {
    Local(PathBuf),
    Object {
        bucket: Arc<Bucket>,
        path: object_store::path::Path,
        /// a prefix (its objects are read), never one object
        is_prefix: bool,
    },
}

impl From<PathBuf> for Input {
    fn from(p: PathBuf) -> Self {
        Input::Local(p)
    }
}

impl Input {
    /// The path or URL, for messages.
    pub fn display(&self) -> String {
        match self {
            Input::Local(p) => p.display().to_string(),
            Input::Object { bucket, path, is_prefix: true } => bucket.prefix_url(path),
            Input::Object { bucket, path, .. } => bucket.url_of(path),
        }
    }

    /// The files to read, in name order: the file, or the files of the directory
    /// (the objects directly under the prefix; a key that is no object is read as a
    /// prefix), hidden ones and `_SUCCESS` markers left out.
    pub fn files(&self) -> Result<Vec<Input>, ConnectorError> {
        match self {
            Input::Local(p) => Ok(super::list_files(p)?.into_iter().map(Input::Local).collect()),
            Input::Object { bucket, path, is_prefix } => {
                if !is_prefix && bucket.exists(path)? {
                    return Ok(vec![self.clone()]);
                }
                let mut names: Vec<String> = bucket.list(path)?.into_iter().map(|l| l.name).filter(|n| !n.starts_with('.') && n != super::sink::SUCCESS_FILE).collect();
                names.sort();
                names.into_iter().map(|n| Ok(Input::Object { bucket: bucket.clone(), path: Bucket::child(path, &n)?, is_prefix: false })).collect()
            }
        }
    }

    /// Opens the file (the object: streamed from its start).
    pub fn open(&self) -> Result<Box<dyn Read + Send>, ConnectorError> {
        match self {
            Input::Local(p) => Ok(Box::new(std::fs::File::open(p).map_err(|e| ConnectorError::io(format!("cannot open {}", p.display()), e))?)),
            Input::Object { bucket, path, .. } => Ok(Box::new(bucket.read(path)?)),
        }
    }
}

/// The rows of `batch` in `format`, each record ending with a line break.
pub fn encode(format: &Format, batch: &RecordBatch) -> Result<Vec<u8>, String> {
    match format {
        Format::Json => json::encode(batch),
        Format::Csv(o) => csv::encode(batch, o),
        Format::Parquet(_) => Err("'format' = 'parquet' is written as whole part files, not as records".into()),
    }
}

/// Where a file source is in the files of its path: they are read by one subtask
/// (subtask 0 unless a restore says which), in name order; the position (file, records
/// read of it) is checkpointed as 16 bytes, and records before a restored position are
/// skipped when they are read again.
#[derive(Debug, Default)]
pub(crate) struct Position {
    /// the files of the path (listed at open)
    pub files: Vec<Input>,
    /// the index of the file being read
    pub file: usize,
    /// records (JSON: lines; Parquet: rows) read of the current file
    pub read: u64,
    /// the restored position: records before it are skipped
    skip: (usize, u64),
    /// whether this subtask reads the path (`None` until open or restore)
    owns: Option<bool>,
}

impl Position {
    /// At the source's open: lists the path's files if this subtask reads them.
    pub fn open(&mut self, input: &Input, ctx: &SourceContext) -> Result<(), ConnectorError> {
        if !self.owns.unwrap_or(ctx.subtask == 0) {
            return Ok(());
        }
        self.owns = Some(true);
        self.files = input.files()?;
        self.file = self.skip.0;
        Ok(())
    }

    /// Whether this subtask reads the path.
    pub fn owns(&self) -> bool {
        self.owns == Some(true)
    }

    /// The file being read, if any is left.
    pub fn current(&self) -> Option<&Input> {
        self.files.get(self.file)
    }

    /// On to the next file (the current one is read to its end).
    pub fn next_file(&mut self) {
        self.file += 1;
        self.read = 0;
    }

    /// The records of the current file before the restored position, counted as read
    /// (a format that can seek skips them without reading them); 0 past it.
    pub fn take_restored_skip(&mut self) -> u64 {
        if self.file == self.skip.0 && self.read < self.skip.1 {
            let n = self.skip.1 - self.read;
            self.read = self.skip.1;
            n
        } else {
            0
        }
    }

    /// Counts `n` more records of the current file, read past the restored position.
    pub fn count_records(&mut self, n: u64) {
        self.read += n;
    }

    /// Counts one more record of the current file: false if it comes before the
    /// restored position (read before the restore: skip it).
    pub fn count_record(&mut self) -> bool {
        self.read += 1;
        !(self.file == self.skip.0 && self.read <= self.skip.1)
    }

    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        if !self.owns() {
            return Vec::new();
        }
        let read = if self.file == self.skip.0 { self.read.max(self.skip.1) } else { self.read };
        let mut b = (self.file as u64).to_le_bytes().to_vec();
        b.extend_from_slice(&read.to_le_bytes());
        vec![b]
    }

    pub fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.owns = Some(!splits.is_empty());
        if let Some(s) = splits.first() {
            let (Some(f), Some(r)) = (s.get(..8).and_then(|b| b.try_into().ok()), s.get(8..).and_then(|b| b.try_into().ok())) else {
                return Err(ConnectorError::Other("bad filesystem source position in the checkpoint".into()));
            };
            self.skip = (u64::from_le_bytes(f) as usize, u64::from_le_bytes(r));
        }
        Ok(())
    }
}
