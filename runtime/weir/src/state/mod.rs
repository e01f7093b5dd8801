//! Keyed state: values, lists, maps, reducing and aggregating state, scoped to the
//! current key and stored per key group, with optional time-to-live.
//!
//! User functions register state once in `open` and get a small typed handle; the
//! handle reads and writes the state of the key being processed through the context.

pub mod rocksdb;
pub mod snapshot;
pub(crate) mod table;
pub(crate) mod timer;

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::JobError;
use crate::keygroup::{Key, KeyGroupRange};
use crate::record::{Data, Timestamp};
use self::rocksdb::{Db, DbCheckpoint, RocksStateError};
use crate::checkpoint::restore::RestoredDb;
use table::{AnyTable, MapTable, Slot, StateTableError, ValueTable};

/// Where keyed state lives while a job runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// Hash maps on the heap: fastest; state must fit in memory; full checkpoints.
    #[default]
    Memory,
    /// One RocksDB database per operator subtask on local disk, with a cache of hot
    /// entries: state larger than memory; incremental checkpoints.
    #[serde(rename = "rocksdb")]
    RocksDb,
}

impl std::str::FromStr for StateBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "memory" | "heap" | "hashmap" => Ok(StateBackend::Memory),
            "rocksdb" | "rocks" => Ok(StateBackend::RocksDb),
            _ => Err(format!("unknown state backend '{s}' (use memory or rocksdb)")),
        }
    }
}

impl std::fmt::Display for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateBackend::Memory => "memory",
            StateBackend::RocksDb => "rocksdb",
        })
    }
}

/// Why keyed state could not be snapshotted or restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state '{name}': {source}")]
    Table { name: String, #[source] source: Box<dyn std::error::Error + Send + Sync> },
    #[error(transparent)]
    Rocks(#[from] RocksStateError),
}

fn table_err(name: &str, e: StateTableError) -> StateError {
    StateError::Table { name: name.to_string(), source: Box::new(e) }
}

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
    /// The subtask's database on the RocksDB backend.
    db: Option<Arc<Db>>,
    /// Names the database's directory (operator uid and subtask).
    tag: String,
}

impl<K: Key> KeyedState<K> {
    /// Heap state for `range`.
    pub(crate) fn new(range: KeyGroupRange) -> Self {
        KeyedState { range, tables: Vec::new(), db: None, tag: String::new() }
    }

    /// State for `range` on `backend`; `tag` names the local database (uid, subtask).
    pub(crate) fn with_backend(range: KeyGroupRange, backend: StateBackend, tag: &str) -> Result<Self, StateError> {
        let mut s = Self::new(range);
        s.tag = tag.to_string();
        if backend == StateBackend::RocksDb {
            s.db = Some(Db::create(tag, range)?);
        }
        Ok(s)
    }

    pub(crate) fn range(&self) -> KeyGroupRange {
        self.range
    }

    /// The backend this state lives on.
    pub fn backend(&self) -> StateBackend {
        if self.db.is_some() { StateBackend::RocksDb } else { StateBackend::Memory }
    }

    fn register<T: AnyTable<K> + 'static>(&mut self, name: &str, make: impl FnOnce() -> T) -> Result<usize, JobError> {
        if let Some(i) = self.tables.iter().position(|t| t.name() == name) {
            if self.tables[i].as_any_mut().is::<T>() {
                return Ok(i);
            }
            return Err(JobError::State(format!("state '{name}' is registered twice with different types")));
        }
        let id = rocksdb::state_id(name);
        if let Some(other) = self.tables.iter().find(|t| rocksdb::state_id(t.name()) == id) {
            return Err(JobError::State(format!("state names '{name}' and '{}' have the same id; rename one", other.name())));
        }
        let mut t = make();
        if let Some(db) = &self.db {
            t.attach(db.clone(), self.range.start);
        }
        self.tables.push(Box::new(t));
        Ok(self.tables.len() - 1)
    }

    /// Writes every table's cached changes to the database (RocksDB; no-op on the heap).
    pub(crate) fn flush(&mut self) -> Result<(), StateError> {
        self.write_back(false)
    }

    /// Writes cached changes back and empties the caches (RocksDB; no-op on the heap).
    pub(crate) fn write_back(&mut self, evict: bool) -> Result<(), StateError> {
        for t in &mut self.tables {
            t.flush(evict).map_err(|e| table_err(t.name(), e))?;
        }
        Ok(())
    }

    /// Serializes the entries of every table in key group offset `off`, canonically.
    pub(crate) fn snapshot_group(&self, off: usize) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let mut out = Vec::with_capacity(self.tables.len());
        for t in &self.tables {
            let mut bytes = Vec::new();
            t.snapshot_group(off, &mut bytes).map_err(|e| table_err(t.name(), e))?;
            out.push((t.name().to_string(), bytes));
        }
        Ok(out)
    }

    /// RocksDB backend: flushes and makes a local database checkpoint for an
    /// incremental checkpoint; `None` on the heap backend.
    pub(crate) fn checkpoint_db(&mut self, checkpoint_id: u64) -> Result<Option<DbCheckpoint>, StateError> {
        self.flush()?;
        match &self.db {
            Some(db) => Ok(Some(db.checkpoint(checkpoint_id, self.range)?)),
            _ => Ok(None),
        }
    }

    /// Restores the key groups of this subtask from downloaded database checkpoints.
    ///
    /// On RocksDB no key is read from the checkpoint that overlaps most: it is opened
    /// directly (its files hard-linked) and clipped to this subtask's key groups with
    /// range deletes; the key groups owned from other checkpoints (a scale-down) are
    /// read into SST files in parallel and ingested. On the heap the owned key groups
    /// are range-scanned out of each checkpoint.
    pub(crate) fn restore_databases(&mut self, dbs: &[RestoredDb<'_>]) -> Result<(), StateError> {
        let range = self.range;
        let overlap = |r: &KeyGroupRange| (r.end.min(range.end) + 1).saturating_sub(r.start.max(range.start));
        let dbs: Vec<&RestoredDb<'_>> = dbs.iter().filter(|d| overlap(&d.range) > 0).collect();
        let ids: Vec<u32> = self.tables.iter().map(|t| rocksdb::state_id(t.name())).collect();
        if self.db.is_some() {
            let Some(base) = (0..dbs.len()).max_by_key(|&i| overlap(&dbs[i].range)) else { return Ok(()) };
            let db = Db::from_checkpoint(&self.tag, range, dbs[base].dir, dbs[base].stored)?;
            if dbs[base].range != range {
                db.clip(range)?;
            }
            let rest: Vec<(KeyGroupRange, &Path)> = dbs.iter().enumerate().filter(|(i, _)| *i != base).map(|(_, d)| (d.range, d.dir)).collect();
            if !rest.is_empty() {
                db.ingest_from(&rest, range, &|id| ids.contains(&id))?;
            }
            for t in &mut self.tables {
                t.attach(db.clone(), range.start);
            }
            self.db = Some(db);
            return Ok(());
        }
        for RestoredDb { range: r, dir, .. } in dbs {
            let mut failed: Option<StateError> = None;
            let tables = &mut self.tables;
            rocksdb::scan_checkpoint(dir, r.start.max(range.start), r.end.min(range.end), |k, v| {
                let Some((kg, id, key)) = rocksdb::split_key(k) else {
                    return Err(RocksStateError::Corrupt { path: dir.to_path_buf(), what: "a key without prefix".into() });
                };
                let Some(i) = ids.iter().position(|&x| x == id) else {
                    return Err(RocksStateError::UnknownState(id));
                };
                if let Err(e) = tables[i].restore_entry(range.offset(kg), key, v) {
                    failed = Some(table_err(tables[i].name(), e));
                }
                Ok(())
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) fn table<T: 'static>(&mut self, id: usize) -> &mut T {
        match self.tables[id].as_any_mut().downcast_mut::<T>() {
            Some(t) => t,
            None => panic!("internal error: state handle {id} has the wrong type"),
        }
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

fn slot_ref<'a, K: Key, V: Data>(a: StateAccess<'a, K>, id: usize) -> Option<&'a V> {
    let now = a.now;
    let t = a.state.table::<ValueTable<K, V>>(id);
    t.get_ref(a.kg_off, a.key, now).map(|s: &Slot<V>| &s.v)
}

impl<V: Data> ValueState<V> {
    pub fn get<'c, K: Key>(&self, ctx: &'c mut impl StateContext<K>) -> Option<&'c V> {
        slot_ref::<K, V>(ctx.state_access(), self.id)
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
        slot_ref::<K, Vec<V>>(ctx.state_access(), self.id).map(|v| v.as_slice()).unwrap_or(&[])
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
        slot_ref::<K, V>(ctx.state_access(), self.id)
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
        slot_ref::<K, A::Acc>(ctx.state_access(), self.id).map(|acc| agg.get_result(acc))
    }
    pub fn clear<K: Key>(&self, ctx: &mut impl StateContext<K>) {
        let a = ctx.state_access();
        a.state.table::<ValueTable<K, A::Acc>>(self.id).remove(a.kg_off, a.key);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::keygroup::key_group;
    use crate::operator::keyed::Timers;

    const M: u32 = 32;

    /// A context with a current key, for driving the typed state API directly.
    struct Ctx<'a> {
        state: &'a mut KeyedState<u64>,
        key: u64,
        now: Timestamp,
    }

    impl StateContext<u64> for Ctx<'_> {
        fn state_access(&mut self) -> StateAccess<'_, u64> {
            let off = self.state.range().offset(key_group(&self.key, M));
            StateAccess { state: &mut *self.state, key: &self.key, kg_off: off, now: self.now }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u64, i64),
        Add(u64, i64),
        Clear(u64),
        MapPut(u64, u8, i64),
        MapRemove(u64, u8),
        Evict,
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u64..200;
        prop_oneof![
            (k.clone(), any::<i64>()).prop_map(|(k, v)| Op::Put(k, v)),
            (k.clone(), -100i64..100).prop_map(|(k, v)| Op::Add(k, v)),
            k.clone().prop_map(Op::Clear),
            (k.clone(), 0u8..8, any::<i64>()).prop_map(|(k, u, v)| Op::MapPut(k, u, v)),
            (k, 0u8..8).prop_map(|(k, u)| Op::MapRemove(k, u)),
            Just(Op::Evict),
        ]
    }

    struct Handles {
        v: ValueState<i64>,
        l: ListState<i64>,
        m: MapState<u8, i64>,
    }

    /// The task of a test operator whose state lives on `backend`.
    fn test_info(backend: StateBackend) -> crate::exec::TaskInfo {
        crate::exec::TaskInfo {
            job_name: "t".into(),
            operator: "op".into(),
            uid: "op".into(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: M,
            state_backend: backend,
        }
    }

    fn open(state: &mut KeyedState<u64>) -> Handles {
        let info = test_info(state.backend());
        let mut oc = OpenContext { state, info: &info };
        Handles { v: oc.value_state("v").unwrap(), l: oc.list_state("l").unwrap(), m: oc.map_state("m").unwrap() }
    }

    /// Reference model: per key, (value, list, map).
    type Model = BTreeMap<u64, (Option<i64>, Vec<i64>, BTreeMap<u8, i64>)>;

    fn apply(state: &mut KeyedState<u64>, h: &Handles, model: &mut Model, op: &Op) {
        let key = match op {
            Op::Put(k, _) | Op::Add(k, _) | Op::Clear(k) | Op::MapPut(k, _, _) | Op::MapRemove(k, _) => *k,
            Op::Evict => {
                state.write_back(true).unwrap();
                return;
            }
        };
        let mut c = Ctx { state, key, now: 0 };
        let e = model.entry(key).or_default();
        match op {
            Op::Put(_, v) => {
                h.v.update(&mut c, *v);
                e.0 = Some(*v);
            }
            Op::Add(_, v) => {
                h.l.add(&mut c, *v);
                e.1.push(*v);
                if let Some(x) = h.v.get_mut(&mut c) {
                    *x = x.wrapping_add(*v);
                    e.0 = Some(e.0.unwrap_or(0).wrapping_add(*v));
                }
            }
            Op::Clear(_) => {
                h.v.clear(&mut c);
                h.l.clear(&mut c);
                h.m.clear(&mut c);
                *e = Default::default();
            }
            Op::MapPut(_, u, v) => {
                h.m.put(&mut c, *u, *v);
                e.2.insert(*u, *v);
            }
            Op::MapRemove(_, u) => {
                assert_eq!(h.m.remove(&mut c, u), e.2.remove(u));
            }
            Op::Evict => {}
        }
    }

    fn read(state: &mut KeyedState<u64>, h: &Handles, key: u64) -> (Option<i64>, Vec<i64>, BTreeMap<u8, i64>) {
        let mut c = Ctx { state, key, now: 0 };
        (h.v.value(&mut c), h.l.get(&mut c).to_vec(), h.m.entries(&mut c).into_iter().collect())
    }

    fn backend(rocks: bool) -> StateBackend {
        if rocks { StateBackend::RocksDb } else { StateBackend::Memory }
    }

    fn barrier(id: u64, savepoint: bool) -> crate::exec::Barrier {
        crate::exec::Barrier { checkpoint_id: id, timestamp: 0, savepoint, stop: false, target: false }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random operations on one backend in one or two subtasks, a snapshot of each
        /// (canonical savepoint or RocksDB checkpoint), restored into two subtasks
        /// splitting the key groups elsewhere, on either backend (a rescale: RocksDB
        /// clips one database and ingests the other's owned key groups), read back
        /// equal to the reference model.
        #[test]
        fn snapshot_restore_round_trip(
            ops in proptest::collection::vec(op(), 1..400),
            from_rocks in any::<bool>(),
            to_rocks in any::<bool>(),
            savepoint in any::<bool>(),
            src_split in 0u32..M,
            split in 1u32..M,
        ) {
            let src_ranges = if src_split == 0 { vec![KeyGroupRange::new(0, M - 1)] } else { vec![KeyGroupRange::new(0, src_split - 1), KeyGroupRange::new(src_split, M - 1)] };
            let mut srcs = Vec::new();
            for (i, r) in src_ranges.iter().enumerate() {
                let mut st = KeyedState::<u64>::with_backend(*r, backend(from_rocks), &format!("prop-src-{i}")).unwrap();
                let h = open(&mut st);
                srcs.push((st, h));
            }
            let mut model = Model::new();
            for op in &ops {
                let key = match op {
                    Op::Put(k, _) | Op::Add(k, _) | Op::Clear(k) | Op::MapPut(k, _, _) | Op::MapRemove(k, _) => Some(*k),
                    Op::Evict => None,
                };
                for (i, (st, h)) in srcs.iter_mut().enumerate() {
                    if key.is_none_or(|k| src_ranges[i].contains(key_group(&k, M))) {
                        apply(st, h, &mut model, op);
                    }
                }
            }
            let timers = Timers::default();
            let mut snaps = Vec::new();
            for (st, _) in srcs.iter_mut() {
                snaps.push(snapshot::snapshot_keyed("op", 0, st, &timers, M, &barrier(1, savepoint)).unwrap());
            }
            for snap in &snaps {
                prop_assert_eq!(snap.database.is_some(), from_rocks && !savepoint);
            }
            // restore into two subtasks splitting the key groups at `split`
            for range in [KeyGroupRange::new(0, split - 1), KeyGroupRange::new(split, M - 1)] {
                let mut dst = KeyedState::<u64>::with_backend(range, backend(to_rocks), "prop-dst").unwrap();
                let h2 = open(&mut dst);
                let mut t2 = Timers::default();
                let groups: Vec<(u32, &[u8])> = snaps.iter().flat_map(|s| s.keyed.iter()).filter(|(kg, _)| range.contains(*kg)).map(|(kg, b)| (*kg, b.as_slice())).collect();
                snapshot::restore_keyed(&mut dst, &mut t2, groups).unwrap();
                let dbs: Vec<RestoredDb<'_>> = snaps.iter().filter_map(|s| s.database.as_ref()).map(|db| RestoredDb { range: db.key_groups(), dir: db.local_dir.as_path(), stored: &[] }).collect();
                if !dbs.is_empty() {
                    dst.restore_databases(&dbs).unwrap();
                }
                for (k, want) in &model {
                    if !range.contains(key_group(k, M)) {
                        continue;
                    }
                    let got = read(&mut dst, &h2, *k);
                    prop_assert_eq!(&got, want, "key {}", k);
                }
                // nothing from other key groups leaked in
                let live = model.iter().filter(|(k, e)| range.contains(key_group(*k, M)) && (e.0.is_some() || !e.1.is_empty() || !e.2.is_empty()));
                let want_len: usize = live.map(|(_, e)| e.0.is_some() as usize + !e.1.is_empty() as usize + !e.2.is_empty() as usize).sum();
                dst.flush().unwrap();
                prop_assert_eq!(dst.len(), want_len);
            }
            for snap in &snaps {
                if let Some(db) = &snap.database {
                    let _ = std::fs::remove_dir_all(&db.local_dir);
                }
            }
        }
    }

    #[test]
    fn ttl_is_honored_on_rocksdb_after_eviction() {
        let all = KeyGroupRange::new(0, M - 1);
        let mut s = KeyedState::<u64>::with_backend(all, StateBackend::RocksDb, "ttl").unwrap();
        let info = test_info(StateBackend::RocksDb);
        let v: ValueState<u32> = OpenContext { state: &mut s, info: &info }.value_state(StateConfig::new("v").ttl(Duration::from_millis(10))).unwrap();
        v.update(&mut Ctx { state: &mut s, key: 1, now: 100 }, 7);
        // drop the cache: the value now comes from the database
        s.write_back(true).unwrap();
        assert_eq!(v.value(&mut Ctx { state: &mut s, key: 1, now: 105 }), Some(7));
        assert_eq!(v.value(&mut Ctx { state: &mut s, key: 1, now: 111 }), None);
        s.flush().unwrap();
        assert_eq!(s.len(), 0, "the expired entry is removed from the database");
    }
}
