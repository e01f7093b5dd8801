//! Splits of a numbered sequence (generator sources): subtask `i` of `P` starts with
//! the split `i, i+P, i+2P, …`. A split's position is its next number. On restore
//! every subtask sees the positions of all old splits ([`Redistribution::Union`]) and
//! takes its share of the remaining numbers: when there are fewer unfinished splits
//! than subtasks, each split is divided into interleaved sub-splits (`next + j·stride`
//! with stride `k·stride`), so every new subtask gets work and every number is still
//! produced exactly once.

use serde::{Deserialize, Serialize};

use super::ConnectorError;
use crate::checkpoint::restore::Redistribution;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub next: u64,
    pub stride: u64,
}

/// The splits one source subtask owns, read round robin.
#[derive(Clone, Debug, Default)]
pub struct SequenceSplits {
    splits: Vec<Split>,
    end: u64,
    turn: usize,
    subtask: u32,
    parallelism: u32,
}

impl SequenceSplits {
    /// The initial split of `subtask` of `parallelism`, ending before `end` (if any).
    pub fn initial(subtask: u32, parallelism: u32, end: Option<u64>) -> Self {
        SequenceSplits {
            splits: vec![Split { next: subtask as u64, stride: parallelism.max(1) as u64 }],
            end: end.unwrap_or(u64::MAX),
            turn: 0,
            subtask,
            parallelism: parallelism.max(1),
        }
    }

    /// The next number to produce, or `None` when every split is exhausted.
    #[inline]
    pub fn next(&mut self) -> Option<u64> {
        let n = self.splits.len();
        for _ in 0..n {
            if self.turn >= n {
                self.turn = 0;
            }
            let s = &mut self.splits[self.turn];
            if s.next < self.end {
                let v = s.next;
                s.next += s.stride;
                return Some(v);
            }
            self.turn += 1;
        }
        None
    }

    /// Produces up to `max` numbers from the split that is furthest behind (smallest
    /// next number), so that several splits restored at different positions merge in
    /// event order and none of them falls behind the watermark.
    #[inline]
    pub fn take_run(&mut self, max: u64, mut f: impl FnMut(u64)) -> u64 {
        let end = self.end;
        let Some(s) = self.splits.iter_mut().filter(|s| s.next < end).min_by_key(|s| s.next) else { return 0 };
        let mut done = 0;
        while done < max && s.next < end {
            f(s.next);
            s.next += s.stride;
            done += 1;
        }
        done
    }

    pub fn is_finished(&self) -> bool {
        self.splits.iter().all(|s| s.next >= self.end)
    }

    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.splits.iter().map(|s| postcard::to_allocvec(s).unwrap_or_default()).collect()
    }

    /// Resumes from the positions of *all* splits of the snapshotted job (every old
    /// subtask's), taking this subtask's share of the numbers still to produce.
    pub fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        let all: Vec<Split> = splits
            .iter()
            .map(|b| postcard::from_bytes(b).map_err(|e| ConnectorError::Other(format!("bad sequence split in the checkpoint: {e}"))))
            .collect::<Result<_, _>>()?;
        self.splits = divide(all, self.end, self.subtask, self.parallelism);
        self.turn = 0;
        Ok(())
    }
}

/// The share of subtask `subtask` of `parallelism` of the numbers below `end` that
/// `splits` (all of them, in a fixed order) have still to produce. Every subtask
/// computes the same division, so the shares are disjoint and cover everything.
fn divide(splits: Vec<Split>, end: u64, subtask: u32, parallelism: u32) -> Vec<Split> {
    let live: Vec<Split> = splits.into_iter().filter(|s| s.next < end && s.stride > 0).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let p = parallelism.max(1) as u64;
    let n = live.len() as u64;
    // sub-splits per split, so that there are at least as many splits as subtasks
    let k = if n >= p { 1 } else { p.div_ceil(n) };
    live.iter()
        .flat_map(|s| {
            (0..k).map(move |j| Split { next: s.next.saturating_add(j.saturating_mul(s.stride)), stride: s.stride.saturating_mul(k) })
        })
        .enumerate()
        .filter(|(i, _)| *i as u64 % p == subtask as u64)
        .map(|(_, s)| s)
        .collect()
}

/// A source of the numbers of its [`SequenceSplits`], each made into a record (with
/// its event timestamp) by `make`, optionally paced: the generators of the built-in
/// jobs. Its checkpointed position is its splits.
pub struct SequenceSource<F> {
    splits: SequenceSplits,
    pacer: Pacer,
    make: F,
}

impl<F> SequenceSource<F> {
    /// Subtask `subtask` of `parallelism`, numbers below `end` (if any), at most
    /// `rate` records per second over all subtasks (if any).
    pub fn new(subtask: u32, parallelism: u32, end: Option<u64>, rate: Option<u64>, make: F) -> Self {
        SequenceSource { splits: SequenceSplits::initial(subtask, parallelism, end), pacer: Pacer::new(rate, parallelism), make }
    }
}

impl<T, F: FnMut(u64) -> (crate::record::Timestamp, T) + Send> super::Source<T> for SequenceSource<F> {
    fn poll(&mut self, out: &mut super::SourceOutput<'_, T>) -> Result<super::SourcePoll, ConnectorError> {
        let budget = self.pacer.budget(out.remaining() as u64);
        let make = &mut self.make;
        let n = if budget == 0 {
            0
        } else {
            self.splits.take_run(budget, |n| {
                let (ts, v) = make(n);
                out.collect_at(ts, v);
            })
        };
        self.pacer.produced(n);
        Ok(if self.splits.is_finished() {
            super::SourcePoll::Finished
        } else if n == 0 {
            super::SourcePoll::Idle
        } else {
            super::SourcePoll::Ready
        })
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.splits.snapshot())
    }
    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.splits.restore(splits)
    }
    fn redistribution(&self) -> Redistribution {
        Redistribution::Union
    }
}

/// Paces a source to a wall-clock rate (`--rate`): how many records it may produce now.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// records per second for this subtask, if limited
    rate: Option<f64>,
    started: Option<(std::time::Instant, u64)>,
    produced: u64,
}

impl Pacer {
    /// `total` records per second shared by `parallelism` subtasks.
    pub fn new(total: Option<u64>, parallelism: u32) -> Self {
        Pacer { rate: total.map(|r| r as f64 / parallelism.max(1) as f64), started: None, produced: 0 }
    }

    /// How many of `max` records may be produced now (0: wait).
    #[inline]
    pub fn budget(&mut self, max: u64) -> u64 {
        let Some(rate) = self.rate else { return max };
        let (t0, n0) = *self.started.get_or_insert((std::time::Instant::now(), self.produced));
        let allowed = (t0.elapsed().as_secs_f64() * rate) as u64;
        max.min(allowed.saturating_sub(self.produced - n0))
    }

    /// Counts `n` produced records.
    #[inline]
    pub fn produced(&mut self, n: u64) {
        self.produced += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Stop at any point, redistribute the splits to any parallelism, finish:
        /// every number below `end` is produced exactly once.
        #[test]
        fn rescale_produces_every_number_once(p1 in 1u32..6, p2 in 1u32..6, end in 0u64..300, stops in prop::collection::vec(0u64..80, 6)) {
            let mut seen = vec![0u32; end as usize];
            let mut old: Vec<SequenceSplits> = (0..p1).map(|i| SequenceSplits::initial(i, p1, Some(end))).collect();
            for (i, s) in old.iter_mut().enumerate() {
                for _ in 0..stops[i] {
                    if let Some(n) = s.next() { seen[n as usize] += 1; }
                }
            }
            let all: Vec<Vec<u8>> = old.iter().flat_map(|s| s.snapshot()).collect();
            for j in 0..p2 {
                let mut s = SequenceSplits::initial(j, p2, Some(end));
                s.restore(all.clone()).unwrap();
                while s.take_run(7, |n| seen[n as usize] += 1) > 0 {}
                prop_assert!(s.is_finished());
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "{:?}", seen);
        }

        /// Rescaling twice (p1 -> p2 -> p3) with stops in between still produces
        /// every number exactly once.
        #[test]
        fn repeated_rescales_produce_every_number_once(p1 in 1u32..5, p2 in 1u32..7, p3 in 1u32..7, end in 0u64..300, stop in 0u64..40) {
            let mut seen = vec![0u32; end as usize];
            let snap = |subs: &mut Vec<SequenceSplits>, seen: &mut Vec<u32>| -> Vec<Vec<u8>> {
                for s in subs.iter_mut() {
                    s.take_run(stop, |n| seen[n as usize] += 1);
                }
                subs.iter().flat_map(|s| s.snapshot()).collect()
            };
            let mut a: Vec<SequenceSplits> = (0..p1).map(|i| SequenceSplits::initial(i, p1, Some(end))).collect();
            let sa = snap(&mut a, &mut seen);
            let mut b: Vec<SequenceSplits> = (0..p2).map(|i| { let mut s = SequenceSplits::initial(i, p2, Some(end)); s.restore(sa.clone()).unwrap(); s }).collect();
            let sb = snap(&mut b, &mut seen);
            for j in 0..p3 {
                let mut s = SequenceSplits::initial(j, p3, Some(end));
                s.restore(sb.clone()).unwrap();
                while s.take_run(5, |n| seen[n as usize] += 1) > 0 {}
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "{:?}", seen);
        }
    }

    #[test]
    fn every_new_subtask_gets_work_when_scaling_up() {
        // P=2 stopped at 100 and 101, restored at P=4: four interleaved sub-splits
        let all: Vec<Vec<u8>> = [Split { next: 100, stride: 2 }, Split { next: 101, stride: 2 }].iter().map(|s| postcard::to_allocvec(s).unwrap()).collect();
        let firsts: Vec<Vec<u64>> = (0..4)
            .map(|j| {
                let mut s = SequenceSplits::initial(j, 4, Some(1000));
                s.restore(all.clone()).unwrap();
                let mut v = Vec::new();
                s.take_run(3, |n| v.push(n));
                v
            })
            .collect();
        assert_eq!(firsts, vec![vec![100, 104, 108], vec![102, 106, 110], vec![101, 105, 109], vec![103, 107, 111]]);
        // exhausted splits are dropped: a subtask with nothing left finishes at once
        let mut s = SequenceSplits::initial(1, 2, Some(101));
        s.restore(all).unwrap();
        assert!(s.is_finished());
    }
}
