//! A job across worker processes on 127.0.0.1 (`weir cluster`), with checkpoints in a
//! real S3-compatible server (started by `./test.sh`) and the exactly-once file sink:
//! - workers, including worker 0 (the coordinator), are killed with SIGKILL mid-run and
//!   the committed output still equals an uninterrupted run's, nothing lost or doubled
//!   (keyed state on RocksDB);
//! - stop-with-savepoint through the REST API at P=3, then the job resumes from that
//!   savepoint at P=2 and at P=4, and the outputs add up to the uninterrupted run's.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_api::{JobState, JobStatus, OperationStatus, SavepointStatus, Triggered, paths};
use weir_e2e::*;

/// Events of the test job (Nexmark q5: hot items over a sliding window, keyed state).
const EVENTS: u64 = 1_200_000;

struct Cluster {
    child: Child,
    rest: String,
    log: std::path::PathBuf,
}

impl Cluster {
    fn start(dir: &Path, name: &str, workers: u32, extra: &[&str]) -> Cluster {
        let rest_port = free_ports(workers as u16);
        let data_port = free_ports(workers as u16);
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let child = Command::new(weir_bin())
            .args(["cluster", "nexmark-q5", "--workers", &workers.to_string(), "--rest-port", &rest_port.to_string(), "--data-port", &data_port.to_string()])
            .args(extra)
            .env("WEIR_LOG", "info")
            .stdout(Stdio::from(f.try_clone().expect("log")))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("start weir cluster");
        Cluster { child, rest: format!("127.0.0.1:{rest_port}"), log }
    }

    fn job(&self) -> Option<JobStatus> {
        let (code, body) = http(&self.rest, "GET", paths::JOB, None)?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Waits until the job runs and has completed a checkpoint newer than `after`.
    fn wait_checkpoint(&self, after: u64) -> u64 {
        wait_for("a completed checkpoint", Duration::from_secs(60), || {
            let j = self.job()?;
            let c = j.last_checkpoint?;
            (j.state == JobState::Running && c.id > after).then_some(c.id)
        })
    }

    fn wait_exit(mut self, timeout: Duration) -> String {
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("the cluster did not finish within {timeout:?}; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "the cluster failed ({status}); log:\n{log}");
        log
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn reference(dir: &Path) -> Vec<String> {
    let out = dir.join("reference.jsonl");
    run_weir(&["run", "nexmark-q5", "--events", &EVENTS.to_string(), "--output", out.to_str().expect("utf-8 path"), "-q"]);
    let r = sorted_lines(&out);
    assert!(r.len() > 50, "the reference run has results");
    r
}

#[test]
fn exactly_once_while_workers_are_killed() {
    let Some(bucket) = s3_bucket() else { return };
    let dir = scratch("kill");
    let expected = reference(&dir);
    let out = format!("{}/out/", dir.display());
    let ckpt = format!("s3://{bucket}/e2e-kill-{}", std::process::id());
    // ~20 s of input at this rate: long enough to kill three workers one after another
    // keyed state on RocksDB here (the savepoint test below keeps it on the heap)
    let c = Cluster::start(
        &dir,
        "kill",
        3,
        &["--events", &EVENTS.to_string(), "--rate", "60000", "--output", &out, "--checkpoint-dir", &ckpt, "--checkpoint-interval", "700ms", "--state-backend", "rocksdb"],
    );
    let mut last = c.wait_checkpoint(0);
    let supervisor = c.child.id();
    for victim in [1u32, 0, 2] {
        let pid = wait_for("the victim's pid", Duration::from_secs(20), || worker_pids(supervisor).into_iter().find(|(o, _)| *o == victim).map(|(_, p)| p));
        kill9(pid);
        eprintln!("killed worker {victim} (pid {pid}) after checkpoint {last}");
        // the job recovers: it runs again and completes a newer checkpoint
        last = c.wait_checkpoint(last);
    }
    let log = c.wait_exit(Duration::from_secs(180));
    assert!(log.matches("restarting it").count() >= 3, "the supervisor restarted the killed workers:\n{log}");
    let got = committed(Path::new(&out));
    assert_eq!(got.len(), expected.len(), "as many results as the uninterrupted run (nothing lost or doubled)");
    assert_eq!(got, expected, "the same results as the uninterrupted run");
}

#[test]
fn stop_with_savepoint_over_rest_then_rescale_to_2_and_4() {
    let Some(bucket) = s3_bucket() else { return };
    let dir = scratch("rescale");
    let expected = reference(&dir);
    let ckpt = format!("s3://{bucket}/e2e-rescale-{}", std::process::id());
    let out_a = format!("{}/a/", dir.display());
    let a = Cluster::start(&dir, "a", 3, &["--events", &EVENTS.to_string(), "--rate", "100000", "--output", &out_a, "--checkpoint-dir", &ckpt, "--checkpoint-interval", "1s"]);
    a.wait_checkpoint(0);

    // the REST API of the coordinator and the health/metrics of every worker
    let (code, body) = http(&a.rest, "GET", paths::CHECKPOINTS, None).expect("GET /v1/checkpoints");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"COMPLETED\""), "{body}");
    let (code, metrics) = http(&a.rest, "GET", paths::METRICS, None).expect("GET /metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("weir_records_in_total") && metrics.contains("weir_checkpoints_total"), "{metrics}");
    assert_eq!(http(&a.rest, "GET", paths::READYZ, None).map(|r| r.0), Some(200));
    let (code, body) = http(&a.rest, "POST", paths::SAVEPOINTS, Some("{\"stop\": \"yes\"}")).expect("POST");
    assert_eq!(code, 400, "a malformed body is refused: {body}");
    assert!(body.contains("\"error\""), "{body}");

    let (code, body) = http(&a.rest, "POST", paths::SAVEPOINTS, Some(r#"{"stop": true}"#)).expect("POST /v1/savepoints");
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Triggered>(&body).expect("triggered").id;
    let url = wait_for("the savepoint", Duration::from_secs(60), || {
        let (_, body) = http(&a.rest, "GET", &paths::savepoint(&id), None)?;
        let s: SavepointStatus = serde_json::from_str(&body).ok()?;
        assert_ne!(s.status, OperationStatus::Failed, "savepoint failed: {:?}", s.error);
        s.url.filter(|_| s.status == OperationStatus::Completed)
    });
    a.wait_exit(Duration::from_secs(60));
    let before = committed(Path::new(&out_a));
    assert!(before.len() < expected.len(), "the job was stopped before the end of its input ({} of {} results)", before.len(), expected.len());

    for p in [2u32, 4] {
        let out = format!("{}/p{p}/", dir.display());
        let ckpt = format!("s3://{bucket}/e2e-rescale-{}-p{p}", std::process::id());
        let c = Cluster::start(&dir, &format!("p{p}"), p, &["--events", &EVENTS.to_string(), "--output", &out, "--checkpoint-dir", &ckpt, "--restore", &url]);
        c.wait_exit(Duration::from_secs(120));
        let mut all = before.clone();
        all.extend(committed(Path::new(&out)));
        all.sort();
        assert_eq!(all, expected, "savepoint at P=3 resumed at P={p}: the results equal the uninterrupted run's");
    }
}
