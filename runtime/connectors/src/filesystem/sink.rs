//! The `filesystem` sinks of changelog batches: the exactly-once [`FileSink`] (part
//! files committed by checkpoints, per partition directory with `PARTITIONED BY`,
//! partitions committed by their trigger) and [`TextFileSink`] (one file).
//!
//! Partition commit (Flink's `sink.partition-commit.*`): a partition is committed —
//! with the `success-file` policy, an empty `_SUCCESS` is written into its directory —
//! when every file written to it so far is committed by a checkpoint (or at the end of
//! a bounded input) and its trigger fires: `process-time`, once the wall clock passes
//! the partition's creation plus the delay; `partition-time`, once the watermark
//! passes the partition's time (from its values by the timestamp pattern) plus the
//! delay. Rows arriving for a committed partition later (late rows) reopen it; it is
//! committed again. The partitions waiting for their trigger travel in every
//! checkpoint's committable, so a restored job still commits them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};
use weir::connector::files::{BucketWriter, Staged, hour_bucket};
use weir::connector::{ConnectorError, Sink, SinkContext};
use weir::record::{Rec, Timestamp};

use super::format::encode;
use super::format::parquet::{self, ParquetParts, PartFile};
use super::options::{Format, FsOptions, Partitioning, Trigger};
use super::partition;
use super::store::BucketUrl;
use super::upload::{ObjectParts, Uploaded};
use crate::changelog::ChangeBatch;

/// The name of the success file of a committed partition.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// A partition written to and not committed yet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Part {
    /// its time by the timestamp pattern (partition-time trigger)
    time: Option<i64>,
    /// wall-clock time of its first row (process-time trigger)
    created: i64,
    /// the last checkpoint that pre-committed rows of it
    #[serde(skip)]
    last_pre_commit: Option<u64>,
    /// rows written since that checkpoint
    #[serde(skip)]
    dirty: bool,
    /// the last checkpoint committed with it
    #[serde(skip)]
    committed: Option<u64>,
}

/// What a checkpoint commits: the files, and the partitions waiting for their commit.
#[derive(Serialize, Deserialize)]
struct Committable {
    checkpoint: u64,
    files: Vec<Staged>,
    /// the Parquet parts (their footers written at the pre-commit)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parquet: Vec<PartFile>,
    /// the part files on a bucket: multipart uploads to complete
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    uploads: Vec<Uploaded>,
    parts: BTreeMap<String, Part>,
    /// the end of the input: every partition commits
    end: bool,
}

/// The part files of a [`FileSink`]: records appended (JSON lines, CSV), or whole
/// Parquet files (closed with their footer), in a local directory; or either as
/// multipart uploads to a bucket ([`ObjectParts`]).
enum Parts {
    Rows(BucketWriter),
    Parquet(ParquetParts),
    Objects(ObjectParts),
}

/// Exactly-once part files (see the module's documentation).
pub struct FileSink {
    writer: Parts,
    format: Format,
    partitioning: Option<Partitioning>,
    /// the columns written into the files (all but the partition columns)
    data_columns: Vec<usize>,
    check_ms: i64,
    last_check: i64,
    watermark: Timestamp,
    parts: BTreeMap<String, Part>,
    ended: bool,
}

/// A partition value as a string (`None`: null).
pub(crate) fn partition_values(batch: &RecordBatch, col: usize) -> Result<Vec<Option<String>>, String> {
    let c = batch.column(col);
    if let DataType::Utf8 = c.data_type() {
        return Ok(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect());
    }
    let fmt = FormatOptions::default().with_timestamp_format(Some("%Y-%m-%d %H:%M:%S")).with_date_format(Some("%Y-%m-%d"));
    let f = ArrayFormatter::try_new(c.as_ref(), &fmt).map_err(|e| e.to_string())?;
    Ok((0..c.len()).map(|i| c.is_valid(i).then(|| f.value(i).to_string())).collect())
}

fn data_columns(o: &FsOptions, schema: &SchemaRef) -> Vec<usize> {
    let parts_cols: Vec<usize> = o.partitioning.as_ref().map(|p| p.columns.clone()).unwrap_or_default();
    (0..schema.fields().len()).filter(|i| !parts_cols.contains(i)).collect()
}

impl FileSink {
    pub fn new(dir: &Path, o: &FsOptions, schema: &SchemaRef) -> Self {
        let data_columns = data_columns(o, schema);
        let writer = match &o.format {
            Format::Parquet(p) => Parts::Parquet(ParquetParts::new(dir, parquet::data_schema(schema, &data_columns), p, o.rolling.file_size, o.rolling.rollover_interval)),
            _ => Parts::Rows(BucketWriter::new(dir, o.format.extension()).roll_bytes(o.rolling.file_size).rollover_interval(o.rolling.rollover_interval)),
        };
        Self::with_parts(writer, data_columns, o)
    }

    /// Part files under a bucket's prefix (see [`super::upload`]); the client is made
    /// at the first use (errors then name the URL).
    pub fn on_bucket(url: BucketUrl, o: &FsOptions, schema: &SchemaRef) -> Self {
        let data_columns = data_columns(o, schema);
        let parquet = match &o.format {
            Format::Parquet(p) => Some((parquet::data_schema(schema, &data_columns), p.properties())),
            _ => None,
        };
        let parts = ObjectParts::new(url, o.format.extension(), parquet, o.rolling.file_size, o.rolling.rollover_interval, o.rolling.part_size);
        Self::with_parts(Parts::Objects(parts), data_columns, o)
    }

    /// Over a given bucket client (tests: an in-memory store).
    pub fn on_objects(url: BucketUrl, objects: std::sync::Arc<super::upload::Objects>, o: &FsOptions, schema: &SchemaRef) -> Self {
        let mut s = Self::on_bucket(url, o, schema);
        if let Parts::Objects(p) = s.writer {
            s.writer = Parts::Objects(p.with_objects(objects));
        }
        s
    }

    fn with_parts(writer: Parts, data_columns: Vec<usize>, o: &FsOptions) -> Self {
        FileSink {
            writer,
            format: o.format.clone(),
            partitioning: o.partitioning.clone(),
            data_columns,
            check_ms: o.rolling.check_interval.as_millis().min(i64::MAX as u128) as i64,
            last_check: weir::record::now_ms(),
            watermark: i64::MIN,
            parts: BTreeMap::new(),
            ended: false,
        }
    }

    fn other(e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Other(format!("filesystem sink: {e}"))
    }

    /// The rows of `b` by partition directory, with the partition values of each.
    fn split(&self, b: &RecordBatch) -> Result<Vec<(String, Vec<Option<String>>, RecordBatch)>, String> {
        let data = b.project(&self.data_columns).map_err(|e| e.to_string())?;
        let Some(p) = &self.partitioning else { return Ok(vec![(String::new(), Vec::new(), data)]) };
        let values: Vec<Vec<Option<String>>> = p.columns.iter().map(|c| partition_values(b, *c)).collect::<Result<_, _>>()?;
        let mut groups: BTreeMap<String, (Vec<Option<String>>, Vec<u32>)> = BTreeMap::new();
        for i in 0..b.num_rows() {
            let row: Vec<Option<String>> = values.iter().map(|v| v[i].clone()).collect();
            let path = partition::path(&p.names, &row);
            groups.entry(path).or_insert_with(|| (row, Vec::new())).1.push(i as u32);
        }
        if groups.len() == 1 {
            let (path, (row, _)) = groups.into_iter().next().expect("one group");
            return Ok(vec![(path, row, data)]);
        }
        groups.into_iter().map(|(path, (row, idx))| take_record_batch(&data, &UInt32Array::from(idx)).map(|d| (path, row, d)).map_err(|e| e.to_string())).collect()
    }

    /// Whether the trigger of partition `p` fired.
    fn due(&self, p: &Part, now: i64) -> bool {
        if self.ended {
            return true;
        }
        let Some(cfg) = &self.partitioning else { return true };
        let delay = cfg.delay.as_millis().min(i64::MAX as u128) as i64;
        match cfg.trigger {
            Trigger::ProcessTime => now >= p.created.saturating_add(delay),
            Trigger::PartitionTime => p.time.is_some_and(|t| self.watermark > t.saturating_add(delay)),
        }
    }

    /// Commits the partitions whose files are all committed and whose trigger fired.
    fn commit_partitions(&mut self) -> Result<(), ConnectorError> {
        let now = weir::record::now_ms();
        let ready: Vec<String> = self.parts.iter().filter(|(_, p)| !p.dirty && p.committed.is_some() && p.committed >= p.last_pre_commit && self.due(p, now)).map(|(k, _)| k.clone()).collect();
        let success = self.partitioning.as_ref().is_some_and(|p| p.success_file);
        for k in ready {
            self.parts.remove(&k);
            if success {
                let dir = match &mut self.writer {
                    Parts::Rows(w) => w.dir().join(&k),
                    Parts::Parquet(w) => w.dir().join(&k),
                    Parts::Objects(w) => {
                        w.success(&k, SUCCESS_FILE)?;
                        continue;
                    }
                };
                std::fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(format!("creating {}", dir.display()), e))?;
                let f = dir.join(SUCCESS_FILE);
                File::create(&f).map_err(|e| ConnectorError::io(format!("writing {}", f.display()), e))?;
            }
        }
        Ok(())
    }
}

impl Sink<ChangeBatch> for FileSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        match &mut self.writer {
            Parts::Rows(w) => w.open(ctx.subtask),
            Parts::Parquet(w) => w.open(ctx.subtask),
            Parts::Objects(w) => w.open(ctx.subtask, ctx.parallelism),
        }
    }

    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        let now = weir::record::now_ms();
        for r in batch {
            if let Some(k) = r.value.kinds.as_ref().and_then(|k| k.iter().find(|k| **k != crate::RowKind::Insert)) {
                return Err(Self::other(format!("the file sink is append-only, it got a {} row", k.short())));
            }
            for (bucket, values, rows) in self.split(&r.value.rows.0).map_err(Self::other)? {
                let bucket = if self.partitioning.is_some() { bucket } else { hour_bucket(r.ts) };
                match &mut self.writer {
                    Parts::Rows(w) => w.write(&bucket, &encode(&self.format, &rows).map_err(Self::other)?)?,
                    Parts::Parquet(w) => w.write(&bucket, &rows)?,
                    Parts::Objects(w) if matches!(self.format, Format::Parquet(_)) => w.write_batch(&bucket, &rows)?,
                    Parts::Objects(w) => w.write(&bucket, &encode(&self.format, &rows).map_err(Self::other)?)?,
                }
                if let Some(p) = &self.partitioning {
                    if !self.parts.contains_key(&bucket) {
                        let time = match p.trigger {
                            Trigger::PartitionTime => Some(partition::time(&p.time_pattern, &p.names, &values).map_err(|e| Self::other(format!("partition {bucket}: {e}")))?),
                            Trigger::ProcessTime => None,
                        };
                        self.parts.insert(bucket.clone(), Part { time, created: now, last_pre_commit: None, dirty: false, committed: None });
                    }
                    if let Some(part) = self.parts.get_mut(&bucket) {
                        part.dirty = true;
                    }
                }
            }
        }
        if now.saturating_sub(self.last_check) >= self.check_ms {
            self.last_check = now;
            match &mut self.writer {
                Parts::Rows(w) => w.roll_older(now)?,
                Parts::Parquet(w) => w.roll_older(now)?,
                Parts::Objects(w) => w.roll_older(now)?,
            }
            self.commit_partitions()?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp) -> Result<(), ConnectorError> {
        if wm > self.watermark {
            self.watermark = wm;
            if self.partitioning.is_some() {
                self.commit_partitions()?;
            }
        }
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        let (files, parquet, uploads) = match &mut self.writer {
            Parts::Rows(w) => (w.pre_commit()?, Vec::new(), Vec::new()),
            Parts::Parquet(w) => (Vec::new(), w.pre_commit()?, Vec::new()),
            Parts::Objects(w) => (Vec::new(), Vec::new(), w.pre_commit()?),
        };
        let end = checkpoint_id == u64::MAX;
        for p in self.parts.values_mut().filter(|p| p.dirty) {
            p.dirty = false;
            p.last_pre_commit = Some(checkpoint_id);
        }
        if files.is_empty() && parquet.is_empty() && uploads.is_empty() && self.parts.is_empty() {
            // a bucket's orphans are aborted at the first commit of a run: there is one
            if let Parts::Objects(w) = &self.writer
                && !w.cleaned()
            {
                let c = Committable { checkpoint: checkpoint_id, files, parquet, uploads, parts: BTreeMap::new(), end };
                return serde_json::to_vec(&c).map(Some).map_err(Self::other);
            }
            return Ok(None);
        }
        let c = Committable { checkpoint: checkpoint_id, files, parquet, uploads, parts: self.parts.clone(), end };
        serde_json::to_vec(&c).map(Some).map_err(Self::other)
    }

    fn commit(&mut self, committable: Vec<u8>) -> Result<(), ConnectorError> {
        let c: Committable = serde_json::from_slice(&committable).map_err(|e| Self::other(format!("bad committable: {e}")))?;
        // either kind, whatever this run writes (a committable of a run before a format change)
        // a restored committable of another kind of path: the table's path changed
        match &self.writer {
            Parts::Objects(w) if !c.files.is_empty() || !c.parquet.is_empty() => {
                return Err(Self::other(format!("{}: the restored checkpoint has local part files to commit (the table's path changed from a directory to a bucket)", w.display())));
            }
            Parts::Rows(_) | Parts::Parquet(_) if !c.uploads.is_empty() => {
                return Err(Self::other(format!("the restored checkpoint has part objects to commit (such as {}; the table's path changed from a bucket to a directory)", c.uploads[0].key)));
            }
            _ => {}
        }
        match &mut self.writer {
            Parts::Rows(w) => w.commit(&c.files)?,
            Parts::Parquet(w) if !c.files.is_empty() => BucketWriter::new(w.dir(), "").commit(&c.files)?,
            Parts::Parquet(_) => {}
            Parts::Objects(w) => w.commit(&c.uploads)?,
        }
        parquet::commit(&c.parquet)?;
        for (k, p) in c.parts {
            // after a restore the partition is known from the committable only
            let part = self.parts.entry(k).or_insert(Part { last_pre_commit: Some(c.checkpoint), ..p });
            part.committed = part.committed.max(Some(c.checkpoint));
        }
        self.ended |= c.end;
        if self.partitioning.is_some() {
            self.commit_partitions()?;
        }
        Ok(())
    }
}

/// Rows in `format` to one file (`<path>.<i>` for subtask `i` when the parallelism is
/// greater than 1), truncated when the job starts; at-least-once.
pub struct TextFileSink {
    path: PathBuf,
    format: Format,
    w: Option<BufWriter<File>>,
}

impl TextFileSink {
    pub fn new(path: &Path, format: Format) -> Self {
        TextFileSink { path: path.to_path_buf(), format, w: None }
    }
}

impl Sink<ChangeBatch> for TextFileSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        let p = if ctx.parallelism > 1 {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{}", ctx.subtask));
            PathBuf::from(p)
        } else {
            self.path.clone()
        };
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ConnectorError::io(format!("cannot create {}", dir.display()), e))?;
        }
        self.w = Some(BufWriter::with_capacity(1 << 20, File::create(&p).map_err(|e| ConnectorError::io(format!("cannot create {}", p.display()), e))?));
        Ok(())
    }

    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        for r in batch {
            let bytes = encode(&self.format, &r.value.rows.0).map_err(|e| ConnectorError::Other(format!("{}: {e}", self.path.display())))?;
            if let Some(w) = self.w.as_mut() {
                w.write_all(&bytes).map_err(|e| ConnectorError::io(format!("writing {}", self.path.display()), e))?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::TableOptions;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("dt", DataType::Utf8, true), Field::new("hm", DataType::Utf8, true)]))
    }

    fn sink(dir: &Path, trigger: &str) -> FileSink {
        let o = TableOptions {
            table: "t".into(),
            connector: "filesystem".into(),
            map: [
                ("path", dir.to_str().unwrap()),
                ("format", "csv"),
                ("sink.partition-commit.trigger", trigger),
                ("sink.partition-commit.delay", "1 min"),
                ("sink.partition-commit.policy.kind", "success-file"),
                ("partition.time-extractor.timestamp-pattern", "$dt $hm:00"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            primary_key: Vec::new(),
            partition_keys: vec!["dt".into(), "hm".into()],
        };
        let fs = FsOptions::parse(&o, &schema()).unwrap();
        let mut s = FileSink::new(dir, &fs, &schema());
        s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
        s
    }

    fn rows(a: &[i64], hm: &[&str]) -> Vec<Rec<ChangeBatch>> {
        let b =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(a.to_vec())), Arc::new(StringArray::from(vec!["2024-01-01"; a.len()])), Arc::new(StringArray::from(hm.to_vec()))]).unwrap();
        vec![Rec::new(0, ChangeBatch::inserts(b))]
    }

    fn success(dir: &Path, hm: &str) -> bool {
        dir.join(format!("dt=2024-01-01/hm={}", partition::escape(hm))).join(SUCCESS_FILE).exists()
    }

    const T1000: i64 = 1704103200000; // 2024-01-01 10:00:00

    #[test]
    fn partitions_commit_when_the_watermark_passes_and_the_files_are_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(dir.path(), "partition-time");
        s.write(&rows(&[1, 2, 3], &["10:00", "10:01", "10:00"])).unwrap();
        s.on_watermark(T1000 + 90_000).unwrap();
        assert!(!success(dir.path(), "10:00"), "files not committed yet");
        let c = s.pre_commit(1).unwrap().unwrap();
        s.write(&rows(&[4], &["10:01"])).unwrap(); // after checkpoint 1
        s.commit(c).unwrap();
        assert!(success(dir.path(), "10:00"), "10:00 + 1 min passed, files committed");
        assert!(!success(dir.path(), "10:01"), "10:01 has rows after checkpoint 1");
        let files = weir::connector::files::committed_files(dir.path()).unwrap();
        let got: Vec<(String, String)> = files.iter().map(|(p, t)| (p.parent().unwrap().display().to_string(), t.clone())).collect();
        assert_eq!(got, vec![("dt=2024-01-01/hm=10%3A00".to_string(), "1\n3\n".to_string()), ("dt=2024-01-01/hm=10%3A01".to_string(), "2\n".to_string())]);
        let c = s.pre_commit(2).unwrap().unwrap();
        s.commit(c).unwrap();
        assert!(!success(dir.path(), "10:01"), "the watermark has not passed 10:02");
        s.on_watermark(T1000 + 120_001).unwrap();
        assert!(success(dir.path(), "10:01"));
        assert!(s.pre_commit(3).unwrap().is_none(), "nothing left");
    }

    #[test]
    fn waiting_partitions_survive_a_restore_and_the_end_commits_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(dir.path(), "partition-time");
        s.write(&rows(&[1], &["10:00"])).unwrap();
        let c = s.pre_commit(1).unwrap().unwrap();
        // a new sink restored from checkpoint 1
        let mut r = sink(dir.path(), "partition-time");
        r.restore(vec![c]).unwrap();
        assert!(!success(dir.path(), "10:00"));
        r.on_watermark(T1000 + 60_001).unwrap();
        assert!(success(dir.path(), "10:00"), "committed after the restore");
        r.write(&rows(&[2], &["11:00"])).unwrap();
        let c = r.pre_commit(u64::MAX).unwrap().unwrap();
        r.commit(c).unwrap();
        assert!(success(dir.path(), "11:00"), "the end of the input commits every partition");
    }

    #[test]
    fn process_time_commits_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sink(dir.path(), "process-time");
        s.write(&rows(&[1], &["10:00"])).unwrap();
        let c = s.pre_commit(1).unwrap().unwrap();
        s.commit(c).unwrap();
        assert!(!success(dir.path(), "10:00"), "a minute has not passed");
        if let Some(p) = s.parts.values_mut().next() {
            p.created -= 60_000;
        }
        s.on_watermark(0).unwrap();
        assert!(success(dir.path(), "10:00"));
    }

    /// The committed Parquet files under `dir` (not the in-progress ones), and their `a` values.
    fn parquet_rows(dir: &Path) -> (Vec<PathBuf>, Vec<i64>) {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() && !p.ends_with(weir::connector::files::IN_PROGRESS) {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(dir, &mut files);
        files.sort();
        let mut a: Vec<i64> = files.iter().flat_map(|f| parquet::read_file(f).unwrap()).flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()).collect();
        a.sort();
        (files, a)
    }

    #[test]
    fn parquet_parts_are_committed_by_checkpoints_per_partition_and_survive_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let o = TableOptions {
            table: "t".into(),
            connector: "filesystem".into(),
            map: [("path", dir.path().to_str().unwrap()), ("format", "parquet"), ("parquet.compression", "zstd"), ("sink.partition-commit.policy.kind", "success-file")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            primary_key: Vec::new(),
            partition_keys: vec!["dt".into(), "hm".into()],
        };
        let fs = FsOptions::parse(&o, &schema()).unwrap();
        let make = || {
            let mut s = FileSink::new(dir.path(), &fs, &schema());
            s.open(&SinkContext { subtask: 0, parallelism: 1 }).unwrap();
            s
        };
        let mut s = make();
        s.write(&rows(&[1, 2, 3], &["10:00", "10:01", "10:00"])).unwrap();
        let c = s.pre_commit(1).unwrap().unwrap();
        assert_eq!(parquet_rows(dir.path()).1, Vec::<i64>::new(), "nothing visible before the checkpoint completes");
        s.write(&rows(&[4], &["10:01"])).unwrap(); // after checkpoint 1: lost with the failure
        let _lost = s.pre_commit(2).unwrap().unwrap();
        drop(s);
        // restarted from checkpoint 1: its parts are committed, checkpoint 2's never
        let mut r = make();
        r.restore(vec![c]).unwrap();
        let (files, a) = parquet_rows(dir.path());
        assert_eq!(a, vec![1, 2, 3]);
        assert_eq!(files.len(), 2, "one part per partition: {files:?}");
        assert!(files.iter().all(|f| f.to_string_lossy().contains("dt=2024-01-01/hm=10%3A0")), "{files:?}");
        // the partition columns are not in the files
        let b = parquet::read_file(&files[0]).unwrap();
        assert_eq!(b[0].schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), vec!["a"]);
        r.write(&rows(&[5], &["10:01"])).unwrap();
        let c = r.pre_commit(u64::MAX).unwrap().unwrap();
        r.commit(c).unwrap();
        assert_eq!(parquet_rows(dir.path()).1, vec![1, 2, 3, 5]);
        assert!(success(dir.path(), "10:00") && success(dir.path(), "10:01"));
    }
}
