//! From the logical graph to running threads: resolve parallelism, chain operators
//! connected by forward edges, create the channels of the other edges, build every
//! subtask's operator chain and start one thread per task.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{JobControl, SnapshotReport, TaskCommand, TaskEnv, TaskInfo, TaskMetrics};
use crate::error::JobError;
use crate::exchange::Placement;
use crate::exchange::net::NetBuilder;
use crate::graph::{AnyBox, Graph, NodeId, NodeKind, Ship, SideOutputs};

/// Static settings of one job run.
#[derive(Clone, Debug)]
pub struct JobConfig {
    pub name: String,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Where keyed state lives (heap or RocksDB).
    pub state_backend: crate::state::StateBackend,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            name: "job".into(),
            parallelism: 1,
            max_parallelism: crate::keygroup::DEFAULT_MAX_PARALLELISM,
            state_backend: crate::state::StateBackend::Memory,
        }
    }
}

/// What a job run needs for checkpoints: where tasks report, what they start from.
#[derive(Clone)]
pub(crate) struct CheckpointSetup {
    pub reports: crossbeam_channel::Sender<SnapshotReport>,
    pub restore: Option<Arc<crate::checkpoint::restore::RestoreState>>,
    /// Test-only fault: fail the task running this operator at its n-th input record.
    pub fault: Option<(String, u64)>,
    /// The checkpoint storage URL: this process uploads its RocksDB files and writes
    /// its state files there.
    pub storage: String,
    /// The deployment's job id (names savepoint directories).
    pub job_id: String,
}

/// The coordinator's handle on one task.
pub(crate) struct TaskHandle {
    pub is_source: bool,
    pub commands: crossbeam_channel::Sender<TaskCommand>,
}

/// A job whose tasks are running on threads.
pub struct RunningJob {
    threads: Vec<JoinHandle<()>>,
    control: Arc<JobControl>,
    pub metrics: Vec<Arc<TaskMetrics>>,
    pub(crate) tasks: Vec<TaskHandle>,
    /// Uploads this process's RocksDB checkpoint files (with checkpoints).
    uploader: Option<crate::checkpoint::upload::Uploader>,
}

impl RunningJob {
    /// Asks every task to stop (without end-of-input semantics).
    pub fn cancel(&self) {
        self.control.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether every task has processed all its input (or the job failed).
    pub fn is_finished(&self) -> bool {
        self.control.is_cancelled() || self.metrics.iter().all(|m| m.finished.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Sends `cmd` to every task (or only the sources).
    pub(crate) fn broadcast(&self, cmd: TaskCommand, sources_only: bool) {
        // before the tasks hear of it: the next snapshot may then reuse its files
        if let Some(u) = &self.uploader {
            match cmd {
                TaskCommand::Complete(id) => u.complete(id),
                TaskCommand::Abort(id) => u.abort(id),
                TaskCommand::Trigger(_) => {}
            }
        }
        for t in self.tasks.iter().filter(|t| t.is_source || !sources_only) {
            let _ = t.commands.send(cmd);
        }
    }

    /// Number of tasks (each reports once per checkpoint).
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Fails the job (as if a task had failed) — used by the coordinator.
    pub(crate) fn fail(&self, msg: String) {
        self.control.fail(msg)
    }

    /// The first failure, if a task failed.
    pub(crate) fn failure(&self) -> Option<String> {
        self.control.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Whether the job has failed (or was cancelled) so far.
    pub(crate) fn is_failing(&self) -> bool {
        self.control.is_cancelled()
    }

    /// Waits for every task; the first failure wins.
    pub fn wait(mut self) -> Result<(), JobError> {
        // tasks that finished wait for coordinator commands until this closes them
        self.tasks.clear();
        for t in self.threads {
            let _ = t.join();
        }
        let failure = self.control.failure.lock().ok().and_then(|f| f.clone());
        match failure {
            Some(msg) => Err(JobError::TaskFailed(msg)),
            None if self.control.is_cancelled() => Err(JobError::Cancelled),
            None => Ok(()),
        }
    }
}

struct Planned {
    parallelism: Vec<u32>,
    ship: Vec<Ship>,
    chained: Vec<bool>,
    out_edges: Vec<Vec<usize>>,
    in_edges: Vec<Vec<usize>>,
}

fn plan(graph: &Graph, config: &JobConfig) -> Result<Planned, JobError> {
    let n = graph.nodes.len();
    if n == 0 {
        return Err(JobError::Invalid("the job has no operators".into()));
    }
    let m = config.max_parallelism;
    let mut parallelism = Vec::with_capacity(n);
    for node in &graph.nodes {
        let p = node.parallelism.unwrap_or(config.parallelism);
        if p == 0 || p > m {
            return Err(JobError::Invalid(format!(
                "operator '{}': parallelism {p} must be between 1 and the max parallelism {m}",
                node.name
            )));
        }
        parallelism.push(p);
    }
    let mut out_edges = vec![Vec::new(); n];
    let mut in_edges = vec![Vec::new(); n];
    for (i, e) in graph.edges.iter().enumerate() {
        out_edges[e.from].push(i);
        in_edges[e.to].push(i);
    }
    let mut ship = Vec::with_capacity(graph.edges.len());
    let mut chained = Vec::with_capacity(graph.edges.len());
    for e in &graph.edges {
        let s = if e.ship == Ship::Forward && parallelism[e.from] != parallelism[e.to] { Ship::Rebalance } else { e.ship };
        let target = &graph.nodes[e.to];
        let c = s == Ship::Forward && in_edges[e.to].len() == 1 && !target.two_input() && target.chainable;
        ship.push(s);
        chained.push(c);
    }
    if graph.nodes.iter().enumerate().any(|(i, nd)| !nd.is_source() && in_edges[i].is_empty()) {
        return Err(JobError::Invalid("an operator has no input".into()));
    }
    Ok(Planned { parallelism, ship, chained, out_edges, in_edges })
}

/// Starts the tasks of `graph` that this process runs: all of them, or with `net`
/// (a distributed job) those its placement assigns here, with remote streams to the
/// others registered in `net`.
pub(crate) fn launch(graph: &Graph, config: &JobConfig, setup: Option<CheckpointSetup>, mut net: Option<&mut NetBuilder>) -> Result<RunningJob, JobError> {
    let p = plan(graph, config)?;
    let place = net.as_ref().map(|n| n.placement).unwrap_or(Placement::EMBEDDED);
    let mut commands = Vec::new();
    let control = Arc::new(JobControl::default());
    // snapshots go through this process's uploader on their way to the coordinator
    let mut uploader = None;
    let setup = match setup {
        Some(mut s) => {
            let ctl = control.clone();
            let (u, tx) = crate::checkpoint::upload::Uploader::start(&s.storage, &s.job_id, s.reports.clone(), Arc::new(move || ctl.is_cancelled()))
                .map_err(|e| JobError::State(format!("checkpoint storage {}: {e}", s.storage)))?;
            uploader = Some(u);
            s.reports = tx;
            Some(s)
        }
        None => None,
    };
    let job_name: Arc<str> = Arc::from(config.name.as_str());

    // channels of the edges that are not chained
    let mut senders: HashMap<usize, Vec<Option<AnyBox>>> = HashMap::new();
    let mut receivers: HashMap<usize, Vec<Option<AnyBox>>> = HashMap::new();
    for (i, e) in graph.edges.iter().enumerate() {
        if p.chained[i] {
            continue;
        }
        let (s, r) = e.factory.channels(i, p.parallelism[e.from], p.parallelism[e.to], p.ship[i] == Ship::Forward, net.as_deref_mut());
        senders.insert(i, s);
        receivers.insert(i, r);
    }

    let heads: Vec<NodeId> = (0..graph.nodes.len()).filter(|&n| !p.in_edges[n].iter().any(|&e| p.chained[e])).collect();
    let mut threads = Vec::new();
    let mut all_metrics = Vec::new();
    for &h in &heads {
        let chain_name = chain_name(graph, &p, h);
        let is_sink = chain_nodes(graph, &p, h).iter().any(|&n| graph.nodes[n].is_sink);
        // names and uids of the chain's operators (for test-only fault injection)
        let chain_ids: Vec<&str> = chain_nodes(graph, &p, h).iter().flat_map(|&n| [graph.nodes[n].name.as_str(), graph.nodes[n].stable_id()]).collect();
        for i in (0..p.parallelism[h]).filter(|&i| place.is_local(i)) {
            let metrics = Arc::new(TaskMetrics::new(chain_name.clone(), i, graph.nodes[h].is_source(), is_sink));
            all_metrics.push(metrics.clone());
            let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
            commands.push(TaskHandle { is_source: graph.nodes[h].is_source(), commands: cmd_tx });
            let env_for = |node: NodeId| TaskEnv {
                info: TaskInfo {
                    job_name: job_name.clone(),
                    operator: Arc::from(graph.nodes[node].name.as_str()),
                    uid: Arc::from(graph.nodes[node].stable_id()),
                    subtask: i,
                    parallelism: p.parallelism[node],
                    max_parallelism: config.max_parallelism,
                    state_backend: config.state_backend,
                },
                control: control.clone(),
                metrics: metrics.clone(),
                snapshots: setup.as_ref().map(|s| s.reports.clone()),
                commands: Some(cmd_rx.clone()),
                restore: setup.as_ref().and_then(|s| s.restore.clone()),
                fault: setup.as_ref().and_then(|s| s.fault.clone()).filter(|(op, _)| chain_ids.iter().any(|n| n == op)),
            };
            let head_env = env_for(h);
            let (main, sides) = outputs(graph, &p, h, i, &env_for, &mut senders);
            let body = match &graph.nodes[h].kind {
                NodeKind::Source { run } => run(head_env.clone(), main),
                NodeKind::Operator { build, run, .. } => {
                    let head = build(&head_env, main, sides);
                    let mut in1 = Vec::new();
                    let mut in2 = Vec::new();
                    for &e in &p.in_edges[h] {
                        let r = receivers.get_mut(&e).and_then(|v| v[i as usize].take());
                        if let Some(r) = r {
                            if graph.edges[e].input == 0 { in1.push(r) } else { in2.push(r) }
                        }
                    }
                    run(head_env.clone(), head, in1, in2)
                }
            };
            let ctl = control.clone();
            let label = format!("{} ({}/{})", chain_name, i + 1, p.parallelism[h]);
            let thread = std::thread::Builder::new()
                .name(format!("weir-{}-{}", graph.nodes[h].name, i))
                .spawn(move || {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(body)) {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "unknown panic".into());
                        ctl.fail(format!("task {label} panicked: {msg}"));
                    }
                })
                .map_err(|e| JobError::Invalid(format!("cannot start a thread: {e}")))?;
            threads.push(thread);
        }
    }
    Ok(RunningJob { threads, control, metrics: all_metrics, tasks: commands, uploader })
}

/// Builds the downstream of `n`'s outputs for subtask `i`: chained successors are
/// built in place, other edges get the sending side of their channels.
fn outputs(
    graph: &Graph,
    p: &Planned,
    n: NodeId,
    i: u32,
    env_for: &dyn Fn(NodeId) -> TaskEnv,
    senders: &mut HashMap<usize, Vec<Option<AnyBox>>>,
) -> (AnyBox, SideOutputs) {
    let node = &graph.nodes[n];
    let mut main = Vec::new();
    let mut by_tag: HashMap<String, Vec<AnyBox>> = HashMap::new();
    for &e in &p.out_edges[n] {
        let edge = &graph.edges[e];
        let down: AnyBox = if p.chained[e] {
            let (m, s) = outputs(graph, p, edge.to, i, env_for, senders);
            match &graph.nodes[edge.to].kind {
                NodeKind::Operator { build, .. } => build(&env_for(edge.to), m, s),
                NodeKind::Source { .. } => unreachable!("a source has no input"),
            }
        } else {
            let s = senders.get_mut(&e).and_then(|v| v[i as usize].take()).expect("channel senders for producer");
            edge.factory.output(s, &env_for(n), p.parallelism[edge.to])
        };
        match &edge.port {
            None => main.push(down),
            Some(tag) => by_tag.entry(tag.clone()).or_default().push(down),
        }
    }
    let main = (node.main.combine)(main);
    let mut sides = SideOutputs { outs: HashMap::new(), binders: Vec::new() };
    for (tag, outs) in by_tag {
        let port = node.sides.get(&tag).expect("declared side output");
        sides.outs.insert(tag.clone(), (port.combine)(outs));
        sides.binders.push((tag, port.bind));
    }
    (main, sides)
}

fn chain_nodes(graph: &Graph, p: &Planned, h: NodeId) -> Vec<NodeId> {
    let mut out = vec![h];
    let mut i = 0;
    while i < out.len() {
        let n = out[i];
        out.extend(p.out_edges[n].iter().filter(|&&e| p.chained[e]).map(|&e| graph.edges[e].to));
        i += 1;
    }
    out
}

fn chain_name(graph: &Graph, p: &Planned, h: NodeId) -> String {
    chain_nodes(graph, p, h).iter().map(|&n| graph.nodes[n].name.as_str()).collect::<Vec<_>>().join(" -> ")
}
