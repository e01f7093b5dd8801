//! Evaluating an expression over only what it reads.
//!
//! DataFusion evaluates `CASE WHEN` (and a selective `AND`/`OR`) branch by branch,
//! filtering the batch for each branch. It narrows the batch to the columns the
//! expression references first, but a reference to one field of a nested column
//! (`bid.dateTime`) keeps the whole `ROW`: each branch then copies every string
//! of the row. The Nexmark table's computed `dateTime` column is such a `CASE` over
//! `person.dateTime`, `auction.dateTime` and `bid.dateTime`, and it cost more than
//! the rest of a pass-through query.
//!
//! [`narrow`] wraps such an expression in a [`Narrowed`] one: the nested-field reads
//! (`get_field` over a column, a child array, no copy) and the plain columns it uses
//! are evaluated first into a batch of their own, and the expression, rewritten to
//! read that batch, runs on it. The result is the same; the branches filter a few
//! flat columns.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr, Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};

/// `expr` (over `schema`), wrapped in a [`Narrowed`] expression when it reads nested
/// fields inside an expression that filters its input per branch; else `expr` itself.
pub(crate) fn narrow(expr: Arc<dyn PhysicalExpr>, schema: &Schema) -> Arc<dyn PhysicalExpr> {
    if !branches(&expr) || !reads_nested(&expr) {
        return expr;
    }
    match Narrowed::new(expr.clone(), schema) {
        Ok(n) => Arc::new(n),
        // not narrowed, still right: evaluated as DataFusion planned it
        Err(_) => expr,
    }
}

/// A nested-field read: `get_field(c, 'f' [, 'g' ...])` over a column `c` (or over such a read).
fn field_read(e: &Arc<dyn PhysicalExpr>) -> bool {
    let Some(f) = e.downcast_ref::<ScalarFunctionExpr>() else {
        return false;
    };
    f.name() == "get_field"
        && f.args().split_first().is_some_and(|(base, names)| {
            (base.downcast_ref::<Column>().is_some() || field_read(base)) && names.iter().all(|n| n.downcast_ref::<Literal>().is_some())
        })
}

/// Whether `e` has a node that DataFusion evaluates by filtering its input batch.
fn branches(e: &Arc<dyn PhysicalExpr>) -> bool {
    let mut found = false;
    let _ = e.apply(|n| {
        let filters =
            n.downcast_ref::<CaseExpr>().is_some() || n.downcast_ref::<BinaryExpr>().is_some_and(|b| matches!(b.op(), Operator::And | Operator::Or));
        found |= filters;
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

fn reads_nested(e: &Arc<dyn PhysicalExpr>) -> bool {
    let mut found = false;
    let _ = e.apply(|n| {
        found |= field_read(n);
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// An expression evaluated over the columns and nested fields it reads (see the module).
#[derive(Debug)]
pub(crate) struct Narrowed {
    /// the expression as planned, over the input batch
    original: Arc<dyn PhysicalExpr>,
    /// what it reads, over the input batch: columns and nested-field reads
    inputs: Vec<Arc<dyn PhysicalExpr>>,
    /// the batch of `inputs`
    schema: SchemaRef,
    /// `original`, reading input `i` as column `i` of that batch
    inner: Arc<dyn PhysicalExpr>,
}

impl Narrowed {
    fn new(original: Arc<dyn PhysicalExpr>, schema: &Schema) -> DfResult<Self> {
        let mut inputs: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut fields: Vec<FieldRef> = Vec::new();
        let inner = original
            .clone()
            .transform_down(|n| {
                if !field_read(&n) && n.downcast_ref::<Column>().is_none() {
                    return Ok(Transformed::no(n));
                }
                let i = match inputs.iter().position(|x| x.as_ref() == n.as_ref()) {
                    Some(i) => i,
                    None => {
                        let f = n.return_field(schema)?;
                        fields.push(Arc::new(Field::new(format!("in{}", inputs.len()), f.data_type().clone(), true)));
                        inputs.push(n.clone());
                        inputs.len() - 1
                    }
                };
                let col: Arc<dyn PhysicalExpr> = Arc::new(Column::new(fields[i].name(), i));
                Ok(Transformed::new(col, true, TreeNodeRecursion::Jump))
            })?
            .data;
        Ok(Narrowed { original, inputs, schema: Arc::new(Schema::new(fields)), inner })
    }

    fn batch(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        let n = batch.num_rows();
        let cols: Vec<ArrayRef> = self.inputs.iter().map(|e| e.evaluate(batch).and_then(|v| v.into_array(n))).collect::<DfResult<_>>()?;
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), cols, &RecordBatchOptions::new().with_row_count(Some(n)))?)
    }
}

impl fmt::Display for Narrowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.original, f)
    }
}

impl PartialEq for Narrowed {
    fn eq(&self, other: &Self) -> bool {
        self.original.as_ref() == other.original.as_ref()
    }
}
impl Eq for Narrowed {}
impl Hash for Narrowed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.original.as_ref().hash(state)
    }
}

impl PhysicalExpr for Narrowed {
    fn data_type(&self, input_schema: &Schema) -> DfResult<DataType> {
        self.original.data_type(input_schema)
    }
    fn nullable(&self, input_schema: &Schema) -> DfResult<bool> {
        self.original.nullable(input_schema)
    }
    fn return_field(&self, input_schema: &Schema) -> DfResult<FieldRef> {
        self.original.return_field(input_schema)
    }
    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        self.inner.evaluate(&self.batch(batch)?)
    }
    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.original]
    }
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> DfResult<Arc<dyn PhysicalExpr>> {
        // a rewritten original is evaluated as it is (narrowing needs the input schema)
        Ok(children.into_iter().next().unwrap_or_else(|| self.original.clone()))
    }
    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int32Array, Int64Array, StringArray, StructArray};
    use arrow::buffer::NullBuffer;
    use arrow::datatypes::{Fields, Int64Type};
    use datafusion::common::DFSchema;
    use datafusion::prelude::*;

    use super::*;

    fn input() -> RecordBatch {
        let fields = Fields::from(vec![Field::new("price", DataType::Int64, true), Field::new("url", DataType::Utf8, true)]);
        let valid = NullBuffer::from(vec![false, true, true, false]);
        let price: ArrayRef = Arc::new(Int64Array::new(vec![0, 10, 20, 0].into(), Some(valid.clone())));
        let url: ArrayRef = Arc::new(StringArray::from(vec![None, Some("a"), Some("b"), None]));
        let bid = StructArray::new(fields.clone(), vec![price, url], Some(valid));
        let schema = Schema::new(vec![
            Field::new("kind", DataType::Int32, true),
            Field::new("bid", DataType::Struct(fields), true),
            Field::new("other", DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int32Array::from(vec![0, 2, 2, 1])), Arc::new(bid), Arc::new(Int64Array::from(vec![7, 8, 9, 6]))],
        )
        .unwrap()
    }

    fn planned(sql_expr: Expr, b: &RecordBatch) -> Arc<dyn PhysicalExpr> {
        let df = DFSchema::try_from(b.schema().as_ref().clone()).unwrap();
        crate::plan::phys_exprs(&[sql_expr], &df).unwrap().remove(0)
    }

    #[test]
    fn a_case_over_nested_fields_is_narrowed_and_gives_the_same_values() {
        let b = input();
        let e = when(col("kind").eq(lit(2)), get_field(col("bid"), "price")).otherwise(col("other")).unwrap();
        let p = planned(e, &b);
        let n = p.downcast_ref::<Narrowed>().expect("narrowed");
        // bid.price and the two flat columns, not the whole bid row
        assert_eq!(n.inputs.len(), 3);
        let got = p.evaluate(&b).unwrap().into_array(4).unwrap();
        let plain = n.original.evaluate(&b).unwrap().into_array(4).unwrap();
        assert_eq!(got.as_primitive::<Int64Type>().values(), &[7, 10, 20, 6]);
        assert_eq!(&got, &plain);
        assert_eq!(p.to_string(), n.original.to_string());
    }

    #[test]
    fn other_expressions_are_left_as_planned() {
        let b = input();
        for e in [get_field(col("bid"), "price") + lit(1i64), when(col("kind").eq(lit(2)), col("other")).end().unwrap()] {
            let p = planned(e, &b);
            assert!(p.downcast_ref::<Narrowed>().is_none(), "{p}");
        }
    }

    #[test]
    fn null_rows_stay_null() {
        let b = input();
        let e = when(col("kind").gt(lit(0)), get_field(col("bid"), "url")).end().unwrap();
        let p = planned(e, &b);
        assert!(p.downcast_ref::<Narrowed>().is_some());
        let got = p.evaluate(&b).unwrap().into_array(4).unwrap();
        let s = got.as_string::<i32>();
        assert_eq!((0..4).map(|i| s.is_valid(i).then(|| s.value(i))).collect::<Vec<_>>(), vec![None, Some("a"), Some("b"), None]);
    }
}
