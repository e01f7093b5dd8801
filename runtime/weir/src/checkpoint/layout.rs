//! The layout of checkpoints under a job's checkpoint prefix (DESIGN.md):
//!
//! ```text
//! <prefix>/checkpoints/chk-<n>/_metadata     JSON, written last: a checkpoint without it does not exist
//! <prefix>/checkpoints/chk-<n>/<files>       state files
//! <prefix>/checkpoints/shared/...            files shared by incremental checkpoints
//! <prefix>/checkpoints/_latest               the newest complete checkpoint (`chk-<n>`)
//! <prefix>/savepoints/sp-<id>/_metadata      self-contained, never deleted by the runtime
//! ```

pub const CHECKPOINTS: &str = "checkpoints";
pub const SAVEPOINTS: &str = "savepoints";
pub const METADATA: &str = "_metadata";
pub const LATEST: &str = "_latest";
pub const SHARED: &str = "shared";

/// The directory of checkpoint `n`, relative to the prefix.
pub fn checkpoint_dir(n: u64) -> String {
    format!("{CHECKPOINTS}/chk-{n}")
}

/// The directory of savepoint `id`, relative to the prefix.
pub fn savepoint_dir(id: &str) -> String {
    format!("{SAVEPOINTS}/sp-{id}")
}

/// The directory of snapshot `id` of job `job_id` (no explicit target): a
/// checkpoint's `checkpoints/chk-<id>`, a savepoint's `savepoints/sp-<id>-<job id[..8]>`.
pub fn snapshot_dir(id: u64, savepoint: bool, job_id: &str) -> String {
    if savepoint {
        let short: String = job_id.chars().take(8).collect();
        savepoint_dir(&format!("{id}-{short}"))
    } else {
        checkpoint_dir(id)
    }
}

pub fn latest_pointer() -> String {
    format!("{CHECKPOINTS}/{LATEST}")
}

/// The checkpoint number of a `chk-<n>` directory name.
pub fn parse_checkpoint_dir(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// The state file of one operator subtask within a snapshot directory.
pub fn state_file(uid: &str, subtask: u32) -> String {
    let safe: String = uid.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{safe}-{subtask}.state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(checkpoint_dir(7), "checkpoints/chk-7");
        assert_eq!(parse_checkpoint_dir("chk-42"), Some(42));
        assert_eq!(parse_checkpoint_dir("chk-x"), None);
        assert_eq!(savepoint_dir("ab12"), "savepoints/sp-ab12");
        assert_eq!(state_file("q5/count", 3), "q5_count-3.state");
    }
}
