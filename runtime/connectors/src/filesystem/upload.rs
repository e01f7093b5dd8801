//! The exactly-once part-file sink on a bucket (`'path' = 's3://bucket/prefix/'`,
//! `gs://`, `az://`): each part file is a multipart upload, committed in the same two
//! phases as a local part file (as Flink's S3 `RecoverableWriter` does).
//!
//! - **Writing**: a part file's bytes are buffered; each time the buffer passes the
//!   part size (`'sink.upload.part-size'`, at least 5 MiB: S3's smallest part but the
//!   last) it is handed to the part file's upload task, which runs on a small Tokio
//!   runtime of the sink subtask (one worker thread) and uploads the parts in order
//!   while the sink goes on encoding rows (at most two parts wait: then the sink waits).
//!   The upload itself is created with the first part, and with it a *marker*
//!   `<prefix>/.inprogress/<part name>` holding the object key and the upload id
//!   (hidden: the source and readers skip it).
//! - **Phase one** (`pre_commit`, at the checkpoint barrier; also when a part rolls by
//!   size or age): the part file's last part is uploaded and the committable records
//!   the key, the upload id, the part ids (ETags) and the size. Nothing is visible yet:
//!   an incomplete multipart upload is no object.
//! - **Phase two** (`commit`, when the checkpoint completes): the upload is completed,
//!   and the object appears under its final name at once; the marker is deleted.
//!   Idempotent: after a restore the restored committables are completed again; an
//!   upload completed before (the store no longer knows the id) is done when the object
//!   exists with the recorded size, and is an error naming the key when it does not.
//! - **Orphans**: the uploads a failed run started after its last completed checkpoint
//!   are referenced by no checkpoint. At its first commit after it opens (when every
//!   subtask has completed its restored committables), a subtask aborts the uploads of
//!   the markers of other runs of its subtask index (and of the indices `>=` the new
//!   parallelism that map to it, after a rescale down) and deletes their markers. One
//!   job writes a prefix: two jobs writing the same prefix would abort each other's.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use weir::connector::ConnectorError;
use weir::connector::files::IN_PROGRESS;

use super::store::{BucketUrl, StoreError};

/// S3's smallest part (all parts of an upload but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// A bucket the sink writes to: its client (as an object store and as multipart
/// uploads) and the runtime that drives it from the sink's thread.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    rt: tokio::runtime::Runtime,
    /// `scheme://bucket`
    root: String,
}

impl std::fmt::Debug for Objects {
    // not the store: its configuration holds the credentials
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("root", &self.root).finish()
    }
}

impl Objects {
    /// The client of `url`'s bucket, from the environment (nothing is sent yet).
    pub fn open(url: &BucketUrl) -> Result<Self, StoreError> {
        let (store, multipart) = super::store::client(url)?;
        Self::with_stores(store, multipart, &url.root)
    }

    /// Over any store of both kinds (tests: an in-memory one), `root` naming it.
    pub fn with_store<S: ObjectStore + MultipartStore>(store: Arc<S>, root: &str) -> Result<Self, StoreError> {
        Self::with_stores(store.clone(), store, root)
    }

    fn with_stores(store: Arc<dyn ObjectStore>, multipart: Arc<dyn MultipartStore>, root: &str) -> Result<Self, StoreError> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("weir-upload").enable_all().build().map_err(|source| StoreError::Runtime { url: root.to_string(), source })?;
        Ok(Objects { store, multipart, rt, root: root.trim_end_matches('/').to_string() })
    }

    /// The URL of `path` in this bucket.
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}/{path}", self.root)
    }

    fn err(&self, what: &'static str, path: &Path, source: object_store::Error) -> ConnectorError {
        StoreError::Store { what, url: self.url_of(path), source }.into()
    }

    /// Writes an (empty or small) object at once: `_SUCCESS` markers.
    pub fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), ConnectorError> {
        self.rt.block_on(self.store.put(path, PutPayload::from(bytes))).map(|_| ()).map_err(|e| self.err("writing", path, e))
    }

    /// The object's size, `None` when there is none.
    pub fn size(&self, path: &Path) -> Result<Option<u64>, ConnectorError> {
        match self.rt.block_on(self.store.head(path)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("checking", path, e)),
        }
    }

    /// Every object under the prefix `path` (at any depth), for tests and tools.
    pub fn list_all(&self, path: &Path) -> Result<Vec<(Path, u64)>, ConnectorError> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut s = self.store.list(Some(path));
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| self.err("listing", path, e))?;
                out.push((m.location, m.size));
            }
            out.sort();
            Ok(out)
        })
    }

    /// The whole object (for tests and tools).
    pub fn get(&self, path: &Path) -> Result<Bytes, ConnectorError> {
        self.rt.block_on(async { self.store.get(path).await?.bytes().await }).map_err(|e| self.err("reading", path, e))
    }

    fn delete(&self, path: &Path) -> Result<(), ConnectorError> {
        match self.rt.block_on(self.store.delete(path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", path, e)),
        }
    }

    /// Phase two of one part file: completes its upload (see the module).
    fn complete(&self, u: &Uploaded) -> Result<(), ConnectorError> {
        let key = parse_key(&u.key)?;
        let parts: Vec<PartId> = u.parts.iter().map(|p| PartId { content_id: p.clone() }).collect();
        match self.rt.block_on(self.multipart.complete_multipart(&key, &u.upload_id, parts)) {
            Ok(_) => debug!(object = %self.url_of(&key), bytes = u.size, "part object committed"),
            Err(e) => match self.size(&key)? {
                // completed before (a restored committable, or a retried request)
                Some(size) if size == u.size => {}
                Some(size) => return Err(ConnectorError::Other(format!("cannot commit {}: its upload is gone and the object has {size} bytes, not the {} written: {e}", self.url_of(&key), u.size))),
                None => {
                    return Err(ConnectorError::Other(format!(
                        "cannot commit {}: its multipart upload {} is gone (aborted, or expired by a lifecycle rule) and there is no such object: {e}",
                        self.url_of(&key),
                        u.upload_id
                    )));
                }
            },
        }
        if let Some(m) = &u.marker {
            self.delete(&parse_key(m)?)?;
        }
        Ok(())
    }

    /// Aborts an upload (one already gone is fine).
    fn abort(&self, key: &Path, upload_id: &str) -> Result<(), ConnectorError> {
        match self.rt.block_on(self.multipart.abort_multipart(key, &upload_id.to_string())) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("aborting the upload of", key, e)),
        }
    }
}

fn parse_key(key: &str) -> Result<Path, ConnectorError> {
    Path::parse(key).map_err(|e| ConnectorError::Other(format!("filesystem sink: bad object key '{key}': {e}")))
}

/// A part file uploaded and not yet committed: what a checkpoint commits.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// the object's key
    pub key: String,
    pub upload_id: String,
    /// the part ids (ETags), in order
    pub parts: Vec<String>,
    /// bytes in all
    pub size: u64,
    /// the key of its in-progress marker
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
}

/// What an in-progress marker holds.
#[derive(Serialize, Deserialize)]
struct Marker {
    key: String,
    upload_id: String,
}

type UploadResult = Result<(String, Vec<String>), (&'static str, object_store::Error)>;

/// One part file being uploaded (see the module): bytes buffered, full parts handed
/// to its upload task.
struct Upload {
    objects: Arc<Objects>,
    key: Path,
    marker: Path,
    buf: Vec<u8>,
    part_size: usize,
    bytes: u64,
    tx: Option<mpsc::Sender<Bytes>>,
    task: Option<tokio::task::JoinHandle<UploadResult>>,
}

/// Creates the upload and its marker, then uploads the parts as they come.
/// (Not the [`Objects`]: the last of them must not be dropped on its own runtime.)
async fn upload_task(store: Arc<dyn ObjectStore>, multipart: Arc<dyn MultipartStore>, key: Path, marker: Path, mut rx: mpsc::Receiver<Bytes>) -> UploadResult {
    let id = multipart.create_multipart(&key).await.map_err(|e| ("starting the upload of", e))?;
    let m = serde_json::to_vec(&Marker { key: key.to_string(), upload_id: id.clone() }).unwrap_or_default();
    if let Err(e) = store.put(&marker, PutPayload::from(m)).await {
        let _ = multipart.abort_multipart(&key, &id).await;
        return Err(("writing the in-progress marker of", e));
    }
    let mut parts = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let p = multipart.put_part(&key, &id, parts.len(), PutPayload::from(chunk)).await.map_err(|e| ("uploading a part of", e))?;
        parts.push(p.content_id);
    }
    Ok((id, parts))
}

impl Upload {
    fn new(objects: Arc<Objects>, key: Path, marker: Path, part_size: usize) -> Self {
        Upload { objects, key, marker, buf: Vec::new(), part_size, bytes: 0, tx: None, task: None }
    }

    /// The task's error (it ended early).
    fn task_error(&mut self) -> ConnectorError {
        self.tx = None;
        match self.task.take().map(|t| self.objects.rt.block_on(t)) {
            Some(Ok(Err((what, e)))) => self.objects.err(what, &self.key, e),
            Some(Err(e)) => ConnectorError::Other(format!("uploading {}: the upload task failed: {e}", self.objects.url_of(&self.key))),
            _ => ConnectorError::Other(format!("uploading {}: the upload task ended", self.objects.url_of(&self.key))),
        }
    }

    /// Hands `chunk` to the upload task as the next part.
    fn ship(&mut self, chunk: Vec<u8>) -> Result<(), ConnectorError> {
        if self.tx.is_none() {
            let (tx, rx) = mpsc::channel(2);
            let (store, multipart) = (self.objects.store.clone(), self.objects.multipart.clone());
            self.task = Some(self.objects.rt.spawn(upload_task(store, multipart, self.key.clone(), self.marker.clone(), rx)));
            self.tx = Some(tx);
        }
        let sent = self.tx.as_ref().map(|tx| tx.blocking_send(Bytes::from(chunk)).is_ok()).unwrap_or(false);
        if !sent {
            return Err(self.task_error());
        }
        Ok(())
    }

    /// Uploads the last part and waits for all: what phase two completes.
    fn finish(mut self) -> Result<Uploaded, ConnectorError> {
        if !self.buf.is_empty() || self.tx.is_none() {
            let last = std::mem::take(&mut self.buf);
            self.ship(last)?;
        }
        self.tx = None;
        let Some(task) = self.task.take() else { return Err(self.task_error()) };
        let (upload_id, parts) = match self.objects.rt.block_on(task) {
            Ok(Ok(r)) => r,
            Ok(Err((what, e))) => return Err(self.objects.err(what, &self.key, e)),
            Err(e) => return Err(ConnectorError::Other(format!("uploading {}: the upload task failed: {e}", self.objects.url_of(&self.key)))),
        };
        Ok(Uploaded { key: self.key.to_string(), upload_id, parts, size: self.bytes, marker: Some(self.marker.to_string()) })
    }
}

impl Write for Upload {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        self.bytes += b.len() as u64;
        // parts of exactly the part size (some stores want them equal), the rest kept
        while self.buf.len() >= self.part_size {
            let mut next = Vec::with_capacity(self.part_size.min(64 << 20));
            next.extend_from_slice(&self.buf[self.part_size..]);
            self.buf.truncate(self.part_size);
            let part = std::mem::replace(&mut self.buf, next);
            self.ship(part).map_err(std::io::Error::other)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An open part file: records appended, or a Parquet file (its footer at the close).
enum Body {
    Rows(Upload),
    Parquet(Box<ArrowWriter<Upload>>),
}

struct OpenObject {
    body: Body,
    /// wall-clock time it was opened (ms)
    opened: i64,
}

/// The part files of a sink on a bucket, one open per bucket directory (as
/// [`weir::connector::files::BucketWriter`] and the Parquet parts are on a local
/// directory): `<prefix>/<bucket>/part-<run>-<subtask>-<n>.<ext>`.
pub struct ObjectParts {
    url: BucketUrl,
    objects: Option<Arc<Objects>>,
    ext: &'static str,
    /// Parquet files of this schema, else records
    parquet: Option<(SchemaRef, WriterProperties)>,
    roll_bytes: u64,
    rollover_ms: Option<i64>,
    part_size: usize,
    run: String,
    subtask: u32,
    parallelism: u32,
    seq: u64,
    open: HashMap<String, OpenObject>,
    staged: Vec<Uploaded>,
    /// opened (a commit now is the engine's, not a restore's)
    opened: bool,
    /// the orphans of other runs were aborted
    cleaned: bool,
}

impl ObjectParts {
    /// Part files under the prefix `url`, records (`parquet: None`) or Parquet files.
    pub fn new(url: BucketUrl, ext: &'static str, parquet: Option<(SchemaRef, WriterProperties)>, roll_bytes: u64, rollover_interval: Option<std::time::Duration>, part_size: u64) -> Self {
        let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0));
        ObjectParts {
            url,
            objects: None,
            ext,
            parquet,
            roll_bytes: roll_bytes.max(1),
            rollover_ms: rollover_interval.map(|d| d.as_millis().min(i64::MAX as u128) as i64),
            part_size: part_size.clamp(1, 1 << 32) as usize,
            run,
            subtask: 0,
            parallelism: 1,
            seq: 0,
            open: HashMap::new(),
            staged: Vec::new(),
            opened: false,
            cleaned: false,
        }
    }

    /// Over a given client (tests: an in-memory store).
    pub fn with_objects(mut self, objects: Arc<Objects>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// The bucket's client, made at the first use (a restore commits before `open`).
    pub fn objects(&mut self) -> Result<Arc<Objects>, ConnectorError> {
        if let Some(o) = &self.objects {
            return Ok(o.clone());
        }
        let o = Arc::new(Objects::open(&self.url)?);
        self.objects = Some(o.clone());
        Ok(o)
    }

    /// The prefix's URL (with its `/`).
    pub fn display(&self) -> String {
        if self.url.path.as_ref().is_empty() { format!("{}/", self.url.root) } else { format!("{}/{}/", self.url.root, self.url.path) }
    }

    /// The key of `rel` (a `/`-separated path) under the prefix.
    fn key(&self, rel: &str) -> Result<Path, ConnectorError> {
        let k = if self.url.path.as_ref().is_empty() { rel.to_string() } else { format!("{}/{rel}", self.url.path) };
        parse_key(&k)
    }

    /// The subtask names the part files; the parallelism says which orphans are its own.
    pub fn open(&mut self, subtask: u32, parallelism: u32) -> Result<(), ConnectorError> {
        self.subtask = subtask;
        self.parallelism = parallelism.max(1);
        self.objects()?;
        self.opened = true;
        Ok(())
    }

    /// Whether the orphans of other runs were aborted (at the first commit after the
    /// open: until then every checkpoint needs a committable).
    pub fn cleaned(&self) -> bool {
        self.cleaned
    }

    /// Whether `bucket` has an open part file.
    pub fn is_open(&self, bucket: &str) -> bool {
        self.open.contains_key(bucket)
    }

    fn open_part(&mut self, bucket: &str) -> Result<&mut OpenObject, ConnectorError> {
        if !self.open.contains_key(bucket) {
            self.seq += 1;
            let name = format!("part-{}-{}-{}.{}", self.run, self.subtask, self.seq, self.ext);
            let key = if bucket.is_empty() { self.key(&name)? } else { self.key(&format!("{bucket}/{name}"))? };
            let marker = self.key(&format!("{IN_PROGRESS}/{name}"))?;
            let up = Upload::new(self.objects()?, key, marker, self.part_size);
            let body = match &self.parquet {
                None => Body::Rows(up),
                Some((schema, props)) => {
                    Body::Parquet(Box::new(ArrowWriter::try_new(up, schema.clone(), Some(props.clone())).map_err(|e| ConnectorError::Other(format!("filesystem sink {}{name}: {e}", self.display())))?))
                }
            };
            self.open.insert(bucket.to_string(), OpenObject { body, opened: weir::record::now_ms() });
        }
        self.open.get_mut(bucket).ok_or_else(|| ConnectorError::Other("filesystem sink: no open part".into()))
    }

    /// Appends `bytes` (whole records) to the open part file of `bucket`.
    pub fn write(&mut self, bucket: &str, bytes: &[u8]) -> Result<(), ConnectorError> {
        let o = self.open_part(bucket)?;
        let Body::Rows(up) = &mut o.body else { return Err(ConnectorError::Other("filesystem sink: records written to a Parquet part".into())) };
        up.write_all(bytes).map_err(|e| ConnectorError::Other(e.to_string()))?;
        if up.bytes >= self.roll_bytes {
            self.close(bucket)?;
        }
        Ok(())
    }

    /// Appends the rows of `batch` (the files' schema) to the open Parquet part of `bucket`.
    pub fn write_batch(&mut self, bucket: &str, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (display, roll) = (self.display(), self.roll_bytes);
        let batch = match &self.parquet {
            Some((schema, _)) => super::format::parquet::conform_to(schema, batch).map_err(|e| ConnectorError::Other(format!("filesystem sink {display}: {e}")))?,
            None => return Err(ConnectorError::Other("filesystem sink: a batch written to a records part".into())),
        };
        let o = self.open_part(bucket)?;
        let Body::Parquet(w) = &mut o.body else { return Err(ConnectorError::Other("filesystem sink: a batch written to a records part".into())) };
        w.write(&batch).map_err(|e| ConnectorError::Other(format!("filesystem sink {display}: writing Parquet: {e}")))?;
        if (w.bytes_written() + w.in_progress_size()) as u64 >= roll {
            self.close(bucket)?;
        }
        Ok(())
    }

    /// Closes the part file of `bucket`: its last part uploaded, staged.
    fn close(&mut self, bucket: &str) -> Result<(), ConnectorError> {
        let Some(o) = self.open.remove(bucket) else { return Ok(()) };
        let up = match o.body {
            Body::Rows(up) => up,
            Body::Parquet(w) => w.into_inner().map_err(|e| ConnectorError::Other(format!("filesystem sink {}: writing a Parquet footer: {e}", self.display())))?,
        };
        let u = up.finish()?;
        debug!(object = %u.key, bytes = u.size, parts = u.parts.len(), "part object uploaded");
        self.staged.push(u);
        Ok(())
    }

    /// Rolls the part files open for longer than the rollover interval (at `now`, ms).
    pub fn roll_older(&mut self, now: i64) -> Result<(), ConnectorError> {
        let Some(limit) = self.rollover_ms else { return Ok(()) };
        let old: Vec<String> = self.open.iter().filter(|(_, o)| now.saturating_sub(o.opened) >= limit).map(|(b, _)| b.clone()).collect();
        for b in old {
            self.close(&b)?;
        }
        Ok(())
    }

    /// Phase one: closes every open part file (its last part uploaded); the uploads to
    /// complete (also those rolled before).
    pub fn pre_commit(&mut self) -> Result<Vec<Uploaded>, ConnectorError> {
        let buckets: Vec<String> = self.open.keys().cloned().collect();
        for b in buckets {
            self.close(&b)?;
        }
        Ok(std::mem::take(&mut self.staged))
    }

    /// Phase two: completes the uploads (idempotently); at the first commit after the
    /// open, aborts the orphaned uploads of other runs (see the module).
    pub fn commit(&mut self, uploads: &[Uploaded]) -> Result<(), ConnectorError> {
        let objects = self.objects()?;
        for u in uploads {
            objects.complete(u)?;
        }
        if self.opened && !self.cleaned {
            self.abort_orphans()?;
            self.cleaned = true;
        }
        Ok(())
    }

    /// Aborts the uploads of the in-progress markers of other runs of this subtask's
    /// indices; how many.
    pub fn abort_orphans(&mut self) -> Result<usize, ConnectorError> {
        let objects = self.objects()?;
        let dir = self.key(IN_PROGRESS)?;
        let mut n = 0;
        for (marker, _) in objects.list_all(&dir)? {
            let Some(name) = marker.filename() else { continue };
            // part-<run>-<subtask>-<n>.<ext>
            let mut it = name.splitn(4, '-');
            let (Some("part"), Some(run), Some(sub)) = (it.next(), it.next(), it.next().and_then(|s| s.parse::<u32>().ok())) else { continue };
            let mine = sub == self.subtask || (sub >= self.parallelism && sub % self.parallelism == self.subtask);
            if !mine || run == self.run {
                continue;
            }
            let m: Marker = match serde_json::from_slice(&objects.get(&marker)?) {
                Ok(m) => m,
                Err(e) => {
                    warn!(marker = %objects.url_of(&marker), error = %e, "unreadable in-progress marker deleted");
                    objects.delete(&marker)?;
                    continue;
                }
            };
            objects.abort(&parse_key(&m.key)?, &m.upload_id)?;
            objects.delete(&marker)?;
            n += 1;
        }
        if n > 0 {
            info!(prefix = %self.display(), subtask = self.subtask, uploads = n, "aborted the multipart uploads no checkpoint references");
        }
        Ok(n)
    }

    /// Writes the success file of the partition directory `partition` (`_SUCCESS`).
    pub fn success(&mut self, partition: &str, name: &str) -> Result<(), ConnectorError> {
        let key = self.key(&format!("{partition}/{name}"))?;
        self.objects()?.put(&key, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn parts(store: &Arc<InMemory>, roll: u64, part: u64) -> ObjectParts {
        let url = BucketUrl::parse("s3://b/out/").unwrap();
        let o = Arc::new(Objects::with_store(store.clone(), "s3://b").unwrap());
        ObjectParts::new(url, "csv", None, roll, None, part).with_objects(o)
    }

    fn visible(store: &Arc<InMemory>) -> Vec<(String, String)> {
        let o = Objects::with_store(store.clone(), "s3://b").unwrap();
        o.list_all(&Path::from("out"))
            .unwrap()
            .into_iter()
            .filter(|(p, _)| !p.as_ref().contains(IN_PROGRESS))
            .map(|(p, _)| (p.to_string(), String::from_utf8(o.get(&p).unwrap().to_vec()).unwrap()))
            .collect()
    }

    fn markers(store: &Arc<InMemory>) -> usize {
        Objects::with_store(store.clone(), "s3://b").unwrap().list_all(&Path::from(format!("out/{IN_PROGRESS}"))).unwrap().len()
    }

    #[test]
    fn uploads_become_objects_only_at_the_commit_and_idempotently() {
        let store = Arc::new(InMemory::new());
        let mut w = parts(&store, 1 << 30, 4);
        w.open(0, 1).unwrap();
        w.write("a=1", b"x,1\ny,2\n").unwrap();
        w.write("", b"z,3\n").unwrap();
        assert!(visible(&store).is_empty(), "nothing visible while writing");
        let staged = w.pre_commit().unwrap();
        assert_eq!(staged.len(), 2);
        assert_eq!(staged.iter().map(|u| u.parts.len()).sum::<usize>(), 3, "8 bytes in two 4-byte parts, 4 bytes in one");
        assert!(visible(&store).is_empty(), "nothing visible before the commit");
        assert_eq!(markers(&store), 2);
        w.commit(&staged).unwrap();
        let got = visible(&store);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().any(|(k, t)| k.starts_with("out/a=1/part-") && k.ends_with("-0-1.csv") && t == "x,1\ny,2\n"), "{got:?}");
        assert!(got.iter().any(|(k, t)| k.starts_with("out/part-") && t == "z,3\n"), "{got:?}");
        assert_eq!(markers(&store), 0, "markers deleted at the commit");
        // again, as after a restore: the uploads are gone, the objects have their sizes
        w.commit(&staged).unwrap();
        // an upload that never completed and has no object is an error naming the key
        let mut lost = staged[0].clone();
        lost.key = "out/lost.csv".into();
        let e = w.commit(&[lost]).unwrap_err().to_string();
        assert!(e.contains("cannot commit s3://b/out/lost.csv") && e.contains("no such object"), "{e}");
    }

    #[test]
    fn a_restored_run_commits_and_aborts_the_orphans_of_the_failed_one() {
        let store = Arc::new(InMemory::new());
        // 2-byte parts: every record is shipped as it is written
        let mut old = parts(&store, 1 << 30, 2);
        old.open(1, 2).unwrap();
        old.write("", b"1\n").unwrap();
        let c1 = old.pre_commit().unwrap();
        old.write("", b"2\n").unwrap(); // after the checkpoint: never committed
        let _c2 = old.pre_commit().unwrap();
        old.write("", b"3\n").unwrap(); // in progress at the failure
        let t = std::time::Instant::now();
        while markers(&store) < 3 && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(markers(&store), 3);
        drop(old);
        // restored at parallelism 1: subtask 0 owns index 1's orphans
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut new = parts(&store, 1 << 30, 1 << 20);
        new.commit(&c1).unwrap(); // the restore (before open): no cleanup yet
        assert_eq!(markers(&store), 2, "the orphans wait for the first checkpoint of the new run");
        new.open(0, 1).unwrap();
        new.write("", b"4\n").unwrap();
        let c = new.pre_commit().unwrap();
        new.commit(&c).unwrap();
        assert_eq!(markers(&store), 0, "the orphans' uploads aborted");
        let mut got: Vec<String> = visible(&store).into_iter().map(|(_, t)| t).collect();
        got.sort();
        assert_eq!(got, vec!["1\n", "4\n"]);
    }
}
