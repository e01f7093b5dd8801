//! The `filesystem` connector's Parquet format through the registry, as SQL and job
//! files use it: a bounded directory, a watched directory restored mid-file at
//! another parallelism (every row once), an object of a bucket, the exactly-once
//! sink's part files read back, errors naming the file and column, and the
//! throughput of writing and reading.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use weir::connector::files::IN_PROGRESS;
use weir::connector::{SinkContext, SourceContext};
use weir::record::Rec;
use weir_connectors::filesystem::ParquetFileSource;
use weir_connectors::filesystem::format::Input;
use weir_connectors::filesystem::options::FsOptions;
use weir_connectors::filesystem::sink::FileSink;
use weir_connectors::filesystem::store::Bucket;
use weir_connectors::{BatchSource, ChangeBatch, ConnectorRegistry, TableOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
}

fn opts(dir: &Path, extra: &[(&str, &str)]) -> TableOptions {
    let mut map: BTreeMap<String, String> = [("path".to_string(), format!("{}/", dir.display())), ("format".to_string(), "parquet".to_string())].into_iter().collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    TableOptions { table: "files".into(), connector: "filesystem".into(), map, primary_key: Vec::new(), partition_keys: Vec::new() }
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from_iter_values(ids.clone())), Arc::new(StringArray::from_iter_values(ids.map(|i| format!("n{i}"))))]).unwrap()
}

/// A Parquet file of rows `ids`, row groups of `group` rows, as bytes.
fn parquet_bytes(ids: std::ops::Range<i64>, group: usize) -> Vec<u8> {
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(group)).build();
    let mut w = ArrowWriter::try_new(Vec::new(), schema(), Some(props)).unwrap();
    w.write(&batch(ids)).unwrap();
    w.into_inner().unwrap()
}

/// Writes the file under a hidden name and renames it into place.
fn write(dir: &Path, name: &str, ids: std::ops::Range<i64>, group: usize) {
    let tmp = dir.join(format!(".{name}"));
    std::fs::write(&tmp, parquet_bytes(ids, group)).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn sources(o: &TableOptions, parallelism: u32, restore: Option<&[Vec<u8>]>) -> Vec<Box<dyn BatchSource>> {
    let c = ConnectorRegistry::default().check(o, &schema()).unwrap();
    let f = c.source(o, schema()).unwrap();
    (0..parallelism)
        .map(|subtask| {
            let ctx = SourceContext { subtask, parallelism };
            let mut s = f(&ctx);
            if let Some(r) = restore {
                s.restore(r.to_vec()).unwrap();
            }
            s.open(&ctx).unwrap();
            s
        })
        .collect()
}

/// Reads until the end or a call finds nothing (an empty batch), at most about
/// `limit` rows: the ids read (each row's name checked against its id).
fn drain(s: &mut dyn BatchSource, limit: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.len() < limit {
        let Some(b) = s.next_batch(1024).unwrap() else { break };
        if b.num_rows() == 0 {
            break;
        }
        let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let n = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            assert_eq!(n.value(i), format!("n{}", c.value(i)));
        }
        ids.extend(c.values().iter().copied());
    }
    ids
}

#[test]
fn a_directory_is_read_once_in_name_order() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "b.parquet", 100..150, 20);
    write(d.path(), "a.parquet", 0..100, 30);
    std::fs::write(d.path().join("_SUCCESS"), "").unwrap();
    let o = opts(d.path(), &[("source.batch-rows", "16")]);
    assert!(ConnectorRegistry::default().get("filesystem").unwrap().bounded(&o));
    let mut s = sources(&o, 1, None).pop().unwrap();
    assert_eq!(drain(s.as_mut(), usize::MAX), (0..150).collect::<Vec<_>>());
    assert!(s.next_batch(16).unwrap().is_none(), "bounded: the end");
}

#[test]
fn a_watched_directory_restored_mid_file_from_two_subtasks_to_three_reads_every_row_once() {
    let d = tempfile::tempdir().unwrap();
    let o = opts(d.path(), &[("source.monitor-interval", "1 ms"), ("source.batch-rows", "7")]);
    for k in 0..8 {
        write(d.path(), &format!("f{k}.parquet"), k * 100..k * 100 + 40, 9);
    }
    let mut got = Vec::new();
    let mut snaps = Vec::new();
    for mut s in sources(&o, 2, None) {
        got.extend(drain(s.as_mut(), 50)); // a file read, the next part-way
        snaps.extend(s.snapshot().unwrap());
    }
    for k in 8..12 {
        write(d.path(), &format!("f{k}.parquet"), k * 100..k * 100 + 40, 9);
    }
    for mut s in sources(&o, 3, Some(&snaps)) {
        got.extend(drain(s.as_mut(), usize::MAX));
    }
    got.sort();
    let want: Vec<i64> = (0..12).flat_map(|k| k * 100..k * 100 + 40).collect();
    assert_eq!(got, want, "every row once");
}

#[test]
fn an_object_of_a_bucket_is_read_and_resumed() {
    let b = Arc::new(Bucket::with_store(Arc::new(object_store::memory::InMemory::new()), "mem://t").unwrap());
    let key = object_store::path::Path::from("in/x.parquet");
    b.put(&key, parquet_bytes(0..60, 25)).unwrap();
    let input = Input::Object { bucket: b.clone(), path: key.clone(), is_prefix: false };
    let mut s = ParquetFileSource::new(input.clone(), schema(), 10);
    s.open(&SourceContext { subtask: 0, parallelism: 1 }).unwrap();
    let first = drain(&mut s, 30);
    let snap = s.snapshot().unwrap();
    let mut r = ParquetFileSource::new(input, schema(), 10);
    r.restore(snap).unwrap();
    r.open(&SourceContext { subtask: 0, parallelism: 1 }).unwrap();
    let mut all = first;
    all.extend(drain(&mut r, usize::MAX));
    assert_eq!(all, (0..60).collect::<Vec<_>>());
    // not a Parquet object: the error names its URL
    b.put(&object_store::path::Path::from("in/y.parquet"), b"{\"id\": 1}".to_vec()).unwrap();
    let mut s = ParquetFileSource::new(Input::Object { bucket: b, path: object_store::path::Path::from("in/y.parquet"), is_prefix: false }, schema(), 10);
    s.open(&SourceContext { subtask: 0, parallelism: 1 }).unwrap();
    let e = s.next_batch(10).err().unwrap().to_string();
    assert!(e.contains("mem://t/in/y.parquet: not a readable Parquet file"), "{e}");
}

#[test]
fn a_wrong_column_type_and_a_corrupt_file_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.parquet", 0..10, 10);
    let wrong: SchemaRef = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
    let o = opts(d.path(), &[]);
    let f = ConnectorRegistry::default().check(&o, &wrong).unwrap().source(&o, wrong.clone()).unwrap();
    let mut s = f(&SourceContext { subtask: 0, parallelism: 1 });
    s.open(&SourceContext { subtask: 0, parallelism: 1 }).unwrap();
    let e = s.next_batch(10).err().unwrap().to_string();
    assert!(e.contains("a.parquet: column 'id' is Int64 in the file, and the table declares Utf8"), "{e}");
    std::fs::write(d.path().join("b.parquet"), b"PAR1 not really").unwrap();
    let mut s = sources(&o, 1, None).pop().unwrap();
    let e = (0..10).find_map(|_| s.next_batch(1024).err()).unwrap().to_string();
    assert!(e.contains("b.parquet: not a readable Parquet file"), "{e}");
}

/// The committed part files under `dir`.
fn committed(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect();
    v.sort();
    v
}

#[test]
fn sink_parts_roll_by_size_and_are_read_back_and_throughput() {
    let d = tempfile::tempdir().unwrap();
    let (out, rows, per_batch) = (d.path().join("out"), 400_000i64, 4096i64);
    let mut o = opts(&out, &[("sink.rolling-policy.file-size", "1mb")]);
    o.map.insert("path".into(), format!("{}/", out.display()));
    let fs = FsOptions::parse(&o, &schema()).unwrap();
    let mut sink = FileSink::new(&out, &fs, &schema());
    weir::connector::Sink::<ChangeBatch>::open(&mut sink, &SinkContext { subtask: 0, parallelism: 1 }).unwrap();
    let t = Instant::now();
    let mut at = 0;
    while at < rows {
        let b = vec![Rec::new(i64::MIN, ChangeBatch::inserts(batch(at..(at + per_batch).min(rows))))];
        weir::connector::Sink::<ChangeBatch>::write(&mut sink, &b).unwrap();
        at += per_batch;
    }
    let c = weir::connector::Sink::<ChangeBatch>::pre_commit(&mut sink, 1).unwrap().unwrap();
    weir::connector::Sink::<ChangeBatch>::commit(&mut sink, c).unwrap();
    let write_secs = t.elapsed().as_secs_f64();
    // the ExactlyOnce buckets: one hour directory (the rows' time) holds the parts
    let hours: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.ends_with(IN_PROGRESS)).collect();
    assert_eq!(hours.len(), 1, "{hours:?}");
    let parts = committed(&hours[0]);
    assert!(parts.len() > 1, "rolled at 1 MB: {} parts", parts.len());
    assert!(std::fs::read_dir(out.join(IN_PROGRESS)).unwrap().next().is_none(), "nothing left in progress");
    let mut read_opts = opts(&hours[0], &[]);
    read_opts.map.insert("path".into(), format!("{}/", hours[0].display()));
    let mut s = sources(&read_opts, 1, None).pop().unwrap();
    let t = Instant::now();
    let got = drain(s.as_mut(), usize::MAX);
    let read_secs = t.elapsed().as_secs_f64();
    assert_eq!(got, (0..rows).collect::<Vec<_>>());
    let bytes: u64 = parts.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    eprintln!(
        "parquet (snappy), two columns: wrote {rows} rows into {} parts ({} KB) in {:.0} ms: {:.0} rows/s; read them back in {:.0} ms: {:.0} rows/s",
        parts.len(),
        bytes / 1024,
        write_secs * 1000.0,
        rows as f64 / write_secs,
        read_secs * 1000.0,
        rows as f64 / read_secs
    );
}
