//! Weir streaming SQL: Flink-dialect SQL scripts, parsed with `sqlparser`, planned
//! with DataFusion, and lowered onto Weir's own operators (sources, stateless
//! projection/filter on Arrow batches, keyed state and event-time timers for
//! aggregations, sinks) of a [`weir::StreamEnv`].
//!
//! ```no_run
//! let env = weir::StreamEnv::new(weir::JobConfig::default());
//! let job = weir_sql::compile("CREATE TABLE ...; INSERT INTO ...", &env, &weir_sql::CompileOptions::default())?;
//! env.execute()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod connectors;
pub mod functions;
pub mod ops;
mod over;
mod plan;
mod rank;
pub mod script;
mod session;
mod types;

pub use connectors::{ChangelogMode, Connector, ConnectorRegistry, TableOptions};
pub use ops::RowKind;
pub use plan::{CompileOptions, InsertPlan, SqlJob, compile};
pub use script::Pos;

/// A SQL error: where in the script (1-based line and column), the statement, and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{pos}{}: {message}", statement.as_ref().map(|s| format!(" ({s})")).unwrap_or_default())]
pub struct SqlError {
    pub pos: Pos,
    /// The start of the statement, as written.
    pub statement: Option<String>,
    pub message: String,
}

impl SqlError {
    pub(crate) fn at(script: &str, offset: usize, message: impl Into<String>) -> Self {
        SqlError { pos: script::pos_of(script, offset), statement: None, message: message.into() }
    }
    pub(crate) fn in_statement(mut self, text: &str) -> Self {
        if self.statement.is_none() {
            let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let short: String = one.chars().take(60).collect();
            self.statement = Some(if one.chars().count() > 60 { format!("{short}...") } else { short });
        }
        self
    }
}
