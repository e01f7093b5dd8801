//! An exactly-once file sink: JSON lines into time-bucketed directories, on top of
//! [`BucketWriter`], the two-phase-commit file writer that other formats and
//! bucketings (the SQL `filesystem` connector's CSV files and partition directories)
//! share.
//!
//! Records are written to in-progress files under `<dir>/.inprogress/` (readers
//! ignore them). At each checkpoint barrier the open files are closed and listed as
//! the checkpoint's committable (phase one); when the checkpoint completes they are
//! renamed into their bucket `<dir>/<bucket>/part-<run>-<subtask>-<n>.<ext>`
//! (phase two; the [`ExactlyOnceFileSink`]'s buckets are `<YYYY-MM-DD--HH>`). After a
//! failure the job restarts from the last complete checkpoint: its committables are
//! renamed (idempotently) and whatever was written after it stays invisible, so every
//! record is visible exactly once. Files also roll when they reach `roll_bytes`, or
//! (with a rollover interval) when they have been open that long.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConnectorError, Sink, SinkContext};
use crate::record::{Rec, Timestamp};

pub const IN_PROGRESS: &str = ".inprogress";

struct Open {
    tmp: PathBuf,
    fin: PathBuf,
    w: BufWriter<File>,
    bytes: u64,
    /// wall-clock time it was opened (ms)
    opened: Timestamp,
}

/// A closed in-progress file and the path it is committed to.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    tmp: PathBuf,
    fin: PathBuf,
}

impl Staged {
    /// Where the file becomes visible when committed.
    pub fn committed_path(&self) -> &Path {
        &self.fin
    }
}

/// Writes bytes into in-progress part files, one open file per bucket (a directory
/// relative to the sink's; `""`: the directory itself), and commits them in two
/// phases (see the module's documentation).
pub struct BucketWriter {
    dir: PathBuf,
    ext: String,
    roll_bytes: u64,
    rollover_ms: Option<i64>,
    run: String,
    subtask: u32,
    seq: u64,
    open: HashMap<String, Open>,
    staged: Vec<Staged>,
}

impl BucketWriter {
    /// Part files `part-<run>-<subtask>-<n>.<ext>` under `dir`.
    pub fn new(dir: impl AsRef<Path>, ext: &str) -> Self {
        let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0));
        BucketWriter { dir: dir.as_ref().to_path_buf(), ext: ext.to_string(), roll_bytes: 128 << 20, rollover_ms: None, run, subtask: 0, seq: 0, open: HashMap::new(), staged: Vec::new() }
    }

    pub fn roll_bytes(mut self, bytes: u64) -> Self {
        self.roll_bytes = bytes.max(1);
        self
    }

    /// Files open longer than `interval` are rolled by [`BucketWriter::roll_older`].
    pub fn rollover_interval(mut self, interval: Option<std::time::Duration>) -> Self {
        self.rollover_ms = interval.map(|d| d.as_millis().min(i64::MAX as u128) as i64);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(what: &str, path: &Path, e: std::io::Error) -> ConnectorError {
        ConnectorError::io(format!("{what} {}", path.display()), e)
    }

    /// Creates the in-progress directory; the subtask names the part files.
    pub fn open(&mut self, subtask: u32) -> Result<(), ConnectorError> {
        self.subtask = subtask;
        let ip = self.dir.join(IN_PROGRESS);
        std::fs::create_dir_all(&ip).map_err(|e| Self::io("creating", &ip, e))
    }

    /// Whether `bucket` has an open (uncommitted, not yet staged) file.
    pub fn is_open(&self, bucket: &str) -> bool {
        self.open.contains_key(bucket)
    }

    /// Appends `bytes` (whole records) to the open file of `bucket`.
    pub fn write(&mut self, bucket: &str, bytes: &[u8]) -> Result<(), ConnectorError> {
        if !self.open.contains_key(bucket) {
            self.seq += 1;
            let name = format!("part-{}-{}-{}.{}", self.run, self.subtask, self.seq, self.ext);
            let tmp = self.dir.join(IN_PROGRESS).join(&name);
            let fin = if bucket.is_empty() { self.dir.join(&name) } else { self.dir.join(bucket).join(&name) };
            let f = File::create(&tmp).map_err(|e| Self::io("creating", &tmp, e))?;
            self.open.insert(bucket.to_string(), Open { tmp, fin, w: BufWriter::with_capacity(1 << 16, f), bytes: 0, opened: crate::record::now_ms() });
        }
        let o = self.open.get_mut(bucket).expect("opened above");
        o.w.write_all(bytes).map_err(|e| ConnectorError::io(format!("writing {}", o.tmp.display()), e))?;
        o.bytes += bytes.len() as u64;
        if o.bytes >= self.roll_bytes {
            self.close(bucket)?;
        }
        Ok(())
    }

    fn close(&mut self, bucket: &str) -> Result<(), ConnectorError> {
        if let Some(mut o) = self.open.remove(bucket) {
            o.w.flush().map_err(|e| Self::io("writing", &o.tmp, e))?;
            o.w.get_ref().sync_all().map_err(|e| Self::io("syncing", &o.tmp, e))?;
            self.staged.push(Staged { tmp: o.tmp, fin: o.fin });
        }
        Ok(())
    }

    /// Rolls the files open for longer than the rollover interval (at `now`, ms).
    pub fn roll_older(&mut self, now: Timestamp) -> Result<(), ConnectorError> {
        let Some(limit) = self.rollover_ms else { return Ok(()) };
        let old: Vec<String> = self.open.iter().filter(|(_, o)| now.saturating_sub(o.opened) >= limit).map(|(b, _)| b.clone()).collect();
        for b in old {
            self.close(&b)?;
        }
        Ok(())
    }

    /// Phase one: closes every open file; the files to commit (also those rolled before).
    pub fn pre_commit(&mut self) -> Result<Vec<Staged>, ConnectorError> {
        let buckets: Vec<String> = self.open.keys().cloned().collect();
        for b in buckets {
            self.close(&b)?;
        }
        Ok(std::mem::take(&mut self.staged))
    }

    /// Phase two: makes the files visible (idempotent: a file committed before a
    /// failure is left as it is).
    pub fn commit(&self, staged: &[Staged]) -> Result<(), ConnectorError> {
        for s in staged {
            if s.tmp.exists() {
                if let Some(parent) = s.fin.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Self::io("creating", parent, e))?;
                }
                std::fs::rename(&s.tmp, &s.fin).map_err(|e| Self::io("committing", &s.fin, e))?;
            } else if !s.fin.exists() {
                return Err(ConnectorError::Other(format!("cannot commit {}: its in-progress file {} is gone", s.fin.display(), s.tmp.display())));
            }
        }
        Ok(())
    }
}

/// The bucket (directory) of an event time: its UTC hour, `YYYY-MM-DD--HH`.
pub fn hour_bucket(ts: Timestamp) -> String {
    if ts == i64::MIN || ts == i64::MAX {
        return "no-time".into();
    }
    let s = weir_nexmark::time::format_timestamp(ts);
    format!("{}--{}", &s[..10], &s[11..13])
}

/// JSON lines of any serializable record, bucketed by the hour of their event time.
pub struct ExactlyOnceFileSink {
    writer: BucketWriter,
    line: Vec<u8>,
}

impl ExactlyOnceFileSink {
    pub fn new(dir: impl AsRef<Path>) -> Self {
        ExactlyOnceFileSink { writer: BucketWriter::new(dir, "jsonl"), line: Vec::new() }
    }

    pub fn roll_bytes(mut self, bytes: u64) -> Self {
        self.writer = self.writer.roll_bytes(bytes);
        self
    }
}

impl<T: Serialize> Sink<T> for ExactlyOnceFileSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        self.writer.open(ctx.subtask)
    }

    fn write(&mut self, batch: &[Rec<T>]) -> Result<(), ConnectorError> {
        for r in batch {
            self.line.clear();
            serde_json::to_writer(&mut self.line, &r.value).map_err(|e| ConnectorError::Other(format!("cannot write a record as JSON: {e}")))?;
            self.line.push(b'\n');
            self.writer.write(&hour_bucket(r.ts), &self.line)?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        let staged = self.writer.pre_commit()?;
        if staged.is_empty() {
            return Ok(None);
        }
        Ok(Some(postcard::to_allocvec(&staged).map_err(|e| ConnectorError::Other(e.to_string()))?))
    }

    fn commit(&mut self, committable: Vec<u8>) -> Result<(), ConnectorError> {
        let staged: Vec<Staged> = postcard::from_bytes(&committable).map_err(|e| ConnectorError::Other(format!("bad file-sink committable: {e}")))?;
        self.writer.commit(&staged)
    }
}

/// Every committed line under `dir`, in its bucket directories at any depth
/// (in-progress files, hidden files and `_SUCCESS` markers excluded), for tests and tools.
pub fn read_committed(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    for (_, text) in committed_files(dir)? {
        lines.extend(text.lines().map(str::to_string));
    }
    Ok(lines)
}

/// The committed files under `dir` (below its bucket directories at any depth, or in
/// it), as (path relative to `dir`, contents), sorted by path; hidden files and
/// directories (the in-progress one) and `_SUCCESS` markers are left out.
pub fn committed_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<(PathBuf, String)>) -> std::io::Result<()> {
        for e in std::fs::read_dir(at)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || name == "_SUCCESS" {
                continue;
            }
            if e.file_type()?.is_dir() {
                walk(root, &e.path(), out)?;
            } else {
                let rel = e.path().strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| e.path());
                out.push((rel, std::fs::read_to_string(e.path())?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this test (removed first if a previous run left it).
    fn test_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn buckets_commit_in_two_phases_and_idempotently() {
        let dir = test_dir("two-phases");
        let mut w = BucketWriter::new(&dir, "csv");
        w.open(3).unwrap();
        w.write("a=1", b"x\n").unwrap();
        w.write("", b"y\n").unwrap();
        assert!(w.is_open("a=1"));
        assert!(committed_files(&dir).unwrap().is_empty(), "nothing visible before the commit");
        let staged = w.pre_commit().unwrap();
        assert_eq!(staged.len(), 2);
        assert!(!w.is_open("a=1"));
        w.commit(&staged).unwrap();
        w.commit(&staged).unwrap(); // again, as after a restore
        let files = committed_files(&dir).unwrap();
        let got: Vec<(String, String)> = files.iter().map(|(p, t)| (p.parent().unwrap().display().to_string(), t.clone())).collect();
        assert_eq!(got, vec![("a=1".to_string(), "x\n".to_string()), ("".to_string(), "y\n".to_string())]);
        assert!(files.iter().all(|(p, _)| p.extension().is_some_and(|e| e == "csv") && p.file_name().unwrap().to_string_lossy().contains("-3-")));
    }

    #[test]
    fn files_roll_by_size_and_age() {
        let dir = test_dir("roll");
        let mut w = BucketWriter::new(&dir, "txt").roll_bytes(4).rollover_interval(Some(std::time::Duration::from_secs(60)));
        w.open(0).unwrap();
        w.write("b", b"12345\n").unwrap();
        assert!(!w.is_open("b"), "rolled at 4 bytes");
        w.write("b", b"1\n").unwrap();
        w.roll_older(crate::record::now_ms()).unwrap();
        assert!(w.is_open("b"), "not a minute old");
        w.roll_older(crate::record::now_ms() + 60_000).unwrap();
        assert!(!w.is_open("b"));
        assert_eq!(w.pre_commit().unwrap().len(), 2);
    }

    #[test]
    fn the_json_sink_buckets_by_hour() {
        assert_eq!(hour_bucket(0), "1970-01-01--00");
        assert_eq!(hour_bucket(i64::MIN), "no-time");
    }
}
