//! The options of `kafka` and `upsert-kafka` tables (Flink's names), parsed and
//! checked once: topics, client properties, startup mode, formats of keys and values,
//! discovery, delivery guarantee and partitioner. A bad value is an error naming the
//! option, the value and the connector.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::datatypes::{DataType, Schema, SchemaRef};

use crate::filesystem::format::csv::CsvOptions;
use crate::registry::TableOptions;

/// Every option of the `kafka` connector (besides `connector` and `properties.*`).
pub const OPTIONS: &[&str] = &[
    "topic",
    "topic-pattern",
    "properties.bootstrap.servers",
    "properties.group.id",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.startup.specific-offsets",
    "scan.topic-partition-discovery.interval",
    "scan.watermark.idle-timeout",
    "scan.poll-timeout",
    "format",
    "value.format",
    "key.format",
    "key.fields",
    "key.fields-prefix",
    "value.fields-include",
    "csv.field-delimiter",
    "csv.quote-character",
    "csv.allow-comments",
    "csv.null-literal",
    "csv.disable-quote-character",
    "key.csv.field-delimiter",
    "value.csv.field-delimiter",
    "sink.delivery-guarantee",
    "sink.partitioner",
    "sink.transactional-id-prefix",
    "sink.parallelism",
    "sink.flush-timeout",
];

/// The metadata a `kafka` table can declare (`col TYPE METADATA FROM 'key'`): the
/// key and the types the column may have.
pub const METADATA: &[&str] = &["topic", "partition", "offset", "timestamp", "timestamp-type", "headers", "leader-epoch"];

/// Whether `key` is an option of the connector: a listed one or any `properties.*`
/// (passed to the Kafka client as they are).
pub fn is_option(key: &str) -> bool {
    OPTIONS.contains(&key) || key.starts_with("properties.")
}

/// A format of keys or values.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// one JSON object per message, read into columns by name
    Json,
    /// one CSV record per message, by column position
    Csv(CsvOptions),
    /// the bytes as they are: one STRING or BYTES column
    Raw,
}

/// Where a source starts reading partitions it has no checkpointed offset for.
#[derive(Clone, Debug, PartialEq)]
pub enum Startup {
    Earliest,
    Latest,
    /// the committed offsets of `properties.group.id` (without one: `auto.offset.reset`)
    GroupOffsets,
    /// the first offset at or after this time (ms)
    Timestamp(i64),
    /// these offsets per partition (others: as group-offsets)
    Specific(BTreeMap<i32, i64>),
}

/// What the sink promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    None,
    AtLeastOnce,
    ExactlyOnce,
}

/// How the sink chooses partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioner {
    /// by key hash (murmur2, as the Java client), sticky-random without a key
    Default,
    /// subtask i writes partition i % partitions
    Fixed,
    RoundRobin,
}

/// Which topics a table reads.
#[derive(Clone, Debug)]
pub enum Topics {
    List(Vec<String>),
    Pattern(regex::Regex),
}

impl Topics {
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Topics::List(v) => v.iter().any(|t| t == topic),
            Topics::Pattern(r) => r.is_match(topic),
        }
    }
}

/// A metadata column: its index in the physical schema, its key, whether VIRTUAL.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaColumn {
    pub column: usize,
    pub key: Meta,
    pub is_virtual: bool,
}

/// The metadata of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meta {
    Topic,
    Partition,
    Offset,
    Timestamp,
    TimestampType,
    Headers,
    LeaderEpoch,
}

/// The options of one table, parsed. `Debug` shows secret properties as `***`.
#[derive(Clone)]
pub struct KafkaOptions {
    /// `kafka` or `upsert-kafka`
    pub connector: String,
    pub table: String,
    pub topics: Topics,
    /// `properties.*` without the prefix (bootstrap.servers and group.id among them)
    pub properties: BTreeMap<String, String>,
    pub group_id: Option<String>,
    pub startup: Startup,
    /// `scan.topic-partition-discovery.interval` (`None`: partitions are listed once)
    pub discovery: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub poll_timeout: Duration,
    pub value_format: Format,
    pub key_format: Option<Format>,
    /// the physical columns of the key, in key order
    pub key_columns: Vec<usize>,
    /// the physical columns of the value
    pub value_columns: Vec<usize>,
    /// `key.fields-prefix`: key column names carry it, the key's fields do not
    pub key_prefix: String,
    pub metadata: Vec<MetaColumn>,
    pub delivery: Delivery,
    pub partitioner: Partitioner,
    pub transactional_id_prefix: Option<String>,
    pub sink_parallelism: Option<u32>,
    pub flush_timeout: Duration,
    /// the physical schema
    pub schema: SchemaRef,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: BTreeMap<&str, &str> = self.properties.iter().map(|(k, v)| (k.as_str(), if crate::registry::is_secret_option(k) { "***" } else { v.as_str() })).collect();
        f.debug_struct("KafkaOptions")
            .field("connector", &self.connector)
            .field("table", &self.table)
            .field("topics", &self.topics)
            .field("properties", &props)
            .field("startup", &self.startup)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

fn bad(connector: &str, opt: &str, v: &str, why: impl std::fmt::Display) -> String {
    format!("connector '{connector}': option '{opt}' = '{v}': {why}")
}

/// One character of a `csv.*` option (a tab may be written `\t`).
fn parse_char(connector: &str, key: &str, v: &str) -> Result<u8, String> {
    let c = if v == "\\t" { "\t" } else { v };
    match c.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
        _ => Err(bad(connector, key, v, "expected one ASCII character (not a line break)")),
    }
}

fn parse_bool(o: &TableOptions, key: &str) -> Result<bool, String> {
    match o.get(key).map(|v| (v, v.to_ascii_lowercase())) {
        None => Ok(false),
        Some((_, l)) if l == "true" => Ok(true),
        Some((_, l)) if l == "false" => Ok(false),
        Some((v, _)) => Err(bad(&o.connector, key, v, "expected 'true' or 'false'")),
    }
}

fn duration(o: &TableOptions, key: &str) -> Result<Option<Duration>, String> {
    o.get(key).map(|v| crate::parse_duration(v).map_err(|m| bad(&o.connector, key, v, m))).transpose()
}

/// The CSV options (Flink's `csv.*`; `key.csv.field-delimiter` / `value.csv.field-delimiter` for one side).
fn csv_options(o: &TableOptions, side: &str) -> Result<CsvOptions, String> {
    let mut c = CsvOptions::default();
    let side_delim = format!("{side}.csv.field-delimiter");
    if let Some(v) = o.get(&side_delim) {
        c.delimiter = parse_char(&o.connector, &side_delim, v)?;
    } else if let Some(v) = o.get("csv.field-delimiter") {
        c.delimiter = parse_char(&o.connector, "csv.field-delimiter", v)?;
    }
    if let Some(v) = o.get("csv.quote-character") {
        c.quote = parse_char(&o.connector, "csv.quote-character", v)?;
    }
    c.allow_comments = parse_bool(o, "csv.allow-comments")?;
    c.disable_quote = parse_bool(o, "csv.disable-quote-character")?;
    c.null_literal = o.get("csv.null-literal").map(str::to_string);
    if c.delimiter == c.quote && !c.disable_quote {
        return Err(bad(&o.connector, "csv.field-delimiter", &(c.delimiter as char).to_string(), "the same character as 'csv.quote-character'"));
    }
    Ok(c)
}

fn format(o: &TableOptions, key: &str, side: &str) -> Result<Option<Format>, String> {
    Ok(match o.get(key) {
        None => None,
        Some("json") => Some(Format::Json),
        Some("csv") => Some(Format::Csv(csv_options(o, side)?)),
        Some("raw") => Some(Format::Raw),
        Some("avro") => return Err(bad(&o.connector, key, "avro", "not supported yet (supported: json, csv, raw)")),
        Some(v) => return Err(bad(&o.connector, key, v, "not supported (supported: json, csv, raw)")),
    })
}

/// Whether a column of type `t` can hold metadata `m`.
fn meta_type_ok(m: Meta, t: &DataType) -> bool {
    match m {
        Meta::Topic | Meta::TimestampType => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        Meta::Partition | Meta::LeaderEpoch => matches!(t, DataType::Int32 | DataType::Int64),
        Meta::Offset => matches!(t, DataType::Int64),
        Meta::Timestamp => matches!(t, DataType::Timestamp(_, _)),
        Meta::Headers => match t {
            DataType::Map(f, _) => match f.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => matches!(kv[0].data_type(), DataType::Utf8) && matches!(kv[1].data_type(), DataType::Binary | DataType::Utf8),
                _ => false,
            },
            _ => false,
        },
    }
}

fn meta_key(k: &str) -> Option<Meta> {
    Some(match k {
        "topic" => Meta::Topic,
        "partition" => Meta::Partition,
        "offset" => Meta::Offset,
        "timestamp" => Meta::Timestamp,
        "timestamp-type" => Meta::TimestampType,
        "headers" => Meta::Headers,
        "leader-epoch" => Meta::LeaderEpoch,
        _ => return None,
    })
}

/// `partition:0,offset:42;partition:1,offset:300`
fn specific_offsets(connector: &str, v: &str) -> Result<BTreeMap<i32, i64>, String> {
    let key = "scan.startup.specific-offsets";
    let mut m = BTreeMap::new();
    for part in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (mut p, mut off) = (None, None);
        for kv in part.split(',') {
            match kv.trim().split_once(':') {
                Some(("partition", n)) => p = n.trim().parse::<i32>().ok(),
                Some(("offset", n)) => off = n.trim().parse::<i64>().ok(),
                _ => return Err(bad(connector, key, v, format!("'{part}': expected 'partition:<n>,offset:<n>' separated by ';'"))),
            }
        }
        match (p, off) {
            (Some(p), Some(o)) if p >= 0 && o >= 0 => {
                m.insert(p, o);
            }
            _ => return Err(bad(connector, key, v, format!("'{part}': expected 'partition:<n>,offset:<n>' with numbers ≥ 0"))),
        }
    }
    if m.is_empty() {
        return Err(bad(connector, key, v, "no offsets given"));
    }
    Ok(m)
}

impl KafkaOptions {
    /// The options of `o` over the physical schema `schema`. `upsert` for `upsert-kafka`.
    pub fn parse(o: &TableOptions, schema: &SchemaRef) -> Result<KafkaOptions, String> {
        let c = o.connector.clone();
        let upsert = c == "upsert-kafka";
        let topics = match (o.get("topic"), o.get("topic-pattern")) {
            (Some(_), Some(_)) => return Err(format!("connector '{c}': options 'topic' and 'topic-pattern' exclude each other")),
            (None, None) => return Err(format!("connector '{c}' needs the option 'topic' (or 'topic-pattern')")),
            (Some(t), None) => {
                let v: Vec<String> = t.split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                if v.is_empty() {
                    return Err(bad(&c, "topic", t, "no topic named"));
                }
                Topics::List(v)
            }
            (None, Some(p)) => Topics::Pattern(regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| bad(&c, "topic-pattern", p, e))?),
        };
        if upsert && o.get("topic-pattern").is_some() {
            return Err(format!("connector '{c}' needs one 'topic' ('topic-pattern' is for 'kafka')"));
        }
        let mut properties = BTreeMap::new();
        for (k, v) in &o.map {
            if let Some(p) = k.strip_prefix("properties.") {
                properties.insert(p.to_string(), v.clone());
            }
        }
        if !properties.contains_key("bootstrap.servers") {
            return Err(format!("connector '{c}' needs the option 'properties.bootstrap.servers'"));
        }
        for managed in ["enable.auto.commit", "transactional.id", "group.instance.id"] {
            if properties.contains_key(managed) {
                return Err(format!("connector '{c}': option 'properties.{managed}' is managed by the connector (offsets are checkpointed; transactions follow 'sink.delivery-guarantee')"));
            }
        }
        let group_id = properties.get("group.id").cloned();
        let startup = match o.get("scan.startup.mode") {
            None if upsert => Startup::Earliest,
            None => Startup::GroupOffsets,
            Some("earliest-offset") => Startup::Earliest,
            Some("latest-offset") => Startup::Latest,
            Some("group-offsets") => Startup::GroupOffsets,
            Some("timestamp") => {
                let ts: i64 =
                    o.parse("scan.startup.timestamp-millis")?.ok_or_else(|| format!("connector '{c}': 'scan.startup.mode' = 'timestamp' needs the option 'scan.startup.timestamp-millis'"))?;
                Startup::Timestamp(ts)
            }
            Some("specific-offsets") => {
                let v = o.get("scan.startup.specific-offsets").ok_or_else(|| format!("connector '{c}': 'scan.startup.mode' = 'specific-offsets' needs the option 'scan.startup.specific-offsets'"))?;
                Startup::Specific(specific_offsets(&c, v)?)
            }
            Some(v) => return Err(bad(&c, "scan.startup.mode", v, "not supported (supported: earliest-offset, latest-offset, group-offsets, timestamp, specific-offsets)")),
        };
        if upsert && o.get("scan.startup.mode").is_some() {
            return Err(format!("connector '{c}' reads its topic from the earliest offset (no 'scan.startup.mode')"));
        }
        if !matches!(startup, Startup::Timestamp(_)) && o.get("scan.startup.timestamp-millis").is_some() {
            return Err(format!("connector '{c}': option 'scan.startup.timestamp-millis' needs 'scan.startup.mode' = 'timestamp'"));
        }
        if !matches!(startup, Startup::Specific(_)) && o.get("scan.startup.specific-offsets").is_some() {
            return Err(format!("connector '{c}': option 'scan.startup.specific-offsets' needs 'scan.startup.mode' = 'specific-offsets'"));
        }
        if matches!(startup, Startup::GroupOffsets) && group_id.is_none() && o.get("scan.startup.mode").is_some() {
            return Err(format!("connector '{c}': 'scan.startup.mode' = 'group-offsets' needs the option 'properties.group.id'"));
        }
        let discovery = match duration(o, "scan.topic-partition-discovery.interval")? {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(Duration::from_secs(300)),
        };
        let idle_timeout = duration(o, "scan.watermark.idle-timeout")?.filter(|d| !d.is_zero());
        let poll_timeout = duration(o, "scan.poll-timeout")?.unwrap_or(Duration::from_millis(20));
        let value_format = match (o.get("format"), o.get("value.format")) {
            (Some(_), Some(_)) => return Err(format!("connector '{c}': options 'format' and 'value.format' exclude each other")),
            (Some(_), None) if upsert => return Err(format!("connector '{c}' needs 'value.format' (and 'key.format'), not 'format'")),
            (Some(_), None) => format(o, "format", "value")?,
            (None, Some(_)) => format(o, "value.format", "value")?,
            (None, None) => None,
        }
        .ok_or_else(|| format!("connector '{c}' needs the option '{}'", if upsert { "value.format" } else { "format" }))?;
        let key_format = format(o, "key.format", "key")?;
        let key_prefix = o.get("key.fields-prefix").unwrap_or("").to_string();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let key_names: Vec<String> = if upsert {
            if o.get("key.fields").is_some() {
                return Err(format!("connector '{c}': the key is the PRIMARY KEY (no 'key.fields')"));
            }
            if o.primary_key.is_empty() {
                return Err(format!("connector '{c}': table '{}' needs a PRIMARY KEY (...) NOT ENFORCED: it is the message key", o.table));
            }
            if key_format.is_none() {
                return Err(format!("connector '{c}' needs the option 'key.format'"));
            }
            o.primary_key.clone()
        } else {
            o.get("key.fields").map(|v| v.split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
        };
        if !key_names.is_empty() && key_format.is_none() {
            return Err(format!("connector '{c}': option 'key.fields' needs 'key.format'"));
        }
        if key_names.is_empty() && key_format.is_some() {
            return Err(format!("connector '{c}': option 'key.format' needs 'key.fields' (the columns of the key)"));
        }
        // metadata columns (declared with METADATA in SQL)
        let mut metadata = Vec::new();
        for (col, key, is_virtual) in o.metadata_columns() {
            let column = names.iter().position(|n| *n == col).ok_or_else(|| format!("table '{}': metadata column '{col}' is not a column", o.table))?;
            let m = meta_key(&key).ok_or_else(|| format!("connector '{c}': column '{col}': unknown metadata '{key}' (known: {})", METADATA.join(", ")))?;
            let t = schema.field(column).data_type();
            if !meta_type_ok(m, t) {
                return Err(format!(
                    "connector '{c}': column '{col}': metadata '{key}' cannot be read as {t} (topic, timestamp-type: STRING; partition, leader-epoch: INT; offset: BIGINT; timestamp: TIMESTAMP_LTZ(3); headers: MAP<STRING, BYTES>)"
                ));
            }
            metadata.push(MetaColumn { column, key: m, is_virtual });
        }
        let is_meta = |i: usize| metadata.iter().any(|m| m.column == i);
        let mut key_columns = Vec::new();
        for k in &key_names {
            let i = names.iter().position(|n| n == k).ok_or_else(|| bad(&c, if upsert { "PRIMARY KEY" } else { "key.fields" }, k, format!("table '{}' has no such column", o.table)))?;
            if is_meta(i) {
                return Err(bad(&c, "key.fields", k, "a metadata column cannot be part of the key"));
            }
            if !k.starts_with(&key_prefix) {
                return Err(bad(&c, "key.fields", k, format!("key columns must start with 'key.fields-prefix' = '{key_prefix}'")));
            }
            key_columns.push(i);
        }
        let except_key = match o.get("value.fields-include") {
            None => !key_prefix.is_empty(),
            Some("ALL") if !key_prefix.is_empty() => return Err(format!("connector '{c}': 'key.fields-prefix' needs 'value.fields-include' = 'EXCEPT_KEY'")),
            Some("ALL") => false,
            Some("EXCEPT_KEY") => true,
            Some(v) => return Err(bad(&c, "value.fields-include", v, "expected 'ALL' or 'EXCEPT_KEY'")),
        };
        let value_columns: Vec<usize> = (0..names.len()).filter(|i| !(is_meta(*i) || except_key && key_columns.contains(i))).collect();
        if value_columns.is_empty() && !upsert {
            return Err(format!("connector '{c}': table '{}' has no value column (besides key and metadata)", o.table));
        }
        let raw_ok = |cols: &[usize]| cols.len() == 1 && matches!(schema.field(cols[0]).data_type(), DataType::Utf8 | DataType::Binary | DataType::LargeUtf8 | DataType::LargeBinary);
        if value_format == Format::Raw && !raw_ok(&value_columns) {
            return Err(format!("connector '{c}': 'format' = 'raw' needs exactly one value column of type STRING or BYTES"));
        }
        if key_format == Some(Format::Raw) && !raw_ok(&key_columns) {
            return Err(format!("connector '{c}': 'key.format' = 'raw' needs exactly one key column of type STRING or BYTES"));
        }
        let delivery = match o.get("sink.delivery-guarantee") {
            None | Some("at-least-once") => Delivery::AtLeastOnce,
            Some("none") => Delivery::None,
            Some("exactly-once") => Delivery::ExactlyOnce,
            Some(v) => return Err(bad(&c, "sink.delivery-guarantee", v, "expected 'at-least-once', 'exactly-once' or 'none'")),
        };
        let partitioner = match o.get("sink.partitioner") {
            None | Some("default") => Partitioner::Default,
            Some("fixed") => Partitioner::Fixed,
            Some("round-robin") => Partitioner::RoundRobin,
            Some(v) => return Err(bad(&c, "sink.partitioner", v, "expected 'default', 'fixed' or 'round-robin' (custom partitioner classes are Java's)")),
        };
        let sink_parallelism: Option<u32> = o.parse("sink.parallelism")?;
        if sink_parallelism == Some(0) {
            return Err(bad(&c, "sink.parallelism", "0", "must be positive"));
        }
        let flush_timeout = duration(o, "sink.flush-timeout")?.unwrap_or(Duration::from_secs(60));
        let csv_used = matches!(value_format, Format::Csv(_)) || matches!(key_format, Some(Format::Csv(_)));
        if !csv_used && let Some(k) = o.map.keys().find(|k| k.starts_with("csv.") || k.contains(".csv.")) {
            return Err(format!("connector '{c}': option '{k}' needs a csv format"));
        }
        Ok(KafkaOptions {
            connector: c,
            table: o.table.clone(),
            topics,
            properties,
            group_id,
            startup,
            discovery,
            idle_timeout,
            poll_timeout,
            value_format,
            key_format,
            key_columns,
            value_columns,
            key_prefix,
            metadata,
            delivery,
            partitioner,
            transactional_id_prefix: o.get("sink.transactional-id-prefix").map(str::to_string),
            sink_parallelism,
            flush_timeout,
            schema: schema.clone(),
        })
    }

    /// The one topic a sink writes (`topic` naming one topic).
    pub fn sink_topic(&self) -> Result<&str, String> {
        match &self.topics {
            Topics::List(v) if v.len() == 1 => Ok(&v[0]),
            Topics::List(v) => Err(format!("connector '{}': a sink writes one topic, 'topic' names {}", self.connector, v.len())),
            Topics::Pattern(_) => Err(format!("connector '{}': a sink writes one 'topic', not a 'topic-pattern'", self.connector)),
        }
    }

    /// The schema of the value's fields (by the format).
    pub fn value_schema(&self) -> SchemaRef {
        project(&self.schema, &self.value_columns, "")
    }

    /// The schema of the key's fields (their names without `key.fields-prefix`).
    pub fn key_schema(&self) -> SchemaRef {
        project(&self.schema, &self.key_columns, &self.key_prefix)
    }

    /// The client configuration: `properties.*` and what the connector sets. A value
    /// `${env:NAME}` is read from the environment variable `NAME`, `${file:PATH}` from
    /// the file (trailing line break dropped): secrets (`sasl.password`,
    /// `ssl.key.password`, ...) from Kubernetes Secrets, never inline; errors name the
    /// option, never the value.
    pub fn client_config(&self) -> Result<rdkafka::ClientConfig, String> {
        let mut cfg = rdkafka::ClientConfig::new();
        for (k, v) in &self.properties {
            let value = if let Some(name) = v.strip_prefix("${env:").and_then(|r| r.strip_suffix('}')) {
                std::env::var(name).map_err(|_| format!("connector '{}': option 'properties.{k}': the environment variable '{name}' is not set", self.connector))?
            } else if let Some(path) = v.strip_prefix("${file:").and_then(|r| r.strip_suffix('}')) {
                let t = std::fs::read_to_string(path).map_err(|e| format!("connector '{}': option 'properties.{k}': cannot read '{path}': {e}", self.connector))?;
                t.strip_suffix('\n').unwrap_or(&t).to_string()
            } else {
                v.clone()
            };
            cfg.set(k, value);
        }
        // librdkafka logs its configuration only at debug levels of its own; the connector never logs it
        Ok(cfg)
    }
}

fn project(schema: &Schema, cols: &[usize], strip: &str) -> SchemaRef {
    let fields: Vec<arrow::datatypes::Field> = cols
        .iter()
        .map(|i| {
            let f = schema.field(*i);
            let n = f.name().strip_prefix(strip).unwrap_or(f.name());
            f.clone().with_name(n)
        })
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    fn opts(connector: &str, kv: &[(&str, &str)], pk: &[&str]) -> TableOptions {
        TableOptions {
            table: "t".into(),
            connector: connector.into(),
            map: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            partition_keys: vec![],
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())), true),
        ]))
    }

    const BASE: &[(&str, &str)] = &[("topic", "a;b"), ("properties.bootstrap.servers", "h:9092"), ("format", "json")];

    fn with(extra: &[(&str, &str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<(&str, &str)> = BASE.to_vec();
        for (k, val) in extra {
            let (k, val): (&'static str, &'static str) = (Box::leak(k.to_string().into_boxed_str()), Box::leak(val.to_string().into_boxed_str()));
            v.retain(|(x, _)| *x != k);
            v.push((k, val));
        }
        v
    }

    fn parse(kv: &[(&str, &str)]) -> Result<KafkaOptions, String> {
        KafkaOptions::parse(&opts("kafka", kv, &[]), &schema())
    }

    #[test]
    fn topics_startup_modes_and_formats() {
        let k = parse(BASE).unwrap();
        assert!(matches!(&k.topics, Topics::List(v) if v == &["a", "b"]));
        assert_eq!(k.startup, Startup::GroupOffsets);
        assert_eq!(k.value_columns, vec![0, 1, 2]);
        assert_eq!(k.discovery, Some(Duration::from_secs(300)));
        let k = parse(&with(&[("scan.startup.mode", "timestamp"), ("scan.startup.timestamp-millis", "1700000000000")])).unwrap();
        assert_eq!(k.startup, Startup::Timestamp(1_700_000_000_000));
        let k = parse(&with(&[("scan.startup.mode", "specific-offsets"), ("scan.startup.specific-offsets", "partition:0,offset:42;partition:2,offset:7")])).unwrap();
        assert_eq!(k.startup, Startup::Specific([(0, 42), (2, 7)].into_iter().collect()));
        let k = parse(&[("topic-pattern", "orders-.*"), ("properties.bootstrap.servers", "h"), ("format", "csv"), ("scan.topic-partition-discovery.interval", "0")]).unwrap();
        assert!(k.topics.matches("orders-eu") && !k.topics.matches("xorders-eu"));
        assert!(matches!(k.value_format, Format::Csv(_)) && k.discovery.is_none());
        let k = parse(&with(&[("key.format", "json"), ("key.fields", "id"), ("value.fields-include", "EXCEPT_KEY")])).unwrap();
        assert_eq!((k.key_columns.clone(), k.value_columns.clone()), (vec![0], vec![1, 2]));
    }

    #[test]
    fn errors_name_the_option_and_the_connector() {
        let e = |kv: &[(&str, &str)]| parse(kv).unwrap_err();
        assert!(e(&[("format", "json"), ("topic", "a")]).contains("connector 'kafka' needs the option 'properties.bootstrap.servers'"));
        assert!(e(&with(&[("scan.startup.mode", "newest")])).contains("option 'scan.startup.mode' = 'newest'"));
        assert!(e(&with(&[("scan.startup.mode", "timestamp")])).contains("needs the option 'scan.startup.timestamp-millis'"));
        assert!(e(&with(&[("scan.startup.mode", "specific-offsets"), ("scan.startup.specific-offsets", "p0")])).contains("'scan.startup.specific-offsets' = 'p0'"));
        assert!(e(&with(&[("scan.startup.mode", "group-offsets")])).contains("needs the option 'properties.group.id'"));
        assert!(e(&with(&[("format", "xml")])).contains("option 'format' = 'xml': not supported"));
        assert!(e(&with(&[("key.fields", "id")])).contains("'key.fields' needs 'key.format'"));
        assert!(e(&with(&[("key.format", "json"), ("key.fields", "nope")])).contains("option 'key.fields' = 'nope'"));
        assert!(e(&with(&[("properties.enable.auto.commit", "true")])).contains("'properties.enable.auto.commit' is managed"));
        assert!(e(&with(&[("sink.delivery-guarantee", "twice")])).contains("option 'sink.delivery-guarantee' = 'twice'"));
        assert!(e(&with(&[("sink.partitioner", "org.Foo")])).contains("option 'sink.partitioner' = 'org.Foo'"));
        assert!(e(&with(&[("format", "raw")])).contains("'raw' needs exactly one value column"));
        assert!(e(&with(&[("csv.field-delimiter", ";")])).contains("needs a csv format"));
        assert!(e(&with(&[("topic-pattern", "x")])).contains("exclude each other"));
        assert!(e(&[("topic-pattern", "("), ("properties.bootstrap.servers", "h"), ("format", "json")]).contains("option 'topic-pattern' = '('"));
    }

    #[test]
    fn secret_properties_come_from_the_environment_or_files() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "s3cr3t\n").unwrap();
        let file = format!("${{file:{}}}", f.path().display());
        let k = parse(&with(&[("properties.sasl.password", &file), ("properties.sasl.username", "${env:WEIR_KAFKA_TEST_NO_SUCH_VAR}")])).unwrap();
        let e = k.client_config().err().unwrap();
        assert!(e.contains("option 'properties.sasl.username'") && e.contains("WEIR_KAFKA_TEST_NO_SUCH_VAR") && !e.contains("s3cr3t"), "{e}");
        let k = parse(&with(&[("properties.sasl.password", &file)])).unwrap();
        assert_eq!(k.client_config().unwrap().get("sasl.password"), Some("s3cr3t"));
        assert!(format!("{:?}", opts("kafka", &with(&[("properties.sasl.password", "inline")]), &[])).contains("\"properties.sasl.password\": \"***\""));
        assert!(!format!("{:?}", parse(&with(&[("properties.sasl.password", "inline")])).unwrap()).contains("inline"));
    }

    #[test]
    fn upsert_kafka_keys_by_the_primary_key() {
        let base = [("topic", "u"), ("properties.bootstrap.servers", "h"), ("key.format", "json"), ("value.format", "json")];
        let k = KafkaOptions::parse(&opts("upsert-kafka", &base, &["id"]), &schema()).unwrap();
        assert_eq!((k.key_columns, k.startup), (vec![0], Startup::Earliest));
        let e = KafkaOptions::parse(&opts("upsert-kafka", &base, &[]), &schema()).unwrap_err();
        assert!(e.contains("needs a PRIMARY KEY"), "{e}");
        let e = KafkaOptions::parse(&opts("upsert-kafka", &base[..3], &["id"]), &schema()).unwrap_err();
        assert!(e.contains("connector 'upsert-kafka' needs the option 'value.format'"), "{e}");
    }
}
