//! Built-in operators. Each is a [`Downstream`](crate::exec::Downstream) of its input
//! type that owns the downstream of its output type: chaining is composition.

pub(crate) mod basic;
pub(crate) mod keyed;
pub(crate) mod side;

/// Forwards the non-data events of `Downstream` to `self.$next` (and side outputs).
macro_rules! forward_events {
    ($next:ident) => {
        fn watermark(&mut self, wm: crate::record::Timestamp) {
            self.$next.watermark(wm)
        }
        fn idle(&mut self, idle: bool) {
            self.$next.idle(idle)
        }
        fn processing_time(&mut self, now: crate::record::Timestamp) {
            self.$next.processing_time(now)
        }
        fn next_deadline(&self) -> Option<crate::record::Timestamp> {
            self.$next.next_deadline()
        }
        fn flush(&mut self) {
            self.$next.flush()
        }
        fn barrier(&mut self, b: &crate::exec::Barrier, s: &mut Vec<crate::state::snapshot::OperatorSnapshot>) {
            self.$next.barrier(b, s)
        }
        fn checkpoint_complete(&mut self, id: u64) {
            self.$next.checkpoint_complete(id)
        }
        fn end(&mut self) {
            self.$next.end()
        }
    };
}
pub(crate) use forward_events;
