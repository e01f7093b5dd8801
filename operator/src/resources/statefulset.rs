use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, SecretEnvSource,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use weir_api::env;

use super::{CONTAINER, LABEL_JOB_ID, LABEL_SLOT, config_name, labels, meta, peers_name, slot_name, slot_selector};
use crate::crd::{Slot, StateBackendKind, StreamJob};
use crate::lifecycle::DeployPlan;

/// Where RocksDB keeps its files in the pod.
pub const STATE_DIR: &str = "/var/lib/weir/state";

/// The job's StatefulSet for `plan` (replicas 0 = stopped), in the plan's slot.
pub fn stateful_set(job: &StreamJob, plan: &DeployPlan) -> StatefulSet {
    let name = job.metadata.name.clone().unwrap_or_default();
    let sts = slot_name(&name, plan.slot);
    // Peers are `<sts>-<i>.<sts>-peers`: the default template names them by the job for
    // slot blue; slot green spells its own names out.
    let peers = match plan.slot {
        Slot::Blue => weir_api::DEFAULT_PEERS_TEMPLATE.to_string(),
        Slot::Green => weir_api::DEFAULT_PEERS_TEMPLATE.replace("{job}", &sts),
    };
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let spec = &plan.spec;
    let mut env_vars = vec![
        var(env::JOB_NAME, &name),
        var(env::NAMESPACE, &namespace),
        EnvVar {
            name: env::POD_NAME.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), ..ObjectFieldSelector::default() }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        var(env::JOB_ID, &plan.job_id),
        var(env::PARALLELISM, &plan.replicas.max(1).to_string()),
        var(env::MAX_PARALLELISM, &spec.max_parallelism.to_string()),
        var(env::PEERS, &peers),
        var(env::STATE_BACKEND, spec.state_backend_kind().as_str()),
        var(env::JOB_FILE, weir_api::JOB_FILE_PATH),
    ];
    if let Some(storage) = spec.storage() {
        env_vars.push(var(env::CHECKPOINT_URL, &format!("{storage}/{}", plan.job_id)));
    }
    if let Some(c) = &spec.checkpointing {
        if let Some(ms) = crate::crd::parse_duration_ms(&c.interval) {
            env_vars.push(var(env::CHECKPOINT_INTERVAL_MS, &ms.to_string()));
        }
        env_vars.push(var(env::CHECKPOINT_RETAIN, &c.retain.to_string()));
    }
    if let Some(restore) = &plan.restore_from {
        env_vars.push(var(env::RESTORE_FROM, restore));
    }
    let mut mounts = vec![VolumeMount { name: "job".into(), mount_path: weir_api::JOB_FILE_DIR.into(), read_only: Some(true), ..VolumeMount::default() }];
    let mut volumes = vec![Volume {
        name: "job".into(),
        config_map: Some(ConfigMapVolumeSource { name: config_name(&sts), ..ConfigMapVolumeSource::default() }),
        ..Volume::default()
    }];
    let mut claims = None;
    if let Some(sb) = spec.state_backend.as_ref().filter(|s| s.kind == StateBackendKind::Rocksdb) {
        env_vars.push(var(env::STATE_DIR, STATE_DIR));
        mounts.push(VolumeMount { name: "state".into(), mount_path: STATE_DIR.into(), ..VolumeMount::default() });
        match &sb.volume_size {
            Some(size) => {
                claims = Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta { name: Some("state".into()), labels: Some(labels(&name)), ..ObjectMeta::default() },
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteOnce".into()]),
                        storage_class_name: sb.storage_class_name.clone(),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(BTreeMap::from([("storage".into(), Quantity(size.clone()))])),
                            ..VolumeResourceRequirements::default()
                        }),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    ..PersistentVolumeClaim::default()
                }]);
            }
            None => volumes.push(Volume { name: "state".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }),
        }
    }
    let env_from = spec.checkpointing.as_ref().and_then(|c| c.secret_ref.as_ref()).map(|s| {
        vec![EnvFromSource { secret_ref: Some(SecretEnvSource { name: s.name.clone(), optional: Some(false) }), ..EnvFromSource::default() }]
    });
    let (command, args) = match &spec.job.command {
        Some(cmd) => (Some(cmd.clone()), spec.job.args.clone()),
        None => (None, Some(vec!["worker".to_string()])),
    };
    let probe = |path: &str, delay: i32| Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::String("http".into()), ..HTTPGetAction::default() }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(10),
        failure_threshold: Some(6),
        ..Probe::default()
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        command,
        args,
        env: Some(env_vars),
        env_from,
        ports: Some(vec![
            ContainerPort { name: Some("data".into()), container_port: weir_api::DATA_PORT as i32, protocol: Some("TCP".into()), ..ContainerPort::default() },
            ContainerPort { name: Some("http".into()), container_port: weir_api::HTTP_PORT as i32, protocol: Some("TCP".into()), ..ContainerPort::default() },
        ]),
        liveness_probe: Some(probe(weir_api::paths::HEALTHZ, 10)),
        readiness_probe: Some(probe(weir_api::paths::READYZ, 5)),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut pod_labels = labels(&name);
    pod_labels.insert(LABEL_JOB_ID.into(), plan.job_id.clone());
    if plan.slot == Slot::Green {
        pod_labels.insert(LABEL_SLOT.into(), plan.slot.as_str().into());
    }
    let annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), weir_api::HTTP_PORT.to_string()),
        ("prometheus.io/path".to_string(), weir_api::paths::METRICS.to_string()),
    ]);
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(pod_labels), annotations: Some(annotations), ..ObjectMeta::default() }),
        spec: Some(PodSpec { containers: vec![container], volumes: Some(volumes), termination_grace_period_seconds: Some(60), ..PodSpec::default() }),
    };
    if let Some(overlay) = &spec.pod_template {
        template = merge_template(template, overlay);
    }
    StatefulSet {
        metadata: meta(job, sts.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(plan.replicas),
            service_name: Some(peers_name(&sts)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(slot_selector(&name, plan.slot)), ..LabelSelector::default() },
            template,
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

/// Merges the user's pod template over the generated one: objects key by key, lists of
/// named items (containers, volumes, env, ...) item by item by `name`, other values
/// replaced. The job's labels win over the overlay (the selector depends on them).
fn merge_template(base: PodTemplateSpec, overlay: &Value) -> PodTemplateSpec {
    let Ok(mut merged) = serde_json::to_value(&base) else { return base };
    merge(&mut merged, overlay);
    let mut out: PodTemplateSpec = serde_json::from_value(merged).unwrap_or_else(|_| base.clone());
    // Identity wins over the overlay.
    if let (Some(m), Some(bm)) = (out.metadata.as_mut(), base.metadata.as_ref()) {
        let labels = m.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in bm.labels.iter().flatten() {
            labels.insert(k.clone(), v.clone());
        }
    }
    out
}

fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) if is_named(b) && is_named(o) => {
            for item in o {
                let name = item.get("name");
                match b.iter_mut().find(|x| x.get("name") == name) {
                    Some(existing) => merge(existing, item),
                    None => b.push(item.clone()),
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn is_named(items: &[Value]) -> bool {
    items.iter().all(|i| i.get("name").is_some_and(Value::is_string))
}
