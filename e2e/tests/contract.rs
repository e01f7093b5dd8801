//! The contract between the operator and the runtime, checked on the real code of both
//! sides: every example StreamJob's rendered job file (the ConfigMap the operator
//! mounts at /etc/weir: job.yaml, and job.sql for SQL jobs) is a job file the `weir`
//! runtime accepts and builds (a SQL script compiles), with the parallelism and max
//! parallelism the operator asked for.


use weir_operator::crd::{Slot, StreamJob};
use weir_operator::resources::{config_map, job_file};

#[test]
fn rendered_job_files_are_accepted_by_the_runtime() {
    let dir = weir_e2e::kube::repo_root().join("examples/streamjobs");
    let tmp = weir_e2e::scratch("contract");
    let mut checked = 0;
    let mut sql = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/streamjobs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read example");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).expect("yaml");
            if value.get("kind").and_then(|k| k.as_str()) != Some("StreamJob") {
                continue;
            }
            let job: StreamJob = serde_yaml_ng::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if job.spec.job.command.is_some() {
                continue; // a custom image's program is not the runtime's
            }
            let name = job.metadata.name.clone().unwrap_or_default();
            // the ConfigMap's files, as mounted at /etc/weir
            let dir = tmp.join(&name);
            std::fs::create_dir_all(&dir).expect("mount dir");
            let cm = config_map(&job, &job.spec, job.spec.parallelism, Slot::Blue);
            for (file, text) in cm.data.clone().unwrap_or_default() {
                std::fs::write(dir.join(file), text).expect("write a ConfigMap file");
            }
            let rendered = job_file(&name, &job.spec, job.spec.parallelism);
            let file = dir.join(weir_api::JOB_FILE_NAME);
            let mut resolved = weir::cli::resolve(file.to_str().expect("utf-8"), &weir::cli::Overrides::default())
                .unwrap_or_else(|e| panic!("{}: the runtime refuses the operator's job file ({e}):\n{rendered}", path.display()));
            // and builds the job graph (a SQL script compiles)
            weir_cli::job::build(&mut resolved).unwrap_or_else(|e| panic!("{}: the runtime cannot build the job ({e})", path.display()));
            if job.spec.job.sql.is_some() {
                sql += 1;
            }
            assert_eq!(resolved.config.parallelism as i32, job.spec.parallelism, "{}", path.display());
            assert_eq!(resolved.config.max_parallelism as i32, job.spec.max_parallelism, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "the examples hold built-in StreamJobs ({checked} checked)");
    assert!(sql >= 1, "the examples hold a SQL StreamJob ({sql} checked)");
}
