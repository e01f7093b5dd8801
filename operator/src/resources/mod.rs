//! Pure builders of the objects a StreamJob owns: the job ConfigMap, the headless
//! `<job>-peers` Service, the `<job>-rest` Service (pod 0) and the StatefulSet. No I/O:
//! `(job, plan) -> object`, applied by the controller with server-side apply.

mod configmap;
mod services;
mod statefulset;

pub use configmap::{config_map, job_file};
pub use services::{peers_service, rest_service};
pub use statefulset::stateful_set;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::StreamJob;

/// Label selecting every pod of a job (`status.selector`).
pub const LABEL_JOB: &str = "weir.dev/job";
/// Label with the deployment's job id.
pub const LABEL_JOB_ID: &str = "weir.dev/job-id";
/// The runtime container's name.
pub const CONTAINER: &str = "weir";

/// Names of the owned objects.
pub fn peers_name(job: &str) -> String {
    format!("{job}-peers")
}
pub fn rest_name(job: &str) -> String {
    format!("{job}-rest")
}
pub fn config_name(job: &str) -> String {
    format!("{job}-job")
}

/// Labels of every owned object.
pub fn labels(job: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "weir".to_string()),
        ("app.kubernetes.io/instance".to_string(), job.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), crate::FIELD_MANAGER.to_string()),
        (LABEL_JOB.to_string(), job.to_string()),
    ])
}

pub fn selector(job: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_JOB.to_string(), job.to_string())])
}

/// The controller owner reference to `job`.
pub fn owner(job: &StreamJob) -> Option<OwnerReference> {
    job.controller_owner_ref(&())
}

/// Metadata of an owned object called `name`.
pub fn meta(job: &StreamJob, name: String) -> ObjectMeta {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(name),
        namespace: job.metadata.namespace.clone(),
        labels: Some(labels(&job_name)),
        owner_references: owner(job).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The HTTP base URL of a job's coordinator inside the cluster.
pub fn rest_url(job: &str, namespace: &str) -> String {
    format!("http://{}.{namespace}.svc:{}", rest_name(job), weir_api::HTTP_PORT)
}
