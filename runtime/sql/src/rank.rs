//! Deduplication and Top-N: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY ...) AS rn`
//! filtered by `rn = 1`, `rn <= N` or `rn < N` (DataFusion plans it as a Filter over
//! Projections over a Window). Two operators, both with their state in keyed state
//! per partition key:
//! - [`DedupFirst`]: `rn = 1` ordered by the rowtime ascending over an append-only
//!   input keeps the earliest row of each key and emits it (append-only) when the
//!   watermark passes its time;
//! - [`TopN`]: everything else (also keep-last deduplication): the rows of the
//!   partition sorted (only the top N for an append-only input, all for an updating
//!   one, so that retractions can promote the next row), emitting the difference of
//!   the top N as an updating stream.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator, Projection, Window};
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};
use weir::record::{Collector, Timestamp};
use weir::state::{OpenContext, ValueState};
use weir::{JobError, KeyedContext, KeyedProcessFunction, TimeDomain};

use crate::ops::{Calc, ChangeBatch, GroupKey, KeyRows, KeyedRow, RowKind, Step, Value, nullable};
use crate::rows::Output;
use crate::plan::{Lower, Lowered, WinCol, phys_exprs, unalias};

/// The bound of a Top-N filter and whether the rank column is selected above it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RankBound {
    pub n: u64,
    pub rank_used: bool,
}

/// The index of the window expression that column `col` of `plan` is, if it is one
/// of a Window's outputs reached through projections, aliases and filters.
fn trace(plan: &LogicalPlan, col: &Column) -> Option<(usize, Window)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let i = p.schema.index_of_column(col).ok()?;
            match unalias(&p.expr[i]) {
                Expr::Column(c) => trace(&p.input, c),
                _ => None,
            }
        }
        LogicalPlan::SubqueryAlias(a) => {
            let i = a.schema.index_of_column(col).ok()?;
            let (q, f) = a.input.schema().qualified_field(i);
            trace(&a.input, &Column::from((q, f)))
        }
        LogicalPlan::Filter(f) => trace(&f.input, col),
        LogicalPlan::Window(w) => {
            let i = w.schema.index_of_column(col).ok()?;
            let n_in = w.input.schema().fields().len();
            (i >= n_in).then(|| (i - n_in, w.clone()))
        }
        _ => None,
    }
}

fn is_row_number(w: &Window, i: usize) -> bool {
    matches!(w.window_expr.get(i).map(unalias), Some(Expr::WindowFunction(wf)) if wf.fun.name().eq_ignore_ascii_case("row_number"))
}

/// The column a ROW_NUMBER output, if `e` is one.
fn rank_column(e: &Expr, input: &LogicalPlan) -> bool {
    match e {
        Expr::Column(c) => trace(input, c).is_some_and(|(i, w)| is_row_number(&w, i)),
        Expr::Cast(c) => rank_column(&c.expr, input),
        Expr::TryCast(c) => rank_column(&c.expr, input),
        _ => false,
    }
}

fn literal_int(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(i)) => Some(i),
            _ => None,
        },
        Expr::Cast(c) => literal_int(&c.expr),
        _ => None,
    }
}

/// If `f` filters a ROW_NUMBER column: the Top-N bound and the rest of the predicate.
pub(crate) fn match_filter(f: &Filter) -> Result<Option<(u64, Option<Expr>)>, String> {
    let mut n: Option<u64> = None;
    let mut rest = Vec::new();
    for c in split_conjunction(&f.predicate) {
        let bound = match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, lit) = if rank_column(left, &f.input) {
                    (Some(*op), literal_int(right))
                } else if rank_column(right, &f.input) {
                    (op.swap(), literal_int(left))
                } else {
                    (None, None)
                };
                match (op, lit) {
                    (None, _) => None,
                    (Some(Operator::Eq), Some(1)) => Some(1),
                    (Some(Operator::LtEq), Some(k)) if k >= 1 => Some(k as u64),
                    (Some(Operator::Lt), Some(k)) if k >= 2 => Some(k as u64 - 1),
                    _ => return Err(format!("ROW_NUMBER: only the conditions rn = 1, rn <= N and rn < N (N a positive literal) are supported, not {c}")),
                }
            }
            other if other.column_refs().iter().any(|col| rank_column(&Expr::Column((*col).clone()), &f.input)) => {
                return Err(format!("ROW_NUMBER: only the conditions rn = 1, rn <= N and rn < N (N a positive literal) are supported, not {other}"));
            }
            _ => None,
        };
        match bound {
            Some(b) => n = Some(n.map_or(b, |x| x.min(b))),
            None => rest.push(c.clone()),
        }
    }
    Ok(n.map(|n| (n, conjunction(rest))))
}

/// Called before lowering a projection: notes whether it selects the rank column
/// of a Top-N filter right below it (Flink emits no rank changes otherwise).
pub(crate) fn note_projection(l: &mut Lower<'_, '_>, pr: &Projection) {
    let mut below = pr.input.as_ref();
    while let LogicalPlan::SubqueryAlias(a) = below {
        below = &a.input;
    }
    let LogicalPlan::Filter(f) = below else { return };
    if !matches!(match_filter(f), Ok(Some(_))) {
        return;
    }
    let used = pr.expr.iter().flat_map(|e| e.column_refs()).any(|c| rank_column(&Expr::Column(c.clone()), &pr.input));
    l.rank_used = Some(used);
}

/// Lowers a Top-N filter: the Window below it becomes a rank operator.
pub(crate) fn lower_filter(l: &mut Lower<'_, '_>, f: &Filter, n: u64, rest: Option<Expr>) -> Result<Lowered, String> {
    let rank_used = l.rank_used.take().unwrap_or(true);
    l.rank = Some(RankBound { n, rank_used });
    let out = l.lower(&f.input)?;
    if l.rank.take().is_some() {
        return Err("internal: the ROW_NUMBER filter did not reach its window".into());
    }
    let Some(rest) = rest else { return Ok(out) };
    let e = phys_exprs(std::slice::from_ref(&rest), f.input.schema())?.remove(0);
    let calc = Calc { name: format!("Calc(where=[{rest}])"), steps: vec![Step::Filter(e)] };
    let stream = l.stateless(out.stream, calc, "filter", &rest.to_string());
    Ok(Lowered { stream, ..out })
}

/// Lowers the ROW_NUMBER window of a Top-N filter.
pub(crate) fn lower(l: &mut Lower<'_, '_>, w: &Window, bound: RankBound) -> Result<Lowered, String> {
    let [e] = w.window_expr.as_slice() else {
        return Err("ROW_NUMBER together with other OVER functions in one query is not supported yet".into());
    };
    let Expr::WindowFunction(wf) = unalias(e) else { return Err(format!("internal: unexpected window expression {e}")) };
    let p = &wf.params;
    if p.order_by.is_empty() {
        return Err("ROW_NUMBER() OVER (...) needs an ORDER BY".into());
    }
    let input = l.lower(&w.input)?;
    let in_schema = w.input.schema();
    let n_in = in_schema.fields().len();
    let out_schema: SchemaRef = nullable(w.schema.as_arrow());
    let is_rowtime = |e: &Expr| match unalias(e) {
        Expr::Column(c) => in_schema.index_of_column(c).ok().and_then(|i| input.win.get(i).copied().flatten()) == Some(WinCol::Rowtime),
        _ => false,
    };
    let all_cols: Vec<Arc<dyn PhysicalExpr>> = (0..n_in)
        .map(|i| Arc::new(datafusion::physical_expr::expressions::Column::new(in_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
        .collect();
    let partition = phys_exprs(&p.partition_by, in_schema)?;
    let order: Vec<Expr> = p.order_by.iter().map(|s| s.expr.clone()).collect();
    let order_exprs = phys_exprs(&order, in_schema)?;
    let dedup_first = bound.n == 1 && p.order_by.len() == 1 && p.order_by[0].asc && is_rowtime(&p.order_by[0].expr) && input.updating.is_none();
    let desc = format!(
        "{}(partitionBy=[{}], orderBy=[{}], rankEnd={})",
        if dedup_first { "Deduplicate" } else { "Rank" },
        p.partition_by.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
        p.order_by.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        bound.n
    );
    let args: Vec<Option<Arc<dyn PhysicalExpr>>> = order_exprs.into_iter().chain(all_cols).map(Some).collect();
    let key_rows = KeyRows { name: format!("{desc}: keys"), keys: partition, args };
    let kuid = l.uid("rank-keys", &desc);
    let keyed = l.par(input.stream.flat_map(move |b, out| key_rows.run(b, out)).uid(&kuid).name(&format!("{desc}: keys")));
    let keyed = keyed.key_by(|r: &KeyedRow| r.key.clone());
    let win = vec![None; out_schema.fields().len()];
    if dedup_first {
        let uid = l.uid("dedup", &desc);
        let f = DedupFirst { state: None, out: Output::new(out_schema, &desc) };
        let stream = l.par(keyed.process(f).uid(&uid).name(&desc));
        return Ok(Lowered { stream, updating: None, win });
    }
    let spec = Arc::new(TopNSpec {
        name: desc.clone(),
        n: bound.n as usize,
        order: p.order_by.iter().map(|s| (s.asc, s.nulls_first)).collect(),
        rank_used: bound.rank_used,
        append_only: input.updating.is_none(),
        out_schema,
    });
    let uid = l.uid("rank", &desc);
    let stream = l.par(keyed.process(TopN { out: Output::new(spec.out_schema.clone(), &spec.name), spec, state: None }).uid(&uid).name(&desc));
    Ok(Lowered { stream, updating: Some(desc), win })
}

/// Keep-first deduplication on the rowtime: the earliest row of each key, emitted
/// once the watermark passes it; later rows of the key are dropped.
#[derive(Clone)]
pub struct DedupFirst {
    state: Option<ValueState<Dedup>>,
    out: Output,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Dedup {
    /// the earliest row so far (its rowtime and columns), not emitted yet
    Pending(i64, Vec<Value>),
    /// the key's row was emitted
    Emitted,
}

impl KeyedProcessFunction<GroupKey, KeyedRow, ChangeBatch> for DedupFirst {
    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        self.out.flush(out);
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("dedup")?);
        Ok(())
    }

    fn process(&mut self, mut r: KeyedRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some(state) = self.state.clone() else { return };
        let Some(Value::Int(ts)) = r.args.first() else { return }; // null rowtime: no order
        let ts = *ts;
        match state.get(ctx) {
            Some(Dedup::Emitted) => return,
            Some(Dedup::Pending(t, _)) if *t <= ts => return,
            Some(Dedup::Pending(t, _)) => {
                let t = *t;
                ctx.delete_event_time_timer(t);
            }
            None => {}
        }
        r.args.remove(0);
        state.update(ctx, Dedup::Pending(ts, r.args));
        ctx.register_event_time_timer(ts);
    }

    fn on_timer(&mut self, time: Timestamp, domain: TimeDomain, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        if domain != TimeDomain::EventTime {
            return;
        }
        let Some(state) = self.state.clone() else { return };
        let Some(Dedup::Pending(ts, mut row)) = state.value(ctx) else { return };
        if ts > time {
            return;
        }
        state.update(ctx, Dedup::Emitted);
        row.push(Value::Int(1));
        self.out.push(ctx, [(RowKind::Insert, row)]);
    }
}

/// What a Top-N operator computes.
#[derive(Debug)]
pub struct TopNSpec {
    name: String,
    n: usize,
    /// (ascending, nulls first) per ORDER BY expression
    order: Vec<(bool, bool)>,
    /// whether the rank column is selected (rank changes are updates then)
    rank_used: bool,
    /// append-only input: only the top N rows need to be kept
    append_only: bool,
    out_schema: SchemaRef,
}

/// One ranked row: its ORDER BY values and its columns.
pub type Ranked = (Vec<Value>, Vec<Value>);

impl TopNSpec {
    fn cmp(&self, a: &[Value], b: &[Value]) -> Ordering {
        for ((x, y), (asc, nulls_first)) in a.iter().zip(b).zip(&self.order) {
            let o = match (x, y) {
                (Value::Null, Value::Null) => Ordering::Equal,
                (Value::Null, _) => if *nulls_first { Ordering::Less } else { Ordering::Greater },
                (_, Value::Null) => if *nulls_first { Ordering::Greater } else { Ordering::Less },
                _ => {
                    let o = x.cmp_sql(y);
                    if *asc { o } else { o.reverse() }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Applies one change to the sorted rows; false if the top N cannot have changed.
    pub fn apply(&self, rows: &mut Vec<Ranked>, kind: RowKind, sort: Vec<Value>, row: Vec<Value>) -> bool {
        if kind.is_accumulate() {
            // after its peers: earlier rows keep their rank
            let at = rows.partition_point(|(s, _)| self.cmp(s, &sort) != Ordering::Greater);
            if self.append_only && at >= self.n {
                return false;
            }
            rows.insert(at, (sort, row));
            if self.append_only {
                rows.truncate(self.n);
            }
            true
        } else {
            match rows.iter().position(|(_, r)| *r == row) {
                Some(i) => {
                    rows.remove(i);
                    i < self.n
                }
                None => false,
            }
        }
    }

    /// The changes from the top N `old` to `new` (rows with the rank appended).
    pub fn diff(&self, old: &[Ranked], new: &[Ranked]) -> Vec<(RowKind, Vec<Value>)> {
        let with_rank = |r: &Vec<Value>, i: usize| {
            let mut v = r.clone();
            v.push(Value::Int(i as i64 + 1));
            v
        };
        let mut out = Vec::new();
        if self.rank_used {
            for i in 0..old.len().max(new.len()) {
                match (old.get(i), new.get(i)) {
                    (Some(a), Some(b)) if a.1 != b.1 => {
                        out.push((RowKind::UpdateBefore, with_rank(&a.1, i)));
                        out.push((RowKind::UpdateAfter, with_rank(&b.1, i)));
                    }
                    (None, Some(b)) => out.push((RowKind::Insert, with_rank(&b.1, i))),
                    (Some(a), None) => out.push((RowKind::Delete, with_rank(&a.1, i))),
                    _ => {}
                }
            }
            return out;
        }
        // without the rank: the rows that left and entered the top N (as multisets)
        let mut matched = vec![false; new.len()];
        let mut gone = Vec::new();
        for (i, (_, a)) in old.iter().enumerate() {
            match new.iter().enumerate().position(|(j, (_, b))| !matched[j] && a == b) {
                Some(j) => matched[j] = true,
                None => gone.push(with_rank(a, i)),
            }
        }
        let came: Vec<Vec<Value>> = new.iter().enumerate().filter(|(j, _)| !matched[*j]).map(|(j, (_, b))| with_rank(b, j)).collect();
        if self.n == 1 && gone.len() == 1 && came.len() == 1 {
            out.push((RowKind::UpdateBefore, gone.remove(0)));
            out.extend(came.into_iter().map(|r| (RowKind::UpdateAfter, r)));
        } else {
            out.extend(gone.into_iter().map(|r| (RowKind::Delete, r)));
            out.extend(came.into_iter().map(|r| (RowKind::Insert, r)));
        }
        out
    }
}

/// The keyed process function of Top-N (and keep-last deduplication).
#[derive(Clone)]
pub struct TopN {
    spec: Arc<TopNSpec>,
    state: Option<ValueState<Vec<Ranked>>>,
    out: Output,
}

impl KeyedProcessFunction<GroupKey, KeyedRow, ChangeBatch> for TopN {
    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        self.out.flush(out);
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("rows")?);
        Ok(())
    }

    fn process(&mut self, mut r: KeyedRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some(state) = self.state.clone() else { return };
        let spec = &self.spec;
        let row = r.args.split_off(spec.order.len());
        if state.get(ctx).is_none() {
            state.update(ctx, Vec::new());
        }
        let Some(rows) = state.get_mut(ctx) else { return };
        let old: Vec<Ranked> = rows.iter().take(spec.n).cloned().collect();
        let changes = if spec.apply(rows, r.kind, r.args, row) { spec.diff(&old, &rows[..rows.len().min(spec.n)]) } else { Vec::new() };
        if rows.is_empty() {
            state.clear(ctx);
        }
        self.out.push(ctx, changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;

    fn spec(n: usize, rank_used: bool, append_only: bool) -> TopNSpec {
        TopNSpec { name: "t".into(), n, order: vec![(false, false)], rank_used, append_only, out_schema: Arc::new(Schema::empty()) }
    }

    fn step(s: &TopNSpec, rows: &mut Vec<Ranked>, kind: RowKind, v: i64) -> Vec<String> {
        let old: Vec<Ranked> = rows.iter().take(s.n).cloned().collect();
        if !s.apply(rows, kind, vec![Value::Int(v)], vec![Value::Int(v)]) {
            return Vec::new();
        }
        s.diff(&old, &rows[..rows.len().min(s.n)]).into_iter().map(|(k, r)| format!("{}{r:?}", k.short())).collect()
    }

    #[test]
    fn top2_with_rank_updates_shifted_rows() {
        let s = spec(2, true, true);
        let mut rows = Vec::new();
        assert_eq!(step(&s, &mut rows, RowKind::Insert, 5), vec!["+I[Int(5), Int(1)]"]);
        assert_eq!(step(&s, &mut rows, RowKind::Insert, 3), vec!["+I[Int(3), Int(2)]"]);
        assert_eq!(step(&s, &mut rows, RowKind::Insert, 1), Vec::<String>::new());
        assert_eq!(step(&s, &mut rows, RowKind::Insert, 9), vec!["-U[Int(5), Int(1)]", "+U[Int(9), Int(1)]", "-U[Int(3), Int(2)]", "+U[Int(5), Int(2)]"]);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn retraction_promotes_the_next_row() {
        let s = spec(1, false, false);
        let mut rows = Vec::new();
        step(&s, &mut rows, RowKind::Insert, 5);
        step(&s, &mut rows, RowKind::Insert, 3);
        assert_eq!(step(&s, &mut rows, RowKind::Delete, 5), vec!["-U[Int(5), Int(1)]", "+U[Int(3), Int(1)]"]);
        assert_eq!(step(&s, &mut rows, RowKind::Delete, 3), vec!["-D[Int(3), Int(1)]"]);
        assert!(rows.is_empty());
    }
}
