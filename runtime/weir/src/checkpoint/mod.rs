//! Checkpoints and savepoints: what a snapshot of a job contains (`metadata`), where
//! it lives in object storage (`layout`, `storage`), and how a job's state is taken
//! (`coordinator`) and given back to operators on restore (`restore`).

pub mod coordinator;
pub mod layout;
pub mod metadata;
pub mod restore;
pub mod storage;

pub use metadata::{CheckpointMetadata, FORMAT_VERSION};
pub use storage::{CheckpointStorage, StorageError};

/// Deletes the savepoint at `url` (its `sp-…` directory). Refuses anything that is not
/// a savepoint, so a wrong URL cannot delete checkpoints or other data; a savepoint that
/// is already gone is fine (disposal is idempotent).
pub fn dispose_savepoint(url: &str) -> Result<(), StorageError> {
    let s = CheckpointStorage::open(url)?;
    let meta = match s.read_metadata("", None) {
        Ok(m) => m,
        Err(StorageError::MissingMetadata { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.savepoint {
        return Err(StorageError::Url { url: url.to_string(), reason: "this is a checkpoint, not a savepoint: the runtime manages checkpoints itself".into() });
    }
    s.delete_dir("")
}
