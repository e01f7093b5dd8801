//! `'format' = 'parquet'`: Parquet files (the `parquet` crate of the same arrow-rs
//! release as `arrow`), read into the table's physical columns by name and written
//! as the exactly-once sink's part files.
//!
//! - **Reading** ([`ParquetFileSource`]): only the columns the table declares are
//!   read (a projection of the file's top-level columns, matched by name); a file
//!   column of another but compatible type is cast (integers widened, floats,
//!   decimals, the string and binary types, timestamp units and zones, dates, times),
//!   an incompatible one is an error naming the file and the column. A column the
//!   file lacks is null, or an error when the table declares it `NOT NULL`. The
//!   position checkpointed is the file and the rows read of it ([`Position`]); a
//!   restore skips the row groups before the position without reading them and
//!   the rows of the group it falls in. A local file is read by ranges; an object of
//!   a bucket is fetched whole (one GET) and read from memory.
//! - **Writing** ([`ParquetParts`]): one Parquet file per in-progress part (per
//!   bucket directory), rolled by the sink's rolling policy (its encoded size so
//!   far); the footer is written when the part is closed (rolled or at the
//!   checkpoint's pre-commit), so a committed file is always complete.
//!   `'parquet.compression'` (default snappy, as Flink's), `'parquet.block.size'`
//!   (the row group size, default 128 MB) and `'parquet.page.size'` (1 MB).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use serde::{Deserialize, Serialize};
use tracing::debug;
use weir::connector::files::IN_PROGRESS;
use weir::connector::{ConnectorError, SourceContext};

use super::{Input, Position};
use crate::bad_input::{BadInput, BadInputConfig};
use crate::registry::{BatchSource, TableOptions};

/// The Parquet options of a table (writing; reading needs none).
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetOptions {
    pub compression: Compression,
    /// `parquet.block.size`: a row group is flushed once its encoded size reaches this
    pub block_size: usize,
    /// `parquet.page.size`: the data page size limit
    pub page_size: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions { compression: Compression::SNAPPY, block_size: 128 << 20, page_size: 1 << 20 }
    }
}

fn bad(opt: &str, v: &str, why: impl std::fmt::Display) -> String {
    format!("connector 'filesystem': option '{opt}' = '{v}': {why}")
}

/// `'parquet.compression'`: `snappy`, `zstd` (or `zstd(<level>)`), `lz4` (LZ4_RAW), `uncompressed` (`none`), any case.
pub fn parse_compression(v: &str) -> Result<Compression, String> {
    const SUPPORTED: &str = "supported: snappy, zstd, zstd(<1-22>), lz4, uncompressed";
    let l = v.trim().to_ascii_lowercase();
    Ok(match l.as_str() {
        "snappy" => Compression::SNAPPY,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        "zstd" => Compression::ZSTD(ZstdLevel::default()),
        "lz4" | "lz4_raw" => Compression::LZ4_RAW,
        z if z.starts_with("zstd(") && z.ends_with(')') => {
            let level: i32 = z["zstd(".len()..z.len() - 1].trim().parse().map_err(|_| bad("parquet.compression", v, format!("not a zstd level ({SUPPORTED})")))?;
            Compression::ZSTD(ZstdLevel::try_new(level).map_err(|e| bad("parquet.compression", v, e))?)
        }
        "gzip" | "brotli" | "lzo" => return Err(bad("parquet.compression", v, format!("this codec is not built in ({SUPPORTED})"))),
        _ => return Err(bad("parquet.compression", v, format!("unknown codec ({SUPPORTED})"))),
    })
}

impl ParquetOptions {
    pub fn parse(opts: &TableOptions) -> Result<Self, String> {
        let mut o = ParquetOptions::default();
        if let Some(v) = opts.get("parquet.compression") {
            o.compression = parse_compression(v)?;
        }
        let size = |key: &str| -> Result<Option<usize>, String> {
            opts.get(key).map(|v| super::super::options::parse_size(key, v).and_then(|s| usize::try_from(s).map_err(|_| bad(key, v, "too large")))).transpose()
        };
        if let Some(s) = size("parquet.block.size")? {
            o.block_size = s;
        }
        if let Some(s) = size("parquet.page.size")? {
            o.page_size = s;
        }
        Ok(o)
    }

    pub(crate) fn properties(&self) -> WriterProperties {
        WriterProperties::builder().set_compression(self.compression).set_max_row_group_bytes(Some(self.block_size.max(1))).set_data_page_size_limit(self.page_size.max(1)).build()
    }
}

/// Why a Parquet file could not be read or written; each names the file (path or URL).
#[derive(Debug, thiserror::Error)]
pub enum ParquetFormatError {
    #[error("{file}: not a readable Parquet file: {source}")]
    Open {
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{file}: reading Parquet rows after row {row}: {source}")]
    Read {
        file: String,
        row: u64,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{file}: column '{column}' is NOT NULL in the table, and the file has no such column (its columns: {columns})")]
    MissingColumn { file: String, column: String, columns: String },
    #[error("{file}: column '{column}' is {found} in the file, and the table declares {declared}: declare the column as the file's type (or a wider one of its kind)")]
    ColumnType { file: String, column: String, found: DataType, declared: DataType },
    #[error("{file}: column '{column}': {reason}")]
    Column { file: String, column: String, reason: String },
    #[error("{file}: {what}: {source}")]
    Io {
        file: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: writing Parquet: {source}")]
    Write {
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

impl From<ParquetFormatError> for ConnectorError {
    fn from(e: ParquetFormatError) -> Self {
        ConnectorError::Other(e.to_string())
    }
}

/// Whether a file column of type `from` is read into a table column of type `to`
/// (cast, with overflow an error): the same kind of value, not text for a number.
pub fn compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to {
        return true;
    }
    match (from, to) {
        (Dictionary(_, v), _) => compatible(v, to),
        (Null, _) => true,
        (f, t) if f.is_integer() => t.is_integer() || t.is_floating() || matches!(t, Decimal128(..) | Decimal256(..)),
        (Float16 | Float32 | Float64, Float32 | Float64) => true,
        (Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..), Decimal128(..) | Decimal256(..) | Float64) => true,
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Binary | LargeBinary | BinaryView | FixedSizeBinary(_), Binary | LargeBinary | BinaryView) => true,
        (Timestamp(..), Timestamp(..)) | (Date32 | Date64, Date32 | Date64) | (Time32(_) | Time64(_), Time32(_) | Time64(_)) => true,
        (List(_) | LargeList(_) | FixedSizeList(..), List(_) | LargeList(_)) | (Struct(_), Struct(_)) | (Map(..), Map(..)) => arrow::compute::can_cast_types(from, to),
        _ => false,
    }
}

/// Where a table column comes from in a file.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    /// the projected batch's column (its index there)
    Column(usize),
    /// the file has no such column: nulls
    Nulls,
}

/// The projection of a file for `table`: the file's root columns to read, and for
/// each table column where it is in the projected batch. Errors name `file`.
fn plan(file: &str, file_schema: &Schema, table: &Schema) -> Result<(Vec<usize>, Vec<Source>), ParquetFormatError> {
    let mut roots: Vec<usize> = Vec::new();
    let mut found: Vec<Option<usize>> = Vec::new();
    for f in table.fields() {
        match file_schema.fields().iter().position(|c| c.name() == f.name()) {
            Some(i) => {
                let t = file_schema.field(i).data_type();
                if !compatible(t, f.data_type()) {
                    return Err(ParquetFormatError::ColumnType { file: file.into(), column: f.name().clone(), found: t.clone(), declared: f.data_type().clone() });
                }
                roots.push(i);
                found.push(Some(i));
            }
            None if !f.is_nullable() => {
                let columns = file_schema.fields().iter().map(|c| format!("{} {}", c.name(), c.data_type())).collect::<Vec<_>>().join(", ");
                return Err(ParquetFormatError::MissingColumn { file: file.into(), column: f.name().clone(), columns });
            }
            None => found.push(None),
        }
    }
    roots.sort_unstable();
    roots.dedup();
    let sources = found.into_iter().map(|i| i.and_then(|i| roots.binary_search(&i).ok()).map_or(Source::Nulls, Source::Column)).collect();
    Ok((roots, sources))
}

/// A projected batch of a file as a batch of `table` (cast, nulls for missing columns).
fn conform(file: &str, batch: &RecordBatch, sources: &[Source], table: &SchemaRef) -> Result<RecordBatch, ParquetFormatError> {
    let n = batch.num_rows();
    let opts = CastOptions { safe: false, ..Default::default() };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(sources.len());
    for (f, s) in table.fields().iter().zip(sources) {
        let col_err = |reason: String| ParquetFormatError::Column { file: file.into(), column: f.name().clone(), reason };
        let a = match s {
            Source::Nulls => new_null_array(f.data_type(), n),
            Source::Column(i) => {
                let a = batch.column(*i);
                if a.data_type() == f.data_type() {
                    a.clone()
                } else {
                    cast_with_options(a, f.data_type(), &opts).map_err(|e| col_err(format!("cannot read {} as {}: {e}", a.data_type(), f.data_type())))?
                }
            }
        };
        if !f.is_nullable() && a.null_count() > 0 {
            return Err(col_err("NOT NULL in the table, and the file holds a null".into()));
        }
        columns.push(a);
    }
    RecordBatch::try_new_with_options(table.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(n))).map_err(|e| ParquetFormatError::Read { file: file.into(), row: 0, source: e })
}

/// [`conform`], the rows that cannot be (a null in a `NOT NULL` column, a value the
/// cast cannot convert) left out: those as (row index in `batch`, error).
fn conform_good(file: &str, batch: &RecordBatch, sources: &[Source], table: &SchemaRef) -> Result<(RecordBatch, Vec<(usize, String)>), ParquetFormatError> {
    if let Ok(b) = conform(file, batch, sources, table) {
        return Ok((b, Vec::new()));
    }
    let n = batch.num_rows();
    let opts = CastOptions { safe: true, ..Default::default() };
    let mut bad: Vec<Option<String>> = vec![None; n];
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(sources.len());
    for (f, s) in table.fields().iter().zip(sources) {
        let col_err = |reason: String| ParquetFormatError::Column { file: file.into(), column: f.name().clone(), reason };
        let (a, from) = match s {
            Source::Nulls => (new_null_array(f.data_type(), n), None),
            Source::Column(i) => {
                let a = batch.column(*i);
                let c = if a.data_type() == f.data_type() {
                    a.clone()
                } else {
                    cast_with_options(a, f.data_type(), &opts).map_err(|e| col_err(format!("cannot read {} as {}: {e}", a.data_type(), f.data_type())))?
                };
                (c, Some(a))
            }
        };
        for i in 0..n {
            if !a.is_null(i) || bad[i].is_some() {
                continue;
            }
            if from.is_some_and(|s| s.is_valid(i)) {
                bad[i] = Some(format!("column '{}': cannot read the {} value as {}", f.name(), from.map(|s| s.data_type().to_string()).unwrap_or_default(), f.data_type()));
            } else if !f.is_nullable() {
                bad[i] = Some(format!("column '{}': NOT NULL in the table, and the file holds a null", f.name()));
            }
        }
        columns.push(a);
    }
    let read_err = |e| ParquetFormatError::Read { file: file.into(), row: 0, source: e };
    let nullable = Arc::new(Schema::new(table.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()));
    let all = RecordBatch::try_new_with_options(nullable, columns, &RecordBatchOptions::new().with_row_count(Some(n))).map_err(read_err)?;
    let keep: arrow::array::BooleanArray = bad.iter().map(|b| Some(b.is_none())).collect();
    let good = arrow::compute::filter_record_batch(&all, &keep).map_err(read_err)?;
    let good = RecordBatch::try_new_with_options(table.clone(), good.columns().to_vec(), &RecordBatchOptions::new().with_row_count(Some(good.num_rows()))).map_err(read_err)?;
    Ok((good, bad.into_iter().enumerate().filter_map(|(i, e)| e.map(|e| (i, e))).collect()))
}

/// The file being read.
struct Reading {
    file: String,
    rows: ParquetRecordBatchReader,
    sources: Vec<Source>,
    /// the rest of a batch (as read, not conformed yet) larger than a call wanted
    pending: Option<RecordBatch>,
}

/// Reads Parquet files into batches of the table's physical schema; the files of the
/// path are read as [`Position`] says, and the position (file, rows read) is
/// checkpointed.
pub struct ParquetFileSource {
    path: Input,
    schema: SchemaRef,
    batch_rows: usize,
    pos: Position,
    reading: Option<Reading>,
    bad: BadInput,
}

impl ParquetFileSource {
    /// Reads `path`: a local path (`PathBuf`) or an [`Input`].
    pub fn new(path: impl Into<Input>, schema: SchemaRef, batch_rows: usize) -> Self {
        ParquetFileSource { path: path.into(), schema, batch_rows: batch_rows.max(1), pos: Position::default(), reading: None, bad: BadInputConfig::fail("", "filesystem").handler() }
    }

    /// Bad rows (a null in a `NOT NULL` column, a value that does not cast) as `cfg`
    /// says (by default they fail the job); a file that is no Parquet is always an error.
    pub fn bad_input(mut self, cfg: &BadInputConfig) -> Self {
        self.bad = cfg.handler();
        self
    }

    /// Opens the current file, skipping the rows read before a restore.
    fn open_current(&mut self, input: &Input) -> Result<Reading, ConnectorError> {
        let file = input.display();
        let skip = self.pos.take_restored_skip();
        match input {
            Input::Local(p) => {
                let f = File::open(p).map_err(|source| ParquetFormatError::Io { file: file.clone(), what: "cannot open", source })?;
                self.reader(file, f, skip)
            }
            Input::Object { bucket, path, .. } => {
                let bytes: Bytes = bucket.read_all(path)?;
                self.reader(file, bytes, skip)
            }
        }
    }

    fn reader<R: ChunkReader + 'static>(&self, file: String, r: R, skip: u64) -> Result<Reading, ConnectorError> {
        let b = ParquetRecordBatchReaderBuilder::try_new(r).map_err(|source| ParquetFormatError::Open { file: file.clone(), source })?;
        let (roots, sources) = plan(&file, b.schema(), &self.schema)?;
        let mask = ProjectionMask::roots(b.parquet_schema(), roots);
        // whole row groups before the restored position are not read at all
        let (mut groups, mut rest) = (Vec::new(), skip);
        for (i, g) in b.metadata().row_groups().iter().enumerate() {
            let n = g.num_rows().max(0) as u64;
            if groups.is_empty() && rest >= n && n > 0 {
                rest -= n;
            } else if n > 0 {
                groups.push(i);
            }
        }
        if skip > 0 {
            debug!(file = %file, skip, skipped_groups = b.metadata().num_row_groups() - groups.len(), "resuming a Parquet file");
        }
        let mut b = b.with_projection(mask).with_batch_size(self.batch_rows).with_row_groups(groups);
        if rest > 0 {
            b = b.with_offset(usize::try_from(rest).unwrap_or(usize::MAX));
        }
        let rows = b.build().map_err(|source| ParquetFormatError::Open { file: file.clone(), source })?;
        Ok(Reading { file, rows, sources, pending: None })
    }
}

impl BatchSource for ParquetFileSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.pos.open(&self.path, ctx)
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.pos.owns() {
            return Ok(None);
        }
        let want = max_rows.min(self.batch_rows).max(1);
        loop {
            if self.reading.is_none() {
                let Some(input) = self.pos.current().cloned() else { return Ok(None) };
                self.reading = Some(self.open_current(&input)?);
            }
            let r = self.reading.as_mut().expect("opened above");
            let batch = match r.pending.take() {
                Some(b) => b,
                None => match r.rows.next() {
                    Some(Ok(b)) => b,
                    Some(Err(source)) => return Err(ParquetFormatError::Read { file: r.file.clone(), row: self.pos.read, source }.into()),
                    None => {
                        self.reading = None;
                        self.pos.next_file();
                        continue;
                    }
                },
            };
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            let batch = if n > want {
                r.pending = Some(batch.slice(want, n - want));
                batch.slice(0, want)
            } else {
                batch
            };
            // the position counts the rows read, bad ones too
            let (first, rows) = (self.pos.read, batch.num_rows() as u64);
            let out = if self.bad.fails() {
                match conform(&r.file, &batch, &r.sources, &self.schema) {
                    Ok(b) => b,
                    // name the first bad row
                    Err(e) => match conform_good(&r.file, &batch, &r.sources, &self.schema) {
                        Ok((_, bad)) if !bad.is_empty() => return Err(ConnectorError::Other(format!("{e} (row {})", first + bad[0].0 as u64))),
                        _ => return Err(e.into()),
                    },
                }
            } else {
                let (good, bad) = conform_good(&r.file, &batch, &r.sources, &self.schema)?;
                for (i, e) in bad {
                    let raw = crate::rows::json_rows(&batch.slice(i, 1)).map(|v| v.concat()).unwrap_or_default();
                    self.bad.record(&r.file, first + i as u64, &e, raw.as_bytes())?;
                }
                good
            };
            self.pos.count_records(rows);
            if out.num_rows() == 0 {
                continue;
            }
            return Ok(Some(out));
        }
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.pos.snapshot())
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.pos.restore(splits)
    }
}

/// A closed in-progress Parquet part and the path it is committed to (the same
/// two phases as the row formats' part files).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PartFile {
    tmp: PathBuf,
    fin: PathBuf,
}

impl PartFile {
    /// Where the file becomes visible when committed.
    pub fn committed_path(&self) -> &Path {
        &self.fin
    }
}

struct OpenPart {
    tmp: PathBuf,
    fin: PathBuf,
    w: ArrowWriter<File>,
    /// wall-clock time it was opened (ms)
    opened: i64,
}

/// Writes batches into in-progress Parquet part files under `<dir>/.inprogress/`, one
/// open file per bucket (a directory relative to the sink's, `""` the directory
/// itself), and commits them in two phases: [`ParquetParts::pre_commit`] writes
/// every open file's footer and syncs it, [`ParquetParts::commit`] renames the
/// files into their buckets as `part-<run>-<subtask>-<n>.parquet` (idempotently).
pub struct ParquetParts {
    dir: PathBuf,
    /// the schema of the files (the table's columns less the partition columns)
    schema: SchemaRef,
    props: WriterProperties,
    roll_bytes: u64,
    rollover_ms: Option<i64>,
    run: String,
    subtask: u32,
    seq: u64,
    open: HashMap<String, OpenPart>,
    staged: Vec<PartFile>,
}

impl ParquetParts {
    pub fn new(dir: &Path, schema: SchemaRef, o: &ParquetOptions, roll_bytes: u64, rollover_interval: Option<std::time::Duration>) -> Self {
        let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0));
        ParquetParts {
            dir: dir.to_path_buf(),
            schema,
            props: o.properties(),
            roll_bytes: roll_bytes.max(1),
            rollover_ms: rollover_interval.map(|d| d.as_millis().min(i64::MAX as u128) as i64),
            run,
            subtask: 0,
            seq: 0,
            open: HashMap::new(),
            staged: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the in-progress directory; the subtask names the part files.
    pub fn open(&mut self, subtask: u32) -> Result<(), ConnectorError> {
        self.subtask = subtask;
        let ip = self.dir.join(IN_PROGRESS);
        std::fs::create_dir_all(&ip).map_err(|e| ConnectorError::io(format!("creating {}", ip.display()), e))
    }

    /// Whether `bucket` has an open (not yet closed) part.
    pub fn is_open(&self, bucket: &str) -> bool {
        self.open.contains_key(bucket)
    }

    /// `batch` as a batch of the files' schema: the table's names, types cast.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        conform_to(&self.schema, batch)
    }

    /// Appends the rows of `batch` (the files' columns) to the open part of `bucket`;
    /// the part rolls once its encoded size reaches the rolling policy's file size.
    pub fn write(&mut self, bucket: &str, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = self.conform(batch).map_err(|e| ConnectorError::Other(format!("filesystem sink {}: {e}", self.dir.display())))?;
        if !self.open.contains_key(bucket) {
            self.seq += 1;
            let name = format!("part-{}-{}-{}.parquet", self.run, self.subtask, self.seq);
            let tmp = self.dir.join(IN_PROGRESS).join(&name);
            let fin = if bucket.is_empty() { self.dir.join(&name) } else { self.dir.join(bucket).join(&name) };
            let file = tmp.display().to_string();
            let f = File::create(&tmp).map_err(|source| ParquetFormatError::Io { file: file.clone(), what: "cannot create", source })?;
            let w = ArrowWriter::try_new(f, self.schema.clone(), Some(self.props.clone())).map_err(|source| ParquetFormatError::Write { file, source })?;
            self.open.insert(bucket.to_string(), OpenPart { tmp, fin, w, opened: weir::record::now_ms() });
        }
        let o = self.open.get_mut(bucket).expect("opened above");
        o.w.write(&batch).map_err(|source| ParquetFormatError::Write { file: o.tmp.display().to_string(), source })?;
        if (o.w.bytes_written() + o.w.in_progress_size()) as u64 >= self.roll_bytes {
            self.close(bucket)?;
        }
        Ok(())
    }

    /// Closes the part of `bucket`: its footer written, the file synced, staged.
    fn close(&mut self, bucket: &str) -> Result<(), ConnectorError> {
        if let Some(o) = self.open.remove(bucket) {
            let file = o.tmp.display().to_string();
            let rows = o.w.flushed_row_groups().iter().map(|g| g.num_rows()).sum::<i64>() + o.w.in_progress_rows() as i64;
            let f = o.w.into_inner().map_err(|source| ParquetFormatError::Write { file: file.clone(), source })?;
            f.sync_all().map_err(|source| ParquetFormatError::Io { file: file.clone(), what: "syncing", source })?;
            debug!(file = %file, rows, "Parquet part closed");
            self.staged.push(PartFile { tmp: o.tmp, fin: o.fin });
        }
        Ok(())
    }

    /// Rolls the parts open for longer than the rollover interval (at `now`, ms).
    pub fn roll_older(&mut self, now: i64) -> Result<(), ConnectorError> {
        let Some(limit) = self.rollover_ms else { return Ok(()) };
        let old: Vec<String> = self.open.iter().filter(|(_, o)| now.saturating_sub(o.opened) >= limit).map(|(b, _)| b.clone()).collect();
        for b in old {
            self.close(&b)?;
        }
        Ok(())
    }

    /// Phase one: closes every open part (footers written); the parts to commit (also
    /// those rolled before).
    pub fn pre_commit(&mut self) -> Result<Vec<PartFile>, ConnectorError> {
        let buckets: Vec<String> = self.open.keys().cloned().collect();
        for b in buckets {
            self.close(&b)?;
        }
        Ok(std::mem::take(&mut self.staged))
    }
}

/// `batch` as a batch of `schema` (the files'): its names, types cast.
pub fn conform_to(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, String> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(format!("{} columns, the files have {}", batch.num_columns(), schema.fields().len()));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { arrow::compute::cast(c, f.data_type()).map_err(|e| format!("column '{}': {e}", f.name())) })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(batch.num_rows()))).map_err(|e| e.to_string())
}

/// Phase two: makes the parts visible (idempotent: a part committed before a failure
/// is left as it is).
pub fn commit(files: &[PartFile]) -> Result<(), ConnectorError> {
    for s in files {
        if s.tmp.exists() {
            if let Some(parent) = s.fin.parent() {
                std::fs::create_dir_all(parent).map_err(|e| ConnectorError::io(format!("creating {}", parent.display()), e))?;
            }
            std::fs::rename(&s.tmp, &s.fin).map_err(|e| ConnectorError::io(format!("committing {}", s.fin.display()), e))?;
        } else if !s.fin.exists() {
            return Err(ConnectorError::Other(format!("cannot commit {}: its in-progress file {} is gone", s.fin.display(), s.tmp.display())));
        }
    }
    Ok(())
}

/// The rows of a Parquet file (all its columns), for tests and tools.
pub fn read_file(path: &Path) -> Result<Vec<RecordBatch>, ParquetFormatError> {
    let file = path.display().to_string();
    let f = File::open(path).map_err(|source| ParquetFormatError::Io { file: file.clone(), what: "cannot open", source })?;
    let r = ParquetRecordBatchReaderBuilder::try_new(f).and_then(|b| b.build()).map_err(|source| ParquetFormatError::Open { file: file.clone(), source })?;
    r.collect::<Result<Vec<_>, _>>().map_err(|source| ParquetFormatError::Read { file, row: 0, source })
}

/// The schema of the files of `table`: its `columns` (all but the partition columns).
pub fn data_schema(table: &Schema, columns: &[usize]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|i| table.field(*i).clone()).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, TimeUnit};

    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("name", DataType::Utf8, true), Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true)]))
    }

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let n = ids.end - ids.start;
        RecordBatch::try_new(
            table(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(ids.clone().map(|i| format!("n{i}")))),
                Arc::new(TimestampMillisecondArray::from_iter_values((0..n).map(|i| 1_700_000_000_000 + i))),
            ],
        )
        .unwrap()
    }

    /// Writes `batches` as one Parquet file of `schema` with row groups of `group` rows.
    fn write_file(path: &Path, schema: SchemaRef, batches: &[RecordBatch], group: usize) {
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(group)).build();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props)).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }

    fn ids(s: &mut dyn BatchSource, max: usize, limit: usize) -> Vec<i64> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(b) = s.next_batch(max).unwrap() else { break };
            out.extend(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
        }
        out
    }

    fn ctx() -> SourceContext {
        SourceContext { subtask: 0, parallelism: 1 }
    }

    #[test]
    fn compression_option() {
        assert_eq!(parse_compression("SNAPPY").unwrap(), Compression::SNAPPY);
        assert_eq!(parse_compression("zstd").unwrap(), Compression::ZSTD(ZstdLevel::default()));
        assert_eq!(parse_compression("zstd(7)").unwrap(), Compression::ZSTD(ZstdLevel::try_new(7).unwrap()));
        assert_eq!(parse_compression("none").unwrap(), Compression::UNCOMPRESSED);
        let e = parse_compression("gzip").unwrap_err();
        assert!(e.contains("'parquet.compression' = 'gzip': this codec is not built in"), "{e}");
        assert!(parse_compression("zstd(99)").unwrap_err().contains("'zstd(99)'"));
        assert!(parse_compression("rar").unwrap_err().contains("unknown codec"));
    }

    #[test]
    fn reads_a_directory_of_files_in_batches_and_resumes_mid_file_from_a_row_group() {
        let d = tempfile::tempdir().unwrap();
        write_file(&d.path().join("a.parquet"), table(), &[batch(0..25)], 10);
        write_file(&d.path().join("b.parquet"), table(), &[batch(25..40)], 4);
        let mut s = ParquetFileSource::new(d.path().to_path_buf(), table(), 7);
        s.open(&ctx()).unwrap();
        let first = ids(&mut s, 4, 21); // batches of at most 4: part-way into a.parquet's third row group
        let k = first.len() as i64;
        assert!(k > 20 && k < 25 && first == (0..k).collect::<Vec<_>>(), "{first:?}");
        let snap = s.snapshot().unwrap();
        let mut all = first.clone();
        all.extend(ids(&mut s, 1000, usize::MAX));
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        // restored: the two row groups before the position are skipped, then k - 20 rows
        let mut r = ParquetFileSource::new(d.path().to_path_buf(), table(), 7);
        r.restore(snap).unwrap();
        r.open(&ctx()).unwrap();
        assert_eq!(ids(&mut r, 1000, usize::MAX), (k..40).collect::<Vec<_>>());
        // a position inside a row group of the second file: rows 6.. of b.parquet
        let mut pos = 1u64.to_le_bytes().to_vec();
        pos.extend_from_slice(&6u64.to_le_bytes());
        let mut r = ParquetFileSource::new(d.path().to_path_buf(), table(), 7);
        r.restore(vec![pos]).unwrap();
        r.open(&ctx()).unwrap();
        assert_eq!(ids(&mut r, 2, 2), vec![31, 32]);
        // its snapshot counts the rows skipped and read of the file
        let s = r.snapshot().unwrap();
        assert_eq!((&s[0][..8], &s[0][8..]), (&1u64.to_le_bytes()[..], &8u64.to_le_bytes()[..]));
        assert_eq!(ids(&mut r, 1000, usize::MAX), (33..40).collect::<Vec<_>>());
    }

    #[test]
    fn projects_casts_and_fills_missing_nullable_columns() {
        let d = tempfile::tempdir().unwrap();
        // the file: extra column, id as INT32, no ts
        let fs = Arc::new(Schema::new(vec![Field::new("extra", DataType::Utf8, true), Field::new("name", DataType::Utf8, true), Field::new("id", DataType::Int32, true)]));
        let b =
            RecordBatch::try_new(fs.clone(), vec![Arc::new(StringArray::from(vec!["x", "y"])), Arc::new(StringArray::from(vec![Some("a"), None])), Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
        write_file(&d.path().join("f.parquet"), fs, &[b], 100);
        let mut s = ParquetFileSource::new(d.path().join("f.parquet"), table(), 100);
        s.open(&ctx()).unwrap();
        let b = s.next_batch(100).unwrap().unwrap();
        assert_eq!(b.schema(), table());
        assert_eq!(b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values(), &[1, 2]);
        assert_eq!(b.column(1).as_any().downcast_ref::<StringArray>().unwrap().iter().collect::<Vec<_>>(), vec![Some("a"), None]);
        assert_eq!(b.column(2).null_count(), 2);
        assert!(s.next_batch(100).unwrap().is_none());
    }

    #[test]
    fn wrong_types_missing_columns_nulls_and_corrupt_files_name_the_file_and_column() {
        let d = tempfile::tempdir().unwrap();
        let read = |name: &str, schema: SchemaRef| {
            let mut s = ParquetFileSource::new(d.path().join(name), schema, 100);
            s.open(&ctx()).unwrap();
            s.next_batch(100).map(|_| ()).unwrap_err().to_string()
        };
        let fs = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        write_file(&d.path().join("text.parquet"), fs.clone(), &[RecordBatch::try_new(fs, vec![Arc::new(StringArray::from(vec!["1"]))]).unwrap()], 10);
        let e = read("text.parquet", table());
        assert!(e.contains("text.parquet: column 'id' is Utf8 in the file, and the table declares Int64"), "{e}");
        let fs = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, true)]));
        write_file(&d.path().join("noid.parquet"), fs.clone(), &[RecordBatch::try_new(fs, vec![Arc::new(StringArray::from(vec!["a"]))]).unwrap()], 10);
        let e = read("noid.parquet", table());
        assert!(e.contains("noid.parquet: column 'id' is NOT NULL in the table, and the file has no such column (its columns: name Utf8)"), "{e}");
        let fs = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        write_file(&d.path().join("null.parquet"), fs.clone(), &[RecordBatch::try_new(fs, vec![Arc::new(Int64Array::from(vec![Some(1), None]))]).unwrap()], 10);
        let e = read("null.parquet", table());
        assert!(e.contains("null.parquet: column 'id': NOT NULL in the table, and the file holds a null (row 1)"), "{e}");
        let big = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let small = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)]));
        write_file(&d.path().join("big.parquet"), big.clone(), &[RecordBatch::try_new(big, vec![Arc::new(Int64Array::from(vec![1i64 << 40]))]).unwrap()], 10);
        let e = read("big.parquet", small);
        assert!(e.contains("big.parquet: column 'id': cannot read Int64 as Int32"), "{e}");
        std::fs::write(d.path().join("bad.parquet"), b"{\"id\": 1}\n").unwrap();
        let e = read("bad.parquet", table());
        assert!(e.contains("bad.parquet: not a readable Parquet file"), "{e}");
        // a truncated file (its footer cut off)
        write_file(&d.path().join("cut.parquet"), table(), &[batch(0..100)], 10);
        let bytes = std::fs::read(d.path().join("cut.parquet")).unwrap();
        std::fs::write(d.path().join("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
        let e = read("cut.parquet", table());
        assert!(e.contains("cut.parquet: not a readable Parquet file"), "{e}");

        // with a bad-input policy the bad rows (a null in a NOT NULL column, a value that
        // does not cast) go to it; a file that is no Parquet is still an error
        let dl = d.path().join("dl");
        let cfg = crate::bad_input::BadInputConfig { policy: crate::bad_input::Policy::DeadLetter(dl.display().to_string()), table: "pq-bad-rows".into(), connector: "filesystem".into() };
        let rows = |name: &str, schema: SchemaRef| {
            let mut s = ParquetFileSource::new(d.path().join(name), schema, 100).bad_input(&cfg);
            s.open(&ctx()).unwrap();
            let mut ids = Vec::new();
            while let Some(b) = s.next_batch(100)? {
                ids.extend(b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.values().to_vec()).unwrap_or_else(|| vec![-1; b.num_rows()]));
            }
            Ok::<_, ConnectorError>(ids)
        };
        assert_eq!(rows("null.parquet", table()).unwrap(), vec![1]);
        assert_eq!(rows("big.parquet", Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)]))).unwrap().len(), 0);
        let e = rows("bad.parquet", table()).unwrap_err().to_string();
        assert!(e.contains("bad.parquet: not a readable Parquet file"), "{e}");
        let mut letters: Vec<serde_json::Value> = std::fs::read_dir(&dl).unwrap().map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap()).collect();
        letters.sort_by_key(|v| v["source"].as_str().unwrap_or_default().to_string());
        assert_eq!(letters.len(), 2, "{letters:?}");
        assert!(letters[0]["source"].as_str().unwrap().ends_with("big.parquet") && letters[0]["position"] == 0, "{letters:?}");
        assert!(letters[0]["error"].as_str().unwrap().contains("column 'id': cannot read the Int64 value as Int32"), "{letters:?}");
        assert_eq!(letters[0]["raw"], "{\"id\":1099511627776}");
        assert!(letters[1]["source"].as_str().unwrap().ends_with("null.parquet") && letters[1]["position"] == 1, "{letters:?}");
        assert!(letters[1]["error"].as_str().unwrap().contains("NOT NULL in the table, and the file holds a null"), "{letters:?}");
        assert_eq!(crate::bad_input::count("filesystem", "pq-bad-rows"), 2);
    }

    #[test]
    fn parts_are_complete_files_at_pre_commit_and_visible_at_commit() {
        let d = tempfile::tempdir().unwrap();
        let mut p = ParquetParts::new(d.path(), table(), &ParquetOptions::default(), 1 << 30, None);
        p.open(3).unwrap();
        p.write("h1", &batch(0..10)).unwrap();
        p.write("h1", &batch(10..20)).unwrap();
        p.write("", &batch(20..25)).unwrap();
        assert!(p.is_open("h1"));
        let staged = p.pre_commit().unwrap();
        assert_eq!(staged.len(), 2);
        assert!(!p.is_open("h1"));
        // complete (footer written) before they are committed
        for s in &staged {
            assert!(read_file(&s.tmp).is_ok(), "{}", s.tmp.display());
            assert!(!s.fin.exists());
        }
        commit(&staged).unwrap();
        commit(&staged).unwrap(); // idempotent
        let rows: usize = staged.iter().map(|s| read_file(s.committed_path()).unwrap().iter().map(|b| b.num_rows()).sum::<usize>()).sum();
        assert_eq!(rows, 25);
        assert!(staged.iter().all(|s| s.fin.file_name().unwrap().to_string_lossy().ends_with(".parquet") && s.fin.to_string_lossy().contains("part-")));
        // rolled by size: every write past the size closes the part
        let mut p = ParquetParts::new(d.path(), table(), &ParquetOptions::default(), 16, None);
        p.open(0).unwrap();
        p.write("x", &batch(0..10)).unwrap();
        assert!(!p.is_open("x"));
        p.write("x", &batch(10..20)).unwrap();
        assert_eq!(p.pre_commit().unwrap().len(), 2);
    }

    #[test]
    fn the_sink_casts_and_renames_to_the_tables_columns() {
        let d = tempfile::tempdir().unwrap();
        let mut p = ParquetParts::new(d.path(), table(), &ParquetOptions { compression: Compression::ZSTD(ZstdLevel::default()), ..Default::default() }, 1 << 30, None);
        p.open(0).unwrap();
        let other =
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false), Field::new("y", DataType::Utf8, true), Field::new("z", DataType::Timestamp(TimeUnit::Millisecond, None), true)]));
        let b = RecordBatch::try_new(other, vec![Arc::new(Int32Array::from(vec![7])), Arc::new(StringArray::from(vec!["s"])), Arc::new(TimestampMillisecondArray::from(vec![5]))]).unwrap();
        p.write("", &b).unwrap();
        let staged = p.pre_commit().unwrap();
        let got = read_file(&staged[0].tmp).unwrap();
        assert_eq!(got[0].schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), vec!["id", "name", "ts"]);
        assert_eq!(got[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().values(), &[7]);
    }
}
