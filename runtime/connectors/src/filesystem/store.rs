//! Buckets as the `filesystem` connector's source path: `s3://bucket/prefix/`
//! (`s3a://` too), `gs://bucket/prefix/`, `az://container/prefix/` (`abfs://`,
//! `abfss://`), through the `object_store` crate, as checkpoint storage opens them.
//! (The sink writes them through [`super::upload`], with the same client settings.)
//!
//! - **Settings** come from the environment, as the store's own tools read them:
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`, `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` (S3-compatible stores),
//!   or the instance's role; `GOOGLE_*` and `AZURE_*` for the others. They are
//!   never logged, and no error shows them.
//! - **One client per source subtask**: a [`Bucket`] owns its store client and a
//!   current-thread Tokio runtime that drives it from the subtask's thread (the
//!   engine's tasks are threads, not async tasks): each request is `block_on`.
//! - **Retries** are object_store's, bounded (4 attempts within 20 s) so that a
//!   store that is down fails the source in seconds (the job then restarts from its
//!   last checkpoint) instead of blocking its checkpoints for minutes.
//! - **Reading** streams the object ([`ObjectRead`], a blocking [`Read`] over the
//!   response body): an object is not held in memory whole.

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

/// Why a bucket could not be used; each names the URL (never a credential).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("'{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("{what} {url}: {source}")]
    Store {
        what: &'static str,
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: cannot start the I/O runtime: {source}")]
    Runtime {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<StoreError> for weir::connector::ConnectorError {
    fn from(e: StoreError) -> Self {
        weir::connector::ConnectorError::Other(e.to_string())
    }
}

/// Whether `path` (the `'path'` option) names a bucket (`s3://`, `gs://`, `az://` …)
/// rather than a local path or `file://` URL.
pub fn is_bucket_url(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| scheme != "file")
}

/// Bounded retries (see the module): a source must not block its checkpoints long.
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig { max_retries: 4, retry_timeout: std::time::Duration::from_secs(20), ..Default::default() }
}

/// The store client of `url`'s bucket, configured from the environment (nothing is
/// sent yet): as an object store, and as the multipart uploads of the sink.
pub(crate) fn client(url: &BucketUrl) -> Result<(Arc<dyn ObjectStore>, Arc<dyn MultipartStore>), StoreError> {
    let bad = |e: object_store::Error| StoreError::Url { url: url.root.clone(), reason: e.to_string() };
    Ok(match url.scheme.as_str() {
        "s3" | "s3a" => {
            let s = Arc::new(object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&url.bucket).with_retry(retry_config()).build().map_err(bad)?);
            (s.clone(), s)
        }
        "gs" => {
            let s = Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(&url.bucket).with_retry(retry_config()).build().map_err(bad)?);
            (s.clone(), s)
        }
        _ => {
            let s = Arc::new(object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(&url.bucket).with_retry(retry_config()).build().map_err(bad)?);
            (s.clone(), s)
        }
    })
}

/// One object or prefix of a bucket, as `'path'` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketUrl {
    /// `scheme://bucket` (the URL of the store's root)
    pub root: String,
    pub scheme: String,
    pub bucket: String,
    /// the key (or prefix), without leading or trailing `/`
    pub path: Path,
    /// the URL ends with `/` (or names the bucket): a prefix, never one object
    pub is_prefix: bool,
}

impl BucketUrl {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Url { url: url.to_string(), reason };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let scheme = parsed.scheme().to_string();
        if !matches!(scheme.as_str(), "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss") {
            return Err(bad(format!("unknown scheme '{scheme}://' (a local path, file://, s3://, gs:// or az://)")));
        }
        let bucket = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no bucket".into()))?.to_string();
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("credentials do not go into the URL (they come from the environment: AWS_ACCESS_KEY_ID …)".into()));
        }
        let path = Path::from_url_path(parsed.path()).map_err(|e| bad(e.to_string()))?;
        let is_prefix = parsed.path().ends_with('/') || path.as_ref().is_empty();
        Ok(BucketUrl { root: format!("{scheme}://{bucket}"), scheme, bucket, path, is_prefix })
    }
}

/// A bucket's store client and the runtime that drives it (one per source subtask).
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// `scheme://bucket`
    root: String,
}

impl std::fmt::Debug for Bucket {
    // not the store: its configuration holds the credentials
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("root", &self.root).finish()
    }
}

impl Bucket {
    /// The client of `url`'s bucket, configured from the environment (nothing is
    /// sent yet).
    pub fn open(url: &BucketUrl) -> Result<Self, StoreError> {
        Self::with_store(client(url)?.0, &url.root)
    }

    /// A bucket over any store (tests: an in-memory one), `root` naming it in errors.
    pub fn with_store(store: Arc<dyn ObjectStore>, root: &str) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| StoreError::Runtime { url: root.to_string(), source })?;
        Ok(Bucket { store, rt, root: root.trim_end_matches('/').to_string() })
    }

    /// The URL of `path` in this bucket.
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}/{path}", self.root)
    }

    /// The URL of the prefix `path` (with its `/`).
    pub fn prefix_url(&self, path: &Path) -> String {
        if path.as_ref().is_empty() { format!("{}/", self.root) } else { format!("{}/{path}/", self.root) }
    }

    /// The objects directly under the prefix `path` (not under its "subdirectories"),
    /// each with its name (the key's last part) and last modification time. The whole
    /// listing or an error: every page is read (1000 keys a page on S3).
    pub fn list(&self, path: &Path) -> Result<Vec<Listed>, StoreError> {
        let prefix = (!path.as_ref().is_empty()).then_some(path);
        let r = self.rt.block_on(self.store.list_with_delimiter(prefix)).map_err(|source| StoreError::Store { what: "listing", url: self.prefix_url(path), source })?;
        let depth = path.parts().count() + 1;
        Ok(r.objects
            .into_iter()
            // a "directory marker" (a key ending with `/`) is the prefix itself
            .filter(|m| m.location.parts().count() == depth)
            .filter_map(|m| Some(Listed { name: m.location.filename()?.to_string(), modified: SystemTime::from(m.last_modified), size: m.size }))
            .collect())
    }

    /// The key of the object `name` under the prefix `path`.
    pub fn child(path: &Path, name: &str) -> Result<Path, StoreError> {
        let key = if path.as_ref().is_empty() { name.to_string() } else { format!("{path}/{name}") };
        Path::parse(&key).map_err(|e| StoreError::Url { url: key.clone(), reason: e.to_string() })
    }

    /// Whether the object exists (a listed object may be deleted before it is read).
    pub fn exists(&self, path: &Path) -> Result<bool, StoreError> {
        match self.rt.block_on(self.store.head(path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::Store { what: "checking", url: self.url_of(path), source }),
        }
    }

    /// Writes an object (the source only reads: this is for tests and tools).
    pub fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.rt.block_on(self.store.put(path, object_store::PutPayload::from(bytes))).map(|_| ()).map_err(|source| StoreError::Store { what: "writing", url: self.url_of(path), source })
    }

    /// Deletes an object (missing is fine; for tests and tools).
    pub fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match self.rt.block_on(self.store.delete(path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Store { what: "deleting", url: self.url_of(path), source }),
        }
    }

    /// Streams the object from its start.
    pub fn read(self: &Arc<Self>, path: &Path) -> Result<ObjectRead, StoreError> {
        let url = self.url_of(path);
        let r = self.rt.block_on(self.store.get(path)).map_err(|source| StoreError::Store { what: "reading", url: url.clone(), source })?;
        Ok(ObjectRead { bucket: self.clone(), body: r.into_stream(), chunk: Bytes::new() })
    }
}

impl Bucket {
    /// The whole object (one GET, its body collected): for formats that read a file
    /// out of order (Parquet's footer first).
    pub fn read_all(&self, path: &Path) -> Result<Bytes, StoreError> {
        let url = self.url_of(path);
        let what = "reading";
        self.rt.block_on(async {
            let r = self.store.get(path).await.map_err(|source| StoreError::Store { what, url: url.clone(), source })?;
            r.bytes().await.map_err(|source| StoreError::Store { what, url: url.clone(), source })
        })
    }
}

/// An object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// the key's last part (the name under the prefix)
    pub name: String,
    pub modified: SystemTime,
    pub size: u64,
}

/// A blocking [`Read`] over an object's body, one response chunk at a time.
pub struct ObjectRead {
    bucket: Arc<Bucket>,
    body: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for ObjectRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.bucket.rt.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                // the reader's error names the object (`reading <url>: …`)
                Some(Err(source)) => return Err(std::io::Error::other(source)),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn urls_name_a_bucket_and_a_key_or_prefix() {
        let u = BucketUrl::parse("s3://b/in/coming/").unwrap();
        assert_eq!((u.root.as_str(), u.bucket.as_str(), u.path.as_ref(), u.is_prefix), ("s3://b", "b", "in/coming", true));
        let u = BucketUrl::parse("gs://b/x.json").unwrap();
        assert_eq!((u.path.as_ref(), u.is_prefix), ("x.json", false));
        let u = BucketUrl::parse("az://c").unwrap();
        assert_eq!((u.path.as_ref(), u.is_prefix), ("", true));
        let u = BucketUrl::parse("s3://b/a%20b/").unwrap();
        assert_eq!(u.path.as_ref(), "a b");
        let e = BucketUrl::parse("ftp://b/x").unwrap_err().to_string();
        assert!(e.contains("'ftp://b/x'") && e.contains("unknown scheme"), "{e}");
        let e = BucketUrl::parse("s3://key:secret@b/x").unwrap_err().to_string();
        assert!(e.contains("credentials do not go into the URL"), "{e}");
        assert!(is_bucket_url("s3://b/") && is_bucket_url("gs://b") && !is_bucket_url("file:///tmp") && !is_bucket_url("/tmp/x"));
    }

    #[test]
    fn lists_the_objects_directly_under_a_prefix_and_streams_them() {
        let b = Arc::new(Bucket::with_store(Arc::new(InMemory::new()), "mem://t").unwrap());
        let put = |k: &str, v: &str| b.put(&Path::from(k), v.as_bytes().to_vec()).unwrap();
        put("in/a.json", "aaa\n");
        put("in/sub/b.json", "b");
        put("in2/c.json", "c");
        put("in/.d", "d");
        let p = Path::from("in");
        let mut names: Vec<String> = b.list(&p).unwrap().into_iter().map(|l| l.name).collect();
        names.sort();
        assert_eq!(names, vec![".d", "a.json"]);
        assert_eq!(b.list(&Path::from("none")).unwrap(), vec![]);
        let key = Bucket::child(&p, "a.json").unwrap();
        assert!(b.exists(&key).unwrap() && !b.exists(&Path::from("in/zz")).unwrap());
        let mut text = String::new();
        b.read(&key).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "aaa\n");
        let e = b.read(&Path::from("in/zz")).err().unwrap().to_string();
        assert!(e.starts_with("reading mem://t/in/zz: "), "{e}");
    }
}
