//! The REST contract between a running Weir job's coordinator (pod 0, port
//! [`HTTP_PORT`]) and its clients (the operator, the CLI), plus the names the
//! operator and the runtime pod share: environment variables, ports, file paths.
//!
//! Every JSON body is camelCase; enums are SCREAMING_CASE. Errors are
//! [`ErrorBody`] (`{"error": "..."}`) with a proper status code.
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `GET /v1/job` ([`paths::JOB`]) | | `200` [`JobStatus`] |
//! | `GET /v1/checkpoints` ([`paths::CHECKPOINTS`]) | | `200` [`CheckpointList`] |
//! | `POST /v1/checkpoints` ([`paths::CHECKPOINTS`]) | | `202` [`Triggered`] |
//! | `POST /v1/savepoints` ([`paths::SAVEPOINTS`]) | [`SavepointRequest`] | `202` [`Triggered`] |
//! | `GET /v1/savepoints/{id}` ([`paths::savepoint`]) | | `200` [`SavepointStatus`] |
//! | `POST /v1/savepoint-disposals` ([`paths::SAVEPOINT_DISPOSALS`]) | [`DisposeRequest`] | `202` (savepoint deleted from storage) |
//!
//! Every pod also serves `GET /healthz`, `GET /readyz` and `GET /metrics`.

use serde::{Deserialize, Serialize};

/// Endpoint paths, in one place for server and clients.
pub mod paths {
    /// `GET`: the job's [`JobStatus`](crate::JobStatus).
    pub const JOB: &str = "/v1/job";
    /// `GET`: [`CheckpointList`](crate::CheckpointList); `POST`: trigger a checkpoint now.
    pub const CHECKPOINTS: &str = "/v1/checkpoints";
    /// `POST`: trigger a savepoint ([`SavepointRequest`](crate::SavepointRequest)).
    pub const SAVEPOINTS: &str = "/v1/savepoints";
    /// `POST`: dispose of (delete) a savepoint the operator no longer keeps
    /// ([`DisposeRequest`](crate::DisposeRequest)) → `202`.
    pub const SAVEPOINT_DISPOSALS: &str = "/v1/savepoint-disposals";
    /// Route pattern for one savepoint (axum 0.8 syntax).
    pub const SAVEPOINT_ROUTE: &str = "/v1/savepoints/{id}";
    /// Liveness of any pod.
    pub const HEALTHZ: &str = "/healthz";
    /// Readiness of any pod.
    pub const READYZ: &str = "/readyz";
    /// Prometheus text metrics of any pod.
    pub const METRICS: &str = "/metrics";

    /// `GET`: the [`SavepointStatus`](crate::SavepointStatus) of savepoint `id`.
    pub fn savepoint(id: &str) -> String {
        format!("{SAVEPOINTS}/{id}")
    }
}

/// Port of the data exchange between pods.
pub const DATA_PORT: u16 = 6121;
/// Port of the HTTP server of every pod (health, metrics, and the REST API on pod 0).
pub const HTTP_PORT: u16 = 8081;
/// Where the operator mounts the job definition (a runtime job file, YAML).
pub const JOB_FILE_PATH: &str = "/etc/weir/job.yaml";
/// Directory of [`JOB_FILE_PATH`] (the ConfigMap volume's mount path).
pub const JOB_FILE_DIR: &str = "/etc/weir";
/// File name of the job definition inside [`JOB_FILE_DIR`] (the ConfigMap key).
pub const JOB_FILE_NAME: &str = "job.yaml";
/// Default number of key groups.
pub const DEFAULT_MAX_PARALLELISM: u32 = 720;

/// Environment variables the operator sets on every runtime pod.
pub mod env {
    /// The StreamJob's name.
    pub const JOB_NAME: &str = "WEIR_JOB_NAME";
    /// The Kubernetes namespace of the job.
    pub const NAMESPACE: &str = "WEIR_NAMESPACE";
    /// This pod's name; the ordinal (subtask index) is its `-N` suffix.
    pub const POD_NAME: &str = "WEIR_POD_NAME";
    /// Number of pods (P).
    pub const PARALLELISM: &str = "WEIR_PARALLELISM";
    /// Number of key groups (M), fixed for the job's lifetime.
    pub const MAX_PARALLELISM: &str = "WEIR_MAX_PARALLELISM";
    /// Address template of the peers, e.g. `{job}-{ordinal}.{job}-peers.{namespace}.svc:6121`.
    pub const PEERS: &str = "WEIR_PEERS";
    /// Checkpoint prefix URL of this deployment (`s3://`, `gs://`, `az://`, `file://`).
    pub const CHECKPOINT_URL: &str = "WEIR_CHECKPOINT_URL";
    /// Optional: savepoint or checkpoint URL to restore from.
    pub const RESTORE_FROM: &str = "WEIR_RESTORE_FROM";
    /// Unique id of this deployment of the job (fresh on every redeploy).
    pub const JOB_ID: &str = "WEIR_JOB_ID";
    /// `memory` or `rocksdb`.
    pub const STATE_BACKEND: &str = "WEIR_STATE_BACKEND";
    /// Directory for local state (RocksDB), when the state backend needs one.
    pub const STATE_DIR: &str = "WEIR_STATE_DIR";
    /// Checkpoint interval in milliseconds.
    pub const CHECKPOINT_INTERVAL_MS: &str = "WEIR_CHECKPOINT_INTERVAL_MS";
    /// Number of complete checkpoints to retain.
    pub const CHECKPOINT_RETAIN: &str = "WEIR_CHECKPOINT_RETAIN";
    /// Path of the job file (default [`JOB_FILE_PATH`](crate::JOB_FILE_PATH)).
    pub const JOB_FILE: &str = "WEIR_JOB_FILE";
    /// Optional: restarts after failures (without a completed checkpoint in between)
    /// before the job ends `FAILED`; default unlimited (capped exponential backoff,
    /// `RESTARTING` with `error` = the last failure meanwhile).
    pub const RESTART_ATTEMPTS: &str = "WEIR_RESTART_ATTEMPTS";
    /// Optional: milliseconds after which an incomplete checkpoint or savepoint fails
    /// (the job keeps running); default 120000.
    pub const CHECKPOINT_TIMEOUT_MS: &str = "WEIR_CHECKPOINT_TIMEOUT_MS";
    /// Optional: where the runtime writes why the job cannot run (default
    /// `/dev/termination-log` when it exists).
    pub const TERMINATION_LOG: &str = "WEIR_TERMINATION_LOG";
}

/// The default peer address template (see [`env::PEERS`]).
pub const DEFAULT_PEERS_TEMPLATE: &str = "{job}-{ordinal}.{job}-peers.{namespace}.svc:6121";

/// State of a running job, as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Created,
    Running,
    Restarting,
    Failing,
    Finished,
    Canceled,
    Failed,
}

impl JobState {
    /// The job will not change state again (finished, canceled or failed).
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Finished | JobState::Canceled | JobState::Failed)
    }

    /// The wire name (`RUNNING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Restarting => "RESTARTING",
            JobState::Failing => "FAILING",
            JobState::Finished => "FINISHED",
            JobState::Canceled => "CANCELED",
            JobState::Failed => "FAILED",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A completed checkpoint, as referenced from [`JobStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRef {
    pub id: u64,
    /// URL of the checkpoint directory (containing `_metadata`).
    pub url: String,
    /// Completion time, epoch milliseconds.
    pub timestamp: i64,
    /// Total size of the checkpoint's state files.
    pub bytes: u64,
}

/// `GET /v1/job`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The deployment's job id (`WEIR_JOB_ID`).
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Start time, epoch milliseconds.
    pub started: i64,
    /// When the job last became `RUNNING`, epoch milliseconds: every subtask restored
    /// its state and started, so its sources emit their first records from here. The
    /// operator measures a rescale's or upgrade's pause of processing up to this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<i64>,
    /// The last completed checkpoint, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRef>,
    /// Restarts since the job started (restart strategy).
    #[serde(default)]
    pub restarts: u32,
    /// Event-time watermark of the coordinator pod's subtasks, epoch milliseconds: the
    /// minimum over its running tasks that have one (absent before the first watermark).
    /// How far a deployment has caught up (the operator compares a blue/green rollout's
    /// two deployments with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
    /// The runtime's failure message (set when FAILING/FAILED, or the cause of the last restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Status of a checkpoint or savepoint operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    InProgress,
    Completed,
    Failed,
}

/// One entry of `GET /v1/checkpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    pub id: u64,
    pub status: OperationStatus,
    /// True when this checkpoint is a savepoint.
    #[serde(default)]
    pub savepoint: bool,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub duration_ms: u64,
    pub url: String,
    /// Trigger (or completion) time, epoch milliseconds.
    pub timestamp: i64,
    /// Why it failed (set when `FAILED`), e.g. the storage error naming the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/checkpoints`: recent checkpoints, newest last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointList {
    pub checkpoints: Vec<CheckpointInfo>,
}

/// `POST /v1/savepoints` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRequest {
    /// Stop-with-savepoint: sources stop, a final savepoint is taken, the job ends `FINISHED`.
    #[serde(default)]
    pub stop: bool,
    /// The savepoint's own directory: `_metadata` is written at `<target>/_metadata`
    /// (nothing is appended). Default: `<checkpoint prefix>/savepoints/sp-<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Idempotency key chosen by the client before it sends the request. When given it
    /// is the savepoint's id ([`Triggered::id`], `GET /v1/savepoints/{requestId}`), and
    /// a repeated request with the same id returns the same savepoint instead of
    /// starting another one (a client that lost the answer simply asks again): `202`
    /// with the same id whatever its state, even after the job ended (the runtime
    /// remembers the last 100 finished requests for the life of the process).
    /// 1 to 128 characters of `[A-Za-z0-9._-]`, else `400`. A stop request while
    /// another stop is in progress is `409`, naming the request in flight; a `target`
    /// that already holds a `_metadata` is `409`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `202` body of `POST /v1/savepoints` and `POST /v1/checkpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Triggered {
    pub id: String,
}

/// `GET /v1/savepoints/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    pub id: String,
    pub status: OperationStatus,
    /// Set when `COMPLETED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Set when `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/savepoint-disposals` body: delete the savepoint at `url` (its whole
/// directory) from storage. Idempotent: an absent savepoint is not an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisposeRequest {
    pub url: String,
}

/// Body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
}

impl ErrorBody {
    pub fn new(msg: impl Into<String>) -> Self {
        ErrorBody { error: msg.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T, expected: Value) {
        let json = serde_json::to_value(v).expect("serialize");
        assert_eq!(json, expected);
        let back: T = serde_json::from_value(json).expect("deserialize");
        assert_eq!(&back, v);
    }

    #[test]
    fn job_status_round_trips_in_camel_case() {
        let s = JobStatus {
            id: "j-1".into(),
            name: "fraud".into(),
            state: JobState::Running,
            parallelism: 2,
            max_parallelism: 720,
            started: 1_700_000_000_000,
            running_since: Some(1_700_000_000_500),
            last_checkpoint: Some(CheckpointRef { id: 7, url: "s3://b/p/checkpoints/chk-7".into(), timestamp: 1_700_000_001_000, bytes: 1024 }),
            restarts: 1,
            watermark: Some(1_700_000_000_900),
            error: Some("boom".into()),
        };
        round_trip(
            &s,
            json!({"id":"j-1","name":"fraud","state":"RUNNING","parallelism":2,"maxParallelism":720,"started":1700000000000i64,
                "runningSince":1700000000500i64,"lastCheckpoint":{"id":7,"url":"s3://b/p/checkpoints/chk-7","timestamp":1700000001000i64,"bytes":1024},
                "restarts":1,"watermark":1700000000900i64,"error":"boom"}),
        );
        let minimal = JobStatus { running_since: None, last_checkpoint: None, watermark: None, error: None, ..s };
        round_trip(
            &minimal,
            json!({"id":"j-1","name":"fraud","state":"RUNNING","parallelism":2,"maxParallelism":720,"started":1700000000000i64,"restarts":1}),
        );
    }

    #[test]
    fn every_job_state_has_its_wire_name() {
        for st in [
            JobState::Created,
            JobState::Running,
            JobState::Restarting,
            JobState::Failing,
            JobState::Finished,
            JobState::Canceled,
            JobState::Failed,
        ] {
            assert_eq!(serde_json::to_value(st).unwrap(), json!(st.as_str()));
            assert_eq!(st.to_string(), st.as_str());
        }
        assert!(JobState::Failed.is_terminal() && !JobState::Restarting.is_terminal());
    }

    #[test]
    fn checkpoint_list_round_trips() {
        let l = CheckpointList {
            checkpoints: vec![
                CheckpointInfo { id: 3, status: OperationStatus::Completed, savepoint: false, bytes: 10, duration_ms: 25, url: "file:///c/chk-3".into(), timestamp: 5, error: None },
                CheckpointInfo { id: 4, status: OperationStatus::Failed, savepoint: true, bytes: 0, duration_ms: 0, url: String::new(), timestamp: 6, error: Some("writing s3://b/sp: connection refused".into()) },
            ],
        };
        round_trip(
            &l,
            json!({"checkpoints":[
                {"id":3,"status":"COMPLETED","savepoint":false,"bytes":10,"durationMs":25,"url":"file:///c/chk-3","timestamp":5},
                {"id":4,"status":"FAILED","savepoint":true,"bytes":0,"durationMs":0,"url":"","timestamp":6,"error":"writing s3://b/sp: connection refused"}]}),
        );
    }

    #[test]
    fn savepoint_messages_round_trip() {
        round_trip(&SavepointRequest { stop: true, target: None, request_id: None }, json!({"stop": true}));
        round_trip(
            &SavepointRequest { stop: false, target: Some("s3://b/sp".into()), request_id: Some("j1-sp-3".into()) },
            json!({"stop": false, "target": "s3://b/sp", "requestId": "j1-sp-3"}),
        );
        // An empty body means a plain savepoint.
        assert_eq!(serde_json::from_str::<SavepointRequest>("{}").unwrap(), SavepointRequest::default());
        round_trip(&Triggered { id: "sp-9".into() }, json!({"id":"sp-9"}));
        round_trip(
            &SavepointStatus { id: "sp-9".into(), status: OperationStatus::Completed, url: Some("s3://b/p/savepoints/sp-9".into()), error: None },
            json!({"id":"sp-9","status":"COMPLETED","url":"s3://b/p/savepoints/sp-9"}),
        );
        round_trip(
            &SavepointStatus { id: "sp-9".into(), status: OperationStatus::Failed, url: None, error: Some("sink timed out".into()) },
            json!({"id":"sp-9","status":"FAILED","error":"sink timed out"}),
        );
        round_trip(&ErrorBody::new("no such savepoint"), json!({"error":"no such savepoint"}));
        round_trip(&DisposeRequest { url: "s3://b/savepoints/sp-1".into() }, json!({"url":"s3://b/savepoints/sp-1"}));
    }

    #[test]
    fn paths_are_fixed() {
        assert_eq!(paths::JOB, "/v1/job");
        assert_eq!(paths::CHECKPOINTS, "/v1/checkpoints");
        assert_eq!(paths::SAVEPOINTS, "/v1/savepoints");
        assert_eq!(paths::savepoint("sp-1"), "/v1/savepoints/sp-1");
        assert_eq!(paths::SAVEPOINT_ROUTE.replace("{id}", "sp-1"), paths::savepoint("sp-1"));
        assert_eq!(format!("{JOB_FILE_DIR}/{JOB_FILE_NAME}"), JOB_FILE_PATH);
        assert_eq!((DATA_PORT, HTTP_PORT), (6121, 8081));
    }

    #[test]
    fn unknown_state_is_rejected() {
        let r = serde_json::from_value::<JobState>(json!("SLEEPING"));
        assert!(r.is_err());
    }
}
