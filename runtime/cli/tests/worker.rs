//! `weir worker` as a pod runs it: a job that cannot be loaded is reported through
//! the REST API and the termination log (the process keeps serving until SIGTERM),
//! and savepoints with a target are written into that very directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::rest::client::request;
use weir_api::{JobState, JobStatus, OperationStatus, SavepointStatus, paths};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-worker-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `weir worker` process (pod 0 of 1), killed when dropped.
struct Worker {
    child: Child,
    http: String,
}

impl Worker {
    fn spawn(job: &str, dir: &Path, extra: &[(&str, &str)]) -> Worker {
        let (http, data) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.arg("worker")
            .env("WEIR_JOB_FILE", job)
            .env("WEIR_JOB_NAME", "t")
            .env("WEIR_POD_NAME", "t-0")
            .env("WEIR_PARALLELISM", "1")
            .env("WEIR_JOB_ID", "jid-1")
            .env("WEIR_PEERS", "127.0.0.1:{port}")
            .env("WEIR_PORT_BASE", data.to_string())
            .env("WEIR_HTTP_PORT", http.to_string())
            .env("WEIR_CHECKPOINT_URL", format!("file://{}/ckpt", dir.display()))
            .env("WEIR_CHECKPOINT_INTERVAL_MS", "200")
            .env("WEIR_TERMINATION_LOG", dir.join("termination-log"))
            .env_remove("WEIR_RESTORE_FROM")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Worker { child: cmd.spawn().expect("weir worker starts"), http: format!("127.0.0.1:{http}") }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        request(&self.http, "GET", path, None).ok()
    }

    fn job(&self) -> Option<JobStatus> {
        self.get(paths::JOB).and_then(|(_, b)| serde_json::from_str(&b).ok())
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Worker) -> bool) {
        let t = Instant::now();
        while !f(self) {
            assert!(t.elapsed() < timeout, "timed out waiting for {what}; job: {:?}", self.job());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "the worker did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_failed_and_serving(w: &mut Worker, dir: &Path, needles: &[&str]) {
    w.wait_for("FAILED", Duration::from_secs(30), |w| w.job().is_some_and(|j| j.state == JobState::Failed));
    let job = w.job().unwrap();
    let error = job.error.clone().unwrap_or_default();
    for n in needles {
        assert!(error.contains(n), "error names {n:?}: {error}");
    }
    assert_eq!(job.id, "jid-1");
    assert_eq!(w.get(paths::READYZ).unwrap().0, 503, "not ready");
    assert_eq!(w.get(paths::HEALTHZ).unwrap().0, 200, "alive: no crash loop");
    let log = std::fs::read_to_string(dir.join("termination-log")).expect("termination log written");
    assert_eq!(log, error);
    // still serving a while later, until terminated
    std::thread::sleep(Duration::from_millis(300));
    assert!(w.child.try_wait().unwrap().is_none(), "the process keeps running");
    w.terminate();
}

#[test]
fn an_unknown_job_is_reported_not_crash_looped() {
    let dir = tempdir("unknown-job");
    let file = dir.join("job.yaml");
    std::fs::write(&file, "job: no-such-job\nparallelism: 1\n").unwrap();
    let mut w = Worker::spawn(&file.to_string_lossy(), &dir, &[]);
    assert_failed_and_serving(&mut w, &dir, &["unknown job 'no-such-job'", &file.to_string_lossy(), "nexmark-q5"]);
}

#[test]
fn a_malformed_job_file_and_a_bad_restore_url_are_reported() {
    let dir = tempdir("malformed");
    let file = dir.join("job.yaml");
    std::fs::write(&file, "job: [unclosed\n").unwrap();
    let mut w = Worker::spawn(&file.to_string_lossy(), &dir, &[]);
    assert_failed_and_serving(&mut w, &dir, &[&file.to_string_lossy()]);

    let dir = tempdir("bad-restore");
    let file = dir.join("job.yaml");
    std::fs::write(&file, "job: nexmark-q5\nparallelism: 1\nparams:\n  rate: 1000\n").unwrap();
    let mut w = Worker::spawn(&file.to_string_lossy(), &dir, &[("WEIR_RESTORE_FROM", "nowhere://x")]);
    assert_failed_and_serving(&mut w, &dir, &["WEIR_RESTORE_FROM", "nowhere://x"]);

    // a well-formed URL with no savepoint behind it fails for good (no endless restarts)
    let dir = tempdir("missing-savepoint");
    let missing = format!("file://{}/no/such/savepoint", dir.display());
    let mut w = Worker::spawn(&file.to_string_lossy(), &dir, &[("WEIR_RESTORE_FROM", &missing)]);
    assert_failed_and_serving(&mut w, &dir, &["WEIR_RESTORE_FROM", &missing, "no _metadata"]);
}

fn savepoint(w: &Worker, body: &str) -> (u16, serde_json::Value) {
    let (code, b) = request(&w.http, "POST", paths::SAVEPOINTS, Some(body)).unwrap();
    (code, serde_json::from_str(&b).unwrap_or_else(|e| panic!("{e}: {b}")))
}

fn wait_savepoint(w: &Worker, id: &str) -> SavepointStatus {
    let mut st = None;
    w.wait_for("the savepoint", Duration::from_secs(60), |w| {
        st = w.get(&paths::savepoint(id)).and_then(|(_, b)| serde_json::from_str::<SavepointStatus>(&b).ok()).filter(|s| s.status != OperationStatus::InProgress);
        st.is_some()
    });
    st.unwrap()
}

#[test]
fn savepoints_go_into_their_target_and_restore_from_it() {
    let dir = tempdir("target");
    let file = dir.join("job.yaml");
    std::fs::write(&file, "job: nexmark-q5\nparallelism: 1\nparams:\n  rate: 20000\n").unwrap();
    let mut w = Worker::spawn(&file.to_string_lossy(), &dir, &[]);
    w.wait_for("RUNNING", Duration::from_secs(30), |w| w.job().is_some_and(|j| j.state == JobState::Running));
    let target = format!("file://{}/savepoints/sp-jid-1-1", dir.display());
    let (code, body) = savepoint(&w, &format!(r#"{{"target": "{target}", "requestId": "jid-1-sp-1"}}"#));
    assert_eq!((code, body["id"].as_str()), (202, Some("jid-1-sp-1")));
    let st = wait_savepoint(&w, "jid-1-sp-1");
    assert_eq!(st.status, OperationStatus::Completed, "{st:?}");
    assert_eq!(st.url.as_deref(), Some(target.as_str()), "the url is the target itself");
    assert!(dir.join("savepoints/sp-jid-1-1/_metadata").is_file(), "no nesting under the target");
    assert!(!dir.join("savepoints/sp-jid-1-1/savepoints").exists());
    // a savepoint is never overwritten
    let (code, body) = savepoint(&w, &format!(r#"{{"target": "{target}", "requestId": "jid-1-sp-2"}}"#));
    assert_eq!(code, 409, "{body}");
    // stop with a savepoint into another target: the job finishes
    let stop_target = format!("file://{}/savepoints/sp-jid-1-3", dir.display());
    assert_eq!(savepoint(&w, &format!(r#"{{"stop": true, "target": "{stop_target}", "requestId": "jid-1-sp-3"}}"#)).0, 202);
    let st = wait_savepoint(&w, "jid-1-sp-3");
    assert_eq!(st.url.as_deref(), Some(stop_target.as_str()), "{st:?}");
    w.wait_for("FINISHED", Duration::from_secs(30), |w| w.job().is_some_and(|j| j.state == JobState::Finished));
    w.terminate();

    // the CLI reads it, and a job restores from it
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(["savepoint", "inspect", &stop_target]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "nexmark-q5", "-q", "--events", "2000000", "--restore", &stop_target, "--checkpoint-dir"])
        .arg(dir.join("ckpt2"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A TCP proxy in front of the S3 test server that can take the storage "down"
/// (refusing and cutting connections) and bring it back.
struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = up.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: connection reset
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else { continue };
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
                        let mut buf = [0u8; 16384];
                        while flag.load(Ordering::SeqCst) {
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                                Err(_) => break,
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up }
    }
    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Issue 10: with the S3 storage unreachable a worker keeps retrying (RESTARTING,
/// with the storage error), a stop-with-savepoint fails without failing the job, and
/// when the storage is back the job runs and stops with a savepoint by itself.
#[test]
fn a_storage_outage_is_retried_and_survived() {
    let bucket = match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(b) => b,
        Err(_) if std::env::var_os("CI").is_some() => panic!("WEIR_TEST_S3_BUCKET is not set: CI must run the tests through ./test.sh"),
        Err(_) => return eprintln!("skipped: no S3 test server (run ./test.sh, which starts one)"),
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL of the test server");
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").trim_end_matches('/').to_string());
    let dir = tempdir("outage");
    let file = dir.join("job.yaml");
    std::fs::write(&file, "job: nexmark-q5\nparallelism: 1\nparams:\n  rate: 20000\n").unwrap();
    let url = format!("s3://{bucket}/outage-{}", std::process::id());
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let env = [
        ("WEIR_CHECKPOINT_URL", url.as_str()),
        ("AWS_ENDPOINT_URL", proxy_url.as_str()),
        ("WEIR_STORAGE_RETRY_TIMEOUT_MS", "500"),
        ("WEIR_CHECKPOINT_TIMEOUT_MS", "5000"),
    ];
    let mut w = Worker::spawn(&file.to_string_lossy(), &dir, &env);
    // storage down from the start: retried, reported, never FAILED
    w.wait_for("RESTARTING with the storage error", Duration::from_secs(60), |w| {
        w.job().is_some_and(|j| j.state == JobState::Restarting && j.restarts >= 2 && j.error.as_deref().is_some_and(|e| e.contains(&url)))
    });
    proxy.set_up(true);
    w.wait_for("RUNNING with a checkpoint", Duration::from_secs(90), |w| w.job().is_some_and(|j| j.state == JobState::Running && j.last_checkpoint.is_some()));
    // storage down again: the stop-with-savepoint fails, the job keeps running
    proxy.set_up(false);
    assert_eq!(savepoint(&w, r#"{"stop": true, "requestId": "stop-1"}"#).0, 202);
    let st = wait_savepoint(&w, "stop-1");
    assert_eq!(st.status, OperationStatus::Failed, "{st:?}");
    assert!(st.error.as_deref().unwrap_or("").contains(&url), "the error names the storage: {st:?}");
    std::thread::sleep(Duration::from_millis(500));
    let job = w.job().unwrap();
    assert_eq!(job.state, JobState::Running, "a failed savepoint does not fail the job: {job:?}");
    let (_, body) = w.get(paths::CHECKPOINTS).unwrap();
    let list: weir_api::CheckpointList = serde_json::from_str(&body).unwrap();
    assert!(list.checkpoints.iter().any(|c| c.status == OperationStatus::Failed && c.savepoint), "{body}");
    // back again: a new stop succeeds
    proxy.set_up(true);
    assert_eq!(savepoint(&w, r#"{"stop": true, "requestId": "stop-2"}"#).0, 202);
    let st = wait_savepoint(&w, "stop-2");
    assert_eq!(st.status, OperationStatus::Completed, "{st:?}");
    w.wait_for("FINISHED", Duration::from_secs(30), |w| w.job().is_some_and(|j| j.state == JobState::Finished));
    w.terminate();
}
