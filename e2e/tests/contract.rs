//! The contract between the operator and the runtime, checked on the real code of both
//! sides: every example StreamJob's rendered job file (the ConfigMap the operator
//! mounts at /etc/weir/job.yaml) is a job file the `weir` runtime accepts, with the
//! parallelism and max parallelism the operator asked for.

use std::path::Path;

use weir_operator::crd::StreamJob;
use weir_operator::resources::job_file;

#[test]
fn rendered_job_files_are_accepted_by_the_runtime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/streamjobs");
    let tmp = weir_e2e::scratch("contract");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/streamjobs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read example");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).expect("yaml");
            if value.get("kind").and_then(|k| k.as_str()) != Some("StreamJob") {
                continue;
            }
            let job: StreamJob = serde_yaml_ng::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if job.spec.job.builtin.is_none() {
                continue; // SQL and custom images are not built-in jobs
            }
            let name = job.metadata.name.clone().unwrap_or_default();
            let rendered = job_file(&name, &job.spec, job.spec.parallelism);
            let file = tmp.join(format!("{name}.yaml"));
            std::fs::write(&file, &rendered).expect("write job file");
            let resolved = weir::cli::resolve(file.to_str().expect("utf-8"), &weir::cli::Overrides::default())
                .unwrap_or_else(|e| panic!("{}: the runtime refuses the operator's job file ({e}):\n{rendered}", path.display()));
            assert_eq!(resolved.config.parallelism as i32, job.spec.parallelism, "{}", path.display());
            assert_eq!(resolved.config.max_parallelism as i32, job.spec.max_parallelism, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "the examples hold built-in StreamJobs ({checked} checked)");
}
