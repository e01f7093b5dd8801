use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::{config_name, meta, slot_name};
use crate::crd::{JobParams, Slot, StreamJob, StreamJobSpec};

/// The runtime's job file (`/etc/weir/job.yaml`), as the runtime's `JobFile` parses it.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct JobFile<'a> {
    job: &'a str,
    name: &'a str,
    parallelism: i32,
    max_parallelism: i32,
    /// `job: sql`: the script's file, next to the job file.
    #[serde(skip_serializing_if = "Option::is_none")]
    sql_file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a JobParams>,
}

/// Name of the SQL script file next to the job file (for `job.sql`).
pub const SQL_FILE: &str = "job.sql";

/// The job file for `spec` deployed with `replicas` pods. A SQL job is `job: sql` with
/// `sqlFile: job.sql` (the script, mounted next to it); a custom command gets `job: custom`.
pub fn job_file(name: &str, spec: &StreamJobSpec, replicas: i32) -> String {
    let job = match (&spec.job.builtin, &spec.job.sql) {
        (Some(b), _) => b.as_str(),
        (None, Some(_)) => "sql",
        (None, None) => "custom",
    };
    let sql_file = spec.job.sql.as_ref().map(|_| SQL_FILE);
    let file = JobFile { job, name, parallelism: replicas, max_parallelism: spec.max_parallelism, sql_file, params: spec.job.params.as_ref() };
    serde_yaml_ng::to_string(&file).unwrap_or_default()
}

/// The ConfigMap `<job>-job` (`<job>-green-job`) holding `job.yaml` (and `job.sql`).
pub fn config_map(job: &StreamJob, spec: &StreamJobSpec, replicas: i32, slot: Slot) -> ConfigMap {
    let name = job.metadata.name.clone().unwrap_or_default();
    let mut data = BTreeMap::from([(weir_api::JOB_FILE_NAME.to_string(), job_file(&name, spec, replicas))]);
    if let Some(sql) = &spec.job.sql {
        data.insert(SQL_FILE.to_string(), sql.clone());
    }
    ConfigMap { metadata: meta(job, config_name(&slot_name(&name, slot))), data: Some(data), ..ConfigMap::default() }
}
