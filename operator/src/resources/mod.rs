//! Pure builders of the objects a StreamJob owns: the job ConfigMap, the headless
//! `<job>-peers` Service, the `<job>-rest` Service (pod 0) and the StatefulSet. No I/O:
//! `(job, plan) -> object`, applied by the controller with server-side apply.
//!
//! Each deployment runs in a slot (blue/green rollouts run two side by side). Slot
//! `blue` uses the job's own names, exactly as a job that never had a blue/green
//! rollout: StatefulSet `<job>`, `<job>-peers`, `<job>-job`, pods without a slot label.
//! Slot `green` suffixes them: `<job>-green`, `<job>-green-peers`, `<job>-green-job`,
//! pods labelled `weir.dev/slot: green` (its StatefulSet's and peers' selectors include
//! it). `<job>-rest` selects pod 0 of the active slot; `<job>-<slot>-rest` selects pod 0
//! of one slot (how the operator reaches green's coordinator before the switch).

mod configmap;
mod services;
mod statefulset;

pub use configmap::{config_map, job_file};
pub use services::{peers_service, rest_service, slot_rest_service};
pub use statefulset::stateful_set;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::{Slot, StreamJob};

/// Label selecting every pod of a job (`status.selector`).
pub const LABEL_JOB: &str = "weir.dev/job";
/// Label with the deployment's job id.
pub const LABEL_JOB_ID: &str = "weir.dev/job-id";
/// Label of the pods of slot `green` (slot `blue`'s pods have none).
pub const LABEL_SLOT: &str = "weir.dev/slot";
/// The runtime container's name.
pub const CONTAINER: &str = "weir";

/// The base name of a slot's objects: its StatefulSet's name (`<job>`, `<job>-green`).
pub fn slot_name(job: &str, slot: Slot) -> String {
    match slot {
        Slot::Blue => job.to_string(),
        Slot::Green => format!("{job}-green"),
    }
}

/// `<job>-<slot>-rest`: pod 0 of one slot (the key [`crate::jobclient::JobClient`] takes
/// for it is `<job>-<slot>`).
pub fn slot_rest_name(job: &str, slot: Slot) -> String {
    rest_name(&slot_rest_key(job, slot))
}
pub fn slot_rest_key(job: &str, slot: Slot) -> String {
    format!("{job}-{slot}")
}

/// Label selector (list query) of one slot's pods.
pub fn pod_selector(job: &str, slot: Slot) -> String {
    match slot {
        Slot::Blue => format!("{LABEL_JOB}={job},{LABEL_SLOT}!=green"),
        Slot::Green => format!("{LABEL_JOB}={job},{LABEL_SLOT}=green"),
    }
}

/// Names of the owned objects (`job` = the slot's base name, see [`slot_name`]).
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

/// Selector of one slot's pods (StatefulSet, peers): slot blue's is the job's (it
/// predates slots, and a StatefulSet's selector is immutable).
pub fn slot_selector(job: &str, slot: Slot) -> BTreeMap<String, String> {
    let mut sel = selector(job);
    if slot == Slot::Green {
        sel.insert(LABEL_SLOT.to_string(), slot.as_str().to_string());
    }
    sel
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
        DeployPlan { spec: j.spec.clone(), job_id: "j-7".into(), restore_from: restore.map(String::from), replicas: 3, slot: Slot::Blue, active: true }
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
        let peers = peers_service(&j, Slot::Blue);
        assert_eq!(peers.metadata.name.as_deref(), Some("fraud-peers"));
        let ps = peers.spec.unwrap();
        assert_eq!(ps.cluster_ip.as_deref(), Some("None"));
        assert_eq!(ps.ports.unwrap()[0].port, 6121);
        let rest = rest_service(&j, Slot::Blue).spec.unwrap();
        assert_eq!(rest.selector.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"], "fraud-0");
        assert_eq!(rest.ports.unwrap()[0].port, 8081);
        let cm = config_map(&j, &j.spec, 3, Slot::Blue);
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

    #[test]
    fn slot_green_has_its_own_names_selectors_and_peers() {
        let j = job(BASE);
        let green = DeployPlan { slot: Slot::Green, active: false, ..plan(&j, Some("s3://b/p/savepoints/sp-j1-1")) };
        let sts = stateful_set(&j, &green);
        assert_eq!(sts.metadata.name.as_deref(), Some("fraud-green"));
        assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.service_name.as_deref(), Some("fraud-green-peers"));
        let sel = spec.selector.match_labels.clone().unwrap();
        assert_eq!(sel, BTreeMap::from([(LABEL_JOB.into(), "fraud".into()), (LABEL_SLOT.into(), "green".into())]));
        let labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert!(sel.iter().all(|(k, v)| labels.get(k) == Some(v)), "the pods match the selector: {labels:?}");
        let env = env_of(&sts);
        assert_eq!(value(&env, "WEIR_JOB_NAME").as_deref(), Some("fraud"));
        assert_eq!(value(&env, "WEIR_PEERS").as_deref(), Some("fraud-green-{ordinal}.fraud-green-peers.{namespace}.svc:6121"));
        assert_eq!(value(&env, "WEIR_RESTORE_FROM").as_deref(), Some("s3://b/p/savepoints/sp-j1-1"));
        let vol = spec.template.spec.as_ref().unwrap().volumes.as_ref().unwrap().iter().find(|v| v.name == "job").unwrap().clone();
        assert_eq!(vol.config_map.unwrap().name, "fraud-green-job");
        assert_eq!(config_map(&j, &j.spec, 3, Slot::Green).metadata.name.as_deref(), Some("fraud-green-job"));
        let peers = peers_service(&j, Slot::Green);
        assert_eq!(peers.metadata.name.as_deref(), Some("fraud-green-peers"));
        assert_eq!(peers.spec.unwrap().selector.unwrap(), sel);
        let own = slot_rest_service(&j, Slot::Green);
        assert_eq!(own.metadata.name.as_deref(), Some("fraud-green-rest"));
        assert_eq!(own.spec.unwrap().selector.unwrap()["statefulset.kubernetes.io/pod-name"], "fraud-green-0");
        let rest = rest_service(&j, Slot::Green);
        assert_eq!(rest.metadata.name.as_deref(), Some("fraud-rest"));
        let rest_sel = rest.spec.unwrap().selector.unwrap();
        assert_eq!((rest_sel["statefulset.kubernetes.io/pod-name"].as_str(), rest_sel[LABEL_SLOT].as_str()), ("fraud-green-0", "green"));
        // Slot blue keeps the names and selectors of a job that never had a rollout.
        let blue = stateful_set(&j, &plan(&j, None));
        assert_eq!(blue.spec.as_ref().unwrap().selector.match_labels.clone().unwrap(), selector("fraud"));
        assert!(!blue.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.as_ref().unwrap().contains_key(LABEL_SLOT));
        assert_eq!(pod_selector("fraud", Slot::Blue), "weir.dev/job=fraud,weir.dev/slot!=green");
        assert_eq!(pod_selector("fraud", Slot::Green), "weir.dev/job=fraud,weir.dev/slot=green");
        assert_eq!(slot_rest_key("fraud", Slot::Blue), "fraud-blue");
    }
}
