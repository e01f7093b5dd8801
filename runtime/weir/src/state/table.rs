//! Storage of keyed state: one hash map per key group, values with an expiry. On the
//! heap backend the maps hold all state; on the RocksDB backend they are a bounded
//! write-back cache in front of the database (see [`RocksPart`]).

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use super::rocksdb::{Db, RocksStateError, state_id, write_prefix};
use crate::keygroup::Key;
use crate::record::{Data, Timestamp};

pub(crate) type FastMap<K, V> = HashMap<K, V, RandomState>;

/// Entries a RocksDB-backed table caches before it writes them back and starts over
/// (`WEIR_ROCKSDB_CACHE_ENTRIES` overrides).
fn cache_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| std::env::var("WEIR_ROCKSDB_CACHE_ENTRIES").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(100_000))
}

/// A stored value and when it expires (`i64::MAX`: never).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Slot<V> {
    pub v: V,
    pub exp: Timestamp,
}

impl<V> Slot<V> {
    #[inline]
    pub(crate) fn touch(&mut self, ttl: Option<i64>, now: Timestamp) {
        if let Some(t) = ttl {
            self.exp = now.saturating_add(t);
        }
    }
}

#[inline]
fn expiry(ttl: Option<i64>, now: Timestamp) -> Timestamp {
    match ttl {
        Some(t) => now.saturating_add(t),
        None => i64::MAX,
    }
}

/// The type-erased face of a state table: what snapshots need.
pub(crate) trait AnyTable<K>: Send {
    fn name(&self) -> &str;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn len(&self) -> usize;
    /// Serializes the entries of key group `kg_off` (offset in the subtask's range).
    fn snapshot_group(&self, kg_off: usize, out: &mut Vec<u8>) -> Result<(), StateTableError>;
    /// Adds the entries serialized by `snapshot_group`.
    fn restore_group(&mut self, kg_off: usize, bytes: &[u8]) -> Result<(), StateTableError>;
    /// Adds one entry read from a RocksDB checkpoint (serialized key and `Slot`).
    fn restore_entry(&mut self, kg_off: usize, key: &[u8], slot: &[u8]) -> Result<(), StateTableError>;
    /// Moves the table onto the RocksDB database `db` (from then on, the maps are a cache).
    fn attach(&mut self, db: Arc<Db>, first_key_group: u32);
    /// Writes cached changes back to the database, and with `evict` empties the cache
    /// (RocksDB backend; no-op on the heap).
    fn flush(&mut self, evict: bool) -> Result<(), StateTableError>;
}

/// Why a state table could not be read, written or restored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateTableError {
    #[error("serialization: {0}")]
    Serde(#[from] postcard::Error),
    #[error(transparent)]
    Rocks(#[from] RocksStateError),
}

/// The RocksDB side of a table: where entries live beyond the cache.
pub(crate) struct RocksPart<K> {
    db: Arc<Db>,
    id: u32,
    first_kg: u32,
    /// Keys changed or removed since the last write-back: `(group offset, key)`.
    dirty: HashSet<(usize, K), RandomState>,
    cached: usize,
    kbuf: Vec<u8>,
    vbuf: Vec<u8>,
}

impl<K: Key> RocksPart<K> {
    fn new(db: Arc<Db>, name: &str, first_kg: u32) -> Self {
        RocksPart { db, id: state_id(name), first_kg, dirty: HashSet::default(), cached: 0, kbuf: Vec::new(), vbuf: Vec::new() }
    }

    #[inline]
    fn encode_key(&mut self, g: usize, key: &K) -> Result<(), postcard::Error> {
        let mut b = std::mem::take(&mut self.kbuf);
        b.clear();
        write_prefix(self.first_kg + g as u32, self.id, &mut b);
        self.kbuf = postcard::to_extend(key, b)?;
        Ok(())
    }

    /// Makes sure `key` is cached if the database has it; drops it if expired.
    fn load<V: Data>(&mut self, groups: &mut [FastMap<K, Slot<V>>], g: usize, key: &K, now: Timestamp) -> Result<(), StateTableError> {
        if groups[g].contains_key(key) {
            return Ok(());
        }
        if self.dirty.contains(&(g, key.clone())) {
            return Ok(()); // removed since the last write-back: the database is stale
        }
        if self.cached >= cache_limit() {
            self.write_back(groups, true)?;
        }
        self.encode_key(g, key)?;
        let Some(bytes) = self.db.get(&self.kbuf)? else { return Ok(()) };
        let slot: Slot<V> = postcard::from_bytes(&bytes)?;
        drop(bytes);
        if slot.exp <= now {
            self.dirty.insert((g, key.clone()));
        } else {
            groups[g].insert(key.clone(), slot);
            self.cached += 1;
        }
        Ok(())
    }

    #[inline]
    fn mark(&mut self, g: usize, key: &K) {
        self.dirty.insert((g, key.clone()));
    }

    /// Writes dirty entries to the database; with `evict`, empties the cache too.
    fn write_back<V: Data>(&mut self, groups: &mut [FastMap<K, Slot<V>>], evict: bool) -> Result<(), StateTableError> {
        if !self.dirty.is_empty() {
            let mut batch = rocksdb::WriteBatch::default();
            for (g, k) in std::mem::take(&mut self.dirty) {
                self.encode_key(g, &k)?;
                match groups[g].get(&k) {
                    Some(slot) => {
                        let mut v = std::mem::take(&mut self.vbuf);
                        v.clear();
                        self.vbuf = postcard::to_extend(slot, v)?;
                        batch.put(&self.kbuf, &self.vbuf);
                    }
                    None => batch.delete(&self.kbuf),
                }
            }
            self.db.write(batch)?;
        }
        if evict {
            for m in groups.iter_mut() {
                m.clear();
            }
            self.cached = 0;
        }
        Ok(())
    }
}

#[cold]
#[inline(never)]
fn db_failed(name: &str, e: StateTableError) -> ! {
    // the typed state API has no error path: fail the task, which restarts the job
    panic!("state '{name}': RocksDB state backend failed: {e}")
}

pub(crate) struct ValueTable<K, V> {
    name: String,
    pub(crate) groups: Vec<FastMap<K, Slot<V>>>,
    pub(crate) ttl: Option<i64>,
    /// `Some` on the RocksDB backend: `groups` is then a cache.
    rocks: Option<Box<RocksPart<K>>>,
}

impl<K: Key, V: Data> ValueTable<K, V> {
    pub(crate) fn new(name: &str, groups: usize, ttl: Option<i64>) -> Self {
        ValueTable { name: name.into(), groups: (0..groups).map(|_| FastMap::default()).collect(), ttl, rocks: None }
    }

    #[inline]
    fn expire(&mut self, g: usize, key: &K, now: Timestamp) -> bool {
        let map = &mut self.groups[g];
        if self.ttl.is_some() && map.get(key).is_some_and(|s| s.exp <= now) {
            map.remove(key);
            return true;
        }
        false
    }

    /// The entry of `key`, for reading (on RocksDB, not marked as changed).
    #[inline]
    pub(crate) fn get_ref(&mut self, g: usize, key: &K, now: Timestamp) -> Option<&Slot<V>> {
        if let Some(r) = self.rocks.as_deref_mut() {
            if let Err(e) = r.load(&mut self.groups, g, key, now) {
                db_failed(&self.name, e)
            }
            if self.expire(g, key, now) {
                self.rocks.as_deref_mut()?.mark(g, key);
                return None;
            }
            return self.groups[g].get(key);
        }
        self.get_mut(g, key, now).map(|s| &*s)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, g: usize, key: &K, now: Timestamp) -> Option<&mut Slot<V>> {
        if let Some(r) = self.rocks.as_deref_mut() {
            if let Err(e) = r.load(&mut self.groups, g, key, now) {
                db_failed(&self.name, e)
            }
            let expired = self.expire(g, key, now);
            let r = self.rocks.as_deref_mut()?;
            if expired {
                r.mark(g, key);
                return None;
            }
            if self.groups[g].contains_key(key) {
                r.mark(g, key);
            }
            return self.groups[g].get_mut(key);
        }
        let map = &mut self.groups[g];
        if self.ttl.is_some() && map.get(key).is_some_and(|s| s.exp <= now) {
            map.remove(key);
            return None;
        }
        map.get_mut(key)
    }

    #[inline]
    pub(crate) fn put(&mut self, g: usize, key: K, v: V, now: Timestamp) {
        if let Some(r) = self.rocks.as_deref_mut() {
            if r.cached >= cache_limit() {
                if let Err(e) = r.write_back(&mut self.groups, true) {
                    db_failed(&self.name, e)
                }
            }
            r.mark(g, &key);
            r.cached += 1;
        }
        self.groups[g].insert(key, Slot { v, exp: expiry(self.ttl, now) });
    }

    #[inline]
    pub(crate) fn take(&mut self, g: usize, key: &K, now: Timestamp) -> Option<V> {
        if let Some(r) = self.rocks.as_deref_mut() {
            if let Err(e) = r.load(&mut self.groups, g, key, now) {
                db_failed(&self.name, e)
            }
            r.mark(g, key);
        }
        let s = self.groups[g].remove(key)?;
        if s.exp <= now { None } else { Some(s.v) }
    }

    #[inline]
    pub(crate) fn remove(&mut self, g: usize, key: &K) {
        if let Some(r) = self.rocks.as_deref_mut() {
            r.mark(g, key);
        }
        self.groups[g].remove(key);
    }
}

impl<K: Key, V: Data> AnyTable<K> for ValueTable<K, V> {
    fn name(&self) -> &str {
        &self.name
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn len(&self) -> usize {
        match &self.rocks {
            None => self.groups.iter().map(|g| g.len()).sum(),
            Some(r) => {
                // entries in the database, corrected by the cache's pending changes
                let mut n = 0usize;
                for g in 0..self.groups.len() {
                    let scanned = r.db.scan_state(r.first_kg + g as u32, r.id, |k, _| {
                        if let Ok(key) = postcard::from_bytes::<K>(k) {
                            if !r.dirty.contains(&(g, key)) {
                                n += 1;
                            }
                        }
                    });
                    if let Err(e) = scanned {
                        tracing::warn!(state = %self.name, error = %e, "cannot count RocksDB state");
                    }
                }
                n + r.dirty.iter().filter(|(g, k)| self.groups[*g].contains_key(k)).count()
            }
        }
    }
    fn snapshot_group(&self, g: usize, out: &mut Vec<u8>) -> Result<(), StateTableError> {
        let Some(r) = &self.rocks else {
            let entries: Vec<(&K, &Slot<V>)> = self.groups[g].iter().collect();
            out.extend_from_slice(&postcard::to_allocvec(&entries)?);
            return Ok(());
        };
        // the canonical format is postcard's `Vec<(K, Slot<V>)>`: a varint count, then
        // each key and slot — exactly the bytes stored in the database (flushed before)
        let mut body = Vec::new();
        let mut count = 0usize;
        r.db.scan_state(r.first_kg + g as u32, r.id, |k, v| {
            body.extend_from_slice(k);
            body.extend_from_slice(v);
            count += 1;
        })
?;
        out.extend_from_slice(&postcard::to_allocvec(&count)?);
        out.extend_from_slice(&body);
        Ok(())
    }
    fn restore_group(&mut self, g: usize, bytes: &[u8]) -> Result<(), StateTableError> {
        let entries: Vec<(K, Slot<V>)> = postcard::from_bytes(bytes)?;
        match self.rocks.as_deref_mut() {
            None => self.groups[g].extend(entries),
            Some(r) => {
                let mut batch = rocksdb::WriteBatch::default();
                for (k, slot) in entries {
                    r.encode_key(g, &k)?;
                    batch.put(&r.kbuf, postcard::to_allocvec(&slot)?);
                }
                r.db.write(batch)?;
            }
        }
        Ok(())
    }
    fn restore_entry(&mut self, g: usize, key: &[u8], slot: &[u8]) -> Result<(), StateTableError> {
        let k: K = postcard::from_bytes(key)?;
        let s: Slot<V> = postcard::from_bytes(slot)?;
        match self.rocks.as_deref_mut() {
            None => {
                self.groups[g].insert(k, s);
            }
            Some(r) => {
                r.encode_key(g, &k)?;
                let mut batch = rocksdb::WriteBatch::default();
                batch.put(&r.kbuf, slot);
                r.db.write(batch)?;
            }
        }
        Ok(())
    }
    fn attach(&mut self, db: Arc<Db>, first_kg: u32) {
        match self.rocks.as_deref_mut() {
            Some(r) => r.db = db,
            None => self.rocks = Some(Box::new(RocksPart::new(db, &self.name, first_kg))),
        }
    }
    fn flush(&mut self, evict: bool) -> Result<(), StateTableError> {
        match self.rocks.as_deref_mut() {
            Some(r) => r.write_back(&mut self.groups, evict),
            None => Ok(()),
        }
    }
}

/// Map state: a map per key.
pub(crate) struct MapTable<K, UK, UV> {
    inner: ValueTable<K, FastMap<UK, UV>>,
}

impl<K: Key, UK: Key, UV: Data> MapTable<K, UK, UV> {
    pub(crate) fn new(name: &str, groups: usize, ttl: Option<i64>) -> Self {
        MapTable { inner: ValueTable::new(name, groups, ttl) }
    }
    pub(crate) fn map(&mut self, g: usize, key: &K, now: Timestamp) -> Option<&FastMap<UK, UV>> {
        self.inner.get_ref(g, key, now).map(|s| &s.v)
    }
    pub(crate) fn map_mut(&mut self, g: usize, key: &K, now: Timestamp) -> Option<&mut FastMap<UK, UV>> {
        let ttl = self.inner.ttl;
        self.inner.get_mut(g, key, now).map(|s| {
            s.touch(ttl, now);
            &mut s.v
        })
    }
    pub(crate) fn map_or_insert(&mut self, g: usize, key: &K, now: Timestamp) -> &mut FastMap<UK, UV> {
        if self.inner.get_mut(g, key, now).is_none() {
            self.inner.put(g, key.clone(), FastMap::default(), now);
        }
        self.map_mut(g, key, now).expect("inserted above")
    }
    pub(crate) fn remove(&mut self, g: usize, key: &K) {
        self.inner.remove(g, key)
    }
}

impl<K: Key, UK: Key, UV: Data> AnyTable<K> for MapTable<K, UK, UV> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn snapshot_group(&self, g: usize, out: &mut Vec<u8>) -> Result<(), StateTableError> {
        self.inner.snapshot_group(g, out)
    }
    fn restore_group(&mut self, g: usize, bytes: &[u8]) -> Result<(), StateTableError> {
        self.inner.restore_group(g, bytes)
    }
    fn restore_entry(&mut self, g: usize, key: &[u8], slot: &[u8]) -> Result<(), StateTableError> {
        self.inner.restore_entry(g, key, slot)
    }
    fn attach(&mut self, db: Arc<Db>, first_kg: u32) {
        self.inner.attach(db, first_kg)
    }
    fn flush(&mut self, evict: bool) -> Result<(), StateTableError> {
        self.inner.flush(evict)
    }
}
