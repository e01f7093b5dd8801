//! Lookup joins (Flink's processing-time temporal join):
//!
//! ```sql
//! SELECT o.id, d.name FROM (SELECT *, PROCTIME() AS pt FROM orders) AS o
//! [LEFT] JOIN dim FOR SYSTEM_TIME AS OF o.pt AS d ON o.product = d.id [AND <condition>];
//! ```
//!
//! `dim FOR SYSTEM_TIME AS OF o.pt` becomes a placeholder table with the columns of
//! `dim` before planning (`script::rewrite_lookups`), so DataFusion plans an ordinary
//! join; a join whose right side scans a placeholder is lowered here instead of as a
//! stream-stream join: a stateless columnar operator that, for each probe batch,
//! evaluates the probe keys (any expression of the left side: `mod(b.x, 100) = d.k`),
//! looks the rows up in the table's connector ([`weir_connectors::LookupSource`]),
//! applies what the plan keeps of the right side (projections, filters pushed to it)
//! and the residual condition, and emits the joined rows with the kind of their probe
//! row (so an updating probe side stays updating); a LEFT join emits the probe row with
//! nulls when nothing matches. It keeps no state: a restored job looks up again.
//!
//! The `AS OF` column must be a processing-time attribute of the left side (checked on
//! the plan before optimization, which prunes the unused column); event-time temporal
//! joins over versioned tables are refused. In batch mode the placeholder reads the
//! whole (bounded) table and DataFusion joins it.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, filter_record_batch, take};
use datafusion::common::JoinType;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::Join;
use weir::record::Collector;
use weir_connectors::LookupSource;

use super::*;

/// A lookup table's placeholder: the call and the table.
pub(super) struct LookupEntry {
    pub call: script::LookupCall,
    pub dim: Arc<TableDef>,
}

impl Compiler<'_> {
    /// Rewrites the `t FOR SYSTEM_TIME AS OF x` of `text` into placeholder tables.
    pub(super) fn register_lookups(&mut self, text: &mut String) -> Result<(), SqlError> {
        let calls = script::rewrite_lookups(self.script, text, &mut self.next_window)?;
        for call in calls {
            let pos = call.pos;
            let e = |m: String| SqlError { pos, statement: None, message: m };
            let dim = match self.catalog.get(&call.table) {
                Some(Entry::Table(t)) => t.clone(),
                Some(_) => return Err(e(format!("FOR SYSTEM_TIME AS OF: '{}' is not a table; a lookup join reads a table whose connector looks rows up by key", call.table))),
                None => return Err(e(format!("unknown table '{}'", call.table))),
            };
            self.register(&call.placeholder, dim.schema.clone()).map_err(e)?;
            self.catalog.insert(call.placeholder.clone(), Entry::Lookup(Arc::new(LookupEntry { call, dim })));
        }
        Ok(())
    }

    /// The lookup table `plan` reads, if it is one (through aliases, projections and filters).
    pub(super) fn lookup_of(&self, plan: &LogicalPlan) -> Option<Arc<LookupEntry>> {
        match plan {
            LogicalPlan::SubqueryAlias(a) => self.lookup_of(&a.input),
            LogicalPlan::Filter(f) => self.lookup_of(&f.input),
            LogicalPlan::Projection(p) => self.lookup_of(&p.input),
            LogicalPlan::TableScan(s) => match self.catalog.get(s.table_name.table()) {
                Some(Entry::Lookup(e)) => Some(e.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Checks the lookup joins of a plan before optimization: inner or left joins
    /// whose `AS OF` column is a processing-time attribute of the left side.
    pub(super) fn check_lookups(&self, plan: &LogicalPlan) -> Result<(), String> {
        if !self.catalog.values().any(|e| matches!(e, Entry::Lookup(_))) {
            return Ok(());
        }
        // analyzed (wildcards expanded, types coerced), not optimized (which prunes the AS OF column)
        let state = self.ctx.state();
        let plan = state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {}).map_err(df_err)?;
        let mut err = None;
        plan.apply_with_subqueries(|n| {
            if let LogicalPlan::Join(j) = n
                && err.is_none()
            {
                if let Some(e) = self.lookup_of(&j.right) {
                    err = self.check_lookup(j, &e).err();
                } else if let Some(e) = self.lookup_of(&j.left) {
                    err = Some(format!("the lookup table '{}' (FOR SYSTEM_TIME AS OF) must be the right side of its JOIN", e.call.table));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(df_err)?;
        err.map_or(Ok(()), Err)
    }

    fn check_lookup(&self, j: &Join, e: &LookupEntry) -> Result<(), String> {
        let t = &e.call.time;
        if !matches!(j.join_type, JoinType::Inner | JoinType::Left) {
            return Err(format!("a lookup join (FOR SYSTEM_TIME AS OF) is an INNER or LEFT join; {} joins are not supported", j.join_type));
        }
        let col = Column::from_qualified_name_ignore_case(t.replace(['`', '"'], ""));
        let Ok(i) = j.left.schema().index_of_column(&col) else {
            let cols: Vec<String> = j.left.schema().columns().iter().map(|c| c.flat_name()).collect();
            return Err(format!("FOR SYSTEM_TIME AS OF {t}: the left side of the join has no column {t} (its columns: {})", cols.join(", ")));
        };
        if !self.is_proctime(&j.left, i) {
            return Err(format!(
                "FOR SYSTEM_TIME AS OF {t}: {t} is not a processing-time attribute (PROCTIME()); only lookup joins are supported, event-time temporal joins (over a versioned table) are not supported yet"
            ));
        }
        Ok(())
    }
}

/// The physical column of the lookup table that right-side key `e` is.
fn dim_column(plan: &LogicalPlan, e: &Expr, dim: &TableDef) -> Result<usize, String> {
    let c = match unalias(e) {
        Expr::Column(c) => c,
        Expr::Cast(_) | Expr::TryCast(_) => {
            return Err(format!("the lookup key {e} of '{}' would be cast to the type of the left side's key: cast the left side's key to the column's type instead (ON CAST(x AS ...) = d.k)", dim.name));
        }
        other => return Err(format!("a lookup join's key on the lookup table must be one of its columns, not {other} (compute the key on the left side: ON f(o.x) = d.k)")),
    };
    let mut plan = plan;
    let mut i = plan.schema().index_of_column(c).map_err(df_err)?;
    loop {
        match plan {
            LogicalPlan::SubqueryAlias(a) => plan = &a.input,
            LogicalPlan::Filter(f) => plan = &f.input,
            LogicalPlan::Projection(p) => match p.expr.get(i).map(unalias) {
                Some(Expr::Column(c)) => {
                    i = p.input.schema().index_of_column(c).map_err(df_err)?;
                    plan = &p.input;
                }
                _ => return Err(format!("a lookup join's key on the lookup table must be one of its columns, not {e}")),
            },
            LogicalPlan::TableScan(s) => {
                let idx = s.projection.as_ref().map_or(Some(i), |p| p.get(i).copied()).ok_or("internal: lookup key outside the scan")?;
                let name = dim.schema.field(idx).name();
                return dim.physical.index_of(name).map_err(|_| format!("the lookup key '{name}' of '{}' is a computed column: look up by a physical column", dim.name));
            }
            other => return Err(format!("internal: {} on the lookup side of a join", other.display())),
        }
    }
}

/// What the plan keeps of the right side, bottom up (the scan's projection first).
fn right_steps(plan: &LogicalPlan, dim: &TableDef, out: &mut Vec<Step>) -> Result<(), String> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => right_steps(&a.input, dim, out),
        LogicalPlan::Filter(f) => {
            right_steps(&f.input, dim, out)?;
            out.push(Step::Filter(phys_exprs(std::slice::from_ref(&f.predicate), f.input.schema())?.remove(0)));
            Ok(())
        }
        LogicalPlan::Projection(p) => {
            right_steps(&p.input, dim, out)?;
            out.push(Step::Project(phys_exprs(&p.expr, p.input.schema())?, nullable(p.schema.as_arrow())));
            Ok(())
        }
        LogicalPlan::TableScan(s) => {
            if !s.filters.is_empty() || s.fetch.is_some() {
                return Err(format!("internal: unexpected pushed-down filters or limit on {}", s.table_name));
            }
            if let Some(idx) = &s.projection {
                let exprs = idx.iter().map(|i| Arc::new(datafusion::physical_expr::expressions::Column::new(dim.schema.field(*i).name(), *i)) as Arc<dyn PhysicalExpr>).collect();
                out.push(Step::Project(exprs, nullable(s.projected_schema.as_arrow())));
            }
            Ok(())
        }
        other => Err(format!("internal: {} on the lookup side of a join", other.display())),
    }
}

/// The lookup join operator (see the module's documentation).
pub(crate) struct LookupJoin {
    pub name: String,
    /// over the probe (left) rows
    pub probe_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// the types of the looked-up key columns
    pub key_types: Vec<DataType>,
    pub source: Arc<dyn LookupSource>,
    /// the table's physical columns -> its declared columns
    pub computed: Calc,
    /// declared columns -> the right side of the join
    pub steps: Vec<Step>,
    /// the right side's columns
    pub right_schema: SchemaRef,
    /// the residual condition, over the joined columns
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub outer: bool,
    /// left columns, then right ones
    pub schema: SchemaRef,
}

/// Keeps the rows (and their probe rows) where `mask` is true (nulls: false).
fn keep(b: RecordBatch, idx: Vec<u32>, mask: &ArrayRef) -> Result<(RecordBatch, Vec<u32>), String> {
    let mask = mask.as_boolean_opt().ok_or("a lookup join condition is not boolean")?;
    let mask = if mask.null_count() > 0 { arrow::compute::prep_null_mask_filter(mask) } else { mask.clone() };
    let rows = filter_record_batch(&b, &mask).map_err(|e| e.to_string())?;
    let idx = idx.into_iter().zip(mask.values().iter()).filter(|(_, m)| *m).map(|(i, _)| i).collect();
    Ok((rows, idx))
}

impl LookupJoin {
    /// The right side's rows found for the probe keys, and the probe row of each.
    fn right_rows(&self, keys: &[ArrayRef]) -> Result<(RecordBatch, Vec<u32>), String> {
        let found = self.source.lookup(keys).map_err(|e| e.to_string())?;
        let mut idx = found.probe_rows;
        if idx.is_empty() {
            return Ok((RecordBatch::new_empty(self.right_schema.clone()), idx));
        }
        let Some(declared) = self.computed.apply(ChangeBatch::inserts(found.rows))? else { return Ok((RecordBatch::new_empty(self.right_schema.clone()), Vec::new())) };
        let mut rows = declared.rows.0;
        for s in &self.steps {
            let n = rows.num_rows();
            match s {
                Step::Filter(p) => {
                    let mask = p.evaluate(&rows).and_then(|v| v.into_array(n)).map_err(|e| e.to_string())?;
                    (rows, idx) = keep(rows, idx, &mask)?;
                }
                Step::Project(exprs, schema) => {
                    let cols: Vec<ArrayRef> = exprs
                        .iter()
                        .zip(schema.fields())
                        .map(|(e, f)| {
                            let a = e.evaluate(&rows).and_then(|v| v.into_array(n)).map_err(|e| e.to_string())?;
                            if a.data_type() == f.data_type() { Ok(a) } else { cast(&a, f.data_type()).map_err(|e| e.to_string()) }
                        })
                        .collect::<Result<_, String>>()?;
                    rows = RecordBatch::try_new_with_options(schema.clone(), cols, &arrow::array::RecordBatchOptions::new().with_row_count(Some(n))).map_err(|e| e.to_string())?;
                }
            }
        }
        let cols = rows.columns().to_vec();
        let rows = RecordBatch::try_new_with_options(self.right_schema.clone(), cols, &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.num_rows()))).map_err(|e| e.to_string())?;
        Ok((rows, idx))
    }

    pub fn apply(&self, b: ChangeBatch) -> Result<Option<ChangeBatch>, String> {
        let probe = &b.rows.0;
        let n = probe.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let keys: Vec<ArrayRef> = self
            .probe_keys
            .iter()
            .zip(&self.key_types)
            .map(|(e, t)| {
                let a = e.evaluate(probe).and_then(|v| v.into_array(n)).map_err(|e| format!("the lookup key: {e}"))?;
                if a.data_type() == t { Ok(a) } else { cast(&a, t).map_err(|e| format!("the lookup key: {e}")) }
            })
            .collect::<Result<_, String>>()?;
        let (right, idx) = self.right_rows(&keys)?;
        // the joined rows, then the residual condition
        let join = |right: &RecordBatch, left_idx: &UInt32Array| -> Result<RecordBatch, String> {
            let mut cols: Vec<ArrayRef> = probe.columns().iter().map(|c| take(c, left_idx, None)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
            cols.extend(right.columns().iter().cloned());
            RecordBatch::try_new_with_options(self.schema.clone(), cols, &arrow::array::RecordBatchOptions::new().with_row_count(Some(left_idx.len()))).map_err(|e| e.to_string())
        };
        let mut joined = join(&right, &UInt32Array::from(idx.clone()))?;
        let mut idx = idx;
        if let Some(f) = &self.filter
            && joined.num_rows() > 0
        {
            let mask = f.evaluate(&joined).and_then(|v| v.into_array(joined.num_rows())).map_err(|e| e.to_string())?;
            (joined, idx) = keep(joined, idx, &mask)?;
        }
        if self.outer {
            // every probe row: its matches, or itself with nulls
            let (mut rows, mut right_rows): (Vec<u32>, Vec<Option<u32>>) = (Vec::with_capacity(n.max(idx.len())), Vec::with_capacity(n.max(idx.len())));
            let mut next = 0;
            for i in 0..n as u32 {
                let first = next;
                while next < idx.len() && idx[next] == i {
                    rows.push(i);
                    right_rows.push(Some(next as u32));
                    next += 1;
                }
                if first == next {
                    rows.push(i);
                    right_rows.push(None);
                }
            }
            let width = probe.num_columns();
            let r_idx = UInt32Array::from(right_rows);
            let right_cols: Vec<ArrayRef> = joined.columns()[width..].iter().map(|c| take(c, &r_idx, None)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
            let right = RecordBatch::try_new_with_options(self.right_schema.clone(), right_cols, &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()))).map_err(|e| e.to_string())?;
            joined = join(&right, &UInt32Array::from(rows.clone()))?;
            idx = rows;
        }
        if joined.num_rows() == 0 {
            return Ok(None);
        }
        let kinds = b.kinds.as_ref().map(|k| idx.iter().map(|i| k[*i as usize]).collect());
        Ok(Some(ChangeBatch { rows: weir::arrow::ArrowBatch(joined), kinds }))
    }

    /// As a `flat_map` function.
    pub fn run(&self, b: ChangeBatch, out: &mut Collector<'_, ChangeBatch>) {
        match self.apply(b) {
            Ok(Some(b)) => out.emit(b),
            Ok(None) => {}
            Err(e) => crate::ops::fail(&self.name, e),
        }
    }
}

impl Lower<'_, '_> {
    pub(super) fn lookup_join(&mut self, j: &Join, e: Arc<LookupEntry>) -> Result<Lowered, String> {
        let dim = e.dim.clone();
        if !matches!(j.join_type, JoinType::Inner | JoinType::Left) {
            return Err(format!("a lookup join (FOR SYSTEM_TIME AS OF) is an INNER or LEFT join; {} joins are not supported", j.join_type));
        }
        if j.on.is_empty() {
            return Err(format!("a lookup join needs an equality between the left side and a column of '{}' (ON o.k = d.k)", dim.name));
        }
        let mut key_cols = Vec::new();
        let mut probe = Vec::new();
        for (a, b) in &j.on {
            key_cols.push(dim_column(&j.right, b, &dim)?);
            probe.push(a.clone());
        }
        let mut steps = Vec::new();
        right_steps(&j.right, &dim, &mut steps)?;
        let source = dim.connector.lookup(&dim.opts, dim.physical.clone(), &key_cols).map_err(|m| format!("table '{}': {m}", dim.name))?;
        let filter = j.filter.as_ref().map(|f| phys_exprs(std::slice::from_ref(f), &j.schema)).transpose()?.map(|mut v| v.remove(0));
        let desc = format!(
            "LookupJoin(table=[{}], joinType=[{}], lookup=[{}]{})",
            dim.name,
            if j.join_type == JoinType::Left { "LeftOuterJoin" } else { "InnerJoin" },
            j.on.iter().map(|(a, b)| format!("{b}={a}")).collect::<Vec<_>>().join(", "),
            j.filter.as_ref().map(|f| format!(", where=[{f}]")).unwrap_or_default()
        );
        let op = Arc::new(LookupJoin {
            name: desc.clone(),
            probe_keys: phys_exprs(&probe, j.left.schema())?,
            key_types: key_cols.iter().map(|c| dim.physical.field(*c).data_type().clone()).collect(),
            source,
            computed: dim.computed.clone(),
            steps,
            right_schema: nullable(j.right.schema().as_arrow()),
            filter,
            outer: j.join_type == JoinType::Left,
            schema: nullable(j.schema.as_arrow()),
        });
        let l = self.lower(&j.left)?;
        let uid = self.uid("lookup-join", &desc);
        let stream = self.par(l.stream.flat_map(move |b, out| op.run(b, out)).uid(&uid).name(&desc));
        let mut win = l.win;
        win.extend(std::iter::repeat_n(None, j.right.schema().fields().len()));
        Ok(Lowered { stream, updating: l.updating, win })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use datafusion::physical_expr::expressions::{BinaryExpr, Column as PColumn, Literal};
    use datafusion::logical_expr::Operator;
    use weir_connectors::{LookupRows, RowKind};

    /// key -> value rows: 1 -> a, 2 -> b, 2 -> bb
    struct Dim;
    impl LookupSource for Dim {
        fn lookup(&self, keys: &[ArrayRef]) -> Result<LookupRows, weir::connector::ConnectorError> {
            let k = keys[0].as_primitive::<arrow::datatypes::Int64Type>();
            let (mut probe, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..k.len() {
                if k.is_null(i) {
                    continue;
                }
                for (key, v) in [(1, "a"), (2, "b"), (2, "bb")] {
                    if k.value(i) == key {
                        probe.push(i as u32);
                        ks.push(key);
                        vs.push(v);
                    }
                }
            }
            let rows = RecordBatch::try_new(dim_schema(), vec![Arc::new(Int64Array::from(ks)), Arc::new(StringArray::from(vs))]).unwrap();
            Ok(LookupRows { probe_rows: probe, rows })
        }
    }

    fn dim_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true), Field::new("v", DataType::Utf8, true)]))
    }

    fn op(outer: bool, filter: Option<Arc<dyn PhysicalExpr>>) -> LookupJoin {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true), Field::new("k", DataType::Int64, true), Field::new("v", DataType::Utf8, true)]));
        // probe key: x % 10
        let key: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(Arc::new(PColumn::new("x", 0)), Operator::Modulo, Arc::new(Literal::new(datafusion::common::ScalarValue::Int64(Some(10))))));
        LookupJoin {
            name: "test".into(),
            probe_keys: vec![key],
            key_types: vec![DataType::Int64],
            source: Arc::new(Dim),
            computed: Calc { name: "c".into(), steps: vec![] },
            steps: vec![],
            right_schema: dim_schema(),
            filter,
            outer,
            schema,
        }
    }

    fn probe(xs: Vec<Option<i64>>, kinds: Option<Vec<RowKind>>) -> ChangeBatch {
        let s = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        ChangeBatch { rows: weir::arrow::ArrowBatch(RecordBatch::try_new(s, vec![Arc::new(Int64Array::from(xs))]).unwrap()), kinds }
    }

    fn rows(b: &ChangeBatch) -> Vec<String> {
        let opts = arrow::util::display::FormatOptions::default().with_null("null");
        let f: Vec<_> = b.rows.0.columns().iter().map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        (0..b.num_rows()).map(|i| format!("{}{}", b.kind(i).short(), f.iter().map(|f| f.value(i).to_string()).collect::<Vec<_>>().join(","))).collect()
    }

    #[test]
    fn inner_joins_every_match_of_a_computed_key() {
        let out = op(false, None).apply(probe(vec![Some(12), Some(3), Some(21), None], None)).unwrap().unwrap();
        assert_eq!(rows(&out), ["+I12,2,b", "+I12,2,bb", "+I21,1,a"]);
    }

    #[test]
    fn left_keeps_misses_with_nulls_and_the_probe_kinds() {
        let out = op(true, None).apply(probe(vec![Some(3), Some(11), None], Some(vec![RowKind::Insert, RowKind::Delete, RowKind::UpdateAfter]))).unwrap().unwrap();
        assert_eq!(rows(&out), ["+I3,null,null", "-D11,1,a", "+Unull,null,null"]);
    }

    #[test]
    fn the_residual_condition_applies_after_the_lookup() {
        // v <> 'b'
        let f: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(Arc::new(PColumn::new("v", 2)), Operator::NotEq, Arc::new(Literal::new(datafusion::common::ScalarValue::Utf8(Some("b".into()))))));
        let out = op(false, Some(f.clone())).apply(probe(vec![Some(2), Some(4)], None)).unwrap().unwrap();
        assert_eq!(rows(&out), ["+I2,2,bb"]);
        let out = op(true, Some(f)).apply(probe(vec![Some(4), Some(2)], None)).unwrap().unwrap();
        assert_eq!(rows(&out), ["+I4,null,null", "+I2,2,bb"]);
        assert!(op(false, None).apply(probe(vec![Some(5)], None)).unwrap().is_none());
    }
}
