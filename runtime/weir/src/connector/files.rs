//! An exactly-once file sink: JSON lines into time-bucketed directories.
//!
//! Records are written to in-progress files under `<dir>/.inprogress/` (readers
//! ignore them). At each checkpoint barrier the open files are closed and listed as
//! the checkpoint's committable (phase one); when the checkpoint completes they are
//! renamed into their bucket `<dir>/<YYYY-MM-DD--HH>/part-<run>-<subtask>-<n>.jsonl`
//! (phase two). After a failure the job restarts from the last complete checkpoint:
//! its committables are renamed (idempotently) and whatever was written after it
//! stays invisible, so every record is visible exactly once. Files also roll when
//! they reach `roll_bytes`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConnectorError, Sink, SinkContext};
use crate::record::Rec;

pub const IN_PROGRESS: &str = ".inprogress";

struct Open {
    tmp: PathBuf,
    fin: PathBuf,
    w: BufWriter<File>,
    bytes: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Staged {
    tmp: PathBuf,
    fin: PathBuf,
}

pub struct ExactlyOnceFileSink {
    dir: PathBuf,
    roll_bytes: u64,
    run: String,
    subtask: u32,
    seq: u64,
    open: HashMap<String, Open>,
    staged: Vec<Staged>,
    line: Vec<u8>,
}

impl ExactlyOnceFileSink {
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0));
        ExactlyOnceFileSink { dir: dir.as_ref().to_path_buf(), roll_bytes: 128 << 20, run, subtask: 0, seq: 0, open: HashMap::new(), staged: Vec::new(), line: Vec::new() }
    }

    pub fn roll_bytes(mut self, bytes: u64) -> Self {
        self.roll_bytes = bytes.max(1);
        self
    }

    /// The bucket (directory) of an event time: its UTC hour.
    fn bucket(ts: i64) -> String {
        if ts == i64::MIN || ts == i64::MAX {
            return "no-time".into();
        }
        let s = weir_nexmark::time::format_timestamp(ts);
        format!("{}--{}", &s[..10], &s[11..13])
    }

    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> ConnectorError {
        ConnectorError::io(format!("{what} {}", path.display()), e)
    }

    fn close(&mut self, bucket: &str) -> Result<(), ConnectorError> {
        if let Some(mut o) = self.open.remove(bucket) {
            o.w.flush().map_err(|e| self.io("writing", &o.tmp, e))?;
            o.w.get_ref().sync_all().map_err(|e| self.io("syncing", &o.tmp, e))?;
            self.staged.push(Staged { tmp: o.tmp, fin: o.fin });
        }
        Ok(())
    }

    fn commit_one(&self, s: &Staged) -> Result<(), ConnectorError> {
        if s.tmp.exists() {
            if let Some(parent) = s.fin.parent() {
                std::fs::create_dir_all(parent).map_err(|e| self.io("creating", parent, e))?;
            }
            std::fs::rename(&s.tmp, &s.fin).map_err(|e| self.io("committing", &s.fin, e))
        } else if s.fin.exists() {
            Ok(()) // committed before the failure
        } else {
            Err(ConnectorError::Other(format!("cannot commit {}: its in-progress file {} is gone", s.fin.display(), s.tmp.display())))
        }
    }
}

impl<T: Serialize> Sink<T> for ExactlyOnceFileSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        self.subtask = ctx.subtask;
        let ip = self.dir.join(IN_PROGRESS);
        std::fs::create_dir_all(&ip).map_err(|e| self.io("creating", &ip, e))
    }

    fn write(&mut self, batch: &[Rec<T>]) -> Result<(), ConnectorError> {
        for r in batch {
            self.line.clear();
            serde_json::to_writer(&mut self.line, &r.value).map_err(|e| ConnectorError::Other(format!("cannot write a record as JSON: {e}")))?;
            self.line.push(b'\n');
            let bucket = Self::bucket(r.ts);
            if !self.open.contains_key(&bucket) {
                self.seq += 1;
                let name = format!("part-{}-{}-{}.jsonl", self.run, self.subtask, self.seq);
                let tmp = self.dir.join(IN_PROGRESS).join(&name);
                let fin = self.dir.join(&bucket).join(&name);
                let f = File::create(&tmp).map_err(|e| self.io("creating", &tmp, e))?;
                self.open.insert(bucket.clone(), Open { tmp, fin, w: BufWriter::with_capacity(1 << 16, f), bytes: 0 });
            }
            let o = self.open.get_mut(&bucket).expect("opened above");
            o.w.write_all(&self.line).map_err(|e| ConnectorError::io(format!("writing {}", o.tmp.display()), e))?;
            o.bytes += self.line.len() as u64;
            if o.bytes >= self.roll_bytes {
                self.close(&bucket)?;
            }
        }
        Ok(())
    }

    fn pre_commit(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        let buckets: Vec<String> = self.open.keys().cloned().collect();
        for b in buckets {
            self.close(&b)?;
        }
        if self.staged.is_empty() {
            return Ok(None);
        }
        let staged = std::mem::take(&mut self.staged);
        Ok(Some(postcard::to_allocvec(&staged).map_err(|e| ConnectorError::Other(e.to_string()))?))
    }

    fn commit(&mut self, committable: Vec<u8>) -> Result<(), ConnectorError> {
        let staged: Vec<Staged> = postcard::from_bytes(&committable).map_err(|e| ConnectorError::Other(format!("bad file-sink committable: {e}")))?;
        for s in &staged {
            self.commit_one(s)?;
        }
        Ok(())
    }
}

/// Every committed line under `dir` (in-progress files excluded), for tests and tools.
pub fn read_committed(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    for bucket in std::fs::read_dir(dir)? {
        let bucket = bucket?;
        if bucket.file_name() == IN_PROGRESS || !bucket.file_type()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(bucket.path())? {
            let text = std::fs::read_to_string(f?.path())?;
            lines.extend(text.lines().map(str::to_string));
        }
    }
    Ok(lines)
}
