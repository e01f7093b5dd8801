//! SESSION window aggregation: each row arrives as a proto-session `[ts, ts + gap)`
//! (from the window assignment); the sessions of a key live in keyed state and
//! merge when they overlap or touch; a session's final row is emitted when the
//! watermark passes its end.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir::record::{Collector, Timestamp};
use weir::state::{OpenContext, ValueState};
use weir::{JobError, KeyedContext, KeyedProcessFunction, TimeDomain};

use crate::ops::{Acc, AggSpec, ChangeBatch, GroupKey, KeyedRow, RowKind, Value};
use crate::rows::Output;

/// One open session of a key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub start: i64,
    pub end: i64,
    /// rows accumulated minus rows retracted
    pub rows: i64,
    pub accs: Vec<Acc>,
}

/// The keyed process function of a SESSION window aggregation. The key is the
/// GROUP BY key without `window_start`/`window_end`; the two bounds of the
/// proto-session are the last two arguments of each row.
#[derive(Clone)]
pub struct SessionAgg {
    spec: Arc<AggSpec>,
    /// positions of window_start / window_end in the output's group columns
    start_at: usize,
    end_at: usize,
    state: Option<ValueState<Vec<Session>>>,
    out: Output,
}

impl SessionAgg {
    pub fn new(spec: Arc<AggSpec>, start_at: usize, end_at: usize) -> Self {
        SessionAgg { out: Output::new(spec.out_schema.clone(), &spec.name), spec, start_at, end_at, state: None }
    }

    /// The output row: group columns (with the bounds in place), then aggregates.
    fn row(&self, key: &GroupKey, s: &Session) -> Vec<Value> {
        window_row(&self.spec, self.start_at, self.end_at, key, s.start, s.end, &s.accs)
    }
}

/// The output row of a window of `key` (the group key without the bounds): group
/// columns with `start`/`end` at `start_at`/`end_at`, then the aggregates' results.
pub(crate) fn window_row(spec: &AggSpec, start_at: usize, end_at: usize, key: &GroupKey, start: i64, end: i64, accs: &[Acc]) -> Vec<Value> {
    let n_group = key.0.len() + 2;
    let mut v = Vec::with_capacity(n_group + accs.len());
    let mut k = key.0.iter();
    for i in 0..n_group {
        if i == start_at {
            v.push(Value::Int(start));
        } else if i == end_at {
            v.push(Value::Int(end));
        } else {
            v.push(k.next().cloned().unwrap_or(Value::Null));
        }
    }
    for (i, (kind, a)) in spec.aggs.iter().zip(accs).enumerate() {
        v.push(kind.result(a, spec.out_schema.field(n_group + i).data_type()));
    }
    v
}

/// Merges `new` into `sessions` (kept sorted by start): every session overlapping or
/// touching it is folded in. Returns the index of the merged session and the ends of
/// the sessions that were absorbed (their timers are obsolete).
pub fn merge(sessions: &mut Vec<Session>, mut new: Session, merge_accs: impl Fn(&mut Vec<Acc>, Vec<Acc>)) -> (usize, Vec<i64>) {
    let mut absorbed = Vec::new();
    let mut i = 0;
    while i < sessions.len() {
        let s = &sessions[i];
        if s.start <= new.end && new.start <= s.end {
            let s = sessions.remove(i);
            absorbed.push(s.end);
            new.start = new.start.min(s.start);
            new.end = new.end.max(s.end);
            new.rows += s.rows;
            merge_accs(&mut new.accs, s.accs);
        } else {
            i += 1;
        }
    }
    let at = sessions.partition_point(|s| s.start < new.start);
    sessions.insert(at, new);
    (at, absorbed)
}

impl KeyedProcessFunction<GroupKey, KeyedRow, ChangeBatch> for SessionAgg {
    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        self.out.flush(out);
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("sessions")?);
        Ok(())
    }

    fn process(&mut self, r: KeyedRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some(state) = self.state.clone() else { return };
        let n = r.args.len();
        let (Some(Value::Int(start)), Some(Value::Int(end))) = (r.args.get(n.wrapping_sub(2)), r.args.get(n.wrapping_sub(1))) else { return };
        let (start, end) = (*start, *end);
        if end - 1 <= ctx.current_watermark() {
            return; // late: a session ending here would have fired already
        }
        let sign = if r.kind.is_accumulate() { 1 } else { -1 };
        let mut accs = self.spec.new_accs();
        for ((k, a), v) in self.spec.aggs.iter().zip(accs.iter_mut()).zip(&r.args) {
            k.update(a, v, sign);
        }
        let new = Session { start, end, rows: sign, accs };
        let Some(sessions) = state.get_mut(ctx) else {
            state.update(ctx, vec![new]);
            ctx.register_event_time_timer(end - 1);
            return;
        };
        let spec = &self.spec;
        let (at, absorbed) = merge(sessions, new, |into, from| merge_accs(spec, into, from));
        let fire_at = sessions[at].end - 1;
        for e in absorbed {
            ctx.delete_event_time_timer(e - 1);
        }
        ctx.register_event_time_timer(fire_at);
    }

    fn on_timer(&mut self, time: Timestamp, domain: TimeDomain, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        if domain != TimeDomain::EventTime {
            return;
        }
        let Some(state) = self.state.clone() else { return };
        let Some(mut sessions) = state.value(ctx) else { return };
        let key = ctx.key().clone();
        let mut out = Vec::new();
        sessions.retain(|s| {
            if s.end - 1 <= time {
                if s.rows > 0 {
                    out.push((RowKind::Insert, self.row(&key, s)));
                }
                false
            } else {
                true
            }
        });
        if sessions.is_empty() {
            state.clear(ctx);
        } else {
            state.update(ctx, sessions);
        }
        self.out.push(ctx, out);
    }
}

/// Folds the accumulators `from` of a merged session into `into`.
fn merge_accs(spec: &AggSpec, into: &mut [Acc], from: Vec<Acc>) {
    for ((k, a), b) in spec.aggs.iter().zip(into.iter_mut()).zip(from) {
        k.merge(a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start: i64, end: i64) -> Session {
        Session { start, end, rows: 1, accs: Vec::new() }
    }

    #[test]
    fn sessions_merge_when_they_overlap_or_touch() {
        let mut v = Vec::new();
        merge(&mut v, s(0, 10), |_, _| {});
        merge(&mut v, s(20, 30), |_, _| {});
        assert_eq!(v.len(), 2);
        let (at, absorbed) = merge(&mut v, s(10, 20), |_, _| {});
        assert_eq!((at, absorbed.len()), (0, 2));
        assert_eq!((v[0].start, v[0].end, v[0].rows), (0, 30, 3));
        merge(&mut v, s(31, 41), |_, _| {});
        assert_eq!(v.len(), 2);
    }
}
