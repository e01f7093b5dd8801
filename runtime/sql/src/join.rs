//! Joins of two streams, with Flink's semantics (a child of `plan`: it lowers
//! `LogicalPlan::Join`).
//!
//! Three kinds, chosen from the join condition:
//! - **window join**: both inputs are window TVF results and the equality condition
//!   holds both `window_start` and `window_end` → rows are kept per window and key until
//!   the watermark passes the window's end, then joined once (append-only output).
//! - **interval join**: the non-equi condition bounds the two rowtime attributes
//!   against each other (`l.ts BETWEEN r.ts - INTERVAL '1' HOUR AND r.ts`) → rows are
//!   kept until no row of the other side can match any more (event-time timers), late
//!   rows are dropped (append-only output; outer sides emit null-padded rows when
//!   their row expires unmatched).
//! - **regular join** otherwise: each side's rows in keyed state forever (or until the
//!   state TTL `table.exec.state.ttl`), inputs may be updating, outer joins retract
//!   their null-padded rows when the first match arrives (an updating output).
//!
//! Join outputs carry no time attribute (unlike Flink's interval and window joins,
//! which keep them and hold back the output watermark): their rows may be behind the
//! watermark, so a window TVF over a join is refused at planning instead of dropping
//! rows as late.
//!
//! Every join needs at least one equality between the inputs: both inputs are keyed
//! by the equality's expressions and meet in one two-input keyed operator
//! (`KeyedStream::connect(..).process(..)`, the engine's `KeyedCoProcessFunction`),
//! so each key's rows of both sides live in the same key group. Other conditions are
//! evaluated on the joined pairs as one DataFusion physical expression over the
//! joined schema.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::{JoinType, NullEquality, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, LogicalPlan, Operator};
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};
use weir::record::{Collector, Timestamp};
use weir::state::{OpenContext, StateConfig, ValueState};
use weir::{JobError, KeyedCoProcessFunction, KeyedContext, TimeDomain};

use super::{Entry, Lower, Lowered, WinCol, phys_exprs, unalias};
use crate::ops::{ChangeBatch, GroupKey, RowKind, Value, nullable};
use crate::rows::Output;

/// The setting of the idle state retention of regular joins.
pub(super) const STATE_TTL: &str = "table.exec.state.ttl";

/// One input row of a join: its join key, kind and values.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRow {
    pub key: GroupKey,
    pub kind: RowKind,
    pub row: Vec<Value>,
}

/// Turns one side's batches into [`JoinRow`]s (key expressions evaluated columnar).
#[derive(Clone, Debug)]
struct SideRows {
    name: String,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// an inner side's rows with a null key can never match: dropped here
    drop_null_keys: bool,
}

impl SideRows {
    fn apply(&self, b: &ChangeBatch, out: &mut Collector<'_, JoinRow>) -> Result<(), String> {
        let n = b.num_rows();
        let keys: Vec<ArrayRef> = self.keys.iter().map(|e| e.evaluate(&b.rows.0).and_then(|v| v.into_array(n)).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        let (keys, cols) = (crate::rows::readers(&keys), crate::rows::readers(b.rows.0.columns()));
        for i in 0..n {
            let key = GroupKey::new(crate::rows::read_row(&keys, i)?);
            if self.drop_null_keys && key.0.contains(&Value::Null) {
                continue;
            }
            let row = crate::rows::read_row(&cols, i)?;
            out.emit(JoinRow { key, kind: b.kind(i), row });
        }
        Ok(())
    }

    fn run(&self, b: ChangeBatch, out: &mut Collector<'_, JoinRow>) {
        if let Err(e) = self.apply(&b, out) {
            fail(&self.name, e)
        }
    }
}

/// A failure while running a join: the task fails with this message.
fn fail(op: &str, e: impl std::fmt::Display) -> ! {
    panic!("SQL operator {op}: {e}")
}

/// What every join operator needs: the output schema, outer sides and the
/// non-equi condition.
#[derive(Debug)]
struct JoinSpec {
    name: String,
    /// left columns, then right columns (all nullable)
    schema: SchemaRef,
    left_width: usize,
    left_outer: bool,
    right_outer: bool,
    /// rows with a null key match nothing (unless `IS NOT DISTINCT FROM`)
    null_keys_match: bool,
    /// the non-equi condition
    filter: Option<JoinFilter>,
}

/// A join's non-equi condition, evaluated over only the columns of the joined row it
/// reads (a pair's other columns, strings among them, are never copied for it).
#[derive(Debug)]
struct JoinFilter {
    /// the condition, reading column `i` of `schema`
    expr: Arc<dyn PhysicalExpr>,
    /// the joined row's columns it reads, in `schema`'s order
    cols: Vec<usize>,
    schema: SchemaRef,
}

impl JoinFilter {
    /// `expr` over the joined rows of `joined`.
    fn new(expr: Arc<dyn PhysicalExpr>, joined: &arrow::datatypes::Schema) -> Result<Self, String> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_expr::expressions::Column;
        let mut cols: Vec<usize> = Vec::new();
        let expr = expr
            .transform_down(|n| {
                let Some(c) = n.downcast_ref::<Column>() else { return Ok(Transformed::no(n)) };
                let i = cols.iter().position(|x| *x == c.index()).unwrap_or_else(|| {
                    cols.push(c.index());
                    cols.len() - 1
                });
                Ok(Transformed::yes(Arc::new(Column::new(c.name(), i)) as Arc<dyn PhysicalExpr>))
            })
            .map_err(|e| e.to_string())?
            .data;
        let schema = Arc::new(arrow::datatypes::Schema::new(cols.iter().map(|&c| joined.field(c).clone()).collect::<Vec<_>>()));
        Ok(JoinFilter { expr, cols, schema })
    }

    /// Whether each of `rows` (the columns `cols`, in order) satisfies the condition.
    fn eval(&self, rows: &[(RowKind, Vec<Value>)]) -> Result<Vec<bool>, String> {
        let b = crate::rows::rows_to_batch(&self.schema, rows)?;
        let v = self.expr.evaluate(&b.rows.0).and_then(|v| v.into_array(rows.len())).map_err(|e| e.to_string())?;
        let m = v.as_boolean_opt().ok_or("the join condition is not boolean")?;
        Ok((0..m.len()).map(|i| m.is_valid(i) && m.value(i)).collect())
    }
}

impl JoinSpec {
    fn outer(&self, left: bool) -> bool {
        if left { self.left_outer } else { self.right_outer }
    }

    /// The joined row of `mine` (from the left input if `left`) and `other`.
    fn pair(&self, left: bool, mine: &[Value], other: &[Value]) -> Vec<Value> {
        let (l, r) = if left { (mine, other) } else { (other, mine) };
        let mut v = Vec::with_capacity(l.len() + r.len());
        v.extend_from_slice(l);
        v.extend_from_slice(r);
        v
    }

    /// `row` of the left input (if `left`) or right input, padded with nulls.
    fn padded(&self, left: bool, row: &[Value]) -> Vec<Value> {
        let width = self.schema.fields().len();
        let mut v = Vec::with_capacity(width);
        if left {
            v.extend_from_slice(row);
            v.resize(width, Value::Null);
        } else {
            v.resize(self.left_width, Value::Null);
            v.extend_from_slice(row);
        }
        v
    }

    /// Which pairs (left row, right row) satisfy the non-equi condition.
    fn matching<'r>(&self, pairs: impl ExactSizeIterator<Item = (&'r [Value], &'r [Value])>) -> Result<Vec<bool>, String> {
        let Some(f) = &self.filter else { return Ok(vec![true; pairs.len()]) };
        let n = pairs.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let lw = self.left_width;
        let cell = |l: &[Value], r: &[Value], c: usize| if c < lw { l[c].clone() } else { r[c - lw].clone() };
        let rows: Vec<(RowKind, Vec<Value>)> = pairs.map(|(l, r)| (RowKind::Insert, f.cols.iter().map(|&c| cell(l, r, c)).collect())).collect();
        f.eval(&rows)
    }

    /// Whether the condition is evaluated once per input batch over the joined rows
    /// (see [`RegularJoin`]): in an inner join it only decides which rows are emitted.
    fn defers_condition(&self) -> bool {
        self.filter.is_some() && !self.left_outer && !self.right_outer
    }

    /// The joined `rows` that satisfy the condition.
    fn passing(&self, rows: Vec<(RowKind, Vec<Value>)>) -> Result<Vec<(RowKind, Vec<Value>)>, String> {
        let Some(f) = self.filter.as_ref().filter(|_| !rows.is_empty()) else { return Ok(rows) };
        let narrow: Vec<(RowKind, Vec<Value>)> = rows.iter().map(|(_, r)| (RowKind::Insert, f.cols.iter().map(|&c| r[c].clone()).collect())).collect();
        let ok = f.eval(&narrow)?;
        Ok(rows.into_iter().zip(ok).filter(|(_, ok)| *ok).map(|(r, _)| r).collect())
    }

    /// The pairs of `mine` with each of `others` that satisfy the condition: the
    /// indexes into `others` and the joined rows.
    fn matches<'o>(&self, left: bool, mine: &[Value], others: impl Iterator<Item = &'o [Value]>) -> Result<Vec<(usize, Vec<Value>)>, String> {
        self.pairs(left, mine, others, true)
    }

    /// As [`JoinSpec::matches`]; every pair unless `evaluate` (the condition).
    fn pairs<'o>(&self, left: bool, mine: &[Value], others: impl Iterator<Item = &'o [Value]>, evaluate: bool) -> Result<Vec<(usize, Vec<Value>)>, String> {
        let others: Vec<&[Value]> = others.collect();
        let ok = if evaluate { self.matching(others.iter().map(|o| if left { (mine, *o) } else { (*o, mine) }))? } else { vec![true; others.len()] };
        Ok(others.iter().zip(ok).enumerate().filter(|(_, (_, ok))| *ok).map(|(i, (o, _))| (i, self.pair(left, mine, o))).collect())
    }
}

/// Output rows with their kinds.
type Changes = Vec<(RowKind, Vec<Value>)>;

/// The keyed state of the left and the right input (registered in `open`).
type Sides<T> = Option<(ValueState<T>, ValueState<T>)>;

// ---------------------------------------------------------------- regular join

/// How often a distinct row is in one side of a regular join, and (outer sides) how
/// many rows of the other side it joins with.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Default)]
struct Counts {
    count: i64,
    assoc: i64,
}

/// One side's distinct rows of a key (Flink's `InputSideHasNoUniqueKey` view): a
/// row is found, counted and removed in O(1), so a key with many rows (a hot
/// auction's bids) costs no more per row than a key with one.
type SideRowsOfKey = HashMap<GroupKey, Counts, foldhash::fast::RandomState>;

/// Flink's `StreamingJoinOperator`: both sides' rows per key, a changelog out.
///
/// An inner join's condition only decides which joined rows are emitted (outer joins
/// also count matches in state), so it is evaluated over all the joined rows of an
/// input batch at once (`candidates`, in `finish_batch`), not once per input row.
#[derive(Clone)]
struct RegularJoin {
    spec: Arc<JoinSpec>,
    out: Output,
    ttl: Option<Duration>,
    state: Sides<SideRowsOfKey>,
    /// joined rows whose condition is not evaluated yet, and their latest timestamp
    candidates: Vec<(RowKind, Vec<Value>)>,
    candidates_ts: Timestamp,
}

impl RegularJoin {
    fn on_row(&mut self, left: bool, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let spec = self.spec.clone();
        let Some((ls, rs)) = self.state.clone() else { return };
        let (mine_st, other_st) = if left { (ls, rs) } else { (rs, ls) };
        if !spec.null_keys_match && r.key.0.contains(&Value::Null) {
            // matches nothing, ever: only an outer side's padded row
            if spec.outer(left) {
                let kind = if r.kind.is_accumulate() { RowKind::Insert } else { RowKind::Delete };
                self.out.push(ctx, vec![(kind, spec.padded(left, &r.row))]);
            }
            return;
        }
        // this side's rows are moved out of the state (not copied) while the other
        // side's are read in place; the other side is written back only if its
        // association counts changed
        let mut mine = mine_st.get_mut(ctx).map(std::mem::take).unwrap_or_default();
        let empty = SideRowsOfKey::default();
        let other = other_st.get(ctx).unwrap_or(&empty);
        let defer = spec.defers_condition();
        let (out, assoc) = regular_step(&spec, left, r.kind, GroupKey::new(r.row), &mut mine, other, !defer).unwrap_or_else(|e| fail(&spec.name, e));
        if mine.is_empty() {
            mine_st.clear(ctx);
        } else {
            mine_st.update(ctx, mine);
        }
        if !assoc.is_empty()
            && let Some(mut other) = other_st.get_mut(ctx).map(std::mem::take)
        {
            for (o, d) in assoc {
                if let Some(c) = other.get_mut(&o) {
                    c.assoc += d;
                }
            }
            // written back with `update`, which (like every write) refreshes the state TTL
            other_st.update(ctx, other);
        }
        if defer {
            self.candidates_ts = self.candidates_ts.max(ctx.timestamp());
            self.candidates.extend(out);
            if self.candidates.len() >= crate::rows::MAX_ROWS {
                self.release_candidates();
            }
        } else {
            self.out.push(ctx, out);
        }
    }

    /// Evaluates the condition of the collected joined rows; the passing ones go out.
    fn release_candidates(&mut self) {
        let rows = self.spec.passing(std::mem::take(&mut self.candidates)).unwrap_or_else(|e| fail(&self.spec.name, e));
        self.out.add(self.candidates_ts, rows);
        self.candidates_ts = Timestamp::MIN;
    }
}

/// Flink's `StreamingJoinOperator` for one input `row` of kind `kind` (of the left
/// input if `left`): updates its side's rows `mine` and returns the changelog to
/// emit and, for an outer other side, the changes of its rows' association counts.
/// `evaluate`: whether to apply the non-equi condition (else every pair joins; the
/// caller filters the output).
fn regular_step(spec: &JoinSpec, left: bool, kind: RowKind, row: GroupKey, mine: &mut SideRowsOfKey, other: &SideRowsOfKey, evaluate: bool) -> Result<(Changes, Vec<(GroupKey, i64)>), String> {
    let (in_outer, other_outer) = (spec.outer(left), spec.outer(!left));
    let acc = kind.is_accumulate();
    let others: Vec<(&GroupKey, Counts)> = other.iter().map(|(o, c)| (o, *c)).collect();
    let matched: Vec<((&GroupKey, Counts), Vec<Value>)> = spec.pairs(left, &row.0, others.iter().map(|(o, _)| &*o.0), evaluate)?.into_iter().map(|(i, p)| (others[i], p)).collect();
    let mut out = Vec::new();
    let mut assoc_changes = Vec::new();
    if acc {
        if other_outer {
            for ((o, c), _) in &matched {
                if c.assoc == 0 {
                    out.extend(std::iter::repeat_n((RowKind::Delete, spec.padded(!left, &o.0)), c.count as usize));
                }
                assoc_changes.push(((*o).clone(), 1));
            }
        }
        let out_kind = if in_outer || other_outer { RowKind::Insert } else { kind };
        let mut assoc = 0;
        for ((_, c), p) in &matched {
            assoc += c.count;
            out.extend(std::iter::repeat_n((out_kind, p.clone()), c.count as usize));
        }
        if in_outer && matched.is_empty() {
            out.push((RowKind::Insert, spec.padded(left, &row.0)));
        }
        mine.entry(row).or_insert(Counts { count: 0, assoc: if in_outer { assoc } else { 0 } }).count += 1;
    } else {
        if matched.is_empty() {
            if in_outer {
                out.push((RowKind::Delete, spec.padded(left, &row.0)));
            }
        } else {
            let out_kind = if in_outer { RowKind::Delete } else { kind };
            for ((_, c), p) in &matched {
                out.extend(std::iter::repeat_n((out_kind, p.clone()), c.count as usize));
            }
            if other_outer {
                for ((o, c), _) in &matched {
                    if c.assoc == 1 {
                        out.extend(std::iter::repeat_n((RowKind::Insert, spec.padded(!left, &o.0)), c.count as usize));
                    }
                    assoc_changes.push(((*o).clone(), -1));
                }
            }
        }
        if let Some(c) = mine.get_mut(&row) {
            c.count -= 1;
            if c.count <= 0 {
                mine.remove(&row);
            }
        }
    }
    Ok((out, assoc_changes))
}

impl KeyedCoProcessFunction<GroupKey, JoinRow, JoinRow, ChangeBatch> for RegularJoin {
    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        if !self.candidates.is_empty() {
            self.release_candidates();
        }
        self.out.flush(out);
    }
    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        let cfg = |name: &str| match self.ttl {
            Some(t) => StateConfig::new(name).ttl(t),
            None => StateConfig::new(name),
        };
        self.state = Some((ctx.value_state(cfg("left-rows"))?, ctx.value_state(cfg("right-rows"))?));
        Ok(())
    }
    fn process1(&mut self, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        self.on_row(true, r, ctx)
    }
    fn process2(&mut self, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        self.on_row(false, r, ctx)
    }
}

// ---------------------------------------------------------------- interval join

/// Rowtime bounds of an interval join: `left.time - right.time` in `[lower, upper]` (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bounds {
    left_time: usize,
    right_time: usize,
    lower: i64,
    upper: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct TimedRow {
    time: i64,
    row: Vec<Value>,
    matched: bool,
}

/// Flink's time-interval join: rows kept until the watermark says no row of the
/// other side can match them any more.
#[derive(Clone)]
struct IntervalJoin {
    spec: Arc<JoinSpec>,
    out: Output,
    bounds: Bounds,
    state: Sides<Vec<TimedRow>>,
}

impl IntervalJoin {
    /// How long after its own time a row may still match (the interval's width).
    fn width(&self) -> i64 {
        self.bounds.upper - self.bounds.lower
    }

    fn on_row(&mut self, left: bool, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let spec = self.spec.clone();
        let Some((ls, rs)) = self.state.clone() else { return };
        let b = self.bounds;
        let Value::Int(t) = r.row[if left { b.left_time } else { b.right_time }] else { return };
        let wm = ctx.current_watermark();
        // late: rows of the other side that could still arrive cannot match it
        let late = if left { t.saturating_sub(b.lower) < wm } else { t.saturating_add(b.upper) < wm };
        let in_outer = spec.outer(left);
        if late {
            if in_outer {
                self.out.push(ctx, vec![(RowKind::Insert, spec.padded(left, &r.row))]);
            }
            return;
        }
        let (mine_st, other_st) = if left { (ls, rs) } else { (rs, ls) };
        // the other side's rows are read in place (a key's rows are never copied per
        // row); their `matched` marks are set only when that side is outer
        let matched: Vec<(usize, Vec<Value>)> = {
            let empty = Vec::new();
            let other = other_st.get(ctx).unwrap_or(&empty);
            // `left.time - right.time` within the bounds
            let in_range = |o: &TimedRow| {
                let d = if left { t - o.time } else { o.time - t };
                d >= b.lower && d <= b.upper
            };
            let cands: Vec<usize> = (0..other.len()).filter(|i| in_range(&other[*i])).collect();
            let matched = spec.matches(left, &r.row, cands.iter().map(|i| other[*i].row.as_slice())).unwrap_or_else(|e| fail(&spec.name, e));
            matched.into_iter().map(|(c, p)| (cands[c], p)).collect()
        };
        if spec.outer(!left)
            && !matched.is_empty()
            && let Some(other) = other_st.get_mut(ctx)
        {
            for (i, _) in &matched {
                other[*i].matched = true;
            }
        }
        let row = TimedRow { time: t, row: r.row, matched: !matched.is_empty() };
        match mine_st.get_mut(ctx) {
            Some(rows) => rows.push(row),
            None => mine_st.update(ctx, vec![row]),
        }
        let out: Changes = matched.into_iter().map(|(_, p)| (RowKind::Insert, p)).collect();
        ctx.register_event_time_timer(t.saturating_add(self.width()).saturating_add(1));
        self.out.push(ctx, out);
    }
}

impl KeyedCoProcessFunction<GroupKey, JoinRow, JoinRow, ChangeBatch> for IntervalJoin {
    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        self.out.flush(out);
    }
    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some((ctx.value_state("left")?, ctx.value_state("right")?));
        Ok(())
    }
    fn process1(&mut self, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        self.on_row(true, r, ctx)
    }
    fn process2(&mut self, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        self.on_row(false, r, ctx)
    }
    fn on_timer(&mut self, time: Timestamp, domain: TimeDomain, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        if domain != TimeDomain::EventTime {
            return;
        }
        let Some((ls, rs)) = self.state.clone() else { return };
        let spec = self.spec.clone();
        let width = self.width();
        let mut out = Vec::new();
        for (left, st) in [(true, ls), (false, rs)] {
            let Some(rows) = st.get_mut(ctx) else { continue };
            rows.retain(|r| {
                let expired = r.time.saturating_add(width) < time;
                if expired && !r.matched && spec.outer(left) {
                    out.push((RowKind::Insert, spec.padded(left, &r.row)));
                }
                !expired
            });
            if rows.is_empty() {
                st.clear(ctx);
            }
        }
        self.out.push(ctx, out);
    }
}

// ---------------------------------------------------------------- window join

/// How many candidate pairs a window join evaluates its condition over at once.
const PAIR_CHUNK: usize = 4096;

/// Flink's window join: both sides' rows of one window and key, joined when the
/// watermark passes the window's end.
#[derive(Clone)]
struct WindowJoin {
    spec: Arc<JoinSpec>,
    out: Output,
    /// index of `window_end` in the key
    end_key: usize,
    state: Sides<Vec<Vec<Value>>>,
}

impl WindowJoin {
    fn on_row(&mut self, left: bool, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some((ls, rs)) = self.state.clone() else { return };
        let Value::Int(end) = r.key.0[self.end_key] else { return };
        if end - 1 <= ctx.current_watermark() {
            return; // late: the window has been joined
        }
        let st = if left { ls } else { rs };
        // appended in place: a window's rows are never copied per row
        match st.get_mut(ctx) {
            Some(rows) => rows.push(r.row),
            None => {
                st.update(ctx, vec![r.row]);
                ctx.register_event_time_timer(end - 1);
            }
        }
    }
}

impl KeyedCoProcessFunction<GroupKey, JoinRow, JoinRow, ChangeBatch> for WindowJoin {
    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        self.out.flush(out);
    }
    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some((ctx.value_state("left")?, ctx.value_state("right")?));
        Ok(())
    }
    fn process1(&mut self, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        self.on_row(true, r, ctx)
    }
    fn process2(&mut self, r: JoinRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        self.on_row(false, r, ctx)
    }
    fn on_timer(&mut self, _time: Timestamp, domain: TimeDomain, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        if domain != TimeDomain::EventTime {
            return;
        }
        let Some((ls, rs)) = self.state.clone() else { return };
        let spec = self.spec.clone();
        let lrows = ls.value(ctx).unwrap_or_default();
        let rrows = rs.value(ctx).unwrap_or_default();
        ls.clear(ctx);
        rs.clear(ctx);
        let mut out = Vec::new();
        let mut rmatched = vec![false; rrows.len()];
        // the condition is evaluated over chunks of whole left rows' candidate pairs
        // (not one batch per left row); output keeps the left rows' order
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let mut first = 0;
        for l in 0..lrows.len() {
            pairs.extend((0..rrows.len()).map(|r| (l, r)));
            if pairs.len() >= PAIR_CHUNK || l + 1 == lrows.len() {
                let ok = spec.matching(pairs.iter().map(|&(l, r)| (lrows[l].as_slice(), rrows[r].as_slice()))).unwrap_or_else(|e| fail(&spec.name, e));
                let mut lmatched = vec![false; l + 1 - first];
                let mut at = 0;
                for (&(pl, pr), ok) in pairs.iter().zip(ok) {
                    // the padded rows of unmatched left rows before this one
                    while at < pl - first {
                        if !lmatched[at] && spec.left_outer {
                            out.push((RowKind::Insert, spec.padded(true, &lrows[first + at])));
                        }
                        at += 1;
                    }
                    if ok {
                        lmatched[pl - first] = true;
                        rmatched[pr] = true;
                        out.push((RowKind::Insert, spec.pair(true, &lrows[pl], &rrows[pr])));
                    }
                }
                for (i, m) in lmatched.iter().enumerate().skip(at) {
                    if !m && spec.left_outer {
                        out.push((RowKind::Insert, spec.padded(true, &lrows[first + i])));
                    }
                }
                pairs.clear();
                first = l + 1;
            }
        }
        if spec.right_outer {
            for (r, m) in rrows.iter().zip(rmatched) {
                if !m {
                    out.push((RowKind::Insert, spec.padded(false, r)));
                }
            }
        }
        self.out.push(ctx, out);
    }
}

// ---------------------------------------------------------------- planning

/// Milliseconds of an interval literal (fixed-length intervals only).
fn interval_ms(e: &Expr) -> Option<i64> {
    match unalias(e) {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000),
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => Some(v.days as i64 * 86_400_000 + v.milliseconds as i64),
        _ => None,
    }
}

/// `col`, `col + interval` or `col - interval`: the column and the offset in ms.
pub(super) fn time_term(e: &Expr) -> Option<(&datafusion::common::Column, i64)> {
    match unalias(e) {
        Expr::Column(c) => Some((c, 0)),
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Plus | Operator::Minus), right }) => {
            let (c, o) = time_term(left)?;
            let ms = interval_ms(right)?;
            Some((c, if *op == Operator::Plus { o + ms } else { o - ms }))
        }
        _ => None,
    }
}

/// The rowtime bounds in a join's non-equi condition, as column pairs of the two
/// inputs (indexes into the left and right schemas); both bounds must be found.
fn find_bounds(j: &Join) -> Option<Bounds> {
    let (ls, rs) = (j.left.schema(), j.right.schema());
    let mut pair: Option<(usize, usize)> = None;
    let (mut lower, mut upper) = (None::<i64>, None::<i64>);
    for c in split_conjunction(j.filter.as_ref()?) {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = unalias(c) else { continue };
        let (Some((a, ao)), Some((b, bo))) = (time_term(left), time_term(right)) else { continue };
        // `a + ao  op  b + bo`, with a of the left input and b of the right one
        let (la, rb, op) = match (ls.index_of_column(a), rs.index_of_column(b), ls.index_of_column(b), rs.index_of_column(a)) {
            (Ok(l), Ok(r), _, _) => ((l, ao), (r, bo), *op),
            (_, _, Ok(l), Ok(r)) => ((l, bo), (r, ao), op.swap()?),
            _ => continue,
        };
        if *pair.get_or_insert((la.0, rb.0)) != (la.0, rb.0) {
            continue;
        }
        // l - r  op  bo - ao
        let c = rb.1 - la.1;
        match op {
            Operator::GtEq => lower = Some(lower.map_or(c, |x| x.max(c))),
            Operator::Gt => lower = Some(lower.map_or(c + 1, |x| x.max(c + 1))),
            Operator::LtEq => upper = Some(upper.map_or(c, |x| x.min(c))),
            Operator::Lt => upper = Some(upper.map_or(c - 1, |x| x.min(c - 1))),
            _ => {}
        }
    }
    let (left_time, right_time) = pair?;
    Some(Bounds { left_time, right_time, lower: lower?, upper: upper? })
}

/// Whether a join input value type is supported in join state.
fn supported(dt: &DataType) -> bool {
    use DataType::*;
    matches!(dt, Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32 | Float64 | Utf8 | LargeUtf8 | Utf8View | Decimal128(..) | Timestamp(..) | Date32 | Date64)
}

fn join_type_name(t: JoinType) -> &'static str {
    match t {
        JoinType::Inner => "InnerJoin",
        JoinType::Left => "LeftOuterJoin",
        JoinType::Right => "RightOuterJoin",
        _ => "FullOuterJoin",
    }
}

enum Kind {
    Regular,
    Interval(Bounds),
    Window { end_key: usize },
}

impl Lower<'_, '_> {
    pub(super) fn join(&mut self, j: &Join) -> Result<Lowered, String> {
        if let Some(e) = self.c.lookup_of(&j.right) {
            return self.lookup_join(j, e);
        }
        if let Some(e) = self.c.lookup_of(&j.left) {
            return Err(format!("the lookup table '{}' (FOR SYSTEM_TIME AS OF) must be the right side of its JOIN", e.call.table));
        }
        if !matches!(j.join_type, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full) {
            return Err(format!("{} joins (from IN / EXISTS subqueries) are not supported yet", j.join_type));
        }
        if j.on.is_empty() {
            return Err(format!(
                "a join needs an equality condition between its two inputs (ON a.k = b.k): joins without one (cross joins, only non-equi conditions{}) are not supported",
                j.filter.as_ref().map(|f| format!(" such as {f}")).unwrap_or_default()
            ));
        }
        for (side, p) in [("left", &j.left), ("right", &j.right)] {
            if let Some(f) = p.schema().fields().iter().find(|f| !supported(f.data_type())) {
                return Err(format!("joins over columns of type {} ('{}' of the {side} input) are not supported yet", f.data_type(), f.name()));
            }
        }
        let l = self.lower(&j.left)?;
        let r = self.lower(&j.right)?;
        let lkeys: Vec<Expr> = j.on.iter().map(|(a, _)| a.clone()).collect();
        let rkeys: Vec<Expr> = j.on.iter().map(|(_, b)| b.clone()).collect();
        let kind = self.join_kind(j, &l, &r)?;
        let filter = j.filter.as_ref().map(|f| phys_exprs(std::slice::from_ref(f), &j.schema)).transpose()?.map(|mut v| v.remove(0));
        let filter = filter.map(|f| JoinFilter::new(f, j.schema.as_arrow())).transpose()?;
        let what = match kind {
            Kind::Regular => "Join",
            Kind::Interval(_) => "IntervalJoin",
            Kind::Window { .. } => "WindowJoin",
        };
        let desc = format!(
            "{what}(joinType=[{}], where=[{}{}])",
            join_type_name(j.join_type),
            j.on.iter().map(|(a, b)| format!("{a} = {b}")).collect::<Vec<_>>().join(" AND "),
            j.filter.as_ref().map(|f| format!(" AND {f}")).unwrap_or_default()
        );
        if !matches!(kind, Kind::Regular) {
            for (side, s) in [("left", &l), ("right", &r)] {
                if let Some(op) = &s.updating {
                    return Err(format!("{what}: the {side} input is updating ({op}); interval and window joins need append-only inputs"));
                }
            }
        }
        let (left_outer, right_outer) = match j.join_type {
            JoinType::Left => (true, false),
            JoinType::Right => (false, true),
            JoinType::Full => (true, true),
            _ => (false, false),
        };
        let null_keys_match = j.null_equality == NullEquality::NullEqualsNull;
        let spec = Arc::new(JoinSpec {
            name: desc.clone(),
            schema: nullable(j.schema.as_arrow()),
            left_width: j.left.schema().fields().len(),
            left_outer,
            right_outer,
            null_keys_match,
            filter,
        });
        let mut sides = Vec::new();
        for (side, s, keys, plan, outer) in [("left", l.stream, lkeys, &j.left, left_outer), ("right", r.stream, rkeys, &j.right, right_outer)] {
            let f = SideRows { name: format!("{desc}: {side} keys"), keys: phys_exprs(&keys, plan.schema())?, drop_null_keys: !outer && !null_keys_match };
            let uid = self.uid("join-keys", &format!("{side} {desc}"));
            let name = f.name.clone();
            let keyed = self.par(s.flat_map(move |b, out| f.run(b, out)).uid(&uid).name(&name));
            sides.push(keyed.key_by(|r: &JoinRow| r.key.clone()));
        }
        let connected = sides[0].connect(&sides[1]);
        let (out, updating, uid_kind) = match kind {
            Kind::Regular => {
                let ttl = match self.c.job.settings.get(STATE_TTL) {
                    Some(v) => Some(weir_connectors::parse_duration(v).map_err(|m| format!("'{STATE_TTL}': {m}"))?).filter(|d| !d.is_zero()),
                    None => None,
                };
                let updating = (left_outer || right_outer || l.updating.is_some() || r.updating.is_some()).then(|| desc.clone());
                (connected.process(RegularJoin { out: Output::new(spec.schema.clone(), &spec.name), spec, ttl, state: None, candidates: Vec::new(), candidates_ts: Timestamp::MIN }), updating, "join")
            }
            Kind::Interval(bounds) => (connected.process(IntervalJoin { out: Output::new(spec.schema.clone(), &spec.name), spec, bounds, state: None }), None, "interval-join"),
            Kind::Window { end_key } => (connected.process(WindowJoin { out: Output::new(spec.schema.clone(), &spec.name), spec, end_key, state: None }), None, "window-join"),
        };
        let uid = self.uid(uid_kind, &desc);
        let out = self.par(out.uid(&uid).name(&desc));
        // a window join's rows are final when the watermark passes the window's end:
        // the window bounds of a side that is never null-padded stay window bounds
        let mut win = vec![None; j.schema.fields().len()];
        if uid_kind == "window-join" {
            let lw = j.left.schema().fields().len();
            if !right_outer {
                for (i, w) in l.win.iter().enumerate().take(lw) {
                    win[i] = WinCol::in_final_rows(*w);
                }
            }
            if !left_outer {
                for (i, w) in r.win.iter().enumerate() {
                    if let Some(slot) = win.get_mut(lw + i) {
                        *slot = WinCol::in_final_rows(*w);
                    }
                }
            }
        }
        Ok(Lowered { stream: out, updating, win })
    }

    fn join_kind(&self, j: &Join, l: &Lowered, r: &Lowered) -> Result<Kind, String> {
        // window join: window_start = window_start and window_end = window_end
        let win_of = |e: &Expr, plan: &LogicalPlan, low: &Lowered| match unalias(e) {
            Expr::Column(c) => plan.schema().index_of_column(c).ok().and_then(|i| low.win.get(i).copied().flatten()),
            _ => None,
        };
        // the bounds of a window TVF must be joined as a window join; those of final
        // window rows (a window aggregation's output) make one when both are joined
        // (Flink: a join on window_start only of two window aggregations is a regular one)
        let mut start = false;
        let mut end_key = None;
        let mut tvf = false;
        for (i, (a, b)) in j.on.iter().enumerate() {
            let (wa, wb) = (win_of(a, &j.left, l), win_of(b, &j.right, r));
            tvf |= wa.is_some_and(WinCol::is_tvf_bound) || wb.is_some_and(WinCol::is_tvf_bound);
            match (wa, wb) {
                (Some(x), Some(y)) if x.is_start() && y.is_start() => start = true,
                (Some(x), Some(y)) if x.is_end() && y.is_end() => end_key = Some(i),
                (None, None) => {}
                (x, y) if x.is_some_and(WinCol::is_tvf_bound) || y.is_some_and(WinCol::is_tvf_bound) => {
                    return Err(format!("a window join must join window_start with window_start and window_end with window_end, not {a} = {b}"));
                }
                _ => {}
            }
        }
        match (start, end_key) {
            (true, Some(end_key)) => return Ok(Kind::Window { end_key }),
            (false, None) => {}
            _ if tvf => return Err("a window join must join on both window_start and window_end of the two inputs".into()),
            _ => {}
        }
        if let Some(b) = find_bounds(j)
            && self.is_rowtime(&j.left, b.left_time)
            && self.is_rowtime(&j.right, b.right_time)
        {
            for (side, plan, i) in [("left", &j.left, b.left_time), ("right", &j.right, b.right_time)] {
                let f = plan.schema().field(i);
                if !matches!(f.data_type(), DataType::Timestamp(TimeUnit::Millisecond, _)) {
                    return Err(format!("interval join: the {side} time attribute '{}' has type {}; TIMESTAMP(3) is supported", f.name(), f.data_type()));
                }
            }
            if b.lower > b.upper {
                return Err(format!("interval join: the time bounds are empty (lower {} ms > upper {} ms)", b.lower, b.upper));
            }
            return Ok(Kind::Interval(b));
        }
        Ok(Kind::Regular)
    }

    /// Whether column `i` of `plan` is a rowtime attribute (a table's WATERMARK
    /// column, or the `window_time` of a window TVF), traced through projections,
    /// filters and aliases.
    fn is_rowtime(&self, plan: &LogicalPlan, i: usize) -> bool {
        match plan {
            LogicalPlan::Projection(p) => match p.expr.get(i).map(unalias) {
                Some(Expr::Column(c)) => p.input.schema().index_of_column(c).is_ok_and(|k| self.is_rowtime(&p.input, k)),
                _ => false,
            },
            LogicalPlan::Filter(f) => self.is_rowtime(&f.input, i),
            LogicalPlan::SubqueryAlias(a) => self.is_rowtime(&a.input, i),
            LogicalPlan::TableScan(s) => {
                let Some(idx) = s.projection.as_ref().map_or(Some(i), |p| p.get(i).copied()) else { return false };
                self.entry_rowtime(s.table_name.table(), idx)
            }
            _ => false,
        }
    }

    pub(super) fn entry_rowtime(&self, name: &str, i: usize) -> bool {
        match self.c.catalog.get(name) {
            Some(Entry::Table(t)) => t.watermark.as_ref().is_some_and(|w| w.0 == i),
            Some(Entry::View(v)) => self.is_rowtime(v, i),
            Some(Entry::Window(call)) => {
                let n = self.c.entry_schema(&call.table).map_or(0, |s| s.fields().len());
                if i < n { self.entry_rowtime(&call.table, i) } else { i == n + 2 }
            }
            Some(Entry::Lateral(l)) => i < l.op.input_width() && self.entry_rowtime(&l.base, i),
            Some(Entry::Lookup(_)) | None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::{BinaryExpr as PBinary, Column as PColumn};

    /// A join of (k, x) with (k, y), all BIGINT; `x_gt_y`: the extra condition `x > y`.
    fn spec(t: JoinType, x_gt_y: bool) -> JoinSpec {
        let f = |n: &str| Field::new(n, DataType::Int64, true);
        let schema = Arc::new(Schema::new(vec![f("k"), f("x"), f("k2"), f("y")]));
        let filter = x_gt_y.then(|| Arc::new(PBinary::new(Arc::new(PColumn::new("x", 1)), Operator::Gt, Arc::new(PColumn::new("y", 3)))) as Arc<dyn PhysicalExpr>);
        let filter = filter.map(|f| JoinFilter::new(f, &schema).unwrap());
        JoinSpec {
            name: "test".into(),
            schema,
            left_width: 2,
            left_outer: matches!(t, JoinType::Left | JoinType::Full),
            right_outer: matches!(t, JoinType::Right | JoinType::Full),
            null_keys_match: false,
            filter,
        }
    }

    /// Feeds `(left?, kind, value)` rows of key 1 through `regular_step`: the changelog.
    fn run(spec: &JoinSpec, rows: &[(bool, RowKind, i64)]) -> Vec<String> {
        run_with(spec, rows, false)
    }

    /// As `run`; `deferred`: the condition is applied to the output afterwards (as an
    /// inner join does per input batch).
    fn run_with(spec: &JoinSpec, rows: &[(bool, RowKind, i64)], deferred: bool) -> Vec<String> {
        let (mut l, mut r) = (SideRowsOfKey::default(), SideRowsOfKey::default());
        let mut log = Vec::new();
        for (left, kind, v) in rows {
            let row = GroupKey::new(vec![Value::Int(1), Value::Int(*v)]);
            let (mine, other) = if *left { (&mut l, &mut r) } else { (&mut r, &mut l) };
            let (out, assoc) = regular_step(spec, *left, *kind, row, mine, other, !deferred).unwrap();
            let out = if deferred { spec.passing(out).unwrap() } else { out };
            for (o, d) in assoc {
                other.get_mut(&o).unwrap().assoc += d;
            }
            for (k, vals) in out {
                let s: Vec<String> = vals.iter().map(|v| match v {
                    Value::Int(i) => i.to_string(),
                    _ => "N".into(),
                }).collect();
                log.push(format!("{}[{}]", k.short(), s.join(",")));
            }
        }
        log
    }

    use RowKind::{Delete as D, Insert as I, UpdateAfter as UA, UpdateBefore as UB};

    #[test]
    fn inner_join_keeps_the_input_kind() {
        let s = spec(JoinType::Inner, false);
        assert_eq!(run(&s, &[(true, I, 5), (false, I, 7), (true, UB, 5), (true, UA, 6), (false, D, 7)]), vec!["+I[1,5,1,7]", "-U[1,5,1,7]", "+U[1,6,1,7]", "-D[1,6,1,7]"]);
    }

    #[test]
    fn left_join_retracts_and_restores_the_padded_row() {
        let s = spec(JoinType::Left, false);
        assert_eq!(
            run(&s, &[(true, I, 5), (false, I, 7), (false, I, 8), (false, D, 7), (false, D, 8), (true, D, 5)]),
            vec!["+I[1,5,N,N]", "-D[1,5,N,N]", "+I[1,5,1,7]", "+I[1,5,1,8]", "-D[1,5,1,7]", "-D[1,5,1,8]", "+I[1,5,N,N]", "-D[1,5,N,N]"]
        );
    }

    #[test]
    fn right_side_first_then_left_outer_row_matches_at_once() {
        let s = spec(JoinType::Left, false);
        assert_eq!(run(&s, &[(false, I, 7), (true, I, 5), (true, UB, 5), (true, UA, 6)]), vec!["+I[1,5,1,7]", "-D[1,5,1,7]", "+I[1,6,1,7]"]);
    }

    #[test]
    fn full_join_pads_both_sides_with_duplicates() {
        let s = spec(JoinType::Full, false);
        assert_eq!(
            run(&s, &[(true, I, 5), (true, I, 5), (false, I, 7), (true, D, 5), (true, D, 5)]),
            vec!["+I[1,5,N,N]", "+I[1,5,N,N]", "-D[1,5,N,N]", "-D[1,5,N,N]", "+I[1,5,1,7]", "+I[1,5,1,7]", "-D[1,5,1,7]", "-D[1,5,1,7]", "+I[N,N,1,7]"]
        );
    }

    #[test]
    fn the_extra_condition_decides_what_matches() {
        let s = spec(JoinType::Right, true);
        // y = 7 matches x = 9 but not x = 5
        assert_eq!(run(&s, &[(false, I, 7), (true, I, 5), (true, I, 9), (true, D, 9)]), vec!["+I[N,N,1,7]", "-D[N,N,1,7]", "+I[1,9,1,7]", "-D[1,9,1,7]", "+I[N,N,1,7]"]);
    }

    #[test]
    fn an_inner_join_condition_applied_to_the_output_gives_the_same_changelog() {
        let s = spec(JoinType::Inner, true);
        let rows = [(false, I, 7), (true, I, 5), (true, I, 9), (true, I, 9), (false, I, 3), (true, UB, 9), (true, UA, 2), (false, D, 7), (true, D, 5), (false, I, 1)];
        // one input row's joined rows come in the order of the other side's (hashed) rows
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let direct = sorted(run(&s, &rows));
        assert_eq!(sorted(run_with(&s, &rows, true)), direct);
        assert!(direct.len() >= 6 && direct.iter().all(|r| !r.contains("[1,2,1,7]")), "the condition x > y decides: {direct:?}");
    }

    /// The kind of join operator `query` is planned to (`join`, `interval-join`, `window-join`).
    fn planned(query: &str) -> String {
        let kinds = joins(query);
        ["interval-join", "window-join", "join"].iter().find(|k| kinds.iter().any(|j| j == *k)).map_or("none".into(), |k| k.to_string())
    }

    /// The join operators of `query`, in the order they were planned.
    fn joins(query: &str) -> Vec<String> {
        let tables = "CREATE TABLE a (k BIGINT, x BIGINT, ts TIMESTAMP(3), t TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'datagen');
            CREATE TABLE b (k BIGINT, y BIGINT, ts TIMESTAMP(3), t TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'datagen');
            CREATE TABLE o (x BIGINT, y BIGINT) WITH ('connector' = 'blackhole');";
        let env = weir::StreamEnv::new(weir::JobConfig::default());
        let job = crate::compile(&format!("{tables}\nINSERT INTO o {query};"), &env, &Default::default()).unwrap_or_else(|e| panic!("{query}: {e}"));
        let uids = &job.inserts[0].uids;
        uids.iter().filter(|u| !u.starts_with("sql-join-keys-")).filter_map(|u| ["interval-join", "window-join", "join"].into_iter().find(|k| u.starts_with(&format!("sql-{k}-")))).map(str::to_string).collect()
    }

    #[test]
    fn the_condition_decides_the_kind_of_join() {
        let sel = "SELECT a.x, b.y FROM";
        assert_eq!(planned(&format!("{sel} a JOIN b ON a.k = b.k")), "join");
        assert_eq!(planned(&format!("{sel} a, b WHERE a.k = b.k AND a.ts BETWEEN b.ts - INTERVAL '1' HOUR AND b.ts")), "interval-join");
        assert_eq!(planned(&format!("{sel} a JOIN b ON a.k = b.k AND a.ts > b.ts - INTERVAL '1' MINUTE AND a.ts < b.ts + INTERVAL '1' MINUTE")), "interval-join");
        assert_eq!(planned(&format!("{sel} a JOIN b ON a.k = b.k AND b.ts >= a.ts AND b.ts <= a.ts + INTERVAL '10' SECOND")), "interval-join");
        // one bound only, or bounds on columns that are not time attributes: a regular join
        assert_eq!(planned(&format!("{sel} a JOIN b ON a.k = b.k AND a.ts >= b.ts")), "join");
        assert_eq!(planned(&format!("{sel} a JOIN b ON a.k = b.k AND a.t BETWEEN b.t - INTERVAL '1' HOUR AND b.t")), "join");
        assert_eq!(planned(&format!("{sel} a JOIN b ON a.k = b.k AND a.ts BETWEEN b.t - INTERVAL '1' HOUR AND b.t")), "join");
        let w = |t: &str| format!("(SELECT * FROM TABLE(TUMBLE(TABLE {t}, DESCRIPTOR(ts), INTERVAL '1' MINUTE)))");
        let (l, r) = (w("a"), w("b"));
        assert_eq!(planned(&format!("SELECT L.x, R.y FROM {l} L JOIN {r} R ON L.window_start = R.window_start AND L.window_end = R.window_end AND L.k = R.k")), "window-join");
        assert_eq!(planned(&format!("SELECT L.x, R.y FROM {l} L JOIN {r} R ON L.k = R.k")), "join");
        // window aggregations' rows keep their window bounds (renamed or not)
        let agg = |t: &str| format!("(SELECT k, COUNT(*) AS n, window_start AS ws, window_end AS we FROM TABLE(TUMBLE(TABLE {t}, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY k, window_start, window_end)");
        let (l, r) = (agg("a"), agg("b"));
        assert_eq!(planned(&format!("SELECT L.n, R.n FROM {l} L JOIN {r} R ON L.ws = R.ws AND L.we = R.we AND L.k = R.k")), "window-join");
        assert_eq!(planned(&format!("SELECT L.n, R.n FROM {l} L JOIN {r} R ON L.we = R.we AND L.ws = R.ws")), "window-join");
        assert_eq!(planned(&format!("SELECT L.n, R.n FROM {l} L JOIN {r} R ON L.ws = R.ws AND L.k = R.k")), "join");
        // a window join's rows too: joined again on their bounds
        let j = format!("(SELECT L.k, L.ws, L.we, L.n FROM {l} L JOIN {r} R ON L.ws = R.ws AND L.we = R.we AND L.k = R.k)");
        assert_eq!(joins(&format!("SELECT J.n, R.n FROM {j} J JOIN {r} R ON J.ws = R.ws AND J.we = R.we")), ["window-join", "window-join"]);
        assert_eq!(joins(&format!("SELECT J.n, R.n FROM {j} J JOIN {r} R ON J.ws = R.ws AND J.k = R.k")), ["window-join", "join"]);
    }
}
