//! Shards as splits: which subtask reads a shard, where it is, and when it may start.
//!
//! - **Assignment** is by lineage: a shard without a (known) parent is its own
//!   *root*, a child inherits its parent's root (a merge child: its `ParentShardId`'s),
//!   and subtask `root % parallelism` reads every shard of the lineage, where `root` is
//!   the number of the root shard's id (`shardId-000000000003` → 3; another id is
//!   hashed). So the children of a split are read by the subtask that read their
//!   parent, after it: a key's records are read in order across a resharding. Every
//!   subtask computes the same owners from the same listing, and each shard's root is
//!   checkpointed with it, so owners never change while a job runs, also once a
//!   parent expires from the listing.
//! - **Positions** are checkpointed per shard ([`Position`]): the last sequence number
//!   read (a restore continues `AFTER_SEQUENCE_NUMBER`), not yet read (the initial
//!   position), or finished (a closed shard read to its end: never read again).
//! - **Rescale**: the source's splits are redistributed as a union (every subtask gets
//!   every shard's entry) and each keeps the shards whose root it owns at the new
//!   parallelism; the roots of the others still tell it the lineage of new children.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::client::ShardInfo;

/// Where a shard is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    /// not read yet: from the oldest record kept
    TrimHorizon,
    /// not read yet: from the records arriving after `since` (ms since the epoch: when
    /// the job first listed the shard; a restore resumes `AT_TIMESTAMP` there)
    Latest { since: i64 },
    /// not read yet: from the records arriving at or after this time (ms)
    AtTimestamp(i64),
    /// read through this sequence number
    After(String),
    /// closed and read to its end (the last sequence number read, if any)
    Finished { last: Option<String> },
}

/// The checkpointed entry of one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub shard: String,
    /// the number of its lineage's root shard: the subtask `root % parallelism` reads it
    pub root: u64,
    /// its parents (a split: one; a merge: two), which are read before it
    pub parents: Vec<String>,
    pub pos: Position,
}

impl ShardEntry {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn decode(b: &[u8]) -> Result<ShardEntry, String> {
        serde_json::from_slice(b).map_err(|e| format!("bad kinesis shard position in the checkpoint: {e}"))
    }
    pub fn finished(&self) -> bool {
        matches!(self.pos, Position::Finished { .. })
    }
}

/// The number of a shard id (`shardId-000000000012` → 12); other ids are hashed (FNV-1a).
pub fn shard_number(id: &str) -> u64 {
    if let Some(n) = id.strip_prefix("shardId-").and_then(|d| d.parse::<u64>().ok()) {
        return n;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Compares two sequence numbers (decimal strings of up to 128 bits and more).
pub fn compare_sequence(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The lineage roots of every shard seen, and which of them this subtask reads.
#[derive(Debug, Default)]
pub struct Lineage {
    roots: HashMap<String, u64>,
}

impl Lineage {
    /// Remembers a restored shard's root.
    pub fn remember(&mut self, shard: &str, root: u64) {
        self.roots.insert(shard.to_string(), root);
    }

    pub fn root(&self, shard: &str) -> Option<u64> {
        self.roots.get(shard).copied()
    }

    /// The root of every shard of `listed` (computed once per shard, then kept).
    pub fn update(&mut self, listed: &[ShardInfo]) {
        let by_id: HashMap<&str, &ShardInfo> = listed.iter().map(|s| (s.id.as_str(), s)).collect();
        for s in listed {
            self.root_of(&s.id, &by_id, 0);
        }
    }

    fn root_of(&mut self, id: &str, by_id: &HashMap<&str, &ShardInfo>, depth: u32) -> u64 {
        if let Some(r) = self.roots.get(id) {
            return *r;
        }
        let parent = by_id.get(id).and_then(|s| s.parent.as_deref());
        let r = match parent {
            // a parent known (listed, or remembered from a checkpoint) gives its root
            Some(p) if depth < 10_000 && (self.roots.contains_key(p) || by_id.contains_key(p)) => self.root_of(p, by_id, depth + 1),
            _ => shard_number(id),
        };
        self.roots.insert(id.to_string(), r);
        r
    }
}

/// The subtask that reads a lineage.
pub fn owner(root: u64, parallelism: u32) -> u32 {
    (root % u64::from(parallelism.max(1))) as u32
}

/// Whether the shard of `entry` may be read now: each parent is finished (if this
/// subtask reads it), or is closed or gone from the listing (if another one does).
pub fn may_start(entry: &ShardEntry, entries: &BTreeMap<String, ShardEntry>, listed: &HashMap<String, ShardInfo>, lineage: &Lineage, subtask: u32, parallelism: u32) -> bool {
    entry.parents.iter().all(|p| match entries.get(p) {
        Some(e) => e.finished(),
        None => match lineage.root(p) {
            Some(r) if owner(r, parallelism) == subtask => !listed.contains_key(p),
            _ => listed.get(p).is_none_or(|s| s.ending.is_some()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shard(n: u64, parent: Option<u64>, closed: bool) -> ShardInfo {
        ShardInfo { id: format!("shardId-{n:012}"), parent: parent.map(|p| format!("shardId-{p:012}")), adjacent_parent: None, ending: closed.then(|| "99".to_string()) }
    }

    #[test]
    fn numbers_and_sequences() {
        assert_eq!(shard_number("shardId-000000000012"), 12);
        assert_eq!(shard_number("x"), shard_number("x"));
        assert_ne!(shard_number("x"), shard_number("y"));
        assert_eq!(compare_sequence("49590338271490256608559692538361571095921575989136588898", "49590338271490256608559692538361571095921575989136588899"), Ordering::Less);
        assert_eq!(compare_sequence("10", "9"), Ordering::Greater);
        assert_eq!(compare_sequence("0", ""), Ordering::Equal);
        assert_eq!(compare_sequence("007", "7"), Ordering::Equal);
    }

    #[test]
    fn children_follow_their_parents_and_roots_survive_expiry() {
        let mut l = Lineage::default();
        // 0 and 1; 0 split into 2 and 3; 3 split into 4 and 5
        l.update(&[shard(0, None, true), shard(1, None, false), shard(2, Some(0), false), shard(3, Some(0), true), shard(4, Some(3), false), shard(5, Some(3), false)]);
        for (s, root) in [(0, 0), (1, 1), (2, 0), (3, 0), (4, 0), (5, 0)] {
            assert_eq!(l.root(&format!("shardId-{s:012}")), Some(root), "shard {s}");
        }
        // 0 and 3 expired; a checkpointed root is kept for a job restored later
        let mut r = Lineage::default();
        r.remember("shardId-000000000004", 0);
        r.update(&[shard(1, None, false), shard(2, Some(0), false), shard(4, Some(3), false), shard(6, Some(4), false)]);
        assert_eq!(r.root("shardId-000000000006"), Some(0), "the child of a remembered shard");
        assert_eq!(r.root("shardId-000000000002"), Some(2), "a child whose parent is gone is its own root");
    }

    #[test]
    fn a_child_starts_once_its_parents_are_finished() {
        let mut l = Lineage::default();
        let listed_v = [shard(0, None, true), shard(1, Some(0), false)];
        l.update(&listed_v);
        let listed: HashMap<String, ShardInfo> = listed_v.iter().map(|s| (s.id.clone(), s.clone())).collect();
        let mut entries = BTreeMap::new();
        let parent = ShardEntry { shard: "shardId-000000000000".into(), root: 0, parents: vec![], pos: Position::After("5".into()) };
        let child = ShardEntry { shard: "shardId-000000000001".into(), root: 0, parents: vec!["shardId-000000000000".into()], pos: Position::TrimHorizon };
        entries.insert(parent.shard.clone(), parent.clone());
        assert!(!may_start(&child, &entries, &listed, &l, 0, 1));
        entries.insert(parent.shard.clone(), ShardEntry { pos: Position::Finished { last: Some("5".into()) }, ..parent });
        assert!(may_start(&child, &entries, &listed, &l, 0, 1));
        // a merge child whose adjacent parent another subtask reads: once it is closed
        let adj = ShardInfo { id: "shardId-000000000007".into(), parent: None, adjacent_parent: None, ending: None };
        let mut listed2 = listed.clone();
        listed2.insert(adj.id.clone(), adj.clone());
        l.update(&[adj.clone()]);
        let merged = ShardEntry { shard: "shardId-000000000008".into(), root: 0, parents: vec!["shardId-000000000000".into(), adj.id.clone()], pos: Position::TrimHorizon };
        assert!(!may_start(&merged, &entries, &listed2, &l, 0, 2), "7 is open");
        listed2.insert(adj.id.clone(), ShardInfo { ending: Some("3".into()), ..adj });
        assert!(may_start(&merged, &entries, &listed2, &l, 0, 2), "7 is closed");
    }

    #[test]
    fn entries_round_trip() {
        for pos in [Position::TrimHorizon, Position::Latest { since: 5 }, Position::AtTimestamp(7), Position::After("123".into()), Position::Finished { last: None }] {
            let e = ShardEntry { shard: "shardId-000000000001".into(), root: 1, parents: vec!["shardId-000000000000".into()], pos };
            assert_eq!(ShardEntry::decode(&e.encode()).unwrap(), e);
        }
        assert!(ShardEntry::decode(b"nonsense").unwrap_err().contains("bad kinesis shard position"));
    }

    proptest! {
        /// Every shard of any resharding history has exactly one owner, the owner of
        /// its parent (so a lineage is read by one subtask), whatever the parallelism.
        #[test]
        fn lineages_have_one_owner(splits in proptest::collection::vec(0usize..64, 0..40), initial in 1u64..6, p in 1u32..7) {
            let mut shards: Vec<ShardInfo> = (0..initial).map(|n| shard(n, None, false)).collect();
            for s in splits {
                let open: Vec<usize> = (0..shards.len()).filter(|i| shards[*i].ending.is_none()).collect();
                let i = open[s % open.len()];
                shards[i].ending = Some("1".into());
                let parent = shard_number(&shards[i].id);
                let next = shards.len() as u64;
                shards.push(shard(next, Some(parent), false));
                shards.push(shard(next + 1, Some(parent), false));
            }
            let mut l = Lineage::default();
            l.update(&shards);
            for s in &shards {
                let r = l.root(&s.id).unwrap();
                prop_assert!(r < initial);
                if let Some(parent) = &s.parent {
                    prop_assert_eq!(owner(l.root(parent).unwrap(), p), owner(r, p));
                }
                // the same from a listing in another order
                let mut rev = shards.clone();
                rev.reverse();
                let mut l2 = Lineage::default();
                l2.update(&rev);
                prop_assert_eq!(l2.root(&s.id), Some(r));
            }
        }
    }
}
