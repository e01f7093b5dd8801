//! RocksDB incremental checkpoints of a job whose workers are separate processes with
//! separate state directories (as pods on separate hosts are), against the S3 test
//! server (`./test.sh` starts it): every worker uploads its own files, a worker killed
//! with SIGKILL mid-run recovers from the bucket, the output is exactly once, and
//! retention leaves exactly the shared files the retained checkpoints list.
//!
//! The workers are this test binary run again with `WEIR_TEST_POD` set (see
//! `pod_process`), so no other binary has to be built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::checkpoint::CheckpointStorage;
use weir::checkpoint::coordinator::{CheckpointSettings, RestartStrategy, StopHandle};
use weir::cli::{Overrides, build, resolve};
use weir::cluster::{WorkerIdentity, WorkerSettings, run_worker};
use weir::state::StateBackend;

const EVENTS: u64 = 400_000;
const WORKERS: u32 = 3;

fn job(p: u32, out: &Path, rate: Option<u64>) -> weir::StreamEnv {
    let o = Overrides { parallelism: Some(p), events: Some(EVENTS), output: Some(PathBuf::from(format!("{}/", out.display()))), rate, state_backend: Some(StateBackend::RocksDb), ..Default::default() };
    build(&resolve("nexmark-q5", &o).expect("resolve")).expect("build")
}

/// One worker process (only when run by the test below).
#[test]
fn pod_process() {
    let Ok(out) = std::env::var("WEIR_TEST_POD") else { return };
    let identity = WorkerIdentity::from_env().expect("identity");
    let mut checkpoints = CheckpointSettings::new(std::env::var("WEIR_CHECKPOINT_URL").expect("WEIR_CHECKPOINT_URL"));
    checkpoints.interval = Duration::from_millis(400);
    checkpoints.retain = 2;
    checkpoints.restart = RestartStrategy::ExponentialBackoff { attempts: 20, initial: Duration::from_millis(200), max: Duration::from_secs(2) };
    let http: u16 = std::env::var("WEIR_HTTP_PORT").expect("port").parse().expect("port");
    let settings = WorkerSettings { identity, checkpoints, job_id: Some("pods".into()), http: ([127, 0, 0, 1], http).into(), exit_on_finish: true };
    let env = job(WORKERS, Path::new(&out), Some(40_000));
    run_worker(&env, &settings, &StopHandle::default()).expect("the worker's job");
}

fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(20000);
        if base as u32 + n as u32 >= 65535 {
            continue;
        }
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

struct Pods {
    children: Vec<Child>,
    dir: PathBuf,
    ckpt: String,
    out: PathBuf,
    data: u16,
    http: u16,
}

impl Pods {
    fn spawn(&self, o: u32) -> Child {
        let state = self.dir.join(format!("state-{o}"));
        std::fs::create_dir_all(&state).expect("state dir");
        let log = std::fs::File::create(self.dir.join(format!("worker-{o}.log"))).expect("log");
        Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "pod_process", "--nocapture", "--test-threads=1"])
            .env("WEIR_TEST_POD", &self.out)
            .env("WEIR_JOB_NAME", "pods")
            .env("WEIR_NAMESPACE", "local")
            .env("WEIR_POD_NAME", format!("pods-{o}"))
            .env("WEIR_PARALLELISM", WORKERS.to_string())
            .env("WEIR_PEERS", "127.0.0.1:{port}")
            .env("WEIR_PORT_BASE", self.data.to_string())
            .env("WEIR_HTTP_PORT", (self.http as u32 + o).to_string())
            .env("WEIR_CHECKPOINT_URL", &self.ckpt)
            .env("WEIR_STATE_DIR", &state)
            .env("WEIR_EXIT_GRACE_MS", "200")
            .env("WEIR_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start a worker")
    }

    fn job(&self) -> Option<weir_api::JobStatus> {
        let (code, body) = weir::rest::client::request(&format!("127.0.0.1:{}", self.http), "GET", weir_api::paths::JOB, None).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    fn wait_checkpoint(&self, after: u64) -> u64 {
        let t = Instant::now();
        loop {
            if let Some(j) = self.job() {
                if let Some(c) = j.last_checkpoint.filter(|c| c.id > after && j.state == weir_api::JobState::Running) {
                    return c.id;
                }
            }
            assert!(t.elapsed() < Duration::from_secs(90), "no checkpoint after {after} within 90 s; logs in {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn committed(dir: &Path) -> Vec<String> {
    let mut v = weir::connector::files::read_committed(dir).expect("committed output");
    v.sort();
    v
}

#[test]
fn three_pods_checkpoint_incrementally_to_s3_survive_a_kill_9_and_write_exactly_once() {
    let bucket = match std::env::var("WEIR_TEST_S3_BUCKET") {
        Ok(b) => b,
        Err(_) => {
            eprintln!("\n*** SKIPPED three_pods_checkpoint_incrementally_to_s3…: WEIR_TEST_S3_BUCKET is not set — no S3 test server (run ./test.sh, which starts one) ***\n");
            assert!(std::env::var_os("CI").is_none(), "CI must run the tests through ./test.sh (S3 test server)");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("weir-pods-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    // the reference: the same job embedded, without failures
    let reference = dir.join("reference");
    let mut s = CheckpointSettings::new(dir.join("reference-ckpt").display().to_string());
    s.interval = Duration::from_secs(3600);
    weir::checkpoint::coordinator::run(&job(1, &reference, None), &s, &StopHandle::default(), |_| {}).expect("reference run");
    let expected = committed(&reference);
    assert!(expected.len() > 20, "the reference run has results");

    let ckpt = format!("s3://{bucket}/pods-{}", std::process::id());
    let mut pods = Pods { children: Vec::new(), dir: dir.clone(), ckpt: ckpt.clone(), out: dir.join("out"), data: free_ports(WORKERS as u16), http: free_ports(WORKERS as u16) };
    for o in 0..WORKERS {
        let c = pods.spawn(o);
        pods.children.push(c);
    }
    let mut last = pods.wait_checkpoint(0);
    last = pods.wait_checkpoint(last);
    // kill -9 worker 1 right after a checkpoint was triggered (while it uploads)
    let pid = pods.children[1].id() as i32;
    // SAFETY: kill(2) on a child process this test started
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = pods.children[1].wait();
    eprintln!("killed worker 1 (pid {pid}) after checkpoint {last}");
    let c = pods.spawn(1);
    pods.children[1] = c;
    last = pods.wait_checkpoint(last);
    eprintln!("recovered: checkpoint {last}");
    let t = Instant::now();
    while !pods.children.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
        assert!(t.elapsed() < Duration::from_secs(180), "the job did not finish; logs in {}", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    for (o, c) in pods.children.iter_mut().enumerate() {
        let st = c.wait().expect("status");
        assert!(st.success(), "worker {o} failed ({st}); log: {}", std::fs::read_to_string(dir.join(format!("worker-{o}.log"))).unwrap_or_default());
    }
    let got = committed(&pods.out);
    assert_eq!(got.len(), expected.len(), "as many results as the uninterrupted run (nothing lost or doubled)");
    assert_eq!(got, expected, "exactly once across a kill -9 of a worker");

    // the checkpoints are incremental and every worker's database is in them
    let storage = CheckpointStorage::open(&ckpt).expect("storage");
    let (_, latest) = storage.latest(Some(720)).expect("latest").expect("a checkpoint");
    assert_eq!(latest.format_version, 2);
    let dbs: usize = latest.operators.values().map(|o| o.databases.len()).sum();
    assert!(dbs >= WORKERS as usize, "a database per worker subtask: {dbs}");
    // retention: exactly the shared files the retained checkpoints list stay
    storage.retain(2).expect("retention");
    let mut needed = BTreeSet::new();
    for n in storage.list_checkpoints().expect("list") {
        if let Ok(m) = storage.read_metadata(&format!("checkpoints/chk-{n}"), None) {
            needed.extend(m.database_files().filter_map(|f| f.path.strip_prefix("../shared/")).map(String::from));
        }
    }
    let listed = list_shared(&ckpt);
    assert!(!listed.is_empty());
    assert_eq!(listed, needed, "the bucket's shared directory holds exactly the files the retained checkpoints reference");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The names in `<prefix>/checkpoints/shared/` of the bucket.
fn list_shared(prefix: &str) -> BTreeSet<String> {
    let s = CheckpointStorage::open(&format!("{prefix}/checkpoints/shared")).expect("storage");
    s.list_names().expect("listing the bucket")
}
