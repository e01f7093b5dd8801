//! The operator's one error type. Its variants label the `weir_operator_reconcile_errors_total`
//! metric ([`Error::metric_label`]).

/// Why a reconcile (or the operator) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("job REST API {url}: {message}")]
    JobApi { url: String, message: String },
    #[error("cannot (de)serialize {what}: {source}")]
    Serialization { what: &'static str, source: serde_json::Error },
    #[error("StreamJob has no {0}")]
    MissingField(&'static str),
    #[error("leader election: {0}")]
    Leader(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// The `error` label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::JobApi { .. } => "job_api",
            Error::Serialization { .. } => "serialization",
            Error::MissingField(_) => "missing_field",
            Error::Leader(_) => "leader",
            Error::Metrics(_) => "metrics",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
