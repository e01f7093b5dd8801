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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::StreamJobSpec;
    use crate::lifecycle::DeployPlan;
    use k8s_openapi::api::core::v1::EnvVar;

    fn job(spec_yaml: &str) -> StreamJob {
        let spec: StreamJobSpec = serde_yaml_ng::from_str(spec_yaml).expect("spec");
        let mut j = StreamJob::new("fraud", spec);
        j.metadata.namespace = Some("prod".into());
        j.metadata.uid = Some("u-1".into());
        j
    }

    const BASE: &str = "image: weir:1\njob: {builtin: fraud-detection, params: {rate: 10, extra: {accounts: 5}}}\nparallelism: 3\ncheckpointing: {storage: 's3://b/p/', secretRef: {name: creds}}\n";

    fn plan(j: &StreamJob, restore: Option<&str>) -> DeployPlan {
        DeployPlan { spec: j.spec.clone(), job_id: "j-7".into(), restore_from: restore.map(String::from), replicas: 3 }
    }

    fn env_of(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> Vec<EnvVar> {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].env.clone().unwrap()
    }

    fn value(env: &[EnvVar], name: &str) -> Option<String> {
        env.iter().find(|e| e.name == name).and_then(|e| e.value.clone())
    }

    #[test]
    fn statefulset_carries_the_runtime_contract() {
        let j = job(BASE);
        let sts = stateful_set(&j, &plan(&j, Some("s3://b/p/savepoints/sp-1")));
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.service_name.as_deref(), Some("fraud-peers"));
        assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
        let pod = spec.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.args.as_deref(), Some(&["worker".to_string()][..]));
        assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
        assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
        let env = env_of(&sts);
        assert_eq!(value(&env, "WEIR_JOB_NAME").as_deref(), Some("fraud"));
        assert_eq!(value(&env, "WEIR_NAMESPACE").as_deref(), Some("prod"));
        assert_eq!(value(&env, "WEIR_JOB_ID").as_deref(), Some("j-7"));
        assert_eq!(value(&env, "WEIR_PARALLELISM").as_deref(), Some("3"));
        assert_eq!(value(&env, "WEIR_MAX_PARALLELISM").as_deref(), Some("720"));
        assert_eq!(value(&env, "WEIR_CHECKPOINT_URL").as_deref(), Some("s3://b/p/j-7"));
        assert_eq!(value(&env, "WEIR_RESTORE_FROM").as_deref(), Some("s3://b/p/savepoints/sp-1"));
        assert_eq!(value(&env, "WEIR_PEERS").as_deref(), Some("{job}-{ordinal}.{job}-peers.{namespace}.svc:6121"));
        let pod_name = env.iter().find(|e| e.name == "WEIR_POD_NAME").unwrap();
        assert_eq!(pod_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.name");
        assert_eq!(c.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "creds");
        let ann = spec.template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(ann["prometheus.io/scrape"], "true");
        assert_eq!(ann["prometheus.io/port"], "8081");
        assert_eq!(spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap()[LABEL_JOB_ID], "j-7");
        assert!(spec.volume_claim_templates.is_none());
    }

    #[test]
    fn rocksdb_gets_a_volume_claim_template() {
        let j = job(&format!("{BASE}stateBackend: {{type: rocksdb, volumeSize: 10Gi, storageClassName: fast}}\n"));
        let sts = stateful_set(&j, &plan(&j, None));
        let claims = sts.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap();
        let req = claims[0].spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["storage"].0, "10Gi");
        assert_eq!(claims[0].spec.as_ref().unwrap().storage_class_name.as_deref(), Some("fast"));
        assert_eq!(value(&env_of(&sts), "WEIR_STATE_BACKEND").as_deref(), Some("rocksdb"));
        assert_eq!(value(&env_of(&sts), "WEIR_RESTORE_FROM"), None);
    }

    #[test]
    fn pod_template_is_merged_over_the_generated_pod() {
        let j = job(&format!(
            "{BASE}podTemplate: {{metadata: {{labels: {{team: risk, weir.dev/job: hijack}}}}, spec: {{nodeSelector: {{pool: streaming}}, containers: [{{name: weir, env: [{{name: EXTRA, value: '1'}}]}}, {{name: sidecar, image: busybox}}]}}}}\n"
        ));
        let sts = stateful_set(&j, &plan(&j, None));
        let t = &sts.spec.as_ref().unwrap().template;
        let labels = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels["team"], "risk");
        assert_eq!(labels[LABEL_JOB], "fraud", "the selector label cannot be overridden");
        let pod = t.spec.as_ref().unwrap();
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "streaming");
        assert_eq!(pod.containers.len(), 2);
        let env = pod.containers[0].env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "EXTRA") && env.iter().any(|e| e.name == "WEIR_JOB_ID"));
        assert_eq!(pod.containers[0].image.as_deref(), Some("weir:1"));
    }

    #[test]
    fn services_and_config_map() {
        let j = job(BASE);
        let peers = peers_service(&j);
        assert_eq!(peers.metadata.name.as_deref(), Some("fraud-peers"));
        let ps = peers.spec.unwrap();
        assert_eq!(ps.cluster_ip.as_deref(), Some("None"));
        assert_eq!(ps.ports.unwrap()[0].port, 6121);
        let rest = rest_service(&j).spec.unwrap();
        assert_eq!(rest.selector.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"], "fraud-0");
        assert_eq!(rest.ports.unwrap()[0].port, 8081);
        let cm = config_map(&j, &j.spec, 3);
        assert_eq!(cm.metadata.name.as_deref(), Some("fraud-job"));
        let file = &cm.data.unwrap()["job.yaml"];
        let parsed: serde_json::Value = serde_yaml_ng::from_str(file).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"job": "fraud-detection", "name": "fraud", "parallelism": 3, "maxParallelism": 720,
                               "params": {"rate": 10, "extra": {"accounts": 5}}})
        );
        assert_eq!(rest_url("fraud", "prod"), "http://fraud-rest.prod.svc:8081");
    }
}
