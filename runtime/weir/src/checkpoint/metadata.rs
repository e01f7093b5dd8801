//! `_metadata`: what a checkpoint or savepoint holds and where each piece is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of this format; a checkpoint of another version is refused. Version 1
/// is the canonical format (savepoints, heap checkpoints); version 2 adds RocksDB
/// database files (`databases`), written only by incremental checkpoints, so that a
/// runtime that does not know them refuses such a checkpoint instead of losing state.
pub const FORMAT_VERSION: u32 = 1;
/// The version of checkpoints that reference RocksDB database files.
pub const INCREMENTAL_FORMAT_VERSION: u32 = 2;

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
    /// RocksDB incremental checkpoints: the database files of each subtask (its keyed
    /// state tables; `key_groups` then holds only timers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<u32, DatabaseFiles>,
}

/// The files of one subtask's RocksDB database checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseFiles {
    /// The key groups `[first, last]` the database holds.
    pub key_groups: [u32; 2],
    pub files: Vec<DatabaseFile>,
}

/// A file of a database checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseFile {
    /// The file's name in the database directory (e.g. `000012.sst`).
    pub name: String,
    /// Where it is stored, relative to the snapshot directory: SST files are shared
    /// by checkpoints (`../shared/…`), the rest private to this one.
    pub path: String,
    pub size: u64,
    /// xxh3-64 of the contents (hex), checked on download; absent in checkpoints
    /// written before workers uploaded their own files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl DatabaseFile {
    /// Whether the file is in the shared directory (reference counted).
    pub fn is_shared(&self) -> bool {
        self.path.starts_with("../shared/")
    }
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
        let ranges: u64 = self.operators.values().flat_map(|o| o.key_groups.values().chain(o.subtasks.values())).map(|r| r.length).sum();
        ranges + self.database_files().map(|f| f.size).sum::<u64>()
    }

    /// Every RocksDB database file referenced (incremental checkpoints).
    pub fn database_files(&self) -> impl Iterator<Item = &DatabaseFile> {
        self.operators.values().flat_map(|o| o.databases.values()).flat_map(|d| d.files.iter())
    }
}
