//! Upload of RocksDB checkpoint files by the process that owns the databases (every
//! worker of a distributed job, or `weir run`), before the snapshot goes to the
//! coordinator: the coordinator only receives file handles (name, size, hash, key
//! groups) and writes `_metadata` once every task acknowledged.
//!
//! Shared (SST) files go to `checkpoints/shared/<db instance>-<file>`: RocksDB never
//! reuses a file number within a database and the instance name is unique per opened
//! database (operator uid, subtask, and a hash of time, pid and a sequence), so a
//! name always means the same bytes: a retried upload rewrites identical bytes and
//! workers never collide. The other files (MANIFEST, CURRENT, OPTIONS) go into the
//! checkpoint's own directory under `<db instance>/`. A worker uploads an SST file
//! again unless the last checkpoint it was told completed lists it (see
//! `shared_files.rs` for why that is what keeps deletion safe).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::layout;
use super::metadata::{DatabaseFile, DatabaseFiles, FileRange};
use super::storage::{CheckpointStorage, StorageError};
use crate::exec::SnapshotReport;
use crate::state::rocksdb::DbCheckpoint;
use crate::state::snapshot::{OperatorSnapshot, WrittenState};

/// Per database instance: the shared files (by local name) of a checkpoint.
type InstanceFiles = HashMap<String, HashMap<String, DatabaseFile>>;

#[derive(Default)]
struct Known {
    /// The files of the last completed checkpoint, per database instance.
    done: InstanceFiles,
    /// The files of checkpoints reported but not yet completed.
    pending: BTreeMap<u64, InstanceFiles>,
    /// The local database checkpoints (hard links) of the last completed checkpoint,
    /// kept for local recovery: a restart in this state directory links them instead
    /// of downloading them (`restore.rs`). Removed when a newer checkpoint completes
    /// or the job ends; left behind when the job fails, for its next attempt.
    done_dirs: Vec<PathBuf>,
    /// The local database checkpoints of uploaded, not yet completed checkpoints.
    pending_dirs: BTreeMap<u64, Vec<PathBuf>>,
}

fn remove_dirs(dirs: impl IntoIterator<Item = PathBuf>) {
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The uploading side of one job attempt in this process.
pub(crate) struct Uploader {
    known: Arc<Mutex<Known>>,
}

impl Uploader {
    /// Starts the upload thread: snapshots sent to the returned sender are uploaded to
    /// `storage_url`, then forwarded to `out` (with the error when an upload failed).
    pub(crate) fn start(storage_url: &str, job_id: &str, out: Sender<SnapshotReport>, cancelled: Arc<dyn Fn() -> bool + Send + Sync>) -> Result<(Uploader, Sender<SnapshotReport>), StorageError> {
        let storage = CheckpointStorage::open(storage_url)?;
        let known = Arc::new(Mutex::new(Known::default()));
        let (tx, rx) = crossbeam_channel::unbounded();
        let k = known.clone();
        let job_id = job_id.to_string();
        std::thread::Builder::new()
            .name("weir-upload".into())
            .spawn(move || run(storage, &job_id, rx, out, k, cancelled))
            .map_err(StorageError::Runtime)?;
        Ok((Uploader { known }, tx))
    }

    /// Checkpoint `id` completed: its files may be reused by the next checkpoints.
    pub(crate) fn complete(&self, id: u64) {
        let Ok(mut k) = self.known.lock() else { return };
        // `u64::MAX` = the end of the job: nothing comes after it
        let newer = match id.checked_add(1) {
            Some(next) => k.pending.split_off(&next),
            None => BTreeMap::new(),
        };
        let done = std::mem::replace(&mut k.pending, newer).remove(&id);
        if let Some(files) = done {
            for (instance, f) in files {
                k.done.insert(instance, f);
            }
        }
        // the local copies of this checkpoint replace the older ones; at the end of
        // the job nothing is kept
        let newer_dirs = match id.checked_add(1) {
            Some(next) => k.pending_dirs.split_off(&next),
            None => BTreeMap::new(),
        };
        let mut older = std::mem::replace(&mut k.pending_dirs, newer_dirs);
        if id == u64::MAX {
            remove_dirs(std::mem::take(&mut k.done_dirs));
        } else if let Some(dirs) = older.remove(&id) {
            remove_dirs(std::mem::replace(&mut k.done_dirs, dirs));
        }
        remove_dirs(older.into_values().flatten());
    }

    /// Checkpoint `id` failed: nothing it uploaded may be reused.
    pub(crate) fn abort(&self, id: u64) {
        if let Ok(mut k) = self.known.lock() {
            k.pending.remove(&id);
            if let Some(dirs) = k.pending_dirs.remove(&id) {
                remove_dirs(dirs);
            }
        }
    }
}

fn run(storage: CheckpointStorage, job_id: &str, rx: Receiver<SnapshotReport>, out: Sender<SnapshotReport>, known: Arc<Mutex<Known>>, cancelled: Arc<dyn Fn() -> bool + Send + Sync>) {
    while let Ok(mut report) = rx.recv() {
        if cancelled() {
            discard(report);
            continue;
        }
        let id = report.barrier.checkpoint_id;
        let t0 = std::time::Instant::now();
        match upload(&storage, &mut report, &known) {
            Ok(bytes) => {
                if bytes > 0 {
                    tracing::debug!(checkpoint = id, bytes, ms = t0.elapsed().as_millis() as u64, "uploaded RocksDB checkpoint files");
                }
            }
            Err(e) => {
                tracing::warn!(checkpoint = id, error = %e, "uploading RocksDB checkpoint files failed");
                report.error = Some(format!("uploading the RocksDB files of checkpoint {id}: {e}"));
            }
        }
        if report.error.is_none() && !report.barrier.target {
            let t0 = std::time::Instant::now();
            match write_state_files(&storage, &mut report, job_id) {
                Ok(bytes) => tracing::debug!(checkpoint = id, bytes, ms = t0.elapsed().as_millis() as u64, "wrote state files"),
                Err(e) => {
                    tracing::warn!(checkpoint = id, error = %e, "writing state files failed");
                    report.error = Some(format!("writing the state files of snapshot {id}: {e}"));
                }
            }
        }
        if out.send(report).is_err() {
            return;
        }
    }
}

/// Writes the keyed and operator state of every operator subtask of `report` into its
/// state file in the snapshot's directory (several at a time: every process writes its
/// own, in parallel with the others) and replaces the bytes by where they are. Returns
/// the bytes written.
fn write_state_files(storage: &CheckpointStorage, report: &mut SnapshotReport, job_id: &str) -> Result<u64, StorageError> {
    let dir = layout::snapshot_dir(report.barrier.checkpoint_id, report.barrier.savepoint, job_id);
    let mut objects = Vec::new();
    for snap in &mut report.operators {
        let (name, bytes, w) = pack_state_file(snap);
        if !bytes.is_empty() {
            objects.push((format!("{dir}/{name}"), bytes));
        }
        snap.written = Some(w);
    }
    storage.put_all(objects)
}

/// Moves the keyed and operator state of `snap` into the bytes of its state file
/// (`layout::state_file`): the file's name, its bytes, and where each piece is.
pub(crate) fn pack_state_file(snap: &mut OperatorSnapshot) -> (String, Vec<u8>, WrittenState) {
    let name = layout::state_file(&snap.uid, snap.subtask);
    let mut bytes = Vec::new();
    let mut w = WrittenState::default();
    for (kg, blob) in std::mem::take(&mut snap.keyed) {
        w.key_groups.insert(kg, FileRange { file: name.clone(), offset: bytes.len() as u64, length: blob.len() as u64 });
        bytes.extend_from_slice(&blob);
    }
    if let Some(blob) = snap.operator.take() {
        w.operator = Some(FileRange { file: name.clone(), offset: bytes.len() as u64, length: blob.len() as u64 });
        bytes.extend_from_slice(&blob);
    }
    w.bytes = bytes.len() as u64;
    (name, bytes, w)
}

/// Removes the local database checkpoints of a report that will not be uploaded.
pub(crate) fn discard(report: SnapshotReport) {
    for snap in report.operators {
        if let Some(db) = snap.database {
            let _ = std::fs::remove_dir_all(&db.local_dir);
        }
    }
}

/// Uploads the database files of every operator of `report` (all at once, several
/// in parallel) and replaces each local checkpoint by its handles. Returns the bytes.
fn upload(storage: &CheckpointStorage, report: &mut SnapshotReport, known: &Mutex<Known>) -> Result<u64, StorageError> {
    let id = report.barrier.checkpoint_id;
    let dir = layout::checkpoint_dir(id);
    let mut uploads = Vec::new();
    // (index of the operator, index of its file) for every upload, in order
    let mut slots: Vec<(usize, usize)> = Vec::new();
    let mut handles: Vec<Option<DatabaseFiles>> = vec![None; report.operators.len()];
    let mut locals = Vec::new();
    {
        let k = known.lock().map_err(|_| StorageError::Corrupt { url: storage.url().into(), reason: "upload state poisoned".into() })?;
        for (i, snap) in report.operators.iter().enumerate() {
            let Some(db) = &snap.database else { continue };
            let (files, up) = plan(&dir, db, k.done.get(&db.instance));
            for (file, rel, local) in up {
                slots.push((i, file));
                uploads.push((rel, local));
            }
            handles[i] = Some(files);
            locals.push(db.local_dir.clone());
        }
    }
    let done = match storage.put_files_hashed(uploads) {
        Ok(done) => done,
        Err(e) => {
            remove_dirs(locals);
            return Err(e);
        }
    };
    let mut bytes = 0;
    for ((i, file), (size, hash)) in slots.into_iter().zip(done) {
        if let Some(h) = handles[i].as_mut() {
            let f = &mut h.files[file];
            f.size = size;
            f.hash = Some(format!("{hash:016x}"));
        }
        bytes += size;
        report.operators[i].uploaded_bytes += size;
    }
    let mut pending: InstanceFiles = HashMap::new();
    for (snap, h) in report.operators.iter_mut().zip(handles) {
        let (Some(db), Some(h)) = (snap.database.take(), h) else { continue };
        let shared: HashMap<String, DatabaseFile> = h.files.iter().filter(|f| f.is_shared()).map(|f| (f.name.clone(), f.clone())).collect();
        pending.insert(db.instance, shared);
        snap.files = Some(h);
    }
    match known.lock() {
        Ok(mut k) => {
            k.pending.entry(id).or_default().extend(pending);
            k.pending_dirs.entry(id).or_default().extend(locals);
        }
        Err(_) => remove_dirs(locals),
    }
    Ok(bytes)
}

/// The handles of `db`'s files and what to upload for them: `(index of the file,
/// relative path, local file)`. SST files of the last completed checkpoint (`done`,
/// same name and size), or of the job's own checkpoint the database was restored from
/// (`db.inherited`), are referenced without uploading them again.
fn plan(dir: &str, db: &DbCheckpoint, done: Option<&HashMap<String, DatabaseFile>>) -> (DatabaseFiles, Vec<(usize, String, PathBuf)>) {
    let mut files = Vec::with_capacity(db.files.len());
    let mut up = Vec::new();
    for f in &db.files {
        let i = files.len();
        if f.name.ends_with(".sst") {
            let restored = || db.inherited.iter().find(|p| p.name == f.name && p.size == f.size);
            if let Some(prev) = done.and_then(|d| d.get(&f.name)).filter(|p| p.size == f.size).or_else(restored) {
                files.push(prev.clone());
                continue;
            }
            let name = format!("{}-{}", db.instance, f.name);
            up.push((i, format!("{}/{}/{name}", layout::CHECKPOINTS, layout::SHARED), db.local_dir.join(&f.name)));
            files.push(DatabaseFile { name: f.name.clone(), path: format!("../{}/{name}", layout::SHARED), size: f.size, hash: None });
        } else {
            let rel = format!("{}/{}", db.instance, f.name);
            up.push((i, format!("{dir}/{rel}"), db.local_dir.join(&f.name)));
            files.push(DatabaseFile { name: f.name.clone(), path: rel, size: f.size, hash: None });
        }
    }
    (DatabaseFiles { key_groups: [db.start, db.end], files }, up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::rocksdb::DbFile;

    /// Each process writes its own state files into the snapshot's directory; what
    /// reaches the coordinator are only the handles, and they point at the right bytes.
    #[test]
    fn state_files_are_written_by_the_process_and_reported_as_ranges() {
        let dir = std::env::temp_dir().join(format!("weir-upload-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = CheckpointStorage::open(&dir.to_string_lossy()).unwrap();
        let snap = |uid: &str, keyed: Vec<(u32, Vec<u8>)>, operator: Option<Vec<u8>>| OperatorSnapshot { uid: uid.into(), subtask: 1, keyed, operator, ..Default::default() };
        for (savepoint, want_dir) in [(false, "checkpoints/chk-7"), (true, "savepoints/sp-7-abcdef12")] {
            let mut report = SnapshotReport {
                barrier: crate::exec::Barrier { checkpoint_id: 7, timestamp: 0, savepoint, stop: false, target: false },
                operators: vec![snap("win", vec![(3, b"kg3".to_vec()), (4, b"group4".to_vec())], Some(b"op".to_vec())), snap("src", vec![], None)],
                error: None,
            };
            let bytes = write_state_files(&storage, &mut report, "abcdef1234567890").unwrap();
            assert_eq!(bytes, 11);
            let w = report.operators[0].written.clone().unwrap();
            assert!(report.operators[0].keyed.is_empty() && report.operators[0].operator.is_none(), "no state bytes travel to the coordinator");
            let file = storage.get(&format!("{want_dir}/win-1.state")).unwrap();
            let slice = |r: &FileRange| file[r.offset as usize..(r.offset + r.length) as usize].to_vec();
            assert_eq!(slice(&w.key_groups[&4]), b"group4");
            assert_eq!(slice(&w.key_groups[&3]), b"kg3");
            assert_eq!(slice(w.operator.as_ref().unwrap()), b"op");
            // nothing to write: no file, empty handles
            assert_eq!(report.operators[1].written.as_ref().map(|w| w.bytes), Some(0));
            assert!(storage.get(&format!("{want_dir}/src-1.state")).is_err());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_files_of_the_last_completed_checkpoint_are_reused() {
        let db = DbCheckpoint {
            local_dir: "/x".into(),
            instance: "store-0-ab".into(),
            start: 0,
            end: 9,
            files: vec![DbFile { name: "000007.sst".into(), size: 10 }, DbFile { name: "000009.sst".into(), size: 5 }, DbFile { name: "MANIFEST-000005".into(), size: 3 }],
            inherited: vec![],
        };
        let (h, up) = plan("checkpoints/chk-4", &db, None);
        assert_eq!(up.len(), 3);
        assert_eq!(up[0].1, "checkpoints/shared/store-0-ab-000007.sst");
        assert_eq!(up[2].1, "checkpoints/chk-4/store-0-ab/MANIFEST-000005");
        assert_eq!(h.files[2].path, "store-0-ab/MANIFEST-000005");
        let mut done = HashMap::new();
        done.insert("000007.sst".to_string(), DatabaseFile { name: "000007.sst".into(), path: "../shared/store-0-ab-000007.sst".into(), size: 10, hash: Some("1".into()) });
        let (h, up) = plan("checkpoints/chk-5", &db, Some(&done));
        assert_eq!(up.iter().map(|u| u.0).collect::<Vec<_>>(), vec![1, 2], "000007.sst is reused");
        assert_eq!(h.files[0].hash.as_deref(), Some("1"));
        // a database restored from the job's own checkpoint references its files
        let restored = DbCheckpoint { inherited: vec![DatabaseFile { name: "000009.sst".into(), path: "../shared/store-0-old-000009.sst".into(), size: 5, hash: Some("2".into()) }], ..db.clone() };
        let (h, up) = plan("checkpoints/chk-5", &restored, Some(&done));
        assert_eq!(up.iter().map(|u| u.0).collect::<Vec<_>>(), vec![2], "only the MANIFEST is uploaded");
        assert_eq!(h.files[1].path, "../shared/store-0-old-000009.sst");
        // ... but only while name and size match
        let changed = DbCheckpoint { files: vec![DbFile { name: "000009.sst".into(), size: 6 }], ..restored };
        assert_eq!(plan("checkpoints/chk-6", &changed, None).1.len(), 1);
    }
}
