//! The Kafka sink: rows encoded by the table's formats and handed to the client's
//! producer (which batches and sends them on its own threads).
//!
//! - **at-least-once** (`sink.delivery-guarantee` default): at every checkpoint barrier
//!   (`pre_commit`) the producer is flushed and the barrier passes only once every
//!   record sent before it is acknowledged by the broker (`acks=all`, idempotent
//!   producer); a record that fails delivery fails the job, naming the topic and the
//!   error. After a restore the records sent since the last checkpoint are sent again:
//!   duplicates, never loss.
//! - **none**: records are sent and not waited for (a failure still fails the job when
//!   it is reported).
//! - `upsert-kafka`: `+I`/`+U` write the value, `-D` a tombstone (a null value) for
//!   the key, `-U` is skipped; the key is the PRIMARY KEY.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use rdkafka::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use weir::connector::{ConnectorError, Sink, SinkContext};
use weir::record::Rec;

use super::format;
use super::metrics::SinkMetrics;
use super::options::{Delivery, KafkaOptions, Meta, Partitioner};
use crate::changelog::{ChangeBatch, RowKind};

/// The producer's context: counts acknowledged records and keeps the first failure.
pub struct SinkClient {
    table: String,
    failure: Mutex<Option<String>>,
    failed: std::sync::atomic::AtomicBool,
    acked: AtomicU64,
    metrics: SinkMetrics,
}

impl ClientContext for SinkClient {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(table = %self.table, %error, reason, "Kafka producer error");
    }
}

impl ProducerContext for SinkClient {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.metrics.delivered(m.payload_len() + m.key().map_or(0, |k| k.len()));
            }
            Err((e, m)) => {
                let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                if f.is_none() {
                    *f = Some(format!("delivering a record to topic '{}' partition {} failed: {e}", m.topic(), m.partition()));
                }
                self.failed.store(true, Ordering::Release);
            }
        }
    }
}

/// The sink of one subtask.
pub struct KafkaSink {
    opts: Arc<KafkaOptions>,
    topic: String,
    upsert: bool,
    producer: Option<ThreadedProducer<SinkClient>>,
    subtask: u32,
    partitions: i32,
    next_partition: u32,
    /// the `timestamp` metadata column written as the record's time
    timestamp_col: Option<usize>,
    sent: u64,
}

impl KafkaSink {
    /// The sink writing `topic` (the table's [`KafkaOptions::sink_topic`]).
    pub fn new(opts: Arc<KafkaOptions>, topic: String, upsert: bool) -> Self {
        let timestamp_col = opts.metadata.iter().find(|m| m.key == Meta::Timestamp && !m.is_virtual).map(|m| m.column);
        KafkaSink { opts, topic, upsert, producer: None, subtask: 0, partitions: 0, next_partition: 0, timestamp_col, sent: 0 }
    }

    fn err(&self, what: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Other(format!("connector '{}', table '{}', topic '{}': {what}", self.opts.connector, self.opts.table, self.topic))
    }

    fn producer(&self) -> Result<&ThreadedProducer<SinkClient>, ConnectorError> {
        self.producer.as_ref().ok_or_else(|| self.err("the sink is not open"))
    }

    /// A delivery failure reported so far fails the job.
    fn check(&self) -> Result<(), ConnectorError> {
        let p = self.producer()?;
        if p.context().failed.load(Ordering::Acquire) {
            let f = p.context().failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(self.err(f.unwrap_or_else(|| "a delivery failed".into())));
        }
        Ok(())
    }

    /// Waits until every record sent is acknowledged (or fails, or the flush timeout passes).
    fn flush_all(&self) -> Result<(), ConnectorError> {
        let p = self.producer()?;
        let started = Instant::now();
        if let Err(e) = p.flush(self.opts.flush_timeout) {
            return Err(self.err(format!("{} records not acknowledged within 'sink.flush-timeout' = {:?}: {e}", p.in_flight_count(), self.opts.flush_timeout)));
        }
        self.check()?;
        tracing::debug!(table = %self.opts.table, subtask = self.subtask, sent = self.sent, acked = p.context().acked.load(Ordering::Relaxed), elapsed = ?started.elapsed(), "Kafka sink flushed");
        Ok(())
    }

    fn send(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, ts: Option<i64>) -> Result<(), ConnectorError> {
        let partition = match self.opts.partitioner {
            Partitioner::Default => None,
            Partitioner::Fixed => Some((self.subtask as i32) % self.partitions.max(1)),
            Partitioner::RoundRobin => {
                self.next_partition = self.next_partition.wrapping_add(1);
                Some((self.next_partition % self.partitions.max(1) as u32) as i32)
            }
        };
        let p = self.producer.as_ref().ok_or_else(|| ConnectorError::Other("the Kafka sink is not open".into()))?;
        let mut rec: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(&self.topic);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        if let Some(pt) = partition {
            rec = rec.partition(pt);
        }
        if let Some(t) = ts {
            rec = rec.timestamp(t);
        }
        let mut waited = Duration::ZERO;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                    // the client's queue is full: wait for acknowledgements (backpressure)
                    if waited >= self.opts.flush_timeout {
                        return Err(self.err(format!("the producer queue stayed full for {waited:?}")));
                    }
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                    waited += Duration::from_millis(1);
                }
                Err((e, _)) => return Err(self.err(format!("sending a record: {e}"))),
            }
        }
        self.sent += 1;
        Ok(())
    }
}

/// The record times of a `timestamp` column (ms), if any.
fn times(col: &ArrayRef) -> Result<TimestampMillisecondArray, String> {
    let c = arrow::compute::cast(col, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| e.to_string())?;
    c.as_any().downcast_ref::<TimestampMillisecondArray>().cloned().ok_or_else(|| "timestamp column".to_string())
}

impl Sink<ChangeBatch> for KafkaSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        self.subtask = ctx.subtask;
        if self.opts.delivery == Delivery::ExactlyOnce {
            return Err(self.err(super::EXACTLY_ONCE_UNSUPPORTED));
        }
        let mut cfg = self.opts.client_config().map_err(|e| self.err(e))?;
        if !self.opts.properties.contains_key("client.id") {
            cfg.set("client.id", format!("weir-{}-sink-{}", self.opts.table, ctx.subtask));
        }
        if self.opts.delivery == Delivery::AtLeastOnce {
            // every in-sync replica has it before it counts as delivered; no duplicates from the client's own retries
            if !self.opts.properties.contains_key("acks") {
                cfg.set("acks", "all");
            }
            if !self.opts.properties.contains_key("enable.idempotence") {
                cfg.set("enable.idempotence", "true");
            }
        }
        // keys hash to partitions as the Java client hashes them (murmur2)
        if !self.opts.properties.contains_key("partitioner") {
            cfg.set("partitioner", "murmur2_random");
        }
        let client =
            SinkClient { table: self.opts.table.clone(), failure: Mutex::new(None), failed: Default::default(), acked: AtomicU64::new(0), metrics: SinkMetrics::new(&self.opts.table, &self.topic) };
        let producer: ThreadedProducer<SinkClient> = cfg.create_with_context(client).map_err(|e| self.err(format!("cannot create the Kafka producer: {e}")))?;
        if matches!(self.opts.partitioner, Partitioner::Fixed | Partitioner::RoundRobin) {
            let md = producer.client().fetch_metadata(Some(&self.topic), Duration::from_secs(30)).map_err(|e| self.err(format!("listing the partitions: {e}")))?;
            self.partitions = md.topics().first().map_or(0, |t| t.partitions().len() as i32);
            if self.partitions == 0 {
                return Err(self.err("the topic has no partitions (does it exist?)"));
            }
        }
        self.producer = Some(producer);
        Ok(())
    }

    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        self.check()?;
        let opts = self.opts.clone();
        for r in batch {
            let b: &RecordBatch = &r.value.rows.0;
            if b.num_rows() == 0 {
                continue;
            }
            let project = |cols: &[usize]| b.project(cols).map_err(|e| self.err(e));
            let values =
                if opts.value_columns.is_empty() { None } else { Some(format::encode(&opts.value_format, &project(&opts.value_columns)?).map_err(|e| self.err(format!("encoding values: {e}")))?) };
            let keys = match &opts.key_format {
                Some(f) => Some(
                    format::encode(f, &RecordBatch::try_new(opts.key_schema(), project(&opts.key_columns)?.columns().to_vec()).map_err(|e| self.err(e))?)
                        .map_err(|e| self.err(format!("encoding keys: {e}")))?,
                ),
                None => None,
            };
            let ts = match self.timestamp_col {
                Some(c) => Some(times(b.column(c)).map_err(|e| self.err(e))?),
                None => None,
            };
            for i in 0..b.num_rows() {
                let kind = r.value.kind(i);
                let value = match (self.upsert, kind) {
                    (_, RowKind::Insert | RowKind::UpdateAfter) => values.as_ref().and_then(|v| v.get(i)),
                    // the +U after it overwrites the key
                    (true, RowKind::UpdateBefore) => continue,
                    (true, RowKind::Delete) => None,
                    (false, k) => return Err(self.err(format!("a {} row reached the append-only Kafka sink (use 'upsert-kafka' for updating queries)", k.short()))),
                };
                let key = keys.as_ref().and_then(|k| k.get(i));
                let t = ts.as_ref().and_then(|t| t.is_valid(i).then(|| t.value(i)));
                self.send(key, value, t)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConnectorError> {
        self.check()
    }

    fn pre_commit(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        match self.opts.delivery {
            Delivery::None => self.check()?,
            _ => self.flush_all()?,
        }
        Ok(None)
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Some(p) = &self.producer {
            // what is still queued gets a moment to go out (delivery is only promised at barriers)
            let _ = p.flush(Duration::from_secs(5));
        }
    }
}
