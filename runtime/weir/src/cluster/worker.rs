//! One worker process of a distributed job (`weir worker`): a loop of job attempts
//! ("epochs"). Worker 0 also coordinates: it gathers every worker, picks the state to
//! start from (the newest complete checkpoint of this deployment, else the configured
//! restore), drives checkpoints across all workers, and restarts everything from the
//! newest checkpoint when any task or connection fails. A worker that dies (and comes
//! back, as a StatefulSet pod does) simply joins the next epoch; worker 0 dying loses
//! nothing either, since everything it knows is in checkpoint storage.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use weir_api::JobState;

use super::ClusterError;
use super::identity::WorkerIdentity;
use super::protocol::Control;
use crate::checkpoint::coordinator::{self, CheckpointSettings, JobHandle, Request, RunReport, StopHandle};
use crate::checkpoint::restore::RestoreState;
use crate::checkpoint::storage::CheckpointStorage;
use crate::error::JobError;
use crate::exchange::Placement;
use crate::exchange::net::{NetBuilder, NetEvent, Network};
use crate::exec::plan::{CheckpointSetup, RunningJob};
use crate::exec::{SnapshotReport, TaskCommand};
use crate::rest::board::StatusBoard;
use crate::rest::{self, RestState};
use crate::stream::StreamEnv;

/// How long the workers of an epoch may take to connect to each other.
const MESH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker that exits when the job ends keeps serving its final status.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// How long worker 0 waits for every worker to launch its tasks.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of a worker process.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub identity: WorkerIdentity,
    /// Checkpoint storage of this deployment, interval, retention, restore, restarts.
    pub checkpoints: CheckpointSettings,
    /// The deployment's id (fresh per deployment); random when not given.
    pub job_id: Option<String>,
    /// Address of the HTTP server (health, metrics, REST API on worker 0).
    pub http: SocketAddr,
    /// Exit once the job has finished (`weir cluster`); otherwise keep serving the
    /// REST API and health endpoints until terminated (pods).
    pub exit_on_finish: bool,
}

/// The HTTP server of a worker (health, metrics, and the REST API on worker 0),
/// started before the job is loaded, so that a job that cannot even start is
/// reported (`GET /v1/job` = `FAILED` with the error) instead of crash-looping.
pub struct WorkerServer {
    pub board: Arc<StatusBoard>,
    pub addr: SocketAddr,
    requests: Receiver<Request>,
}

impl WorkerServer {
    /// Serves on `http`; `api`: also the REST API (worker 0).
    pub fn start(http: SocketAddr, board: Arc<StatusBoard>, api: bool) -> Result<Self, JobError> {
        let (req_tx, requests) = unbounded();
        let rest = RestState { board: board.clone(), requests: api.then_some(req_tx), exporter: Arc::default() };
        let addr = rest::serve(http, rest).map_err(|e| JobError::Invalid(format!("cannot serve HTTP on {http} (WEIR_HTTP_PORT): {e}")))?;
        Ok(WorkerServer { board, addr, requests })
    }

    /// The job cannot run: reports `error` (job `FAILED`, not ready, the message in the
    /// termination log) and keeps serving until terminated. Returns the error.
    pub fn fail(&self, error: JobError, shutdown: &StopHandle) -> JobError {
        let msg = error.to_string();
        tracing::error!(error = %msg, "the job cannot run; serving its status until terminated");
        eprintln!("weir: error: {msg}");
        self.board.set_state(JobState::Failed, Some(msg.clone()));
        write_termination_log(&msg);
        while !shutdown.is_requested() {
            std::thread::sleep(Duration::from_millis(50));
        }
        error
    }
}

/// Writes `msg` where Kubernetes reads a container's termination message
/// (`WEIR_TERMINATION_LOG`, default `/dev/termination-log` when it exists and is
/// writable), so that it shows in the pod's `lastState`.
pub fn write_termination_log(msg: &str) {
    use std::io::Write;
    let (path, create) = match std::env::var("WEIR_TERMINATION_LOG") {
        Ok(p) if !p.is_empty() => (p, true),
        _ => ("/dev/termination-log".to_string(), false),
    };
    // Kubernetes keeps at most 4096 bytes
    let mut end = msg.len().min(4000);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    match std::fs::OpenOptions::new().write(true).truncate(true).create(create).open(&path) {
        Ok(mut f) => {
            if let Err(e) = f.write_all(&msg.as_bytes()[..end]) {
                tracing::debug!(%path, error = %e, "cannot write the termination log");
            }
        }
        Err(e) => tracing::debug!(%path, error = %e, "no termination log"),
    }
}

/// Runs this worker's share of `env` until the job ends.
pub fn run_worker(env: &StreamEnv, settings: &WorkerSettings, shutdown: &StopHandle) -> Result<(), JobError> {
    let id = &settings.identity;
    let config = env.config();
    let board = StatusBoard::new(&config.name, id.workers, config.max_parallelism);
    let server = WorkerServer::start(settings.http, board, id.ordinal == 0)?;
    run_worker_on(env, settings, shutdown, server)
}

/// Runs this worker's share of `env` on an HTTP server already started.
pub fn run_worker_on(env: &StreamEnv, settings: &WorkerSettings, shutdown: &StopHandle, server: WorkerServer) -> Result<(), JobError> {
    let id = &settings.identity;
    let config = env.config();
    if let Some(j) = &settings.job_id {
        server.board.set_job_id(j);
    }
    server.board.configure(&config.name, id.workers, config.max_parallelism);
    let checked = id.validate().map_err(|e| JobError::Invalid(e.to_string())).and_then(|()| {
        if config.parallelism != id.workers {
            return Err(JobError::Invalid(format!("the job's parallelism {} differs from the number of workers {} ({})", config.parallelism, id.workers, weir_api::env::PARALLELISM)));
        }
        let port = id.listen_port().map_err(|e| JobError::Invalid(e.to_string()))?;
        TcpListener::bind(("0.0.0.0", port)).map_err(|e| JobError::Invalid(format!("cannot listen for peers on port {port}: {e}")))
    });
    let listener = match checked {
        Ok(l) => l,
        Err(e) => return Err(server.fail(e, shutdown)),
    };
    let board = server.board.clone();
    tracing::info!(worker = id.ordinal, workers = id.workers, http = %server.addr, "worker started");
    let incoming = accept_hellos(listener);
    let result = if id.ordinal == 0 {
        Coordinator { env, settings, board: &board, requests: &server.requests, incoming: &incoming, shutdown, bad: RefCell::default() }.run()
    } else {
        Follower { env, settings, board: &board, incoming: &incoming, early: Vec::new(), shutdown }.run()
    };
    match &result {
        Ok(()) => board.set_state(JobState::Finished, None),
        Err(e) => {
            board.set_state(JobState::Failed, Some(e.to_string()));
            if !matches!(e, JobError::Cancelled) {
                write_termination_log(&e.to_string());
            }
        }
    }
    // keep answering clients (final job state, savepoint status): until terminated,
    // or for a short grace period when asked to exit
    let grace = std::env::var("WEIR_EXIT_GRACE_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis).unwrap_or(EXIT_GRACE);
    let linger_until = settings.exit_on_finish.then(|| Instant::now() + grace);
    tracing::info!("job ended; serving its final status");
    while !shutdown.is_requested() && linger_until.is_none_or(|t| Instant::now() < t) {
        std::thread::sleep(Duration::from_millis(50));
    }
    result
}

/// A connection that said hello.
struct Greeted {
    ordinal: u32,
    epoch: u64,
    conn: TcpStream,
}

/// Accepts peer connections and reads their `Hello` on a background thread.
fn accept_hellos(listener: TcpListener) -> Receiver<Greeted> {
    let (tx, rx) = unbounded();
    let spawned = std::thread::Builder::new().name("weir-accept".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            // read the hello off the accept loop: a silent peer must not block others
            let _ = std::thread::Builder::new().name("weir-hello".into()).spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                match Control::read_from(&mut conn) {
                    Ok(Control::Hello { ordinal, epoch }) => {
                        let _ = tx.send(Greeted { ordinal, epoch, conn });
                    }
                    Ok(other) => tracing::warn!(?other, "a peer connection did not start with a hello"),
                    Err(e) => tracing::debug!(error = %e, "a peer connection failed before its hello"),
                }
            });
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the peer acceptor");
    }
    rx
}

/// Dials `addr` until it answers (or `deadline` passes), with backoff.
fn dial(addr: &str, deadline: Option<Instant>, shutdown: &StopHandle) -> Option<TcpStream> {
    let mut wait = Duration::from_millis(50);
    let mut last_log = Instant::now();
    loop {
        if shutdown.is_requested() || deadline.is_some_and(|d| Instant::now() > d) {
            return None;
        }
        let resolved = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
        if let Some(sa) = resolved {
            if let Ok(c) = TcpStream::connect_timeout(&sa, Duration::from_secs(2)) {
                return Some(c);
            }
        }
        if last_log.elapsed() > Duration::from_secs(10) {
            tracing::info!(%addr, "still waiting for peer");
            last_log = Instant::now();
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// Loads the state this worker's subtasks start from: only the RocksDB databases
/// holding key groups they own are downloaded.
fn load_restore(url: &Option<String>, env: &StreamEnv, settings: &CheckpointSettings, placement: Placement) -> Result<Option<Arc<RestoreState>>, crate::checkpoint::restore::RestoreError> {
    let Some(url) = url else { return Ok(None) };
    let max = env.config().max_parallelism;
    let url = crate::checkpoint::resolve_restore_url(url, max)?;
    let s = CheckpointStorage::open(&url)?;
    let meta = s.read_metadata("", Some(max))?;
    let local = env.local_key_groups(placement);
    let r = RestoreState::load_for(&s, "", &meta, &env.uids(), settings.allow_non_restored_state, Some(&local))?;
    // a restart from one of this job's own checkpoints: its RocksDB files stay shared
    let own = CheckpointStorage::open(&settings.storage).is_ok_and(|js| crate::checkpoint::checkpoint_number(&js, &url).is_some());
    Ok(Some(Arc::new(if own { r.of_own_storage() } else { r })))
}


/// Why an epoch could not start or ended.
struct Failure {
    message: String,
    /// Retrying cannot help (a bad restore URL, a missing or corrupt snapshot).
    permanent: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { message, permanent: false }
    }
}

/// Whether some / all of the local tasks have finished their input.
fn progress(job: &RunningJob) -> (bool, bool) {
    let f = |m: &Arc<crate::exec::TaskMetrics>| m.finished.load(std::sync::atomic::Ordering::Relaxed);
    (job.metrics.iter().any(f), job.metrics.iter().all(f))
}

/// Worker 0: gathers the workers, coordinates each epoch, restarts on failure.
struct Coordinator<'a> {
    env: &'a StreamEnv,
    settings: &'a WorkerSettings,
    board: &'a StatusBoard,
    requests: &'a Receiver<Request>,
    incoming: &'a Receiver<Greeted>,
    shutdown: &'a StopHandle,
    /// Checkpoints a worker could not restore (missing or corrupt files).
    bad: RefCell<std::collections::BTreeSet<u64>>,
}

impl Coordinator<'_> {
    fn run(&self) -> Result<(), JobError> {
        let cs = &self.settings.checkpoints;
        let storage = CheckpointStorage::open(&cs.storage).map_err(|e| JobError::State(format!("{}: {e}", weir_api::env::CHECKPOINT_URL)))?;
        let job_id = self.settings.job_id.clone().unwrap_or_else(coordinator::random_id);
        self.board.set_job_id(&job_id);
        let mut next_id: Option<u64> = None;
        let mut epoch = 0u64;
        let mut failures = 0u32;
        let mut report = RunReport::default();
        loop {
            let checkpoints_before = report.checkpoints.len();
            let outcome = self.epoch(&storage, &job_id, &mut next_id, &mut epoch, &mut report);
            let failure = match outcome {
                Ok(()) => return Ok(()),
                Err(f) => f,
            };
            if self.shutdown.is_requested() {
                return Err(JobError::Cancelled);
            }
            if failure.permanent {
                return Err(JobError::State(failure.message));
            }
            if report.checkpoints.len() > checkpoints_before {
                failures = 0; // it made progress: a fresh run of backoff
            }
            let msg = failure.message;
            let Some(delay) = cs.restart.delay(failures) else {
                return Err(JobError::TaskFailed(msg));
            };
            failures += 1;
            self.board.restarted();
            self.board.set_state(JobState::Restarting, Some(msg.clone()));
            tracing::warn!(error = %msg, ?delay, attempt = failures, "job failed; restarting all workers from the latest checkpoint");
            eprintln!("weir: job failed ({msg}); restarting in {delay:?}");
            let until = Instant::now() + delay;
            while Instant::now() < until {
                if self.shutdown.is_requested() {
                    return Err(JobError::Cancelled);
                }
                std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
            }
        }
    }

    /// One epoch: find the state to start from (the newest complete checkpoint of this
    /// deployment, else the configured restore), gather the workers, run the job.
    fn epoch(&self, storage: &CheckpointStorage, job_id: &str, next_id: &mut Option<u64>, epoch: &mut u64, report: &mut RunReport) -> Result<(), Failure> {
        let cs = &self.settings.checkpoints;
        let id = &self.settings.identity;
        let max = self.env.config().max_parallelism;
        let storage_failure = |e: crate::checkpoint::StorageError| Failure { permanent: !e.is_transient(), message: format!("checkpoint storage: {e}") };
        let next = match *next_id {
            Some(n) => n,
            None => storage.list_checkpoints().map_err(storage_failure)?.last().copied().unwrap_or(0) + 1,
        };
        *next_id = Some(next);
        // a restarted worker 0 resumes this deployment from its newest checkpoint that
        // is not known to be bad (a worker could not restore it)
        let bad = self.bad.borrow().clone();
        let restore_url = match storage.latest_excluding(Some(max), &bad).map_err(storage_failure)? {
            Some((dir, _)) => Some(storage.url_of(&dir)),
            None => cs.restore_from.clone(),
        };
        let placement = Placement { worker: 0, workers: id.workers };
        let restore = load_restore(&restore_url, self.env, cs, placement).map_err(|e| {
            let from = if restore_url == cs.restore_from { format!(" ({})", weir_api::env::RESTORE_FROM) } else { String::new() };
            if e.is_bad_snapshot() {
                if let Some(n) = restore_url.as_deref().and_then(|u| crate::checkpoint::checkpoint_number(storage, u)) {
                    tracing::warn!(checkpoint = n, error = %e, "checkpoint cannot be restored; falling back to an older one");
                    self.bad.borrow_mut().insert(n);
                    return Failure { permanent: false, message: format!("restoring from {}: {e}", restore_url.as_deref().unwrap_or("?")) };
                }
            }
            Failure { permanent: !e.is_transient(), message: format!("restoring from {}{from}: {e}", restore_url.as_deref().unwrap_or("?")) }
        })?;
        self.board.set_state(if *epoch == 0 { JobState::Created } else { JobState::Restarting }, None);
        let Some(mut conns) = self.gather(*epoch) else { return Err(Failure { message: "terminated".into(), permanent: true }) };
        *epoch += 1;
        tracing::info!(epoch = *epoch, restore = ?restore_url, "starting the job on {} workers", id.workers);
        let start = Control::Start { epoch: *epoch, job_id: job_id.to_string(), restore: restore_url.clone() };
        for (o, c) in conns.iter_mut().enumerate() {
            if let Some(c) = c
                && let Err(e) = start.write_to(c)
            {
                return Err(format!("worker {o}: {e}").into());
            }
        }
        let mut n = next;
        let r = self.attempt(conns, restore, storage, job_id, &mut n, report);
        *next_id = Some(n);
        r.map_err(Failure::from)
    }

    /// Waits for a hello from every other worker; the newest connection per worker wins.
    fn gather(&self, epoch: u64) -> Option<Vec<Option<TcpStream>>> {
        let n = self.settings.identity.workers as usize;
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut last_log = Instant::now();
        while conns.iter().skip(1).any(|c| c.is_none()) {
            if self.shutdown.is_requested() {
                return None;
            }
            match self.incoming.recv_timeout(Duration::from_millis(100)) {
                Ok(g) if (g.ordinal as usize) < n && g.ordinal > 0 => conns[g.ordinal as usize] = Some(g.conn),
                Ok(g) => tracing::warn!(ordinal = g.ordinal, "a worker outside this job's parallelism said hello"),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
            if last_log.elapsed() > Duration::from_secs(5) {
                let missing: Vec<usize> = (1..n).filter(|&o| conns[o].is_none()).collect();
                tracing::info!(epoch, ?missing, "waiting for workers");
                last_log = Instant::now();
            }
        }
        // hellos that queued meanwhile are from older incarnations: a newer one replaces
        while let Ok(g) = self.incoming.try_recv() {
            if (g.ordinal as usize) < n && g.ordinal > 0 {
                conns[g.ordinal as usize] = Some(g.conn);
            }
        }
        Some(conns)
    }

    /// One epoch: launch, wait until every worker is ready, coordinate checkpoints.
    /// `Ok` when the job finished; `Err(why)` when it must restart.
    fn attempt(
        &self,
        conns: Vec<Option<TcpStream>>,
        restore: Option<Arc<RestoreState>>,
        storage: &CheckpointStorage,
        job_id: &str,
        next_id: &mut u64,
        report: &mut RunReport,
    ) -> Result<(), String> {
        let id = &self.settings.identity;
        let Attempt { job, network, events: ev_rx, reports: (tx, rx) } = Attempt::launch(self.env, self.board, Placement { worker: 0, workers: id.workers }, restore, conns, &self.settings.checkpoints.storage, job_id)?;
        let cluster = ClusterJob::new(&job, &network, &ev_rx, tx, id.workers, self.shutdown, &self.bad);
        let result = cluster.wait_ready(READY_TIMEOUT).and_then(|()| {
            self.board.set_state(JobState::Running, None);
            let mut observe = |e: coordinator::CheckpointEvent<'_>| {
                if let coordinator::CheckpointEvent::Completed { checkpoint: c, .. } = &e {
                    tracing::info!(id = c.id, bytes = c.bytes, ms = c.duration.as_millis() as u64, url = %c.url, savepoint = c.savepoint, "checkpoint complete");
                    if c.savepoint {
                        println!("savepoint: {}", c.url);
                    }
                }
                self.board.on_event(&e)
            };
            let cs = &self.settings.checkpoints;
            let config = self.env.config();
            // SIGTERM ends the attempt (ClusterJob::poll); it is not a stop-with-savepoint
            let never = StopHandle::default();
            let coordinated = coordinator::coordinate(&cluster, &rx, storage, cs, job_id, config, next_id, &never, self.requests, report, &mut observe);
            // a checkpoint in flight when the job ended left files without `_metadata`
            // (what other workers still upload is deleted when the next attempt starts)
            coordinator::delete_incomplete(storage);
            coordinated.map_err(|e| e.to_string())?;
            match cluster.failure() {
                Some(f) => Err(f),
                None => Ok(()),
            }
        });
        drop(cluster);
        if result.is_ok() {
            for w in 1..id.workers {
                network.send_control(w, &Control::Shutdown.encode());
            }
        }
        Attempt::end(job, network, result)
    }
}

/// The whole distributed job as the coordinator sees it: the local tasks plus what the
/// other workers report.
struct ClusterJob<'a> {
    local: &'a RunningJob,
    net: &'a Network,
    events: &'a Receiver<NetEvent>,
    reports: Sender<SnapshotReport>,
    workers: u32,
    /// Per worker: tasks it runs (after Ready), some finished, all finished.
    remote: RefCell<Vec<Option<(u32, bool, bool)>>>,
    failure: RefCell<Option<String>>,
    remote_tasks: Cell<usize>,
    shutdown: &'a StopHandle,
    bad: &'a RefCell<std::collections::BTreeSet<u64>>,
}

impl<'a> ClusterJob<'a> {
    fn new(local: &'a RunningJob, net: &'a Network, events: &'a Receiver<NetEvent>, reports: Sender<SnapshotReport>, workers: u32, shutdown: &'a StopHandle, bad: &'a RefCell<std::collections::BTreeSet<u64>>) -> Self {
        ClusterJob {
            local,
            net,
            events,
            reports,
            workers,
            remote: RefCell::new(vec![None; workers as usize]),
            failure: RefCell::new(None),
            remote_tasks: Cell::new(0),
            shutdown,
            bad,
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.borrow().clone().or_else(|| self.local.failure())
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let t = Instant::now();
        loop {
            self.poll();
            if let Some(f) = self.failure() {
                return Err(f);
            }
            if self.remote.borrow().iter().skip(1).all(|r| r.is_some()) {
                return Ok(());
            }
            if t.elapsed() > limit {
                return Err(format!("not every worker launched its tasks within {}s", limit.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn on_control(&self, from: u32, msg: Control) {
        let mut remote = self.remote.borrow_mut();
        let Some(slot) = remote.get_mut(from as usize) else { return };
        match msg {
            Control::Ready { tasks } => {
                *slot = Some((tasks, false, false));
                self.remote_tasks.set(self.remote_tasks.get() + tasks as usize);
            }
            Control::Report { barrier, operators } => {
                let _ = self.reports.send(SnapshotReport { barrier, operators, error: None });
            }
            Control::ReportFailed { barrier, error } => {
                let _ = self.reports.send(SnapshotReport { barrier, operators: Vec::new(), error: Some(format!("worker {from}: {error}")) });
            }
            Control::BadCheckpoint { id, error } => {
                drop(remote);
                tracing::warn!(checkpoint = id, worker = from, %error, "a worker cannot restore the checkpoint; falling back to an older one");
                self.bad.borrow_mut().insert(id);
                self.fail(format!("worker {from} cannot restore checkpoint {id}: {error}"));
            }
            Control::Progress { any_finished, all_finished } => {
                if let Some(s) = slot {
                    s.1 = any_finished;
                    s.2 = all_finished;
                }
            }
            Control::Failed(why) => {
                drop(remote);
                self.fail(format!("worker {from}: {why}"));
            }
            other => tracing::warn!(from, ?other, "unexpected control message"),
        }
    }
}

impl JobHandle for ClusterJob<'_> {
    fn broadcast(&self, cmd: TaskCommand, sources_only: bool) {
        self.local.broadcast(cmd, sources_only);
        let msg = match cmd {
            TaskCommand::Trigger(b) => Control::Trigger(b),
            TaskCommand::Complete(id) => Control::Complete(id),
            TaskCommand::Abort(id) => Control::Abort(id),
        };
        let bytes = msg.encode();
        for w in 1..self.workers {
            self.net.send_control(w, &bytes);
        }
    }
    fn task_count(&self) -> usize {
        self.local.task_count() + self.remote_tasks.get()
    }
    fn is_finished(&self) -> bool {
        self.local.is_finished() && self.remote.borrow().iter().skip(1).all(|r| r.is_some_and(|r| r.2))
    }
    fn fail(&self, msg: String) {
        let mut f = self.failure.borrow_mut();
        if f.is_none() {
            *f = Some(msg.clone());
        }
        self.local.fail(msg);
    }
    fn is_failing(&self) -> bool {
        self.failure.borrow().is_some() || self.local.is_failing()
    }
    fn poll(&self) {
        if self.shutdown.is_requested() && !self.is_failing() {
            self.fail("terminated".into());
        }
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                NetEvent::Control { from, payload } => match Control::decode(&payload) {
                    Ok(m) => self.on_control(from, m),
                    Err(e) => self.fail(format!("worker {from}: {e}")),
                },
                NetEvent::Lost { peer, reason } => self.fail(format!("lost worker {peer}: {reason}")),
            }
        }
    }
}

/// Workers other than 0: join each epoch worker 0 starts, run their tasks, relay.
struct Follower<'a> {
    env: &'a StreamEnv,
    settings: &'a WorkerSettings,
    board: &'a StatusBoard,
    incoming: &'a Receiver<Greeted>,
    /// Mesh connections of an epoch this worker has not reached yet.
    early: Vec<Greeted>,
    shutdown: &'a StopHandle,
}

impl Follower<'_> {
    fn run(&mut self) -> Result<(), JobError> {
        let mut epoch = 0u64;
        let mut attempts = 0u32;
        loop {
            self.board.set_state(rest::restarting_state(attempts), None);
            attempts += 1;
            let Some((conn0, e, job_id, restore_url)) = self.join(epoch) else { return Err(JobError::Cancelled) };
            epoch = e;
            match self.attempt(conn0, epoch, &job_id, &restore_url) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    if self.shutdown.is_requested() {
                        return Err(JobError::Cancelled);
                    }
                    tracing::warn!(epoch, error = %why, "job attempt ended; rejoining");
                }
            }
        }
    }

    /// Says hello to worker 0 until it starts an epoch newer than `after`.
    fn join(&self, after: u64) -> Option<(TcpStream, u64, String, Option<String>)> {
        let id = &self.settings.identity;
        let addr = id.peer_addr(0);
        loop {
            let mut c = dial(&addr, None, self.shutdown)?;
            if (Control::Hello { ordinal: id.ordinal, epoch: after }).write_to(&mut c).is_err() {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            // worker 0 answers once every worker has said hello
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            loop {
                if self.shutdown.is_requested() {
                    return None;
                }
                match Control::read_from(&mut c) {
                    Ok(Control::Start { epoch, job_id, restore }) if epoch > after => {
                        self.board.set_job_id(&job_id);
                        let _ = c.set_read_timeout(None);
                        return Some((c, epoch, job_id, restore));
                    }
                    Ok(other) => {
                        tracing::warn!(?other, "unexpected message from worker 0 while joining");
                        break;
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                    Err(_) => break, // worker 0 went away: dial again
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Connects to every other worker for `epoch`: dials those below (except 0,
    /// already connected), accepts those above.
    fn mesh(&mut self, conn0: &TcpStream, epoch: u64) -> Result<Vec<Option<TcpStream>>, String> {
        let id = self.settings.identity.clone();
        let n = id.workers as usize;
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let deadline = Instant::now() + MESH_TIMEOUT;
        for j in 1..id.ordinal {
            let mut c = dial(&id.peer_addr(j), Some(deadline), self.shutdown).ok_or_else(|| format!("cannot reach worker {j} at {}", id.peer_addr(j)))?;
            Control::Hello { ordinal: id.ordinal, epoch }.write_to(&mut c).map_err(|e| format!("worker {j}: {e}"))?;
            conns[j as usize] = Some(c);
        }
        // connections for this epoch that arrived early
        for g in std::mem::take(&mut self.early) {
            match g.epoch.cmp(&epoch) {
                std::cmp::Ordering::Equal if g.ordinal > id.ordinal && (g.ordinal as usize) < n => conns[g.ordinal as usize] = Some(g.conn),
                std::cmp::Ordering::Greater => self.early.push(g),
                _ => {}
            }
        }
        while conns.iter().enumerate().skip(id.ordinal as usize + 1).any(|(_, c)| c.is_none()) {
            if Instant::now() > deadline {
                return Err("workers above this one did not connect in time".into());
            }
            if !alive(conn0) {
                return Err("worker 0 closed the connection (a new epoch started)".into());
            }
            match self.incoming.recv_timeout(Duration::from_millis(100)) {
                Ok(g) if g.epoch == epoch && g.ordinal > id.ordinal && (g.ordinal as usize) < n => conns[g.ordinal as usize] = Some(g.conn),
                Ok(g) if g.epoch > epoch => {
                    self.early.push(g);
                    return Err("a newer epoch started".into());
                }
                Ok(_) => {} // stale
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("the peer acceptor stopped".into()),
            }
        }
        Ok(conns)
    }

    fn attempt(&mut self, conn0: TcpStream, epoch: u64, job_id: &str, restore_url: &Option<String>) -> Result<(), String> {
        let id = self.settings.identity.clone();
        let mut conns = self.mesh(&conn0, epoch)?;
        conns[0] = Some(conn0);
        let placement = Placement { worker: id.ordinal, workers: id.workers };
        let restore = match load_restore(restore_url, self.env, &self.settings.checkpoints, placement) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("restoring from {}: {e}", restore_url.as_deref().unwrap_or("?"));
                let n = CheckpointStorage::open(&self.settings.checkpoints.storage).ok().and_then(|s| restore_url.as_deref().and_then(|u| crate::checkpoint::checkpoint_number(&s, u)));
                if let (true, Some(n), Some(c)) = (e.is_bad_snapshot(), n, conns[0].as_mut()) {
                    // tell worker 0, so that the next attempt starts from an older checkpoint
                    let _ = Control::BadCheckpoint { id: n, error: e.to_string() }.write_to(c);
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Err(msg);
            }
        };
        let Attempt { job, network, events, reports: (_, reports) } = Attempt::launch(self.env, self.board, placement, restore, conns, &self.settings.checkpoints.storage, job_id)?;
        network.send_control(0, &Control::Ready { tasks: job.task_count() as u32 }.encode());
        self.board.set_state(JobState::Running, None);
        let result = relay(&job, &network, &events, &reports, self.shutdown);
        Attempt::end(job, network, result)
    }
}

/// This worker's part of one epoch: its tasks and its connections.
struct Attempt {
    job: RunningJob,
    network: Network,
    events: Receiver<NetEvent>,
    /// Where local tasks report their snapshots.
    reports: (Sender<SnapshotReport>, Receiver<SnapshotReport>),
}

impl Attempt {
    /// Launches the local subtasks of `placement` (registering their remote streams),
    /// then starts the connections `conns`.
    fn launch(env: &StreamEnv, board: &StatusBoard, placement: Placement, restore: Option<Arc<RestoreState>>, conns: Vec<Option<TcpStream>>, storage: &str, job_id: &str) -> Result<Attempt, String> {
        let mut net = NetBuilder::new(placement);
        let reports = unbounded();
        let job = env
            .launch_distributed(CheckpointSetup { reports: reports.0.clone(), restore, fault: None, storage: storage.to_string(), job_id: job_id.to_string() }, &mut net)
            .map_err(|e| format!("launching the tasks: {e}"))?;
        let (ev_tx, events) = unbounded();
        let network = match net.start(conns, ev_tx) {
            Ok(n) => n,
            Err(e) => {
                job.cancel();
                let _ = job.wait();
                return Err(format!("starting the connections: {e}"));
            }
        };
        board.set_tasks(job.metrics.clone());
        board.set_network(network.counters());
        Ok(Attempt { job, network, events, reports })
    }

    /// Ends the epoch: after a finished job, lets the tasks complete and the last
    /// frames leave; after a failure, cancels the tasks and drops the connections.
    fn end(job: RunningJob, network: Network, result: Result<(), String>) -> Result<(), String> {
        match result {
            Ok(()) => {
                let r = job.wait();
                network.close_gracefully(Duration::from_secs(10));
                r.map_err(|e| e.to_string())
            }
            Err(why) => {
                job.cancel();
                network.shutdown();
                let _ = job.wait();
                Err(why)
            }
        }
    }
}

/// Whether the peer of a handshake connection is still there.
fn alive(c: &TcpStream) -> bool {
    if c.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    let r = match c.peek(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    let _ = c.set_nonblocking(false);
    r
}

/// A follower's run: commands from worker 0 to the local tasks; snapshots, progress
/// and failures back. `Ok` on shutdown after the job finished.
fn relay(job: &RunningJob, net: &Network, events: &Receiver<NetEvent>, reports: &Receiver<SnapshotReport>, shutdown: &StopHandle) -> Result<(), String> {
    let mut last_progress = (false, false);
    loop {
        if shutdown.is_requested() {
            return Err("terminated".into());
        }
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(NetEvent::Control { from: 0, payload }) => match Control::decode(&payload)? {
                Control::Trigger(b) => job.broadcast(TaskCommand::Trigger(b), false),
                Control::Complete(id) => job.broadcast(TaskCommand::Complete(id), false),
                Control::Abort(id) => job.broadcast(TaskCommand::Abort(id), false),
                Control::Shutdown => return Ok(()),
                other => tracing::warn!(?other, "unexpected control message from worker 0"),
            },
            Ok(NetEvent::Control { from, .. }) => tracing::warn!(from, "control message from a worker other than 0"),
            // once every local task has finished, this worker needs nothing more from its
            // peers but worker 0's last commands (the final commit, shutdown): peers that
            // got theirs first close their connections meanwhile
            Ok(NetEvent::Lost { peer, reason }) if peer != 0 && progress(job).1 => {
                tracing::debug!(peer, %reason, "a finished peer closed its connection");
            }
            Ok(NetEvent::Lost { peer, reason }) => return Err(format!("lost worker {peer}: {reason}")),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err("the connections are gone".into()),
        }
        while let Ok(r) = reports.try_recv() {
            let msg = match r.error {
                Some(error) => Control::ReportFailed { barrier: r.barrier, error },
                None => Control::Report { barrier: r.barrier, operators: r.operators },
            };
            net.send_control(0, &msg.encode());
        }
        if let Some(f) = job.failure() {
            net.send_control(0, &Control::Failed(f.clone()).encode());
            // give the message a moment to leave before the connections close
            std::thread::sleep(Duration::from_millis(50));
            return Err(f);
        }
        let p = progress(job);
        if p != last_progress {
            last_progress = p;
            net.send_control(0, &Control::Progress { any_finished: p.0, all_finished: p.1 }.encode());
        }
    }
}

impl From<ClusterError> for JobError {
    fn from(e: ClusterError) -> Self {
        JobError::Invalid(e.to_string())
    }
}
