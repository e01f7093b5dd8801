//! The generated CRD: the checked-in copy is in sync, every example is accepted, and every
//! manifest of `examples/invalid/` is rejected with the message its `# expect:` line names
//! (structural checks as the API server does them, and the CEL rules evaluated by kube's
//! CEL validator).

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde_json::Value;
use weir_operator::crd::{StreamJob, crd_yaml};

fn repo() -> PathBuf {
    manifest_dir().join("..")
}

fn schema() -> Value {
    let crd = StreamJob::crd();
    let v = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema");
    serde_json::to_value(v).expect("schema json")
}

#[test]
fn checked_in_crd_is_up_to_date() {
    let path = repo().join("crds/streamjobs.weir.dev.yaml");
    let want = crd_yaml();
    if std::env::var_os("WEIR_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &want).expect("write crd");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date: run `cargo run -p weir-operator -- crd > crds/streamjobs.weir.dev.yaml` (or WEIR_UPDATE_CRDS=1 cargo test -p weir-operator --test schema)",
        path.display()
    );
}

#[test]
fn crd_has_subresources_printer_columns_and_cel_rules() {
    let crd = StreamJob::crd();
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["sj".to_string()][..]));
    let v = &crd.spec.versions[0];
    let scale = v.subresources.as_ref().and_then(|s| s.scale.as_ref()).expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.parallelism");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
    assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
    let cols: Vec<&str> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, ["Phase", "Parallelism", "Pods", "Job", "Active", "Stage", "Last Savepoint", "Age", "Message"]);
    let text = serde_json::to_string(&schema()).unwrap();
    for rule in ["self.parallelism <= self.maxParallelism", "self == oldSelf", "self.matches('^(s3|gs|az|file)://.+')"] {
        assert!(text.contains(rule), "missing CEL rule {rule}");
    }
    assert!(text.contains(weir_operator::crd::DURATION_PATTERN.replace('\\', "\\\\").as_str()));
}

/// Structural validation (types, required, enums, ranges, lengths, patterns), with
/// messages in the API server's words.
fn structural(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        let nullable = schema.get("nullable").and_then(Value::as_bool).unwrap_or(false);
        if !ok && !(nullable && v.is_null()) {
            errs.push(format!("{path}: Invalid value: {v}: {path} in body must be of type {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        let list: Vec<String> = e.iter().map(|x| x.to_string()).collect();
        errs.push(format!("{path}: Unsupported value: {v}: supported values: {}", list.join(", ")));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errs.push(format!("{path}: Invalid value: {v}: {path} in body should be greater than or equal to {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64())
        && n > max
    {
        errs.push(format!("{path}: Invalid value: {v}: {path} in body should be less than or equal to {max}"));
    }
    if let Some(s) = v.as_str() {
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && (s.chars().count() as u64) < min
        {
            errs.push(format!("{path}: Invalid value: {v}: {path} in body should be at least {min} chars long"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str)
            && !regex::Regex::new(p).expect("pattern compiles").is_match(s)
        {
            errs.push(format!("{path}: Invalid value: {v}: {path} in body should match '{p}'"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                errs.push(format!("{path}.{r}: Required value"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool).unwrap_or(false);
        for (k, child) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => structural(s, child, &format!("{path}.{k}"), errs),
                None => match schema.get("additionalProperties") {
                    Some(ap) if ap.is_object() => structural(ap, child, &format!("{path}.{k}"), errs),
                    _ if props.is_some() && !preserve && path != "" => errs.push(format!("{path}.{k}: unknown field \"{k}\"")),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            structural(items, x, &format!("{path}[{i}]"), errs);
        }
    }
}

/// All errors the API server would report for `obj` (with `old` for transition rules).
fn validate(obj: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema();
    let mut errs = Vec::new();
    for key in ["spec"] {
        match (schema["properties"].get(key), obj.get(key)) {
            (Some(s), Some(v)) => structural(s, v, key, &mut errs),
            (_, None) => errs.push(format!("{key}: Required value")),
            _ => {}
        }
    }
    if errs.is_empty()
        && let Err(e) = kube::core::cel::Validator::new().validate(&schema, obj, old)
    {
        errs.extend(e.into_vec().into_iter().map(|e| e.to_string()));
    }
    errs
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read example");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("StreamJob"))
        .collect()
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .expect("examples dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_is_valid_and_parses_as_a_streamjob() {
    let files = yaml_files("examples/streamjobs");
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        for doc in docs(&f) {
            let errs = validate(&doc, None);
            assert!(errs.is_empty(), "{}: {errs:#?}", f.display());
            let job: StreamJob = serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(job.spec.problems(None).is_empty(), "{}: {:?}", f.display(), job.spec.problems(None));
        }
    }
}

#[test]
fn every_invalid_example_is_rejected_with_a_useful_message() {
    let files = yaml_files("examples/invalid");
    assert!(files.len() >= 8);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).unwrap_or_else(|| panic!("{}: no '# expect:' line", f.display()));
        let doc = docs(&f).pop().expect("a StreamJob");
        // `# old: maxParallelism N`: an update of the same object that had N.
        let old = text.lines().find_map(|l| l.strip_prefix("# old: maxParallelism ")).map(|n| {
            let mut o = doc.clone();
            o["spec"]["maxParallelism"] = serde_json::json!(n.trim().parse::<i64>().expect("number"));
            o
        });
        let errs = validate(&doc, old.as_ref());
        assert!(errs.iter().any(|e| e.contains(expect)), "{}: want an error containing {expect:?}, got {errs:#?}", f.display());
        // The operator's own check agrees when the schema lets a bad spec through.
        if let Ok(job) = serde_json::from_value::<StreamJob>(doc) {
            let previous = old.and_then(|o| serde_json::from_value::<StreamJob>(o).ok()).map(|j| j.spec);
            assert!(!job.spec.problems(previous.as_ref()).is_empty() || !errs.is_empty(), "{}", f.display());
        }
    }
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` at run time (the build's
/// value only as a fallback: a test binary built from another checkout carries that
/// checkout's path).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from)
}
