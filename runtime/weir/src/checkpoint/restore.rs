//! The state a job starts from: loaded from a checkpoint or savepoint and handed to
//! each operator subtask by uid — keyed state by the key groups the subtask owns now
//! (so any parallelism ≤ max parallelism works), operator state redistributed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::metadata::{CheckpointMetadata, DatabaseFile};
use super::storage::{CheckpointStorage, StorageError};
use crate::keygroup::KeyGroupRange;

/// How non-keyed operator state is redistributed when the parallelism changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redistribution {
    /// Every entry (e.g. a source split) goes to exactly one new subtask, round robin.
    Split,
    /// Every new subtask gets every entry.
    Union,
}

/// A downloaded RocksDB database checkpoint of an old subtask.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RestoredDb<'a> {
    /// The key groups it holds.
    pub range: KeyGroupRange,
    /// Its local copy.
    pub dir: &'a Path,
    /// Its files as stored in this job's checkpoint storage, reusable by the next
    /// checkpoints (empty when the snapshot is not one of this job's checkpoints).
    pub stored: &'a [DatabaseFile],
}

/// Files of earlier databases still in this machine's state directory: an old
/// database's own directory `<instance>/`, and the local copies of its last completed
/// checkpoint `<instance>-chk-<id>/` (kept by `upload.rs`).
struct LocalCopies {
    base: PathBuf,
    /// instance → its checkpoint copies (listed once, on first use)
    listed: Option<HashMap<String, Vec<PathBuf>>>,
    /// the checkpoint copies offered, removed after the restore
    used: Vec<PathBuf>,
}

impl LocalCopies {
    fn new(base: PathBuf) -> Self {
        LocalCopies { base, listed: None, used: Vec::new() }
    }

    /// A local file that may hold `name` of database `instance` (checked by size and
    /// hash before it is used).
    fn find(&mut self, instance: &str, name: &str) -> Option<PathBuf> {
        let live = self.base.join(instance).join(name);
        if live.exists() {
            return Some(live);
        }
        let base = &self.base;
        let listed = self.listed.get_or_insert_with(|| {
            let mut m: HashMap<String, Vec<PathBuf>> = HashMap::new();
            for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some((inst, _)) = n.rsplit_once("-chk-") {
                    m.entry(inst.to_string()).or_default().push(e.path());
                }
            }
            m
        });
        let dir = listed.get(instance)?.iter().find(|d| d.join(name).exists())?;
        if !self.used.contains(dir) {
            self.used.push(dir.clone());
        }
        Some(dir.join(name))
    }

    fn remove_checkpoint_copies(&mut self) {
        for d in self.used.drain(..) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Snapshot state, indexed for restore.
#[derive(Debug, Default)]
pub struct RestoreState {
    pub checkpoint_id: u64,
    pub url: String,
    keyed: HashMap<String, HashMap<u32, Vec<u8>>>,
    /// uid → entries of all old subtasks, in subtask order
    operator: HashMap<String, Vec<Vec<u8>>>,
    /// uid → RocksDB database checkpoints of the old subtasks: their key groups, where
    /// they were downloaded to, and their stored files
    databases: HashMap<String, Vec<(KeyGroupRange, PathBuf, Vec<DatabaseFile>)>>,
    /// The snapshot is a checkpoint in the storage this job checkpoints to, so its
    /// shared files may be referenced by the job's next checkpoints instead of being
    /// uploaded again (see `checkpoint/shared_files.rs`: the checkpoint a job restored
    /// from stays retained until a newer one completes).
    own_checkpoint: bool,
    /// Removes the downloaded databases when the restore state is dropped.
    _local: Option<crate::state::rocksdb::DirGuard>,
}

/// Why a snapshot cannot be restored into this job.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{url}: state of operator(s) {uids:?} has no operator in this job; pass --allow-non-restored-state to drop it")]
    NonRestored { url: String, uids: Vec<String> },
    #[error("{url}: operator state of '{uid}' is corrupt: {reason}")]
    Corrupt { url: String, uid: String, reason: String },
}

impl RestoreError {
    /// The store could not be reached: trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RestoreError::Storage(e) if e.is_transient())
    }

    /// The snapshot itself is bad (a missing, truncated or corrupt file), so
    /// recovery should fall back to an older checkpoint.
    pub fn is_bad_snapshot(&self) -> bool {
        match self {
            RestoreError::Corrupt { .. } => true,
            RestoreError::Storage(StorageError::Corrupt { .. } | StorageError::MissingMetadata { .. }) => true,
            RestoreError::Storage(StorageError::Store { source: object_store::Error::NotFound { .. }, .. }) => true,
            _ => false,
        }
    }
}

impl RestoreState {
    /// Loads snapshot `dir` of `storage` for a job whose operators have `uids`.
    pub fn load(
        storage: &CheckpointStorage,
        dir: &str,
        meta: &CheckpointMetadata,
        uids: &[String],
        allow_non_restored: bool,
    ) -> Result<Self, RestoreError> {
        Self::load_for(storage, dir, meta, uids, allow_non_restored, None)
    }

    /// Like [`RestoreState::load`], downloading only the RocksDB databases that hold
    /// key groups in `local` (per uid: the ranges this process's subtasks own; `None`
    /// = all): each worker fetches what it needs, nothing more.
    pub(crate) fn load_for(
        storage: &CheckpointStorage,
        dir: &str,
        meta: &CheckpointMetadata,
        uids: &[String],
        allow_non_restored: bool,
        local_ranges: Option<&HashMap<String, Vec<KeyGroupRange>>>,
    ) -> Result<Self, RestoreError> {
        let url = storage.url_of(dir);
        let missing: Vec<String> = meta.operators.keys().filter(|u| !uids.contains(u)).cloned().collect();
        if !missing.is_empty() && !allow_non_restored {
            return Err(RestoreError::NonRestored { url, uids: missing });
        }
        let mut keyed = HashMap::new();
        let mut operator = HashMap::new();
        let mut databases: HashMap<String, Vec<(KeyGroupRange, PathBuf, Vec<DatabaseFile>)>> = HashMap::new();
        let mut local = None;
        let mut downloads = Vec::new();
        let mut local_copies = LocalCopies::new(crate::state::rocksdb::state_base_dir());
        // read each file once, then slice it
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (uid, op) in &meta.operators {
            if !uids.contains(uid) {
                continue;
            }
            for r in op.key_groups.values().chain(op.subtasks.values()) {
                if !files.contains_key(&r.file) {
                    files.insert(r.file.clone(), storage.get(&format!("{dir}/{}", r.file))?);
                }
            }
            let slice = |r: &super::metadata::FileRange| -> Result<Vec<u8>, RestoreError> {
                let f = &files[&r.file];
                let (a, b) = (r.offset as usize, (r.offset + r.length) as usize);
                f.get(a..b).map(|s| s.to_vec()).ok_or_else(|| RestoreError::Corrupt {
                    url: url.clone(),
                    uid: uid.clone(),
                    reason: format!("{} is shorter than the metadata says", r.file),
                })
            };
            let mut groups = HashMap::new();
            for (kg, r) in &op.key_groups {
                groups.insert(*kg, slice(r)?);
            }
            keyed.insert(uid.clone(), groups);
            let mut entries = Vec::new();
            for r in op.subtasks.values() {
                let blob = slice(r)?;
                let list: Vec<Vec<u8>> = postcard::from_bytes(&blob).map_err(|e| RestoreError::Corrupt { url: url.clone(), uid: uid.clone(), reason: e.to_string() })?;
                entries.extend(list);
            }
            operator.insert(uid.clone(), entries);
            for (subtask, db) in &op.databases {
                let range = KeyGroupRange::new(db.key_groups[0], db.key_groups[1]);
                if let Some(want) = local_ranges {
                    let needed = want.get(uid).is_some_and(|rs| rs.iter().any(|r| r.start <= range.end && range.start <= r.end));
                    if !needed {
                        continue;
                    }
                }
                let base = local.get_or_insert_with(|| {
                    let name = crate::state::rocksdb::unique_name(&format!("restore-{}", meta.checkpoint_id));
                    crate::state::rocksdb::DirGuard(crate::state::rocksdb::state_base_dir().join(name))
                });
                let to = base.0.join(crate::checkpoint::layout::state_file(uid, *subtask));
                std::fs::create_dir_all(&to).map_err(|source| StorageError::Local { path: to.clone(), source })?;
                for f in &db.files {
                    if f.name.contains('/') || f.name.starts_with('.') {
                        return Err(RestoreError::Corrupt { url: url.clone(), uid: uid.clone(), reason: format!("bad database file name '{}'", f.name) });
                    }
                    let hash = match &f.hash {
                        Some(h) => Some(u64::from_str_radix(h, 16).map_err(|_| RestoreError::Corrupt { url: url.clone(), uid: uid.clone(), reason: format!("bad hash '{h}' of {}", f.path) })?),
                        None => None,
                    };
                    // a shared file `<instance>-<name>` may still be in this machine's
                    // state directory: the database it came from (e.g. after a kill -9)
                    // or the local copy of the last checkpoint it completed
                    let reuse = f
                        .path
                        .strip_prefix("../shared/")
                        .and_then(|n| n.strip_suffix(&format!("-{}", f.name)))
                        .filter(|i| !i.contains('/') && !i.starts_with('.'))
                        .and_then(|instance| local_copies.find(instance, &f.name));
                    downloads.push(super::storage::Download { rel: format!("{dir}/{}", f.path), local: to.join(&f.name), size: f.size, hash, reuse });
                }
                databases.entry(uid.clone()).or_default().push((range, to, db.files.clone()));
            }
        }
        if !downloads.is_empty() {
            let t0 = std::time::Instant::now();
            let n = downloads.len();
            let bytes = storage.get_files(downloads)?;
            tracing::info!(checkpoint = meta.checkpoint_id, files = n, bytes, ms = t0.elapsed().as_millis() as u64, "downloaded RocksDB checkpoint files (the others linked from local copies)");
            // the old attempt's local checkpoint copies are linked into the restored
            // databases now (a worker of this host that still wants one downloads it)
            local_copies.remove_checkpoint_copies();
        }
        Ok(RestoreState { checkpoint_id: meta.checkpoint_id, url, keyed, operator, databases, own_checkpoint: false, _local: local })
    }

    /// Builds a restore state directly (tests).
    pub fn from_parts(keyed: HashMap<String, HashMap<u32, Vec<u8>>>, operator: HashMap<String, Vec<Vec<u8>>>) -> Self {
        RestoreState { checkpoint_id: 0, url: String::new(), keyed, operator, databases: HashMap::new(), own_checkpoint: false, _local: None }
    }

    /// Marks the snapshot as a checkpoint of the storage the restored job checkpoints
    /// to (a restart after a failure): its RocksDB files are not uploaded again.
    pub(crate) fn of_own_storage(mut self) -> Self {
        self.own_checkpoint = true;
        self
    }

    /// The downloaded RocksDB database checkpoints of `uid` that hold key groups of `range`.
    pub(crate) fn databases(&self, uid: &str, range: KeyGroupRange) -> Vec<RestoredDb<'_>> {
        let Some(dbs) = self.databases.get(uid) else { return Vec::new() };
        dbs.iter()
            .filter(|(r, _, _)| r.start <= range.end && range.start <= r.end)
            .map(|(r, p, files)| RestoredDb { range: *r, dir: p.as_path(), stored: if self.own_checkpoint { files.as_slice() } else { &[] } })
            .collect()
    }

    /// The keyed state of `uid` in the key groups of `range`.
    pub fn keyed(&self, uid: &str, range: KeyGroupRange) -> Vec<(u32, &[u8])> {
        let Some(groups) = self.keyed.get(uid) else { return Vec::new() };
        let mut v: Vec<(u32, &[u8])> = groups.iter().filter(|(kg, _)| range.contains(**kg)).map(|(kg, b)| (*kg, b.as_slice())).collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// The operator state entries of `uid` for `subtask` of `parallelism`, or `None`
    /// when the snapshot has no state for this operator.
    pub fn operator(&self, uid: &str, subtask: u32, parallelism: u32, how: Redistribution) -> Option<Vec<Vec<u8>>> {
        let all = self.operator.get(uid)?;
        Some(match how {
            Redistribution::Union => all.clone(),
            Redistribution::Split => all.iter().enumerate().filter(|(i, _)| *i as u32 % parallelism == subtask).map(|(_, b)| b.clone()).collect(),
        })
    }

    pub fn has(&self, uid: &str) -> bool {
        self.keyed.contains_key(uid) || self.operator.contains_key(uid) || self.databases.contains_key(uid)
    }
}
