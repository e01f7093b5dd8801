//! Keyed state: values, lists, maps, reducing and aggregating state, scoped to the
//! current key and stored per key group, with optional time-to-live.
//!
//! User functions register state once in `open` and get a small typed handle; the
//! handle reads and writes the state of the key being processed through the context.

pub mod snapshot;
pub(crate) mod table;
pub(crate) mod timer;

use std::marker::PhantomData;
use std::time::Duration;

use crate::error::JobError;
use crate::keygroup::{Key, KeyGroupRange};
use crate::record::{Data, Timestamp};
use table::{AnyTable, MapTable, Slot, ValueTable};

/// Name and options of a piece of keyed state.
#[derive(Clone, Debug)]
pub struct StateConfig {
    pub name: String,
    /// State not written for this long (processing time) is treated as absent and removed.
    pub ttl: Option<Duration>,
}

impl StateConfig {
    pub fn new(name: impl Into<String>) -> Self {
        StateConfig { name: name.into(), ttl: None }
    }
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl From<&str> for StateConfig {
    fn from(s: &str) -> Self {
        StateConfig::new(s)
    }
}

/// All keyed state of one operator subtask.
pub struct KeyedState<K> {
    range: KeyGroupRange,
    tables: Vec<Box<dyn AnyTable<K>>>,
}

impl<K: Key> KeyedState<K> {
    pub(crate) fn new(range: KeyGroupRange) -> Self {
        KeyedState { range, tables: Vec::new() }
    }

    pub(crate) fn range(&self) -> KeyGroupRange {
        self.range
    }

    fn register<T: AnyTable<K> + 'static>(&mut self, name: &str, make: impl FnOnce() -> T) -> Result<usize, JobError> {
        if let Some(i) = self.tables.iter().position(|t| t.name() == name) {
            if self.tables[i].as_any_mut().is::<T>() {
                return Ok(i);
            }
            return Err(JobError::State(format!("state '{name}' is registered twice with different types")));
        }
        self.tables.push(Box::new(make()));
        Ok(self.tables.len() - 1)
    }

    pub(crate) fn table<T: 'static>(&mut self, id: usize) -> &mut T {
        match self.tables[id].as_any_mut().downcast_mut::<T>() {
            Some(t) => t,
            None => panic!("internal error: state handle {id} has the wrong type"),
        }
    }

    pub(crate) fn tables(&self) -> &[Box<dyn AnyTable<K>>] {
        &self.tables
    }

    pub(crate) fn tables_mut(&mut self) -> &mut [Box<dyn AnyTable<K>>] {
        &mut self.tables
    }

    /// Number of live entries over all tables (for tests and metrics).
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registers state; given to user functions in `open`.
pub struct OpenContext<'a, K> {
    pub(crate) state: &'a mut KeyedState<K>,
    pub(crate) info: &'a crate::exec::TaskInfo,
}

fn ttl_ms(cfg: &StateConfig) -> Option<i64> {
    cfg.ttl.map(|d| d.as_millis() as i64)
}

impl<K: Key> OpenContext<'_, K> {
    /// Subtask index, parallelism and operator name of this instance.
    pub fn task(&self) -> &crate::exec::TaskInfo {
        self.info
    }
    pub fn value_state<V: Data>(&mut self, cfg: impl Into<StateConfig>) -> Result<ValueState<V>, JobError> {
        let cfg = cfg.into();
        let n = self.state.range.len();
        let id = self.state.register(&cfg.name, || ValueTable::<K, V>::new(&cfg.name, n, ttl_ms(&cfg)))?;
        Ok(ValueState { id, _v: PhantomData })
    }
    pub fn list_state<V: Data>(&mut self, cfg: impl Into<StateConfig>) -> Result<ListState<V>, JobError> {
        let cfg = cfg.into();
        let n = self.state.range.len();
        let id = self.state.register(&cfg.name, || ValueTable::<K, Vec<V>>::new(&cfg.name, n, ttl_ms(&cfg)))?;
        Ok(ListState { id, _v: PhantomData })
    }
    pub fn map_state<UK: Key, UV: Data>(&mut self, cfg: impl Into<StateConfig>) -> Result<MapState<UK, UV>, JobError> {
        let cfg = cfg.into();
        let n = self.state.range.len();
        let id = self.state.register(&cfg.name, || MapTable::<K, UK, UV>::new(&cfg.name, n, ttl_ms(&cfg)))?;
        Ok(MapState { id, _v: PhantomData })
    }
    /// State that folds every added value into one with `reduce`.
    pub fn reducing_state<V: Data>(
        &mut self,
        cfg: impl Into<StateConfig>,
        reduce: fn(V, V) -> V,
    ) -> Result<ReducingState<V>, JobError> {
        let cfg = cfg.into();
        let n = self.state.range.len();
        let id = self.state.register(&cfg.name, || ValueTable::<K, V>::new(&cfg.name, n, ttl_ms(&cfg)))?;
        Ok(ReducingState { id, reduce })
    }
    /// State that aggregates added values with an [`AggregateFunction`].
    pub fn aggregating_state<A: AggregateFunction>(
        &mut self,
        cfg: impl Into<StateConfig>,
        agg: A,
    ) -> Result<AggregatingState<A>, JobError> {
        let cfg = cfg.into();
        let n = self.state.range.len();
        let id = self.state.register(&cfg.name, || ValueTable::<K, A::Acc>::new(&cfg.name, n, ttl_ms(&cfg)))?;
        Ok(AggregatingState { id, agg })
    }
}

/// Incremental aggregation: used by aggregating state and window aggregations.
pub trait AggregateFunction: Clone + Send + 'static {
    type In;
    type Acc: Data;
    type Out;
    fn create_accumulator(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: &Self::In);
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// Merges two accumulators (needed by merging windows such as sessions).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
}

/// Access to the state of the current key, given by contexts that have a key.
pub struct StateAccess<'a, K> {
    pub(crate) state: &'a mut KeyedState<K>,
    pub(crate) key: &'a K,
    pub(crate) kg_off: usize,
    pub(crate) now: Timestamp,
}

/// Implemented by contexts with a current key (process functions, timers).
pub trait StateContext<K> {
    fn state_access(&mut self) -> StateAccess<'_, K>;
}

/// A single value per key.
#[derive(Debug)]
pub struct ValueState<V> {
    id: usize,
    _v: PhantomData<fn() -> V>,
}
impl<V> Clone for ValueState<V> {
    fn clone(&self) -> Self {
        ValueState { id: self.id, _v: PhantomData }
    }
}

fn slot_get<'a, K: Key, V: Data>(a: StateAccess<'a, K>, id: usize) -> Option<&'a mut V> {
    let now = a.now;
    let t = a.state.table::<ValueTable<K, V>>(id);
    t.get_mut(a.kg_off, a.key, now).map(|s: &mut Slot<V>| &mut s.v)
}

impl<V: Data> ValueState<V> {
    pub fn get<'c, K: Key>(&self, ctx: &'c mut impl StateContext<K>) -> Option<&'c V> {
        slot_get::<K, V>(ctx.state_access(), self.id).map(|v| &*v)
    }
    pub fn get_mut<'c, K: Key>(&self, ctx: &'c mut impl StateContext<K>) -> Option<&'c mut V> {
        slot_get::<K, V>(ctx.state_access(), self.id)
    }
    pub fn value<K: Key>(&self, ctx: &mut impl StateContext<K>) -> Option<V> {
        self.get(ctx).cloned()
    }
    pub fn update<K: Key>(&self, ctx: &mut impl StateContext<K>, value: V) {
        let a = ctx.state_access();
        let now = a.now;
        a.state.table::<ValueTable<K, V>>(self.id).put(a.kg_off, a.key.clone(), value, now);
    }
    pub fn clear<K: Key>(&self, ctx: &mut impl StateContext<K>) {
        let a = ctx.state_access();
        a.state.table::<ValueTable<K, V>>(self.id).remove(a.kg_off, a.key);
    }
}

/// A list of values per key.
#[derive(Debug)]
pub struct ListState<V> {
    id: usize,
    _v: PhantomData<fn() -> V>,
}
impl<V> Clone for ListState<V> {
    fn clone(&self) -> Self {
        ListState { id: self.id, _v: PhantomData }
    }
}

impl<V: Data> ListState<V> {
    pub fn get<'c, K: Key>(&self, ctx: &'c mut impl StateContext<K>) -> &'c [V] {
        slot_get::<K, Vec<V>>(ctx.state_access(), self.id).map(|v| v.as_slice()).unwrap_or(&[])
    }
    pub fn add<K: Key>(&self, ctx: &mut impl StateContext<K>, value: V) {
        let a = ctx.state_access();
        let now = a.now;
        let t = a.state.table::<ValueTable<K, Vec<V>>>(self.id);
        let ttl = t.ttl;
        match t.get_mut(a.kg_off, a.key, now) {
            Some(s) => {
                s.v.push(value);
                s.touch(ttl, now);
            }
            None => t.put(a.kg_off, a.key.clone(), vec![value], now),
        }
    }
    pub fn update<K: Key>(&self, ctx: &mut impl StateContext<K>, values: Vec<V>) {
        let a = ctx.state_access();
        let now = a.now;
        a.state.table::<ValueTable<K, Vec<V>>>(self.id).put(a.kg_off, a.key.clone(), values, now);
    }
    pub fn clear<K: Key>(&self, ctx: &mut impl StateContext<K>) {
        let a = ctx.state_access();
        a.state.table::<ValueTable<K, Vec<V>>>(self.id).remove(a.kg_off, a.key);
    }
}

/// A map per key.
#[derive(Debug)]
pub struct MapState<UK, UV> {
    id: usize,
    _v: PhantomData<fn() -> (UK, UV)>,
}
impl<UK, UV> Clone for MapState<UK, UV> {
    fn clone(&self) -> Self {
        MapState { id: self.id, _v: PhantomData }
    }
}

impl<UK: Key, UV: Data> MapState<UK, UV> {
    pub fn get<'c, K: Key>(&self, ctx: &'c mut impl StateContext<K>, k: &UK) -> Option<&'c UV> {
        let a = ctx.state_access();
        let now = a.now;
        a.state.table::<MapTable<K, UK, UV>>(self.id).map(a.kg_off, a.key, now).and_then(|m| m.get(k))
    }
    pub fn put<K: Key>(&self, ctx: &mut impl StateContext<K>, k: UK, v: UV) {
        let a = ctx.state_access();
        let now = a.now;
        a.state.table::<MapTable<K, UK, UV>>(self.id).map_or_insert(a.kg_off, a.key, now).insert(k, v);
    }
    pub fn remove<K: Key>(&self, ctx: &mut impl StateContext<K>, k: &UK) -> Option<UV> {
        let a = ctx.state_access();
        let now = a.now;
        let t = a.state.table::<MapTable<K, UK, UV>>(self.id);
        let m = t.map_mut(a.kg_off, a.key, now)?;
        let r = m.remove(k);
        if m.is_empty() {
            t.remove(a.kg_off, a.key);
        }
        r
    }
    pub fn contains<K: Key>(&self, ctx: &mut impl StateContext<K>, k: &UK) -> bool {
        self.get(ctx, k).is_some()
    }
    /// All entries of the current key (in no particular order).
    pub fn entries<K: Key>(&self, ctx: &mut impl StateContext<K>) -> Vec<(UK, UV)> {
        let a = ctx.state_access();
        let now = a.now;
        a.state
            .table::<MapTable<K, UK, UV>>(self.id)
            .map(a.kg_off, a.key, now)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
    pub fn clear<K: Key>(&self, ctx: &mut impl StateContext<K>) {
        let a = ctx.state_access();
        a.state.table::<MapTable<K, UK, UV>>(self.id).remove(a.kg_off, a.key);
    }
}

/// Folds added values into one.
#[derive(Debug)]
pub struct ReducingState<V> {
    id: usize,
    reduce: fn(V, V) -> V,
}
impl<V> Clone for ReducingState<V> {
    fn clone(&self) -> Self {
        ReducingState { id: self.id, reduce: self.reduce }
    }
}

impl<V: Data> ReducingState<V> {
    pub fn add<K: Key>(&self, ctx: &mut impl StateContext<K>, value: V) {
        let a = ctx.state_access();
        let now = a.now;
        let t = a.state.table::<ValueTable<K, V>>(self.id);
        let merged = match t.take(a.kg_off, a.key, now) {
            Some(old) => (self.reduce)(old, value),
            None => value,
        };
        t.put(a.kg_off, a.key.clone(), merged, now);
    }
    pub fn get<'c, K: Key>(&self, ctx: &'c mut impl StateContext<K>) -> Option<&'c V> {
        slot_get::<K, V>(ctx.state_access(), self.id).map(|v| &*v)
    }
    pub fn clear<K: Key>(&self, ctx: &mut impl StateContext<K>) {
        let a = ctx.state_access();
        a.state.table::<ValueTable<K, V>>(self.id).remove(a.kg_off, a.key);
    }
}

/// Aggregates added values with an [`AggregateFunction`].
#[derive(Debug, Clone)]
pub struct AggregatingState<A> {
    id: usize,
    agg: A,
}

impl<A: AggregateFunction> AggregatingState<A> {
    pub fn add<K: Key>(&self, ctx: &mut impl StateContext<K>, value: A::In) {
        let a = ctx.state_access();
        let now = a.now;
        let t = a.state.table::<ValueTable<K, A::Acc>>(self.id);
        let ttl = t.ttl;
        match t.get_mut(a.kg_off, a.key, now) {
            Some(s) => {
                self.agg.add(&mut s.v, &value);
                s.touch(ttl, now);
            }
            None => {
                let mut acc = self.agg.create_accumulator();
                self.agg.add(&mut acc, &value);
                t.put(a.kg_off, a.key.clone(), acc, now);
            }
        }
    }
    pub fn get<K: Key>(&self, ctx: &mut impl StateContext<K>) -> Option<A::Out> {
        let agg = self.agg.clone();
        slot_get::<K, A::Acc>(ctx.state_access(), self.id).map(|acc| agg.get_result(acc))
    }
    pub fn clear<K: Key>(&self, ctx: &mut impl StateContext<K>) {
        let a = ctx.state_access();
        a.state.table::<ValueTable<K, A::Acc>>(self.id).remove(a.kg_off, a.key);
    }
}
