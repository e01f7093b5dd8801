//! The batch runtime mode (`SET 'execution.runtime-mode' = 'batch'`): an INSERT's
//! query runs on DataFusion's own batch engine over all rows of its (bounded)
//! sources, independently of the streaming lowering, and its final rows go to the
//! sink as inserts. Same semantics bounded and unbounded: the batch result is the
//! streaming run's materialized changelog, except where streaming drops late rows
//! (batch mode has no watermarks: every row counts).
//!
//! On the engine the query is one source operator (parallelism 1) that, when first
//! polled, reads every scanned table to its end, runs the optimized logical plan
//! (its table scans bound to in-memory tables) to completion and emits the result
//! batches into the usual sink path. Like Flink's batch jobs it keeps no
//! checkpointed position: a restarted batch job runs its query again.
//!
//! Window TVFs (placeholder tables of `script::rewrite_window_tvfs`) are
//! materialized from their base's rows with the window bounds of each row
//! (TUMBLE, HOP, CUMULATE; SESSION as proto-sessions `[ts, ts + gap)`, merged
//! where the aggregation over them groups: the rows reaching it, per GROUP BY key
//! without the bounds, get the bounds of the merged session they fall in).

use std::collections::{HashMap, VecDeque};

use arrow::array::RecordBatch;
use arrow::compute::cast;
use datafusion::catalog::MemTable;
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::TableScanBuilder;

use super::*;

/// What a scanned name is, for binding the plan to data.
#[derive(Clone)]
enum Input {
    Table(Arc<TableDef>),
    View(LogicalPlan),
    Window(WindowCall, SchemaRef),
    Lateral(Arc<lateral::LateralCall>),
}

/// One INSERT's query in batch mode: the plan and every input it reads.
pub(super) struct BatchQuery {
    plan: LogicalPlan,
    inputs: HashMap<String, Input>,
}

/// The batch lowering of `plan`: one source operator emitting the query's final rows.
pub(super) fn lower(l: &mut Lower<'_, '_>, plan: &LogicalPlan) -> Result<Lowered, String> {
    let mut inputs = HashMap::new();
    collect_inputs(l.c, plan, &mut inputs)?;
    let q = Arc::new(BatchQuery { plan: plan.clone(), inputs });
    let uid = l.uid("batch-query", "");
    let name = "batch query".to_string();
    let s = l.c.env.source(&name, move |_: &SourceContext| BatchRun { query: q.clone(), rows: None }, WatermarkStrategy::none());
    let stream = s.uid(&uid).parallelism(1);
    Ok(Lowered { stream, updating: None, win: vec![None; plan.schema().fields().len()] })
}

/// The names `plan` scans (through subqueries), with the views' and windows' inputs:
/// every table must be bounded.
fn collect_inputs(c: &Compiler<'_>, plan: &LogicalPlan, out: &mut HashMap<String, Input>) -> Result<(), String> {
    let mut names = Vec::new();
    plan.apply_with_subqueries(|n| {
        if let LogicalPlan::TableScan(s) = n {
            names.push(s.table_name.table().to_string());
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .map_err(df_err)?;
    for name in names {
        add_input(c, &name, out)?;
    }
    Ok(())
}

fn add_input(c: &Compiler<'_>, name: &str, out: &mut HashMap<String, Input>) -> Result<(), String> {
    if out.contains_key(name) {
        return Ok(());
    }
    match c.catalog.get(name) {
        Some(Entry::Table(t)) => {
            if !t.connector.bounded(&t.opts) {
                return Err(format!("batch mode needs bounded sources: table '{name}' is unbounded (connector '{}')", t.opts.connector));
            }
            out.insert(name.to_string(), Input::Table(t.clone()));
        }
        Some(Entry::View(v)) => {
            out.insert(name.to_string(), Input::View(v.clone()));
            collect_inputs(c, &v.clone(), out)?;
        }
        Some(Entry::Window(w)) => {
            let base = c.entry_schema(&w.table).ok_or_else(|| format!("window TVF over '{}': a window over a window is not supported", w.table))?;
            let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
            for n in ["window_start", "window_end", "window_time"] {
                fields.push(Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, None), true));
            }
            out.insert(name.to_string(), Input::Window(w.clone(), Arc::new(Schema::new(fields))));
            add_input(c, &w.table.clone(), out)?;
        }
        Some(Entry::Lateral(l)) => {
            out.insert(name.to_string(), Input::Lateral(l.clone()));
            add_input(c, &l.base.clone(), out)?;
        }
        // a lookup join's table: all its rows, joined by DataFusion
        Some(Entry::Lookup(l)) => {
            let t = &l.dim;
            if !t.connector.bounded(&t.opts) {
                return Err(format!("batch mode needs bounded sources: the lookup table '{}' is unbounded (connector '{}')", t.name, t.opts.connector));
            }
            out.insert(name.to_string(), Input::Table(t.clone()));
        }
        None => return Err(format!("unknown table '{name}'")),
    }
    Ok(())
}

/// Runs a query: binds its scans to data and executes it (a run of its own state).
struct Run<'q> {
    q: &'q BatchQuery,
    ctx: SessionContext,
    /// the rows of each input read so far (with the schema the plan scans)
    data: HashMap<String, (SchemaRef, Vec<RecordBatch>)>,
}

impl BatchQuery {
    /// The query's result rows.
    fn run(&self) -> Result<Vec<RecordBatch>, String> {
        let mut cfg = SessionConfig::new().with_target_partitions(1);
        cfg.options_mut().execution.time_zone = Some("UTC".into());
        let mut r = Run { q: self, ctx: SessionContext::new_with_config(cfg), data: HashMap::new() };
        r.execute(&self.plan)
    }
}

impl Run<'_> {
    fn execute(&mut self, plan: &LogicalPlan) -> Result<Vec<RecordBatch>, String> {
        let bound = self.bind(plan)?;
        self.execute_bound(&bound)
    }

    fn execute_bound(&self, bound: &LogicalPlan) -> Result<Vec<RecordBatch>, String> {
        let state = self.ctx.state();
        // DataFusion's operators may spawn tasks: a runtime of the calling thread's own
        let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| format!("batch query: cannot start a runtime: {e}"))?;
        let phys = rt.block_on(state.create_physical_plan(bound)).map_err(|e| format!("batch plan: {}", df_err(e)))?;
        rt.block_on(datafusion::physical_plan::collect(phys, state.task_ctx())).map_err(|e| format!("batch query: {}", df_err(e)))
    }

    /// Whether `plan` scans a SESSION window placeholder.
    fn scans_session(&self, plan: &LogicalPlan) -> bool {
        let mut found = false;
        let _ = plan.apply_with_subqueries(|n| {
            if let LogicalPlan::TableScan(s) = n
                && let Some(Input::Window(w, _)) = self.q.inputs.get(s.table_name.table())
                && matches!(w.kind, crate::script::WindowKind::Session { .. })
            {
                found = true;
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        found
    }

    /// An aggregation over SESSION windows: its input rows computed, each row's
    /// proto-session replaced by the merged session of its key, as the new input.
    fn merge_sessions(&self, agg: &datafusion::logical_expr::Aggregate) -> Result<LogicalPlan, String> {
        let in_schema = agg.input.schema();
        let col_of = |n: &str| {
            agg.group_expr.iter().find_map(|g| match unalias(g) {
                Expr::Column(c) if c.name == n => in_schema.index_of_column(c).ok(),
                _ => None,
            })
        };
        let (Some(si), Some(ei)) = (col_of("window_start"), col_of("window_end")) else {
            return Err("batch mode: an aggregation over SESSION windows must GROUP BY window_start and window_end".into());
        };
        let keys: Vec<Expr> = agg
            .group_expr
            .iter()
            .filter(|g| !matches!(unalias(g), Expr::Column(c) if in_schema.index_of_column(c).is_ok_and(|i| i == si || i == ei)))
            .cloned()
            .collect();
        let key_exprs = phys_exprs(&keys, in_schema)?;
        let rows = self.execute_bound(&agg.input)?;
        let arrow_schema = Arc::new(Schema::new(in_schema.fields().iter().enumerate().map(|(i, f)| f.as_ref().clone().with_name(format!("c{i}")).with_nullable(true)).collect::<Vec<_>>()));
        let merged = merge_session_rows(&rows, &key_exprs, si, ei, &arrow_schema)?;
        let mem = MemTable::try_new(arrow_schema, vec![merged]).map_err(df_err)?;
        let scan = TableScanBuilder::new("__sessions", provider_as_source(Arc::new(mem))).build().map_err(df_err)?;
        let exprs: Vec<Expr> = in_schema
            .iter()
            .enumerate()
            .map(|(i, (q, f))| Expr::Column(Column::new(Some("__sessions"), format!("c{i}"))).alias_qualified(q.cloned(), f.name()))
            .collect();
        let proj = datafusion::logical_expr::Projection::try_new(exprs, Arc::new(LogicalPlan::TableScan(scan))).map_err(df_err)?;
        let a = datafusion::logical_expr::Aggregate::try_new(Arc::new(LogicalPlan::Projection(proj)), agg.group_expr.clone(), agg.aggr_expr.clone()).map_err(df_err)?;
        Ok(LogicalPlan::Aggregate(a))
    }

    /// `plan` with each table scan reading the input's rows.
    fn bind(&mut self, plan: &LogicalPlan) -> Result<LogicalPlan, String> {
        let mut err = None;
        let out = plan
            .clone()
            .transform_up_with_subqueries(|n| {
                if let LogicalPlan::Aggregate(a) = &n
                    && self.scans_session(&a.input)
                {
                    return match self.merge_sessions(a) {
                        Ok(p) => Ok(Transformed::yes(p)),
                        Err(e) => {
                            err = Some(e);
                            Ok(Transformed::no(n))
                        }
                    };
                }
                let LogicalPlan::TableScan(s) = &n else { return Ok(Transformed::no(n)) };
                let name = s.table_name.table().to_string();
                let (schema, rows) = match self.rows(&name) {
                    Ok(x) => x,
                    Err(e) => {
                        err = Some(e);
                        return Ok(Transformed::no(n));
                    }
                };
                let mem = MemTable::try_new(schema, vec![rows])?;
                let scan = TableScanBuilder::new(s.table_name.clone(), provider_as_source(Arc::new(mem))).with_projection(s.projection.clone()).with_filters(s.filters.clone()).with_fetch(s.fetch).build()?;
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            })
            .map_err(df_err)?;
        if let Some(e) = err {
            return Err(e);
        }
        Ok(out.data)
    }

    /// Every row of input `name` (read, computed or materialized once).
    fn rows(&mut self, name: &str) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
        if let Some(d) = self.data.get(name) {
            return Ok(d.clone());
        }
        let input = self.q.inputs.get(name).cloned().ok_or_else(|| format!("internal: batch input '{name}' not collected"))?;
        let d = match input {
            Input::Table(t) => (t.schema.clone(), read_table(&t)?),
            Input::View(v) => {
                let schema = nullable(v.schema().as_arrow());
                let rows = self.execute(&v)?;
                (schema.clone(), conform(&schema, rows)?)
            }
            Input::Window(call, schema) => {
                let (base_schema, base) = self.rows(&call.table)?;
                let time_col = base_schema.index_of(&call.time_col).map_err(|e| e.to_string())?;
                let op = WindowAssign { name: format!("{:?}({})", call.kind, call.table), kind: call.kind, time_col, schema: schema.clone(), proctime: false };
                let mut rows = Vec::new();
                for b in base {
                    if let Some(w) = op.apply(ChangeBatch::inserts(b))? {
                        rows.push(w.rows.0);
                    }
                }
                (schema.clone(), conform(&schema, rows)?)
            }
            Input::Lateral(call) => {
                let (_, base) = self.rows(&call.base)?;
                let mut rows = Vec::new();
                for b in base {
                    if let Some(l) = call.op.apply(ChangeBatch::inserts(b))? {
                        rows.push(l.rows.0);
                    }
                }
                (call.op.schema.clone(), conform(&call.op.schema, rows)?)
            }
        };
        self.data.insert(name.to_string(), d.clone());
        Ok(d)
    }
}

/// The rows with their proto-session bounds (columns `si`, `ei`) replaced by
/// the merged sessions per key: sessions that overlap or touch merge (as the
/// streaming `SessionAgg` merges them); rows without bounds are dropped.
fn merge_session_rows(rows: &[RecordBatch], keys: &[Arc<dyn PhysicalExpr>], si: usize, ei: usize, schema: &SchemaRef) -> Result<Vec<RecordBatch>, String> {
    use arrow::array::{Array, AsArray, TimestampMillisecondArray};
    use arrow::row::{RowConverter, SortField};
    let mut out = Vec::new();
    let Some(first) = rows.first() else { return Ok(out) };
    let all = arrow::compute::concat_batches(&first.schema(), rows).map_err(|e| e.to_string())?;
    let n = all.num_rows();
    let key_cols: Vec<arrow::array::ArrayRef> = keys.iter().map(|e| e.evaluate(&all).and_then(|v| v.into_array(n))).collect::<Result<_, _>>().map_err(df_err)?;
    // no key (GROUP BY only the bounds): one group
    let key_rows = if key_cols.is_empty() {
        None
    } else {
        let conv = RowConverter::new(key_cols.iter().map(|c| SortField::new(c.data_type().clone())).collect()).map_err(|e| e.to_string())?;
        Some(conv.convert_columns(&key_cols).map_err(|e| e.to_string())?)
    };
    let key_cmp = |a: usize, b: usize| key_rows.as_ref().map_or(std::cmp::Ordering::Equal, |k| k.row(a).cmp(&k.row(b)));
    let ms = |c: &arrow::array::ArrayRef| cast(c, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| e.to_string());
    let (st, en) = (ms(all.column(si))?, ms(all.column(ei))?);
    let (st, en) = (st.as_primitive::<arrow::datatypes::TimestampMillisecondType>(), en.as_primitive::<arrow::datatypes::TimestampMillisecondType>());
    let mut order: Vec<usize> = (0..n).filter(|&i| st.is_valid(i) && en.is_valid(i)).collect();
    order.sort_by(|&a, &b| key_cmp(a, b).then(st.value(a).cmp(&st.value(b))));
    let (mut new_s, mut new_e) = (vec![0i64; n], vec![0i64; n]);
    let mut i = 0;
    while i < order.len() {
        // one merged session: rows of the same key while they reach the session so far
        let (mut j, s0, mut e0) = (i + 1, st.value(order[i]), en.value(order[i]));
        while j < order.len() && key_cmp(order[j], order[i]).is_eq() && st.value(order[j]) <= e0 {
            e0 = e0.max(en.value(order[j]));
            j += 1;
        }
        for &r in &order[i..j] {
            new_s[r] = s0;
            new_e[r] = e0;
        }
        i = j;
    }
    let take = arrow::array::UInt32Array::from(order.iter().map(|&r| r as u32).collect::<Vec<_>>());
    let mut cols: Vec<arrow::array::ArrayRef> = all.columns().iter().map(|c| arrow::compute::take(c, &take, None)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    for (at, v) in [(si, &new_s), (ei, &new_e)] {
        let a: arrow::array::ArrayRef = Arc::new(TimestampMillisecondArray::from(order.iter().map(|&r| v[r]).collect::<Vec<_>>()));
        cols[at] = cast(&a, schema.field(at).data_type()).map_err(|e| e.to_string())?;
    }
    out.push(RecordBatch::try_new(schema.clone(), cols).map_err(|e| format!("session rows: {e}"))?);
    Ok(out)
}

/// `rows` with `schema` (same column types; the schema may be more nullable).
fn conform(schema: &SchemaRef, rows: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, String> {
    rows.into_iter().map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| format!("batch rows: {e}"))).collect()
}

/// All rows of a bounded table, computed columns evaluated.
fn read_table(t: &TableDef) -> Result<Vec<RecordBatch>, String> {
    let factory = t.connector.source(&t.opts, t.physical.clone()).map_err(|m| format!("table '{}': {m}", t.name))?;
    let ctx = SourceContext { subtask: 0, parallelism: 1 };
    let mut src = factory(&ctx);
    src.open(&ctx).map_err(|e| format!("table '{}': {e}", t.name))?;
    let mut out = Vec::new();
    while let Some(b) = src.next_batch(8192).map_err(|e| format!("table '{}': {e}", t.name))? {
        if b.num_rows() == 0 {
            // nothing available now (a rate-limited source): wait a little
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        if let Some(b) = t.computed.apply(ChangeBatch::inserts(b)).map_err(|e| format!("table '{}': {e}", t.name))? {
            out.push(b.rows.0);
        }
    }
    conform(&t.schema, out)
}

/// The engine source of a batch query: runs it when first polled, then emits its rows.
struct BatchRun {
    query: Arc<BatchQuery>,
    rows: Option<VecDeque<RecordBatch>>,
}

impl Source<ChangeBatch> for BatchRun {
    fn poll(&mut self, out: &mut SourceOutput<'_, ChangeBatch>) -> Result<SourcePoll, ConnectorError> {
        if out.remaining() == 0 {
            return Ok(SourcePoll::Ready);
        }
        if self.rows.is_none() {
            self.rows = Some(self.query.run().map_err(ConnectorError::Other)?.into());
        }
        match self.rows.as_mut().and_then(VecDeque::pop_front) {
            Some(b) => {
                if b.num_rows() > 0 {
                    out.collect_at(weir::record::NO_TIMESTAMP, ChangeBatch::inserts(b));
                }
                Ok(SourcePoll::Ready)
            }
            None => Ok(SourcePoll::Finished),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, TimestampMillisecondArray};

    #[test]
    fn sessions_merge_per_key_when_they_overlap_or_touch() {
        let ts = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("s", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("e", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        // key 1: [0,5) [5,10) touch, [20,25) apart; key 2: [3,8) alone
        let b = RecordBatch::try_new(
            ts.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 1, 2])),
                Arc::new(TimestampMillisecondArray::from(vec![5, 0, 20, 3])),
                Arc::new(TimestampMillisecondArray::from(vec![10, 5, 25, 8])),
            ],
        )
        .unwrap();
        let key: Arc<dyn PhysicalExpr> = Arc::new(datafusion::physical_expr::expressions::Column::new("k", 0));
        let out = merge_session_rows(&[b], &[key], 1, 2, &ts).unwrap();
        let o = &out[0];
        let col = |i: usize| o.column(i).as_primitive::<arrow::datatypes::TimestampMillisecondType>().values().to_vec();
        let k = o.column(0).as_primitive::<arrow::datatypes::Int64Type>().values().to_vec();
        let rows: Vec<(i64, i64, i64)> = (0..o.num_rows()).map(|i| (k[i], col(1)[i], col(2)[i])).collect();
        assert_eq!(rows, vec![(1, 0, 10), (1, 0, 10), (1, 20, 25), (2, 3, 8)]);
        // no key: one group
        let b = RecordBatch::try_new(ts.clone(), vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(TimestampMillisecondArray::from(vec![0, 4])), Arc::new(TimestampMillisecondArray::from(vec![5, 9]))]).unwrap();
        let out = merge_session_rows(&[b], &[], 1, 2, &ts).unwrap();
        assert_eq!(out[0].column(2).as_primitive::<arrow::datatypes::TimestampMillisecondType>().values().to_vec(), vec![9, 9]);
    }
}
