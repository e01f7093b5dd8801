//! A keyed-state load that checks itself: record `n` writes key `n % keys`, so the
//! first `keys` records give every key a value of `valueBytes` bytes and the following
//! ones overwrite them round-robin, at `rate` records per second if given, `events`
//! records in all if given (else without end). A value carries how many times its key
//! was written, and record `n` expects `n / keys` earlier writes: state lost or applied
//! twice across a restore or a rescale shows as a [`StateMismatch`] in the output,
//! which stays empty while the state is right. With `stateBackend: rocksdb` this is
//! the job that measures checkpoints, restores and rescales of large state in pods.
//!
//! ```yaml
//! job: keyed-state
//! stateBackend: rocksdb
//! params:
//!   rate: 200000
//!   extra: { keys: 8000000, valueBytes: 100 }
//! ```

use serde::{Deserialize, Serialize};

use super::{BuiltinJob, JobParams};
use crate::connector::sequence::SequenceSource;
use crate::error::JobError;
use crate::operator::keyed::{KeyedContext, KeyedProcessFunction};
use crate::record::NO_TIMESTAMP;
use crate::state::{OpenContext, ValueState};
use crate::stream::StreamEnv;
use crate::time::WatermarkStrategy;

/// A write that found its key written another number of times than it expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateMismatch {
    pub record: u64,
    pub key: u64,
    pub expected_writes: u64,
    pub found_writes: u64,
}

#[derive(Clone)]
struct Writer {
    keys: u64,
    value_bytes: usize,
    value: Option<ValueState<Vec<u8>>>,
}

fn writes_in(v: &[u8]) -> u64 {
    v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

impl KeyedProcessFunction<u64, u64, StateMismatch> for Writer {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), JobError> {
        self.value = Some(ctx.value_state("value")?);
        Ok(())
    }

    fn process(&mut self, n: u64, ctx: &mut KeyedContext<'_, u64, StateMismatch>) {
        let Some(state) = &self.value else { return };
        let expected = n / self.keys;
        let found = state.get(ctx).map(|v| writes_in(v)).unwrap_or(0);
        if found != expected {
            ctx.emit(StateMismatch { record: n, key: n % self.keys, expected_writes: expected, found_writes: found });
        }
        let mut v = vec![(n % 251) as u8; self.value_bytes.max(8)];
        v[..8].copy_from_slice(&(found + 1).to_le_bytes());
        state.update(ctx, v);
    }
}

fn extra_u64(p: &JobParams, name: &str, default: u64) -> Result<u64, JobError> {
    match p.extra.get(name) {
        None => Ok(default),
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| JobError::Invalid(format!("keyed-state: params.extra.{name} must be a positive integer, not {v:?}"))),
    }
}

fn build(env: &StreamEnv, p: &JobParams) -> Result<(), JobError> {
    if p.input.is_some() {
        return Err(JobError::Invalid("keyed-state generates its input; --input does not apply".into()));
    }
    let keys = extra_u64(p, "keys", 1_000_000)?;
    let value_bytes = extra_u64(p, "valueBytes", 100)? as usize;
    let (events, rate) = (p.events, p.rate);
    let mismatches = env
        .source("writes", move |c| SequenceSource::new(c.subtask, c.parallelism, events, rate, |n| (NO_TIMESTAMP, n)), WatermarkStrategy::none())
        .uid("writes")
        .key_by(move |n: &u64| n % keys)
        .process(Writer { keys, value_bytes, value: None })
        .uid("state");
    super::sink_output(&mismatches, p)
}

pub fn job() -> BuiltinJob {
    BuiltinJob { name: "keyed-state", description: "Keyed state load: params.extra.keys keys (1 M) of valueBytes (100) bytes, overwritten round-robin; outputs only state found wrong", build }
}
