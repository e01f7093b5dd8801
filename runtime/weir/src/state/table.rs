//! Heap storage of keyed state: one hash map per key group, values with an expiry.

use std::any::Any;
use std::collections::HashMap;

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use crate::keygroup::Key;
use crate::record::{Data, Timestamp};

pub(crate) type FastMap<K, V> = HashMap<K, V, RandomState>;

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
    fn snapshot_group(&self, kg_off: usize, out: &mut Vec<u8>) -> Result<(), postcard::Error>;
    /// Adds the entries serialized by `snapshot_group`.
    fn restore_group(&mut self, kg_off: usize, bytes: &[u8]) -> Result<(), postcard::Error>;
}

pub(crate) struct ValueTable<K, V> {
    name: String,
    pub(crate) groups: Vec<FastMap<K, Slot<V>>>,
    pub(crate) ttl: Option<i64>,
}

impl<K: Key, V: Data> ValueTable<K, V> {
    pub(crate) fn new(name: &str, groups: usize, ttl: Option<i64>) -> Self {
        ValueTable { name: name.into(), groups: (0..groups).map(|_| FastMap::default()).collect(), ttl }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, g: usize, key: &K, now: Timestamp) -> Option<&mut Slot<V>> {
        let map = &mut self.groups[g];
        if self.ttl.is_some() && map.get(key).is_some_and(|s| s.exp <= now) {
            map.remove(key);
            return None;
        }
        map.get_mut(key)
    }

    #[inline]
    pub(crate) fn put(&mut self, g: usize, key: K, v: V, now: Timestamp) {
        self.groups[g].insert(key, Slot { v, exp: expiry(self.ttl, now) });
    }

    #[inline]
    pub(crate) fn take(&mut self, g: usize, key: &K, now: Timestamp) -> Option<V> {
        let s = self.groups[g].remove(key)?;
        if s.exp <= now { None } else { Some(s.v) }
    }

    #[inline]
    pub(crate) fn remove(&mut self, g: usize, key: &K) {
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
        self.groups.iter().map(|g| g.len()).sum()
    }
    fn snapshot_group(&self, g: usize, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        let entries: Vec<(&K, &Slot<V>)> = self.groups[g].iter().collect();
        out.extend_from_slice(&postcard::to_allocvec(&entries)?);
        Ok(())
    }
    fn restore_group(&mut self, g: usize, bytes: &[u8]) -> Result<(), postcard::Error> {
        let entries: Vec<(K, Slot<V>)> = postcard::from_bytes(bytes)?;
        self.groups[g].extend(entries);
        Ok(())
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
        self.inner.get_mut(g, key, now).map(|s| &s.v)
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
    fn snapshot_group(&self, g: usize, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        self.inner.snapshot_group(g, out)
    }
    fn restore_group(&mut self, g: usize, bytes: &[u8]) -> Result<(), postcard::Error> {
        self.inner.restore_group(g, bytes)
    }
}
