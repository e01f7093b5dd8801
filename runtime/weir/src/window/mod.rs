//! Windows over keyed streams: assigners (tumbling, sliding, session, global), triggers,
//! window functions, and the window operator with allowed lateness and late side output.

mod assigner;
pub(crate) mod operator;
mod trigger;

pub use assigner::{
    EventTimeSessionWindows, GlobalWindows, SlidingEventTimeWindows, TumblingEventTimeWindows,
    TumblingProcessingTimeWindows, WindowAssigner,
};
pub use trigger::{
    ContinuousEventTimeTrigger, CountTrigger, EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, PurgingTrigger,
    Trigger, TriggerContext, TriggerResult,
};

use serde::{Deserialize, Serialize};

use crate::record::{Collector, Data, Timestamp};
use crate::state::AggregateFunction;

/// A window: a group of records that is evaluated together.
pub trait Window: Data + Eq + std::hash::Hash + std::fmt::Debug {
    /// The largest timestamp that belongs to the window.
    fn max_timestamp(&self) -> Timestamp;
}

/// A time interval `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl TimeWindow {
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        TimeWindow { start, end }
    }
    /// Whether the two windows overlap or touch (and so merge as sessions).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl Window for TimeWindow {
    fn max_timestamp(&self) -> Timestamp {
        self.end - 1
    }
}

/// The single window of [`GlobalWindows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GlobalWindow;

impl Window for GlobalWindow {
    fn max_timestamp(&self) -> Timestamp {
        Timestamp::MAX
    }
}

/// What the window operator does with the records of a window: accumulate, then emit.
pub trait WindowFunction<K, W, I, O>: Clone + Send + 'static {
    type Acc: Data;
    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: &I);
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    fn emit(&mut self, key: &K, window: &W, acc: &Self::Acc, out: &mut Collector<'_, O>);
}

/// Incremental aggregation, then a function of key, window and result.
#[derive(Clone)]
pub struct AggregateWindow<A, F> {
    pub(crate) agg: A,
    pub(crate) f: F,
}

impl<K, W, I, O, A, F> WindowFunction<K, W, I, O> for AggregateWindow<A, F>
where
    A: AggregateFunction<In = I>,
    F: FnMut(&K, &W, A::Out, &mut Collector<'_, O>) + Clone + Send + 'static,
{
    type Acc = A::Acc;
    fn create(&self) -> A::Acc {
        self.agg.create_accumulator()
    }
    #[inline]
    fn add(&self, acc: &mut A::Acc, value: &I) {
        self.agg.add(acc, value)
    }
    fn merge(&self, acc: &mut A::Acc, other: A::Acc) {
        self.agg.merge(acc, other)
    }
    fn emit(&mut self, key: &K, window: &W, acc: &A::Acc, out: &mut Collector<'_, O>) {
        let r = self.agg.get_result(acc);
        (self.f)(key, window, r, out)
    }
}

/// Keeps every record of the window, then a function over all of them.
#[derive(Clone)]
pub struct ProcessWindow<F> {
    pub(crate) f: F,
}

impl<K, W, I, O, F> WindowFunction<K, W, I, O> for ProcessWindow<F>
where
    I: Data,
    F: FnMut(&K, &W, &[I], &mut Collector<'_, O>) + Clone + Send + 'static,
{
    type Acc = Vec<I>;
    fn create(&self) -> Vec<I> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<I>, value: &I) {
        acc.push(value.clone())
    }
    fn merge(&self, acc: &mut Vec<I>, other: Vec<I>) {
        acc.extend(other)
    }
    fn emit(&mut self, key: &K, window: &W, acc: &Vec<I>, out: &mut Collector<'_, O>) {
        (self.f)(key, window, acc, out)
    }
}

/// Counts records.
#[derive(Debug)]
pub struct Count<T>(std::marker::PhantomData<fn(&T)>);

impl<T> Clone for Count<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Count<T> {}
impl<T> Default for Count<T> {
    fn default() -> Self {
        Count(std::marker::PhantomData)
    }
}

impl<T> Count<T> {
    pub fn new() -> Self {
        Count(std::marker::PhantomData)
    }
}

impl<T: 'static> AggregateFunction for Count<T> {
    type In = T;
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _value: &T) {
        *acc += 1
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other
    }
}

/// Folds records with a binary function (window `reduce`).
#[derive(Clone)]
pub struct Reduce<T, F> {
    pub(crate) f: F,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T, F> Reduce<T, F> {
    pub fn new(f: F) -> Self {
        Reduce { f, _t: std::marker::PhantomData }
    }
}

impl<T: Data, F: Fn(&T, &T) -> T + Clone + Send + 'static> AggregateFunction for Reduce<T, F> {
    type In = T;
    type Acc = Option<T>;
    type Out = T;
    fn create_accumulator(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.f)(&a, value),
            None => value.clone(),
        });
    }
    fn get_result(&self, acc: &Option<T>) -> T {
        acc.clone().expect("a window that fires holds at least one record")
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add(acc, &o)
        }
    }
}
