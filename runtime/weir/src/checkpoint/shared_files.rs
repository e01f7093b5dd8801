//! Reference counting of the shared RocksDB files of incremental checkpoints
//! (`<prefix>/checkpoints/shared/`), as pure bookkeeping: the coordinator tells it
//! what happens (a checkpoint starts, a worker acknowledges the files it uploaded or
//! reused, a checkpoint completes or fails) and it answers which files may be deleted.
//! It does no I/O, so the rules are tested exhaustively (`tests::proptest`).
//!
//! The rules:
//! - a file is *referenced* while a retained checkpoint or an in-flight one lists it;
//!   retained = the newest `retain` completed checkpoints, plus whatever the tracker
//!   was rebuilt with (the checkpoint a job restored from stays until a newer one
//!   completes);
//! - `complete` and `fail` return exactly the files that stopped being referenced;
//! - files in the bucket that nothing references (uploads of a checkpoint that failed
//!   before its worker acknowledged them, zombie uploads of a killed worker, files
//!   left by a coordinator that died) are found by [`SharedFiles::orphans`] from a
//!   listing, but only while no checkpoint is in flight: a worker may have uploaded a
//!   file for an in-flight checkpoint without having acknowledged it yet.
//!
//! What makes this safe across workers: a worker reuses (does not upload again) only
//! the files of the last checkpoint it was told completed, and those are retained
//! until a newer checkpoint completes, which then lists them itself if it needs them.
//! Shared file names are unique per database instance and file number, so a retried
//! upload rewrites the same bytes under the same name and concurrent workers never
//! collide.

use std::collections::{BTreeMap, BTreeSet};

/// The reference set of one job's shared files.
#[derive(Clone, Debug, Default)]
pub struct SharedFiles {
    retain: usize,
    /// Completed checkpoints that are kept, with the shared files each lists.
    retained: BTreeMap<u64, BTreeSet<String>>,
    /// Checkpoints triggered and not yet completed or failed, with the files
    /// acknowledged so far.
    in_flight: BTreeMap<u64, BTreeSet<String>>,
}

impl SharedFiles {
    /// A tracker that keeps the newest `retain` (at least 1) completed checkpoints.
    pub fn new(retain: usize) -> Self {
        SharedFiles { retain: retain.max(1), ..Default::default() }
    }

    /// A tracker rebuilt after a restart from the `_metadata` of the checkpoints that
    /// exist (their ids and shared files): all of them stay retained until newer
    /// checkpoints complete.
    pub fn rebuild(retain: usize, retained: impl IntoIterator<Item = (u64, BTreeSet<String>)>) -> Self {
        SharedFiles { retain: retain.max(1), retained: retained.into_iter().collect(), in_flight: BTreeMap::new() }
    }

    /// Changes how many completed checkpoints are kept (from the next `complete`).
    pub fn set_retain(&mut self, retain: usize) {
        self.retain = retain.max(1);
    }

    /// Checkpoint `id` was triggered.
    pub fn start(&mut self, id: u64) {
        self.in_flight.entry(id).or_default();
    }

    /// A worker acknowledged `files` (uploaded or reused) for checkpoint `id`; ignored
    /// when `id` is not in flight (a late acknowledgement of a failed checkpoint).
    pub fn acked(&mut self, id: u64, files: impl IntoIterator<Item = String>) -> bool {
        match self.in_flight.get_mut(&id) {
            Some(set) => {
                set.extend(files);
                true
            }
            None => false,
        }
    }

    /// Checkpoint `id` completed (its `_metadata` is written): it is retained, the
    /// oldest retained ones beyond `retain` are released, and older checkpoints still
    /// in flight are subsumed (they can no longer complete). Returns the files no
    /// longer referenced (to delete) and the checkpoints released.
    pub fn complete(&mut self, id: u64) -> (Vec<String>, Vec<u64>) {
        let files = self.in_flight.remove(&id);
        let newer = self.in_flight.split_off(&id);
        let mut released: BTreeSet<String> = std::mem::replace(&mut self.in_flight, newer).into_values().flatten().collect();
        match files {
            Some(f) => {
                self.retained.insert(id, f);
            }
            // already retained (retention applied again): keep what it lists
            None => {
                self.retained.entry(id).or_default();
            }
        }
        let mut dropped = Vec::new();
        while self.retained.len() > self.retain {
            let Some((old, files)) = self.retained.pop_first() else { break };
            dropped.push(old);
            released.extend(files);
        }
        (self.unreferenced(released), dropped)
    }

    /// Checkpoint `id` failed or was aborted: returns its acknowledged files that
    /// nothing else references (to delete).
    pub fn fail(&mut self, id: u64) -> Vec<String> {
        let files = self.in_flight.remove(&id).unwrap_or_default();
        self.unreferenced(files)
    }

    /// Every checkpoint in flight failed (the job restarted).
    pub fn fail_all(&mut self) -> Vec<String> {
        let ids: Vec<u64> = self.in_flight.keys().copied().collect();
        ids.into_iter().flat_map(|id| self.fail(id)).collect()
    }

    /// Of the `listed` files of the shared directory, those nothing references; none
    /// while a checkpoint is in flight (its unacknowledged uploads look unreferenced).
    pub fn orphans<'a>(&self, listed: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        if !self.in_flight.is_empty() {
            return Vec::new();
        }
        listed.into_iter().filter(|f| !self.is_referenced(f)).map(String::from).collect()
    }

    /// Whether a retained or in-flight checkpoint lists `file`.
    pub fn is_referenced(&self, file: &str) -> bool {
        self.retained.values().chain(self.in_flight.values()).any(|s| s.contains(file))
    }

    /// The ids of the retained checkpoints, ascending.
    pub fn retained(&self) -> impl Iterator<Item = u64> + '_ {
        self.retained.keys().copied()
    }

    pub fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    fn unreferenced(&self, files: BTreeSet<String>) -> Vec<String> {
        files.into_iter().filter(|f| !self.is_referenced(f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(files: &[&str]) -> BTreeSet<String> {
        files.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn retention_releases_only_files_no_newer_checkpoint_lists() {
        let mut t = SharedFiles::new(2);
        for (id, files) in [(1u64, &["a", "b"][..]), (2, &["b", "c"]), (3, &["c", "d"])] {
            t.start(id);
            t.acked(id, set(files));
            let (deleted, dropped) = t.complete(id);
            match id {
                3 => {
                    assert_eq!(deleted, vec!["a".to_string()], "b is still listed by chk-2");
                    assert_eq!(dropped, vec![1]);
                }
                _ => assert!(deleted.is_empty()),
            }
        }
        t.start(4);
        t.acked(4, set(&["d", "e"]));
        assert!(t.orphans(["x"]).is_empty(), "no orphans while a checkpoint is in flight");
        assert_eq!(t.fail(4), vec!["e".to_string()], "d is listed by chk-3");
        assert!(!t.acked(4, set(&["late"])), "a late acknowledgement of a failed checkpoint is ignored");
        assert_eq!(t.orphans(["b", "c", "late", "e"]), vec!["late".to_string(), "e".to_string()]);
    }

    /// What happens, in the proptest below.
    #[derive(Clone, Debug)]
    enum Op {
        /// The coordinator triggers the next checkpoint.
        Start,
        /// Worker `w` uploads a new file for the in-flight checkpoint `c` (index among
        /// the in-flight ones) and acknowledges it unless `ack` is false (it dies or
        /// is slow).
        Upload { c: usize, w: u8, ack: bool },
        /// Worker `w` acknowledges, without uploading, files of the last checkpoint
        /// it knows completed (the file of `pick`) for in-flight checkpoint `c`.
        Reuse { c: usize, w: u8, pick: usize },
        Complete { c: usize },
        Fail { c: usize },
        /// The coordinator lists the shared directory and deletes the orphans.
        Collect,
        /// The coordinator dies and comes back: in-flight checkpoints are lost (their
        /// uploads stay in the bucket), the tracker is rebuilt from the `_metadata`
        /// of the checkpoints that exist, then the orphans are collected.
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => Just(Op::Start),
            4 => (0..3usize, 0..3u8, proptest::bool::weighted(0.8)).prop_map(|(c, w, ack)| Op::Upload { c, w, ack }),
            3 => (0..3usize, 0..3u8, 0..8usize).prop_map(|(c, w, pick)| Op::Reuse { c, w, pick }),
            2 => (0..3usize).prop_map(|c| Op::Complete { c }),
            1 => (0..3usize).prop_map(|c| Op::Fail { c }),
            1 => Just(Op::Collect),
            1 => Just(Op::Restart),
        ]
    }

    #[derive(Default)]
    struct Model {
        /// Files in the bucket.
        bucket: BTreeSet<String>,
        /// Completed checkpoints whose `_metadata` exists: id → files listed.
        complete: BTreeMap<u64, BTreeSet<String>>,
        /// In flight: id → (acknowledged, uploaded by any worker).
        in_flight: BTreeMap<u64, (BTreeSet<String>, BTreeSet<String>)>,
        /// Per worker: the files of the last checkpoint it was told completed.
        known: BTreeMap<u8, BTreeSet<String>>,
        next_id: u64,
        next_file: u64,
    }

    impl Model {
        fn delete(&mut self, files: Vec<String>, t: &SharedFiles) -> Result<(), TestCaseError> {
            // what must never be deleted: files of retained checkpoints and every
            // file an in-flight checkpoint uploaded or reused
            for f in &files {
                for id in t.retained() {
                    if let Some(listed) = self.complete.get(&id) {
                        prop_assert!(!listed.contains(f), "deleted {f}, listed by retained checkpoint {id}");
                    }
                }
                for (id, (acked, uploaded)) in &self.in_flight {
                    prop_assert!(!acked.contains(f) && !uploaded.contains(f), "deleted {f}, needed by in-flight checkpoint {id}");
                }
                self.bucket.remove(f);
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn never_deletes_a_needed_file_and_eventually_deletes_every_unreferenced_one(retain in 1usize..4, ops in proptest::collection::vec(op(), 1..80)) {
            let mut t = SharedFiles::new(retain);
            let mut m = Model { next_id: 1, ..Default::default() };
            for op in ops {
                let in_flight: Vec<u64> = m.in_flight.keys().copied().collect();
                let pick = |c: usize| in_flight.get(c % in_flight.len().max(1)).copied();
                match op {
                    Op::Start => {
                        t.start(m.next_id);
                        m.in_flight.insert(m.next_id, Default::default());
                        m.next_id += 1;
                    }
                    Op::Upload { c, w, ack } => {
                        let Some(id) = pick(c) else { continue };
                        let f = format!("w{w}-{}", m.next_file);
                        m.next_file += 1;
                        m.bucket.insert(f.clone());
                        let e = m.in_flight.get_mut(&id).expect("in flight");
                        e.1.insert(f.clone());
                        if ack {
                            prop_assert!(t.acked(id, [f.clone()]));
                            e.0.insert(f);
                        }
                    }
                    Op::Reuse { c, w, pick: p } => {
                        let Some(id) = pick(c) else { continue };
                        let Some(f) = m.known.get(&w).and_then(|k| k.iter().nth(p % k.len().max(1))).cloned() else { continue };
                        prop_assert!(m.bucket.contains(&f), "a worker reuses {f}, which was deleted");
                        prop_assert!(t.acked(id, [f.clone()]));
                        m.in_flight.get_mut(&id).expect("in flight").0.insert(f);
                    }
                    Op::Complete { c } => {
                        let Some(id) = pick(c) else { continue };
                        let (acked, _) = m.in_flight.remove(&id).expect("in flight");
                        // older checkpoints in flight are subsumed
                        m.in_flight.retain(|&k, _| k > id);
                        for f in &acked {
                            prop_assert!(m.bucket.contains(f), "checkpoint {id} completes listing deleted file {f}");
                        }
                        // workers learn which files completed (their own ones)
                        for w in 0..3u8 {
                            m.known.insert(w, acked.iter().filter(|f| f.starts_with(&format!("w{w}-"))).cloned().collect());
                        }
                        m.complete.insert(id, acked);
                        let (deleted, dropped) = t.complete(id);
                        for d in dropped {
                            m.complete.remove(&d);
                        }
                        m.delete(deleted, &t)?;
                    }
                    Op::Fail { c } => {
                        let Some(id) = pick(c) else { continue };
                        let deleted = t.fail(id);
                        m.in_flight.remove(&id);
                        m.delete(deleted, &t)?;
                    }
                    Op::Collect => {
                        let listed: Vec<String> = m.bucket.iter().cloned().collect();
                        let deleted = t.orphans(listed.iter().map(String::as_str));
                        m.delete(deleted, &t)?;
                    }
                    Op::Restart => {
                        m.in_flight.clear();
                        // every worker restarts with fresh databases: it knows nothing
                        m.known.clear();
                        t = SharedFiles::rebuild(retain, m.complete.clone());
                        let listed: Vec<String> = m.bucket.iter().cloned().collect();
                        let deleted = t.orphans(listed.iter().map(String::as_str));
                        m.delete(deleted, &t)?;
                    }
                }
            }
            // eventually: once nothing is in flight, a collection leaves exactly the
            // files of the retained checkpoints
            let mut deleted = t.fail_all();
            m.in_flight.clear();
            let listed: Vec<String> = m.bucket.iter().cloned().collect();
            deleted.extend(t.orphans(listed.iter().map(String::as_str)));
            m.delete(deleted, &t)?;
            let needed: BTreeSet<String> = t.retained().filter_map(|id| m.complete.get(&id)).flatten().cloned().collect();
            prop_assert_eq!(&m.bucket, &needed);
            prop_assert!(t.retained().count() <= retain.max(m.complete.len()));
        }
    }
}
