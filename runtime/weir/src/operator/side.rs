//! Side outputs of an operator: extra typed outputs selected by tag.

use std::any::Any;

use crate::exec::{Barrier, BoxDown};
use crate::graph::SideOutputs;
use crate::record::{Data, OutputTag, Rec, Timestamp};
use crate::state::snapshot::OperatorSnapshot;

trait Port: Send {
    fn as_any(&mut self) -> &mut dyn Any;
    fn push_pending(&mut self);
    fn watermark(&mut self, wm: Timestamp);
    fn idle(&mut self, idle: bool);
    fn flush(&mut self);
    fn barrier(&mut self, b: &Barrier, s: &mut Vec<OperatorSnapshot>);
    fn end(&mut self);
}

struct TypedPort<T> {
    buf: Vec<Rec<T>>,
    down: BoxDown<T>,
}

impl<T: Data> Port for TypedPort<T> {
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
    fn push_pending(&mut self) {
        if !self.buf.is_empty() {
            self.down.push(&mut self.buf);
        }
    }
    fn watermark(&mut self, wm: Timestamp) {
        self.push_pending();
        self.down.watermark(wm)
    }
    fn idle(&mut self, idle: bool) {
        self.down.idle(idle)
    }
    fn flush(&mut self) {
        self.push_pending();
        self.down.flush()
    }
    fn barrier(&mut self, b: &Barrier, s: &mut Vec<OperatorSnapshot>) {
        self.push_pending();
        self.down.barrier(b, s)
    }
    fn end(&mut self) {
        self.push_pending();
        self.down.end()
    }
}

/// The side outputs an operator instance writes to.
#[derive(Default)]
pub struct Sides {
    ports: Vec<(String, Box<dyn Port>)>,
}

impl Sides {
    /// Binds the side output `tag` of type `T` from the planner's downstreams.
    pub(crate) fn bind<T: Data>(&mut self, outs: &mut SideOutputs, tag: &str) {
        let down = outs.take::<T>(tag);
        self.ports.push((tag.to_string(), Box::new(TypedPort { buf: Vec::new(), down })));
    }

    /// Emits `value` to side output `tag`.
    pub fn emit<T: Data>(&mut self, tag: &OutputTag<T>, ts: Timestamp, value: T) {
        for (name, port) in &mut self.ports {
            if *name == tag.id {
                if let Some(p) = port.as_any().downcast_mut::<TypedPort<T>>() {
                    p.buf.push(Rec::new(ts, value));
                    return;
                }
            }
        }
        // no consumer declared for this tag: dropped, like Flink
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
    pub(crate) fn push_pending(&mut self) {
        self.ports.iter_mut().for_each(|(_, p)| p.push_pending());
    }
    pub(crate) fn watermark(&mut self, wm: Timestamp) {
        self.ports.iter_mut().for_each(|(_, p)| p.watermark(wm));
    }
    pub(crate) fn idle(&mut self, idle: bool) {
        self.ports.iter_mut().for_each(|(_, p)| p.idle(idle));
    }
    pub(crate) fn flush(&mut self) {
        self.ports.iter_mut().for_each(|(_, p)| p.flush());
    }
    pub(crate) fn barrier(&mut self, b: &Barrier, s: &mut Vec<OperatorSnapshot>) {
        self.ports.iter_mut().for_each(|(_, p)| p.barrier(b, s));
    }
    pub(crate) fn end(&mut self) {
        self.ports.iter_mut().for_each(|(_, p)| p.end());
    }
}
