//! Splits of a numbered sequence (generator sources): subtask `i` of `P` starts with
//! the split `i, i+P, i+2P, …`. A split's position is its next number, so on restore
//! with another parallelism the splits are handed out again and every number is
//! still produced exactly once.

use serde::{Deserialize, Serialize};

use super::ConnectorError;

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
}

impl SequenceSplits {
    /// The initial split of `subtask` of `parallelism`, ending before `end` (if any).
    pub fn initial(subtask: u32, parallelism: u32, end: Option<u64>) -> Self {
        SequenceSplits { splits: vec![Split { next: subtask as u64, stride: parallelism as u64 }], end: end.unwrap_or(u64::MAX), turn: 0 }
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

    pub fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.splits = splits
            .iter()
            .map(|b| postcard::from_bytes(b).map_err(|e| ConnectorError::Other(format!("bad sequence split in the checkpoint: {e}"))))
            .collect::<Result<_, _>>()?;
        self.turn = 0;
        Ok(())
    }
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
                let mine: Vec<Vec<u8>> = all.iter().enumerate().filter(|(k, _)| *k as u32 % p2 == j).map(|(_, b)| b.clone()).collect();
                let mut s = SequenceSplits::initial(j, p2, Some(end));
                s.restore(mine).unwrap();
                while s.take_run(7, |n| seen[n as usize] += 1) > 0 {}
                prop_assert!(s.is_finished());
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "{:?}", seen);
        }
    }
}
