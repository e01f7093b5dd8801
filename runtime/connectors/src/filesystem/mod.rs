//! `filesystem`: files of a format (`'format' = 'json'` JSON lines, `'csv'`, `'parquet'`) read
//! from a file or directory, written by the exactly-once part-file sink (a
//! directory; `PARTITIONED BY` tables into partition directories, committed by the
//! partition commit trigger) or to one file, and read by key for lookup joins.
//!
//! One module per responsibility: [`options`] (the options, parsed and checked),
//! [`format`] (readers and encoders of each format), [`partition`] (partition
//! directories and times), [`sink`] (the sinks), [`lookup`] (lookup joins),
//! [`watch`] (the watched directory of `'source.monitor-interval'`: an unbounded source),
//! [`store`] (buckets, `s3://` `gs://` `az://`, as a source's path), [`upload`] (the
//! part-file sink on a bucket: multipart uploads committed by checkpoints).

pub mod format;
pub mod lookup;
pub mod options;
pub mod partition;
pub mod sink;
pub mod store;
pub mod upload;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir::connector::files::ExactlyOnceFileSink;
use weir::connector::jsonl::JsonLinesSink;
use weir::connector::{ConnectorError, SourceContext};
use weir::record::Collector;

use crate::changelog::ChangeBatch;
use crate::registry::{BatchSource, ChangelogMode, Connector, LookupSource, SinkArgs, SourceFactory, TableOptions};
use crate::rows::json_sink;
use format::Input;
pub use format::csv::CsvFileSource;
pub use format::json::JsonFileSource;
pub use format::parquet::ParquetFileSource;
use options::{Format, FsOptions};
use store::{Bucket, BucketUrl};

/// `filesystem`: `'path'` (a local path or `file://` URL; also a bucket's object or
/// prefix, `s3://bucket/prefix/`, `gs://`, `az://`, read by a source or written as
/// part files by the exactly-once sink, [`upload`]), `'format'`
/// (`json`, `csv` with Flink's `csv.*` options, `parquet` with `parquet.*`). As a source it reads the file (or
/// every file of the directory) once, or with `'source.monitor-interval'` watches the
/// directory and reads each new file once ([`watch`]: unbounded); as a sink it writes the exactly-once part-file sink when the
/// path is a directory (ends with `/`, exists as one, or the table is partitioned),
/// else one file. See `docs/connectors.md`.
pub struct Filesystem;

/// The local path of the `path` option (`file://` stripped; other schemes refused:
/// `what` says what is not supported on them yet, e.g. `writing`).
fn local_path(p: &str, what: &str) -> Result<PathBuf, String> {
    if let Some(rest) = p.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if let Some((scheme, _)) = p.split_once("://") {
        return Err(format!(
            "connector 'filesystem': option 'path' = '{p}': {what} '{scheme}://' paths is not supported yet (a local path or file://; a bucket can be read by a source and written by the part-file sink)"
        ));
    }
    Ok(PathBuf::from(p))
}

/// Where a source reads: a local path, or a bucket's object or prefix.
enum SourcePath {
    Local(PathBuf),
    Bucket(BucketUrl),
}

fn source_path(p: &str) -> Result<SourcePath, String> {
    if store::is_bucket_url(p) {
        let u = BucketUrl::parse(p).map_err(|e| format!("connector 'filesystem': option 'path' = {e}"))?;
        return Ok(SourcePath::Bucket(u));
    }
    local_path(p, "reading").map(SourcePath::Local)
}

/// A source that could not be made: its `open` fails with why.
struct Failed(Option<String>);

impl BatchSource for Failed {
    fn open(&mut self, _ctx: &SourceContext) -> Result<(), ConnectorError> {
        Err(ConnectorError::Other(self.0.take().unwrap_or_else(|| "the source could not be made".into())))
    }
    fn next_batch(&mut self, _max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        Err(ConnectorError::Other("the source could not be made".into()))
    }
}

/// The files a source reads at `path`: the file, or the files of the directory in
/// name order (hidden files and `_SUCCESS` markers left out).
pub(crate) fn list_files(path: &Path) -> Result<Vec<PathBuf>, ConnectorError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| ConnectorError::io(format!("cannot list {}", path.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.') || n == sink::SUCCESS_FILE))
        .collect();
    v.sort();
    Ok(v)
}

/// The reader of a file (or of every file of a directory) in the table's format.
fn file_reader(fs: &FsOptions, schema: SchemaRef) -> watch::FileReader {
    let (format, batch_rows, bad) = (fs.format.clone(), fs.batch_rows, fs.bad_input.clone());
    Arc::new(move |path: Input| match &format {
        Format::Json => Box::new(JsonFileSource::new(path, schema.clone(), batch_rows).bad_input(&bad)) as Box<dyn BatchSource>,
        Format::Csv(o) => Box::new(CsvFileSource::new(path, schema.clone(), o.clone(), batch_rows).bad_input(&bad)) as Box<dyn BatchSource>,
        Format::Parquet(_) => Box::new(ParquetFileSource::new(path, schema.clone(), batch_rows).bad_input(&bad)) as Box<dyn BatchSource>,
    })
}

fn factory(path: PathBuf, fs: &FsOptions, schema: SchemaRef) -> SourceFactory {
    let open = file_reader(fs, schema);
    Arc::new(move |_ctx: &SourceContext| open(Input::Local(path.clone())))
}

/// The bounded source of a bucket's object or prefix: read as a local file or
/// directory is, each subtask with its own client.
fn bucket_factory(table: &str, url: BucketUrl, fs: &FsOptions, schema: SchemaRef) -> SourceFactory {
    let open = file_reader(fs, schema);
    let table = table.to_string();
    Arc::new(move |_ctx: &SourceContext| match Bucket::open(&url) {
        Ok(b) => open(Input::Object { bucket: Arc::new(b), path: url.path.clone(), is_prefix: url.is_prefix }),
        Err(e) => Box::new(Failed(Some(format!("table '{table}': {e}")))) as Box<dyn BatchSource>,
    })
}

/// The source of a watched directory or prefix (`'source.monitor-interval'`): each
/// file read by the format's own file source.
fn watched_factory(table: &str, watched: watch::Watched, interval: std::time::Duration, fs: &FsOptions, schema: SchemaRef) -> SourceFactory {
    let open_file = file_reader(fs, schema.clone());
    let table = table.to_string();
    Arc::new(move |_ctx: &SourceContext| Box::new(watch::WatchSource::new(table.clone(), watched.clone(), interval, schema.clone(), open_file.clone())) as Box<dyn BatchSource>)
}

/// The rows of a batch by partition directory (the key of the shuffle before a
/// partitioned sink): every partition is written, and committed, by one subtask.
fn by_partition(p: &options::Partitioning, b: ChangeBatch, out: &mut Collector<'_, (String, ChangeBatch)>) {
    let rows = &b.rows.0;
    let values: Result<Vec<Vec<Option<String>>>, String> = p.columns.iter().map(|c| sink::partition_values(rows, *c)).collect();
    let values = values.unwrap_or_else(|e| panic!("filesystem sink: partition values: {e}"));
    let mut groups: std::collections::BTreeMap<String, Vec<u32>> = std::collections::BTreeMap::new();
    for i in 0..rows.num_rows() {
        let row: Vec<Option<String>> = values.iter().map(|v| v[i].clone()).collect();
        groups.entry(partition::path(&p.names, &row)).or_default().push(i as u32);
    }
    if groups.len() == 1 {
        if let Some((k, _)) = groups.into_iter().next() {
            out.emit((k, b));
        }
        return;
    }
    for (k, idx) in groups {
        let idx = arrow::array::UInt32Array::from(idx);
        let part = arrow::compute::take_record_batch(rows, &idx).unwrap_or_else(|e| panic!("filesystem sink: {e}"));
        let kinds = b.kinds.as_ref().map(|kinds| idx.values().iter().map(|i| kinds[*i as usize]).collect());
        out.emit((k, ChangeBatch { rows: weir::arrow::ArrowBatch(part), kinds }));
    }
}

/// The exactly-once part-file sink (`make` one per subtask): partitioned tables
/// shuffled by partition first.
fn add_part_sink(args: SinkArgs<'_>, fs: &FsOptions, make: impl Fn() -> sink::FileSink + 'static) -> Result<(), String> {
    let Some(p) = &fs.partitioning else {
        let h = args.stream.sink(args.name, move |_| make()).uid(args.uid);
        if let Some(p) = args.parallelism {
            h.parallelism(p);
        }
        return Ok(());
    };
    // one subtask per partition: it alone decides when the partition is complete
    let p = p.clone();
    let split = args.stream.flat_map(move |b, out| by_partition(&p, b, out)).uid(&format!("{}-partitions", args.uid)).name(&format!("{}: by partition", args.name));
    let split = match args.parallelism {
        Some(n) => split.parallelism(n),
        None => split,
    };
    let routed = split
        .key_by(|r: &(String, ChangeBatch)| r.0.clone())
        .process(|r: (String, ChangeBatch), ctx: &mut weir::KeyedContext<'_, String, ChangeBatch>| ctx.emit(r.1))
        .uid(&format!("{}-shuffle", args.uid))
        .name(&format!("{}: partition shuffle", args.name));
    let routed = match args.parallelism {
        Some(n) => routed.parallelism(n),
        None => routed,
    };
    let h = routed.sink(args.name, move |_| make()).uid(args.uid);
    if let Some(n) = args.parallelism {
        h.parallelism(n);
    }
    Ok(())
}

impl Connector for Filesystem {
    fn name(&self) -> &str {
        "filesystem"
    }
    fn options(&self) -> &[&str] {
        options::OPTIONS
    }
    fn validate(&self, opts: &TableOptions, schema: &SchemaRef) -> Result<(), String> {
        let fs = FsOptions::parse(opts, schema)?;
        match source_path(&fs.path)? {
            SourcePath::Local(path) => {
                if fs.monitor_interval.is_some() && path.is_file() {
                    return Err(format!("connector 'filesystem': option 'source.monitor-interval' watches a directory, and 'path' = '{}' is a file", fs.path));
                }
            }
            // the client's settings (from the environment) are checked; nothing is sent
            SourcePath::Bucket(u) => {
                Bucket::open(&u).map_err(|e| format!("connector 'filesystem': option 'path' = {e}"))?;
            }
        }
        Ok(())
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        let fs = FsOptions::parse(opts, &schema)?;
        if fs.partitioning.is_some() {
            return Err("reading a PARTITIONED BY filesystem table is not supported yet (it can be written)".into());
        }
        Ok(match (source_path(&fs.path)?, fs.monitor_interval) {
            (SourcePath::Local(path), Some(interval)) => watched_factory(&opts.table, watch::Watched::Dir(path), interval, &fs, schema),
            (SourcePath::Local(path), None) => factory(path, &fs, schema),
            // a watched prefix: the URL's key is a prefix even without its `/`
            (SourcePath::Bucket(u), Some(interval)) => watched_factory(&opts.table, watch::Watched::Prefix(u), interval, &fs, schema),
            (SourcePath::Bucket(u), None) => bucket_factory(&opts.table, u, &fs, schema),
        })
    }
    /// Unbounded with `'source.monitor-interval'` (a watched directory).
    fn bounded(&self, opts: &TableOptions) -> bool {
        opts.get("source.monitor-interval").is_none()
    }
    fn supports_partitions(&self) -> bool {
        true
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::AppendOnly)
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let fs = FsOptions::parse(opts, &args.schema)?;
        if store::is_bucket_url(&fs.path) {
            // always a prefix of part files (multipart uploads committed by checkpoints)
            let url = BucketUrl::parse(&fs.path).map_err(|e| format!("connector 'filesystem': option 'path' = {e}"))?;
            // the client's settings (from the environment) are checked; nothing is sent
            upload::Objects::open(&url).map_err(|e| format!("connector 'filesystem': option 'path' = {e}"))?;
            let (schema, o) = (args.schema.clone(), fs.clone());
            return add_part_sink(args, &fs, move || sink::FileSink::on_bucket(url.clone(), &o, &schema));
        }
        let path = local_path(&fs.path, "writing to")?;
        // Parquet is only written as part files: its path is always a directory
        let is_dir = fs.path.ends_with('/') || path.is_dir() || fs.partitioning.is_some() || matches!(fs.format, Format::Parquet(_));
        let (format, partitioning) = (fs.format.clone(), fs.partitioning.clone());
        match (&format, is_dir, &partitioning) {
            // JSON lines as before: hour buckets of the exactly-once sink, or one file
            (Format::Json, true, None) => json_sink(args, move |_| ExactlyOnceFileSink::new(&path)),
            (Format::Json, false, _) => json_sink(args, move |_| JsonLinesSink::new(&path)),
            (_, false, _) => {
                let format = format.clone();
                let h = args.stream.sink(args.name, move |_| sink::TextFileSink::new(&path, format.clone())).uid(args.uid);
                if let Some(p) = args.parallelism {
                    h.parallelism(p);
                }
            }
            (_, true, _) => {
                let (schema, o) = (args.schema.clone(), fs.clone());
                return add_part_sink(args, &fs, move || sink::FileSink::new(&path, &o, &schema));
            }
        }
        Ok(())
    }
    fn lookup(&self, opts: &TableOptions, schema: SchemaRef, key_columns: &[usize]) -> Result<Arc<dyn LookupSource>, String> {
        let fs = FsOptions::parse(opts, &schema)?;
        if fs.partitioning.is_some() {
            return Err("a PARTITIONED BY filesystem table cannot be used for lookup joins yet".into());
        }
        let path = local_path(&fs.path, "a lookup join on")?;
        let f = factory(path, &fs, schema.clone());
        Ok(Arc::new(lookup::FileLookup::new(opts.table.clone(), f, schema, key_columns.to_vec(), fs.lookup_ttl)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_local_or_file_urls_and_sources_read_buckets_too() {
        assert_eq!(local_path("file:///tmp/x/", "writing to").unwrap(), PathBuf::from("/tmp/x/"));
        assert_eq!(local_path("out/", "writing to").unwrap(), PathBuf::from("out/"));
        let e = local_path("s3://b/x", "a lookup join on").unwrap_err();
        assert!(e.contains("a lookup join on 's3://' paths is not supported yet"), "{e}");
        assert!(matches!(source_path("file:///tmp/x/"), Ok(SourcePath::Local(_))));
        assert!(matches!(source_path("s3://b/in/"), Ok(SourcePath::Bucket(u)) if u.is_prefix && u.path.as_ref() == "in"));
        let e = source_path("ftp://h/x").err().unwrap();
        assert!(e.contains("option 'path' = 'ftp://h/x': unknown scheme"), "{e}");
    }
}
