//! `postgres` (also `jdbc` with a PostgreSQL URL): tables of a PostgreSQL database,
//! after Flink's JDBC connector (same option names where Flink has them).
//!
//! - **Sink** ([`sink`]): rows are buffered and written in batches (multi-row
//!   prepared statements, one transaction per flush) when `sink.buffer-flush.max-rows`
//!   changes are buffered, when the oldest is `sink.buffer-flush.interval` old, and at
//!   every checkpoint barrier (`pre_commit`). A table without a primary key is written
//!   with `INSERT` (append-only queries only; **at-least-once**: what was flushed after
//!   the last checkpoint is written again after a restore). A table declaring
//!   `PRIMARY KEY (...) NOT ENFORCED` is written as **upserts**: `+I`/`+U` become
//!   `INSERT ... ON CONFLICT (key) DO UPDATE`, `-D` a `DELETE` by key, `-U` is skipped
//!   (the `+U` after it overwrites the row). Upserts are idempotent, so replaying the
//!   changes after the last checkpoint converges to the same table: the table ends
//!   **exactly** as after a run without failure (it may briefly show older values of
//!   a replayed key while the job catches up).
//! - **Source** ([`source`]): a bounded scan, split into `scan.partition.num` ranges
//!   of `scan.partition.column` between `scan.partition.lower-bound` and
//!   `scan.partition.upper-bound`; each range is a split, its position (rows read, or
//!   finished) is checkpointed, so finished splits are not read again after a restore.
//!
//! **Client.** Sinks and sources are called synchronously from their task's thread,
//! so the connector uses the blocking `postgres` client: each connection runs its own
//! small current-thread tokio runtime, owned by the sink or source subtask that opened
//! it. That keeps the engine free of any runtime, blocks only the task that waits for
//! the database (which is what backpressure needs), and costs one thread-less runtime
//! per connection.
//!
//! **Secrets.** `password` is either the password itself or `${env:NAME}` (read from
//! the environment variable `NAME` when the job starts, e.g. filled from a Kubernetes
//! Secret), and `password-file` names a file holding it (a mounted Secret). The
//! password is never printed: not in errors, logs or `Debug` output (the URL is shown
//! without it).

mod config;
mod error;
pub mod lookup;
pub mod sink;
pub mod source;
pub mod types;

use arrow::datatypes::SchemaRef;

pub use config::{PgConfig, Secret};
pub use error::PgError;

use crate::registry::{ChangelogMode, Connector, LookupSource, SinkArgs, SourceFactory, TableOptions};

/// Every option of the connector.
pub const OPTIONS: &[&str] = &[
    "url",
    "table-name",
    "username",
    "password",
    "password-file",
    "connection.connect-timeout",
    "sink.buffer-flush.max-rows",
    "sink.buffer-flush.interval",
    "sink.max-retries",
    "sink.retry-backoff",
    "scan.partition.column",
    "scan.partition.num",
    "scan.partition.lower-bound",
    "scan.partition.upper-bound",
    "scan.fetch-size",
    "lookup.cache.max-rows",
    "lookup.cache.ttl",
];

/// The connector, registered as `postgres` and (with a PostgreSQL URL only) as `jdbc`.
pub struct Postgres {
    name: &'static str,
}

impl Postgres {
    /// `'connector' = 'postgres'`.
    pub fn new() -> Self {
        Postgres { name: "postgres" }
    }
    /// `'connector' = 'jdbc'`: Flink's name; only `jdbc:postgresql://` URLs.
    pub fn jdbc() -> Self {
        Postgres { name: "jdbc" }
    }
}

impl Default for Postgres {
    fn default() -> Self {
        Postgres::new()
    }
}

impl Connector for Postgres {
    fn name(&self) -> &str {
        self.name
    }
    fn options(&self) -> &[&str] {
        OPTIONS
    }
    fn validate(&self, opts: &TableOptions, schema: &SchemaRef) -> Result<(), String> {
        // parsing checks the URL and every number and duration; secrets are read
        // when the job starts (`PgConfig::connect_config`), not at planning
        PgConfig::from_options(opts)?;
        for k in &opts.primary_key {
            schema.index_of(k).map_err(|_| format!("connector '{}': the primary key column '{k}' is not a column of the table", opts.connector))?;
        }
        if opts.get("scan.partition.column").is_some() || opts.get("scan.partition.num").is_some() {
            let col = opts.required("scan.partition.column")?;
            let f = schema.field_with_name(col).map_err(|_| format!("connector '{}': option 'scan.partition.column' = '{col}' is not a column of the table", opts.connector))?;
            if !f.data_type().is_integer() {
                return Err(format!("connector '{}': option 'scan.partition.column' = '{col}' must be an integer column, not {}", opts.connector, f.data_type()));
            }
        }
        Ok(())
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        source::factory(opts, schema)
    }
    fn bounded(&self, _opts: &TableOptions) -> bool {
        true
    }
    fn sink_mode(&self, opts: &TableOptions) -> Option<ChangelogMode> {
        Some(if opts.primary_key.is_empty() { ChangelogMode::AppendOnly } else { ChangelogMode::All })
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        sink::add(opts, args)
    }
    fn lookup(&self, opts: &TableOptions, schema: SchemaRef, key_columns: &[usize]) -> Result<std::sync::Arc<dyn LookupSource>, String> {
        Ok(std::sync::Arc::new(lookup::PgLookup::new(opts, schema, key_columns)?))
    }
}
