//! Flink's changelog: every row of a table stream carries a kind, `+I`, `-U`, `+U`,
//! `-D` ([`RowKind`]); rows travel as columnar [`ChangeBatch`]es. Append-only
//! streams carry `+I` only (no kinds stored).

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use weir::arrow::ArrowBatch;

/// Flink's RowKind: how a row changes the result table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowKind {
    Insert,
    UpdateBefore,
    UpdateAfter,
    Delete,
}

impl RowKind {
    /// `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }
    /// Whether the row adds to the result (`+I`, `+U`) rather than retracts.
    pub fn is_accumulate(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// Rows as one Arrow batch, with the kind of each row (`None`: all `+I`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChangeBatch {
    pub rows: ArrowBatch,
    pub kinds: Option<Vec<RowKind>>,
}

impl ChangeBatch {
    pub fn inserts(b: RecordBatch) -> Self {
        ChangeBatch { rows: ArrowBatch(b), kinds: None }
    }
    pub fn kind(&self, row: usize) -> RowKind {
        self.kinds.as_ref().map_or(RowKind::Insert, |k| k[row])
    }
    pub fn num_rows(&self) -> usize {
        self.rows.0.num_rows()
    }
}
