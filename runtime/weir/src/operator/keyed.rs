//! Keyed process functions (one and two inputs): per-key state and timers.

use super::side::Sides;
use crate::exec::input::TwoInput;
use crate::exec::{Barrier, BoxDown, Downstream, TaskInfo};
use crate::keygroup::{Key, KeyGroupRange, key_group};
use crate::record::{Collector, Data, OutputTag, Rec, Timestamp, now_ms};
use crate::state::snapshot::OperatorSnapshot;
use crate::state::timer::TimerQueue;
use crate::state::{KeyedState, OpenContext, StateAccess, StateContext};

/// Which clock a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

/// Flink's `KeyedProcessFunction`: called per record with the record's key in scope;
/// may use keyed state and register timers for the current key.
pub trait KeyedProcessFunction<K, I, O>: Send {
    /// Registers state. Called once per subtask before any record.
    fn open(&mut self, _ctx: &mut OpenContext<'_, K>) -> Result<(), crate::JobError> {
        Ok(())
    }
    fn process(&mut self, value: I, ctx: &mut KeyedContext<'_, K, O>);
    /// A timer registered for `ctx.key()` at `time` fired.
    fn on_timer(&mut self, _time: Timestamp, _domain: TimeDomain, _ctx: &mut KeyedContext<'_, K, O>) {}
    /// Called after each batch of records went through `process` and after each
    /// round of fired timers, before the outputs go downstream: a function that
    /// collects its outputs (to emit one value per batch, not one per record) emits
    /// them here. Nothing may stay collected past this call (a barrier can follow).
    fn finish_batch(&mut self, _out: &mut Collector<'_, O>) {}
}

/// A closure `|value, ctx| …` is a keyed process function without state or timers
/// of its own registration (it can still use `ctx` for timers and outputs).
impl<K, I, O, F: FnMut(I, &mut KeyedContext<'_, K, O>) + Send> KeyedProcessFunction<K, I, O> for F {
    fn process(&mut self, value: I, ctx: &mut KeyedContext<'_, K, O>) {
        self(value, ctx)
    }
}

/// Flink's `KeyedCoProcessFunction`: two inputs keyed by the same key type, sharing
/// state and timers.
pub trait KeyedCoProcessFunction<K, I1, I2, O>: Send {
    fn open(&mut self, _ctx: &mut OpenContext<'_, K>) -> Result<(), crate::JobError> {
        Ok(())
    }
    fn process1(&mut self, value: I1, ctx: &mut KeyedContext<'_, K, O>);
    fn process2(&mut self, value: I2, ctx: &mut KeyedContext<'_, K, O>);
    fn on_timer(&mut self, _time: Timestamp, _domain: TimeDomain, _ctx: &mut KeyedContext<'_, K, O>) {}
    /// As [`KeyedProcessFunction::finish_batch`].
    fn finish_batch(&mut self, _out: &mut Collector<'_, O>) {}
}

/// What the timer loops of a keyed operator hand its function: a due timer, or the
/// end of a round of timers (when the function's collected outputs are emitted).
pub(crate) enum Fired<K> {
    Timer(Timestamp, K),
    Finish,
}

/// Timers of a keyed operator.
pub(crate) struct Timers<K> {
    pub event: TimerQueue<K>,
    pub processing: TimerQueue<K>,
}

impl<K: Clone + Eq + std::hash::Hash> Default for Timers<K> {
    fn default() -> Self {
        Timers { event: TimerQueue::default(), processing: TimerQueue::default() }
    }
}

/// The context of a keyed function: the current key, time, state, timers and outputs.
pub struct KeyedContext<'a, K, O> {
    key: &'a K,
    kg_off: usize,
    ts: Timestamp,
    watermark: Timestamp,
    now: Timestamp,
    state: &'a mut KeyedState<K>,
    timers: &'a mut Timers<K>,
    out: &'a mut Vec<Rec<O>>,
    sides: &'a mut Sides,
}

impl<K: Key, O> KeyedContext<'_, K, O> {
    pub fn key(&self) -> &K {
        self.key
    }
    /// Timestamp of the current record, or the time of the firing timer.
    pub fn timestamp(&self) -> Timestamp {
        self.ts
    }
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    pub fn current_processing_time(&self) -> Timestamp {
        self.now
    }
    pub fn emit(&mut self, value: O) {
        self.out.push(Rec::new(self.ts, value));
    }
    pub fn emit_at(&mut self, ts: Timestamp, value: O) {
        self.out.push(Rec::new(ts, value));
    }
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, self.ts, value)
    }
    pub fn register_event_time_timer(&mut self, time: Timestamp) {
        self.timers.event.register(time, self.key)
    }
    pub fn delete_event_time_timer(&mut self, time: Timestamp) {
        self.timers.event.delete(time, self.key)
    }
    pub fn register_processing_time_timer(&mut self, time: Timestamp) {
        self.timers.processing.register(time, self.key)
    }
    pub fn delete_processing_time_timer(&mut self, time: Timestamp) {
        self.timers.processing.delete(time, self.key)
    }
}

impl<K: Key, O> StateContext<K> for KeyedContext<'_, K, O> {
    fn state_access(&mut self) -> StateAccess<'_, K> {
        StateAccess { state: self.state, key: self.key, kg_off: self.kg_off, now: self.now }
    }
}

/// State, timers and outputs shared by the one- and two-input keyed operators.
pub(crate) struct KeyedCore<K, O> {
    pub state: KeyedState<K>,
    pub timers: Timers<K>,
    pub range: KeyGroupRange,
    pub max_parallelism: u32,
    pub watermark: Timestamp,
    pub out: Vec<Rec<O>>,
    pub next: BoxDown<O>,
    pub sides: Sides,
    pub uid: String,
    pub subtask: u32,
    /// The state backend could not be set up (reported by `restore`, which fails the job).
    init_error: Option<String>,
}

impl<K: Key, O: Data> KeyedCore<K, O> {
    pub(crate) fn new(info: &TaskInfo, uid: &str, next: BoxDown<O>, sides: Sides) -> Self {
        let range = info.key_groups();
        let (state, init_error) = match KeyedState::with_backend(range, info.state_backend, &format!("{uid}-{}", info.subtask)) {
            Ok(s) => (s, None),
            Err(e) => (KeyedState::new(range), Some(format!("{} state backend: {e}", info.state_backend))),
        };
        KeyedCore {
            init_error,
            state,
            timers: Timers::default(),
            range,
            max_parallelism: info.max_parallelism,
            watermark: i64::MIN,
            out: Vec::new(),
            next,
            sides,
            uid: uid.to_string(),
            subtask: info.subtask,
        }
    }

    /// Restores state and timers of this subtask's key groups, if the job starts from a snapshot.
    pub(crate) fn restore(&mut self, env: &crate::exec::TaskEnv) {
        if let Some(e) = self.init_error.take() {
            env.control.fail(format!("{}: {e}", env.info.operator));
            return;
        }
        if let Some(r) = &env.restore {
            let groups = r.keyed(&self.uid, self.range);
            if let Err(e) = crate::state::snapshot::restore_keyed(&mut self.state, &mut self.timers, groups) {
                env.control.fail(format!("{}: restoring state from {}: {e}", env.info.operator, r.url));
                return;
            }
            let dbs = r.databases(&self.uid, self.range);
            if !dbs.is_empty() {
                if let Err(e) = self.state.restore_databases(&dbs) {
                    env.control.fail(format!("{}: restoring state from {}: {e}", env.info.operator, r.url));
                }
            }
        }
    }

    /// Calls `f` with a context for `key` at time `ts`.
    #[inline]
    pub(crate) fn with_key<R>(&mut self, key: &K, ts: Timestamp, now: Timestamp, f: impl FnOnce(&mut KeyedContext<'_, K, O>) -> R) -> R {
        let kg = key_group(key, self.max_parallelism);
        debug_assert!(self.range.contains(kg), "key routed to the wrong subtask");
        let mut ctx = KeyedContext {
            key,
            kg_off: self.range.offset(kg),
            ts,
            watermark: self.watermark,
            now,
            state: &mut self.state,
            timers: &mut self.timers,
            out: &mut self.out,
            sides: &mut self.sides,
        };
        f(&mut ctx)
    }

    pub(crate) fn emit_pending(&mut self) {
        if !self.out.is_empty() {
            self.next.push(&mut self.out);
        }
        if !self.sides.is_empty() {
            self.sides.push_pending();
        }
    }

    /// Runs `f` for every record of `batch` with a context for the record's key.
    #[inline]
    pub(crate) fn process_batch<I>(&mut self, batch: &mut Vec<Rec<I>>, key_fn: impl Fn(&I) -> K, mut f: impl FnMut(I, &mut KeyedContext<'_, K, O>)) {
        let now = now_ms();
        for r in batch.drain(..) {
            let key = key_fn(&r.value);
            self.with_key(&key, r.ts, now, |ctx| f(r.value, ctx));
        }
    }

    /// Lets the function emit what it collected (`finish`), then sends the outputs on.
    pub(crate) fn finish(&mut self, finish: impl FnOnce(&mut Collector<'_, O>)) {
        finish(&mut Collector::new(&mut self.out, self.watermark));
        self.emit_pending();
    }

    /// Fires event-time timers up to `wm` through `on_timer`, then forwards `wm`.
    pub(crate) fn advance_watermark(&mut self, wm: Timestamp, mut on_timer: impl FnMut(&mut Self, Fired<K>)) {
        self.watermark = wm;
        while let Some((ts, keys)) = self.timers.event.pop_due(wm) {
            for k in keys {
                on_timer(self, Fired::Timer(ts, k));
            }
            if self.out.len() >= crate::exec::BATCH_SIZE {
                self.emit_pending();
            }
        }
        on_timer(self, Fired::Finish);
        self.emit_pending();
        self.sides.watermark(wm);
        self.next.watermark(wm);
    }

    pub(crate) fn fire_processing(&mut self, now: Timestamp, mut on_timer: impl FnMut(&mut Self, Fired<K>)) {
        while let Some((ts, keys)) = self.timers.processing.pop_due(now) {
            for k in keys {
                on_timer(self, Fired::Timer(ts, k));
            }
        }
        on_timer(self, Fired::Finish);
        self.emit_pending();
        self.next.processing_time(now);
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        crate::exec::earliest(self.timers.processing.next_time(), self.next.next_deadline())
    }

    pub(crate) fn barrier(&mut self, b: &Barrier, snaps: &mut Vec<OperatorSnapshot>) {
        self.emit_pending();
        match crate::state::snapshot::snapshot_keyed(&self.uid, self.subtask, &mut self.state, &self.timers, self.max_parallelism, b) {
            Ok(s) => snaps.push(s),
            // no error path here: failing the task restarts the job from the last checkpoint
            Err(e) => panic!("{}: cannot snapshot keyed state for checkpoint {}: {e}", self.uid, b.checkpoint_id),
        }
        self.sides.barrier(b, snaps);
        self.next.barrier(b, snaps);
    }
}

pub(crate) struct KeyedProcess<K, KF, F, O> {
    pub key_fn: KF,
    pub f: F,
    pub core: KeyedCore<K, O>,
}

macro_rules! keyed_events {
    ($on_timer:expr) => {
        fn watermark(&mut self, wm: Timestamp) {
            let f = &mut self.f;
            self.core.advance_watermark(wm, |core, fired| match fired {
                Fired::Timer(ts, key) => {
                    let now = now_ms();
                    core.with_key(&key, ts, now, |ctx| $on_timer(f, ts, TimeDomain::EventTime, ctx));
                }
                Fired::Finish => f.finish_batch(&mut Collector::new(&mut core.out, wm)),
            });
        }
        fn idle(&mut self, idle: bool) {
            self.core.sides.idle(idle);
            self.core.next.idle(idle)
        }
        fn processing_time(&mut self, now: Timestamp) {
            let f = &mut self.f;
            self.core.fire_processing(now, |core, fired| match fired {
                Fired::Timer(ts, key) => core.with_key(&key, ts, now, |ctx| $on_timer(f, ts, TimeDomain::ProcessingTime, ctx)),
                Fired::Finish => f.finish_batch(&mut Collector::new(&mut core.out, now)),
            });
        }
        fn next_deadline(&self) -> Option<Timestamp> {
            self.core.next_deadline()
        }
        fn flush(&mut self) {
            self.core.emit_pending();
            self.core.sides.flush();
            self.core.next.flush()
        }
        fn barrier(&mut self, b: &Barrier, s: &mut Vec<OperatorSnapshot>) {
            self.core.barrier(b, s)
        }
        fn checkpoint_complete(&mut self, id: u64) {
            self.core.next.checkpoint_complete(id)
        }
        fn end(&mut self) {
            self.core.emit_pending();
            self.core.sides.end();
            self.core.next.end()
        }
    };
}

impl<K, I, O, KF, F> Downstream<I> for KeyedProcess<K, KF, F, O>
where
    K: Key,
    I: Data,
    O: Data,
    KF: Fn(&I) -> K + Send,
    F: KeyedProcessFunction<K, I, O>,
{
    fn push(&mut self, batch: &mut Vec<Rec<I>>) {
        let f = &mut self.f;
        self.core.process_batch(batch, &self.key_fn, |v, ctx| f.process(v, ctx));
        self.core.finish(|out| f.finish_batch(out));
    }
    keyed_events!(|f: &mut F, ts, d, ctx: &mut KeyedContext<'_, K, O>| f.on_timer(ts, d, ctx));
}

pub(crate) struct KeyedCoProcess<K, I1, I2, KF1, KF2, F, O> {
    pub key_fn1: KF1,
    pub key_fn2: KF2,
    pub f: F,
    pub core: KeyedCore<K, O>,
    pub _t: std::marker::PhantomData<fn(I1, I2)>,
}

impl<K, I1, I2, O, KF1, KF2, F> Downstream<I1> for KeyedCoProcess<K, I1, I2, KF1, KF2, F, O>
where
    K: Key,
    I1: Data,
    I2: Data,
    O: Data,
    KF1: Fn(&I1) -> K + Send,
    KF2: Fn(&I2) -> K + Send,
    F: KeyedCoProcessFunction<K, I1, I2, O>,
{
    fn push(&mut self, batch: &mut Vec<Rec<I1>>) {
        let f = &mut self.f;
        self.core.process_batch(batch, &self.key_fn1, |v, ctx| f.process1(v, ctx));
        self.core.finish(|out| f.finish_batch(out));
    }
    keyed_events!(|f: &mut F, ts, d, ctx: &mut KeyedContext<'_, K, O>| f.on_timer(ts, d, ctx));
}

impl<K, I1, I2, O, KF1, KF2, F> TwoInput<I1, I2> for KeyedCoProcess<K, I1, I2, KF1, KF2, F, O>
where
    K: Key,
    I1: Data,
    I2: Data,
    O: Data,
    KF1: Fn(&I1) -> K + Send,
    KF2: Fn(&I2) -> K + Send,
    F: KeyedCoProcessFunction<K, I1, I2, O>,
{
    fn push2(&mut self, batch: &mut Vec<Rec<I2>>) {
        let f = &mut self.f;
        self.core.process_batch(batch, &self.key_fn2, |v, ctx| f.process2(v, ctx));
        self.core.finish(|out| f.finish_batch(out));
    }
}
