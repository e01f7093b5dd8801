//! The Kafka source: each subtask reads the partitions it owns ([`super::assign`]),
//! assigned to its consumer with `assign` (no group rebalancing), from the offsets of
//! the checkpoint it was restored from or else from the table's startup mode; the
//! next offset of every partition is its checkpointed position. Partitions are
//! listed again every `scan.topic-partition-discovery.interval`: new ones (of the
//! topics, or of new topics matching `topic-pattern`) are read from their earliest
//! offset. When a checkpoint completes, the offsets it holds are committed to
//! `properties.group.id` (if set), for lag monitoring only: restores never read them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, BinaryBuilder, Int32Array, Int64Array, MapBuilder, RecordBatch, StringArray, StringBuilder, TimestampMillisecondArray};
use arrow::datatypes::DataType;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use weir::checkpoint::restore::Redistribution;
use weir::connector::{ConnectorError, SourceContext};

use super::assign::{self, Tp};
use super::format::{self, At};
use super::metrics::SourceMetrics;
use super::options::{KafkaOptions, Meta, Startup, Topics};
use crate::registry::BatchSource;

/// Timeout of metadata, offset and watermark requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The consumer's context: logs errors and commit failures, and keeps the high
/// watermarks the client's statistics report (for the lag metric).
pub struct SourceClient {
    table: String,
    metrics: Arc<SourceMetrics>,
}

impl ClientContext for SourceClient {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(table = %self.table, %error, reason, "Kafka consumer error");
    }
    fn stats(&self, s: rdkafka::Statistics) {
        for (topic, t) in &s.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.hi_offset >= 0 {
                    self.metrics.high_watermark(topic, *p, part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for SourceClient {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(table = %self.table, error = %e, partitions = offsets.count(), "committing offsets to the consumer group failed (the checkpoint holds them; only monitoring sees the older ones)");
        }
    }
}

/// The split id of a partition (for per-partition watermarks).
fn split_id(topic: &str, partition: i32) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in topic.as_bytes().iter().chain(&partition.to_le_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// One assigned partition.
struct Assigned {
    topic: String,
    partition: i32,
    next: i64,
}

/// The source of one subtask.
pub struct KafkaSource {
    opts: Arc<KafkaOptions>,
    ctx: Option<SourceContext>,
    consumer: Option<BaseConsumer<SourceClient>>,
    /// the partitions read, with their next offsets (sorted by topic, partition)
    assigned: Vec<Assigned>,
    /// by (topic, partition): index into `assigned`
    index: HashMap<(String, i32), usize>,
    /// every partition listed so far (of any subtask): one not in it is new
    known: BTreeSet<Tp>,
    /// restored positions of all subtasks (Union), until open
    restored: Option<BTreeMap<Tp, i64>>,
    last_discovery: Instant,
    /// snapshotted positions by checkpoint, committed when it completes
    pending: VecDeque<(u64, BTreeMap<Tp, i64>)>,
    metrics: Arc<SourceMetrics>,
    /// decoded batches not returned yet: (index into `assigned`, batch, next offset)
    ready: VecDeque<(usize, RecordBatch, i64)>,
    /// the split ids of `assigned`, and the split of the last batch returned
    live: Vec<u64>,
    current: Option<u64>,
    value_schema: arrow::datatypes::SchemaRef,
    key_schema: arrow::datatypes::SchemaRef,
}

impl KafkaSource {
    pub fn new(opts: Arc<KafkaOptions>) -> Self {
        let metrics = SourceMetrics::new(&opts.table);
        let (value_schema, key_schema) = (opts.value_schema(), opts.key_schema());
        KafkaSource {
            opts,
            ctx: None,
            consumer: None,
            assigned: Vec::new(),
            index: HashMap::new(),
            known: BTreeSet::new(),
            restored: None,
            last_discovery: Instant::now(),
            pending: VecDeque::new(),
            metrics,
            ready: VecDeque::new(),
            live: Vec::new(),
            current: None,
            value_schema,
            key_schema,
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Other(format!("connector '{}', table '{}': {what}", self.opts.connector, self.opts.table))
    }

    fn consumer(&self) -> Result<&BaseConsumer<SourceClient>, ConnectorError> {
        self.consumer.as_ref().ok_or_else(|| self.err("the source is not open"))
    }

    /// The partitions of the table's topics now, sorted.
    fn list_partitions(&self) -> Result<BTreeSet<Tp>, ConnectorError> {
        let c = self.consumer()?;
        let mut out = BTreeSet::new();
        let one = |name: &str, out: &mut BTreeSet<Tp>| -> Result<(), ConnectorError> {
            let md = c.fetch_metadata(Some(name), REQUEST_TIMEOUT).map_err(|e| self.err(format!("listing the partitions of topic '{name}': {e}")))?;
            for t in md.topics() {
                if let Some(e) = t.error() {
                    return Err(self.err(format!("topic '{name}': {:?} (does it exist?)", rdkafka::error::RDKafkaErrorCode::from(e))));
                }
                for p in t.partitions() {
                    out.insert(Tp { topic: t.name().to_string(), partition: p.id() });
                }
            }
            Ok(())
        };
        match &self.opts.topics {
            Topics::List(v) => {
                for t in v {
                    one(t, &mut out)?;
                }
            }
            Topics::Pattern(_) => {
                let md = c.fetch_metadata(None, REQUEST_TIMEOUT).map_err(|e| self.err(format!("listing topics: {e}")))?;
                for t in md.topics() {
                    if self.opts.topics.matches(t.name()) && t.error().is_none() {
                        for p in t.partitions() {
                            out.insert(Tp { topic: t.name().to_string(), partition: p.id() });
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where to start `tps` (partitions without a checkpointed offset, present at
    /// startup): by the startup mode, as concrete offsets (so a checkpoint taken
    /// before the first record holds them).
    fn startup_offsets(&self, tps: &[Tp]) -> Result<BTreeMap<Tp, i64>, ConnectorError> {
        let c = self.consumer()?;
        let mut out = BTreeMap::new();
        let wm = |tp: &Tp| c.fetch_watermarks(&tp.topic, tp.partition, REQUEST_TIMEOUT).map_err(|e| self.err(format!("offsets of topic '{}' partition {}: {e}", tp.topic, tp.partition)));
        let group = |tps: &[Tp], out: &mut BTreeMap<Tp, i64>| -> Result<(), ConnectorError> {
            if tps.is_empty() {
                return Ok(());
            }
            let mut tpl = TopicPartitionList::new();
            for tp in tps {
                tpl.add_partition(&tp.topic, tp.partition);
            }
            let committed = match &self.opts.group_id {
                Some(_) => c.committed_offsets(tpl, REQUEST_TIMEOUT).map_err(|e| self.err(format!("committed offsets of group '{}': {e}", self.opts.group_id.as_deref().unwrap_or_default())))?,
                None => TopicPartitionList::new(),
            };
            for tp in tps {
                let off = committed.find_partition(&tp.topic, tp.partition).map(|e| e.offset());
                let v = match off {
                    Some(Offset::Offset(n)) => n,
                    _ => match self.opts.properties.get("auto.offset.reset").map(String::as_str) {
                        Some("earliest" | "smallest" | "beginning") => wm(tp)?.0,
                        Some("latest" | "largest" | "end") => wm(tp)?.1,
                        _ => {
                            return Err(self.err(format!(
                                "no committed offset for topic '{}' partition {} in group '{}': set 'scan.startup.mode' or 'properties.auto.offset.reset' ('earliest' or 'latest')",
                                tp.topic,
                                tp.partition,
                                self.opts.group_id.as_deref().unwrap_or("(no properties.group.id)")
                            )));
                        }
                    },
                };
                out.insert(tp.clone(), v);
            }
            Ok(())
        };
        match &self.opts.startup {
            Startup::Earliest => {
                for tp in tps {
                    out.insert(tp.clone(), wm(tp)?.0);
                }
            }
            Startup::Latest => {
                for tp in tps {
                    out.insert(tp.clone(), wm(tp)?.1);
                }
            }
            Startup::GroupOffsets => group(tps, &mut out)?,
            Startup::Specific(m) => {
                let (given, rest): (Vec<Tp>, Vec<Tp>) = tps.iter().cloned().partition(|tp| m.contains_key(&tp.partition));
                for tp in given {
                    let o = m[&tp.partition];
                    out.insert(tp, o);
                }
                group(&rest, &mut out)?;
            }
            Startup::Timestamp(ts) => {
                let mut tpl = TopicPartitionList::new();
                for tp in tps {
                    tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*ts)).map_err(|e| self.err(e))?;
                }
                let r = c.offsets_for_times(tpl, REQUEST_TIMEOUT).map_err(|e| self.err(format!("offsets for timestamp {ts}: {e}")))?;
                for tp in tps {
                    let v = match r.find_partition(&tp.topic, tp.partition).map(|e| e.offset()) {
                        Some(Offset::Offset(n)) => n,
                        // no record at or after the time: from the end
                        _ => wm(tp)?.1,
                    };
                    out.insert(tp.clone(), v);
                }
            }
        }
        Ok(out)
    }

    /// Assigns the partitions (all of them, at their next offsets) to the consumer.
    fn reassign(&mut self) -> Result<(), ConnectorError> {
        self.assigned.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.index = self.assigned.iter().enumerate().map(|(i, a)| ((a.topic.clone(), a.partition), i)).collect();
        self.live = self.assigned.iter().map(|a| split_id(&a.topic, a.partition)).collect();
        let mut tpl = TopicPartitionList::new();
        for a in &self.assigned {
            tpl.add_partition_offset(&a.topic, a.partition, Offset::Offset(a.next)).map_err(|e| self.err(e))?;
        }
        self.consumer()?.assign(&tpl).map_err(|e| self.err(format!("assigning partitions: {e}")))?;
        for a in &self.assigned {
            self.metrics.position(&a.topic, a.partition, a.next);
        }
        tracing::info!(table = %self.opts.table, subtask = self.ctx.as_ref().map_or(0, |c| c.subtask), partitions = ?self.assigned.iter().map(|a| format!("{}-{}@{}", a.topic, a.partition, a.next)).collect::<Vec<_>>(), "Kafka partitions assigned");
        Ok(())
    }

    /// Lists the partitions and assigns the new ones this subtask owns.
    fn discover(&mut self) -> Result<(), ConnectorError> {
        self.last_discovery = Instant::now();
        let Some(ctx) = self.ctx.clone() else { return Ok(()) };
        let now = self.list_partitions()?;
        let new: Vec<Tp> = now.iter().filter(|tp| !self.known.contains(*tp)).cloned().collect();
        if new.is_empty() {
            return Ok(());
        }
        let mine: Vec<Tp> = new.iter().filter(|tp| assign::owner(tp, ctx.parallelism) == ctx.subtask).cloned().collect();
        self.known.extend(new);
        if mine.is_empty() {
            return Ok(());
        }
        for tp in mine {
            // a partition created while the job runs: all of it
            let low =
                self.consumer()?.fetch_watermarks(&tp.topic, tp.partition, REQUEST_TIMEOUT).map_err(|e| self.err(format!("offsets of new topic '{}' partition {}: {e}", tp.topic, tp.partition)))?.0;
            tracing::info!(table = %self.opts.table, topic = %tp.topic, partition = tp.partition, offset = low, "new Kafka partition found");
            self.assigned.push(Assigned { topic: tp.topic, partition: tp.partition, next: low });
        }
        self.reassign()
    }

    /// The next decoded batch: its partition's position moves past it (only now: a
    /// checkpoint between two calls holds the offsets of what was returned).
    fn pop_ready(&mut self) -> Option<RecordBatch> {
        let (i, batch, next) = self.ready.pop_front()?;
        let a = &mut self.assigned[i];
        a.next = next;
        self.metrics.position(&a.topic, a.partition, a.next);
        self.current = Some(self.live[i]);
        Some(batch)
    }

    fn positions(&self) -> BTreeMap<Tp, i64> {
        self.assigned.iter().map(|a| (Tp { topic: a.topic.clone(), partition: a.partition }, a.next)).collect()
    }

    /// The batch of `msgs` in the table's physical schema.
    fn to_batch(&self, msgs: &[BorrowedMessage<'_>]) -> Result<RecordBatch, ConnectorError> {
        let o = &self.opts;
        fn at<'a>(m: &'a BorrowedMessage<'_>) -> At<'a> {
            At { topic: m.topic(), partition: m.partition(), offset: m.offset() }
        }
        // json and csv values: a record without a value (a tombstone) has no row
        let skip_nulls = o.value_format != super::options::Format::Raw;
        let rows: Vec<&BorrowedMessage<'_>> = if skip_nulls { msgs.iter().filter(|m| m.payload().is_some()).collect() } else { msgs.iter().collect() };
        let n = rows.len();
        let mut columns: Vec<Option<ArrayRef>> = vec![None; o.schema.fields().len()];
        if !o.value_columns.is_empty() {
            let payloads: Vec<(Option<&[u8]>, At<'_>)> = rows.iter().map(|m| (m.payload(), at(m))).collect();
            let v = format::decode(&o.value_format, &self.value_schema, &payloads, "value")?;
            for (j, c) in o.value_columns.iter().enumerate() {
                columns[*c] = Some(v.column(j).clone());
            }
        }
        if let Some(kf) = &o.key_format {
            let missing: Vec<usize> = o.key_columns.iter().copied().filter(|c| columns[*c].is_none()).collect();
            if !missing.is_empty() {
                let payloads: Vec<(Option<&[u8]>, At<'_>)> = rows.iter().map(|m| (m.key(), at(m))).collect();
                let k = format::decode(kf, &self.key_schema, &payloads, "key")?;
                for (j, c) in o.key_columns.iter().enumerate() {
                    if columns[*c].is_none() {
                        columns[*c] = Some(k.column(j).clone());
                    }
                }
            }
        }
        for m in &o.metadata {
            let t = o.schema.field(m.column).data_type();
            let a: ArrayRef = match m.key {
                Meta::Topic => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.topic()))),
                Meta::Partition | Meta::LeaderEpoch => {
                    let v: Int32Array = rows.iter().map(|r| if m.key == Meta::Partition { Some(r.partition()) } else { None }).collect();
                    Arc::new(v)
                }
                Meta::Offset => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset()))),
                Meta::Timestamp => Arc::new(rows.iter().map(|r| r.timestamp().to_millis()).collect::<TimestampMillisecondArray>().with_timezone_opt(match t {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                })),
                Meta::TimestampType => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| match r.timestamp() {
                    rdkafka::Timestamp::CreateTime(_) => "CreateTime",
                    rdkafka::Timestamp::LogAppendTime(_) => "LogAppendTime",
                    rdkafka::Timestamp::NotAvailable => "NoTimestampType",
                }))),
                Meta::Headers => {
                    let mut b = MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new());
                    for r in &rows {
                        if let Some(h) = r.headers() {
                            for hd in h.iter() {
                                b.keys().append_value(hd.key);
                                match hd.value {
                                    Some(v) => b.values().append_value(v),
                                    None => b.values().append_null(),
                                }
                            }
                        }
                        b.append(true).map_err(|e| self.err(e))?;
                    }
                    Arc::new(b.finish())
                }
            };
            let a = if a.data_type() != t { arrow::compute::cast(&a, t).map_err(|e| self.err(format!("metadata column '{}': {e}", o.schema.field(m.column).name())))? } else { a };
            columns[m.column] = Some(a);
        }
        let cols: Vec<ArrayRef> = columns.into_iter().enumerate().map(|(i, c)| c.unwrap_or_else(|| arrow::array::new_null_array(o.schema.field(i).data_type(), n))).collect();
        RecordBatch::try_new_with_options(o.schema.clone(), cols, &arrow::array::RecordBatchOptions::new().with_row_count(Some(n))).map_err(|e| self.err(e))
    }
}

impl BatchSource for KafkaSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.ctx = Some(ctx.clone());
        let mut cfg = self.opts.client_config().map_err(|e| self.err(e))?;
        cfg.set("enable.auto.commit", "false").set("enable.auto.offset.store", "false").set("enable.partition.eof", "false");
        if !self.opts.properties.contains_key("statistics.interval.ms") {
            cfg.set("statistics.interval.ms", "5000");
        }
        if !self.opts.properties.contains_key("client.id") {
            cfg.set("client.id", format!("weir-{}-{}", self.opts.table, ctx.subtask));
        }
        // the client needs a group even to `assign`; without 'properties.group.id' a
        // private one, never committed to
        if self.opts.group_id.is_none() {
            cfg.set("group.id", format!("weir-{}-uncommitted", self.opts.table));
        }
        // a checkpointed offset gone (retention) is read from the earliest one left
        if !self.opts.properties.contains_key("auto.offset.reset") {
            cfg.set("auto.offset.reset", "earliest");
        }
        let client = SourceClient { table: self.opts.table.clone(), metrics: self.metrics.clone() };
        let consumer: BaseConsumer<SourceClient> = cfg.create_with_context(client).map_err(|e| self.err(format!("cannot create the Kafka consumer: {e}")))?;
        self.consumer = Some(consumer);
        let all = self.list_partitions()?;
        let mine: Vec<Tp> = all.iter().filter(|tp| assign::owner(tp, ctx.parallelism) == ctx.subtask).cloned().collect();
        let mut start: BTreeMap<Tp, i64> = BTreeMap::new();
        match self.restored.take() {
            Some(restored) => {
                // a partition in no checkpoint was created after it: all of it
                let owned = assign::owned(&restored, ctx.subtask, ctx.parallelism);
                let c = self.consumer()?;
                for tp in &mine {
                    let off = match owned.get(tp) {
                        Some(o) => *o,
                        None => c.fetch_watermarks(&tp.topic, tp.partition, REQUEST_TIMEOUT).map_err(|e| self.err(format!("offsets of topic '{}' partition {}: {e}", tp.topic, tp.partition)))?.0,
                    };
                    start.insert(tp.clone(), off);
                }
                // restored partitions missing from the metadata now are kept (their position stays checkpointed)
                for (tp, o) in owned {
                    start.entry(tp).or_insert(o);
                }
                self.known.extend(restored.into_keys());
            }
            None => start = self.startup_offsets(&mine)?,
        }
        self.known.extend(all);
        self.assigned = start.into_iter().map(|(tp, next)| Assigned { topic: tp.topic, partition: tp.partition, next }).collect();
        self.reassign()?;
        self.last_discovery = Instant::now();
        Ok(())
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.ready.is_empty() {
            return Ok(self.pop_ready());
        }
        if self.opts.discovery.is_some_and(|d| self.last_discovery.elapsed() >= d) {
            self.discover()?;
        }
        let Some(consumer) = self.consumer.as_ref() else { return Err(self.err("the source is not open")) };
        let mut msgs: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut timeout = if self.assigned.is_empty() { Duration::from_millis(1) } else { self.opts.poll_timeout };
        let mut bytes = 0usize;
        while msgs.len() < max_rows {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    bytes += m.payload_len() + m.key().map_or(0, |k| k.len());
                    msgs.push(m);
                }
                Some(Err(rdkafka::error::KafkaError::MessageConsumptionFatal(code))) => {
                    return Err(ConnectorError::Other(format!("connector '{}', table '{}': reading failed: {code}", self.opts.connector, self.opts.table)));
                }
                Some(Err(e)) => {
                    tracing::warn!(table = %self.opts.table, error = %e, "Kafka consumer");
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        if msgs.is_empty() {
            return Ok(Some(RecordBatch::new_empty(self.opts.schema.clone())));
        }
        self.metrics.records_in(msgs.len() as u64, bytes as u64);
        // one batch per partition (per-partition watermarks), in the order they came
        let mut groups: Vec<(usize, Vec<BorrowedMessage<'_>>)> = Vec::new();
        for m in msgs {
            let Some(i) = self.index.get(&(m.topic().to_string(), m.partition())).copied() else { continue };
            match groups.iter_mut().find(|g| g.0 == i) {
                Some(g) => g.1.push(m),
                None => groups.push((i, vec![m])),
            }
        }
        for (i, ms) in &groups {
            let next = ms.last().map_or(0, |m| m.offset() + 1);
            let batch = self.to_batch(ms)?;
            self.ready.push_back((*i, batch, next));
        }
        drop(groups);
        Ok(self.pop_ready())
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        let pos = match &self.restored {
            // restored, not open yet: what it restored
            Some(r) => r.clone(),
            None => self.positions(),
        };
        assign::encode(&pos).map_err(|e| self.err(e))
    }

    fn snapshot_for(&mut self, checkpoint_id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        let snap = self.snapshot()?;
        if self.opts.group_id.is_some() && self.consumer.is_some() {
            self.pending.push_back((checkpoint_id, self.positions()));
            // checkpoints that never complete are dropped (a later one commits past them)
            while self.pending.len() > 16 {
                self.pending.pop_front();
            }
        }
        Ok(snap)
    }

    fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), ConnectorError> {
        let mut newest = None;
        while self.pending.front().is_some_and(|(id, _)| *id <= checkpoint_id) {
            newest = self.pending.pop_front();
        }
        let (Some((id, pos)), Some(c)) = (newest, self.consumer.as_ref()) else { return Ok(()) };
        if pos.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, off) in &pos {
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*off)).map_err(|e| self.err(e))?;
        }
        // asynchronous: a failure is logged (the checkpoint, not the group, is the truth)
        if let Err(e) = c.commit(&tpl, CommitMode::Async) {
            tracing::warn!(table = %self.opts.table, checkpoint = id, error = %e, "committing offsets to the consumer group failed");
        }
        Ok(())
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        let all = assign::decode(&splits).map_err(|e| self.err(e))?;
        self.restored = Some(all);
        Ok(())
    }

    fn batch_split(&self) -> Option<(u64, &[u64])> {
        self.current.map(|c| (c, self.live.as_slice()))
    }

    fn redistribution(&self) -> Redistribution {
        Redistribution::Union
    }
}
