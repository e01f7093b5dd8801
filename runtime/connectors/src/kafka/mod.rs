//! `kafka` and `upsert-kafka`: tables of Kafka topics, after Flink's connectors (the
//! same option names), on rdkafka with its bundled librdkafka.
//!
//! One module per responsibility: [`options`] (the options, parsed and checked),
//! [`assign`] (which subtask reads which partition; checkpointed positions and
//! rescales), [`source`] (the source), [`sink`] (the at-least-once sink, and
//! upserts), [`format`] (keys and values in the `filesystem` connector's formats),
//! [`metrics`] (records, bytes and consumer lag per partition in `GET /metrics`).
//! See `docs/connectors.md` ("Kafka").

pub mod assign;
pub mod format;
pub mod metrics;
pub mod options;
pub mod sink;
pub mod source;

/// The Kafka client the connector uses (for tests and tools that produce or read topics).
pub use rdkafka;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use weir::connector::SourceContext;

use crate::changelog::ChangeBatch;
use crate::registry::{BatchSource, ChangelogMode, Connector, SinkArgs, SourceFactory, TableOptions};
use options::{Delivery, KafkaOptions};

/// Why `'sink.delivery-guarantee' = 'exactly-once'` is refused (see docs/connectors.md).
pub const EXACTLY_ONCE_UNSUPPORTED: &str = "'sink.delivery-guarantee' = 'exactly-once' is not supported: a transaction left open at a checkpoint must be committed after a restore, and librdkafka (the client) cannot resume another producer's transaction (its init_transactions aborts it), so a failure between a checkpoint and its commit would lose that checkpoint's records; use 'at-least-once' (the default), or 'upsert-kafka' whose replays overwrite the same keys";

/// The connector: `kafka` (append-only source and sink) or `upsert-kafka` (a sink of
/// changelogs by primary key).
pub struct Kafka {
    upsert: bool,
}

impl Kafka {
    /// `'connector' = 'kafka'`.
    pub fn new() -> Self {
        Kafka { upsert: false }
    }
    /// `'connector' = 'upsert-kafka'`.
    pub fn upsert() -> Self {
        Kafka { upsert: true }
    }
}

impl Default for Kafka {
    fn default() -> Self {
        Self::new()
    }
}

/// The key group of a row for the upsert sink's shuffle: every change of a key is
/// written by one subtask, in order.
fn by_key(key_columns: &[usize], b: ChangeBatch, out: &mut weir::Collector<'_, (u64, ChangeBatch)>) {
    const GROUPS: u64 = 1 << 10;
    let rows = &b.rows.0;
    let cols: Vec<arrow::array::ArrayRef> = key_columns.iter().map(|c| rows.column(*c).clone()).collect();
    let fields: Vec<arrow::row::SortField> = cols.iter().map(|c| arrow::row::SortField::new(c.data_type().clone())).collect();
    let keys = arrow::row::RowConverter::new(fields).and_then(|conv| conv.convert_columns(&cols)).unwrap_or_else(|e| panic!("upsert-kafka sink: keys: {e}"));
    let mut groups: std::collections::BTreeMap<u64, Vec<u32>> = std::collections::BTreeMap::new();
    for i in 0..rows.num_rows() {
        let mut h: u64 = 0xcbf29ce484222325;
        for x in keys.row(i).as_ref() {
            h ^= *x as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        groups.entry(h % GROUPS).or_default().push(i as u32);
    }
    if groups.len() == 1 {
        if let Some((g, _)) = groups.into_iter().next() {
            out.emit((g, b));
        }
        return;
    }
    for (g, idx) in groups {
        let idx = arrow::array::UInt32Array::from(idx);
        let part = arrow::compute::take_record_batch(rows, &idx).unwrap_or_else(|e| panic!("upsert-kafka sink: {e}"));
        let kinds = b.kinds.as_ref().map(|kinds| idx.values().iter().map(|i| kinds[*i as usize]).collect());
        out.emit((g, ChangeBatch { rows: weir::arrow::ArrowBatch(part), kinds }));
    }
}

impl Connector for Kafka {
    fn name(&self) -> &str {
        if self.upsert { "upsert-kafka" } else { "kafka" }
    }
    fn options(&self) -> &[&str] {
        options::OPTIONS
    }
    fn accepts_option(&self, key: &str) -> bool {
        options::is_option(key)
    }
    fn metadata(&self) -> &[&str] {
        options::METADATA
    }
    fn validate(&self, opts: &TableOptions, schema: &SchemaRef) -> Result<(), String> {
        let k = KafkaOptions::parse(opts, schema)?;
        if k.delivery == Delivery::ExactlyOnce {
            return Err(format!("connector '{}': option {EXACTLY_ONCE_UNSUPPORTED}", self.name()));
        }
        Ok(())
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        if self.upsert {
            return Err("reading an 'upsert-kafka' table is not supported yet (it can be written; read its topic with 'kafka' as an append-only stream)".into());
        }
        let k = Arc::new(KafkaOptions::parse(opts, &schema)?);
        Ok(Arc::new(move |_ctx: &SourceContext| Box::new(source::KafkaSource::new(k.clone())) as Box<dyn BatchSource>))
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(if self.upsert { ChangelogMode::All } else { ChangelogMode::AppendOnly })
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let k = Arc::new(KafkaOptions::parse(opts, &args.schema)?);
        let topic = k.sink_topic()?.to_string();
        if k.delivery == Delivery::ExactlyOnce {
            return Err(format!("connector '{}': option {EXACTLY_ONCE_UNSUPPORTED}", self.name()));
        }
        let upsert = self.upsert;
        let parallelism = k.sink_parallelism.or(args.parallelism);
        let make = {
            let k = k.clone();
            move |_: &weir::connector::SinkContext| sink::KafkaSink::new(k.clone(), topic.clone(), upsert)
        };
        let h = if upsert {
            // every change of a key through one subtask, in order
            let key_columns = k.key_columns.clone();
            let split = args.stream.flat_map(move |b, out| by_key(&key_columns, b, out)).uid(&format!("{}-keys", args.uid)).name(&format!("{}: by key", args.name));
            let split = match parallelism {
                Some(n) => split.parallelism(n),
                None => split,
            };
            let routed = split
                .key_by(|r: &(u64, ChangeBatch)| r.0)
                .process(|r: (u64, ChangeBatch), ctx: &mut weir::KeyedContext<'_, u64, ChangeBatch>| ctx.emit(r.1))
                .uid(&format!("{}-shuffle", args.uid))
                .name(&format!("{}: key shuffle", args.name));
            let routed = match parallelism {
                Some(n) => routed.parallelism(n),
                None => routed,
            };
            routed.sink(args.name, make).uid(args.uid)
        } else {
            args.stream.sink(args.name, make).uid(args.uid)
        };
        if let Some(p) = parallelism {
            h.parallelism(p);
        }
        Ok(())
    }
}
