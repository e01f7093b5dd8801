//! The job-building API, in the spirit of Flink's DataStream API:
//! `env.source(..).map(..).key_by(..).window(..).aggregate(..).sink(..)`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use crate::exchange::InChannel;

use crate::connector::{Sink, SinkContext, Source, SourceContext};
use crate::error::JobError;
use crate::exec::input::{OneInput, TwoInput};
use crate::exec::output::{ByKeyGroup, ExchangeOut, RoundRobin, ToAll, ToOne};
use crate::exec::plan::{JobConfig, RunningJob, launch};
use crate::exec::{BoxDown, TaskEnv, input, source};
use crate::graph::{AnyBox, EdgeFactory, Graph, InputRunFn, Node, NodeId, NodeKind, PortType, Ship, SideOutputs, TypedEdge, unbox};
use crate::keygroup::{Key, routing_table};
use crate::operator::basic::{Filter, FlatMap, Map, Process, ProcessFunction, SinkOp};
use crate::operator::keyed::{KeyedCoProcess, KeyedCoProcessFunction, KeyedContext, KeyedCore, KeyedProcess, KeyedProcessFunction};
use crate::record::{Collector, Data, OutputTag};
use crate::state::{AggregateFunction, OpenContext, ValueState};
use crate::time::WatermarkStrategy;
use crate::window::operator::{WindowOperator, WindowSpec};
use crate::window::{AggregateWindow, ProcessWindow, Reduce, Trigger, WindowAssigner, WindowFunction};

/// Builds a job graph; `execute` runs it.
pub struct StreamEnv {
    graph: Rc<RefCell<Graph>>,
    config: JobConfig,
}

impl StreamEnv {
    pub fn new(config: JobConfig) -> Self {
        StreamEnv { graph: Rc::new(RefCell::new(Graph::default())), config }
    }

    pub fn config(&self) -> &JobConfig {
        &self.config
    }

    /// Adds a parallel source: `factory` makes the instance of each subtask.
    pub fn source<T: Data, S: Source<T> + 'static>(
        &self,
        name: &str,
        factory: impl Fn(&SourceContext) -> S + 'static,
        strategy: WatermarkStrategy<T>,
    ) -> DataStream<T> {
        let run = Box::new(move |env: TaskEnv, down: AnyBox| {
            let ctx = SourceContext { subtask: env.info.subtask, parallelism: env.info.parallelism };
            let src: Box<dyn Source<T>> = Box::new(factory(&ctx));
            let strategy = strategy.clone();
            let down = unbox::<BoxDown<T>>(down);
            Box::new(move || source::run(env, src, strategy, down)) as Box<dyn FnOnce() + Send>
        });
        let mut g = self.graph.borrow_mut();
        let name = unique_name(&g, name);
        let id = g.add_node(Node {
            name,
            uid: None,
            parallelism: None,
            kind: NodeKind::Source { run },
            main: PortType::of::<T>(),
            sides: HashMap::new(),
            is_sink: false,
            chainable: true,
        });
        drop(g);
        DataStream::new(self.graph.clone(), id, None)
    }

    /// Starts the job's tasks and returns without waiting.
    pub fn launch(self) -> Result<RunningJob, JobError> {
        let graph = self.graph.borrow();
        validate_uids(&graph)?;
        launch(&graph, &self.config, None, None)
    }

    /// The stable ids of all operators (to match snapshot state).
    pub fn uids(&self) -> Vec<String> {
        self.graph.borrow().nodes.iter().map(|n| n.stable_id().to_string()).collect()
    }

    /// The key groups the subtasks of each operator (by uid) own that `placement`
    /// runs in this process: what a restore of this process needs.
    pub(crate) fn local_key_groups(&self, placement: crate::exchange::Placement) -> std::collections::HashMap<String, Vec<crate::keygroup::KeyGroupRange>> {
        let m = self.config.max_parallelism;
        let mut out: std::collections::HashMap<String, Vec<crate::keygroup::KeyGroupRange>> = std::collections::HashMap::new();
        for n in &self.graph.borrow().nodes {
            let p = n.parallelism.unwrap_or(self.config.parallelism);
            let e = out.entry(n.stable_id().to_string()).or_default();
            for i in (0..p).filter(|&i| placement.is_local(i)) {
                e.push(crate::keygroup::range_for_subtask(i, p, m));
            }
        }
        out
    }

    /// Starts the job with checkpointing: tasks report snapshots to `setup.reports`.
    pub(crate) fn launch_with(&self, setup: crate::exec::plan::CheckpointSetup) -> Result<RunningJob, JobError> {
        let graph = self.graph.borrow();
        validate_uids(&graph)?;
        launch(&graph, &self.config, Some(setup), None)
    }

    /// Starts this process's share of a distributed job (the subtasks `net`'s
    /// placement assigns here), registering its remote streams in `net`.
    pub(crate) fn launch_distributed(&self, setup: crate::exec::plan::CheckpointSetup, net: &mut crate::exchange::net::NetBuilder) -> Result<RunningJob, JobError> {
        let graph = self.graph.borrow();
        validate_uids(&graph)?;
        launch(&graph, &self.config, Some(setup), Some(net))
    }

    /// Runs the job until its input ends.
    pub fn execute(self) -> Result<(), JobError> {
        self.launch()?.wait()
    }
}

/// `name`, or `name_<n>` when an operator already has that name.
fn unique_name(g: &Graph, name: &str) -> String {
    if !g.nodes.iter().any(|n| n.name == name) {
        return name.to_string();
    }
    (2..).map(|i| format!("{name}_{i}")).find(|c| !g.nodes.iter().any(|n| &n.name == c)).unwrap_or_default()
}

fn validate_uids(graph: &Graph) -> Result<(), JobError> {
    let mut seen = HashMap::new();
    for n in &graph.nodes {
        if let Some(prev) = seen.insert(n.stable_id().to_string(), n.name.clone()) {
            return Err(JobError::Invalid(format!(
                "two operators ('{prev}' and '{}') have the id '{}': give them distinct uids",
                n.name,
                n.stable_id()
            )));
        }
    }
    Ok(())
}

/// A stream of records of type `T`.
pub struct DataStream<T> {
    graph: Rc<RefCell<Graph>>,
    node: NodeId,
    port: Option<String>,
    ship: Ship,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream { graph: self.graph.clone(), node: self.node, port: self.port.clone(), ship: self.ship, _t: PhantomData }
    }
}

fn one_input_run<T: Data>() -> InputRunFn {
    Box::new(|env, head, in1, _in2| {
        let head = unbox::<BoxDown<T>>(head);
        let rx: Vec<InChannel<T>> = in1.into_iter().flat_map(unbox::<Vec<InChannel<T>>>).collect();
        Box::new(move || {
            let mut h = OneInput(head);
            input::run::<T, ()>(env, &mut h, rx, Vec::new())
        })
    })
}

fn two_input_run<A: Data, B: Data>() -> InputRunFn {
    Box::new(|env, head, in1, in2| {
        let mut head = unbox::<Box<dyn TwoInput<A, B>>>(head);
        let rx1: Vec<InChannel<A>> = in1.into_iter().flat_map(unbox::<Vec<InChannel<A>>>).collect();
        let rx2: Vec<InChannel<B>> = in2.into_iter().flat_map(unbox::<Vec<InChannel<B>>>).collect();
        Box::new(move || input::run::<A, B>(env, head.as_mut(), rx1, rx2))
    })
}

pub(crate) fn plain_edge<T: Data>() -> Box<dyn EdgeFactory> {
    Box::new(TypedEdge::<T> {
        make_out: Box::new(|senders, env: &TaskEnv, _c| {
            let (ctl, m) = (env.control.clone(), env.metrics.clone());
            if senders.len() == 1 {
                Box::new(ExchangeOut::new(ToOne, senders, ctl, m))
            } else {
                let n = senders.len();
                let rr = RoundRobin { next: env.info.subtask as usize % n, n };
                Box::new(ExchangeOut::new(rr, senders, ctl, m))
            }
        }),
    })
}

fn broadcast_edge<T: Data>() -> Box<dyn EdgeFactory> {
    Box::new(TypedEdge::<T> {
        make_out: Box::new(|senders, env: &TaskEnv, _c| Box::new(ExchangeOut::new(ToAll, senders, env.control.clone(), env.metrics.clone()))),
    })
}

pub(crate) fn hash_edge<T: Data, K: Key, KF: Fn(&T) -> K + Clone + Send + 'static>(key_fn: KF) -> Box<dyn EdgeFactory> {
    Box::new(TypedEdge::<T> {
        make_out: Box::new(move |senders, env: &TaskEnv, consumers| {
            let part = ByKeyGroup {
                key_fn: key_fn.clone(),
                max_parallelism: env.info.max_parallelism,
                table: routing_table(consumers, env.info.max_parallelism),
            };
            Box::new(ExchangeOut::new(part, senders, env.control.clone(), env.metrics.clone()))
        }),
    })
}

impl<T: Data> DataStream<T> {
    fn new(graph: Rc<RefCell<Graph>>, node: NodeId, port: Option<String>) -> Self {
        DataStream { graph, node, port, ship: Ship::Forward, _t: PhantomData }
    }

    fn edge(&self) -> Box<dyn EdgeFactory> {
        match self.ship {
            Ship::Broadcast => broadcast_edge::<T>(),
            _ => plain_edge::<T>(),
        }
    }

    fn add_node(&self, name: &str, kind: NodeKind, main: PortType, is_sink: bool) -> NodeId {
        let mut g = self.graph.borrow_mut();
        let name = unique_name(&g, name);
        g.add_node(Node {
            name,
            uid: None,
            parallelism: None,
            kind,
            main,
            sides: HashMap::new(),
            is_sink,
            chainable: true,
        })
    }

    fn connect_edge(&self, to: NodeId, input: u8, ship: Ship, factory: Box<dyn EdgeFactory>) {
        self.graph.borrow_mut().edges.push(crate::graph::Edge { from: self.node, port: self.port.clone(), to, input, ship, factory });
    }

    /// Adds a one-input operator fed by this stream.
    fn one_input<O: Data>(
        &self,
        name: &str,
        ship: Ship,
        edge: Box<dyn EdgeFactory>,
        build: impl Fn(&TaskEnv, BoxDown<O>, SideOutputs) -> BoxDown<T> + 'static,
    ) -> DataStream<O> {
        let build = Box::new(move |env: &TaskEnv, main: AnyBox, sides: SideOutputs| {
            Box::new(build(env, unbox::<BoxDown<O>>(main), sides)) as AnyBox
        });
        let id = self.add_node(name, NodeKind::Operator { build, run: one_input_run::<T>(), two_input: false }, PortType::of::<O>(), false);
        self.connect_edge(id, 0, ship, edge);
        DataStream::new(self.graph.clone(), id, None)
    }

    /// Sets the operator's stable id, used to match its state in savepoints.
    pub fn uid(self, uid: &str) -> Self {
        self.graph.borrow_mut().nodes[self.node].uid = Some(uid.to_string());
        self
    }

    /// Sets the operator's display name.
    pub fn name(self, name: &str) -> Self {
        self.graph.borrow_mut().nodes[self.node].name = name.to_string();
        self
    }

    /// Runs this operator with its own parallelism.
    pub fn parallelism(self, p: u32) -> Self {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(p);
        self
    }

    /// Starts a new task at this operator instead of chaining it to its input.
    pub fn start_new_chain(self) -> Self {
        self.graph.borrow_mut().nodes[self.node].chainable = false;
        self
    }

    /// Sends the next operator's input round robin.
    pub fn rebalance(mut self) -> Self {
        self.ship = Ship::Rebalance;
        self
    }

    /// Sends every record to every subtask of the next operator.
    pub fn broadcast(mut self) -> Self {
        self.ship = Ship::Broadcast;
        self
    }

    pub fn map<O: Data>(&self, f: impl FnMut(T) -> O + Clone + Send + 'static) -> DataStream<O> {
        self.one_input("map", self.ship, self.edge(), move |_env, next, _s| Box::new(Map { f: f.clone(), out: Vec::new(), next }))
    }

    pub fn filter(&self, f: impl FnMut(&T) -> bool + Clone + Send + 'static) -> DataStream<T> {
        self.one_input("filter", self.ship, self.edge(), move |_env, next, _s| Box::new(Filter { f: f.clone(), next }))
    }

    pub fn flat_map<O: Data>(&self, f: impl FnMut(T, &mut Collector<'_, O>) + Clone + Send + 'static) -> DataStream<O> {
        self.one_input("flat_map", self.ship, self.edge(), move |_env, next, _s| Box::new(FlatMap { f: f.clone(), out: Vec::new(), next }))
    }

    /// A function per record with access to time and side outputs.
    pub fn process<O: Data, F: ProcessFunction<T, O> + Clone + 'static>(&self, f: F) -> DataStream<O> {
        self.one_input("process", self.ship, self.edge(), move |_env, next, sides| {
            Box::new(Process { f: f.clone(), out: Vec::new(), next, sides: sides.into_sides(), watermark: i64::MIN })
        })
    }

    /// The records an operator emitted to side output `tag`.
    pub fn side_output<X: Data>(&self, tag: &OutputTag<X>) -> DataStream<X> {
        self.graph.borrow_mut().nodes[self.node].sides.insert(tag.id.clone(), PortType::of::<X>());
        DataStream::new(self.graph.clone(), self.node, Some(tag.id.clone()))
    }

    /// Partitions by key: records with the same key go to the same subtask.
    pub fn key_by<K: Key, KF: Fn(&T) -> K + Clone + Send + 'static>(&self, key_fn: KF) -> KeyedStream<T, K, KF> {
        KeyedStream { stream: self.clone(), key_fn, _k: PhantomData }
    }

    /// Merges streams of the same type.
    pub fn union(&self, others: &[DataStream<T>]) -> DataStream<T> {
        let build = Box::new(|_env: &TaskEnv, main: AnyBox, _s: SideOutputs| main);
        let id = self.add_node("union", NodeKind::Operator { build, run: one_input_run::<T>(), two_input: false }, PortType::of::<T>(), false);
        self.connect_edge(id, 0, self.ship, self.edge());
        for o in others {
            o.connect_edge(id, 0, o.ship, o.edge());
        }
        DataStream::new(self.graph.clone(), id, None)
    }

    /// Two streams into one two-input operator (see [`ConnectedStreams`]).
    pub fn connect<U: Data>(&self, other: &DataStream<U>) -> ConnectedStreams<T, U> {
        ConnectedStreams { a: self.clone(), b: other.clone() }
    }

    /// Writes the stream to a sink; `factory` makes each subtask's sink.
    pub fn sink<S: Sink<T> + 'static>(&self, name: &str, factory: impl Fn(&SinkContext) -> S + 'static) -> SinkHandle {
        let build = Box::new(move |env: &TaskEnv, _main: AnyBox, _s: SideOutputs| {
            let ctx = SinkContext { subtask: env.info.subtask, parallelism: env.info.parallelism };
            let op = SinkOp::new::<T>(factory(&ctx), env.clone());
            Box::new(Box::new(op) as BoxDown<T>) as AnyBox
        });
        let id = self.add_node(name, NodeKind::Operator { build, run: one_input_run::<T>(), two_input: false }, PortType::of::<()>(), true);
        self.connect_edge(id, 0, self.ship, self.edge());
        SinkHandle { graph: self.graph.clone(), node: id }
    }
}

/// The sink node of a job, to set its uid, name and parallelism.
pub struct SinkHandle {
    graph: Rc<RefCell<Graph>>,
    node: NodeId,
}

impl SinkHandle {
    pub fn uid(self, uid: &str) -> Self {
        self.graph.borrow_mut().nodes[self.node].uid = Some(uid.to_string());
        self
    }
    pub fn parallelism(self, p: u32) -> Self {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(p);
        self
    }
}

/// A stream partitioned by key.
pub struct KeyedStream<T, K, KF> {
    stream: DataStream<T>,
    key_fn: KF,
    _k: PhantomData<fn() -> K>,
}

impl<T: Data, K: Key, KF: Fn(&T) -> K + Clone + Send + 'static> KeyedStream<T, K, KF> {
    /// A keyed process function: keyed state and timers.
    pub fn process<O: Data, F: KeyedProcessFunction<K, T, O> + Clone + 'static>(&self, f: F) -> DataStream<O> {
        let kf = self.key_fn.clone();
        let s = &self.stream;
        let uid_src = s.graph.clone();
        let node_holder: Rc<RefCell<NodeId>> = Rc::new(RefCell::new(0));
        let nh = node_holder.clone();
        let out = s.one_input("keyed_process", Ship::Hash, hash_edge(self.key_fn.clone()), move |env, next, sides| {
            let uid = uid_src.borrow().nodes[*nh.borrow()].stable_id().to_string();
            let mut core = KeyedCore::<K, O>::new(&env.info, &uid, next, sides.into_sides());
            let mut f = f.clone();
            let mut oc = OpenContext { state: &mut core.state, info: &env.info };
            if let Err(e) = f.open(&mut oc) {
                env.control.fail(format!("{}: open failed: {e}", env.info.operator));
            }
            core.restore(env);
            Box::new(KeyedProcess { key_fn: kf.clone(), f, core })
        });
        *node_holder.borrow_mut() = out.node;
        out
    }

    /// A rolling reduce: emits the folded value of the key after every record.
    pub fn reduce(&self, f: fn(&T, &T) -> T) -> DataStream<T> {
        self.process(RollingReduce { f, state: None })
    }

    /// Groups each key's records into windows.
    pub fn window<A: WindowAssigner>(&self, assigner: A) -> WindowedStream<T, K, KF, A, A::Trigger> {
        let trigger = assigner.default_trigger();
        WindowedStream { keyed: KeyedStream { stream: self.stream.clone(), key_fn: self.key_fn.clone(), _k: PhantomData }, assigner, trigger, lateness: 0, late_tag: None }
    }

    /// Connects with another stream keyed by the same key type.
    pub fn connect<U: Data, KF2: Fn(&U) -> K + Clone + Send + 'static>(&self, other: &KeyedStream<U, K, KF2>) -> KeyedConnectedStreams<T, U, K, KF, KF2> {
        KeyedConnectedStreams {
            a: KeyedStream { stream: self.stream.clone(), key_fn: self.key_fn.clone(), _k: PhantomData },
            b: KeyedStream { stream: other.stream.clone(), key_fn: other.key_fn.clone(), _k: PhantomData },
        }
    }
}

#[derive(Clone)]
struct RollingReduce<T> {
    f: fn(&T, &T) -> T,
    state: Option<ValueState<T>>,
}

impl<K: Key, T: Data> KeyedProcessFunction<K, T, T> for RollingReduce<T> {
    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("reduce")?);
        Ok(())
    }
    fn process(&mut self, value: T, ctx: &mut KeyedContext<'_, K, T>) {
        let Some(st) = &self.state else { return };
        let next = match st.get(ctx) {
            Some(old) => (self.f)(old, &value),
            None => value,
        };
        st.update(ctx, next.clone());
        ctx.emit(next);
    }
}

/// A keyed stream grouped into windows.
pub struct WindowedStream<T, K, KF, A, Tr> {
    keyed: KeyedStream<T, K, KF>,
    assigner: A,
    trigger: Tr,
    lateness: i64,
    late_tag: Option<OutputTag<T>>,
}

impl<T, K, KF, A, Tr> WindowedStream<T, K, KF, A, Tr>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Clone + Send + 'static,
    A: WindowAssigner,
    Tr: Trigger<T, A::W>,
{
    /// Replaces the assigner's default trigger.
    pub fn trigger<Tr2: Trigger<T, A::W>>(self, trigger: Tr2) -> WindowedStream<T, K, KF, A, Tr2> {
        WindowedStream { keyed: self.keyed, assigner: self.assigner, trigger, lateness: self.lateness, late_tag: self.late_tag }
    }

    /// Keeps windows for `lateness` after they fired; late records update and re-fire them.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = lateness.as_millis() as i64;
        self
    }

    /// Records too late for every window they belong to go to `tag` instead of being dropped.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.clone());
        self
    }

    fn apply<O: Data, WF: WindowFunction<K, A::W, T, O>>(self, name: &str, wf: WF) -> DataStream<O> {
        let s = self.keyed.stream.clone();
        let graph = s.graph.clone();
        let holder: Rc<RefCell<NodeId>> = Rc::new(RefCell::new(0));
        let h = holder.clone();
        let (kf, assigner, trigger, lateness, late_tag) = (self.keyed.key_fn.clone(), self.assigner, self.trigger, self.lateness, self.late_tag);
        let out = s.one_input(name, Ship::Hash, hash_edge(self.keyed.key_fn), move |env, next, sides| {
            let uid = graph.borrow().nodes[*h.borrow()].stable_id().to_string();
            let spec = WindowSpec {
                key_fn: kf.clone(),
                assigner: assigner.clone(),
                trigger: trigger.clone(),
                wf: wf.clone(),
                lateness_ms: lateness,
                late_tag: late_tag.clone(),
            };
            let mut op = WindowOperator::new(spec, &env.info, &uid, next, sides.into_sides());
            if let Some(r) = &env.restore {
                if let Err(e) = op.restore(r.keyed(&uid, env.info.key_groups())) {
                    env.control.fail(format!("{}: restoring state from {}: {e}", env.info.operator, r.url));
                }
            }
            Box::new(op)
        });
        *holder.borrow_mut() = out.node;
        out
    }

    /// Aggregates incrementally and emits the result of each firing.
    pub fn aggregate<AF: AggregateFunction<In = T>>(self, agg: AF) -> DataStream<AF::Out>
    where
        AF::Out: Data,
    {
        self.apply("window_aggregate", AggregateWindow { agg, f: |_k: &K, _w: &A::W, r: AF::Out, out: &mut Collector<'_, AF::Out>| out.emit(r) })
    }

    /// Aggregates incrementally; `f` turns key, window and result into output.
    pub fn aggregate_with<AF, O, F>(self, agg: AF, f: F) -> DataStream<O>
    where
        AF: AggregateFunction<In = T>,
        O: Data,
        F: FnMut(&K, &A::W, AF::Out, &mut Collector<'_, O>) + Clone + Send + 'static,
    {
        self.apply("window_aggregate", AggregateWindow { agg, f })
    }

    /// Folds each window with `f`.
    pub fn reduce<F: Fn(&T, &T) -> T + Clone + Send + 'static>(self, f: F) -> DataStream<T> {
        self.aggregate(Reduce::new(f))
    }

    /// Keeps all records of a window and calls `f` with them when it fires.
    pub fn process<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&K, &A::W, &[T], &mut Collector<'_, O>) + Clone + Send + 'static,
    {
        self.apply("window_process", ProcessWindow { f })
    }
}

/// Two keyed streams with the same key type, processed together.
pub struct KeyedConnectedStreams<A, B, K, KF1, KF2> {
    a: KeyedStream<A, K, KF1>,
    b: KeyedStream<B, K, KF2>,
}

impl<A, B, K, KF1, KF2> KeyedConnectedStreams<A, B, K, KF1, KF2>
where
    A: Data,
    B: Data,
    K: Key,
    KF1: Fn(&A) -> K + Clone + Send + 'static,
    KF2: Fn(&B) -> K + Clone + Send + 'static,
{
    pub fn process<O: Data, F: KeyedCoProcessFunction<K, A, B, O> + Clone + 'static>(&self, f: F) -> DataStream<O> {
        let sa = &self.a.stream;
        let graph = sa.graph.clone();
        let holder: Rc<RefCell<NodeId>> = Rc::new(RefCell::new(0));
        let h = holder.clone();
        let (kf1, kf2) = (self.a.key_fn.clone(), self.b.key_fn.clone());
        let build = Box::new(move |env: &TaskEnv, main: AnyBox, sides: SideOutputs| {
            let uid = graph.borrow().nodes[*h.borrow()].stable_id().to_string();
            let mut core = KeyedCore::<K, O>::new(&env.info, &uid, unbox::<BoxDown<O>>(main), sides.into_sides());
            let mut f = f.clone();
            let mut oc = OpenContext { state: &mut core.state, info: &env.info };
            if let Err(e) = f.open(&mut oc) {
                env.control.fail(format!("{}: open failed: {e}", env.info.operator));
            }
            core.restore(env);
            let op: Box<dyn TwoInput<A, B>> = Box::new(KeyedCoProcess { key_fn1: kf1.clone(), key_fn2: kf2.clone(), f, core, _t: PhantomData });
            Box::new(op) as AnyBox
        });
        let id = sa.add_node("co_process", NodeKind::Operator { build, run: two_input_run::<A, B>(), two_input: true }, PortType::of::<O>(), false);
        *holder.borrow_mut() = id;
        sa.connect_edge(id, 0, Ship::Hash, hash_edge(self.a.key_fn.clone()));
        self.b.stream.connect_edge(id, 1, Ship::Hash, hash_edge(self.b.key_fn.clone()));
        DataStream::new(sa.graph.clone(), id, None)
    }
}

/// Two (non-keyed) streams processed by one two-input function.
pub struct ConnectedStreams<A, B> {
    a: DataStream<A>,
    b: DataStream<B>,
}

/// Flink's `CoProcessFunction` without keyed state: one method per input.
pub trait CoProcessFunction<A, B, O>: Send {
    fn process1(&mut self, value: A, out: &mut Collector<'_, O>);
    fn process2(&mut self, value: B, out: &mut Collector<'_, O>);
}

struct CoProcess<A, B, F, O> {
    _t: PhantomData<fn(A, B)>,
    f: F,
    out: Vec<crate::record::Rec<O>>,
    next: BoxDown<O>,
}

impl<A: Data, B: Data, O: Data, F: CoProcessFunction<A, B, O>> crate::exec::Downstream<A> for CoProcess<A, B, F, O> {
    fn push(&mut self, batch: &mut Vec<crate::record::Rec<A>>) {
        for r in batch.drain(..) {
            self.f.process1(r.value, &mut Collector::new(&mut self.out, r.ts));
        }
        if !self.out.is_empty() {
            self.next.push(&mut self.out);
        }
    }
    crate::operator::forward_events!(next);
}

impl<A: Data, B: Data, O: Data, F: CoProcessFunction<A, B, O>> TwoInput<A, B> for CoProcess<A, B, F, O> {
    fn push2(&mut self, batch: &mut Vec<crate::record::Rec<B>>) {
        for r in batch.drain(..) {
            self.f.process2(r.value, &mut Collector::new(&mut self.out, r.ts));
        }
        if !self.out.is_empty() {
            self.next.push(&mut self.out);
        }
    }
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    pub fn process<O: Data, F: CoProcessFunction<A, B, O> + Clone + 'static>(&self, f: F) -> DataStream<O> {
        let build = Box::new(move |_env: &TaskEnv, main: AnyBox, _s: SideOutputs| {
            let op: Box<dyn TwoInput<A, B>> = Box::new(CoProcess { _t: PhantomData, f: f.clone(), out: Vec::new(), next: unbox::<BoxDown<O>>(main) });
            Box::new(op) as AnyBox
        });
        let id = self.a.add_node("co_process", NodeKind::Operator { build, run: two_input_run::<A, B>(), two_input: true }, PortType::of::<O>(), false);
        self.a.connect_edge(id, 0, self.a.ship, self.a.edge());
        self.b.connect_edge(id, 1, self.b.ship, self.b.edge());
        DataStream::new(self.a.graph.clone(), id, None)
    }
}

