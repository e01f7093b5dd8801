//! `weir cluster`: a standalone cluster on one machine. Starts the workers of a job as
//! separate `weir worker` processes on 127.0.0.1 (worker 0 with the coordinator),
//! restarts a worker that dies (as Kubernetes restarts a pod), and exits when the job
//! ends. Ctrl-C stops the job with a savepoint through the REST API.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::checkpoint::coordinator::StopHandle;
use crate::error::JobError;
use crate::rest::client;

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The job's name (pod names are `<name>-<ordinal>`).
    pub name: String,
    pub workers: u32,
    /// Arguments after `weir worker` (the job and its options), the same for every worker.
    pub worker_args: Vec<String>,
    /// Data port of worker 0; worker i listens on `data_port + i`.
    pub data_port: u16,
    /// HTTP port of worker 0 (the REST API); worker i serves on `rest_port + i`.
    pub rest_port: u16,
    /// Checkpoint storage URL.
    pub checkpoint_url: String,
    pub restore_from: Option<String>,
}

struct Worker {
    child: Child,
    started: Instant,
    restarts: u32,
}

fn spawn(spec: &ClusterSpec, ordinal: u32) -> Result<Child, JobError> {
    let exe = std::env::current_exe().map_err(|e| JobError::Invalid(format!("cannot find the weir binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("worker")
        .args(&spec.worker_args)
        .env(weir_api::env::JOB_NAME, &spec.name)
        .env(weir_api::env::NAMESPACE, "local")
        .env(weir_api::env::POD_NAME, format!("{}-{ordinal}", spec.name))
        .env(weir_api::env::PARALLELISM, spec.workers.to_string())
        .env(weir_api::env::PEERS, "127.0.0.1:{port}")
        .env("WEIR_PORT_BASE", spec.data_port.to_string())
        .env("WEIR_HTTP_PORT", (spec.rest_port as u32 + ordinal).to_string())
        .env("WEIR_EXIT_ON_FINISH", "true")
        // on a laptop a job that keeps failing should end (pods keep trying instead)
        .env("WEIR_RESTART_ATTEMPTS", std::env::var("WEIR_RESTART_ATTEMPTS").unwrap_or_else(|_| "10".into()))
        .env(weir_api::env::CHECKPOINT_URL, &spec.checkpoint_url);
    match &spec.restore_from {
        Some(r) => cmd.env(weir_api::env::RESTORE_FROM, r),
        None => cmd.env_remove(weir_api::env::RESTORE_FROM),
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // Ctrl-C on the terminal reaches only the supervisor, which stops the job with
        // a savepoint through the REST API
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the
        // child when this supervisor dies, so no worker outlives it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    cmd.spawn().map_err(|e| JobError::Invalid(format!("cannot start worker {ordinal}: {e}")))
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// Runs the cluster until the job ends; `Ok` when it finished.
pub fn run(spec: &ClusterSpec, stop: &StopHandle) -> Result<(), JobError> {
    if spec.workers == 0 {
        return Err(JobError::Invalid("--workers must be at least 1".into()));
    }
    let rest = format!("127.0.0.1:{}", spec.rest_port);
    let mut workers = Vec::new();
    for o in 0..spec.workers {
        workers.push(Worker { child: spawn(spec, o)?, started: Instant::now(), restarts: 0 });
    }
    eprintln!("weir cluster: {} workers of '{}'; REST API on http://{rest}/v1/job", spec.workers, spec.name);
    let mut stop_requested = false;
    let mut savepoint_req: Option<String> = None;
    let result = loop {
        if stop.is_requested() && !stop_requested {
            stop_requested = true;
            match client::request(&rest, "POST", weir_api::paths::SAVEPOINTS, Some(r#"{"stop":true}"#)) {
                Ok((202, body)) => {
                    savepoint_req = serde_json::from_str::<weir_api::Triggered>(&body).ok().map(|t| t.id);
                    eprintln!("weir cluster: stopping with a savepoint…");
                }
                Ok((code, body)) => eprintln!("weir cluster: the coordinator refused the savepoint ({code}): {body}"),
                Err(e) => eprintln!("weir cluster: cannot reach the coordinator: {e}"),
            }
        }
        let mut done = None;
        for (o, w) in workers.iter_mut().enumerate() {
            let Ok(Some(status)) = w.child.try_wait() else { continue };
            if o == 0 && status.success() {
                done = Some(Ok(()));
                break;
            }
            if o == 0 && status.code() == Some(1) {
                done = Some(Err(JobError::TaskFailed("the job failed (see worker 0's log)".into())));
                break;
            }
            if status.success() {
                continue; // a follower whose job finished
            }
            // a crash: restart it, as a StatefulSet would, with backoff for crash loops
            let delay = if w.started.elapsed() > Duration::from_secs(10) { Duration::from_millis(100) } else { Duration::from_millis(200 * (1 << w.restarts.min(5))) };
            eprintln!("weir cluster: worker {o} ended ({}); restarting it in {delay:?}", describe(status));
            std::thread::sleep(delay);
            w.restarts += 1;
            w.started = Instant::now();
            w.child = spawn(spec, o as u32)?;
        }
        if let Some(d) = done {
            break d;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if result.is_ok() {
        if let Some(id) = &savepoint_req {
            eprintln!("weir cluster: savepoint request {id} done (see `weir savepoint inspect`)");
        }
    }
    // the other workers end once worker 0 tells them to; stragglers are stopped
    let deadline = Instant::now() + Duration::from_secs(10);
    for w in workers.iter_mut() {
        while Instant::now() < deadline && matches!(w.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    result
}
