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
