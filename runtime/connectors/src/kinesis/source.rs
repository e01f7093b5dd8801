//! The source: each subtask reads the shards of its lineages ([`super::shards`]) with
//! GetRecords, one shard per call in turn, and lists the shards (ListShards) every
//! `scan.shard.discovery.intervalmillis` and whenever one of its shards is read to
//! its end, to find children. A closed shard is finished when GetRecords gives no
//! next iterator, or (moto, which always gives one) when it returns nothing and the
//! last sequence number read reaches the shard's ending sequence number.
//!
//! Each call returns the records of one GetRecords, and the shard's position moves
//! past them as they are returned, so the checkpointed position of a shard is the
//! last sequence number emitted before the barrier: a restore continues
//! `AFTER_SEQUENCE_NUMBER` it, exactly.
//!
//! A shard with nothing new, or that is caught up, is asked again after
//! `scan.shard.getrecords.intervalmillis`; a throttled one after a growing backoff
//! (throttling never fails the job); a transient failure is retried up to 10 times in
//! a row; an expired iterator is made again from the position; any other error
//! fails the job with the stream, the shard and the service's message.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use tracing::{debug, info, warn};
use weir::checkpoint::restore::Redistribution;
use weir::connector::{ConnectorError, SourceContext};

use super::client::{KinesisClient, ShardInfo, StartAt, backoff};
use super::error::ErrorKind;
use super::format::{Origin, decode};
use super::options::{InitialPosition, KinesisOptions};
use super::shards::{Lineage, Position, ShardEntry, compare_sequence, may_start, owner};
use crate::registry::BatchSource;

/// Transient failures of one shard in a row before the job fails.
const MAX_TRANSIENT: u32 = 10;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What a subtask knows of a shard it reads, besides its checkpointed entry.
#[derive(Default)]
struct Reading {
    iterator: Option<String>,
    /// not asked again before this
    next_poll: Option<Instant>,
    /// throttled or failed calls in a row
    failures: u32,
    transient: u32,
}

/// The source of one subtask.
pub struct KinesisSource {
    o: KinesisOptions,
    client: Option<KinesisClient>,
    subtask: u32,
    parallelism: u32,
    /// the shards this subtask reads (and the finished ones it read), by id
    entries: BTreeMap<String, ShardEntry>,
    reading: HashMap<String, Reading>,
    lineage: Lineage,
    /// the last listing
    listed: HashMap<String, ShardInfo>,
    /// restored from a checkpoint (shards found later are read from their start)
    restored: bool,
    /// the first listing of a job without a checkpoint gives the initial positions
    listed_once: bool,
    next_discovery: Instant,
    /// the shard read last (the next call reads the one after it)
    cursor: Option<String>,
}

impl KinesisSource {
    pub fn new(o: KinesisOptions) -> Self {
        KinesisSource {
            o,
            client: None,
            subtask: 0,
            parallelism: 1,
            entries: BTreeMap::new(),
            reading: HashMap::new(),
            lineage: Lineage::default(),
            listed: HashMap::new(),
            restored: false,
            listed_once: false,
            next_discovery: Instant::now(),
            cursor: None,
        }
    }

    fn client(&self) -> Result<&KinesisClient, ConnectorError> {
        self.client.as_ref().ok_or_else(|| ConnectorError::Other(format!("kinesis {}: the source is not open", self.o.stream)))
    }

    /// The shards this subtask reads (their ids), for tests and metrics.
    pub fn shards(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Lists the shards; adds the new ones this subtask reads.
    fn discover(&mut self) -> Result<(), ConnectorError> {
        let client = self.client()?;
        let listed = client.retrying("ListShards", MAX_TRANSIENT, |c| c.list_shards())?;
        self.lineage.update(&listed);
        let first = !self.restored && !self.listed_once;
        let mut new_latest = Vec::new();
        for s in &listed {
            let Some(root) = self.lineage.root(&s.id) else { continue };
            if owner(root, self.parallelism) != self.subtask || self.entries.contains_key(&s.id) {
                continue;
            }
            let pos = match (first, self.o.initial_position) {
                // shards found while running (children) are read from their start
                (false, _) | (true, InitialPosition::TrimHorizon) => Position::TrimHorizon,
                (true, InitialPosition::AtTimestamp(t)) => Position::AtTimestamp(t),
                (true, InitialPosition::Latest) if s.ending.is_some() => Position::Finished { last: None },
                (true, InitialPosition::Latest) => {
                    new_latest.push(s.id.clone());
                    Position::Latest { since: now_ms() }
                }
            };
            let parents: Vec<String> = s.parent.iter().chain(s.adjacent_parent.iter()).cloned().collect();
            debug!(stream = %self.o.stream, shard = %s.id, subtask = self.subtask, ?pos, "reading a new shard");
            self.entries.insert(s.id.clone(), ShardEntry { shard: s.id.clone(), root, parents, pos });
        }
        // LATEST: the iterator now, so that what arrives from here on is read
        for id in new_latest {
            let it = self.client()?.retrying("GetShardIterator", MAX_TRANSIENT, |c| c.shard_iterator(&id, &StartAt::Latest))?;
            self.reading.entry(id).or_default().iterator = Some(it);
        }
        self.listed = listed.into_iter().map(|s| (s.id.clone(), s)).collect();
        // finished shards gone from the stream (expired) are forgotten (their root is kept)
        let listed_now = &self.listed;
        self.entries.retain(|id, e| !e.finished() || listed_now.contains_key(id));
        self.listed_once = true;
        self.next_discovery = Instant::now() + self.o.discovery_interval;
        Ok(())
    }

    /// The next shard to read now, after the cursor in id order.
    fn next_shard(&self) -> Option<String> {
        let now = Instant::now();
        let ready = |e: &&ShardEntry| {
            !e.finished() && self.reading.get(&e.shard).and_then(|r| r.next_poll).is_none_or(|t| t <= now) && may_start(e, &self.entries, &self.listed, &self.lineage, self.subtask, self.parallelism)
        };
        let after = self.cursor.as_deref().unwrap_or("");
        self.entries.values().filter(|e| e.shard.as_str() > after).find(ready).or_else(|| self.entries.values().find(ready)).map(|e| e.shard.clone())
    }

    fn start_at(&self, e: &ShardEntry) -> StartAt {
        match &e.pos {
            Position::TrimHorizon | Position::Finished { .. } => StartAt::TrimHorizon,
            Position::Latest { since } => StartAt::AtTimestamp(*since),
            Position::AtTimestamp(t) => StartAt::AtTimestamp(*t),
            Position::After(s) => StartAt::AfterSequenceNumber(s.clone()),
        }
    }

    /// One GetRecords of `id`: its records (maybe none).
    fn read_shard(&mut self, id: &str, max_rows: usize) -> Result<RecordBatch, ConnectorError> {
        let schema = self.o.schema.clone();
        let empty = move || RecordBatch::new_empty(schema.clone());
        let Some(entry) = self.entries.get(id).cloned() else { return Ok(empty()) };
        let interval = self.o.get_records_interval;
        let iterator = match self.reading.get(id).and_then(|r| r.iterator.clone()) {
            Some(it) => it,
            None => {
                let at = self.start_at(&entry);
                match self.client()?.shard_iterator(id, &at) {
                    Ok(it) => it,
                    Err(e) => return self.failed(id, e).map(|_| empty()),
                }
            }
        };
        let limit = max_rows.clamp(1, self.o.get_records_max);
        let got = match self.client()?.get_records(id, &iterator, limit) {
            Ok(r) => r,
            Err(e) => return self.failed(id, e).map(|_| empty()),
        };
        let batch = if got.records.is_empty() {
            empty()
        } else {
            let label = self.client()?.label().to_string();
            decode(&self.o, &got.records, &Origin { stream: &label, shard: id })?
        };
        let last = got.records.last().map(|r| r.sequence.clone());
        let caught_up = got.records.is_empty() || got.millis_behind_latest == Some(0);
        let ending = self.listed.get(id).and_then(|s| s.ending.clone());
        let e = self.entries.get_mut(id).ok_or_else(|| ConnectorError::Other(format!("kinesis {}: shard {id} vanished", self.o.stream)))?;
        if let Some(s) = &last {
            e.pos = Position::After(s.clone());
        }
        let read_through = match &e.pos {
            Position::After(s) => s.as_str(),
            _ => "0",
        };
        let finished = got.next_iterator.is_none() || (got.records.is_empty() && ending.as_deref().is_some_and(|end| compare_sequence(read_through, end).is_ge()));
        let r = self.reading.entry(id.to_string()).or_default();
        (r.failures, r.transient) = (0, 0);
        if finished {
            let last = match &e.pos {
                Position::After(s) => Some(s.clone()),
                _ => None,
            };
            info!(stream = %self.o.stream, shard = %id, subtask = self.subtask, last = ?last, "shard read to its end");
            e.pos = Position::Finished { last };
            self.reading.remove(id);
            // its children: now
            self.next_discovery = Instant::now();
        } else {
            r.iterator = got.next_iterator;
            r.next_poll = caught_up.then(|| Instant::now() + interval);
        }
        Ok(batch)
    }

    /// A failed call on shard `id`: throttling and transient failures wait, an
    /// expired iterator is made again, the rest fails the job.
    fn failed(&mut self, id: &str, e: super::error::KinesisError) -> Result<(), ConnectorError> {
        let r = self.reading.entry(id.to_string()).or_default();
        match e.kind() {
            ErrorKind::Throttled => {
                debug!(shard = %id, "throttled: {e}");
                r.next_poll = Some(Instant::now() + backoff(r.failures));
                r.failures += 1;
                Ok(())
            }
            ErrorKind::ExpiredIterator => {
                r.iterator = None;
                Ok(())
            }
            ErrorKind::Transient if r.transient < MAX_TRANSIENT => {
                warn!(shard = %id, attempt = r.transient + 1, "retrying: {e}");
                r.iterator = None;
                r.next_poll = Some(Instant::now() + backoff(r.failures));
                r.failures += 1;
                r.transient += 1;
                Ok(())
            }
            _ => Err(e.into()),
        }
    }
}

impl BatchSource for KinesisSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.subtask = ctx.subtask;
        self.parallelism = ctx.parallelism.max(1);
        if self.restored {
            // the restored entries of every subtask: keep the shards this one reads now
            let p = self.parallelism;
            let s = self.subtask;
            self.entries.retain(|_, e| owner(e.root, p) == s);
        }
        self.client = Some(KinesisClient::new(&self.o).map_err(|e| ConnectorError::Other(format!("table '{}': {e}", self.o.table)))?);
        self.discover()
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if Instant::now() >= self.next_discovery {
            self.discover()?;
        }
        let Some(id) = self.next_shard() else {
            return Ok(Some(RecordBatch::new_empty(self.o.schema.clone())));
        };
        self.cursor = Some(id.clone());
        self.read_shard(&id, max_rows).map(Some)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.entries.values().map(ShardEntry::encode).collect())
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.restored = true;
        for b in splits {
            let e = ShardEntry::decode(&b).map_err(|m| ConnectorError::Other(format!("table '{}': {m}", self.o.table)))?;
            self.lineage.remember(&e.shard, e.root);
            self.entries.insert(e.shard.clone(), e);
        }
        Ok(())
    }

    /// Every subtask gets every shard's entry and keeps its own (see [`super::shards`]).
    fn redistribution(&self) -> Redistribution {
        Redistribution::Union
    }
}
