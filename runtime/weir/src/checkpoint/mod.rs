//! Checkpoints and savepoints: what a snapshot of a job contains (`metadata`), where
//! it lives in object storage (`layout`, `storage`), and how a job's state is taken
//! (`coordinator`) and given back to operators on restore (`restore`).

pub mod coordinator;
pub mod layout;
pub mod metadata;
pub mod restore;
pub mod shared_files;
pub mod storage;
pub(crate) mod upload;

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

/// Loads the state at restore URL `url` (a savepoint, a checkpoint, or a
/// `…/checkpoints/_latest` pointer) for a job whose operators have `uids`.
pub fn load_restore_state(url: &str, max_parallelism: u32, uids: &[String], allow_non_restored: bool) -> Result<restore::RestoreState, restore::RestoreError> {
    let url = resolve_restore_url(url, max_parallelism)?;
    let s = CheckpointStorage::open(&url)?;
    let meta = s.read_metadata("", Some(max_parallelism))?;
    restore::RestoreState::load(&s, "", &meta, uids, allow_non_restored)
}

/// The checkpoint number of `url` when it is a checkpoint of `storage`
/// (`<storage>/checkpoints/chk-<n>`).
pub(crate) fn checkpoint_number(storage: &CheckpointStorage, url: &str) -> Option<u64> {
    let rest = url.strip_prefix(storage.url())?.trim_start_matches('/');
    layout::parse_checkpoint_dir(rest.strip_prefix(&format!("{}/", layout::CHECKPOINTS))?)
}

/// Resolves a restore URL: a `…/checkpoints/_latest` pointer (what the operator passes
/// for a last-state upgrade) becomes the URL of the newest complete checkpoint under
/// that prefix; any other URL is returned as it is.
pub fn resolve_restore_url(url: &str, max_parallelism: u32) -> Result<String, StorageError> {
    let pointer = layout::latest_pointer();
    let Some(prefix) = url.trim_end_matches('/').strip_suffix(&format!("/{pointer}")) else {
        return Ok(url.to_string());
    };
    let s = CheckpointStorage::open(prefix)?;
    match s.latest(Some(max_parallelism))? {
        Some((dir, _)) => Ok(s.url_of(&dir)),
        None => Err(StorageError::MissingMetadata { url: url.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_pointers_resolve_to_the_newest_checkpoint() {
        let dir = std::env::temp_dir().join(format!("weir-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let url = format!("file://{}", dir.display());
        let s = CheckpointStorage::open(&url).unwrap();
        let meta = |n| CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job_id: "j".into(),
            job_name: "t".into(),
            checkpoint_id: n,
            savepoint: false,
            max_parallelism: 720,
            timestamp: 0,
            operators: Default::default(),
        };
        for n in [3, 4] {
            s.write_snapshot(&layout::checkpoint_dir(n), Vec::new(), &meta(n)).unwrap();
        }
        s.set_latest(4).unwrap();
        let latest = format!("{url}/checkpoints/_latest");
        assert_eq!(resolve_restore_url(&latest, 720).unwrap(), s.url_of("checkpoints/chk-4"));
        assert_eq!(resolve_restore_url("s3://b/savepoints/sp-1", 720).unwrap(), "s3://b/savepoints/sp-1");
        let empty = format!("file://{}/none/checkpoints/_latest", dir.display());
        assert!(resolve_restore_url(&empty, 720).is_err(), "no checkpoint to resume is an error, never empty state");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
