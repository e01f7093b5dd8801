//! Which subtask reads which partition, and the checkpointed position of each.
//!
//! Partitions are the splits. Every subtask lists the topics' partitions (at open and
//! every discovery interval) and reads those it owns: partition `p` of topic `t`
//! belongs to subtask `(start(t) + p) % parallelism`, where `start(t)` is a stable
//! hash of the topic name modulo the parallelism (as Flink's
//! `KafkaTopicPartitionAssigner`: one topic's partitions spread round robin from a
//! topic-dependent start, so several topics do not all start at subtask 0). The
//! rule needs no coordination and gives every partition exactly one owner.
//!
//! A checkpoint holds, per subtask, the next offset of each partition it owns. On
//! restore every subtask gets the positions of all subtasks (`Redistribution::Union`)
//! and keeps those it owns at its (possibly new) parallelism, so a rescale moves
//! partitions with their offsets. A partition in no checkpoint (created after it) is
//! read from its earliest offset, never skipped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A topic partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tp {
    pub topic: String,
    pub partition: i32,
}

/// FNV-1a of the topic name (stable across processes and versions).
fn topic_hash(topic: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in topic.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The subtask that reads `tp` at `parallelism`.
pub fn owner(tp: &Tp, parallelism: u32) -> u32 {
    let p = parallelism.max(1) as u64;
    let start = topic_hash(&tp.topic) % p;
    ((start + tp.partition.max(0) as u64) % p) as u32
}

/// The checkpointed position of one partition: the offset of the next record to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitState {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// Encodes the positions (one entry per partition).
pub fn encode(positions: &BTreeMap<Tp, i64>) -> Result<Vec<Vec<u8>>, String> {
    positions.iter().map(|(tp, off)| serde_json::to_vec(&SplitState { topic: tp.topic.clone(), partition: tp.partition, next_offset: *off }).map_err(|e| e.to_string())).collect()
}

/// Decodes the positions of all subtasks (a partition listed twice keeps the
/// greater offset: it can only appear twice in a state written across an
/// interrupted rescale, and its reader had read up to there).
pub fn decode(splits: &[Vec<u8>]) -> Result<BTreeMap<Tp, i64>, String> {
    let mut m: BTreeMap<Tp, i64> = BTreeMap::new();
    for s in splits {
        let st: SplitState = serde_json::from_slice(s).map_err(|e| format!("bad Kafka source position in the checkpoint: {e}"))?;
        let e = m.entry(Tp { topic: st.topic, partition: st.partition }).or_insert(st.next_offset);
        *e = (*e).max(st.next_offset);
    }
    Ok(m)
}

/// The restored positions this subtask owns.
pub fn owned(all: &BTreeMap<Tp, i64>, subtask: u32, parallelism: u32) -> BTreeMap<Tp, i64> {
    all.iter().filter(|(tp, _)| owner(tp, parallelism) == subtask).map(|(tp, o)| (tp.clone(), *o)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tps(topics: &[(String, i32)]) -> Vec<Tp> {
        topics.iter().flat_map(|(t, n)| (0..*n).map(move |p| Tp { topic: t.clone(), partition: p })).collect()
    }

    #[test]
    fn stable_owners() {
        // the rule is part of the checkpoint contract: it must not change between versions
        assert_eq!(owner(&Tp { topic: "a".into(), partition: 0 }, 7), (0xaf63dc4c8601ec8cu64 % 7) as u32);
        assert_eq!(owner(&Tp { topic: "x".into(), partition: 5 }, 1), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Every partition has exactly one owner; one topic's partitions are spread
        /// evenly (owners differ by at most one partition).
        #[test]
        fn every_partition_has_one_owner_and_topics_spread_evenly(
            topics in proptest::collection::vec(("[a-z]{1,8}", 1i32..40), 1..4),
            parallelism in 1u32..12,
        ) {
            let all = tps(&topics);
            for tp in &all {
                let owners: Vec<u32> = (0..parallelism).filter(|s| owner(tp, parallelism) == *s).collect();
                prop_assert_eq!(owners.len(), 1);
            }
            let mut seen = std::collections::HashSet::new();
            for (t, n) in &topics {
                if !seen.insert(t.clone()) { continue; }
                let mut per = vec![0i32; parallelism as usize];
                for p in 0..*n {
                    per[owner(&Tp { topic: t.clone(), partition: p }, parallelism) as usize] += 1;
                }
                let (lo, hi) = (per.iter().min().copied().unwrap_or(0), per.iter().max().copied().unwrap_or(0));
                prop_assert!(hi - lo <= 1, "topic {} over {}: {:?}", t, parallelism, per);
            }
        }

        /// Positions checkpointed at P1 and restored at P2 (a rescale): every
        /// partition is read by exactly one subtask, from exactly its offset.
        #[test]
        fn a_rescale_moves_each_partition_with_its_offset(
            topics in proptest::collection::vec(("[a-z]{1,6}", 1i32..20), 1..3),
            p1 in 1u32..9, p2 in 1u32..9,
            seed in 0i64..1000,
        ) {
            let all = tps(&topics);
            let offsets: BTreeMap<Tp, i64> = all.iter().enumerate().map(|(i, tp)| (tp.clone(), seed * 7 + i as i64)).collect();
            // each subtask of the first run checkpoints what it owns
            let mut union = Vec::new();
            for s in 0..p1 {
                union.extend(encode(&owned(&offsets, s, p1)).unwrap());
            }
            let restored = decode(&union).unwrap();
            prop_assert_eq!(&restored, &offsets);
            let mut again: BTreeMap<Tp, i64> = BTreeMap::new();
            for s in 0..p2 {
                for (tp, o) in owned(&restored, s, p2) {
                    prop_assert!(again.insert(tp, o).is_none(), "a partition read twice");
                }
            }
            prop_assert_eq!(again, offsets);
        }
    }

    #[test]
    fn bad_state_is_an_error() {
        assert!(decode(&[b"{".to_vec()]).unwrap_err().contains("bad Kafka source position"));
        let a = encode(&[(Tp { topic: "t".into(), partition: 1 }, 5)].into_iter().collect()).unwrap();
        let b = encode(&[(Tp { topic: "t".into(), partition: 1 }, 9)].into_iter().collect()).unwrap();
        let m = decode(&[a, b].concat()).unwrap();
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![9]);
    }
}
