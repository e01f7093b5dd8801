//! The RocksDB state backend: one database per operator subtask in a local working
//! directory (`$WEIR_STATE_DIR`, else the system temp dir), removed when the subtask ends.
//!
//! Key layout: `[key group: u16 BE][state id: u32 BE][postcard(key)]`, value
//! `postcard(Slot<V>)` (the value and its expiry). Key groups come first, so the
//! state of a key-group range is one contiguous key range: a restore at another
//! parallelism range-scans only the key groups a subtask owns. The state id is a
//! stable hash of the state's name. Tables keep a bounded write-back cache of the
//! entries in use (see `table.rs`), flushed here when it grows past a limit and
//! before every snapshot.
//!
//! Checkpoints are incremental: [`Db::checkpoint`] flushes the memtable and makes a
//! RocksDB checkpoint (hard links) in a local directory; the process that owns the
//! database uploads the SST files the last completed checkpoint did not hold to
//! `checkpoints/shared/` (`checkpoint/upload.rs`) and the coordinator references them
//! from `_metadata`. Savepoints never use this: they are written in the canonical,
//! backend-independent per-key-group format.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{DBCompressionType, IngestExternalFileOptions, Options, ReadOptions, SstFileWriter, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::checkpoint::metadata::DatabaseFile;
use crate::keygroup::KeyGroupRange;

/// Bytes before the key: key group (2) and state id (4).
pub(crate) const PREFIX_LEN: usize = 6;

/// Why the RocksDB backend failed.
#[derive(Debug, thiserror::Error)]
pub enum RocksStateError {
    #[error("RocksDB state in {path}: {source}")]
    Db { path: PathBuf, #[source] source: rocksdb::Error },
    #[error("RocksDB state in {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("RocksDB state: max parallelism {0} is above 65536 (key groups are stored as 16 bits)")]
    TooManyKeyGroups(u32),
    #[error("RocksDB state in {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("the snapshot has state (id {0:08x}) that the operator no longer registers")]
    UnknownState(u32),
}

/// The stable id of a state name inside the database keys.
pub(crate) fn state_id(name: &str) -> u32 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes()) as u32
}

/// Appends the key prefix of `(key group, state id)`.
#[inline]
pub(crate) fn write_prefix(kg: u32, id: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&(kg as u16).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
}

/// Splits a database key into key group, state id and serialized key.
pub(crate) fn split_key(k: &[u8]) -> Option<(u32, u32, &[u8])> {
    if k.len() < PREFIX_LEN {
        return None;
    }
    let kg = u16::from_be_bytes([k[0], k[1]]) as u32;
    let id = u32::from_be_bytes([k[2], k[3], k[4], k[5]]);
    Some((kg, id, &k[PREFIX_LEN..]))
}

/// The first key after every key of key groups `..= kg` (`None`: no such key).
fn group_bound(kg: u32) -> Option<Vec<u8>> {
    let next = kg as u64 + 1;
    (next <= u16::MAX as u64).then(|| (next as u16).to_be_bytes().to_vec())
}

/// The working directory for local state: `$WEIR_STATE_DIR` or the temp dir.
pub(crate) fn state_base_dir() -> PathBuf {
    match std::env::var_os("WEIR_STATE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::env::temp_dir().join("weir-state"),
    }
}

/// A unique name for a local directory.
pub(crate) fn unique_name(tag: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let h = xxhash_rust::xxh3::xxh3_64(format!("{t}-{}-{n}", std::process::id()).as_bytes());
    let safe: String = tag.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("{safe}-{h:016x}")
}

/// Removes a directory tree when dropped.
#[derive(Debug)]
pub(crate) struct DirGuard(pub PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove local state directory");
            }
        }
    }
}

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_write_buffer_size(64 << 20);
    o.set_target_file_size_base(64 << 20);
    o.set_max_background_jobs(2);
    o
}

/// The database of one operator subtask.
pub(crate) struct Db {
    // `db` is declared before `_dir`: it is closed before its directory is removed.
    db: rocksdb::DB,
    write: WriteOptions,
    path: PathBuf,
    /// Unique per opened database: names its SST files in shared storage.
    instance: String,
    /// The shared files this database was restored from, by local name, when the job
    /// may reference them from its next checkpoints (a restart from its own checkpoint).
    inherited: HashMap<String, DatabaseFile>,
    _dir: DirGuard,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens a fresh database for `tag` (operator uid and subtask) under the state dir.
    pub(crate) fn create(tag: &str, range: KeyGroupRange) -> Result<Arc<Db>, RocksStateError> {
        let instance = unique_name(tag);
        let path = state_base_dir().join(&instance);
        Self::open_at(path, instance, range, HashMap::new())
    }

    fn open_at(path: PathBuf, instance: String, range: KeyGroupRange, inherited: HashMap<String, DatabaseFile>) -> Result<Arc<Db>, RocksStateError> {
        if range.end > u16::MAX as u32 && !range.is_empty() {
            return Err(RocksStateError::TooManyKeyGroups(range.end + 1));
        }
        std::fs::create_dir_all(&path).map_err(|source| RocksStateError::Io { path: path.clone(), source })?;
        let guard = DirGuard(path.clone());
        let db = rocksdb::DB::open(&options(), &path).map_err(|source| RocksStateError::Db { path: path.clone(), source })?;
        let mut write = WriteOptions::default();
        // state is made durable by checkpoints (which flush), never by the WAL
        write.disable_wal(true);
        tracing::debug!(path = %path.display(), "opened RocksDB state");
        Ok(Arc::new(Db { db, write, path, instance, inherited, _dir: guard }))
    }

    /// Opens a database from the files of a checkpoint: SST files are hard-linked
    /// (copied when linking fails), the rest copied. `stored` are the checkpoint's
    /// files in the job's storage that the next checkpoints may reference instead of
    /// uploading them again (empty: upload everything).
    pub(crate) fn from_checkpoint(tag: &str, range: KeyGroupRange, files: &Path, stored: &[DatabaseFile]) -> Result<Arc<Db>, RocksStateError> {
        let instance = unique_name(tag);
        let path = state_base_dir().join(&instance);
        std::fs::create_dir_all(&path).map_err(|source| RocksStateError::Io { path: path.clone(), source })?;
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| RocksStateError::Io { path: p, source }
        };
        for e in std::fs::read_dir(files).map_err(io(files))? {
            let e = e.map_err(io(files))?;
            let name = e.file_name();
            let to = path.join(&name);
            let is_sst = name.to_string_lossy().ends_with(".sst");
            if !is_sst || std::fs::hard_link(e.path(), &to).is_err() {
                std::fs::copy(e.path(), &to).map_err(io(&to))?;
            }
        }
        let inherited = stored.iter().filter(|f| f.is_shared()).map(|f| (f.name.clone(), f.clone())).collect();
        Self::open_at(path, instance, range, inherited)
    }

    /// Keeps only the key groups of `range` in a database opened from a checkpoint of
    /// a wider range (a rescale): drops the files that hold only other key groups and
    /// range-deletes the rest, without reading a key. Readers, snapshots and later
    /// checkpoints never see the deleted key groups again.
    pub(crate) fn clip(&self, range: KeyGroupRange) -> Result<(), RocksStateError> {
        let err = |source| RocksStateError::Db { path: self.path.clone(), source };
        // an exclusive bound above every key: the last key and one more byte
        let mut it = self.db.raw_iterator();
        it.seek_to_last();
        let Some(mut top) = it.key().map(|k| k.to_vec()) else {
            return it.status().map_err(err);
        };
        drop(it);
        top.push(0);
        let first = (range.start as u16).to_be_bytes().to_vec();
        let mut cut: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(2);
        if range.start > 0 {
            cut.push((Vec::new(), first));
        }
        if let Some(after) = group_bound(range.end).filter(|a| *a < top) {
            cut.push((after, top));
        }
        let mut batch = WriteBatch::default();
        for (from, to) in &cut {
            self.db.delete_file_in_range(from, to).map_err(err)?;
            batch.delete_range(from, to);
        }
        self.write(batch)
    }

    /// Adds the key groups of `range` held by the checkpoints in `dirs` (other
    /// subtasks' databases of a rescale): each one's owned key range is read in key
    /// order into an SST file, in parallel, and the files are ingested at once —
    /// no memtable, no write-ahead log, no compaction of the written data. Keys of a
    /// state id that `known` refuses fail the restore.
    pub(crate) fn ingest_from(&self, dirs: &[(KeyGroupRange, &Path)], range: KeyGroupRange, known: &(dyn Fn(u32) -> bool + Sync)) -> Result<(), RocksStateError> {
        let results: Vec<Result<Option<PathBuf>, RocksStateError>> = std::thread::scope(|s| {
            let jobs: Vec<_> = dirs
                .iter()
                .enumerate()
                .map(|(i, (r, dir))| {
                    let to = self.path.with_file_name(format!("{}-ingest-{i}.sst", self.instance));
                    s.spawn(move || sst_of_range(dir, r.start.max(range.start), r.end.min(range.end), &to, known))
                })
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap_or_else(|_| Err(RocksStateError::Corrupt { path: self.path.clone(), what: "a restore thread panicked".into() }))).collect()
        });
        let mut files = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(Some(f)) => files.push(f),
                Ok(None) => {}
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        let ingested = match first_err {
            Some(e) => Err(e),
            None if files.is_empty() => Ok(()),
            None => {
                let mut o = IngestExternalFileOptions::default();
                o.set_move_files(true);
                self.db.ingest_external_file_opts(&o, files.clone()).map_err(|source| RocksStateError::Db { path: self.path.clone(), source })
            }
        };
        for f in files {
            // moved into the database on success; left over on failure
            let _ = std::fs::remove_file(f);
        }
        ingested
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, RocksStateError> {
        self.db.get_pinned(key).map_err(|source| RocksStateError::Db { path: self.path.clone(), source })
    }

    pub(crate) fn write(&self, batch: WriteBatch) -> Result<(), RocksStateError> {
        self.db.write_opt(batch, &self.write).map_err(|source| RocksStateError::Db { path: self.path.clone(), source })
    }

    /// Calls `f(key, value)` for every entry of key groups `first..=last`, in key order.
    #[cfg(test)]
    pub(crate) fn scan(&self, first: u32, last: u32, f: impl FnMut(&[u8], &[u8]) -> Result<(), RocksStateError>) -> Result<(), RocksStateError> {
        scan_db(&self.db, &self.path, first, last, f)
    }

    /// Calls `f(serialized key, value)` for every entry of state `id` in key group `kg`.
    pub(crate) fn scan_state(&self, kg: u32, id: u32, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), RocksStateError> {
        let mut lo = Vec::with_capacity(PREFIX_LEN);
        write_prefix(kg, id, &mut lo);
        let mut hi = lo.clone();
        // the prefix + 1 (state ids below u32::MAX; else the next key group)
        match id.checked_add(1) {
            Some(n) => {
                hi.truncate(2);
                hi.extend_from_slice(&n.to_be_bytes());
            }
            None => hi = group_bound(kg).unwrap_or_default(),
        }
        let mut ro = ReadOptions::default();
        if !hi.is_empty() {
            ro.set_iterate_upper_bound(hi);
        }
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_opt(ro);
        it.seek(&lo);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            f(&k[PREFIX_LEN..], v);
            it.next();
        }
        it.status().map_err(|source| RocksStateError::Db { path: self.path.clone(), source })
    }

    /// Flushes the memtable and makes a RocksDB checkpoint (hard links) in a new local
    /// directory next to the database; returns its files.
    pub(crate) fn checkpoint(&self, checkpoint_id: u64, range: KeyGroupRange) -> Result<DbCheckpoint, RocksStateError> {
        let err = |source| RocksStateError::Db { path: self.path.clone(), source };
        self.db.flush().map_err(err)?;
        let dir = self.path.with_file_name(format!("{}-chk-{checkpoint_id}", self.instance));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| RocksStateError::Io { path: dir.clone(), source })?;
        }
        rocksdb::checkpoint::Checkpoint::new(&self.db).and_then(|c| c.create_checkpoint(&dir)).map_err(err)?;
        let mut files = Vec::new();
        let io = |source| RocksStateError::Io { path: dir.clone(), source };
        for e in std::fs::read_dir(&dir).map_err(io)? {
            let e = e.map_err(io)?;
            let size = e.metadata().map_err(io)?.len();
            files.push(DbFile { name: e.file_name().to_string_lossy().into_owned(), size });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let inherited = files.iter().filter_map(|f| self.inherited.get(&f.name).filter(|h| h.size == f.size)).cloned().collect();
        Ok(DbCheckpoint { local_dir: dir, instance: self.instance.clone(), start: range.start, end: range.end, files, inherited })
    }
}

fn scan_db<T: rocksdb::ThreadMode>(
    db: &rocksdb::DBWithThreadMode<T>,
    path: &Path,
    first: u32,
    last: u32,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), RocksStateError>,
) -> Result<(), RocksStateError> {
    let mut ro = ReadOptions::default();
    if let Some(b) = group_bound(last) {
        ro.set_iterate_upper_bound(b);
    }
    ro.fill_cache(false);
    let mut it = db.raw_iterator_opt(ro);
    it.seek((first as u16).to_be_bytes());
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        f(k, v)?;
        it.next();
    }
    it.status().map_err(|source| RocksStateError::Db { path: path.to_path_buf(), source })
}

/// Scans key groups `first..=last` of a database opened read-only from `dir` (a
/// downloaded checkpoint), without changing it.
pub(crate) fn scan_checkpoint(dir: &Path, first: u32, last: u32, f: impl FnMut(&[u8], &[u8]) -> Result<(), RocksStateError>) -> Result<(), RocksStateError> {
    let mut o = options();
    o.create_if_missing(false);
    let db = rocksdb::DB::open_for_read_only(&o, dir, false).map_err(|source| RocksStateError::Db { path: dir.to_path_buf(), source })?;
    scan_db(&db, dir, first, last, f)
}

/// Writes key groups `first..=last` of the checkpoint in `dir` into the SST file `to`
/// (`None` when they hold no key).
fn sst_of_range(dir: &Path, first: u32, last: u32, to: &Path, known: &(dyn Fn(u32) -> bool + Sync)) -> Result<Option<PathBuf>, RocksStateError> {
    if first > last {
        return Ok(None);
    }
    let o = options();
    let mut w = SstFileWriter::create(&o);
    let werr = |source| RocksStateError::Db { path: to.to_path_buf(), source };
    w.open(to).map_err(werr)?;
    let mut n = 0u64;
    let scanned = scan_checkpoint(dir, first, last, |k, v| {
        match split_key(k) {
            Some((_, id, _)) if known(id) => {}
            Some((_, id, _)) => return Err(RocksStateError::UnknownState(id)),
            None => return Err(RocksStateError::Corrupt { path: dir.to_path_buf(), what: "a key without prefix".into() }),
        }
        n += 1;
        w.put(k, v).map_err(werr)
    });
    if let Err(e) = scanned {
        drop(w);
        let _ = std::fs::remove_file(to);
        return Err(e);
    }
    if n == 0 {
        drop(w);
        let _ = std::fs::remove_file(to);
        return Ok(None);
    }
    w.finish().map_err(werr)?;
    Ok(Some(to.to_path_buf()))
}

/// A file of a database checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbFile {
    pub name: String,
    pub size: u64,
}

/// A local RocksDB checkpoint of one subtask, waiting to be uploaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbCheckpoint {
    /// Where the checkpoint's files are (hard links; the uploader keeps the last
    /// completed checkpoint's for local recovery and removes the others).
    pub local_dir: PathBuf,
    /// The database instance: SST file names are unique within it.
    pub instance: String,
    /// Key groups `start..=end` of the subtask.
    pub start: u32,
    pub end: u32,
    pub files: Vec<DbFile>,
    /// Files of `files` already in the job's shared storage (the database was restored
    /// from one of the job's own checkpoints): referenced, not uploaded again.
    #[serde(default)]
    pub inherited: Vec<DatabaseFile>,
}

impl DbCheckpoint {
    pub fn key_groups(&self) -> KeyGroupRange {
        KeyGroupRange::new(self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_are_contiguous_key_ranges() {
        let mut a = Vec::new();
        write_prefix(3, u32::MAX, &mut a);
        a.extend_from_slice(b"zzzz");
        let mut b = Vec::new();
        write_prefix(4, 0, &mut b);
        assert!(a < b);
        let bound = group_bound(3).unwrap();
        assert!(a < bound && b >= bound);
        assert_eq!(split_key(&a), Some((3, u32::MAX, &b"zzzz"[..])));
        assert_eq!(group_bound(u16::MAX as u32), None);
    }

    /// A database with one entry per (key group, state id 1 and 2) of `range`.
    fn filled(tag: &str, range: KeyGroupRange) -> Arc<Db> {
        let db = Db::create(tag, range).unwrap();
        let mut batch = WriteBatch::default();
        for kg in range.start..=range.end {
            for id in [1u32, 2] {
                let mut k = Vec::new();
                write_prefix(kg, id, &mut k);
                k.extend_from_slice(&kg.to_be_bytes());
                batch.put(&k, kg.to_be_bytes());
            }
        }
        db.write(batch).unwrap();
        db
    }

    fn groups_of_checkpoint(dir: &Path) -> Vec<u32> {
        let mut kgs = Vec::new();
        scan_checkpoint(dir, 0, u16::MAX as u32, |k, v| {
            let (kg, _, key) = split_key(k).unwrap();
            assert_eq!((key, v), (&kg.to_be_bytes()[..], &kg.to_be_bytes()[..]));
            kgs.push(kg);
            Ok(())
        })
        .unwrap();
        kgs.dedup();
        kgs
    }

    /// A rescale restore: a checkpoint of key groups 0..=9 clipped to 5..=14, plus
    /// 10..=14 ingested from a checkpoint of 10..=19; checkpointed again and restored
    /// once more (the range deletes persist), then clipped to a narrower range.
    #[test]
    fn clip_and_ingest_restore_only_the_owned_key_groups() {
        let (a, b) = (filled("clip-a", KeyGroupRange::new(0, 9)), filled("clip-b", KeyGroupRange::new(10, 19)));
        let (ca, cb) = (a.checkpoint(1, KeyGroupRange::new(0, 9)).unwrap(), b.checkpoint(1, KeyGroupRange::new(10, 19)).unwrap());
        let own = KeyGroupRange::new(5, 14);
        let db = Db::from_checkpoint("clip-new", own, &ca.local_dir, &[]).unwrap();
        db.clip(own).unwrap();
        db.ingest_from(&[(KeyGroupRange::new(10, 19), cb.local_dir.as_path())], own, &|id| id == 1 || id == 2).unwrap();
        let c = db.checkpoint(2, own).unwrap();
        assert_eq!(groups_of_checkpoint(&c.local_dir), (5..=14).collect::<Vec<_>>());
        let mut k = Vec::new();
        write_prefix(12, 2, &mut k);
        k.extend_from_slice(&12u32.to_be_bytes());
        assert_eq!(db.get(&k).unwrap().map(|v| v.to_vec()), Some(12u32.to_be_bytes().to_vec()));
        let narrow = KeyGroupRange::new(7, 8);
        let again = Db::from_checkpoint("clip-again", narrow, &c.local_dir, &[]).unwrap();
        again.clip(narrow).unwrap();
        let c2 = again.checkpoint(3, narrow).unwrap();
        assert_eq!(groups_of_checkpoint(&c2.local_dir), vec![7, 8]);
        // state the operator no longer registers fails the restore, naming its id
        let e = db.ingest_from(&[(KeyGroupRange::new(10, 19), cb.local_dir.as_path())], own, &|id| id == 1).unwrap_err();
        assert!(e.to_string().contains("00000002"), "{e}");
        // nothing owned in the other checkpoint: nothing ingested, no file left
        db.ingest_from(&[(KeyGroupRange::new(10, 19), cb.local_dir.as_path())], KeyGroupRange::new(5, 9), &|_| true).unwrap();
        for d in [ca.local_dir, cb.local_dir, c.local_dir, c2.local_dir] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn scan_and_checkpoint() {
        let db = Db::create("unit", KeyGroupRange::new(0, 9)).unwrap();
        let mut batch = WriteBatch::default();
        for kg in 0..10u32 {
            for id in [1u32, 2] {
                let mut k = Vec::new();
                write_prefix(kg, id, &mut k);
                k.push(kg as u8);
                batch.put(&k, [id as u8]);
            }
        }
        db.write(batch).unwrap();
        let mut n = 0;
        db.scan(3, 5, |k, _| {
            let (kg, _, _) = split_key(k).unwrap();
            assert!((3..=5).contains(&kg));
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 6);
        let mut m = 0;
        db.scan_state(7, 2, |k, v| {
            assert_eq!((k, v), (&[7u8][..], &[2u8][..]));
            m += 1;
        })
        .unwrap();
        assert_eq!(m, 1);
        let c = db.checkpoint(1, KeyGroupRange::new(0, 9)).unwrap();
        assert!(c.files.iter().any(|f| f.name.ends_with(".sst")), "{:?}", c.files);
        let mut n = 0;
        scan_checkpoint(&c.local_dir, 0, 9, |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 20);
        let db2 = Db::from_checkpoint("unit2", KeyGroupRange::new(0, 9), &c.local_dir, &[]).unwrap();
        let mut k = Vec::new();
        write_prefix(9, 1, &mut k);
        k.push(9);
        assert_eq!(db2.get(&k).unwrap().map(|v| v.to_vec()), Some(vec![1]));
        let p = db.path().to_path_buf();
        drop(db);
        assert!(!p.exists(), "the working directory is removed with the database");
        std::fs::remove_dir_all(&c.local_dir).unwrap();
    }
}
