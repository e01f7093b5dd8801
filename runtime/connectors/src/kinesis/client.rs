//! The Kinesis client of one source or sink subtask: the AWS SDK's client, driven by
//! a current-thread Tokio runtime that the subtask owns (the engine's tasks are
//! threads; each request is `block_on`), as the filesystem connector's buckets are.
//!
//! - **Settings**: the region from `aws.region`, else `AWS_REGION` /
//!   `AWS_DEFAULT_REGION` (no region is an error: the SDK would otherwise ask the
//!   instance metadata service); the endpoint from `aws.endpoint`, else the SDK reads
//!   `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL`; credentials from the SDK's default
//!   chain (environment, shared files, web identity, container, instance role),
//!   never from options and never logged.
//! - **Retries**: the SDK retries a request up to 3 times (its standard mode, which
//!   also backs off on throttling); what still fails is classified
//!   ([`ErrorKind`]) for the caller: throttling is retried again by the caller with
//!   backoff, never a job failure; transient failures a bounded number of times; the
//!   rest fails the job with the stream, the shard and the service's message.
//! - **HTTP**: rustls on ring (no aws-lc, no OpenSSL), connections kept alive.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use tracing::{debug, warn};

use super::error::{ErrorKind, KinesisError};
use super::options::{KinesisOptions, StreamRef};

/// A shard as ListShards describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    /// the ending sequence number: the shard is closed (split or merged)
    pub ending: Option<String>,
}

/// Where an iterator starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    TrimHorizon,
    Latest,
    /// milliseconds since the epoch
    AtTimestamp(i64),
    AfterSequenceNumber(String),
}

/// One record read.
pub struct Record {
    pub sequence: String,
    pub data: Blob,
    pub partition_key: String,
    /// the approximate arrival timestamp, milliseconds since the epoch
    pub arrival_ms: i64,
}

/// What GetRecords returned.
pub struct Records {
    pub records: Vec<Record>,
    /// `None`: the shard is closed and read to its end
    pub next_iterator: Option<String>,
    pub millis_behind_latest: Option<i64>,
}

/// The result of one record of a PutRecords request.
pub enum PutResult {
    Ok,
    Failed { code: String, message: String },
}

/// The client of one subtask.
pub struct KinesisClient {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_kinesis::Client,
    stream: StreamRef,
    /// `stream 'name'`, for messages
    label: String,
}

impl std::fmt::Debug for KinesisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisClient").field("stream", &self.label).finish()
    }
}

/// The longest wait between two retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The wait before retry `attempt` (from 0): 100 ms doubling to [`MAX_BACKOFF`].
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(16))).min(MAX_BACKOFF)
}

impl KinesisClient {
    /// The client of `o`'s stream (nothing is sent yet).
    pub fn new(o: &KinesisOptions) -> Result<Self, KinesisError> {
        let label = o.stream.to_string();
        let fail = |message: String| KinesisError::Client { stream: label.clone(), message };
        let region = o.region.clone().or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty())).or_else(|| std::env::var("AWS_DEFAULT_REGION").ok().filter(|r| !r.is_empty()));
        let Some(region) = region else {
            return Err(fail("no region: set the option 'aws.region' or the environment variable AWS_REGION".into()));
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| fail(format!("cannot start the I/O runtime: {e}")))?;
        let http = aws_smithy_http_client::Builder::new().tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring)).build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).operation_attempt_timeout(Duration::from_secs(30)).build());
        if let Some(e) = &o.endpoint {
            loader = loader.endpoint_url(e);
        }
        let config = rt.block_on(loader.load());
        let client = aws_sdk_kinesis::Client::new(&config);
        Ok(KinesisClient { rt, client, stream: o.stream.clone(), label })
    }

    /// `stream 'name'`, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn err<E, R>(&self, shard: Option<&str>, what: &'static str, e: aws_sdk_kinesis::error::SdkError<E, R>) -> KinesisError
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        KinesisError::from_sdk(&self.label, shard, what, e)
    }

    /// Runs `f` until it succeeds, retrying throttling (without bound) and transient
    /// failures (up to `max_transient` times) with backoff.
    pub fn retrying<T>(&self, what: &str, max_transient: u32, mut f: impl FnMut(&Self) -> Result<T, KinesisError>) -> Result<T, KinesisError> {
        let (mut attempt, mut transient) = (0u32, 0u32);
        loop {
            match f(self) {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == ErrorKind::Throttled => {
                    debug!(stream = %self.label, %what, "throttled, retrying: {e}");
                }
                Err(e) if e.kind() == ErrorKind::Transient && transient < max_transient => {
                    transient += 1;
                    warn!(stream = %self.label, %what, attempt = transient, "retrying: {e}");
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }

    /// Every shard of the stream (ListShards, page by page).
    pub fn list_shards(&self) -> Result<Vec<ShardInfo>, KinesisError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_shards();
            req = match (&token, &self.stream) {
                (Some(t), _) => req.next_token(t),
                (None, StreamRef::Name(n)) => req.stream_name(n),
                (None, StreamRef::Arn(a)) => req.stream_arn(a),
            };
            let resp = self.rt.block_on(req.send()).map_err(|e| self.err(None, "ListShards", e))?;
            for s in resp.shards() {
                out.push(ShardInfo {
                    id: s.shard_id().to_string(),
                    parent: s.parent_shard_id().map(str::to_string),
                    adjacent_parent: s.adjacent_parent_shard_id().map(str::to_string),
                    ending: s.sequence_number_range().and_then(|r| r.ending_sequence_number()).map(str::to_string),
                });
            }
            match resp.next_token() {
                Some(t) if !t.is_empty() && !resp.shards().is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// An iterator of `shard` from `at`.
    pub fn shard_iterator(&self, shard: &str, at: &StartAt) -> Result<String, KinesisError> {
        let mut req = self.client.get_shard_iterator().shard_id(shard);
        req = match &self.stream {
            StreamRef::Name(n) => req.stream_name(n),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        req = match at {
            StartAt::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartAt::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            StartAt::AtTimestamp(ms) => req.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_millis(*ms)),
            StartAt::AfterSequenceNumber(s) => req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(s),
        };
        let resp = self.rt.block_on(req.send()).map_err(|e| self.err(Some(shard), "GetShardIterator", e))?;
        resp.shard_iterator().map(str::to_string).ok_or_else(|| KinesisError::Request {
            stream: self.label.clone(),
            shard: Some(shard.to_string()),
            what: "GetShardIterator",
            kind: ErrorKind::Fatal,
            message: "the response has no iterator".into(),
        })
    }

    /// Up to `limit` records from `iterator` (of `shard`, for messages).
    pub fn get_records(&self, shard: &str, iterator: &str, limit: usize) -> Result<Records, KinesisError> {
        let req = self.client.get_records().shard_iterator(iterator).limit(limit.min(super::options::MAX_GET_RECORDS) as i32);
        let resp = self.rt.block_on(req.send()).map_err(|e| self.err(Some(shard), "GetRecords", e))?;
        let millis_behind_latest = resp.millis_behind_latest();
        let next_iterator = resp.next_shard_iterator().map(str::to_string);
        let records = resp
            .records
            .into_iter()
            .map(|r| Record {
                arrival_ms: r.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or(0),
                partition_key: r.partition_key().unwrap_or_default().to_string(),
                sequence: r.sequence_number().to_string(),
                data: r.data,
            })
            .collect();
        Ok(Records { records, next_iterator, millis_behind_latest })
    }

    /// One PutRecords request: the result of each record, in order.
    pub fn put_records(&self, entries: Vec<PutRecordsRequestEntry>) -> Result<Vec<PutResult>, KinesisError> {
        let n = entries.len();
        let mut req = self.client.put_records().set_records(Some(entries));
        req = match &self.stream {
            StreamRef::Name(s) => req.stream_name(s),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        let resp = self.rt.block_on(req.send()).map_err(|e| self.err(None, "PutRecords", e))?;
        let results: Vec<PutResult> = resp
            .records()
            .iter()
            .map(|r| match r.error_code() {
                None => PutResult::Ok,
                Some(c) => PutResult::Failed { code: c.to_string(), message: r.error_message().unwrap_or_default().to_string() },
            })
            .collect();
        if results.len() != n {
            return Err(KinesisError::Request { stream: self.label.clone(), shard: None, what: "PutRecords", kind: ErrorKind::Fatal, message: format!("{} results for {n} records", results.len()) });
        }
        Ok(results)
    }

    /// Creates a stream of `shards` shards and waits until it is active (tests and tools).
    pub fn create_stream(&self, shards: i32) -> Result<(), KinesisError> {
        let StreamRef::Name(name) = &self.stream else {
            return Err(KinesisError::Client { stream: self.label.clone(), message: "a stream is created by name".into() });
        };
        self.rt.block_on(self.client.create_stream().stream_name(name).shard_count(shards).send()).map_err(|e| self.err(None, "CreateStream", e))?;
        self.wait_active()
    }

    /// Waits until the stream is ACTIVE (after a create, split or merge), up to 60 s.
    pub fn wait_active(&self) -> Result<(), KinesisError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut req = self.client.describe_stream_summary();
            req = match &self.stream {
                StreamRef::Name(n) => req.stream_name(n),
                StreamRef::Arn(a) => req.stream_arn(a),
            };
            let resp = self.rt.block_on(req.send()).map_err(|e| self.err(None, "DescribeStreamSummary", e))?;
            let active = resp.stream_description_summary().is_some_and(|d| d.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active);
            if active {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(KinesisError::Client { stream: self.label.clone(), message: "not ACTIVE after 60 s".into() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Splits `shard` at `new_starting_hash_key` (tests and tools), then waits until the stream is active.
    pub fn split_shard(&self, shard: &str, new_starting_hash_key: &str) -> Result<(), KinesisError> {
        let mut req = self.client.split_shard().shard_to_split(shard).new_starting_hash_key(new_starting_hash_key);
        req = match &self.stream {
            StreamRef::Name(n) => req.stream_name(n),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        self.rt.block_on(req.send()).map_err(|e| self.err(Some(shard), "SplitShard", e))?;
        self.wait_active()
    }

    /// Merges two adjacent shards (tests and tools), then waits until the stream is active.
    pub fn merge_shards(&self, shard: &str, adjacent: &str) -> Result<(), KinesisError> {
        let mut req = self.client.merge_shards().shard_to_merge(shard).adjacent_shard_to_merge(adjacent);
        req = match &self.stream {
            StreamRef::Name(n) => req.stream_name(n),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        self.rt.block_on(req.send()).map_err(|e| self.err(Some(shard), "MergeShards", e))?;
        self.wait_active()
    }

    /// The hash key range (start, end) of `shard` (tests and tools).
    pub fn hash_key_range(&self, shard: &str) -> Result<(u128, u128), KinesisError> {
        let mut req = self.client.list_shards();
        req = match &self.stream {
            StreamRef::Name(n) => req.stream_name(n),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        let resp = self.rt.block_on(req.send()).map_err(|e| self.err(Some(shard), "ListShards", e))?;
        let s = resp.shards().iter().find(|s| s.shard_id() == shard).and_then(|s| s.hash_key_range());
        let parse = |v: &str| v.parse::<u128>().map_err(|e| KinesisError::Client { stream: self.label.clone(), message: format!("hash key '{v}': {e}") });
        match s {
            Some(r) => Ok((parse(r.starting_hash_key())?, parse(r.ending_hash_key())?)),
            None => Err(KinesisError::Client { stream: self.label.clone(), message: format!("no shard {shard}") }),
        }
    }

    /// Deletes the stream (tests and tools).
    pub fn delete_stream(&self) -> Result<(), KinesisError> {
        let mut req = self.client.delete_stream().enforce_consumer_deletion(true);
        req = match &self.stream {
            StreamRef::Name(n) => req.stream_name(n),
            StreamRef::Arn(a) => req.stream_arn(a),
        };
        self.rt.block_on(req.send()).map_err(|e| self.err(None, "DeleteStream", e))?;
        Ok(())
    }
}

/// A record for PutRecords.
pub fn entry(data: Vec<u8>, partition_key: String) -> Result<PutRecordsRequestEntry, String> {
    PutRecordsRequestEntry::builder().data(Blob::new(data)).partition_key(partition_key).build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(3200));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(1000), MAX_BACKOFF);
    }
}
