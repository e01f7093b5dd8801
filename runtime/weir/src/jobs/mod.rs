//! Built-in jobs, selectable by name from the CLI or a job file.

pub mod fraud;
pub mod keyed_state;
pub mod latency;
pub mod nexmark;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::connector::blackhole::BlackholeSink;
use crate::connector::files::ExactlyOnceFileSink;
use crate::connector::jsonl::JsonLinesSink;
use crate::error::JobError;
use crate::record::Data;
use crate::stream::{DataStream, StreamEnv};

/// Parameters common to built-in jobs (from CLI flags or a job file).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobParams {
    /// Bounded input: generate this many events (generator sources).
    pub events: Option<u64>,
    /// Read events from this JSON-lines file (`-` = stdin) instead of generating them.
    pub input: Option<PathBuf>,
    /// Write results as JSON lines here (`-` = stdout); default: discard.
    pub output: Option<PathBuf>,
    /// Limit the generator to this many events per second (wall clock).
    pub rate: Option<u64>,
    /// Event-time rate of the generator (events per second of event time).
    pub event_rate: Option<u64>,
    /// Job-specific settings.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_yaml_ng::Value>,
}

/// A job that ships with the runtime.
pub struct BuiltinJob {
    pub name: &'static str,
    pub description: &'static str,
    pub build: fn(&StreamEnv, &JobParams) -> Result<(), JobError>,
}

/// Every built-in job.
pub fn builtins() -> Vec<BuiltinJob> {
    let mut v = nexmark::jobs();
    v.push(fraud::job());
    v.push(latency::job());
    v.push(keyed_state::job());
    v
}

/// The built-in job called `name`.
pub fn find(name: &str) -> Option<BuiltinJob> {
    builtins().into_iter().find(|j| j.name == name)
}

/// A job file: which job, with which parameters.
///
/// ```yaml
/// job: nexmark-q5
/// parallelism: 2
/// params:
///   events: 1000000
///   output: q5.jsonl
/// ```
///
/// A SQL job names its script inline or as a file next to the job file:
///
/// ```yaml
/// job: sql
/// sqlFile: job.sql        # or sql: "CREATE TABLE ...; INSERT INTO ..."
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobFile {
    pub job: String,
    pub name: Option<String>,
    /// `job: sql`: the script, inline.
    pub sql: Option<String>,
    /// `job: sql`: the script's file (a relative path is relative to the job file's folder).
    pub sql_file: Option<PathBuf>,
    pub parallelism: Option<u32>,
    pub max_parallelism: Option<u32>,
    /// `memory` (default) or `rocksdb`.
    #[serde(default)]
    pub state_backend: Option<crate::state::StateBackend>,
    #[serde(default)]
    pub params: JobParams,
}

impl JobFile {
    pub fn load(path: &std::path::Path) -> Result<JobFile, JobError> {
        let text = std::fs::read_to_string(path).map_err(|e| JobError::Invalid(format!("cannot read job file {}: {e}", path.display())))?;
        serde_yaml_ng::from_str(&text).map_err(|e| JobError::Invalid(format!("job file {}: {e}", path.display())))
    }
}

/// Writes results to `params.output`, or discards them. A path ending in `/` (or an
/// existing directory) gets the exactly-once file sink (time-bucketed files, visible
/// when a checkpoint completes); a file path gets plain JSON lines (one file).
pub(crate) fn sink_output<T: Data + serde::Serialize>(results: &DataStream<T>, p: &JobParams) -> Result<(), JobError> {
    match &p.output {
        Some(path) if path.to_string_lossy().ends_with('/') || path.is_dir() => {
            let path = path.clone();
            results.sink("output", move |_| ExactlyOnceFileSink::new(&path)).uid("output");
        }
        Some(path) => {
            let path = path.clone();
            results.sink("output", move |_| JsonLinesSink::new(&path)).uid("output").parallelism(1);
        }
        None => {
            results.sink("blackhole", |_| BlackholeSink::default()).uid("output");
        }
    }
    Ok(())
}
