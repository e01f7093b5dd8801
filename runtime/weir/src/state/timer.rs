//! Timers of keyed operators: one per (time, key), fired in time order.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use crate::record::Timestamp;

/// A queue of timers; registering the same (time, key) twice keeps one.
pub(crate) struct TimerQueue<K> {
    by_time: BTreeMap<Timestamp, Vec<K>>,
    live: HashSet<(Timestamp, K), foldhash::fast::RandomState>,
}

impl<K: Clone + Eq + Hash> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue { by_time: BTreeMap::new(), live: HashSet::default() }
    }
}

impl<K: Clone + Eq + Hash> TimerQueue<K> {
    pub(crate) fn register(&mut self, ts: Timestamp, key: &K) {
        if self.live.insert((ts, key.clone())) {
            self.by_time.entry(ts).or_default().push(key.clone());
        }
    }

    pub(crate) fn delete(&mut self, ts: Timestamp, key: &K) {
        // removed lazily from `by_time` when its time comes
        self.live.remove(&(ts, key.clone()));
    }

    pub(crate) fn next_time(&self) -> Option<Timestamp> {
        self.by_time.keys().next().copied()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Removes and returns the timers of the earliest time `<= limit`.
    pub(crate) fn pop_due(&mut self, limit: Timestamp) -> Option<(Timestamp, Vec<K>)> {
        loop {
            let (&ts, _) = self.by_time.iter().next()?;
            if ts > limit {
                return None;
            }
            let keys = self.by_time.remove(&ts).unwrap_or_default();
            let live: Vec<K> = keys.into_iter().filter(|k| self.live.remove(&(ts, k.clone()))).collect();
            if !live.is_empty() {
                return Some((ts, live));
            }
        }
    }

    /// All live timers (for snapshots).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(Timestamp, K)> {
        self.live.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_order_once() {
        let mut q = TimerQueue::default();
        q.register(20, &"b");
        q.register(10, &"a");
        q.register(10, &"a");
        q.register(10, &"c");
        q.delete(10, &"c");
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(5), None);
        assert_eq!(q.pop_due(100), Some((10, vec!["a"])));
        assert_eq!(q.pop_due(100), Some((20, vec!["b"])));
        assert_eq!(q.pop_due(100), None);
    }
}
