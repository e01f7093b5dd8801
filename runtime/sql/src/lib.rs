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

pub mod functions;
mod group_window;
mod narrow;
mod nexmark_queries;
pub mod ops;
mod over;
mod plan;
mod rank;
mod rows;
pub mod script;
mod session;
mod types;
pub mod udaf;
pub mod udf;
pub mod udtf;

/// The connector registry and the built-in connectors (crate `weir-connectors`).
pub use weir_connectors as connectors;
pub use weir_connectors::{ChangeBatch, ChangelogMode, Connector, ConnectorRegistry, RowKind, TableOptions};
pub use nexmark_queries::{NEXMARK_DDL, NEXMARK_QUERIES, NexmarkSettings, nexmark_ddl, nexmark_query, nexmark_script};
pub use plan::{CompileOptions, InsertPlan, QueryPlan, SqlJob, compile, compile_query, compile_statements};
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

/// The `SET 'key' = 'value'` statements of `script`, in order (later ones win), read
/// without planning anything: what a runner needs before it builds the job (its
/// parallelism, name, runtime mode).
pub fn script_settings(script: &str) -> Result<std::collections::BTreeMap<String, String>, SqlError> {
    let mut out = std::collections::BTreeMap::new();
    for piece in script::split(script) {
        let text = piece.text(script);
        if script::leading_words(text, 1).first().map(String::as_str) == Some("SET") {
            let (k, v) = script::parse_set(text).ok_or_else(|| SqlError::at(script, piece.start, "expected SET 'key' = 'value'").in_statement(text))?;
            out.insert(k, v);
        }
    }
    Ok(out)
}
