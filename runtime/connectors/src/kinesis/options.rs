//! The `kinesis` connector's options, parsed and checked once. Names follow Flink's
//! Kinesis SQL connector (`stream`, `aws.region`, `aws.endpoint`, `format`,
//! `scan.shard.*`, `sink.partitioner-field-delimiter`, `sink.batch.max-size`,
//! `sink.flush-buffer.*`); the initial position is `scan.stream.initial-position`
//! (Flink's older `scan.stream.initpos` is accepted too). A bad value is an error
//! naming the option, the value and the connector.
//!
//! Credentials are never options: they come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the shared files (`~/.aws/...`,
//! `AWS_PROFILE`), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, e.g. EKS service
//! accounts), the container or the instance role, in the AWS SDK's default order.

use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::filesystem::format::csv::CsvOptions;
use crate::registry::TableOptions;

/// Every option of the connector (besides `connector`).
pub const OPTIONS: &[&str] = &[
    "stream",
    "stream.arn",
    "aws.region",
    "aws.endpoint",
    "format",
    "scan.stream.initial-position",
    "scan.stream.initial-timestamp",
    "scan.stream.initpos",
    "scan.stream.initpos-timestamp",
    "scan.shard.discovery.intervalmillis",
    "scan.shard.getrecords.maxrecordcount",
    "scan.shard.getrecords.intervalmillis",
    "csv.field-delimiter",
    "csv.quote-character",
    "csv.allow-comments",
    "csv.null-literal",
    "csv.disable-quote-character",
    "sink.partition-key",
    "sink.partitioner-field-delimiter",
    "sink.batch.max-size",
    "sink.flush-buffer.size",
    "sink.flush-buffer.timeout",
    "sink.max-retries",
];

/// The metadata a `kinesis` table can declare (`col TYPE METADATA FROM 'key'`).
pub const METADATA: &[&str] = &["timestamp", "shard-id", "sequence-number", "partition-key"];

/// The option keys of metadata columns (`__metadata.<column>` = `<key>[ VIRTUAL]`),
/// as weir-sql passes `METADATA` columns.
pub const METADATA_PREFIX: &str = "__metadata.";

/// Kinesis' limits of one PutRecords request.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
pub const MAX_BYTES_PER_REQUEST: usize = 5 << 20;
/// Kinesis' limit of one record (data and partition key).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Kinesis' limit of one GetRecords call.
pub const MAX_GET_RECORDS: usize = 10_000;

/// How a record's data is read and written.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// one JSON object per record, read into the columns by name
    Json,
    /// one CSV record per record, by column position
    Csv(CsvOptions),
    /// the data as it is, in the table's one (non-metadata) column: STRING or BYTES
    Raw,
}

/// Where a shard is read from when the job starts without a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialPosition {
    /// records put after the job starts
    Latest,
    /// the oldest record kept
    TrimHorizon,
    /// records that arrived at or after this time (milliseconds since the epoch)
    AtTimestamp(i64),
}

/// A metadata column: its index in the table's columns, its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaColumn {
    pub column: usize,
    pub key: Meta,
}

/// The metadata of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meta {
    /// the approximate arrival timestamp
    Timestamp,
    ShardId,
    SequenceNumber,
    PartitionKey,
}

/// The stream, by name or ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRef {
    Name(String),
    Arn(String),
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamRef::Name(n) => write!(f, "stream '{n}'"),
            StreamRef::Arn(a) => write!(f, "stream '{a}'"),
        }
    }
}

/// The parsed options of one table.
#[derive(Clone, Debug, PartialEq)]
pub struct KinesisOptions {
    pub table: String,
    pub stream: StreamRef,
    /// `aws.region`, else `AWS_REGION` / `AWS_DEFAULT_REGION` when the client is made
    pub region: Option<String>,
    /// `aws.endpoint`, else `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL` (read by the SDK)
    pub endpoint: Option<String>,
    pub format: Format,
    pub initial_position: InitialPosition,
    pub discovery_interval: Duration,
    pub get_records_max: usize,
    pub get_records_interval: Duration,
    /// the table's columns, metadata ones included
    pub schema: SchemaRef,
    /// the columns the record's data holds (the table's less its metadata columns)
    pub value_schema: SchemaRef,
    /// for each column of `value_schema`, its index in `schema`
    pub value_columns: Vec<usize>,
    pub metadata: Vec<MetaColumn>,
    pub sink: SinkOptions,
}

/// The sink's options.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkOptions {
    /// `sink.partition-key`: the columns whose values (joined by `key_delimiter`) are a
    /// record's partition key (indices into the schema); empty: a random key
    pub key_columns: Vec<usize>,
    pub key_delimiter: String,
    /// records per PutRecords request (at most 500)
    pub batch_max: usize,
    /// bytes per PutRecords request (at most 5 MiB)
    pub buffer_bytes: usize,
    /// the oldest buffered record is written after this long
    pub buffer_timeout: Duration,
    /// retries of a request failing for another reason than throttling
    pub max_retries: u32,
}

fn bad(opt: &str, v: &str, why: impl std::fmt::Display) -> String {
    format!("connector 'kinesis': option '{opt}' = '{v}': {why}")
}

fn parse_bool(opts: &TableOptions, key: &str) -> Result<bool, String> {
    match opts.get(key).map(|v| (v, v.to_ascii_lowercase())) {
        None => Ok(false),
        Some((_, l)) if l == "true" => Ok(true),
        Some((_, l)) if l == "false" => Ok(false),
        Some((v, _)) => Err(bad(key, v, "expected 'true' or 'false'")),
    }
}

fn parse_char(key: &str, v: &str) -> Result<u8, String> {
    let c = if v == "\\t" { "\t" } else { v };
    match c.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
        _ => Err(bad(key, v, "expected one ASCII character (not a line break)")),
    }
}

fn duration(opts: &TableOptions, key: &str, default: Duration) -> Result<Duration, String> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => crate::parse_duration(v).map_err(|m| bad(key, v, m)),
    }
}

fn count(opts: &TableOptions, key: &str, default: usize, max: usize) -> Result<usize, String> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 && n <= max => Ok(n),
            _ => Err(bad(key, v, format!("expected a whole number from 1 to {max}"))),
        },
    }
}

/// A timestamp: seconds since the epoch (`'1700000000.5'`, as Flink's) or RFC 3339
/// (`'2024-05-01T12:00:00Z'`, `'2024-05-01T12:00:00.000+02:00'`); milliseconds.
pub fn parse_timestamp(v: &str) -> Result<i64, String> {
    let t = v.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1000.0).round() as i64);
        }
        return Err("a timestamp must not be negative".into());
    }
    aws_smithy_types_convert(t)
}

/// RFC 3339 through the SDK's own date parser (no other date library needed).
fn aws_smithy_types_convert(t: &str) -> Result<i64, String> {
    let d = aws_sdk_kinesis::primitives::DateTime::from_str(t, aws_sdk_kinesis::primitives::DateTimeFormat::DateTimeWithOffset)
        .or_else(|_| aws_sdk_kinesis::primitives::DateTime::from_str(t, aws_sdk_kinesis::primitives::DateTimeFormat::DateTime))
        .map_err(|_| "not a timestamp (seconds since the epoch, or RFC 3339 such as '2024-05-01T12:00:00Z')".to_string())?;
    d.to_millis().map_err(|e| e.to_string())
}

fn meta_key(k: &str) -> Option<Meta> {
    Some(match k {
        "timestamp" => Meta::Timestamp,
        "shard-id" => Meta::ShardId,
        "sequence-number" => Meta::SequenceNumber,
        "partition-key" => Meta::PartitionKey,
        _ => return None,
    })
}

fn meta_type_ok(m: Meta, t: &DataType) -> bool {
    match m {
        Meta::Timestamp => matches!(t, DataType::Timestamp(_, _)),
        Meta::ShardId | Meta::SequenceNumber | Meta::PartitionKey => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
    }
}

impl KinesisOptions {
    pub fn parse(opts: &TableOptions, schema: &SchemaRef) -> Result<KinesisOptions, String> {
        let stream = match (opts.get("stream"), opts.get("stream.arn")) {
            (Some(_), Some(_)) => return Err("connector 'kinesis': options 'stream' and 'stream.arn' exclude each other (give one)".into()),
            (Some(n), None) if !n.trim().is_empty() => StreamRef::Name(n.trim().to_string()),
            (None, Some(a)) if a.starts_with("arn:") => StreamRef::Arn(a.trim().to_string()),
            (None, Some(a)) => return Err(bad("stream.arn", a, "not an ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)")),
            (Some(n), None) => return Err(bad("stream", n, "empty")),
            (None, None) => return Err("connector 'kinesis' needs the option 'stream' (the stream's name) or 'stream.arn'".into()),
        };
        let region = opts.get("aws.region").map(|r| r.trim().to_string());
        if let Some(r) = &region
            && (r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(bad("aws.region", r, "not a region name (e.g. 'us-east-1')"));
        }
        let endpoint = match opts.get("aws.endpoint") {
            None => None,
            Some(e) => {
                let u = url::Url::parse(e).map_err(|err| bad("aws.endpoint", e, err))?;
                if !matches!(u.scheme(), "http" | "https") || !u.username().is_empty() || u.password().is_some() {
                    return Err(bad("aws.endpoint", e, "expected an http:// or https:// URL without credentials"));
                }
                Some(e.to_string())
            }
        };

        // metadata columns first: the record's data fills the others
        let mut metadata = Vec::new();
        for (k, v) in &opts.map {
            let Some(col) = k.strip_prefix(METADATA_PREFIX) else { continue };
            let key = v.strip_suffix(" VIRTUAL").unwrap_or(v);
            let column = schema.index_of(col).map_err(|_| format!("table '{}': metadata column '{col}' is not a column", opts.table))?;
            let m = meta_key(key).ok_or_else(|| format!("connector 'kinesis': column '{col}': unknown metadata '{key}' (known: {})", METADATA.join(", ")))?;
            let t = schema.field(column).data_type();
            if !meta_type_ok(m, t) {
                return Err(format!("connector 'kinesis': column '{col}': metadata '{key}' cannot be read as {t} (timestamp: TIMESTAMP_LTZ(3); shard-id, sequence-number, partition-key: STRING)"));
            }
            metadata.push(MetaColumn { column, key: m });
        }
        let value_columns: Vec<usize> = (0..schema.fields().len()).filter(|i| !metadata.iter().any(|m| m.column == *i)).collect();
        let value_schema: SchemaRef = std::sync::Arc::new(Schema::new(value_columns.iter().map(|i| schema.field(*i).clone()).collect::<Vec<Field>>()));

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
                    return Err("connector 'kinesis': options 'csv.disable-quote-character' and 'csv.quote-character' exclude each other".into());
                }
                c.null_literal = opts.get("csv.null-literal").map(str::to_string);
                if c.delimiter == c.quote && !c.disable_quote {
                    return Err(bad("csv.field-delimiter", &(c.delimiter as char).to_string(), "the same character as 'csv.quote-character'"));
                }
                Format::Csv(c)
            }
            "raw" => {
                let ok = value_schema.fields().len() == 1 && matches!(value_schema.field(0).data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary);
                if !ok {
                    return Err(format!(
                        "connector 'kinesis': 'format' = 'raw' needs exactly one column (besides metadata columns) of type STRING or BYTES; table '{}' has {}",
                        opts.table,
                        value_schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
                    ));
                }
                Format::Raw
            }
            other => return Err(bad("format", other, "not supported (supported: json, csv, raw)")),
        };
        if !matches!(format, Format::Csv(_))
            && let Some(k) = opts.map.keys().find(|k| k.starts_with("csv."))
        {
            return Err(format!("connector 'kinesis': option '{k}' needs 'format' = 'csv'"));
        }

        let (pos_key, ts_key) = match (opts.get("scan.stream.initial-position"), opts.get("scan.stream.initpos")) {
            (Some(_), Some(_)) => return Err("connector 'kinesis': options 'scan.stream.initial-position' and 'scan.stream.initpos' (its older name) exclude each other".into()),
            (_, Some(_)) => ("scan.stream.initpos", "scan.stream.initpos-timestamp"),
            _ => ("scan.stream.initial-position", "scan.stream.initial-timestamp"),
        };
        let ts = match (opts.get("scan.stream.initial-timestamp"), opts.get("scan.stream.initpos-timestamp")) {
            (Some(a), None) => Some(("scan.stream.initial-timestamp", a)),
            (None, Some(b)) => Some(("scan.stream.initpos-timestamp", b)),
            (None, None) => None,
            (Some(_), Some(_)) => return Err("connector 'kinesis': options 'scan.stream.initial-timestamp' and 'scan.stream.initpos-timestamp' exclude each other".into()),
        };
        let pos = opts.get(pos_key);
        let initial_position = match pos.map(str::to_ascii_uppercase).as_deref() {
            None if ts.is_none() => InitialPosition::Latest,
            Some("LATEST") => InitialPosition::Latest,
            Some("TRIM_HORIZON") => InitialPosition::TrimHorizon,
            None | Some("AT_TIMESTAMP") => {
                let Some((k, v)) = ts else {
                    return Err(format!("connector 'kinesis': option '{pos_key}' = 'AT_TIMESTAMP' needs '{ts_key}' (seconds since the epoch, or RFC 3339)"));
                };
                InitialPosition::AtTimestamp(parse_timestamp(v).map_err(|e| bad(k, v, e))?)
            }
            Some(_) => return Err(bad(pos_key, pos.unwrap_or(""), "expected LATEST, TRIM_HORIZON or AT_TIMESTAMP")),
        };
        if !matches!(initial_position, InitialPosition::AtTimestamp(_))
            && let Some((k, _)) = ts
        {
            return Err(format!("connector 'kinesis': option '{k}' needs '{pos_key}' = 'AT_TIMESTAMP'"));
        }

        let discovery_interval = duration(opts, "scan.shard.discovery.intervalmillis", Duration::from_secs(10))?;
        if discovery_interval.is_zero() {
            return Err(bad("scan.shard.discovery.intervalmillis", opts.get("scan.shard.discovery.intervalmillis").unwrap_or(""), "must be positive"));
        }
        let get_records_max = count(opts, "scan.shard.getrecords.maxrecordcount", MAX_GET_RECORDS, MAX_GET_RECORDS)?;
        let get_records_interval = duration(opts, "scan.shard.getrecords.intervalmillis", Duration::from_millis(200))?;

        let mut key_columns = Vec::new();
        if let Some(v) = opts.get("sink.partition-key") {
            for c in v.split(',').map(str::trim) {
                let i = schema.index_of(c).map_err(|_| bad("sink.partition-key", v, format!("'{c}' is not a column of table '{}'", opts.table)))?;
                key_columns.push(i);
            }
        }
        let buffer_bytes = match opts.get("sink.flush-buffer.size") {
            None => MAX_BYTES_PER_REQUEST,
            Some(v) => {
                let n = crate::filesystem::options::parse_size("sink.flush-buffer.size", v).map_err(|e| e.replace("connector 'filesystem'", "connector 'kinesis'"))?;
                if n as usize > MAX_BYTES_PER_REQUEST {
                    return Err(bad("sink.flush-buffer.size", v, "at most 5 MiB (Kinesis' limit of one PutRecords request)"));
                }
                n as usize
            }
        };
        let sink = SinkOptions {
            key_columns,
            key_delimiter: opts.get("sink.partitioner-field-delimiter").unwrap_or("|").to_string(),
            batch_max: count(opts, "sink.batch.max-size", MAX_RECORDS_PER_REQUEST, MAX_RECORDS_PER_REQUEST)?,
            buffer_bytes,
            buffer_timeout: duration(opts, "sink.flush-buffer.timeout", Duration::from_secs(5))?,
            max_retries: opts.parse::<u32>("sink.max-retries")?.unwrap_or(10),
        };
        Ok(KinesisOptions {
            table: opts.table.clone(),
            stream,
            region,
            endpoint,
            format,
            initial_position,
            discovery_interval,
            get_records_max,
            get_records_interval,
            schema: schema.clone(),
            value_schema,
            value_columns,
            metadata,
            sink,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    fn opts(kv: &[(&str, &str)]) -> TableOptions {
        let map: BTreeMap<String, String> = kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TableOptions { table: "t".into(), connector: "kinesis".into(), map, primary_key: Vec::new(), partition_keys: Vec::new() }
    }

    fn parse(kv: &[(&str, &str)]) -> Result<KinesisOptions, String> {
        KinesisOptions::parse(&opts(kv), &schema())
    }

    #[test]
    fn defaults_and_positions() {
        let o = parse(&[("stream", "s"), ("format", "json")]).unwrap();
        assert_eq!(o.stream, StreamRef::Name("s".into()));
        assert_eq!(o.initial_position, InitialPosition::Latest);
        assert_eq!(o.discovery_interval, Duration::from_secs(10));
        assert_eq!(o.sink.batch_max, 500);
        assert_eq!(o.sink.buffer_bytes, 5 << 20);
        let o = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initial-position", "trim_horizon")]).unwrap();
        assert_eq!(o.initial_position, InitialPosition::TrimHorizon);
        let o = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initial-position", "AT_TIMESTAMP"), ("scan.stream.initial-timestamp", "1700000000.25")]).unwrap();
        assert_eq!(o.initial_position, InitialPosition::AtTimestamp(1_700_000_000_250));
        let o = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initpos", "AT_TIMESTAMP"), ("scan.stream.initpos-timestamp", "2023-11-14T22:13:20Z")]).unwrap();
        assert_eq!(o.initial_position, InitialPosition::AtTimestamp(1_700_000_000_000));
        // a timestamp alone means AT_TIMESTAMP
        let o = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initial-timestamp", "2023-11-14T23:13:20.5+01:00")]).unwrap();
        assert_eq!(o.initial_position, InitialPosition::AtTimestamp(1_700_000_000_500));
        let o = parse(&[("stream.arn", "arn:aws:kinesis:us-east-1:1:stream/x"), ("format", "raw")]);
        assert!(o.unwrap_err().contains("'format' = 'raw' needs exactly one column"));
    }

    #[test]
    fn errors_name_the_option() {
        let e = parse(&[("format", "json")]).unwrap_err();
        assert!(e.contains("needs the option 'stream'"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "avro")]).unwrap_err();
        assert!(e.contains("option 'format' = 'avro'"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initial-position", "EARLIEST")]).unwrap_err();
        assert!(e.contains("option 'scan.stream.initial-position' = 'EARLIEST'"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initial-position", "AT_TIMESTAMP")]).unwrap_err();
        assert!(e.contains("needs 'scan.stream.initial-timestamp'"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initial-position", "AT_TIMESTAMP"), ("scan.stream.initial-timestamp", "yesterday")]).unwrap_err();
        assert!(e.contains("option 'scan.stream.initial-timestamp' = 'yesterday'"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("scan.stream.initial-position", "LATEST"), ("scan.stream.initial-timestamp", "1")]).unwrap_err();
        assert!(e.contains("needs 'scan.stream.initial-position' = 'AT_TIMESTAMP'"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("sink.partition-key", "id,nope")]).unwrap_err();
        assert!(e.contains("option 'sink.partition-key' = 'id,nope': 'nope' is not a column"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("sink.batch.max-size", "501")]).unwrap_err();
        assert!(e.contains("option 'sink.batch.max-size' = '501'"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("sink.flush-buffer.size", "6mb")]).unwrap_err();
        assert!(e.contains("option 'sink.flush-buffer.size' = '6mb': at most 5 MiB"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("aws.endpoint", "http://key:secret@localhost:1")]).unwrap_err();
        assert!(e.contains("option 'aws.endpoint'") && e.contains("without credentials"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("csv.field-delimiter", ";")]).unwrap_err();
        assert!(e.contains("option 'csv.field-delimiter' needs 'format' = 'csv'"), "{e}");
        let e = parse(&[("stream", "s"), ("stream.arn", "arn:aws:kinesis:us-east-1:1:stream/s"), ("format", "json")]).unwrap_err();
        assert!(e.contains("exclude each other"), "{e}");
        let e = parse(&[("stream", "s"), ("format", "json"), ("scan.shard.discovery.intervalmillis", "0")]).unwrap_err();
        assert!(e.contains("must be positive"), "{e}");
    }

    #[test]
    fn metadata_columns_are_not_read_from_the_data() {
        let s: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("shard", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())), true),
        ]));
        let o = KinesisOptions::parse(&opts(&[("stream", "s"), ("format", "json"), ("__metadata.shard", "shard-id"), ("__metadata.ts", "timestamp VIRTUAL")]), &s).unwrap();
        assert_eq!(o.value_columns, vec![0]);
        assert_eq!(o.metadata, vec![MetaColumn { column: 1, key: Meta::ShardId }, MetaColumn { column: 2, key: Meta::Timestamp }]);
        let e = KinesisOptions::parse(&opts(&[("stream", "s"), ("format", "json"), ("__metadata.id", "shard-id")]), &s).unwrap_err();
        assert!(e.contains("column 'id': metadata 'shard-id' cannot be read as Int64"), "{e}");
        let e = KinesisOptions::parse(&opts(&[("stream", "s"), ("format", "json"), ("__metadata.shard", "offset")]), &s).unwrap_err();
        assert!(e.contains("unknown metadata 'offset'"), "{e}");
    }
}
