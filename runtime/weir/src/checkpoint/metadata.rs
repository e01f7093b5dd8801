//! `_metadata`: what a checkpoint or savepoint holds and where each piece is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of this format; a checkpoint of another version is refused.
pub const FORMAT_VERSION: u32 = 1;

/// A byte range of a file in the snapshot directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub file: String,
    pub offset: u64,
    pub length: u64,
}

/// The state of one operator (by uid) in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorState {
    /// Parallelism the operator ran with when the snapshot was taken.
    pub parallelism: u32,
    /// Keyed state and timers: key group → where its bytes are.
    pub key_groups: BTreeMap<u32, FileRange>,
    /// Non-keyed operator state per subtask of the snapshot (source positions, sink
    /// transactions); redistributed on rescale.
    pub subtasks: BTreeMap<u32, FileRange>,
}

/// The `_metadata` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointMetadata {
    pub format_version: u32,
    pub job_id: String,
    pub job_name: String,
    pub checkpoint_id: u64,
    /// `true` for savepoints (canonical, never deleted by the runtime).
    pub savepoint: bool,
    pub max_parallelism: u32,
    /// Epoch milliseconds when the checkpoint was triggered.
    pub timestamp: i64,
    pub operators: BTreeMap<String, OperatorState>,
}

impl CheckpointMetadata {
    /// Total bytes of state referenced by this snapshot.
    pub fn state_size(&self) -> u64 {
        self.operators
            .values()
            .flat_map(|o| o.key_groups.values().chain(o.subtasks.values()))
            .map(|r| r.length)
            .sum()
    }
}
