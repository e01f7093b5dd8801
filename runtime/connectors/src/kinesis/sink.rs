//! The sink: rows encoded in the table's format, buffered, and written with
//! PutRecords in requests of at most `sink.batch.max-size` records (500) and
//! `sink.flush-buffer.size` bytes (5 MiB, data and partition keys). A request is
//! written when the buffer holds a full one, when the oldest buffered record is
//! `sink.flush-buffer.timeout` old, and at every checkpoint barrier (`pre_commit`):
//! everything buffered is written, and every record acknowledged, before the
//! barrier passes.
//!
//! **At-least-once.** Kinesis has no transactions: records written after the last
//! completed checkpoint are written again after a restore (each record has a new
//! sequence number; consumers that need exactly-once deduplicate by a key of the
//! data). Nothing of a completed checkpoint is ever missing.
//!
//! Records a PutRecords rejects (`ProvisionedThroughputExceededException`,
//! `InternalFailure`) are sent again, alone, with backoff: throttling without bound
//! (it is backpressure, not a failure), internal failures up to `sink.max-retries`
//! times. A request failing as a whole is retried the same way; any other error
//! fails the job with the stream and the service's message.
//!
//! The partition key is the values of the `sink.partition-key` columns joined by
//! `sink.partitioner-field-delimiter` (a null is `null`; at most 256 characters, as
//! Kinesis takes), else random (spreading the records over the shards).

use std::time::Instant;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tracing::{debug, warn};
use weir::connector::{ConnectorError, Sink, SinkContext};
use weir::record::Rec;

use super::client::{KinesisClient, PutResult, backoff, entry};
use super::error::{ErrorKind, classify_code};
use super::format::encode;
use super::options::{KinesisOptions, MAX_RECORD_BYTES};
use crate::changelog::ChangeBatch;
use crate::registry::SinkArgs;

/// Kinesis' longest partition key.
const MAX_KEY_CHARS: usize = 256;

/// Adds the sink to `args.stream`.
pub fn add(o: KinesisOptions, args: SinkArgs<'_>) -> Result<(), String> {
    let h = args.stream.sink(args.name, move |_ctx| KinesisSink::new(o.clone())).uid(args.uid);
    if let Some(p) = args.parallelism {
        h.parallelism(p);
    }
    Ok(())
}

/// One buffered record.
struct Pending {
    data: Vec<u8>,
    key: String,
}

impl Pending {
    fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

/// The sink of one subtask.
pub struct KinesisSink {
    o: KinesisOptions,
    client: Option<KinesisClient>,
    buf: Vec<Pending>,
    buf_bytes: usize,
    oldest: Option<Instant>,
    rng: u64,
    /// records written (acknowledged), for logs and tests
    pub written: u64,
}

impl KinesisSink {
    pub fn new(o: KinesisOptions) -> Self {
        KinesisSink { o, client: None, buf: Vec::new(), buf_bytes: 0, oldest: None, rng: 0, written: 0 }
    }

    fn client(&self) -> Result<&KinesisClient, ConnectorError> {
        self.client.as_ref().ok_or_else(|| ConnectorError::Other(format!("kinesis {}: the sink is not open", self.o.stream)))
    }

    fn random_key(&mut self) -> String {
        // xorshift64*: random enough to spread records over the shards
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        format!("{:016x}", x.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    /// Buffers the rows of `b`.
    fn add_batch(&mut self, b: &ChangeBatch) -> Result<(), ConnectorError> {
        let rows = &b.rows.0;
        let (stream, table) = (self.o.stream.to_string(), self.o.table.clone());
        let err = move |m: String| ConnectorError::Other(format!("kinesis {stream} (table '{table}'): {m}"));
        let data = encode(&self.o, rows).map_err(err.clone())?;
        let fmt = FormatOptions::default().with_null("null");
        let key_cols: Vec<ArrayFormatter<'_>> =
            self.o.sink.key_columns.iter().map(|c| ArrayFormatter::try_new(rows.column(*c).as_ref(), &fmt)).collect::<Result<_, _>>().map_err(|e| err.clone()(e.to_string()))?;
        let delimiter = self.o.sink.key_delimiter.clone();
        let mut key = String::new();
        for (i, d) in data.into_iter().enumerate() {
            let key = if key_cols.is_empty() {
                self.random_key()
            } else {
                key.clear();
                for (j, f) in key_cols.iter().enumerate() {
                    if j > 0 {
                        key.push_str(&delimiter);
                    }
                    use std::fmt::Write;
                    let _ = write!(key, "{}", f.value(i));
                }
                if key.is_empty() {
                    key.push_str("<empty>");
                }
                match key.char_indices().nth(MAX_KEY_CHARS) {
                    Some((cut, _)) => key[..cut].to_string(),
                    None => key.clone(),
                }
            };
            let p = Pending { data: d, key };
            if p.size() > MAX_RECORD_BYTES {
                return Err(err(format!("a record of {} bytes (data and partition key) is over Kinesis' limit of 1 MiB", p.size())));
            }
            self.buf_bytes += p.size();
            self.buf.push(p);
        }
        if self.oldest.is_none() && !self.buf.is_empty() {
            self.oldest = Some(Instant::now());
        }
        Ok(())
    }

    /// Writes the full requests the buffer holds (all of it with `all`).
    fn write_out(&mut self, all: bool) -> Result<(), ConnectorError> {
        while !self.buf.is_empty() {
            // the records of the next request
            let (mut n, mut bytes) = (0usize, 0usize);
            for p in &self.buf {
                if n == self.o.sink.batch_max || bytes + p.size() > self.o.sink.buffer_bytes {
                    break;
                }
                n += 1;
                bytes += p.size();
            }
            let full = n == self.o.sink.batch_max || n < self.buf.len();
            if !all && !full {
                return Ok(());
            }
            let n = n.max(1);
            let records: Vec<Pending> = self.buf.drain(..n).collect();
            self.buf_bytes -= records.iter().map(Pending::size).sum::<usize>();
            self.put(records)?;
        }
        self.oldest = None;
        Ok(())
    }

    /// One request's records, until each is acknowledged.
    fn put(&mut self, records: Vec<Pending>) -> Result<(), ConnectorError> {
        let mut pending: Vec<PutRecordsRequestEntry> = Vec::with_capacity(records.len());
        for p in records {
            pending.push(entry(p.data, p.key).map_err(|m| ConnectorError::Other(format!("kinesis {}: {m}", self.o.stream)))?);
        }
        let max_retries = self.o.sink.max_retries;
        let (mut attempt, mut internal) = (0u32, 0u32);
        loop {
            let n = pending.len();
            let sent = pending.clone();
            let results = self.client()?.retrying("PutRecords", max_retries, |c| c.put_records(sent.clone()))?;
            let mut failed = Vec::new();
            let mut last_error = None;
            let mut had_internal = false;
            for (e, r) in sent.into_iter().zip(results) {
                if let PutResult::Failed { code, message } = r {
                    match classify_code(Some(&code)) {
                        ErrorKind::Throttled => {}
                        ErrorKind::Transient => had_internal = true,
                        _ => return Err(ConnectorError::Other(format!("kinesis {}: PutRecords: a record failed: {code}: {message}", self.o.stream))),
                    }
                    last_error = Some(format!("{code}: {message}"));
                    failed.push(e);
                }
            }
            self.written += (n - failed.len()) as u64;
            if failed.is_empty() {
                return Ok(());
            }
            internal += u32::from(had_internal);
            if internal > max_retries {
                return Err(ConnectorError::Other(format!(
                    "kinesis {}: PutRecords: {} records still failing after {max_retries} retries: {}",
                    self.o.stream,
                    failed.len(),
                    last_error.unwrap_or_default()
                )));
            }
            if attempt > 0 && attempt % 10 == 0 {
                warn!(stream = %self.o.stream, records = failed.len(), attempt, "records rejected, retrying: {}", last_error.as_deref().unwrap_or(""));
            } else {
                debug!(stream = %self.o.stream, records = failed.len(), attempt, "records rejected, retrying");
            }
            std::thread::sleep(backoff(attempt));
            attempt += 1;
            pending = failed;
        }
    }
}

impl Sink<ChangeBatch> for KinesisSink {
    fn open(&mut self, ctx: &SinkContext) -> Result<(), ConnectorError> {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        self.rng = (seed ^ (u64::from(ctx.subtask) << 48)) | 1;
        self.client = Some(KinesisClient::new(&self.o).map_err(|e| ConnectorError::Other(format!("table '{}': {e}", self.o.table)))?);
        Ok(())
    }

    fn write(&mut self, batch: &[Rec<ChangeBatch>]) -> Result<(), ConnectorError> {
        for r in batch {
            self.add_batch(&r.value)?;
        }
        let timed_out = self.oldest.is_some_and(|t| t.elapsed() >= self.o.sink.buffer_timeout);
        self.write_out(timed_out)
    }

    /// When the task is about to wait: what waited `sink.flush-buffer.timeout`.
    fn flush(&mut self) -> Result<(), ConnectorError> {
        let timed_out = self.oldest.is_some_and(|t| t.elapsed() >= self.o.sink.buffer_timeout);
        self.write_out(timed_out)
    }

    /// At the barrier: everything buffered is written and acknowledged.
    fn pre_commit(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, ConnectorError> {
        self.write_out(true)?;
        Ok(None)
    }
}
