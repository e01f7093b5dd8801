//! A latency probe: sources stamp each record with the wall clock when it is made, a
//! rebalance sends it to another subtask (across processes in a cluster), and there its
//! end-to-end latency is measured; every 100th latency is written out. With `--rate`
//! below the maximum throughput it shows the latency distribution under that load
//! (`scripts/bench-cluster.sh` turns the output into percentiles).

use serde::{Deserialize, Serialize};

use super::{BuiltinJob, JobParams};
use crate::connector::sequence::SequenceSource;
use crate::record::NO_TIMESTAMP;
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

fn build(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    if p.input.is_some() {
        return Err(JobError::Invalid("latency-probe generates its input; --input does not apply".into()));
    }
    let (events, rate) = (p.events, p.rate);
    let samples = env
        .source(
            "stamped",
            // numbered records stamped with the wall clock when they are made
            move |ctx| SequenceSource::new(ctx.subtask, ctx.parallelism, events, rate, |n| (NO_TIMESTAMP, (n, wall_us()))),
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
