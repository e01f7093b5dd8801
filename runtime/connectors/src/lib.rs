//! Weir's connectors: one module per external system, each registered by name in a
//! [`ConnectorRegistry`] that SQL (`CREATE TABLE ... WITH ('connector' = ...)`), job
//! files and the Rust API share. A connector builds sources of Arrow batches
//! ([`BatchSource`]: splits with checkpointed positions, reassigned on rescale) and
//! sinks of changelog batches ([`ChangeBatch`]), from string options; a bad or
//! missing option is an error naming the option and the connector.
//!
//! Connectors to external systems sit behind cargo features, so the engine never
//! compiles their client libraries and a build can leave out what it does not use.

pub mod bad_input;
pub mod blackhole;
pub mod changelog;
pub mod datagen;
pub mod filesystem;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kinesis")]
pub mod kinesis;
pub mod nexmark;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod print;
pub mod registry;
pub mod rows;

pub use changelog::{ChangeBatch, RowKind};
pub use registry::{parse_duration, BatchSource, ChangelogMode, Connector, ConnectorRegistry, LookupRows, LookupSource, SinkArgs, SourceFactory, TableOptions};
pub use rows::{json_rows, print_rows};
