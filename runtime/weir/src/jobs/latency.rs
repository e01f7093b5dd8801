//! A latency probe: sources stamp each record with the wall clock when it is made, a
//! rebalance sends it to another subtask (across processes in a cluster), and there its
//! end-to-end latency is measured; every 100th latency is written out. With `--rate`
//! below the maximum throughput it shows the latency distribution under that load
//! (`scripts/bench-cluster.sh` turns the output into percentiles).

use serde::{Deserialize, Serialize};

use super::{BuiltinJob, JobParams};
use crate::connector::sequence::{Pacer, SequenceSplits};
use crate::connector::{ConnectorError, Source, SourceOutput, SourcePoll};
use crate::error::JobError;
use crate::stream::StreamEnv;
use crate::time::WatermarkStrategy;

/// One measured latency.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencySample {
    pub seq: u64,
    pub latency_us: i64,
}

fn wall_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Numbered records stamped with their creation time, optionally rate-limited.
pub struct StampedSource {
    splits: SequenceSplits,
    pacer: Pacer,
}

impl Source<(u64, i64)> for StampedSource {
    fn poll(&mut self, out: &mut SourceOutput<'_, (u64, i64)>) -> Result<SourcePoll, ConnectorError> {
        let budget = self.pacer.budget(out.remaining() as u64);
        if budget == 0 {
            return Ok(if self.splits.is_finished() { SourcePoll::Finished } else { SourcePoll::Idle });
        }
        let now = wall_us();
        let n = self.splits.take_run(budget, |n| out.collect((n, now)));
        self.pacer.produced(n);
        Ok(if self.splits.is_finished() { SourcePoll::Finished } else { SourcePoll::Ready })
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.splits.snapshot())
    }
    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.splits.restore(splits)
    }
}

fn build(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    if p.input.is_some() {
        return Err(JobError::Invalid("latency-probe generates its input; --input does not apply".into()));
    }
    let (events, rate) = (p.events, p.rate);
    let samples = env
        .source(
            "stamped",
            move |ctx| StampedSource {
                splits: SequenceSplits::initial(ctx.subtask, ctx.parallelism, events),
                pacer: Pacer::new(rate, ctx.parallelism),
            },
            WatermarkStrategy::none(),
        )
        .uid("stamped")
        .rebalance()
        .flat_map(|(n, sent): (u64, i64), out| {
            if n % 100 == 0 {
                out.emit(LatencySample { seq: n, latency_us: wall_us() - sent });
            }
        })
        .uid("measure");
    super::sink_output(&samples, p)
}

pub fn job() -> BuiltinJob {
    BuiltinJob { name: "latency-probe", description: "End-to-end latency through a rebalance (every 100th record's latency, in µs)", build }
}
