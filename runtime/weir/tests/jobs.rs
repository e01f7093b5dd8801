//! Built-in jobs, run through the CLI layer, checked against independent computations.

use weir::cli::{Overrides, build, resolve};
use weir::jobs::fraud::{Alert, reference_alerts, transaction};

fn run_to_file(job: &str, p: u32, events: u64, out: &std::path::Path) {
    let o = Overrides { parallelism: Some(p), events: Some(events), output: Some(out.to_path_buf()), ..Default::default() };
    let env = build(&resolve(job, &o).expect("job resolves")).expect("job builds");
    env.execute().expect("job runs");
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Vec<T> {
    std::fs::read_to_string(path).expect("output exists").lines().map(|l| serde_json::from_str(l).expect("valid JSON line")).collect()
}

#[test]
fn fraud_alerts_equal_the_reference_at_any_parallelism() {
    let n = 300_000u64;
    let txs: Vec<_> = (0..n).map(|i| transaction(i, 1000)).collect();
    let mut want = reference_alerts(&txs);
    want.sort();
    assert!(want.len() > 100, "the generator produces alerts ({})", want.len());
    let dir = tempdir();
    for p in [1, 3] {
        let out = dir.join(format!("alerts-{p}.jsonl"));
        run_to_file("fraud-detection", p, n, &out);
        let mut got: Vec<Alert> = read_lines(&out);
        got.sort();
        assert_eq!(got, want, "parallelism {p}");
    }
}

#[test]
fn unknown_jobs_and_conflicting_inputs_are_refused_clearly() {
    let e = resolve("no-such-job", &Overrides::default()).err().expect("refused").to_string();
    assert!(e.contains("unknown job 'no-such-job'"), "{e}");
    let o = Overrides { events: Some(5), input: Some("x.jsonl".into()), ..Default::default() };
    let e = resolve("fraud-detection", &o).err().expect("refused").to_string();
    assert!(e.contains("--events and --input"), "{e}");
    let o = Overrides { parallelism: Some(1000), ..Default::default() };
    let e = resolve("fraud-detection", &o).err().expect("refused").to_string();
    assert!(e.contains("parallelism 1000"), "{e}");
}

pub fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weir-test-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
