//! Client of a running job's REST API (the coordinator on pod 0), typed by `weir-api`.

use std::sync::Arc;
use std::time::Duration;

use weir_api::{DisposeRequest, ErrorBody, JobStatus, SavepointRequest, SavepointStatus, Triggered, paths};

use crate::error::{Error, Result};

/// Resolves a job's coordinator base URL from (name, namespace).
pub type UrlResolver = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

/// Talks to the coordinators of running jobs.
#[derive(Clone)]
pub struct JobClient {
    http: reqwest::Client,
    resolve: UrlResolver,
}

impl JobClient {
    /// A client reaching `<job>-rest.<namespace>.svc:8081` (see [`crate::resources::rest_url`]).
    pub fn in_cluster() -> Result<Self> {
        Self::new(Arc::new(|name, ns| crate::resources::rest_url(name, ns)))
    }

    pub fn new(resolve: UrlResolver) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| Error::JobApi { url: String::new(), message: e.to_string() })?;
        Ok(JobClient { http, resolve })
    }

    fn url(&self, name: &str, ns: &str, path: &str) -> String {
        format!("{}{path}", (self.resolve)(name, ns))
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, url: String, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req.send().await.map_err(|e| Error::JobApi { url: url.clone(), message: e.to_string() })?;
        Self::decode(url, resp).await
    }

    /// A JSON answer, or the runtime's `{"error": ...}` with its status code.
    async fn decode<T: serde::de::DeserializeOwned>(url: String, resp: reqwest::Response) -> Result<T> {
        let err = |message: String| Error::JobApi { url: url.clone(), message };
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error).unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            return Err(err(format!("{status}: {msg}")));
        }
        serde_json::from_slice(&body).map_err(|e| err(format!("unexpected answer: {e}")))
    }

    /// `GET /v1/job`.
    pub async fn job(&self, name: &str, ns: &str) -> Result<JobStatus> {
        let url = self.url(name, ns, paths::JOB);
        self.send(url.clone(), self.http.get(&url)).await
    }

    /// `POST /v1/savepoints`.
    pub async fn trigger_savepoint(&self, name: &str, ns: &str, req: &SavepointRequest) -> Result<Triggered> {
        let url = self.url(name, ns, paths::SAVEPOINTS);
        self.send(url.clone(), self.http.post(&url).json(req)).await
    }

    /// `GET /v1/savepoints/{id}`; `None` when the coordinator does not know the id (`404`).
    pub async fn savepoint(&self, name: &str, ns: &str, id: &str) -> Result<Option<SavepointStatus>> {
        let url = self.url(name, ns, &paths::savepoint(id));
        let resp = self.http.get(&url).send().await.map_err(|e| Error::JobApi { url: url.clone(), message: e.to_string() })?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::decode(url, resp).await.map(Some)
    }

    /// `POST /v1/savepoint-disposals`.
    pub async fn dispose(&self, name: &str, ns: &str, savepoint_url: &str) -> Result<()> {
        let url = self.url(name, ns, paths::SAVEPOINT_DISPOSALS);
        let req = self.http.post(&url).json(&DisposeRequest { url: savepoint_url.to_string() });
        let resp = req.send().await.map_err(|e| Error::JobApi { url: url.clone(), message: e.to_string() })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::JobApi { url, message: resp.status().to_string() })
        }
    }
}
