//! The logical job graph built by the stream API: nodes (sources, operators, sinks)
//! and edges (how records are shipped between them). Types are erased here and
//! recovered by the typed factories each node and edge carries.

use std::any::Any;
use std::collections::HashMap;

use crossbeam_channel::bounded;

use crate::exec::output::combine;
use crate::operator::side::Sides;
use crate::exchange::net::NetBuilder;
use crate::exchange::{InChannel, OutChannel, Placement, stream_id};
use crate::exec::{BoxDown, CHANNEL_CAPACITY, TaskEnv};
use crate::record::Data;

pub(crate) type AnyBox = Box<dyn Any + Send>;
pub(crate) type NodeId = usize;

/// Downcasts an erased value whose type the graph guarantees by construction.
pub(crate) fn unbox<T: 'static>(b: AnyBox) -> T {
    match b.downcast::<T>() {
        Ok(t) => *t,
        Err(_) => panic!("internal error: job graph type mismatch for {}", std::any::type_name::<T>()),
    }
}

/// How records travel along an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ship {
    /// Subtask i to subtask i (same parallelism); chained when possible.
    Forward,
    /// By key group of the record's key.
    Hash,
    /// Round robin.
    Rebalance,
    /// Every record to every subtask.
    Broadcast,
}

/// The erased side outputs of an operator instance, by tag.
pub struct SideOutputs {
    pub(crate) outs: HashMap<String, AnyBox>,
    pub(crate) binders: Vec<(String, BindFn)>,
}

pub(crate) type BindFn = fn(&mut Sides, &mut SideOutputs, &str);

impl SideOutputs {
    /// Binds every consumed side output to the typed [`Sides`] of an operator.
    pub(crate) fn into_sides(mut self) -> Sides {
        let mut sides = Sides::default();
        for (tag, bind) in std::mem::take(&mut self.binders) {
            bind(&mut sides, &mut self, &tag);
        }
        sides
    }

    /// The downstream for side output `tag` (discarding if nobody consumes it).
    pub(crate) fn take<T: Data>(&mut self, tag: &str) -> BoxDown<T> {
        match self.outs.remove(tag) {
            Some(b) => unbox::<BoxDown<T>>(b),
            None => Box::new(crate::exec::output::Discard),
        }
    }
}

pub(crate) type Runnable = Box<dyn FnOnce() + Send>;
pub(crate) type BuildFn = Box<dyn Fn(&TaskEnv, AnyBox, SideOutputs) -> AnyBox>;
pub(crate) type SourceRunFn = Box<dyn Fn(TaskEnv, AnyBox) -> Runnable>;
pub(crate) type InputRunFn = Box<dyn Fn(TaskEnv, AnyBox, Vec<AnyBox>, Vec<AnyBox>) -> Runnable>;

pub(crate) enum NodeKind {
    /// `run(env, downstream)` → the task body.
    Source { run: SourceRunFn },
    /// `build(env, main downstream, side downstreams)` → this operator's input side
    /// (`BoxDown<In>`, or a `Box<dyn TwoInput<A, B>>` for two-input operators);
    /// `run(env, head, receivers of input 1, receivers of input 2)` → the task body
    /// when this operator heads a task.
    Operator { build: BuildFn, run: InputRunFn, two_input: bool },
}

/// The type of an output port, to combine its downstreams.
#[derive(Clone, Copy)]
pub(crate) struct PortType {
    pub combine: fn(Vec<AnyBox>) -> AnyBox,
    pub bind: BindFn,
}

fn combine_any<T: Data>(outs: Vec<AnyBox>) -> AnyBox {
    Box::new(combine::<T>(outs.into_iter().map(unbox::<BoxDown<T>>).collect()))
}

impl PortType {
    pub(crate) fn of<T: Data>() -> Self {
        PortType { combine: combine_any::<T>, bind: Sides::bind::<T> }
    }
}

pub(crate) struct Node {
    pub name: String,
    pub uid: Option<String>,
    pub parallelism: Option<u32>,
    pub kind: NodeKind,
    pub main: PortType,
    pub sides: HashMap<String, PortType>,
    pub is_sink: bool,
    pub chainable: bool,
}

impl Node {
    pub(crate) fn is_source(&self) -> bool {
        matches!(self.kind, NodeKind::Source { .. })
    }
    pub(crate) fn two_input(&self) -> bool {
        matches!(self.kind, NodeKind::Operator { two_input: true, .. })
    }
    /// The operator's stable id: its uid, or its name.
    pub(crate) fn stable_id(&self) -> &str {
        self.uid.as_deref().unwrap_or(&self.name)
    }
}

/// Makes the channels of an edge and the sending side for a producer subtask.
pub(crate) trait EdgeFactory {
    /// The channels of edge number `edge` between `producers × consumers` subtasks (or
    /// one-to-one when `one_to_one`), for the subtasks this process runs: per producer
    /// its senders (an erased `Vec<OutChannel<T>>`, one per consumer), per consumer its
    /// receivers (an erased `Vec<InChannel<T>>`); `None` for subtasks run elsewhere.
    /// Without `net` every subtask is local.
    fn channels(&self, edge: usize, producers: u32, consumers: u32, one_to_one: bool, net: Option<&mut NetBuilder>) -> (Vec<Option<AnyBox>>, Vec<Option<AnyBox>>);
    /// The downstream that routes a producer's output into its senders.
    fn output(&self, senders: AnyBox, env: &TaskEnv, consumers: u32) -> AnyBox;
}

type MakeOut<T> = Box<dyn Fn(Vec<OutChannel<T>>, &TaskEnv, u32) -> BoxDown<T>>;

pub(crate) struct TypedEdge<T> {
    pub make_out: MakeOut<T>,
}

impl<T: Data> EdgeFactory for TypedEdge<T> {
    fn channels(&self, edge: usize, producers: u32, consumers: u32, one_to_one: bool, mut net: Option<&mut NetBuilder>) -> (Vec<Option<AnyBox>>, Vec<Option<AnyBox>>) {
        let place = net.as_ref().map(|n| n.placement).unwrap_or(Placement::EMBEDDED);
        let mut senders: Vec<Option<Vec<OutChannel<T>>>> = (0..producers).map(|a| place.is_local(a).then(Vec::new)).collect();
        let mut receivers: Vec<Option<Vec<InChannel<T>>>> = (0..consumers).map(|b| place.is_local(b).then(Vec::new)).collect();
        let pairs: Vec<(u32, u32)> = if one_to_one {
            (0..producers).map(|i| (i, i)).collect()
        } else {
            (0..producers).flat_map(|a| (0..consumers).map(move |b| (a, b))).collect()
        };
        for (a, b) in pairs {
            let (la, lb) = (place.is_local(a), place.is_local(b));
            if la && lb {
                let (tx, rx) = bounded(CHANNEL_CAPACITY);
                if let Some(s) = &mut senders[a as usize] {
                    s.push(OutChannel::Local(tx));
                }
                if let Some(r) = &mut receivers[b as usize] {
                    r.push(InChannel::local(rx));
                }
            } else if let Some(net) = net.as_deref_mut() {
                let stream = stream_id(edge, a, b);
                if la {
                    let out = net.remote_out(stream, place.worker_of(b));
                    if let Some(s) = &mut senders[a as usize] {
                        s.push(OutChannel::Remote(out));
                    }
                } else if lb {
                    let inc = net.remote_in::<T>(stream, place.worker_of(a));
                    if let Some(r) = &mut receivers[b as usize] {
                        r.push(inc);
                    }
                }
            }
        }
        (
            senders.into_iter().map(|s| s.map(|s| Box::new(s) as AnyBox)).collect(),
            receivers.into_iter().map(|r| r.map(|r| Box::new(r) as AnyBox)).collect(),
        )
    }

    fn output(&self, senders: AnyBox, env: &TaskEnv, consumers: u32) -> AnyBox {
        let s = unbox::<Vec<OutChannel<T>>>(senders);
        Box::new((self.make_out)(s, env, consumers))
    }
}

pub(crate) struct Edge {
    pub from: NodeId,
    /// `None` = main output, `Some(tag)` = side output.
    pub port: Option<String>,
    pub to: NodeId,
    /// Input 0 or 1 of the target (two-input operators).
    pub input: u8,
    pub ship: Ship,
    pub factory: Box<dyn EdgeFactory>,
}

#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Graph {
    pub(crate) fn add_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}
