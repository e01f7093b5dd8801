//! The `StreamJob` custom resource (`streamjobs.weir.dev/v1alpha1`): spec, status and
//! the schema validation the API server enforces (ranges, enums, required fields and
//! CEL rules whose messages say what to fix).
//!
//! [`crd_yaml`] renders the CRD; `crds/streamjobs.weir.dev.yaml` is its checked-in copy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Regex of a duration (`500ms`, `30s`, `5m`, `1h30m`, `7d`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";
/// URL schemes accepted for checkpoint and savepoint storage.
pub const STORAGE_SCHEMES: &[&str] = &["s3://", "gs://", "az://", "file://"];
/// CEL test of a storage URL (kept in sync with [`STORAGE_SCHEMES`] by a test).
const STORAGE_RULE: &str = "self.matches('^(s3|gs|az|file)://.+')";

/// A stream-processing job run by Weir on Kubernetes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    plural = "streamjobs",
    shortname = "sj",
    category = "weir",
    namespaced,
    status = "StreamJobStatus",
    scale = r#"{"specReplicasPath":".spec.parallelism","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","jsonPath":".spec.parallelism"}"#,
    printcolumn = r#"{"name":"Pods","type":"integer","jsonPath":".status.replicas","description":"pods that exist"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".status.jobState","description":"state reported by the job's coordinator"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeSlot","description":"the deployment slot (blue or green) that runs the job and that <job>-rest selects"}"#,
    printcolumn = r#"{"name":"Stage","type":"string","jsonPath":".status.stage","priority":1,"description":"the lifecycle stage (a blue/green rollout goes through BlueGreen* stages)"}"#,
    printcolumn = r#"{"name":"Last Savepoint","type":"string","jsonPath":".status.lastSavepoint.url","priority":0}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1,"description":"why the job is not running as asked, and what to do"}"#,
    doc = "A Weir stream-processing job: the operator runs it as a StatefulSet and keeps its state through upgrades, rescaling and failures."
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.parallelism <= self.maxParallelism").message("spec.parallelism must not exceed spec.maxParallelism (the number of key groups): lower parallelism or, for a new job, raise maxParallelism"))]
#[x_kube(validation = Rule::new("!has(self.rollout) || !has(self.rollout.strategy) || self.rollout.strategy != 'blueGreen' || has(self.checkpointing)").message("spec.rollout.strategy blueGreen starts the new deployment from a savepoint of the running one and needs spec.checkpointing.storage: set it, or use strategy inPlace"))]
#[x_kube(validation = Rule::new("self.upgradeMode == 'stateless' || has(self.checkpointing)").message("upgradeMode savepoint and last-state keep state and need spec.checkpointing.storage: set it (e.g. s3://bucket/jobs/my-job) or use upgradeMode: stateless"))]
pub struct StreamJobSpec {
    /// Container image of the Weir runtime (or a custom image built on it).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Which program to run.
    pub job: JobSource,
    /// Number of pods (one subtask of every operator per pod). The scale subresource's replicas.
    #[schemars(range(min = 1, max = 32768))]
    pub parallelism: i32,
    /// Number of key groups: the upper bound of parallelism, fixed for the job's lifetime.
    #[serde(default = "default_max_parallelism")]
    #[schemars(range(min = 1, max = 32768))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.maxParallelism is fixed for the job's lifetime (savepoints are split into that many key groups): restore the previous value, or create a new StreamJob"))]
    pub max_parallelism: i32,
    /// Container resources of each pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A pod template merged over the generated pod (labels, annotations, nodeSelector,
    /// tolerations, extra env/volumes on the `weir` container, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,
    /// Checkpoints and savepoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpointing: Option<Checkpointing>,
    /// Where keyed state lives while the job runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_backend: Option<StateBackend>,
    /// How state is carried over when the job is redeployed.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Desired state: `running` or `suspended` (savepoint, then scale to 0).
    #[serde(default)]
    pub state: DesiredState,
    /// Change to restart the job (with its upgrade mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,
    /// Change to take a savepoint now (the job keeps running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_nonce: Option<i64>,
    /// Savepoint (or checkpoint) URL a new job starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(STORAGE_RULE).message("spec.initialSavepoint must be a URL with scheme s3://, gs://, az:// or file://"))]
    pub initial_savepoint: Option<String>,
    /// How many savepoints the operator keeps (older ones are disposed of).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_history: Option<SavepointHistory>,
    /// Rollout of a new spec: health checks, rollback, timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Rescaling policy (for `kubectl scale` and HorizontalPodAutoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescale: Option<RescalePolicy>,
}

fn default_max_parallelism() -> i32 {
    weir_api::DEFAULT_MAX_PARALLELISM as i32
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn free_form_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Which program to run: exactly one of `builtin`, `sql` or `command`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.builtin), has(self.sql), has(self.command)].filter(x, x).size() == 1").message("spec.job needs exactly one of builtin (a job that ships with the runtime, e.g. nexmark-q5), sql (a SQL script) or command (a program in a custom image)"))]
pub struct JobSource {
    /// A built-in job by name (`weir jobs` lists them), e.g. `fraud-detection`, `nexmark-q5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub builtin: Option<String>,
    /// A SQL script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub sql: Option<String>,
    /// Command of a custom image (replaces the container's command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments of `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Parameters of the job (the job file's `params`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<JobParams>,
}

/// Parameters passed to the job in its job file.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobParams {
    /// Bounded input: generate this many events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub events: Option<i64>,
    /// Generator events per second (wall clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate: Option<i64>,
    /// Generator events per second of event time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub event_rate: Option<i64>,
    /// Input file path inside the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Output path inside the pod (a path ending in `/` gets the exactly-once file sink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Job-specific settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_map")]
    pub extra: Option<BTreeMap<String, serde_json::Value>>,
}

/// Checkpointing and savepoint storage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Checkpointing {
    /// Time between checkpoints.
    #[serde(default = "default_interval")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub interval: String,
    /// Checkpoint and savepoint prefix: `s3://`, `gs://`, `az://` or `file://` URL.
    /// Each deployment writes under `<storage>/<jobId>/`, savepoints under `<storage>/savepoints/`.
    #[x_kube(validation = Rule::new(STORAGE_RULE).message("spec.checkpointing.storage must be a URL with scheme s3://, gs://, az:// or file:// (e.g. s3://my-bucket/weir/my-job)"))]
    pub storage: String,
    /// Complete checkpoints kept by the runtime.
    #[serde(default = "default_retain")]
    #[schemars(range(min = 1, max = 100))]
    pub retain: i32,
    /// Secret whose keys become environment variables of the job (e.g.
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); never read by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Take a savepoint this often while the job runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub savepoint_interval: Option<String>,
}

fn default_interval() -> String {
    "30s".into()
}
fn default_retain() -> i32 {
    3
}

/// A Secret in the job's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Keyed state storage while the job runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'rocksdb' || (!has(self.volumeSize) && !has(self.storageClassName))").message("spec.stateBackend.volumeSize and storageClassName apply only to type: rocksdb"))]
pub struct StateBackend {
    /// `memory` (heap) or `rocksdb` (local disk).
    #[serde(rename = "type")]
    pub kind: StateBackendKind,
    /// Size of each pod's RocksDB volume (a PersistentVolumeClaim per pod), e.g. `10Gi`.
    /// Without it RocksDB uses an emptyDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub volume_size: Option<String>,
    /// Storage class of the RocksDB volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackendKind {
    #[default]
    Memory,
    Rocksdb,
}

impl StateBackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateBackendKind::Memory => "memory",
            StateBackendKind::Rocksdb => "rocksdb",
        }
    }
}

/// How state is carried over a redeploy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Redeploy with empty state.
    Stateless,
    /// Stop with a savepoint, redeploy from it.
    #[default]
    Savepoint,
    /// Redeploy from the newest complete checkpoint (`_latest`), no savepoint.
    LastState,
}

impl UpgradeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeMode::Stateless => "stateless",
            UpgradeMode::Savepoint => "savepoint",
            UpgradeMode::LastState => "last-state",
        }
    }
}

/// Desired state of the job.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    #[default]
    Running,
    Suspended,
}

/// Savepoint retention.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavepointHistory {
    /// Savepoints kept in `status.savepointHistory`; older ones are disposed of.
    #[serde(default = "default_max_count")]
    #[schemars(range(min = 1, max = 100))]
    pub max_count: i32,
    /// Savepoints older than this are disposed of (the newest is always kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub max_age: Option<String>,
}

fn default_max_count() -> i32 {
    5
}

/// Rollout of a new spec.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// A new deployment must be RUNNING with every pod ready within this time.
    #[serde(default = "default_readiness_timeout")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub readiness_timeout: String,
    /// Roll back to the last stable spec (from the upgrade's savepoint) when the new one
    /// is not healthy in time.
    #[serde(default = "default_true")]
    pub rollback: bool,
    /// Give up a savepoint after this long (the old job keeps running).
    #[serde(default = "default_savepoint_timeout")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub savepoint_timeout: String,
    /// When a savepoint fails, upgrade from the newest checkpoint instead if it is at most
    /// this old. Unset: never fall back (the old job keeps running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub checkpoint_fallback_max_age: Option<String>,
    /// On deletion, wait at most this long for the final savepoint.
    #[serde(default = "default_shutdown_timeout")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub shutdown_timeout: String,
    /// Restart an unhealthy job from its latest checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_on_unhealthy: Option<UnhealthyPolicy>,
    /// How an upgrade replaces the running deployment: `inPlace` (stop it, then start the
    /// new spec, per `upgradeMode`) or `blueGreen` (start the new spec beside it from a
    /// savepoint, switch when it has caught up; see docs/rollouts.md).
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Settings of the `blueGreen` strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenPolicy>,
}

/// How an upgrade replaces the running deployment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum RolloutStrategy {
    /// Stop the running deployment, then deploy the new spec (savepoint, last-state or
    /// stateless, per `upgradeMode`).
    #[default]
    InPlace,
    /// Savepoint the running ("blue") deployment without stopping it, start the new
    /// ("green") one from it beside it, switch when green is healthy and caught up.
    BlueGreen,
}

/// Settings of a blue/green rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenPolicy {
    /// Green has caught up when its event-time watermark is at most this far behind
    /// blue's (both as the coordinators report them). Unset: caught up = RUNNING, every pod
    /// ready and one checkpoint completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub max_lag: Option<String>,
}

/// One of the two deployment slots of a blue/green job. Slot `blue` uses the job's own
/// names (`<job>`, `<job>-peers`, `<job>-job`); slot `green` suffixes them (`<job>-green`,
/// `<job>-green-peers`, `<job>-green-job`). A blue/green upgrade deploys into the slot
/// that is not active and retires the active one.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    #[default]
    Blue,
    Green,
}

impl Slot {
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }
    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }
    pub fn is_blue(&self) -> bool {
        *self == Slot::Blue
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            readiness_timeout: default_readiness_timeout(),
            rollback: true,
            savepoint_timeout: default_savepoint_timeout(),
            checkpoint_fallback_max_age: None,
            shutdown_timeout: default_shutdown_timeout(),
            restart_on_unhealthy: None,
            strategy: RolloutStrategy::InPlace,
            blue_green: None,
        }
    }
}

fn default_readiness_timeout() -> String {
    "5m".into()
}
fn default_savepoint_timeout() -> String {
    "10m".into()
}
fn default_shutdown_timeout() -> String {
    "5m".into()
}
fn default_true() -> bool {
    true
}

/// When a running job counts as unhealthy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyPolicy {
    /// Runtime restarts (of the restart strategy) since the deployment that make it unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_restarts: Option<i32>,
    /// No completed checkpoint for this long makes it unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub checkpoint_progress_timeout: Option<String>,
}

/// Rescaling policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RescalePolicy {
    /// Minimum time between two rescales (against autoscaler thrashing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub min_interval: Option<String>,
    /// Round the requested parallelism up to a divisor of maxParallelism (equal key-group shares).
    #[serde(default)]
    pub round_to_divisor: bool,
}

// ---------------------------------------------------------------- status

/// What the operator knows about the job. Also its write-ahead log: the stage and the
/// transition in progress are written here *before* acting.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// Human-facing summary: Deploying, Running, Upgrading, Rescaling, RollingBack,
    /// Suspending, Suspended, Restarting, Failed, Finished, Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The lifecycle stage (see `lifecycle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<crate::lifecycle::Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Job id of the current deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The slot of the deployment that runs the job and that `<job>-rest` selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_slot: Option<Slot>,
    /// State reported by the job's coordinator (RUNNING, FAILED, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_state: Option<String>,
    /// Pods of the current deployment (scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the pods (scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// What is deployed now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<Deployment>,
    /// The last deployment that became healthy (the rollback target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable: Option<Deployment>,
    /// The transition in progress (upgrade, rescale, suspend, ...): written before acting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
    /// A savepoint taken while the job keeps running (manual or periodic), in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_savepoint: Option<PendingSavepoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint: Option<SavepointRecord>,
    /// Savepoints the operator keeps, oldest first (bounded by spec.savepointHistory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub savepoint_history: Vec<SavepointRecord>,
    /// Savepoints removed from the history and not yet disposed of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_disposal: Vec<String>,
    /// Savepoint counter (names savepoint targets).
    #[serde(default)]
    pub savepoint_counter: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointRecord>,
    /// Where a suspended job resumes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<String>,
    /// A generation that failed (savepoint failure, rollback) and is not retried until the
    /// spec or restartNonce changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_savepoint_nonce: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_restart_nonce: Option<i64>,
    /// Epoch ms of the last completed rescale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rescale_at: Option<i64>,
    /// The last transition that completed, with its measured pause of processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition: Option<TransitionRecord>,
    /// The last blue/green rollout that ended (switched or aborted), as measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_blue_green: Option<BlueGreenRecord>,
    /// The runtime's error when the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One deployment of the job.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub job_id: String,
    /// The StreamJob generation this spec came from.
    pub generation: i64,
    /// The spec deployed (JSON).
    pub spec: String,
    /// Where it restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Epoch ms.
    pub deployed_at: i64,
    /// The slot it runs in (its objects' names).
    #[serde(default, skip_serializing_if = "Slot::is_blue")]
    pub slot: Slot,
}

/// Why a transition runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub enum TransitionKind {
    Deploy,
    Upgrade,
    Rescale,
    Rollback,
    Suspend,
    Resume,
    Restart,
    Recover,
    Delete,
}

/// A transition in progress: the write-ahead log of an upgrade.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub kind: TransitionKind,
    pub mode: UpgradeMode,
    /// The spec to deploy (JSON) and its generation.
    pub target_spec: String,
    pub target_generation: i64,
    /// Stop-with-savepoint target URL (decided before triggering, so it is never lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_target: Option<String>,
    /// Trigger id returned by the coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger: Option<String>,
    /// Where the new deployment restores from (decided before stopping the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Job id of the new deployment (decided before applying it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Epoch ms: transition start, and start of the current stage.
    pub started_at: i64,
    pub stage_started_at: i64,
    /// Why the transition runs (for rollback: what failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A blue/green rollout: the slot the new ("green") deployment runs in, beside the
    /// active one. Unset: in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// Blue/green: epoch ms when green was found healthy and caught up, and green's
    /// `runningSince` then (the start of the overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_running_since: Option<i64>,
}

/// How a blue/green rollout ended.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub enum BlueGreenOutcome {
    /// Green took over; blue was stopped with a savepoint and removed.
    Switched,
    /// Green was removed; blue kept running.
    Aborted,
}

/// A blue/green rollout that ended.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenRecord {
    pub outcome: BlueGreenOutcome,
    /// The StreamJob generation rolled out.
    pub generation: i64,
    /// Blue: the deployment that ran before (slot and job id).
    pub blue_slot: Slot,
    pub blue_job_id: String,
    /// Green: the new deployment (slot and job id).
    pub green_slot: Slot,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_job_id: Option<String>,
    /// The savepoint of blue (taken while it kept running) green started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Blue's final savepoint (stop-with-savepoint at the switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_savepoint: Option<String>,
    /// Why it was aborted (or what went wrong at the switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Epoch ms: the rollout's start and end.
    pub started_at: i64,
    pub finished_at: i64,
    /// How long both deployments processed (from green running to blue stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_ms: Option<i64>,
    /// From the stop of blue being asked to `<job>-rest` selecting green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_ms: Option<i64>,
}

/// A transition that completed, as the operator measured it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransitionRecord {
    pub kind: TransitionKind,
    pub mode: UpgradeMode,
    /// Job id of the deployment it started.
    pub job_id: String,
    /// Epoch ms: when it began (the old job was asked to stop), and when the new job was
    /// running with all its pods ready.
    pub started_at: i64,
    pub finished_at: i64,
    /// Upgrades, rescales, restarts and rollbacks: how long processing paused, at most —
    /// from the start of the transition (the old job still processes until its stop) to
    /// the moment every subtask of the new job had restored its state and started
    /// (the runtime's `runningSince`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_ms: Option<i64>,
}

/// A savepoint of a running job in flight.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingSavepoint {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// `manual` or `periodic`.
    pub origin: String,
    pub requested_at: i64,
}

/// A completed savepoint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRecord {
    pub url: String,
    /// Epoch ms.
    pub timestamp: i64,
    /// Job id that wrote it.
    pub job_id: String,
    /// upgrade, rescale, suspend, manual, periodic, delete, ...
    pub origin: String,
}

/// The newest completed checkpoint the coordinator reported.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecord {
    pub id: i64,
    pub url: String,
    /// Epoch ms.
    pub timestamp: i64,
    pub job_id: String,
}

/// A condition (`Ready`, `Progressing`, `Degraded`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as YAML (what `weir-operator crd` prints and `crds/` holds).
pub fn crd_yaml() -> String {
    let crd = StreamJob::crd();
    let body = serde_yaml_ng::to_string(&crd).unwrap_or_else(|e| format!("# cannot render the CRD: {e}\n"));
    format!("# Generated by `weir-operator crd` from operator/src/crd.rs. Do not edit.\n---\n{body}")
}

/// Parses a duration (`500ms`, `30s`, `5m`, `1h30m`, `7d`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

impl StreamJobSpec {
    /// The rules of the schema that the operator can check itself (a spec that got past
    /// the API server, e.g. with an older CRD installed). Empty when valid.
    pub fn problems(&self, deployed: Option<&StreamJobSpec>) -> Vec<String> {
        let mut p = Vec::new();
        if self.image.is_empty() {
            p.push("spec.image must not be empty".to_string());
        }
        if self.parallelism < 1 {
            p.push("spec.parallelism must be at least 1".to_string());
        }
        if self.parallelism > self.max_parallelism {
            p.push("spec.parallelism must not exceed spec.maxParallelism".to_string());
        }
        let sources = [self.job.builtin.is_some(), self.job.sql.is_some(), self.job.command.is_some()];
        if sources.iter().filter(|x| **x).count() != 1 {
            p.push("spec.job needs exactly one of builtin, sql or command".to_string());
        }
        if let Some(old) = deployed
            && old.max_parallelism != self.max_parallelism
        {
            p.push(format!("spec.maxParallelism is fixed for the job's lifetime: it was {}", old.max_parallelism));
        }
        let url_ok = |u: &str| STORAGE_SCHEMES.iter().any(|s| u.starts_with(s) && u.len() > s.len());
        if let Some(c) = &self.checkpointing {
            if !url_ok(&c.storage) {
                p.push("spec.checkpointing.storage must be a URL with scheme s3://, gs://, az:// or file://".to_string());
            }
            for (field, d) in [("interval", Some(&c.interval)), ("savepointInterval", c.savepoint_interval.as_ref())] {
                if let Some(d) = d
                    && parse_duration_ms(d).is_none()
                {
                    p.push(format!("spec.checkpointing.{field}: '{d}' is not a duration like 30s, 5m or 1h"));
                }
            }
        } else if self.upgrade_mode != UpgradeMode::Stateless {
            p.push("upgradeMode savepoint and last-state need spec.checkpointing.storage".to_string());
        }
        if let Some(s) = &self.initial_savepoint
            && !url_ok(s)
        {
            p.push("spec.initialSavepoint must be a URL with scheme s3://, gs://, az:// or file://".to_string());
        }
        let r = self.rollout();
        for (field, d) in [
            ("readinessTimeout", Some(&r.readiness_timeout)),
            ("savepointTimeout", Some(&r.savepoint_timeout)),
            ("shutdownTimeout", Some(&r.shutdown_timeout)),
            ("checkpointFallbackMaxAge", r.checkpoint_fallback_max_age.as_ref()),
        ] {
            if let Some(d) = d
                && parse_duration_ms(d).is_none()
            {
                p.push(format!("spec.rollout.{field}: '{d}' is not a duration like 30s, 5m or 1h"));
            }
        }
        if let Some(d) = r.blue_green.as_ref().and_then(|b| b.max_lag.as_ref())
            && parse_duration_ms(d).is_none()
        {
            p.push(format!("spec.rollout.blueGreen.maxLag: '{d}' is not a duration like 30s, 5m or 1h"));
        }
        if r.strategy == RolloutStrategy::BlueGreen && self.checkpointing.is_none() {
            p.push("spec.rollout.strategy blueGreen needs spec.checkpointing.storage".to_string());
        }
        p
    }

    /// The rollout settings (defaults when unset).
    pub fn rollout(&self) -> Rollout {
        self.rollout.clone().unwrap_or_default()
    }

    /// Storage prefix without a trailing slash, when checkpointing is configured.
    pub fn storage(&self) -> Option<&str> {
        self.checkpointing.as_ref().map(|c| c.storage.trim_end_matches('/'))
    }

    pub fn state_backend_kind(&self) -> StateBackendKind {
        self.state_backend.as_ref().map(|s| s.kind).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        for (s, ms) in [("500ms", Some(500)), ("30s", Some(30_000)), ("5m", Some(300_000)), ("1h30m", Some(5_400_000)), ("2d", Some(172_800_000))] {
            assert_eq!(parse_duration_ms(s), ms, "{s}");
        }
        for bad in ["", "5", "m", "5x", "1.5h", "-3s"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for s in ["500ms", "30s", "1h30m", "7d"] {
            assert!(re.is_match(s) && parse_duration_ms(s).is_some());
        }
    }

    #[test]
    fn storage_rule_matches_the_scheme_list() {
        for s in STORAGE_SCHEMES {
            assert!(STORAGE_RULE.contains(s.trim_end_matches("://")), "{s}");
        }
    }
}
