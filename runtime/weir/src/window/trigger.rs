//! Triggers: when a window's result is emitted (fired) and when its contents are purged.

use super::Window;
use crate::record::Timestamp;

/// What a trigger decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    Continue,
    Fire,
    Purge,
    FireAndPurge,
}

impl TriggerResult {
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerOp {
    RegisterEvent(Timestamp),
    DeleteEvent(Timestamp),
    RegisterProcessing(Timestamp),
    DeleteProcessing(Timestamp),
}

/// What a trigger can see and do for one (key, window).
pub struct TriggerContext<'a> {
    pub(crate) watermark: Timestamp,
    pub(crate) now: Timestamp,
    pub(crate) fresh: bool,
    pub(crate) state: &'a mut u64,
    pub(crate) ops: &'a mut Vec<TimerOp>,
}

impl TriggerContext<'_> {
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    pub fn current_processing_time(&self) -> Timestamp {
        self.now
    }
    /// Whether this is the first record of the window (its state was just created).
    pub fn is_new_window(&self) -> bool {
        self.fresh
    }
    /// A per-(key, window) number the trigger may use (e.g. a count); merged by sum.
    pub fn state(&mut self) -> &mut u64 {
        self.state
    }
    pub fn register_event_time_timer(&mut self, t: Timestamp) {
        self.ops.push(TimerOp::RegisterEvent(t))
    }
    pub fn delete_event_time_timer(&mut self, t: Timestamp) {
        self.ops.push(TimerOp::DeleteEvent(t))
    }
    pub fn register_processing_time_timer(&mut self, t: Timestamp) {
        self.ops.push(TimerOp::RegisterProcessing(t))
    }
    pub fn delete_processing_time_timer(&mut self, t: Timestamp) {
        self.ops.push(TimerOp::DeleteProcessing(t))
    }
}

/// Decides when windows fire (Flink's `Trigger`).
pub trait Trigger<T, W: Window>: Clone + Send + 'static {
    fn on_element(&mut self, value: &T, ts: Timestamp, window: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult;
    fn on_event_time(&mut self, time: Timestamp, window: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult;
    fn on_processing_time(&mut self, time: Timestamp, window: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult;
    /// Called on the merged window after windows merged (state already summed).
    fn on_merge(&mut self, _window: &W, _ctx: &mut TriggerContext<'_>) {}
    /// The window is being removed: delete timers this trigger registered.
    fn clear(&mut self, _window: &W, _ctx: &mut TriggerContext<'_>) {}
}

/// Fires when the watermark passes the end of the window; and again for every late
/// record within the allowed lateness.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventTimeTrigger;

impl<T, W: Window> Trigger<T, W> for EventTimeTrigger {
    fn on_element(&mut self, _v: &T, _ts: Timestamp, w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if w.max_timestamp() <= ctx.watermark {
            TriggerResult::Fire
        } else {
            if ctx.fresh {
                ctx.register_event_time_timer(w.max_timestamp());
            }
            TriggerResult::Continue
        }
    }
    fn on_event_time(&mut self, time: Timestamp, w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if time == w.max_timestamp() { TriggerResult::Fire } else { TriggerResult::Continue }
    }
    fn on_processing_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_merge(&mut self, w: &W, ctx: &mut TriggerContext<'_>) {
        if w.max_timestamp() > ctx.watermark {
            ctx.register_event_time_timer(w.max_timestamp());
        }
    }
    fn clear(&mut self, w: &W, ctx: &mut TriggerContext<'_>) {
        ctx.delete_event_time_timer(w.max_timestamp());
    }
}

/// Fires when processing time passes the end of the window.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessingTimeTrigger;

impl<T, W: Window> Trigger<T, W> for ProcessingTimeTrigger {
    fn on_element(&mut self, _v: &T, _ts: Timestamp, w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if ctx.fresh {
            ctx.register_processing_time_timer(w.max_timestamp());
        }
        TriggerResult::Continue
    }
    fn on_event_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Fire
    }
    fn clear(&mut self, w: &W, ctx: &mut TriggerContext<'_>) {
        ctx.delete_processing_time_timer(w.max_timestamp());
    }
}

/// Fires every `n` records (the count restarts after each firing).
#[derive(Clone, Copy, Debug)]
pub struct CountTrigger {
    n: u64,
}

impl CountTrigger {
    pub fn of(n: u64) -> Self {
        assert!(n > 0, "count must be positive");
        CountTrigger { n }
    }
}

impl<T, W: Window> Trigger<T, W> for CountTrigger {
    fn on_element(&mut self, _v: &T, _ts: Timestamp, _w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        *ctx.state += 1;
        if *ctx.state >= self.n {
            *ctx.state = 0;
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }
    fn on_event_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_merge(&mut self, _w: &W, ctx: &mut TriggerContext<'_>) {
        if *ctx.state >= self.n {
            *ctx.state = 0;
        }
    }
}

/// Fires periodically in event time (every `interval`) and at the end of the window.
#[derive(Clone, Copy, Debug)]
pub struct ContinuousEventTimeTrigger {
    interval: i64,
}

impl ContinuousEventTimeTrigger {
    pub fn of(interval: std::time::Duration) -> Self {
        let interval = interval.as_millis() as i64;
        assert!(interval > 0, "interval must be positive");
        ContinuousEventTimeTrigger { interval }
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousEventTimeTrigger {
    fn on_element(&mut self, _v: &T, ts: Timestamp, w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if w.max_timestamp() <= ctx.watermark {
            return TriggerResult::Fire;
        }
        if ctx.fresh {
            ctx.register_event_time_timer(w.max_timestamp());
        }
        if *ctx.state == 0 {
            let next = ts - ts.rem_euclid(self.interval) + self.interval;
            *ctx.state = next as u64;
            ctx.register_event_time_timer(next);
        }
        TriggerResult::Continue
    }
    fn on_event_time(&mut self, time: Timestamp, w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if time == w.max_timestamp() {
            return TriggerResult::Fire;
        }
        if *ctx.state != 0 && *ctx.state as i64 == time {
            let next = time + self.interval;
            *ctx.state = next as u64;
            ctx.register_event_time_timer(next);
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }
    fn on_processing_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn clear(&mut self, w: &W, ctx: &mut TriggerContext<'_>) {
        ctx.delete_event_time_timer(w.max_timestamp());
        if *ctx.state != 0 {
            let t = *ctx.state as i64;
            ctx.delete_event_time_timer(t);
        }
    }
}

/// Never fires (the default of [`GlobalWindows`](super::GlobalWindows)).
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverTrigger;

impl<T, W: Window> Trigger<T, W> for NeverTrigger {
    fn on_element(&mut self, _v: &T, _ts: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_event_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(&mut self, _t: Timestamp, _w: &W, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
}

/// Turns every firing of the inner trigger into fire-and-purge.
#[derive(Clone, Copy, Debug)]
pub struct PurgingTrigger<Tr>(pub Tr);

impl<T, W: Window, Tr: Trigger<T, W>> Trigger<T, W> for PurgingTrigger<Tr> {
    fn on_element(&mut self, v: &T, ts: Timestamp, w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purge(self.0.on_element(v, ts, w, ctx))
    }
    fn on_event_time(&mut self, t: Timestamp, w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purge(self.0.on_event_time(t, w, ctx))
    }
    fn on_processing_time(&mut self, t: Timestamp, w: &W, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purge(self.0.on_processing_time(t, w, ctx))
    }
    fn on_merge(&mut self, w: &W, ctx: &mut TriggerContext<'_>) {
        self.0.on_merge(w, ctx)
    }
    fn clear(&mut self, w: &W, ctx: &mut TriggerContext<'_>) {
        self.0.clear(w, ctx)
    }
}

fn purge(r: TriggerResult) -> TriggerResult {
    if r.is_fire() { TriggerResult::FireAndPurge } else { r }
}
