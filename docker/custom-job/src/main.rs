//! Clicks per user per minute: an event-time tumbling window over a generated
//! click stream, counted per user, printed as JSON-ish lines on stdout.
//!
//! Built into an image on top of the Weir runtime image (see ../README.md) and
//! run by a StreamJob whose `job` names this binary as its command.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::connector::stdout::StdoutSink;
use weir::connector::{ConnectorError, Source, SourceOutput, SourcePoll};
use weir::window::{Count, TumblingEventTimeWindows};
use weir::{JobConfig, StreamEnv, WatermarkStrategy};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Click {
    user: u64,
    ts: i64,
}

/// A deterministic click generator: subtask `i` of `p` emits clicks `i, i+p, i+2p, …`.
/// Its position is checkpointed, so a restored job continues where it stopped.
struct Clicks {
    next: u64,
    step: u64,
    end: u64,
}

impl Source<Click> for Clicks {
    fn poll(&mut self, out: &mut SourceOutput<'_, Click>) -> Result<SourcePoll, ConnectorError> {
        while out.remaining() > 0 {
            if self.next >= self.end {
                return Ok(SourcePoll::Finished);
            }
            let n = self.next;
            out.collect(Click { user: n % 100, ts: (n as i64) * 10 });
            self.next += self.step;
        }
        Ok(SourcePoll::Ready)
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(vec![self.next.to_le_bytes().to_vec()])
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        if let Some(pos) = splits.iter().filter_map(|s| s.as_slice().try_into().ok()).map(u64::from_le_bytes).min() {
            self.next = pos;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let parallelism = std::env::var("WEIR_PARALLELISM").ok().and_then(|p| p.parse().ok()).unwrap_or(1);
    let env = StreamEnv::new(JobConfig { name: "clicks-per-minute".into(), parallelism, ..Default::default() });
    env.source(
        "clicks",
        |ctx| Clicks { next: ctx.subtask as u64, step: ctx.parallelism as u64, end: 10_000_000 },
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(2), |c: &Click| c.ts),
    )
    .uid("clicks")
    .key_by(|c: &Click| c.user)
    .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    .aggregate(Count::new())
    .uid("clicks-per-minute")
    .sink("out", |_| StdoutSink);
    env.execute()?;
    Ok(())
}
