//! Checkpoint storage on any `object_store` URL (`file://`, `s3://`, `gs://`, `az://`,
//! or a plain local path). S3 settings come from the usual `AWS_*` environment
//! variables, including `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` for S3-compatible stores.
//!
//! Guarantees: a snapshot's state files are written before its `_metadata`, and
//! `_latest` is updated only after `_metadata` exists, so a crash at any point leaves
//! either a complete checkpoint or one that is ignored. Reading validates the
//! metadata and falls back to the newest valid checkpoint.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::layout;
use super::shared_files::SharedFiles;
use super::metadata::{CheckpointMetadata, FORMAT_VERSION, FileRange, INCREMENTAL_FORMAT_VERSION};

/// Why checkpoint storage could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("checkpoint storage URL '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("{url}: no _metadata (the checkpoint is incomplete or does not exist)")]
    MissingMetadata { url: String },
    #[error("{url}: corrupt checkpoint: {reason}")]
    Corrupt { url: String, reason: String },
    #[error("{url}: format version {found}, this runtime reads versions {FORMAT_VERSION} to {expected}")]
    WrongVersion { url: String, found: u32, expected: u32 },
    #[error("{url}: taken with max parallelism {found}, the job has {expected} (max parallelism is fixed for a job's lifetime)")]
    WrongMaxParallelism { url: String, found: u32, expected: u32 },
    #[error("{what} {url}: {source}")]
    Store { what: &'static str, url: String, #[source] source: object_store::Error },
    #[error("cannot start the storage I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("local file {path}: {source}")]
    Local { path: std::path::PathBuf, #[source] source: std::io::Error },
}

impl StorageError {
    /// A failure to reach the store (network, permissions, a store that is down) that
    /// may go away by itself, unlike a bad URL or a missing or corrupt snapshot.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Store { source, .. } => !matches!(source, object_store::Error::NotFound { .. }),
            StorageError::Runtime(_) | StorageError::Local { .. } => true,
            _ => false,
        }
    }
}

/// Checkpoints and savepoints of one job under one URL prefix.
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    rt: tokio::runtime::Runtime,
    /// Reference counts of the shared files (coordinator), rebuilt from the
    /// checkpoints' `_metadata` on first use.
    shared: std::sync::Mutex<Option<SharedFiles>>,
}

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStorage").field("url", &self.url).finish()
    }
}

/// Retries of remote stores: bounded well below the checkpoint timeout, so that an
/// unreachable store fails a checkpoint in seconds instead of blocking the
/// coordinator for minutes (object_store's default is 10 retries within 3 minutes).
/// `WEIR_STORAGE_RETRY_TIMEOUT_MS` overrides the bound.
fn retry_config() -> object_store::RetryConfig {
    let timeout = std::env::var("WEIR_STORAGE_RETRY_TIMEOUT_MS").ok().and_then(|v| v.parse().ok()).map(std::time::Duration::from_millis);
    object_store::RetryConfig { max_retries: 4, retry_timeout: timeout.unwrap_or(std::time::Duration::from_secs(20)), ..Default::default() }
}

fn build_store(url: &str) -> Result<(Arc<dyn ObjectStore>, Path, String), StorageError> {
    let bad = |reason: String| StorageError::Url { url: url.to_string(), reason };
    if !url.contains("://") {
        // a plain local path
        let abs = std::path::absolute(url).map_err(|e| bad(e.to_string()))?;
        return build_store(&format!("file://{}", abs.display()));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let dir = parsed.to_file_path().map_err(|_| bad("not an absolute file path".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
            let dir = dir.canonicalize().map_err(|e| bad(format!("cannot resolve {}: {e}", dir.display())))?;
            // rooted at `/` with the directory as prefix, so that `../shared/…` of an
            // incremental checkpoint resolves from a checkpoint directory's URL too
            let prefix = Path::from_absolute_path(&dir).map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(object_store::local::LocalFileSystem::new()), prefix, url.trim_end_matches('/').to_string()))
        }
        "s3" | "s3a" => {
            let bucket = parsed.host_str().ok_or_else(|| bad("no bucket".into()))?;
            let s3 = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry_config()).build().map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(s3), Path::from(parsed.path().trim_matches('/')), url.trim_end_matches('/').to_string()))
        }
        "gs" => {
            let bucket = parsed.host_str().ok_or_else(|| bad("no bucket".into()))?;
            let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).with_retry(retry_config()).build().map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(gcs), Path::from(parsed.path().trim_matches('/')), url.trim_end_matches('/').to_string()))
        }
        "az" | "abfs" | "abfss" => {
            let container = parsed.host_str().ok_or_else(|| bad("no container".into()))?;
            let az = object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(container).with_retry(retry_config()).build().map_err(|e| bad(e.to_string()))?;
            Ok((Arc::new(az), Path::from(parsed.path().trim_matches('/')), url.trim_end_matches('/').to_string()))
        }
        other => Err(bad(format!("unknown scheme '{other}' (use file://, s3://, gs:// or az://)"))),
    }
}

impl CheckpointStorage {
    /// Opens the storage at `url` (nothing is read or written yet).
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let (store, prefix, url) = build_store(url)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(StorageError::Runtime)?;
        Ok(CheckpointStorage { store, prefix, url, rt, shared: Default::default() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of `rel` (a path relative to the prefix).
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{}", self.url, rel)
    }

    /// The store path of `rel`; `..` goes up one level (shared files of incremental
    /// checkpoints are `../shared/…` from a checkpoint directory).
    fn path(&self, rel: &str) -> Path {
        let mut parts: Vec<object_store::path::PathPart<'_>> = self.prefix.parts().collect();
        for part in rel.split('/').filter(|s| !s.is_empty() && *s != ".") {
            if part == ".." {
                parts.pop();
            } else {
                parts.push(object_store::path::PathPart::from(part));
            }
        }
        Path::from_iter(parts)
    }

    /// Writes objects (`(relative path, bytes)`), several at a time; returns the bytes.
    pub fn put_all(&self, objects: Vec<(String, Vec<u8>)>) -> Result<u64, StorageError> {
        use futures::StreamExt;
        let store = self.store.clone();
        let jobs: Vec<(Path, String, Vec<u8>)> = objects.into_iter().map(|(rel, bytes)| (self.path(&rel), self.url_of(&rel), bytes)).collect();
        self.rt.block_on(async move {
            let puts = futures::stream::iter(jobs.into_iter().map(|(path, url, bytes)| {
                let store = store.clone();
                async move {
                    let n = bytes.len() as u64;
                    store.put(&path, PutPayload::from(bytes)).await.map_err(|source| StorageError::Store { what: "writing", url, source })?;
                    Ok::<u64, StorageError>(n)
                }
            }))
            .buffer_unordered(8);
            puts.collect::<Vec<_>>().await.into_iter().sum()
        })
    }

    /// Uploads local files (`(relative path, local file)`), several at a time.
    /// Returns the size and xxh3-64 hash of each, in order.
    pub fn put_files_hashed(&self, files: Vec<(String, std::path::PathBuf)>) -> Result<Vec<(u64, u64)>, StorageError> {
        use futures::StreamExt;
        let store = self.store.clone();
        let jobs: Vec<(Path, String, std::path::PathBuf)> = files.into_iter().map(|(rel, local)| (self.path(&rel), self.url_of(&rel), local)).collect();
        self.rt.block_on(async move {
            let uploads = futures::stream::iter(jobs.into_iter().map(|(path, url, local)| {
                let store = store.clone();
                async move {
                    let bytes = std::fs::read(&local).map_err(|source| StorageError::Local { path: local.clone(), source })?;
                    let n = bytes.len() as u64;
                    let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
                    store.put(&path, PutPayload::from(bytes)).await.map_err(|source| StorageError::Store { what: "writing", url, source })?;
                    Ok::<(u64, u64), StorageError>((n, hash))
                }
            }))
            .buffered(8);
            uploads.collect::<Vec<_>>().await.into_iter().collect()
        })
    }

    /// Uploads local files (`(relative path, local file)`), several at a time.
    pub fn put_files(&self, files: Vec<(String, std::path::PathBuf)>) -> Result<u64, StorageError> {
        Ok(self.put_files_hashed(files)?.iter().map(|f| f.0).sum())
    }

    /// Downloads files, several at a time, checking each one's size and (when
    /// known) hash: a mismatch is a corrupt checkpoint. A file whose `reuse`
    /// candidate exists locally with the right size and hash is linked instead
    /// (local recovery). Returns the bytes downloaded.
    pub fn get_files(&self, files: Vec<Download>) -> Result<u64, StorageError> {
        use futures::StreamExt;
        let store = self.store.clone();
        let jobs: Vec<(Path, String, Download)> = files.into_iter().map(|d| (self.path(&d.rel), self.url_of(&d.rel), d)).collect();
        self.rt.block_on(async move {
            let mut downloads = futures::stream::iter(jobs.into_iter().map(|(path, url, d)| {
                let store = store.clone();
                async move {
                    if let Some(local) = &d.reuse {
                        if reusable(local, d.size, d.hash) && (std::fs::hard_link(local, &d.local).is_ok() || std::fs::copy(local, &d.local).is_ok()) {
                            tracing::debug!(file = %local.display(), "reusing a local copy instead of downloading");
                            return Ok(0u64);
                        }
                    }
                    let bytes = async { store.get(&path).await?.bytes().await }.await.map_err(|source| StorageError::Store { what: "reading", url: url.clone(), source })?;
                    if bytes.len() as u64 != d.size {
                        return Err(StorageError::Corrupt { url, reason: format!("{} bytes, the checkpoint's _metadata says {}", bytes.len(), d.size) });
                    }
                    if let Some(h) = d.hash {
                        let got = xxhash_rust::xxh3::xxh3_64(&bytes);
                        if got != h {
                            return Err(StorageError::Corrupt { url, reason: format!("content hash {got:016x}, the checkpoint's _metadata says {h:016x}") });
                        }
                    }
                    std::fs::write(&d.local, &bytes).map_err(|source| StorageError::Local { path: d.local.clone(), source })?;
                    Ok(bytes.len() as u64)
                }
            }))
            .buffer_unordered(8);
            let mut total = 0;
            while let Some(r) = downloads.next().await {
                total += r?;
            }
            Ok(total)
        })
    }

    /// Deletes one object (missing is fine).
    pub fn delete(&self, rel: &str) -> Result<(), StorageError> {
        match self.rt.block_on(self.store.delete(&self.path(rel))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StorageError::Store { what: "deleting", url: self.url_of(rel), source }),
        }
    }

    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let path = self.path(rel);
        self.rt
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|source| StorageError::Store { what: "writing", url: self.url_of(rel), source })
    }

    pub fn get(&self, rel: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.path(rel);
        self.rt
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|source| StorageError::Store { what: "reading", url: self.url_of(rel), source })
    }

    fn exists(&self, rel: &str) -> Result<bool, StorageError> {
        let path = self.path(rel);
        match self.rt.block_on(self.store.head(&path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StorageError::Store { what: "checking", url: self.url_of(rel), source }),
        }
    }

    /// Whether snapshot directory `dir` has a `_metadata` (a complete snapshot).
    pub fn has_metadata(&self, dir: &str) -> Result<bool, StorageError> {
        self.exists(&format!("{dir}/{}", layout::METADATA))
    }

    /// Reads `range` of a state file of snapshot directory `dir`.
    pub fn read_range(&self, dir: &str, r: &FileRange) -> Result<Vec<u8>, StorageError> {
        let rel = format!("{dir}/{}", r.file);
        let path = self.path(&rel);
        let bytes = self
            .rt
            .block_on(self.store.get_range(&path, r.offset..r.offset + r.length))
            .map_err(|source| StorageError::Store { what: "reading", url: self.url_of(&rel), source })?;
        if bytes.len() as u64 != r.length {
            return Err(StorageError::Corrupt { url: self.url_of(&rel), reason: format!("expected {} bytes at offset {}, found {}", r.length, r.offset, bytes.len()) });
        }
        Ok(bytes.to_vec())
    }

    /// Writes a snapshot: all `files` first, `_metadata` last. Returns the bytes written.
    pub fn write_snapshot(&self, dir: &str, files: Vec<(String, Vec<u8>)>, meta: &CheckpointMetadata) -> Result<u64, StorageError> {
        let mut total = 0u64;
        for (name, bytes) in files {
            total += bytes.len() as u64;
            self.put(&format!("{dir}/{name}"), bytes)?;
        }
        let json = serde_json::to_vec_pretty(meta).map_err(|e| StorageError::Corrupt { url: self.url_of(dir), reason: e.to_string() })?;
        total += json.len() as u64;
        self.put(&format!("{dir}/{}", layout::METADATA), json)?;
        Ok(total)
    }

    /// Points `_latest` at checkpoint `n` (call after its `_metadata` is written).
    pub fn set_latest(&self, n: u64) -> Result<(), StorageError> {
        self.put(&layout::latest_pointer(), format!("chk-{n}\n").into_bytes())
    }

    /// Reads and validates the `_metadata` of snapshot directory `dir`.
    pub fn read_metadata(&self, dir: &str, max_parallelism: Option<u32>) -> Result<CheckpointMetadata, StorageError> {
        let url = self.url_of(dir);
        let rel = format!("{dir}/{}", layout::METADATA);
        if !self.exists(&rel)? {
            return Err(StorageError::MissingMetadata { url });
        }
        let bytes = self.get(&rel)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt { url: url.clone(), reason: format!("_metadata is not JSON: {e}") })?;
        let found = v.get("formatVersion").and_then(|f| f.as_u64()).unwrap_or(0) as u32;
        if !(FORMAT_VERSION..=INCREMENTAL_FORMAT_VERSION).contains(&found) {
            return Err(StorageError::WrongVersion { url, found, expected: INCREMENTAL_FORMAT_VERSION });
        }
        let meta: CheckpointMetadata = serde_json::from_value(v).map_err(|e| StorageError::Corrupt { url: url.clone(), reason: format!("_metadata: {e}") })?;
        if let Some(m) = max_parallelism {
            if meta.max_parallelism != m {
                return Err(StorageError::WrongMaxParallelism { url, found: meta.max_parallelism, expected: m });
            }
        }
        // every referenced file must exist and be long enough
        let mut sizes: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for op in meta.operators.values() {
            for r in op.key_groups.values().chain(op.subtasks.values()) {
                let e = sizes.entry(r.file.as_str()).or_default();
                *e = (*e).max(r.offset + r.length);
            }
        }
        for (file, need) in sizes {
            let rel = format!("{dir}/{file}");
            let path = self.path(&rel);
            let size = match self.rt.block_on(self.store.head(&path)) {
                Ok(m) => m.size,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(StorageError::Corrupt { url: self.url_of(&rel), reason: "state file missing".into() });
                }
                Err(source) => return Err(StorageError::Store { what: "checking", url: self.url_of(&rel), source }),
            };
            if size < need {
                return Err(StorageError::Corrupt { url: self.url_of(&rel), reason: format!("truncated: {size} bytes, metadata needs {need}") });
            }
        }
        if meta.database_files().next().is_some() && found < INCREMENTAL_FORMAT_VERSION {
            return Err(StorageError::Corrupt { url, reason: format!("RocksDB files in a version {found} checkpoint") });
        }
        for f in meta.database_files() {
            let rel = format!("{dir}/{}", f.path);
            let kind = if f.is_shared() { "shared RocksDB file" } else { "RocksDB file" };
            let size = match self.rt.block_on(self.store.head(&self.path(&rel))) {
                Ok(m) => m.size,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(StorageError::Corrupt { url: self.url_of(&rel), reason: format!("{kind} missing") });
                }
                Err(source) => return Err(StorageError::Store { what: "checking", url: self.url_of(&rel), source }),
            };
            if size != f.size {
                return Err(StorageError::Corrupt { url: self.url_of(&rel), reason: format!("{kind} truncated: {size} bytes, metadata says {}", f.size) });
            }
        }
        Ok(meta)
    }

    /// The names of the objects directly under the prefix (e.g. a shared directory).
    pub fn list_names(&self) -> Result<BTreeSet<String>, StorageError> {
        let base = self.path("");
        self.rt
            .block_on(self.store.list(Some(&base)).map_ok(|m| m.location.filename().map(String::from)).try_collect::<Vec<_>>())
            .map(|v| v.into_iter().flatten().collect())
            .map_err(|source| StorageError::Store { what: "listing", url: self.url.clone(), source })
    }

    /// Numbers of the checkpoint directories present (complete or not), ascending.
    pub fn list_checkpoints(&self) -> Result<Vec<u64>, StorageError> {
        let base = self.path(layout::CHECKPOINTS);
        let listing = self
            .rt
            .block_on(self.store.list_with_delimiter(Some(&base)))
            .map_err(|source| StorageError::Store { what: "listing", url: self.url_of(layout::CHECKPOINTS), source })?;
        let mut ids: Vec<u64> = listing.common_prefixes.iter().filter_map(|p| p.filename().and_then(layout::parse_checkpoint_dir)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The newest valid checkpoint: `_latest` if it is valid, else the newest
    /// directory whose metadata validates. Invalid ones are logged and skipped.
    pub fn latest(&self, max_parallelism: Option<u32>) -> Result<Option<(String, CheckpointMetadata)>, StorageError> {
        self.latest_excluding(max_parallelism, &BTreeSet::new())
    }

    /// Like [`CheckpointStorage::latest`], skipping the checkpoints in `bad` (known
    /// not to restore: a shared file is corrupt).
    pub fn latest_excluding(&self, max_parallelism: Option<u32>, bad: &BTreeSet<u64>) -> Result<Option<(String, CheckpointMetadata)>, StorageError> {
        let pointer = layout::latest_pointer();
        let mut tried = None;
        if self.exists(&pointer)? {
            let name = String::from_utf8_lossy(&self.get(&pointer)?).trim().to_string();
            if let Some(n) = layout::parse_checkpoint_dir(&name).filter(|n| !bad.contains(n)) {
                let dir = layout::checkpoint_dir(n);
                match self.read_metadata(&dir, max_parallelism) {
                    Ok(m) => return Ok(Some((dir, m))),
                    Err(e) => tracing::warn!(error = %e, "the latest checkpoint is not usable; looking for an older one"),
                }
                tried = Some(n);
            }
        }
        for n in self.list_checkpoints()?.into_iter().rev() {
            if Some(n) == tried || bad.contains(&n) {
                continue;
            }
            let dir = layout::checkpoint_dir(n);
            match self.read_metadata(&dir, max_parallelism) {
                Ok(m) => return Ok(Some((dir, m))),
                Err(e @ StorageError::WrongMaxParallelism { .. }) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "skipping an unusable checkpoint"),
            }
        }
        Ok(None)
    }

    /// Deletes a snapshot directory and everything in it.
    pub fn delete_dir(&self, dir: &str) -> Result<(), StorageError> {
        let base = self.path(dir);
        let store = self.store.clone();
        self.rt
            .block_on(async move {
                let paths: Vec<Path> = store.list(Some(&base)).map_ok(|m| m.location).try_collect().await?;
                for p in paths {
                    store.delete(&p).await?;
                }
                Ok::<(), object_store::Error>(())
            })
            .map_err(|source| StorageError::Store { what: "deleting", url: self.url_of(dir), source })?;
        if self.url.starts_with("file://") {
            // a local directory outlives its files; without this it would still be listed
            let local = std::path::PathBuf::from(format!("/{}", self.path(dir)));
            if let Err(e) = std::fs::remove_dir_all(&local) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(dir = %local.display(), error = %e, "cannot remove an emptied checkpoint directory");
                }
            }
        }
        Ok(())
    }

    /// Shared files (relative to the prefix) that the `_metadata` of `dir` references,
    /// or `None` when it has no (readable) `_metadata`.
    fn shared_refs(&self, dir: &str) -> Result<Option<BTreeSet<String>>, StorageError> {
        let rel = format!("{dir}/{}", layout::METADATA);
        if !self.exists(&rel)? {
            return Ok(None);
        }
        let meta = match serde_json::from_slice::<CheckpointMetadata>(&self.get(&rel)?) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(dir = %self.url_of(dir), error = %e, "unreadable _metadata: its shared files are not counted");
                return Ok(None);
            }
        };
        Ok(Some(meta.database_files().filter_map(|f| f.path.strip_prefix("../shared/")).map(shared_rel).collect()))
    }

    /// The reference set of the shared files, rebuilt from the `_metadata` of the
    /// checkpoints present when first used (after a coordinator restart).
    fn tracker(&self, retain: usize) -> Result<std::sync::MutexGuard<'_, Option<SharedFiles>>, StorageError> {
        let mut g = self.shared.lock().map_err(|_| StorageError::Corrupt { url: self.url.clone(), reason: "shared file references poisoned".into() })?;
        if g.is_none() {
            let mut retained = Vec::new();
            for n in self.list_checkpoints()? {
                if let Some(refs) = self.shared_refs(&layout::checkpoint_dir(n))? {
                    retained.push((n, refs));
                }
            }
            tracing::info!(checkpoints = retained.len(), "rebuilt the references of shared checkpoint files");
            *g = Some(SharedFiles::rebuild(retain, retained));
        }
        Ok(g)
    }

    /// Checkpoint `id` was triggered (its shared files are in use from now on).
    pub fn shared_begin(&self, id: u64, retain: usize) -> Result<(), StorageError> {
        if let Some(t) = self.tracker(retain)?.as_mut() {
            t.start(id);
        }
        Ok(())
    }

    /// A task acknowledged `files` (paths relative to the checkpoint directory) for
    /// checkpoint `id`.
    pub fn shared_acked<'a>(&self, id: u64, files: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut g) = self.shared.lock() {
            if let Some(t) = g.as_mut() {
                t.acked(id, files.into_iter().filter_map(|f| f.strip_prefix("../shared/")).map(shared_rel));
            }
        }
    }

    /// Checkpoint `id` failed: deletes the shared files only it referenced.
    pub fn shared_failed(&self, id: u64) {
        let released = match self.shared.lock() {
            Ok(mut g) => g.as_mut().map(|t| t.fail(id)).unwrap_or_default(),
            Err(_) => return,
        };
        self.delete_shared(&released);
    }

    fn delete_shared(&self, files: &[String]) {
        for f in files {
            if let Err(e) = self.delete(f) {
                tracing::warn!(file = %self.url_of(f), error = %e, "cannot delete an unreferenced shared file (retried at the next collection)");
            }
        }
        if !files.is_empty() {
            tracing::debug!(files = files.len(), "deleted unreferenced shared files");
        }
    }

    /// Checkpoint `id` is complete (`_metadata` written): keeps the newest `retain`
    /// checkpoints, deletes the older ones and the shared files nothing references any
    /// more. Returns the deleted shared files.
    pub fn shared_complete(&self, id: u64, retain: usize) -> Result<Vec<String>, StorageError> {
        let (released, dropped) = {
            let mut g = self.tracker(retain)?;
            match g.as_mut() {
                Some(t) => t.complete(id),
                None => (Vec::new(), Vec::new()),
            }
        };
        for n in dropped {
            self.delete_dir(&layout::checkpoint_dir(n))?;
        }
        // directories of failed checkpoints older than every retained one
        let oldest = self.tracker(retain)?.as_ref().and_then(|t| t.retained().next()).unwrap_or(id);
        for n in self.list_checkpoints()? {
            if n < oldest {
                self.delete_dir(&layout::checkpoint_dir(n))?;
            }
        }
        self.delete_shared(&released);
        Ok(released)
    }

    /// Deletes the files of the shared directory that no retained checkpoint
    /// references (when no checkpoint is in flight). Returns them.
    pub fn collect_orphans(&self, retain: usize) -> Result<Vec<String>, StorageError> {
        let base = self.path(&format!("{}/{}", layout::CHECKPOINTS, layout::SHARED));
        let listed: Vec<String> = self
            .rt
            .block_on(self.store.list(Some(&base)).map_ok(|m| m.location.filename().map(shared_rel)).try_collect::<Vec<_>>())
            .map_err(|source| StorageError::Store { what: "listing", url: self.url_of(&format!("{}/{}", layout::CHECKPOINTS, layout::SHARED)), source })?
            .into_iter()
            .flatten()
            .collect();
        let orphans = self.tracker(retain)?.as_ref().map(|t| t.orphans(listed.iter().map(String::as_str))).unwrap_or_default();
        self.delete_shared(&orphans);
        Ok(orphans)
    }

    /// Deletes the checkpoint directories without `_metadata` (when no checkpoint is
    /// in flight): what failed or cut-off checkpoints had uploaded, never restorable.
    /// Returns their numbers.
    pub fn delete_incomplete(&self) -> Result<Vec<u64>, StorageError> {
        let mut deleted = Vec::new();
        for id in self.list_checkpoints()? {
            let dir = layout::checkpoint_dir(id);
            if !self.has_metadata(&dir)? {
                self.delete_dir(&dir)?;
                deleted.push(id);
            }
        }
        Ok(deleted)
    }

    /// Keeps the newest `retain` complete checkpoints (and anything newer), deletes the
    /// rest, and deletes the shared files that no retained checkpoint references
    /// (including orphans of failed checkpoints). Returns the deleted shared files.
    pub fn retain(&self, retain: usize) -> Result<Vec<String>, StorageError> {
        let newest = self.list_checkpoints()?.into_iter().rev().find(|n| self.has_metadata(&layout::checkpoint_dir(*n)).unwrap_or(false));
        let mut deleted = Vec::new();
        if let Some(n) = newest {
            if let Some(t) = self.tracker(retain)?.as_mut() {
                t.set_retain(retain);
            }
            deleted = self.shared_complete(n, retain)?;
        }
        deleted.extend(self.collect_orphans(retain)?);
        deleted.sort();
        deleted.dedup();
        Ok(deleted)
    }
}

/// A shared file's path relative to the prefix, from its name.
fn shared_rel(name: &str) -> String {
    format!("{}/{}/{name}", layout::CHECKPOINTS, layout::SHARED)
}

/// Whether local file `p` has `size` bytes (and hash `hash`, when known).
fn reusable(p: &std::path::Path, size: u64, hash: Option<u64>) -> bool {
    match std::fs::metadata(p) {
        Ok(m) if m.len() == size => match hash {
            Some(h) => std::fs::read(p).map(|b| xxhash_rust::xxh3::xxh3_64(&b) == h).unwrap_or(false),
            None => true,
        },
        _ => false,
    }
}

/// A file to download: `rel` (relative to the prefix) into `local`.
#[derive(Clone, Debug)]
pub struct Download {
    pub rel: String,
    pub local: std::path::PathBuf,
    pub size: u64,
    pub hash: Option<u64>,
    /// A local file that may already hold the same bytes (local recovery).
    pub reuse: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{DatabaseFile, DatabaseFiles, INCREMENTAL_FORMAT_VERSION, OperatorState};

    fn meta(n: u64, shared: &[&str]) -> CheckpointMetadata {
        let mut op = OperatorState { parallelism: 1, ..Default::default() };
        let files = shared.iter().map(|f| DatabaseFile { name: f.to_string(), path: format!("../shared/{f}"), size: 1, hash: None }).collect();
        op.databases.insert(0, DatabaseFiles { key_groups: [0, 9], files });
        CheckpointMetadata {
            format_version: INCREMENTAL_FORMAT_VERSION,
            job_id: "j".into(),
            job_name: "j".into(),
            checkpoint_id: n,
            savepoint: false,
            max_parallelism: 10,
            timestamp: 0,
            operators: [("op".to_string(), op)].into_iter().collect(),
        }
    }

    #[test]
    fn retention_deletes_shared_files_by_reference_count() {
        let dir = std::env::temp_dir().join(format!("weir-retain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = CheckpointStorage::open(&dir.to_string_lossy()).unwrap();
        for f in ["a", "b", "c", "d", "orphan"] {
            s.put(&format!("checkpoints/shared/{f}"), vec![0]).unwrap();
        }
        for (n, refs) in [(1u64, &["a", "b"][..]), (2, &["b", "c"]), (3, &["c", "d"])] {
            let m = meta(n, refs);
            s.write_snapshot(&layout::checkpoint_dir(n), vec![], &m).unwrap();
            // the shared files are found from a checkpoint's own URL (`../shared/…`)
            let own = CheckpointStorage::open(&s.url_of(&layout::checkpoint_dir(n))).unwrap();
            own.read_metadata("", Some(10)).unwrap();
        }
        let mut deleted = s.retain(2).unwrap();
        deleted.sort();
        assert_eq!(deleted, vec!["checkpoints/shared/a".to_string(), "checkpoints/shared/orphan".to_string()], "b is still referenced by chk-2; nothing references the orphan (e.g. uploaded by a failed checkpoint)");
        let deleted = s.retain(1).unwrap();
        assert_eq!(deleted, vec!["checkpoints/shared/b".to_string()]);
        let left: Vec<String> = std::fs::read_dir(dir.join("checkpoints/shared")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, vec!["c", "d"]);
        assert_eq!(s.list_checkpoints().unwrap(), vec![3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
