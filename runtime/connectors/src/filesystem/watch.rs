//! The watched directory (`'source.monitor-interval'`, as Flink's): an unbounded
//! source that lists the directory (or a bucket's prefix: `s3://bucket/prefix/`,
//! `gs://`, `az://`) every interval and reads each new file once, exactly once
//! across failures, restores and rescales.
//!
//! - **Which files**: the regular files directly in the directory (the objects
//!   directly under the prefix, not under its "subdirectories") whose name does not
//!   start with `.` or `_` (in-progress files by convention: writers write elsewhere,
//!   or under a hidden name, and rename the finished file into place; an object is
//!   complete once it is visible, so a bucket needs no renames). A file is read
//!   once, when first listed; later changes to it are not read.
//! - **Who reads them**: every subtask lists the directory and takes the files whose
//!   name (an object's key less the prefix) hashes (FNV-1a, stable across processes
//!   and versions) to it; each subtask reads its new files in (modification time,
//!   name) order, one at a time.
//! - **State**: per subtask the names of the files it has read (still in the
//!   directory) and the files it has begun, each with the position of its format's
//!   reader (records read). Restored at any parallelism, every subtask gets every
//!   subtask's state ([`Redistribution::Union`]) and keeps the names that hash to it
//!   now: a file read before is not read again, a begun one is resumed after its last
//!   checkpointed record (read again from its start, the records before the position
//!   skipped), and the others are read from the start.
//! - **Bounded state**: a read file is forgotten once it is gone from the directory
//!   (deleted or moved away), so the state grows with the files left in the
//!   directory, not with all files ever read. (Not with a watermark of modification
//!   times: a rename keeps the file's modification time, so a file renamed into place
//!   late may be older than files already read, and would be lost.) A name that is
//!   used again after its file was removed is read again.
//! - **Buckets** ([`super::store`]): each subtask has its own client; a listing is
//!   one LIST request per 1000 objects under the prefix, an object read is a HEAD
//!   (it may be gone since it was listed) and a streamed GET. A listing or read that
//!   fails after the client's retries fails the source (the job restarts from its
//!   last checkpoint): an incomplete listing must not forget read files.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use weir::checkpoint::restore::Redistribution;
use weir::connector::{ConnectorError, SourceContext};

use super::format::Input;
use super::store::{Bucket, BucketUrl};
use crate::registry::BatchSource;

/// Makes the reader of one file in the table's format (the format's own file source,
/// over that file alone): its `snapshot` is the position in the file, and `restore`
/// (before `open`) resumes there.
pub type FileReader = Arc<dyn Fn(Input) -> Box<dyn BatchSource> + Send + Sync>;

/// What a [`WatchSource`] watches.
#[derive(Clone, Debug)]
pub enum Watched {
    /// a local directory
    Dir(PathBuf),
    /// a bucket's prefix: the subtask makes its client at open
    Prefix(BucketUrl),
    /// a bucket's prefix with its client made (a `Prefix` once open; tests)
    Bucket(Arc<Bucket>, object_store::path::Path),
}

impl From<PathBuf> for Watched {
    fn from(p: PathBuf) -> Self {
        Watched::Dir(p)
    }
}

impl Watched {
    /// `directory <path>` or `prefix <url>`, for messages.
    fn describe(&self) -> String {
        match self {
            Watched::Dir(d) => format!("directory {}", d.display()),
            Watched::Prefix(u) => format!("prefix {}/{}{}", u.root, u.path, if u.path.as_ref().is_empty() { "" } else { "/" }),
            Watched::Bucket(b, p) => format!("prefix {}", b.prefix_url(p)),
        }
    }
}

/// The files directly in `dir` that `keep` keeps (by name), each with its
/// modification time, or `None` when its metadata cannot be read now (it is there:
/// not forgotten, and not read yet).
fn list_dir(table: &str, dir: &std::path::Path, keep: impl Fn(&str) -> bool) -> Result<Vec<(String, Option<SystemTime>)>, ConnectorError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConnectorError::io(format!("table '{table}': cannot list the watched directory {}", dir.display()), e))?;
    let mut out = Vec::new();
    for e in entries {
        // an incomplete listing must not forget read files: fail (the job restarts)
        let e = e.map_err(|e| ConnectorError::io(format!("table '{table}': listing the watched directory {}", dir.display()), e))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            warn!(table = %table, file = ?e.file_name(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if !keep(&name) {
            continue;
        }
        // follows symbolic links
        let meta = match std::fs::metadata(e.path()) {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue, // gone since
            Err(err) => {
                warn!(table = %table, file = %name, error = %err, "cannot read the file's metadata; trying again at the next listing");
                out.push((name, None));
                continue;
            }
        };
        if meta.is_file() {
            out.push((name, Some(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH))));
        }
    }
    Ok(out)
}

/// Whether a file name is left out: in-progress files by convention (`.name`, `_name`),
/// and the sink's `_SUCCESS` markers.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// The subtask (of `parallelism`) that reads the file `name`: FNV-1a of the name,
/// the same in every process and version.
pub fn owner(name: &str, parallelism: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(parallelism.max(1))) as u32
}

/// What one subtask checkpoints (JSON, one entry per subtask).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    /// the files read to their end (and still in the directory when last listed)
    pub processed: Vec<String>,
    /// the files begun, each with its reader's position (its `snapshot`)
    pub in_progress: Vec<(String, Vec<u8>)>,
}

/// A file to read: its name and, when it is resumed, the position to resume at.
type Queued = (String, Option<Vec<u8>>);

struct Current {
    name: String,
    reader: Box<dyn BatchSource>,
    rows: u64,
    started: Instant,
}

/// The source of one subtask over a watched directory. See the module.
pub struct WatchSource {
    table: String,
    watched: Watched,
    interval: Duration,
    open_file: FileReader,
    schema: SchemaRef,
    subtask: u32,
    parallelism: u32,
    processed: BTreeSet<String>,
    queue: VecDeque<Queued>,
    current: Option<Current>,
    last_list: Option<Instant>,
    /// the states restored (of all old subtasks), taken apart at `open`
    restored: Vec<WatchState>,
    opened: bool,
}

impl WatchSource {
    pub fn new(table: String, watched: impl Into<Watched>, interval: Duration, schema: SchemaRef, open_file: FileReader) -> Self {
        WatchSource {
            table,
            watched: watched.into(),
            interval,
            open_file,
            schema,
            subtask: 0,
            parallelism: 1,
            processed: BTreeSet::new(),
            queue: VecDeque::new(),
            current: None,
            last_list: None,
            restored: Vec::new(),
            opened: false,
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Other(format!("table '{}': watched {}: {what}", self.table, self.watched.describe()))
    }

    /// The new files of this subtask in the directory, in (modification time, name)
    /// order; read files no longer in it are forgotten.
    fn list(&mut self) -> Result<Vec<String>, ConnectorError> {
        let (subtask, parallelism) = (self.subtask, self.parallelism);
        let keep = |name: &str| !is_hidden(name) && owner(name, parallelism) == subtask;
        let listed = match &self.watched {
            Watched::Dir(d) => list_dir(&self.table, d, keep)?,
            Watched::Bucket(b, p) => b.list(p).map_err(|e| self.err(e))?.into_iter().filter(|l| keep(&l.name)).map(|l| (l.name, Some(l.modified))).collect(),
            Watched::Prefix(_) => return Err(self.err("listed before the source was opened")),
        };
        let mut present = BTreeSet::new();
        let mut new: Vec<(SystemTime, String)> = Vec::new();
        for (name, modified) in listed {
            present.insert(name.clone());
            if let Some(modified) = modified
                && !self.processed.contains(&name)
                && !self.queue.iter().any(|q| q.0 == name)
                && self.current.as_ref().is_none_or(|c| c.name != name)
            {
                new.push((modified, name));
            }
        }
        let before = self.processed.len();
        self.processed.retain(|n| present.contains(n));
        if self.processed.len() < before {
            debug!(table = %self.table, subtask = self.subtask, forgotten = before - self.processed.len(), "read files gone from the directory are forgotten");
        }
        new.sort();
        Ok(new.into_iter().map(|(_, n)| n).collect())
    }

    /// Begins the next queued file, if any (a file gone since it was listed is skipped).
    fn begin_next(&mut self) -> Result<bool, ConnectorError> {
        while let Some((name, position)) = self.queue.pop_front() {
            let input = match &self.watched {
                Watched::Dir(d) => {
                    let path = d.join(&name);
                    path.is_file().then_some(Input::Local(path))
                }
                Watched::Bucket(b, p) => {
                    let key = Bucket::child(p, &name).map_err(|e| self.err(e))?;
                    b.exists(&key).map_err(|e| self.err(e))?.then(|| Input::Object { bucket: b.clone(), path: key, is_prefix: false })
                }
                Watched::Prefix(_) => return Err(self.err("read before the source was opened")),
            };
            let Some(input) = input else {
                if position.is_some() {
                    warn!(table = %self.table, file = %name, "a file begun before the restore is gone: its remaining records are not read");
                } else {
                    debug!(table = %self.table, file = %name, "a listed file is gone before it was read");
                }
                continue;
            };
            let mut reader = (self.open_file)(input);
            let resumed = position.is_some();
            if let Some(p) = position {
                reader.restore(vec![p]).map_err(|e| self.err(format!("{name}: restoring its position: {e}")))?;
            }
            reader.open(&SourceContext { subtask: 0, parallelism: 1 })?;
            debug!(table = %self.table, subtask = self.subtask, file = %name, resumed, "reading a new file");
            self.current = Some(Current { name, reader, rows: 0, started: Instant::now() });
            return Ok(true);
        }
        Ok(false)
    }
}

impl BatchSource for WatchSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.subtask = ctx.subtask;
        self.parallelism = ctx.parallelism.max(1);
        match &self.watched {
            Watched::Dir(d) if !d.is_dir() => {
                return Err(self.err("not a directory (a source with 'source.monitor-interval' watches a directory; it must exist when the job starts)"));
            }
            Watched::Prefix(u) => {
                let bucket = Bucket::open(u).map_err(|e| self.err(e))?;
                self.watched = Watched::Bucket(Arc::new(bucket), u.path.clone());
            }
            _ => {}
        }
        // every old subtask's state: keep what is this subtask's now
        let mut resumed = BTreeMap::new();
        for s in std::mem::take(&mut self.restored) {
            self.processed.extend(s.processed.into_iter().filter(|n| owner(n, self.parallelism) == self.subtask));
            for (n, p) in s.in_progress {
                if owner(&n, self.parallelism) == self.subtask {
                    resumed.insert(n, p);
                }
            }
        }
        info!(table = %self.table, subtask = self.subtask, watched = %self.watched.describe(), interval = ?self.interval, processed = self.processed.len(), resumed = resumed.len(), "watching the directory");
        // files begun before come first (in name order: their times are not known)
        self.queue.extend(resumed.into_iter().map(|(n, p)| (n, Some(p))));
        self.opened = true;
        Ok(())
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            if self.current.is_none() && !self.begin_next()? {
                if self.last_list.is_some_and(|t| t.elapsed() < self.interval) {
                    return Ok(Some(RecordBatch::new_empty(self.schema.clone())));
                }
                self.last_list = Some(Instant::now());
                let new = self.list()?;
                if new.is_empty() {
                    return Ok(Some(RecordBatch::new_empty(self.schema.clone())));
                }
                debug!(table = %self.table, subtask = self.subtask, files = new.len(), "new files in the watched directory");
                self.queue.extend(new.into_iter().map(|n| (n, None)));
                continue;
            }
            let Some(cur) = self.current.as_mut() else { continue };
            match cur.reader.next_batch(max_rows)? {
                Some(b) if b.num_rows() > 0 => {
                    cur.rows += b.num_rows() as u64;
                    return Ok(Some(b));
                }
                Some(_) => {}
                None => {
                    if let Some(c) = self.current.take() {
                        debug!(table = %self.table, subtask = self.subtask, file = %c.name, rows = c.rows, elapsed = ?c.started.elapsed(), "file read");
                        self.processed.insert(c.name);
                    }
                }
            }
        }
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        if !self.opened {
            // not yet open: the restored state as it came
            return self.restored.iter().map(|s| serde_json::to_vec(s).map_err(|e| self.err(e))).collect();
        }
        let mut in_progress = Vec::new();
        if let Some(c) = self.current.as_mut() {
            let pos = c.reader.snapshot()?.into_iter().next().unwrap_or_default();
            in_progress.push((c.name.clone(), pos));
        }
        in_progress.extend(self.queue.iter().filter_map(|(n, p)| p.clone().map(|p| (n.clone(), p))));
        let s = WatchState { processed: self.processed.iter().cloned().collect(), in_progress };
        Ok(vec![serde_json::to_vec(&s).map_err(|e| self.err(e))?])
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        for b in splits {
            let s: WatchState = serde_json::from_slice(&b).map_err(|e| self.err(format!("bad source state in the checkpoint: {e}")))?;
            self.restored.push(s);
        }
        Ok(())
    }

    fn redistribution(&self) -> Redistribution {
        Redistribution::Union
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filesystem::format::json::JsonFileSource;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;
    use std::path::Path;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("f", DataType::Utf8, true), Field::new("i", DataType::Int64, true)]))
    }

    fn json_reader(batch_rows: usize) -> FileReader {
        let s = schema();
        Arc::new(move |p: Input| Box::new(JsonFileSource::new(p, s.clone(), batch_rows)) as Box<dyn BatchSource>)
    }

    fn source(dir: &Path, batch_rows: usize) -> WatchSource {
        WatchSource::new("t".into(), dir.to_path_buf(), Duration::ZERO, schema(), json_reader(batch_rows))
    }

    /// Writes `name` with `rows` JSON lines `{"f": name, "i": 0..rows}`, modified at `mtime` s.
    fn write(dir: &Path, name: &str, rows: u64, mtime: u64) {
        write_as(dir, name, name, rows, mtime)
    }

    /// Writes the file `file` with the rows of `name`.
    fn write_as(dir: &Path, file: &str, name: &str, rows: u64, mtime: u64) {
        let text: String = (0..rows).map(|i| format!("{{\"f\": \"{name}\", \"i\": {i}}}\n")).collect();
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)).unwrap();
    }

    fn rows(b: &RecordBatch) -> Vec<(String, i64)> {
        let f = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let i = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        (0..b.num_rows()).map(|r| (f.value(r).to_string(), i.value(r))).collect()
    }

    /// Reads until nothing is new (the interval is zero: every call lists).
    fn drain(s: &mut WatchSource) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        loop {
            let b = s.next_batch(1024).unwrap().expect("unbounded");
            if b.num_rows() == 0 {
                return out;
            }
            out.extend(rows(&b));
        }
    }

    fn open(s: &mut WatchSource, subtask: u32, parallelism: u32) {
        s.open(&SourceContext { subtask, parallelism }).unwrap();
    }

    fn files_in(r: &[(String, i64)]) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for (f, _) in r {
            if v.last() != Some(f) {
                v.push(f.clone());
            }
        }
        v
    }

    #[test]
    fn new_files_in_modification_time_then_name_order_hidden_ones_left_out() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "b.json", 2, 100);
        write(d.path(), "a.json", 2, 200);
        write(d.path(), "c.json", 1, 100);
        write_as(d.path(), ".in-progress.json", "e.json", 1, 50);
        write(d.path(), "_tmp.json", 1, 50);
        write(d.path(), "_SUCCESS", 0, 50);
        std::fs::create_dir(d.path().join("sub")).unwrap();
        write(&d.path().join("sub"), "x.json", 1, 10);
        let mut s = source(d.path(), 1);
        open(&mut s, 0, 1);
        let got = drain(&mut s);
        assert_eq!(files_in(&got), vec!["b.json", "c.json", "a.json"]);
        assert_eq!(got.len(), 5);
        // nothing new: nothing read again
        assert!(drain(&mut s).is_empty());
        // a new file, and a hidden one renamed into place, are read (once)
        write(d.path(), "d.json", 1, 10);
        std::fs::rename(d.path().join(".in-progress.json"), d.path().join("e.json")).unwrap();
        assert_eq!(files_in(&drain(&mut s)), vec!["d.json", "e.json"]);
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn the_interval_spaces_the_listings() {
        let d = tempfile::tempdir().unwrap();
        let mut s = WatchSource::new("t".into(), d.path().to_path_buf(), Duration::from_secs(3600), schema(), json_reader(10));
        open(&mut s, 0, 1);
        assert_eq!(s.next_batch(10).unwrap().unwrap().num_rows(), 0);
        write(d.path(), "a.json", 3, 1);
        // listed an hour from now
        assert_eq!(s.next_batch(10).unwrap().unwrap().num_rows(), 0);
        s.last_list = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(s.next_batch(10).unwrap().unwrap().num_rows(), 3);
    }

    #[test]
    fn a_missing_directory_or_bad_state_is_an_error_naming_the_table() {
        let d = tempfile::tempdir().unwrap();
        let mut s = WatchSource::new("orders".into(), d.path().join("nope"), Duration::ZERO, schema(), json_reader(10));
        let e = s.open(&SourceContext { subtask: 0, parallelism: 1 }).unwrap_err().to_string();
        assert!(e.contains("table 'orders'") && e.contains("nope") && e.contains("not a directory"), "{e}");
        let e = source(d.path(), 1).restore(vec![b"{".to_vec()]).unwrap_err().to_string();
        assert!(e.contains("table 't'") && e.contains("bad source state"), "{e}");
    }

    #[test]
    fn a_snapshot_restores_mid_file_without_repeating_or_losing_a_record() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.json", 5, 1);
        write(d.path(), "b.json", 5, 2);
        write(d.path(), "c.json", 5, 3);
        let mut s = source(d.path(), 2);
        open(&mut s, 0, 1);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.extend(rows(&s.next_batch(1024).unwrap().unwrap())); // a: 2+2+1, b: 2
        }
        let snap = s.snapshot().unwrap();
        let state: WatchState = serde_json::from_slice(&snap[0]).unwrap();
        assert_eq!(state.processed, vec!["a.json"]);
        assert_eq!(state.in_progress.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), vec!["b.json"]);
        // rows read after the snapshot are lost with the failure; a new source resumes
        let _ = s.next_batch(1024).unwrap();
        let mut r = source(d.path(), 2);
        r.restore(snap.clone()).unwrap();
        open(&mut r, 0, 1);
        write(d.path(), "d.json", 2, 4);
        got.extend(drain(&mut r));
        let mut want: Vec<(String, i64)> = ["a.json", "b.json", "c.json"].iter().flat_map(|f| (0..5).map(move |i| (f.to_string(), i))).collect();
        want.extend([("d.json".to_string(), 0), ("d.json".to_string(), 1)]);
        assert_eq!(got, want);
        // the snapshot of a restored source that was not opened yet is what it restored
        let mut idle = source(d.path(), 2);
        idle.restore(snap.clone()).unwrap();
        assert_eq!(idle.snapshot().unwrap(), snap);
    }

    #[test]
    fn read_files_are_forgotten_once_gone_from_the_directory() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.json", 1, 1);
        write(d.path(), "b.json", 1, 2);
        let mut s = source(d.path(), 10);
        open(&mut s, 0, 1);
        assert_eq!(drain(&mut s).len(), 2);
        std::fs::remove_file(d.path().join("a.json")).unwrap();
        assert!(drain(&mut s).is_empty());
        let state: WatchState = serde_json::from_slice(&s.snapshot().unwrap()[0]).unwrap();
        assert_eq!(state.processed, vec!["b.json"]);
    }

    #[test]
    fn every_file_has_one_owner() {
        let mut per = [0u32; 4];
        for i in 0..400 {
            let o = owner(&format!("part-{i}.json"), 4);
            per[o as usize] += 1;
        }
        assert!(per.iter().all(|n| *n > 50), "spread over the subtasks: {per:?}");
        assert_eq!(owner("x", 1), 0);
        // stable across versions: a checkpoint names files, its restore hashes them again
        assert_eq!(owner("part-0.json", 7), owner("part-0.json", 7));
        assert_eq!(owner("a", 1 << 31), (0xaf63dc4c8601ec8cu64 % (1 << 31)) as u32);
    }

    /// A bucket in memory, watched at `prefix`.
    fn bucket() -> Arc<Bucket> {
        Arc::new(Bucket::with_store(Arc::new(object_store::memory::InMemory::new()), "mem://b").unwrap())
    }

    fn put(b: &Bucket, key: &str, name: &str, rows: u64) {
        let text: String = (0..rows).map(|i| format!("{{\"f\": \"{name}\", \"i\": {i}}}\n")).collect();
        b.put(&object_store::path::Path::from(key), text.into_bytes()).unwrap();
    }

    fn bucket_source(b: &Arc<Bucket>, prefix: &str, batch_rows: usize) -> WatchSource {
        WatchSource::new("t".into(), Watched::Bucket(b.clone(), object_store::path::Path::from(prefix)), Duration::ZERO, schema(), json_reader(batch_rows))
    }

    #[test]
    fn a_bucket_prefix_is_watched_as_a_directory_is() {
        let b = bucket();
        put(&b, "in/a.json", "a.json", 3);
        put(&b, "in/.hidden.json", "x", 1);
        put(&b, "in/_tmp.json", "x", 1);
        put(&b, "in/sub/s.json", "x", 1);
        put(&b, "in2/o.json", "x", 1);
        put(&b, "in", "x", 1); // beside the prefix, not under it
        let mut s = bucket_source(&b, "in", 2);
        open(&mut s, 0, 1);
        assert_eq!(files_in(&drain(&mut s)), vec!["a.json"]);
        assert!(drain(&mut s).is_empty());
        // added while it runs: read once, in order of modification
        put(&b, "in/b.json", "b.json", 5);
        put(&b, "in/c.json", "c.json", 1);
        let mut got = rows(&s.next_batch(1024).unwrap().unwrap()); // b: 2 of 5
        assert_eq!(got.len(), 2);
        let snap = s.snapshot().unwrap();
        let state: WatchState = serde_json::from_slice(&snap[0]).unwrap();
        assert_eq!(state.processed, vec!["a.json"]);
        assert_eq!(state.in_progress.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), vec!["b.json"]);
        // restored at 2 subtasks: b resumes after its 2nd record, c is read, a is not
        let mut again = Vec::new();
        for sub in 0..2 {
            let mut r = bucket_source(&b, "in", 2);
            r.restore(snap.clone()).unwrap();
            open(&mut r, sub, 2);
            again.extend(drain(&mut r));
        }
        got.extend(again);
        got.sort();
        let mut want: Vec<(String, i64)> = (0..5).map(|i| ("b.json".to_string(), i)).collect();
        want.push(("c.json".to_string(), 0));
        assert_eq!(got, want);
        // a read object deleted from the bucket is forgotten
        b.delete(&object_store::path::Path::from("in/a.json")).unwrap();
        assert!(drain(&mut s).len() == 4); // the rest of b, and c, on the first source
        let state: WatchState = serde_json::from_slice(&s.snapshot().unwrap()[0]).unwrap();
        assert_eq!(state.processed, vec!["b.json", "c.json"]);
    }

    #[test]
    fn a_listed_object_deleted_before_it_is_read_is_skipped_and_errors_name_the_prefix() {
        let b = bucket();
        put(&b, "in/a.json", "a.json", 1);
        put(&b, "in/b.json", "b.json", 1);
        let mut s = bucket_source(&b, "in", 10);
        open(&mut s, 0, 1);
        s.last_list = Some(Instant::now());
        s.queue.extend([("gone.json".to_string(), None), ("a.json".to_string(), None)]);
        assert_eq!(files_in(&drain(&mut s)), vec!["a.json", "b.json"]);
        put(&b, "in/bad.json", "x", 0);
        b.put(&object_store::path::Path::from("in/bad.json"), b"{\"i\": \"no\"}\n".to_vec()).unwrap();
        let e = s.next_batch(10).unwrap_err().to_string();
        assert!(e.contains("mem://b/in/bad.json, line 1"), "{e}");
    }

    fn all_rows(files: &[(String, u64)]) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = files.iter().flat_map(|(f, n)| (0..*n as i64).map(move |i| (f.clone(), i))).collect();
        v.sort();
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        /// Files read at P1, some of them partly, snapshotted, restored at P2 (with
        /// files added meanwhile): every record of every file is read exactly once.
        #[test]
        fn a_restore_at_another_parallelism_reads_every_record_exactly_once(
            sizes in proptest::collection::vec(0u64..7, 1..12),
            later in proptest::collection::vec(0u64..7, 0..5),
            p1 in 1u32..5, p2 in 1u32..5,
            polls in proptest::collection::vec(0usize..6, 4),
            batch_rows in 1usize..4,
        ) {
            let d = tempfile::tempdir().unwrap();
            let mut files: Vec<(String, u64)> = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let name = format!("f{i}.json");
                write(d.path(), &name, *n, (i % 3) as u64);
                files.push((name, *n));
            }
            let mut got = Vec::new();
            let mut snaps = Vec::new();
            for sub in 0..p1 {
                let mut s = source(d.path(), batch_rows);
                open(&mut s, sub, p1);
                for _ in 0..polls[sub as usize % polls.len()] {
                    got.extend(rows(&s.next_batch(1024).unwrap().unwrap()));
                }
                snaps.extend(s.snapshot().unwrap());
                // read after the snapshot, then lost with the failure
                let _ = s.next_batch(1024).unwrap();
            }
            for (i, n) in later.iter().enumerate() {
                let name = format!("g{i}.json");
                write(d.path(), &name, *n, 0);
                files.push((name, *n));
            }
            for sub in 0..p2 {
                let mut s = source(d.path(), batch_rows);
                s.restore(snaps.clone()).unwrap();
                open(&mut s, sub, p2);
                got.extend(drain(&mut s));
            }
            got.sort();
            prop_assert_eq!(got, all_rows(&files));
        }
    }
}
