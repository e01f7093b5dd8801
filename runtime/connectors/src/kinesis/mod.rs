//! `kinesis`: Amazon Kinesis Data Streams, after Flink's Kinesis SQL connector (same
//! option names where Flink has them), through the AWS SDK for Rust.
//!
//! - **Source** ([`source`]): shards are the splits ([`shards`]: assigned by lineage,
//!   so a closed parent is read to its end before its children, by the same
//!   subtask), positions (sequence numbers) checkpointed and restored exactly
//!   (`AFTER_SEQUENCE_NUMBER`), redistributed on rescale; children found with
//!   ListShards while running. Unbounded.
//! - **Sink** ([`sink`]): PutRecords in requests of ≤ 500 records / 5 MiB, partition
//!   keys from columns or random, rejected records retried; **at-least-once**: at each
//!   barrier everything buffered is written and acknowledged.
//! - [`format`]: `json`, `csv` (the filesystem connector's decoder and encoder) and
//!   `raw`, and the metadata columns (`timestamp`, `shard-id`, `sequence-number`,
//!   `partition-key`).
//! - [`client`]: the SDK client of one subtask, driven by its own current-thread
//!   runtime; [`error`]: errors naming the stream and shard, classified for retries.
//! - [`options`]: the options, parsed and checked (credentials are never options).

pub mod client;
pub mod error;
pub mod format;
pub mod options;
pub mod shards;
pub mod sink;
pub mod source;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use weir::connector::SourceContext;

use crate::registry::{BatchSource, ChangelogMode, Connector, SinkArgs, SourceFactory, TableOptions};
pub use client::KinesisClient;
pub use error::KinesisError;
pub use options::KinesisOptions;
pub use source::KinesisSource;

/// The connector, registered as `kinesis`.
pub struct Kinesis;

impl Connector for Kinesis {
    fn name(&self) -> &str {
        "kinesis"
    }
    fn options(&self) -> &[&str] {
        options::OPTIONS
    }
    fn validate(&self, opts: &TableOptions, schema: &SchemaRef) -> Result<(), String> {
        KinesisOptions::parse(opts, schema).map(|_| ())
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        let o = KinesisOptions::parse(opts, &schema)?;
        Ok(Arc::new(move |_ctx: &SourceContext| Box::new(KinesisSource::new(o.clone())) as Box<dyn BatchSource>))
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::AppendOnly)
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let o = KinesisOptions::parse(opts, &args.schema)?;
        if !o.metadata.is_empty() {
            return Err(format!("connector 'kinesis': table '{}': metadata columns cannot be written (they are read only)", o.table));
        }
        sink::add(o, args)
    }
}
