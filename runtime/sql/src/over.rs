//! OVER aggregations: `SUM/COUNT/AVG/MIN/MAX(x) OVER (PARTITION BY k ORDER BY rowtime
//! ROWS|RANGE BETWEEN ... PRECEDING AND CURRENT ROW)`. Rows wait in keyed state (per
//! partition key) until the watermark passes them, then are emitted in timestamp
//! order with the aggregates over their frames (append-only). Rows at or behind the
//! watermark when they arrive are late and dropped, as in Flink.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, Window, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition};
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};
use weir::record::{Collector, Timestamp};
use weir::state::{OpenContext, ValueState};
use weir::{JobError, KeyedContext, KeyedProcessFunction, TimeDomain};

use crate::ops::{Acc, AggKind, ChangeBatch, GroupKey, KeyRows, KeyedRow, RowKind, Value, nullable};
use crate::rows::Output;
use crate::plan::{Lower, Lowered, WinCol, phys_exprs, unalias};

/// The frame of one OVER aggregate (all end at the current row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    UnboundedRows,
    /// RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW (peers included)
    UnboundedRange,
    /// ROWS BETWEEN n PRECEDING AND CURRENT ROW
    Rows(usize),
    /// RANGE BETWEEN INTERVAL ms PRECEDING AND CURRENT ROW
    Range(i64),
}

#[derive(Debug)]
pub struct OverSpec {
    name: String,
    aggs: Vec<(AggKind, Frame)>,
    out_schema: SchemaRef,
}

fn interval_ms(v: &ScalarValue) -> Result<i64, String> {
    match v {
        ScalarValue::IntervalDayTime(Some(d)) => Ok(d.days as i64 * 86_400_000 + d.milliseconds as i64),
        ScalarValue::IntervalMonthDayNano(Some(d)) if d.months == 0 => Ok(d.days as i64 * 86_400_000 + d.nanoseconds / 1_000_000),
        ScalarValue::IntervalYearMonth(_) | ScalarValue::IntervalMonthDayNano(_) => Err("RANGE frames in months or years are not supported".into()),
        other => match other.cast_to(&arrow::datatypes::DataType::Int64) {
            Ok(ScalarValue::Int64(Some(ms))) => Ok(ms),
            _ => Err(format!("unsupported RANGE bound {other}")),
        },
    }
}

fn frame_of(f: &datafusion::logical_expr::WindowFrame) -> Result<Frame, String> {
    if !matches!(f.end_bound, WindowFrameBound::CurrentRow) {
        return Err(format!("OVER windows must end at CURRENT ROW (found {f})"));
    }
    let unbounded = |v: &ScalarValue| v.is_null();
    match (f.units, &f.start_bound) {
        (WindowFrameUnits::Rows, WindowFrameBound::Preceding(v)) if unbounded(v) => Ok(Frame::UnboundedRows),
        (WindowFrameUnits::Range, WindowFrameBound::Preceding(v)) if unbounded(v) => Ok(Frame::UnboundedRange),
        (WindowFrameUnits::Rows, WindowFrameBound::Preceding(v)) => match v.cast_to(&arrow::datatypes::DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) if n >= 0 => Ok(Frame::Rows(n as usize)),
            _ => Err(format!("unsupported ROWS bound {v}")),
        },
        (WindowFrameUnits::Range, WindowFrameBound::Preceding(v)) => Ok(Frame::Range(interval_ms(v)?)),
        (WindowFrameUnits::Rows, WindowFrameBound::CurrentRow) => Ok(Frame::Rows(0)),
        (WindowFrameUnits::Range, WindowFrameBound::CurrentRow) => Ok(Frame::Range(0)),
        (WindowFrameUnits::Groups, _) => Err("GROUPS frames are not supported".into()),
        _ => Err(format!("unsupported OVER frame {f}")),
    }
}

/// Lowers a Window node of OVER aggregations (ROW_NUMBER is only supported in the
/// Top-N pattern, see `rank`).
pub(crate) fn lower(l: &mut Lower<'_, '_>, w: &Window) -> Result<Lowered, String> {
    let mut aggs = Vec::new();
    let mut args = Vec::new();
    let mut shape: Option<(&Vec<Expr>, &Vec<datafusion::logical_expr::SortExpr>)> = None;
    let in_schema = w.input.schema();
    for e in &w.window_expr {
        let Expr::WindowFunction(wf) = unalias(e) else { return Err(format!("internal: unexpected window expression {e}")) };
        let name = wf.fun.name().to_ascii_uppercase();
        let p = &wf.params;
        let udaf = match &wf.fun {
            // a Rust UDAF (its input is append-only: checked below)
            WindowFunctionDefinition::AggregateUDF(f) => l.udaf(f, &p.args, in_schema, None)?,
            WindowFunctionDefinition::WindowUDF(_) => None,
        };
        let kind = match (&wf.fun, udaf) {
            (_, Some(k)) => k,
            (WindowFunctionDefinition::AggregateUDF(_), None) => {
                let a0 = p.args.first();
                let is_star = a0.is_none() || matches!(a0, Some(Expr::Literal(v, _)) if !v.is_null());
                match name.as_str() {
                    "COUNT" if is_star => AggKind::CountStar,
                    "COUNT" => AggKind::Count,
                    "SUM" => AggKind::Sum,
                    "AVG" | "MEAN" => AggKind::Avg,
                    "MIN" => AggKind::Min,
                    "MAX" => AggKind::Max,
                    other => return Err(format!("{other} OVER (...) is not supported yet")),
                }
            }
            (WindowFunctionDefinition::WindowUDF(_), None) if name == "ROW_NUMBER" => {
                return Err("ROW_NUMBER() OVER (...) is only supported for deduplication and Top-N: SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) AS rn FROM t) WHERE rn <= N".into());
            }
            (WindowFunctionDefinition::WindowUDF(_), None) => return Err(format!("{name} OVER (...) is not supported yet")),
        };
        if p.distinct || p.filter.is_some() {
            return Err(format!("{name}(DISTINCT ...) and FILTER in OVER windows are not supported yet"));
        }
        if p.args.len() > 1 {
            return Err(format!("{name} with several arguments is not supported"));
        }
        match shape {
            None => shape = Some((&p.partition_by, &p.order_by)),
            Some((pb, ob)) if pb == &p.partition_by && ob == &p.order_by => {}
            Some(_) => return Err("OVER windows with different PARTITION BY or ORDER BY in one query are not supported yet".into()),
        }
        args.push(if kind == AggKind::CountStar { None } else { Some(p.args.first().ok_or("missing argument")?.clone()) });
        aggs.push((kind, frame_of(&p.window_frame).map_err(|m| format!("{name} OVER: {m}"))?));
    }
    let Some((partition_by, order_by)) = shape else { return Err("internal: a window without expressions".into()) };
    let input = l.lower(&w.input)?;
    if let Some(op) = &input.updating {
        return Err(format!("OVER aggregations over an updating input (from {op}) are not supported"));
    }
    let rowtime = match order_by.as_slice() {
        [s] if s.asc => match unalias(&s.expr) {
            Expr::Column(c) => in_schema.index_of_column(c).ok().filter(|i| input.win.get(*i).copied().flatten() == Some(WinCol::Rowtime)).map(|_| s.expr.clone()),
            _ => None,
        },
        _ => None,
    };
    let Some(rowtime) = rowtime else {
        return Err("OVER windows must ORDER BY the table's rowtime attribute (the column of its WATERMARK) ascending".into());
    };
    let n_in = in_schema.fields().len();
    let mut all: Vec<Option<Arc<dyn PhysicalExpr>>> = vec![Some(phys_exprs(std::slice::from_ref(&rowtime), in_schema)?.remove(0))];
    for a in &args {
        all.push(match a {
            Some(e) => Some(phys_exprs(std::slice::from_ref(e), in_schema)?.remove(0)),
            None => None,
        });
    }
    for i in 0..n_in {
        all.push(Some(Arc::new(datafusion::physical_expr::expressions::Column::new(in_schema.field(i).name(), i))));
    }
    let desc = format!(
        "OverAggregate(partitionBy=[{}], orderBy=[{}], select=[{}])",
        partition_by.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "),
        rowtime,
        w.window_expr.iter().map(|e| e.schema_name().to_string()).collect::<Vec<_>>().join(", ")
    );
    let key_rows = KeyRows { name: format!("{desc}: keys"), keys: phys_exprs(partition_by, in_schema)?, args: all };
    let kuid = l.uid("over-keys", &desc);
    let keyed = l.par(input.stream.flat_map(move |b, out| key_rows.run(b, out)).uid(&kuid).name(&format!("{desc}: keys")));
    let out_schema = nullable(w.schema.as_arrow());
    let n_out = out_schema.fields().len();
    let spec = Arc::new(OverSpec { name: desc.clone(), aggs, out_schema });
    let uid = l.uid("over-agg", &desc);
    let stream = l.par(keyed.key_by(|r: &KeyedRow| r.key.clone()).process(OverAgg { out: Output::new(spec.out_schema.clone(), &spec.name), spec, state: None }).uid(&uid).name(&desc));
    let mut win = input.win.clone();
    win.resize(n_out, None);
    Ok(Lowered { stream, updating: None, win })
}

/// The state of one partition key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OverState {
    /// rows waiting for the watermark: rowtime, aggregate arguments, columns
    pending: Vec<(i64, Vec<Value>, Vec<Value>)>,
    /// emitted rows still in some bounded frame: rowtime, aggregate arguments
    history: VecDeque<(i64, Vec<Value>)>,
    /// running accumulators of the unbounded frames
    accs: Vec<Acc>,
}

impl OverSpec {
    /// Emits the pending rows at or before `time`, in rowtime order.
    pub fn fire(&self, st: &mut OverState, time: i64) -> Vec<(RowKind, Vec<Value>)> {
        if st.accs.len() != self.aggs.len() {
            st.accs = self.aggs.iter().map(|(k, _)| k.create()).collect();
        }
        let mut due: Vec<(i64, Vec<Value>, Vec<Value>)> = Vec::new();
        let mut keep = Vec::new();
        for p in st.pending.drain(..) {
            if p.0 <= time { due.push(p) } else { keep.push(p) }
        }
        st.pending = keep;
        due.sort_by_key(|p| p.0); // stable: arrival order among peers
        let mut out = Vec::with_capacity(due.len());
        let mut i = 0;
        while i < due.len() {
            let t = due[i].0;
            let j = i + due[i..].iter().take_while(|p| p.0 == t).count();
            let base = st.history.len();
            for p in &due[i..j] {
                st.history.push_back((t, p.1.clone()));
            }
            // RANGE frames see all peers of the current row
            for (a, ((k, f), acc)) in self.aggs.iter().zip(st.accs.iter_mut()).enumerate() {
                if *f == Frame::UnboundedRange {
                    for p in &due[i..j] {
                        k.update(acc, &p.1[a], 1);
                    }
                }
            }
            for (r, p) in due[i..j].iter().enumerate() {
                let pos = base + r;
                let mut row = p.2.clone();
                for (a, ((k, f), acc)) in self.aggs.iter().zip(st.accs.iter_mut()).enumerate() {
                    let out_type = self.out_schema.field(row.len()).data_type().clone();
                    let v = match f {
                        Frame::UnboundedRows => {
                            k.update(acc, &p.1[a], 1);
                            k.result(acc, &out_type)
                        }
                        Frame::UnboundedRange => k.result(acc, &out_type),
                        Frame::Rows(n) => {
                            let mut fa = k.create();
                            for (_, args) in st.history.range(pos.saturating_sub(*n)..=pos) {
                                k.update(&mut fa, &args[a], 1);
                            }
                            k.result(&fa, &out_type)
                        }
                        Frame::Range(ms) => {
                            let mut fa = k.create();
                            for (ts, args) in st.history.iter().rev().take_while(|(ts, _)| *ts >= t - ms) {
                                let _ = ts;
                                k.update(&mut fa, &args[a], 1);
                            }
                            k.result(&fa, &out_type)
                        }
                    };
                    row.push(v);
                }
                out.push((RowKind::Insert, row));
            }
            i = j;
            self.prune(&mut st.history, t);
        }
        out
    }

    /// Drops history rows no bounded frame of a row at or after `t` can reach.
    fn prune(&self, history: &mut VecDeque<(i64, Vec<Value>)>, t: i64) {
        let rows = self.aggs.iter().filter_map(|(_, f)| if let Frame::Rows(n) = f { Some(*n) } else { None }).max();
        let range = self.aggs.iter().filter_map(|(_, f)| if let Frame::Range(ms) = f { Some(*ms) } else { None }).max();
        while let Some((ts, _)) = history.front() {
            let by_rows = rows.is_some_and(|n| history.len() <= n);
            let by_range = range.is_some_and(|ms| *ts >= t - ms);
            if by_rows || by_range {
                break;
            }
            history.pop_front();
        }
    }
}

/// The keyed process function of OVER aggregations.
#[derive(Clone)]
pub struct OverAgg {
    spec: Arc<OverSpec>,
    state: Option<ValueState<OverState>>,
    out: Output,
}

impl KeyedProcessFunction<GroupKey, KeyedRow, ChangeBatch> for OverAgg {
    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        self.out.flush(out);
    }

    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("over")?);
        Ok(())
    }

    fn process(&mut self, mut r: KeyedRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some(state) = self.state.clone() else { return };
        let Some(Value::Int(ts)) = r.args.first() else { return }; // null rowtime
        let ts = *ts;
        if ts <= ctx.current_watermark() {
            return; // late
        }
        let n = self.spec.aggs.len();
        let row = r.args.split_off(1 + n);
        let args = r.args.split_off(1);
        match state.get_mut(ctx) {
            Some(st) => st.pending.push((ts, args, row)),
            None => state.update(ctx, OverState { pending: vec![(ts, args, row)], ..Default::default() }),
        }
        ctx.register_event_time_timer(ts);
    }

    fn on_timer(&mut self, time: Timestamp, domain: TimeDomain, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        if domain != TimeDomain::EventTime {
            return;
        }
        let Some(state) = self.state.clone() else { return };
        let Some(st) = state.get_mut(ctx) else { return };
        let out = self.spec.fire(st, time);
        self.out.push(ctx, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn spec(aggs: Vec<(AggKind, Frame)>) -> OverSpec {
        let mut fields = vec![Field::new("x", DataType::Int64, true)];
        for i in 0..aggs.len() {
            fields.push(Field::new(format!("a{i}"), DataType::Int64, true));
        }
        OverSpec { name: "o".into(), aggs, out_schema: Arc::new(Schema::new(fields)) }
    }

    fn add(st: &mut OverState, ts: i64, x: i64, n: usize) {
        st.pending.push((ts, vec![Value::Int(x); n], vec![Value::Int(x)]));
    }

    #[test]
    fn frames() {
        let s = spec(vec![(AggKind::Sum, Frame::Rows(1)), (AggKind::Sum, Frame::Range(10)), (AggKind::Sum, Frame::UnboundedRange), (AggKind::Count, Frame::UnboundedRows)]);
        let mut st = OverState::default();
        add(&mut st, 0, 1, 4);
        add(&mut st, 5, 2, 4);
        add(&mut st, 5, 4, 4);
        add(&mut st, 30, 8, 4);
        let out = s.fire(&mut st, 10);
        let rows: Vec<Vec<Value>> = out.into_iter().map(|(_, r)| r).collect();
        assert_eq!(rows[0], vec![Value::Int(1), Value::Int(1), Value::Int(1), Value::Int(1), Value::Int(1)]);
        assert_eq!(rows[1], vec![Value::Int(2), Value::Int(3), Value::Int(7), Value::Int(7), Value::Int(2)]);
        assert_eq!(rows[2], vec![Value::Int(4), Value::Int(6), Value::Int(7), Value::Int(7), Value::Int(3)]);
        let rows = s.fire(&mut st, 40);
        assert_eq!(rows[0].1, vec![Value::Int(8), Value::Int(12), Value::Int(8), Value::Int(15), Value::Int(4)]);
        assert_eq!(st.history.len(), 1);
    }
}
