//! The connector registry: a connector is registered by name and builds sources
//! and/or sinks from string options (SQL's `WITH (...)`, a job file's `options:`, or
//! a map built in Rust); unknown or missing options are errors naming the option and
//! the connector.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir::connector::{ConnectorError, SourceContext};
use weir::stream::DataStream;

use crate::changelog::ChangeBatch;

/// The options of one table (`WITH (...)`), as given.
#[derive(Clone)]
pub struct TableOptions {
    pub table: String,
    pub connector: String,
    pub map: BTreeMap<String, String>,
    /// `PRIMARY KEY (...) NOT ENFORCED` of the table (empty: none): the columns an
    /// upserting sink writes by.
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (...)` of the table (empty: not partitioned): the columns a
    /// file sink writes into partition directories.
    pub partition_keys: Vec<String>,
}

/// Whether an option holds a secret (its value is never printed).
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("token") || k.contains("credential")
}

impl std::fmt::Debug for TableOptions {
    /// Secret options (passwords, secrets, tokens) show as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map: BTreeMap<&str, &str> = self.map.iter().map(|(k, v)| (k.as_str(), if is_secret_option(k) { "***" } else { v.as_str() })).collect();
        f.debug_struct("TableOptions").field("table", &self.table).field("connector", &self.connector).field("map", &map).field("primary_key", &self.primary_key).field("partition_keys", &self.partition_keys).finish()
    }
}

/// The prefix of the option keys that carry a table's metadata columns (`col TYPE
/// METADATA [FROM 'key'] [VIRTUAL]` in SQL): `__metadata.<col>` = `<key>` or
/// `<key> VIRTUAL`. The registry checks them against [`Connector::metadata`].
pub const METADATA_PREFIX: &str = "__metadata.";

impl TableOptions {
    /// The metadata columns: (column, metadata key, VIRTUAL), in column name order.
    pub fn metadata_columns(&self) -> Vec<(String, String, bool)> {
        self.map
            .iter()
            .filter_map(|(k, v)| {
                let col = k.strip_prefix(METADATA_PREFIX)?;
                let (key, virt) = match v.strip_suffix(" VIRTUAL") {
                    Some(key) => (key, true),
                    None => (v.as_str(), false),
                };
                Some((col.to_string(), key.to_string(), virt))
            })
            .collect()
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }
    pub fn required(&self, key: &str) -> Result<&str, String> {
        self.get(key).ok_or_else(|| format!("connector '{}' needs the option '{key}'", self.connector))
    }
    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| format!("option '{key}' of connector '{}': cannot parse '{v}'", self.connector)),
        }
    }
}

/// A duration option or setting: milliseconds (`'3600000'`) or a number and a unit
/// (`'1 h'`, `'10 s'`, `'5 min'`, `'100 ms'`, `'1 d'`). Zero disables.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("'{v}' is not a duration (expected e.g. '1 h', '10 s', '5 min' or milliseconds)"))?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        other => return Err(format!("'{v}': unknown time unit '{other}' (use ms, s, min, h or d)")),
    };
    Ok(Duration::from_millis(n.checked_mul(ms).ok_or_else(|| format!("'{v}' is too long"))?))
}

/// A bounded or unbounded reader of Arrow batches: what a connector's source is.
/// The SQL source around it adds computed columns, timestamps and watermarks.
pub trait BatchSource: Send {
    fn open(&mut self, _ctx: &SourceContext) -> Result<(), ConnectorError> {
        Ok(())
    }
    /// Up to `max_rows` rows; `Ok(None)` at end of input; an empty batch when nothing is available now.
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError>;
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(Vec::new())
    }
    /// For per-split watermarks: the split every row of the last batch came from,
    /// and the splits this subtask reads now (ids stable while it runs). `None`
    /// (the default): batches mix splits, the subtask has one watermark.
    fn batch_split(&self) -> Option<(u64, &[u64])> {
        None
    }
    /// `snapshot` for checkpoint `checkpoint_id` (see [`weir::connector::Source::snapshot_for`]).
    fn snapshot_for(&mut self, _checkpoint_id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        self.snapshot()
    }
    /// Checkpoint `checkpoint_id` is complete (see [`weir::connector::Source::checkpoint_complete`]).
    fn checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), ConnectorError> {
        Ok(())
    }
    fn restore(&mut self, _splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        Ok(())
    }
    fn redistribution(&self) -> weir::checkpoint::restore::Redistribution {
        weir::checkpoint::restore::Redistribution::Split
    }
}

/// A table read by key, for lookup joins (`JOIN t FOR SYSTEM_TIME AS OF p.proctime`):
/// shared by the subtasks of the join (it caches and reloads as its options say).
pub trait LookupSource: Send + Sync {
    /// The rows whose key columns equal each probe key: `keys` are the probe key
    /// columns (one array per key column, of that column's type, all of one length);
    /// a key with a null never matches. The result lists, for each row found (in the
    /// table's physical schema), its probe row, ascending.
    fn lookup(&self, keys: &[arrow::array::ArrayRef]) -> Result<LookupRows, ConnectorError>;
}

/// The result of [`LookupSource::lookup`].
#[derive(Clone, Debug)]
pub struct LookupRows {
    /// for each row found, the probe row it matches (ascending)
    pub probe_rows: Vec<u32>,
    /// the rows found, in the table's physical schema
    pub rows: RecordBatch,
}

/// Makes the source of each subtask.
pub type SourceFactory = Arc<dyn Fn(&SourceContext) -> Box<dyn BatchSource> + Send + Sync>;

/// What a sink connector accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangelogMode {
    AppendOnly,
    /// `+I`, `-U`, `+U`, `-D`
    All,
}

/// How a connector adds its sink to a stream.
pub struct SinkArgs<'a> {
    pub stream: &'a DataStream<ChangeBatch>,
    pub name: &'a str,
    pub uid: &'a str,
    pub parallelism: Option<u32>,
    pub schema: SchemaRef,
}

/// A connector: one module, registered by name.
pub trait Connector: Send + Sync {
    fn name(&self) -> &str;
    /// Every option it knows (besides 'connector').
    fn options(&self) -> &[&str];
    /// Whether `key` is one of its options (by default: listed in `options`; a
    /// connector passing a prefix through to its client, e.g. Kafka's `properties.*`,
    /// says so here).
    fn accepts_option(&self, key: &str) -> bool {
        self.options().contains(&key)
    }
    /// The metadata its tables can declare as columns (`METADATA FROM 'key'`).
    fn metadata(&self) -> &[&str] {
        &[]
    }
    /// A source reading `schema` (the physical columns), if it can be one.
    fn source(&self, _opts: &TableOptions, _schema: SchemaRef) -> Result<SourceFactory, String> {
        Err(format!("connector '{}' cannot be read (it is a sink only)", self.name()))
    }
    /// Whether its source ends (with these options): batch mode reads only bounded sources.
    fn bounded(&self, _opts: &TableOptions) -> bool {
        false
    }
    /// Whether the sink accepts updates.
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        None
    }
    /// Adds the sink; `sink_mode` said it can be one.
    fn add_sink(&self, _opts: &TableOptions, _args: SinkArgs<'_>) -> Result<(), String> {
        Err(format!("connector '{}' cannot be written (it is a source only)", self.name()))
    }
    /// A lookup source over the table's physical columns `schema`, keyed by the
    /// columns `key_columns` (indices into `schema`), for lookup joins.
    fn lookup(&self, _opts: &TableOptions, _schema: SchemaRef, _key_columns: &[usize]) -> Result<Arc<dyn LookupSource>, String> {
        Err(format!("connector '{}' cannot be used for lookup joins (FOR SYSTEM_TIME AS OF)", self.name()))
    }
    /// Whether it writes `PARTITIONED BY` tables (into partitions).
    fn supports_partitions(&self) -> bool {
        false
    }
    /// Checks the options (beyond known names) when the table is created.
    fn validate(&self, _opts: &TableOptions, _schema: &SchemaRef) -> Result<(), String> {
        Ok(())
    }
}

/// Connectors by name.
#[derive(Clone)]
pub struct ConnectorRegistry {
    by_name: HashMap<String, Arc<dyn Connector>>,
}

impl Default for ConnectorRegistry {
    /// The built-in connectors: `filesystem`, `datagen`, `nexmark`, `print`, `blackhole`,
    /// and with the feature `postgres`, `postgres` and `jdbc`.
    fn default() -> Self {
        let mut r = ConnectorRegistry::empty();
        r.register(Arc::new(crate::filesystem::Filesystem));
        r.register(Arc::new(crate::datagen::Datagen));
        r.register(Arc::new(crate::nexmark::Nexmark));
        r.register(Arc::new(crate::print::Print));
        r.register(Arc::new(crate::blackhole::Blackhole));
        #[cfg(feature = "kafka")]
        {
            r.register(Arc::new(crate::kafka::Kafka::new()));
            r.register(Arc::new(crate::kafka::Kafka::upsert()));
        }
        #[cfg(feature = "kinesis")]
        r.register(Arc::new(crate::kinesis::Kinesis));
        #[cfg(feature = "postgres")]
        {
            r.register(Arc::new(crate::postgres::Postgres::new()));
            r.register(Arc::new(crate::postgres::Postgres::jdbc()));
        }
        r
    }
}

impl ConnectorRegistry {
    pub fn empty() -> Self {
        ConnectorRegistry { by_name: HashMap::new() }
    }
    /// Adds (or replaces) a connector.
    pub fn register(&mut self, c: Arc<dyn Connector>) {
        self.by_name.insert(c.name().to_string(), c);
    }
    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.by_name.get(name).cloned()
    }
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }
    /// Checks the option names against the connector's (an unknown one is an error naming it).
    pub fn check(&self, opts: &TableOptions, schema: &SchemaRef) -> Result<Arc<dyn Connector>, String> {
        let c = self.get(&opts.connector).ok_or_else(|| format!("unknown connector '{}' (known: {})", opts.connector, self.names().join(", ")))?;
        for (k, v) in &opts.map {
            if let Some(col) = k.strip_prefix(METADATA_PREFIX) {
                let key = v.strip_suffix(" VIRTUAL").unwrap_or(v);
                if !c.metadata().contains(&key) {
                    let known = if c.metadata().is_empty() { "it has no metadata columns".to_string() } else { format!("its metadata: {}", c.metadata().join(", ")) };
                    return Err(format!("connector '{}' has no metadata '{key}' (column '{col}'; {known})", c.name()));
                }
                continue;
            }
            if !c.accepts_option(k) {
                return Err(format!("connector '{}' has no option '{k}' (its options: {})", c.name(), c.options().join(", ")));
            }
        }
        if !opts.partition_keys.is_empty() && !c.supports_partitions() {
            return Err(format!("connector '{}' does not support PARTITIONED BY", c.name()));
        }
        c.validate(opts, schema)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1 h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("10 s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5 min").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("1 fortnight").unwrap_err().contains("unknown time unit"));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
    }
}
