//! Processing-time attributes and windows. A column is a processing-time attribute
//! when it is `PROCTIME()`: a computed column `pt AS PROCTIME()` of a table or a
//! view's `PROCTIME() AS pt`, kept through projections and filters. A window TVF
//! (or legacy group window) over one is aggregated by [`ProcWindowAgg`]: the rows of
//! a key are assigned to windows by the wall clock of the aggregation operator
//! when they reach it (as Flink's processing-time windows: no row is ever late), and
//! a window fires on a processing-time timer at its end. When the input ends
//! (bounded sources), the windows still open fire at once, as in Flink.
//!
//! The window assignment before the aggregation only adds the bounds columns (of
//! the row's first window by its `PROCTIME()` value, each row once); the aggregation
//! is keyed without them. A processing-time window TVF must be aggregated.

use weir::record::Timestamp;
use weir::state::{OpenContext, ValueState};
use weir::{JobError, KeyedContext, KeyedProcessFunction, TimeDomain};

use super::*;
use crate::ops::{GroupKey, KeyedRow, RowKind, assign_windows, fail, rows_to_batch};
use crate::script::WindowKind;
use crate::session::Session;

impl Lower<'_, '_> {
    /// Whether column `i` of the catalog entry `name` is a processing-time attribute.
    pub(super) fn entry_proctime(&self, name: &str, i: usize) -> bool {
        self.c.entry_proctime(name, i)
    }
}

impl Compiler<'_> {
    /// Whether column `i` of `plan` is a processing-time attribute, traced through
    /// projections, filters and aliases to a `PROCTIME()` or a table's.
    pub(super) fn is_proctime(&self, plan: &LogicalPlan, i: usize) -> bool {
        match plan {
            LogicalPlan::Projection(p) => match p.expr.get(i).map(unalias) {
                Some(Expr::Column(c)) => p.input.schema().index_of_column(c).is_ok_and(|k| self.is_proctime(&p.input, k)),
                Some(Expr::ScalarFunction(f)) => f.func.name() == crate::functions::PROCTIME,
                _ => false,
            },
            LogicalPlan::Filter(f) => self.is_proctime(&f.input, i),
            LogicalPlan::SubqueryAlias(a) => self.is_proctime(&a.input, i),
            LogicalPlan::TableScan(s) => {
                let Some(idx) = s.projection.as_ref().map_or(Some(i), |p| p.get(i).copied()) else { return false };
                self.entry_proctime(s.table_name.table(), idx)
            }
            _ => false,
        }
    }

    /// Whether column `i` of the catalog entry `name` is a processing-time attribute.
    pub(super) fn entry_proctime(&self, name: &str, i: usize) -> bool {
        match self.catalog.get(name) {
            Some(Entry::Table(t)) => t.proctime == Some(i),
            Some(Entry::View(v)) => self.is_proctime(v, i),
            Some(Entry::Window(call)) => {
                let n = self.entry_schema(&call.table).map_or(0, |s| s.fields().len());
                i < n && self.entry_proctime(&call.table, i)
            }
            Some(Entry::Lateral(l)) => i < l.op.input_width() && self.entry_proctime(&l.base, i),
            Some(Entry::Lookup(_)) | None => false,
        }
    }
}

/// A query's result must not carry the bounds of a processing-time window TVF: its
/// rows are assigned to windows only by a window aggregation.
pub(super) fn check_aggregated(l: &Lowered) -> Result<(), String> {
    if l.win.iter().any(|w| w.is_some_and(WinCol::is_proc_bound)) {
        return Err("a window TVF over a processing-time attribute (PROCTIME()) must be aggregated: GROUP BY window_start, window_end (window joins, Top-N and deduplication over processing time are not supported)".into());
    }
    Ok(())
}

/// The column of `CREATE TABLE` whose computed expression is `PROCTIME()`, if any.
pub(super) fn table_proctime(computed: &[(usize, String, String, script::Pos)], schema: &Schema) -> Option<usize> {
    let is_proctime = |e: &str| e.chars().filter(|c| !c.is_whitespace()).collect::<String>().eq_ignore_ascii_case("PROCTIME()");
    computed.iter().find(|c| is_proctime(&c.2)).and_then(|c| schema.index_of(&c.1).ok())
}

/// The keyed process function of a processing-time window aggregation. The key is
/// the GROUP BY key without `window_start`/`window_end`.
#[derive(Clone)]
pub(crate) struct ProcWindowAgg {
    spec: Arc<AggSpec>,
    kind: WindowKind,
    /// positions of window_start / window_end in the output's group columns
    start_at: usize,
    end_at: usize,
    /// the open windows of the key, sorted by start (sessions: merged)
    state: Option<ValueState<Vec<Session>>>,
}

impl ProcWindowAgg {
    pub(crate) fn new(spec: Arc<AggSpec>, kind: WindowKind, start_at: usize, end_at: usize) -> Self {
        ProcWindowAgg { spec, kind, start_at, end_at, state: None }
    }

    fn emit(&self, key: &GroupKey, done: Vec<Session>, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        for s in done.into_iter().filter(|s| s.rows > 0) {
            let row = crate::session::window_row(&self.spec, self.start_at, self.end_at, key, s.start, s.end, &s.accs);
            let b = rows_to_batch(&self.spec.out_schema, &[(RowKind::Insert, row)]).unwrap_or_else(|e| fail(&self.spec.name, e));
            ctx.emit_at(s.end - 1, b);
        }
    }
}

impl KeyedProcessFunction<GroupKey, KeyedRow, ChangeBatch> for ProcWindowAgg {
    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("proctime-windows")?);
        Ok(())
    }

    fn process(&mut self, r: KeyedRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some(state) = self.state.clone() else { return };
        let now = ctx.current_processing_time();
        let sign = if r.kind.is_accumulate() { 1 } else { -1 };
        let mut accs = self.spec.new_accs();
        for ((k, a), v) in self.spec.aggs.iter().zip(accs.iter_mut()).zip(&r.args) {
            k.update(a, v, sign);
        }
        let mut windows = state.value(ctx).unwrap_or_default();
        if windows.is_empty() {
            // the input's end fires what is still open (the watermark reaches its
            // maximum only then)
            ctx.register_event_time_timer(weir::time::MAX_WATERMARK);
        }
        // a window fires once the clock has passed it: at its end, after which no row
        // is assigned to it any more
        if let WindowKind::Session { gap } = self.kind {
            let spec = &self.spec;
            let (at, absorbed) = crate::session::merge(&mut windows, Session { start: now, end: now + gap, rows: sign, accs }, |into, from| {
                for ((k, a), b) in spec.aggs.iter().zip(into.iter_mut()).zip(from) {
                    k.merge(a, b);
                }
            });
            for e in absorbed {
                ctx.delete_processing_time_timer(e);
            }
            ctx.register_processing_time_timer(windows[at].end);
        } else {
            let mut assigned = Vec::new();
            assign_windows(self.kind, now, &mut assigned);
            for (start, end) in assigned {
                let at = match windows.iter().position(|w| w.start == start && w.end == end) {
                    Some(at) => at,
                    None => {
                        let at = windows.partition_point(|w| (w.start, w.end) < (start, end));
                        windows.insert(at, Session { start, end, rows: 0, accs: self.spec.new_accs() });
                        ctx.register_processing_time_timer(end);
                        at
                    }
                };
                let w = &mut windows[at];
                w.rows += sign;
                for ((k, a), v) in self.spec.aggs.iter().zip(w.accs.iter_mut()).zip(&r.args) {
                    k.update(a, v, sign);
                }
            }
        }
        state.update(ctx, windows);
    }

    fn on_timer(&mut self, time: Timestamp, domain: TimeDomain, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some(state) = self.state.clone() else { return };
        let Some(windows) = state.value(ctx) else { return };
        let (done, open): (Vec<Session>, Vec<Session>) = match domain {
            TimeDomain::ProcessingTime => windows.into_iter().partition(|w| w.end <= time),
            // the end of the input: every window fires
            TimeDomain::EventTime => {
                for w in &windows {
                    ctx.delete_processing_time_timer(w.end);
                }
                (windows, Vec::new())
            }
        };
        if open.is_empty() {
            state.clear(ctx);
            ctx.delete_event_time_timer(weir::time::MAX_WATERMARK);
        } else {
            state.update(ctx, open);
        }
        let key = ctx.key().clone();
        self.emit(&key, done, ctx);
    }
}
