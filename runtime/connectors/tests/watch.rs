//! The `filesystem` connector's watched directory (`'source.monitor-interval'`)
//! through the registry, as SQL and job files use it: the options, boundedness,
//! both formats, a restore at another parallelism, and the throughput of reading.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir::connector::SourceContext;
use weir_connectors::{BatchSource, ConnectorRegistry, TableOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
}

fn opts(dir: &Path, extra: &[(&str, &str)]) -> TableOptions {
    let mut map: BTreeMap<String, String> = [("path".to_string(), format!("{}/", dir.display()))].into_iter().collect();
    for (k, v) in extra {
        map.insert(k.to_string(), v.to_string());
    }
    TableOptions { table: "files".into(), connector: "filesystem".into(), map, primary_key: Vec::new(), partition_keys: Vec::new() }
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

/// Reads until a call finds nothing (an empty batch): the ids read.
fn drain(s: &mut dyn BatchSource, limit: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.len() < limit {
        let b = s.next_batch(1024).unwrap().expect("a watched directory never ends");
        if b.num_rows() == 0 {
            break;
        }
        let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(b.column(1).as_any().downcast_ref::<StringArray>().unwrap().null_count(), 0);
        ids.extend(c.values().iter().copied());
    }
    ids
}

fn write(dir: &Path, name: &str, ids: std::ops::Range<i64>, csv: bool) {
    let text: String = ids.map(|i| if csv { format!("{i},n{i}\n") } else { format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n") }).collect();
    let tmp = dir.join(format!("_{name}"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn options_boundedness_and_errors() {
    let d = tempfile::tempdir().unwrap();
    let r = ConnectorRegistry::default();
    let c = r.get("filesystem").unwrap();
    assert!(c.bounded(&opts(d.path(), &[("format", "json")])));
    assert!(!c.bounded(&opts(d.path(), &[("format", "json"), ("source.monitor-interval", "1 s")])));
    let e = r.check(&opts(d.path(), &[("format", "json"), ("source.monitor-interval", "0")]), &schema()).err().unwrap();
    assert!(e.contains("'source.monitor-interval' = '0': must be positive"), "{e}");
    std::fs::write(d.path().join("f.json"), "").unwrap();
    let mut o = opts(d.path(), &[("format", "json"), ("source.monitor-interval", "1 s")]);
    o.map.insert("path".into(), d.path().join("f.json").display().to_string());
    let e = r.check(&o, &schema()).err().unwrap();
    assert!(e.contains("watches a directory") && e.contains("f.json"), "{e}");
    // a bucket prefix is watched too (tests/watch_s3.rs); an unknown scheme is refused
    let mut o = opts(d.path(), &[("format", "json"), ("source.monitor-interval", "1 s")]);
    o.map.insert("path".into(), "s3://bucket/in/".into());
    assert!(r.check(&o, &schema()).is_ok());
    assert!(!c.bounded(&o));
    o.map.insert("path".into(), "ftp://host/in/".into());
    let e = r.check(&o, &schema()).err().unwrap();
    assert!(e.contains("'ftp://host/in/'") && e.contains("unknown scheme 'ftp://'"), "{e}");
}

#[test]
fn both_formats_rescaled_from_two_subtasks_to_three() {
    for (format, csv) in [("json", false), ("csv", true)] {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path(), &[("format", format), ("source.monitor-interval", "1 ms"), ("source.batch-rows", "3")]);
        for k in 0..8 {
            write(d.path(), &format!("f{k}.{format}"), k * 100..k * 100 + 10, csv);
        }
        let mut got = Vec::new();
        let mut snaps = Vec::new();
        for mut s in sources(&o, 2, None) {
            got.extend(drain(s.as_mut(), 13)); // some files read, one part-way
            snaps.extend(s.snapshot().unwrap());
        }
        for k in 8..12 {
            write(d.path(), &format!("f{k}.{format}"), k * 100..k * 100 + 10, csv);
        }
        for mut s in sources(&o, 3, Some(&snaps)) {
            got.extend(drain(s.as_mut(), usize::MAX));
        }
        got.sort();
        let want: Vec<i64> = (0..12).flat_map(|k| k * 100..k * 100 + 10).collect();
        assert_eq!(got, want, "{format}: every record once");
    }
}

#[test]
fn throughput_of_reading_new_files() {
    for (format, csv) in [("json", false), ("csv", true)] {
        let d = tempfile::tempdir().unwrap();
        let (files, rows) = (50i64, 4000i64);
        for k in 0..files {
            write(d.path(), &format!("f{k:03}.{format}"), k * rows..(k + 1) * rows, csv);
        }
        let o = opts(d.path(), &[("format", format), ("source.monitor-interval", "1 ms")]);
        let mut s = sources(&o, 1, None).pop().unwrap();
        let t = Instant::now();
        let n = drain(s.as_mut(), usize::MAX).len();
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(n as i64, files * rows);
        eprintln!("watched directory, {format}: {n} rows of {files} files in {:.0} ms: {:.0} rows/s", secs * 1000.0, n as f64 / secs);
    }
}
