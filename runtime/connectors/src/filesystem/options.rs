//! The `filesystem` connector's options, parsed and checked once: the format (and
//! its `csv.*` options), the rolling policy, partition commit and lookup caching.
//! A bad value is an error naming the option and the value.

use std::time::Duration;

use arrow::datatypes::Schema;

use super::format::csv::CsvOptions;
use super::format::parquet::ParquetOptions;
use crate::bad_input::BadInputConfig;
use crate::registry::TableOptions;

/// Every option of the connector (besides `connector`).
pub const OPTIONS: &[&str] = &[
    "path",
    "format",
    "source.batch-rows",
    "source.monitor-interval",
    "csv.field-delimiter",
    "csv.quote-character",
    "csv.allow-comments",
    "csv.ignore-parse-errors",
    "json.ignore-parse-errors",
    "bad-input",
    "bad-input.dead-letter.path",
    "csv.null-literal",
    "csv.disable-quote-character",
    "sink.rolling-policy.file-size",
    "sink.rolling-policy.rollover-interval",
    "sink.rolling-policy.check-interval",
    "sink.upload.part-size",
    "sink.partition-commit.trigger",
    "sink.partition-commit.delay",
    "sink.partition-commit.policy.kind",
    "partition.time-extractor.timestamp-pattern",
    "lookup.join.cache.ttl",
    "parquet.compression",
    "parquet.block.size",
    "parquet.page.size",
];

/// A file format.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// JSON lines
    Json,
    Csv(CsvOptions),
    /// Parquet files (part files only: the sink always writes a directory)
    Parquet(ParquetOptions),
}

impl Format {
    /// The extension of part files.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Json => "jsonl",
            Format::Csv(_) => "csv",
            Format::Parquet(_) => "parquet",
        }
    }
}

/// When a partition is committed (its files complete, the policy applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// once the wall clock passes the partition's creation + delay
    ProcessTime,
    /// once the watermark passes the partition's time (from its values) + delay
    PartitionTime,
}

/// The partitioning of a sink: `PARTITIONED BY` and the partition commit options.
#[derive(Clone, Debug, PartialEq)]
pub struct Partitioning {
    /// the partition columns, in `PARTITIONED BY` order (indices into the schema)
    pub columns: Vec<usize>,
    pub names: Vec<String>,
    pub trigger: Trigger,
    pub delay: Duration,
    /// `'success-file'`: write `_SUCCESS` into a committed partition
    pub success_file: bool,
    /// `partition.time-extractor.timestamp-pattern` (default: the first partition column)
    pub time_pattern: String,
}

/// The rolling policy of the part files.
#[derive(Clone, Debug, PartialEq)]
pub struct Rolling {
    pub file_size: u64,
    pub rollover_interval: Option<Duration>,
    pub check_interval: Duration,
    /// `sink.upload.part-size`: a part file on a bucket is uploaded in parts of this
    /// size (at least 5 MiB, S3's smallest part)
    pub part_size: u64,
}

/// The parsed options of one table.
#[derive(Clone, Debug, PartialEq)]
pub struct FsOptions {
    pub path: String,
    pub format: Format,
    pub batch_rows: usize,
    pub rolling: Rolling,
    pub partitioning: Option<Partitioning>,
    /// `lookup.join.cache.ttl`: how long a lookup join keeps the table loaded
    pub lookup_ttl: Duration,
    /// `source.monitor-interval`: the source watches the directory, listing it this
    /// often (unbounded); `None`: it reads what is there once (bounded)
    pub monitor_interval: Option<Duration>,
    /// `'bad-input'` (and the format's `*.ignore-parse-errors`): records that do not parse
    pub bad_input: BadInputConfig,
}

fn bad(opt: &str, v: &str, why: impl std::fmt::Display) -> String {
    format!("connector 'filesystem': option '{opt}' = '{v}': {why}")
}

/// A duration option ([`crate::parse_duration`]): `'1 min'`, `'10 s'`, `'100ms'`, or milliseconds.
pub fn parse_duration(opt: &str, v: &str) -> Result<Duration, String> {
    crate::parse_duration(v).map_err(|m| bad(opt, v, m))
}

/// A size: `'128MB'`, `'1 kb'`, `'4096'` (bytes).
pub fn parse_size(opt: &str, v: &str) -> Result<u64, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad(opt, v, "not a size (e.g. '128MB', '1 kb', bytes)"))?;
    let m: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(bad(opt, v, format!("unknown size unit '{other}' (b, kb, mb, gb)"))),
    };
    let size = n.checked_mul(m).ok_or_else(|| bad(opt, v, "too large"))?;
    if size == 0 {
        return Err(bad(opt, v, "must be positive"));
    }
    Ok(size)
}

fn parse_bool(opts: &TableOptions, key: &str) -> Result<bool, String> {
    match opts.get(key).map(|v| (v, v.to_ascii_lowercase())) {
        None => Ok(false),
        Some((_, l)) if l == "true" => Ok(true),
        Some((_, l)) if l == "false" => Ok(false),
        Some((v, _)) => Err(bad(key, v, "expected 'true' or 'false'")),
    }
}

/// One character of a `csv.*` option (a tab may be written `\t`).
fn parse_char(key: &str, v: &str) -> Result<u8, String> {
    let c = if v == "\\t" { "\t" } else { v };
    match c.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
        _ => Err(bad(key, v, "expected one ASCII character (not a line break)")),
    }
}

impl FsOptions {
    pub fn parse(opts: &TableOptions, schema: &Schema) -> Result<FsOptions, String> {
        let path = opts.required("path")?.to_string();
        let format = match opts.required("format")? {
            "json" => Format::Json,
            "csv" => {
                let mut c = CsvOptions::default();
                if let Some(v) = opts.get("csv.field-delimiter") {
                    c.delimiter = parse_char("csv.field-delimiter", v)?;
                }
                if let Some(v) = opts.get("csv.quote-character") {
                    c.quote = parse_char("csv.quote-character", v)?;
                }
                c.allow_comments = parse_bool(opts, "csv.allow-comments")?;
                c.disable_quote = parse_bool(opts, "csv.disable-quote-character")?;
                if c.disable_quote && opts.get("csv.quote-character").is_some() {
                    return Err("connector 'filesystem': options 'csv.disable-quote-character' and 'csv.quote-character' exclude each other".into());
                }
                c.null_literal = opts.get("csv.null-literal").map(str::to_string);
                if c.delimiter == c.quote && !c.disable_quote {
                    return Err(bad("csv.field-delimiter", &(c.delimiter as char).to_string(), "the same character as 'csv.quote-character'"));
                }
                Format::Csv(c)
            }
            "parquet" => Format::Parquet(ParquetOptions::parse(opts)?),
            other => return Err(bad("format", other, "not supported (supported: json, csv, parquet)")),
        };
        if !matches!(format, Format::Csv(_))
            && let Some(k) = opts.map.keys().find(|k| k.starts_with("csv."))
        {
            return Err(format!("connector 'filesystem': option '{k}' needs 'format' = 'csv'"));
        }
        if !matches!(format, Format::Json)
            && let Some(k) = opts.map.keys().find(|k| k.starts_with("json."))
        {
            return Err(format!("connector 'filesystem': option '{k}' needs 'format' = 'json'"));
        }
        let bad_input = BadInputConfig::parse(
            opts,
            match format {
                Format::Json => Some("json.ignore-parse-errors"),
                Format::Csv(_) => Some("csv.ignore-parse-errors"),
                Format::Parquet(_) => None,
            },
        )?;
        if !matches!(format, Format::Parquet(_))
            && let Some(k) = opts.map.keys().find(|k| k.starts_with("parquet."))
        {
            return Err(format!("connector 'filesystem': option '{k}' needs 'format' = 'parquet'"));
        }
        let batch_rows: usize = opts.parse("source.batch-rows")?.unwrap_or(1024);
        let rolling = Rolling {
            file_size: opts.get("sink.rolling-policy.file-size").map(|v| parse_size("sink.rolling-policy.file-size", v)).transpose()?.unwrap_or(128 << 20),
            rollover_interval: opts.get("sink.rolling-policy.rollover-interval").map(|v| parse_duration("sink.rolling-policy.rollover-interval", v)).transpose()?,
            check_interval: opts.get("sink.rolling-policy.check-interval").map(|v| parse_duration("sink.rolling-policy.check-interval", v)).transpose()?.unwrap_or(Duration::from_secs(60)),
            part_size: match opts.get("sink.upload.part-size") {
                None => super::upload::MIN_PART_SIZE,
                Some(v) => match parse_size("sink.upload.part-size", v)? {
                    n if n < super::upload::MIN_PART_SIZE => return Err(bad("sink.upload.part-size", v, "less than 5 MB (S3's smallest part but the last)")),
                    n if n > 5 << 30 => return Err(bad("sink.upload.part-size", v, "more than 5 GB (S3's largest part)")),
                    n => n,
                },
            },
        };
        let lookup_ttl = opts.get("lookup.join.cache.ttl").map(|v| parse_duration("lookup.join.cache.ttl", v)).transpose()?.unwrap_or(Duration::from_secs(3600));
        let monitor_interval = match opts.get("source.monitor-interval") {
            None => None,
            Some(v) => match parse_duration("source.monitor-interval", v)? {
                d if d.is_zero() => return Err(bad("source.monitor-interval", v, "must be positive (how often the watched directory is listed; leave it out to read the files once)")),
                d => Some(d),
            },
        };
        let partitioning = Self::partitioning(opts, schema)?;
        Ok(FsOptions { path, format, batch_rows, rolling, partitioning, lookup_ttl, monitor_interval, bad_input })
    }

    fn partitioning(opts: &TableOptions, schema: &Schema) -> Result<Option<Partitioning>, String> {
        let commit_opts = ["sink.partition-commit.trigger", "sink.partition-commit.delay", "sink.partition-commit.policy.kind", "partition.time-extractor.timestamp-pattern"];
        if opts.partition_keys.is_empty() {
            if let Some(k) = commit_opts.iter().find(|k| opts.get(k).is_some()) {
                return Err(format!("connector 'filesystem': option '{k}' needs a partitioned table (PARTITIONED BY (...))"));
            }
            return Ok(None);
        }
        let mut columns = Vec::new();
        for k in &opts.partition_keys {
            let i = schema.index_of(k).map_err(|_| format!("PARTITIONED BY: table '{}' has no column '{k}'", opts.table))?;
            if columns.contains(&i) {
                return Err(format!("PARTITIONED BY: column '{k}' is given twice"));
            }
            columns.push(i);
        }
        if columns.len() == schema.fields().len() {
            return Err(format!("PARTITIONED BY: table '{}' needs a column besides its partition columns", opts.table));
        }
        let trigger = match opts.get("sink.partition-commit.trigger") {
            None | Some("process-time") => Trigger::ProcessTime,
            Some("partition-time") => Trigger::PartitionTime,
            Some(v) => return Err(bad("sink.partition-commit.trigger", v, "not supported (supported: process-time, partition-time)")),
        };
        let delay = opts.get("sink.partition-commit.delay").map(|v| parse_duration("sink.partition-commit.delay", v)).transpose()?.unwrap_or(Duration::ZERO);
        let mut success_file = false;
        if let Some(v) = opts.get("sink.partition-commit.policy.kind") {
            for kind in v.split(',').map(str::trim) {
                match kind {
                    "success-file" => success_file = true,
                    "metastore" => return Err(bad("sink.partition-commit.policy.kind", v, "'metastore' is not supported (Weir has no Hive metastore; use 'success-file')")),
                    "custom" => return Err(bad("sink.partition-commit.policy.kind", v, "'custom' policies are not supported (use 'success-file')")),
                    other => return Err(bad("sink.partition-commit.policy.kind", v, format!("unknown policy '{other}' (supported: success-file)"))),
                }
            }
        }
        let names: Vec<String> = opts.partition_keys.clone();
        let time_pattern = match opts.get("partition.time-extractor.timestamp-pattern") {
            Some(p) => {
                super::partition::check_pattern(p, &names).map_err(|why| bad("partition.time-extractor.timestamp-pattern", p, why))?;
                p.to_string()
            }
            None => format!("${}", names[0]),
        };
        Ok(Some(Partitioning { columns, names, trigger, delay, success_file, time_pattern }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn opts(kv: &[(&str, &str)], parts: &[&str]) -> TableOptions {
        TableOptions {
            table: "t".into(),
            connector: "filesystem".into(),
            map: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            primary_key: Vec::new(),
            partition_keys: parts.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn schema() -> Schema {
        Schema::new(vec![Field::new("a", DataType::Int64, true), Field::new("dt", DataType::Utf8, true), Field::new("hm", DataType::Utf8, true)])
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("x", "1 min").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("x", "1min").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("x", "250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("x", "1 week").unwrap_err().contains("'x' = '1 week'"));
        assert_eq!(parse_size("x", "128MB").unwrap(), 128 << 20);
        assert_eq!(parse_size("x", "10").unwrap(), 10);
        assert!(parse_size("x", "0").is_err());
    }

    #[test]
    fn csv_options_and_their_errors() {
        let o = FsOptions::parse(&opts(&[("path", "p"), ("format", "csv"), ("csv.field-delimiter", "|"), ("csv.null-literal", "N/A"), ("csv.allow-comments", "true")], &[]), &schema()).unwrap();
        let Format::Csv(c) = o.format else { panic!("csv") };
        assert_eq!((c.delimiter, c.quote, c.allow_comments, c.null_literal.as_deref()), (b'|', b'"', true, Some("N/A")));
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "csv"), ("csv.field-delimiter", "ab")], &[]), &schema()).unwrap_err();
        assert!(e.contains("'csv.field-delimiter' = 'ab'"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "json"), ("csv.allow-comments", "true")], &[]), &schema()).unwrap_err();
        assert!(e.contains("'csv.allow-comments' needs 'format' = 'csv'"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "avro")], &[]), &schema()).unwrap_err();
        assert!(e.contains("'format' = 'avro'"), "{e}");
    }

    #[test]
    fn parquet_options_and_their_errors() {
        use parquet::basic::{Compression, ZstdLevel};
        let o = FsOptions::parse(&opts(&[("path", "p/"), ("format", "parquet")], &[]), &schema()).unwrap();
        assert_eq!(o.format, Format::Parquet(ParquetOptions::default()));
        assert_eq!(o.format.extension(), "parquet");
        let o =
            FsOptions::parse(&opts(&[("path", "p/"), ("format", "parquet"), ("parquet.compression", "ZSTD"), ("parquet.block.size", "64mb"), ("parquet.page.size", "64kb")], &[]), &schema()).unwrap();
        assert_eq!(o.format, Format::Parquet(ParquetOptions { compression: Compression::ZSTD(ZstdLevel::default()), block_size: 64 << 20, page_size: 64 << 10 }));
        let e = FsOptions::parse(&opts(&[("path", "p/"), ("format", "parquet"), ("parquet.compression", "brotli")], &[]), &schema()).unwrap_err();
        assert!(e.contains("'parquet.compression' = 'brotli'") && e.contains("snappy"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p/"), ("format", "parquet"), ("parquet.block.size", "big")], &[]), &schema()).unwrap_err();
        assert!(e.contains("'parquet.block.size' = 'big'"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p/"), ("format", "csv"), ("parquet.compression", "zstd")], &[]), &schema()).unwrap_err();
        assert!(e.contains("'parquet.compression' needs 'format' = 'parquet'"), "{e}");
    }

    #[test]
    fn monitor_interval() {
        let o = FsOptions::parse(&opts(&[("path", "p/"), ("format", "json"), ("source.monitor-interval", "10 s")], &[]), &schema()).unwrap();
        assert_eq!(o.monitor_interval, Some(Duration::from_secs(10)));
        assert_eq!(FsOptions::parse(&opts(&[("path", "p/"), ("format", "json")], &[]), &schema()).unwrap().monitor_interval, None);
        let e = FsOptions::parse(&opts(&[("path", "p/"), ("format", "json"), ("source.monitor-interval", "0")], &[]), &schema()).unwrap_err();
        assert!(e.contains("option 'source.monitor-interval' = '0': must be positive"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p/"), ("format", "csv"), ("source.monitor-interval", "often")], &[]), &schema()).unwrap_err();
        assert!(e.contains("option 'source.monitor-interval' = 'often'") && e.contains("not a duration"), "{e}");
    }

    #[test]
    fn partition_commit_options() {
        let o = FsOptions::parse(
            &opts(
                &[
                    ("path", "p"),
                    ("format", "csv"),
                    ("sink.partition-commit.trigger", "partition-time"),
                    ("sink.partition-commit.delay", "1 min"),
                    ("sink.partition-commit.policy.kind", "success-file"),
                    ("partition.time-extractor.timestamp-pattern", "$dt $hm:00"),
                ],
                &["dt", "hm"],
            ),
            &schema(),
        )
        .unwrap();
        let p = o.partitioning.unwrap();
        assert_eq!((p.columns, p.trigger, p.delay, p.success_file), (vec![1, 2], Trigger::PartitionTime, Duration::from_secs(60), true));
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "csv"), ("sink.partition-commit.policy.kind", "metastore")], &["dt"]), &schema()).unwrap_err();
        assert!(e.contains("'sink.partition-commit.policy.kind' = 'metastore'") && e.contains("not supported"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "csv"), ("sink.partition-commit.trigger", "sometimes")], &["dt"]), &schema()).unwrap_err();
        assert!(e.contains("'sink.partition-commit.trigger' = 'sometimes'"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "csv"), ("partition.time-extractor.timestamp-pattern", "$day")], &["dt"]), &schema()).unwrap_err();
        assert!(e.contains("$day"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "csv"), ("sink.partition-commit.trigger", "process-time")], &[]), &schema()).unwrap_err();
        assert!(e.contains("needs a partitioned table"), "{e}");
        let e = FsOptions::parse(&opts(&[("path", "p"), ("format", "csv")], &["nope"]), &schema()).unwrap_err();
        assert!(e.contains("no column 'nope'"), "{e}");
    }
}
