//! The connector registry: a connector is registered by name and builds sources
//! and/or sinks from the string options of `WITH (...)`; unknown or missing options
//! are errors naming the option and the connector.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use serde_json::value::RawValue;
use weir::connector::blackhole::BlackholeSink;
use weir::connector::files::ExactlyOnceFileSink;
use weir::connector::jsonl::JsonLinesSink;
use weir::connector::sequence::SequenceSplits;
use weir::connector::{ConnectorError, Sink, SourceContext};
use weir::record::Rec;
use weir::stream::DataStream;

use crate::ops::ChangeBatch;

/// The options of one table (`WITH (...)`), as given.
#[derive(Clone, Debug)]
pub struct TableOptions {
    pub table: String,
    pub connector: String,
    pub map: BTreeMap<String, String>,
}

impl TableOptions {
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
    fn restore(&mut self, _splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        Ok(())
    }
    fn redistribution(&self) -> weir::checkpoint::restore::Redistribution {
        weir::checkpoint::restore::Redistribution::Split
    }
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
    /// The built-in connectors: `filesystem`, `datagen`, `nexmark`, `print`, `blackhole`.
    fn default() -> Self {
        let mut r = ConnectorRegistry::empty();
        r.register(Arc::new(Filesystem));
        r.register(Arc::new(Datagen));
        r.register(Arc::new(crate::nexmark::Nexmark));
        r.register(Arc::new(Print));
        r.register(Arc::new(Blackhole));
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
        for k in opts.map.keys() {
            if !c.options().contains(&k.as_str()) {
                return Err(format!("connector '{}' has no option '{k}' (its options: {})", c.name(), c.options().join(", ")));
            }
        }
        c.validate(opts, schema)?;
        Ok(c)
    }
}

/// JSON lines of rows (timestamps as `yyyy-MM-dd HH:mm:ss.SSS`), one string per row.
pub fn json_rows(b: &RecordBatch) -> Result<Vec<String>, String> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into())
            .with_datetime_format("%Y-%m-%d %H:%M:%S%.3f".into())
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        w.write(b).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The `+I[a, b]` form of each row (Flink's print format).
pub fn print_rows(b: &ChangeBatch) -> Result<Vec<String>, String> {
    let opts = arrow::util::display::FormatOptions::default().with_null("NULL");
    let cols: Vec<_> = b.rows.0.columns().iter().map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    Ok((0..b.num_rows())
        .map(|i| format!("{}[{}]", b.kind(i).short(), cols.iter().map(|c| c.value(i).to_string()).collect::<Vec<_>>().join(", ")))
        .collect())
}

fn raw_rows(b: ChangeBatch, out: &mut weir::Collector<'_, Box<RawValue>>) {
    match json_rows(&b.rows.0) {
        Ok(rows) => {
            for r in rows {
                match RawValue::from_string(r) {
                    Ok(v) => out.emit(v),
                    Err(e) => panic!("SQL sink: {e}"),
                }
            }
        }
        Err(e) => panic!("SQL sink: cannot write rows as JSON: {e}"),
    }
}

fn apply_sink<S: Sink<Box<RawValue>> + 'static>(args: SinkArgs<'_>, factory: impl Fn(&weir::connector::SinkContext) -> S + 'static) {
    let rows = args.stream.flat_map(raw_rows).uid(&format!("{}-rows", args.uid)).name(&format!("{}: to JSON", args.name));
    let rows = match args.parallelism {
        Some(p) => rows.parallelism(p),
        None => rows,
    };
    let h = rows.sink(args.name, factory).uid(args.uid);
    if let Some(p) = args.parallelism {
        h.parallelism(p);
    }
}

/// `filesystem`: `'path'`, `'format' = 'json'` (JSON lines). As a source it reads
/// the file (or every file of the directory) once; as a sink it writes the
/// exactly-once bucketing file sink when the path is a directory (ends with `/` or
/// exists as one), else one JSON-lines file.
pub struct Filesystem;

impl Connector for Filesystem {
    fn name(&self) -> &str {
        "filesystem"
    }
    fn options(&self) -> &[&str] {
        &["path", "format", "source.batch-rows"]
    }
    fn validate(&self, opts: &TableOptions, _schema: &SchemaRef) -> Result<(), String> {
        opts.required("path")?;
        match opts.required("format")? {
            "json" => Ok(()),
            other => Err(format!("connector 'filesystem': option 'format' = '{other}' is not supported (supported: json)")),
        }
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        let path = PathBuf::from(opts.required("path")?);
        let batch_rows: usize = opts.parse("source.batch-rows")?.unwrap_or(1024);
        Ok(Arc::new(move |_ctx: &SourceContext| Box::new(JsonFileSource::new(path.clone(), schema.clone(), batch_rows)) as Box<dyn BatchSource>))
    }
    fn bounded(&self, _opts: &TableOptions) -> bool {
        true
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::AppendOnly)
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let path = opts.required("path")?.to_string();
        if path.ends_with('/') || std::path::Path::new(&path).is_dir() {
            apply_sink(args, move |_| ExactlyOnceFileSink::new(&path));
        } else {
            apply_sink(args, move |_| JsonLinesSink::new(&path));
        }
        Ok(())
    }
}

/// Reads JSON lines into batches of the table's physical schema; the files of the
/// path are read by subtask 0 in name order; the position (file, line) is checkpointed.
pub struct JsonFileSource {
    path: PathBuf,
    schema: SchemaRef,
    batch_rows: usize,
    files: Vec<PathBuf>,
    file: usize,
    line: u64,
    skip: (usize, u64),
    reader: Option<Box<dyn BufRead + Send>>,
    owns: Option<bool>,
    buf: String,
}

impl JsonFileSource {
    pub fn new(path: PathBuf, schema: SchemaRef, batch_rows: usize) -> Self {
        JsonFileSource { path, schema, batch_rows: batch_rows.max(1), files: Vec::new(), file: 0, line: 0, skip: (0, 0), reader: None, owns: None, buf: String::new() }
    }

    fn decode(&self, lines: &[(u64, String)]) -> Result<RecordBatch, ConnectorError> {
        let mut d = arrow::json::ReaderBuilder::new(self.schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()))?;
        for (n, l) in lines {
            let r = d.decode(l.as_bytes()).and_then(|_| d.decode(b"\n"));
            if let Err(e) = r {
                return Err(ConnectorError::Parse { what: self.files[self.file].display().to_string(), line: *n, message: e.to_string() });
            }
        }
        match d.flush() {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Ok(RecordBatch::new_empty(self.schema.clone())),
            Err(e) => {
                // find the line
                for (n, l) in lines {
                    let mut one = arrow::json::ReaderBuilder::new(self.schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()))?;
                    if let Err(e) = one.decode(l.as_bytes()).and_then(|_| one.flush()) {
                        return Err(ConnectorError::Parse { what: self.files[self.file].display().to_string(), line: *n, message: e.to_string() });
                    }
                }
                Err(ConnectorError::Other(format!("{}: {e}", self.path.display())))
            }
        }
    }
}

impl BatchSource for JsonFileSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        if !self.owns.unwrap_or(ctx.subtask == 0) {
            return Ok(());
        }
        self.owns = Some(true);
        self.files = if self.path.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&self.path)
                .map_err(|e| ConnectorError::io(format!("cannot list {}", self.path.display()), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            v.sort();
            v
        } else {
            vec![self.path.clone()]
        };
        self.file = self.skip.0;
        Ok(())
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if self.owns != Some(true) {
            return Ok(None);
        }
        let mut lines = Vec::new();
        let want = max_rows.min(self.batch_rows);
        while lines.len() < want {
            if self.file >= self.files.len() {
                break;
            }
            if self.reader.is_none() {
                let p = &self.files[self.file];
                let f = std::fs::File::open(p).map_err(|e| ConnectorError::io(format!("cannot open {}", p.display()), e))?;
                self.reader = Some(Box::new(BufReader::new(f)));
                self.line = 0;
            }
            self.buf.clear();
            let n = self.reader.as_mut().expect("opened").read_line(&mut self.buf).map_err(|e| ConnectorError::io(format!("reading {}", self.files[self.file].display()), e))?;
            if n == 0 {
                if !lines.is_empty() {
                    break; // decode this file's lines first (errors name the file)
                }
                self.reader = None;
                self.file += 1;
                continue;
            }
            self.line += 1;
            if self.file == self.skip.0 && self.line <= self.skip.1 {
                continue;
            }
            let l = self.buf.trim();
            if !l.is_empty() {
                lines.push((self.line, l.to_string()));
            }
        }
        if lines.is_empty() {
            return Ok(None);
        }
        self.decode(&lines).map(Some)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        if self.owns != Some(true) {
            return Ok(Vec::new());
        }
        let pos = if self.file == self.skip.0 { (self.file as u64, self.line.max(self.skip.1)) } else { (self.file as u64, self.line) };
        let mut b = pos.0.to_le_bytes().to_vec();
        b.extend_from_slice(&pos.1.to_le_bytes());
        Ok(vec![b])
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.owns = Some(!splits.is_empty());
        if let Some(s) = splits.first() {
            if s.len() != 16 {
                return Err(ConnectorError::Other("bad filesystem source position in the checkpoint".into()));
            }
            let f = u64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
            let l = u64::from_le_bytes(s[8..].try_into().expect("8 bytes"));
            self.skip = (f as usize, l);
        }
        Ok(())
    }
}

/// `datagen`: `'number-of-rows'` (bounded; unbounded without), `'rows-per-second'`.
/// Row `n` has `n` in integer columns, `n` as text in string columns, `n` ms in
/// timestamp columns, `n` in floats and `n % 2 = 0` in booleans: deterministic, so
/// results are checkable; the sequence splits make it rescalable.
pub struct Datagen;

impl Connector for Datagen {
    fn name(&self) -> &str {
        "datagen"
    }
    fn options(&self) -> &[&str] {
        &["number-of-rows", "rows-per-second"]
    }
    fn bounded(&self, opts: &TableOptions) -> bool {
        opts.get("number-of-rows").is_some()
    }
    fn validate(&self, opts: &TableOptions, _schema: &SchemaRef) -> Result<(), String> {
        opts.parse::<u64>("number-of-rows")?;
        opts.parse::<u64>("rows-per-second")?;
        Ok(())
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        let rows = opts.parse::<u64>("number-of-rows")?;
        let rate = opts.parse::<u64>("rows-per-second")?;
        for f in schema.fields() {
            let ok = matches!(f.data_type(), DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64 | DataType::Utf8 | DataType::Boolean | DataType::Timestamp(_, _) | DataType::Decimal128(_, _));
            if !ok {
                return Err(format!("connector 'datagen' cannot generate column '{}' of type {}", f.name(), f.data_type()));
            }
        }
        Ok(Arc::new(move |ctx: &SourceContext| {
            Box::new(DatagenSource { splits: SequenceSplits::initial(ctx.subtask, ctx.parallelism, rows), pacer: weir::connector::sequence::Pacer::new(rate, ctx.parallelism), schema: schema.clone() }) as Box<dyn BatchSource>
        }))
    }
}

struct DatagenSource {
    splits: SequenceSplits,
    pacer: weir::connector::sequence::Pacer,
    schema: SchemaRef,
}

impl BatchSource for DatagenSource {
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if self.splits.is_finished() {
            return Ok(None);
        }
        let budget = self.pacer.budget(max_rows.min(1024) as u64);
        let mut ns = Vec::new();
        self.splits.take_run(budget, |n| ns.push(n as i64));
        self.pacer.produced(ns.len() as u64);
        if ns.is_empty() && self.splits.is_finished() {
            return Ok(None);
        }
        let base = Int64Array::from(ns.clone());
        let cols = self
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Ok(Arc::new(StringArray::from(ns.iter().map(|n| n.to_string()).collect::<Vec<_>>())) as arrow::array::ArrayRef),
                DataType::Boolean => Ok(Arc::new(arrow::array::BooleanArray::from(ns.iter().map(|n| n % 2 == 0).collect::<Vec<_>>())) as arrow::array::ArrayRef),
                DataType::Timestamp(_, _) => cast(&cast(&base, &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None))?, f.data_type()),
                dt => cast(&base, dt),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConnectorError::Other(e.to_string()))?;
        RecordBatch::try_new(self.schema.clone(), cols).map(Some).map_err(|e| ConnectorError::Other(e.to_string()))
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.splits.snapshot())
    }
    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.splits.restore(splits)
    }
    fn redistribution(&self) -> weir::checkpoint::restore::Redistribution {
        weir::checkpoint::restore::Redistribution::Union
    }
}

/// `print`: rows as `+I[a, b]` on standard output (accepts changelogs).
pub struct Print;

struct PrintSink {
    prefix: String,
}

impl Sink<ChangeBatch> for PrintSink {
    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for r in batch {
            for line in print_rows(&r.value).map_err(ConnectorError::Other)? {
                writeln!(out, "{}{line}", self.prefix).map_err(|e| ConnectorError::io("stdout", e))?;
            }
        }
        Ok(())
    }
}

impl Connector for Print {
    fn name(&self) -> &str {
        "print"
    }
    fn options(&self) -> &[&str] {
        &["print-identifier"]
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::All)
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let prefix = opts.get("print-identifier").map(|p| format!("{p}> ")).unwrap_or_default();
        let h = args.stream.sink(args.name, move |_| PrintSink { prefix: prefix.clone() }).uid(args.uid);
        if let Some(p) = args.parallelism {
            h.parallelism(p);
        }
        Ok(())
    }
}

/// `blackhole`: discards everything (accepts changelogs).
pub struct Blackhole;

impl Connector for Blackhole {
    fn name(&self) -> &str {
        "blackhole"
    }
    fn options(&self) -> &[&str] {
        &[]
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::All)
    }
    fn add_sink(&self, _opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let h = args.stream.sink(args.name, |_| BlackholeSink::default()).uid(args.uid);
        if let Some(p) = args.parallelism {
            h.parallelism(p);
        }
        Ok(())
    }
}
