//! What an operator subtask contributes to a checkpoint.

use serde::{Deserialize, Serialize};

/// The state of one operator subtask at a barrier.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OperatorSnapshot {
    /// The operator's stable id (its uid).
    pub uid: String,
    pub subtask: u32,
    /// Keyed state and timers, per key group: `(key group, bytes)`.
    pub keyed: Vec<(u32, Vec<u8>)>,
    /// Non-keyed operator state (e.g. source positions), redistributed on rescale.
    pub operator: Option<Vec<u8>>,
    /// RocksDB backend, checkpoints (not savepoints): the local database checkpoint
    /// holding the keyed state tables, uploaded incrementally by this process
    /// (`checkpoint/upload.rs`) before the report leaves it.
    /// `keyed` then holds only the timers.
    #[serde(default)]
    pub database: Option<DbCheckpoint>,
    /// The same database checkpoint once this process uploaded its files: the
    /// handles the coordinator writes into `_metadata`.
    #[serde(default)]
    pub files: Option<crate::checkpoint::metadata::DatabaseFiles>,
    /// Bytes of database files uploaded for this snapshot.
    #[serde(default)]
    pub uploaded_bytes: u64,
    /// `keyed` and `operator` once this process wrote them into its state file in the
    /// snapshot's directory (`checkpoint/upload.rs`): where their bytes are.
    #[serde(default)]
    pub written: Option<WrittenState>,
}

/// Where a process wrote the keyed and operator state of one operator subtask.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrittenState {
    pub key_groups: std::collections::BTreeMap<u32, crate::checkpoint::metadata::FileRange>,
    pub operator: Option<crate::checkpoint::metadata::FileRange>,
    /// Size of the state file.
    pub bytes: u64,
}

use crate::keygroup::{Key, key_group};
use crate::operator::keyed::Timers;
use crate::state::rocksdb::DbCheckpoint;
use crate::state::{KeyedState, StateError};

/// Per key group: every state table's entries and the timers of that group.
#[derive(Serialize, Deserialize, Default)]
struct KeyGroupBlob {
    /// `(state name, serialized entries)`
    tables: Vec<(String, Vec<u8>)>,
    /// serialized `Vec<(ts, key)>` of event-time and processing-time timers
    event_timers: Vec<u8>,
    processing_timers: Vec<u8>,
}

/// Snapshots keyed state and timers. Savepoints and the heap backend write every
/// table per key group in the canonical format; checkpoints on the RocksDB backend
/// write the timers per key group and a local database checkpoint (`database`).
pub(crate) fn snapshot_keyed<K: Key>(
    uid: &str,
    subtask: u32,
    state: &mut KeyedState<K>,
    timers: &Timers<K>,
    max_parallelism: u32,
    barrier: &crate::exec::Barrier,
) -> Result<OperatorSnapshot, StateError> {
    let database = if barrier.savepoint { None } else { state.checkpoint_db(barrier.checkpoint_id)? };
    if database.is_none() {
        state.flush()?;
    }
    let range = state.range();
    let mut ev: Vec<Vec<(i64, &K)>> = vec![Vec::new(); range.len()];
    let mut pt: Vec<Vec<(i64, &K)>> = vec![Vec::new(); range.len()];
    for (ts, k) in timers.event.iter() {
        ev[range.offset(key_group(k, max_parallelism))].push((*ts, k));
    }
    for (ts, k) in timers.processing.iter() {
        pt[range.offset(key_group(k, max_parallelism))].push((*ts, k));
    }
    let mut keyed = Vec::new();
    for kg in range.iter() {
        let off = range.offset(kg);
        let mut blob = KeyGroupBlob::default();
        if database.is_none() {
            blob.tables = state.snapshot_group(off)?;
        }
        ev[off].sort_by_key(|e| e.0);
        pt[off].sort_by_key(|e| e.0);
        blob.event_timers = postcard::to_allocvec(&ev[off]).unwrap_or_else(|e| panic!("timers of {uid} cannot be serialized: {e}"));
        blob.processing_timers = postcard::to_allocvec(&pt[off]).unwrap_or_else(|e| panic!("timers of {uid} cannot be serialized: {e}"));
        let bytes = postcard::to_allocvec(&blob).unwrap_or_else(|e| panic!("state of {uid} cannot be serialized: {e}"));
        keyed.push((kg, bytes));
    }
    Ok(OperatorSnapshot { uid: uid.to_string(), subtask, keyed, operator: None, database, ..Default::default() })
}

/// Puts back the keyed state and timers of `groups` (key group, bytes of
/// [`snapshot_keyed`]). State names the operator did not register are reported.
pub(crate) fn restore_keyed<K: Key>(state: &mut KeyedState<K>, timers: &mut Timers<K>, groups: Vec<(u32, &[u8])>) -> Result<(), String> {
    let range = state.range();
    for (kg, bytes) in groups {
        let off = range.offset(kg);
        let blob: KeyGroupBlob = postcard::from_bytes(bytes).map_err(|e| format!("key group {kg}: {e}"))?;
        for (name, tb) in blob.tables {
            match state.tables_mut().iter_mut().find(|t| t.name() == name) {
                Some(t) => t.restore_group(off, &tb).map_err(|e| format!("state '{name}', key group {kg}: {e}"))?,
                None => return Err(format!("the snapshot has state '{name}' that the operator no longer registers")),
            }
        }
        let ev: Vec<(i64, K)> = postcard::from_bytes(&blob.event_timers).map_err(|e| format!("timers of key group {kg}: {e}"))?;
        for (ts, k) in ev {
            timers.event.register(ts, &k);
        }
        let pt: Vec<(i64, K)> = postcard::from_bytes(&blob.processing_timers).map_err(|e| format!("timers of key group {kg}: {e}"))?;
        for (ts, k) in pt {
            timers.processing.register(ts, &k);
        }
    }
    Ok(())
}
