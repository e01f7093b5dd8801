//! The operator's one error type. Its variants label the `weir_operator_reconcile_errors_total`
//! metric ([`Error::metric_label`]).

/// Why a reconcile (or the operator) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// A call about one object failed: which call, which object, and the API server's words.
    #[error("cannot {verb} {kind} \"{name}\" in namespace {namespace}: {source}")]
    Object { verb: &'static str, kind: &'static str, name: String, namespace: String, source: kube::Error },
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
    /// What a user reads in `status.message` and the Event: the error, and for the
    /// refusals a real API server gives, what to do about them.
    pub fn explain(&self) -> String {
        let api = match self {
            Error::Kube(kube::Error::Api(s)) | Error::Object { source: kube::Error::Api(s), .. } => Some(s),
            _ => None,
        };
        let hint = match api.map(|s| s.code) {
            Some(403) => " The operator's ServiceAccount lacks this permission: grant it in the operator's Role/ClusterRole (charts/weir-operator, from operator/rbac.yaml).",
            Some(422) => " The API server refused the object the operator generated: check spec.podTemplate, spec.resources and spec.stateBackend.",
            Some(409) => " Another writer changed the object; the operator retries.",
            Some(404) => " The object or its namespace does not exist (yet).",
            _ => "",
        };
        format!("{self}.{hint}")
    }

    /// The `error` label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Object { .. } => "kube",
            Error::JobApi { .. } => "job_api",
            Error::Serialization { .. } => "serialization",
            Error::MissingField(_) => "missing_field",
            Error::Leader(_) => "leader",
            Error::Metrics(_) => "metrics",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
