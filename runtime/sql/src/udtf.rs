//! Table functions written in Rust (Flink's `TableFunction`s): registered through
//! `CompileOptions::udtfs`, called per row of a table with `LATERAL TABLE`:
//!
//! ```sql
//! SELECT o.id, t.word, t.len
//! FROM orders AS o, LATERAL TABLE(split_words(o.note)) AS t(word, len);
//! -- every order, with no function rows too:
//! SELECT o.id, t.word FROM orders AS o LEFT JOIN LATERAL TABLE(split_words(o.note)) AS t(word, len) ON TRUE;
//! ```
//!
//! A function evaluates whole columns at once (the engine's Arrow batches): it gets
//! the argument columns of a batch and returns its rows with, for each, the input row
//! that produced it. Each output row keeps the kind (`+I`, `-U`, ...) of its input
//! row, so a table function also works over an updating input.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

use crate::ops::ChangeBatch;

/// A table function: zero or more rows for every input row.
pub trait TableFunction: Send + Sync {
    /// The name SQL calls it by (case-insensitive).
    fn name(&self) -> &str;
    /// The columns of the rows a call with arguments of these types produces (named
    /// as `AS t(a, b)` does not rename them), or why the arguments do not fit.
    fn output(&self, args: &[DataType]) -> Result<Vec<Field>, String>;
    /// The rows of every input row: `args` are the argument columns (`rows` values
    /// each, one per input row), the result the output columns (of the types
    /// `output` gave) and the input row of each output row, ascending.
    fn eval(&self, args: &[ArrayRef], rows: usize) -> Result<TableRows, String>;
}

/// The output of [`TableFunction::eval`].
#[derive(Clone, Debug)]
pub struct TableRows {
    /// for each output row, the index of the input row that produced it (ascending)
    pub input_rows: Vec<u32>,
    pub columns: Vec<ArrayRef>,
}

/// A call of a table function joined to its input rows (`LATERAL TABLE`): the input
/// columns, then the function's.
#[derive(Clone)]
pub(crate) struct Lateral {
    pub name: String,
    pub func: Arc<dyn TableFunction>,
    /// the arguments, over the input's columns
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// the function's columns
    pub fields: Vec<Field>,
    /// `LEFT JOIN LATERAL ... ON TRUE`: input rows without function rows are kept,
    /// with nulls for the function's columns
    pub outer: bool,
    /// input columns + function columns
    pub schema: SchemaRef,
}

impl Lateral {
    pub fn apply(&self, b: ChangeBatch) -> Result<Option<ChangeBatch>, String> {
        let batch = &b.rows.0;
        let n = batch.num_rows();
        let args: Vec<ArrayRef> = self
            .args
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: arguments: {e}", self.name))?;
        let out = self.func.eval(&args, n).map_err(|e| format!("{}: {e}", self.name))?;
        self.check(&out, n)?;
        let TableRows { input_rows, columns: fn_columns } = out;
        // the input row of every result row, and (outer) its function row
        let (left, fn_columns) = if self.outer {
            let (mut left, mut right) = (Vec::with_capacity(input_rows.len().max(n)), Vec::with_capacity(input_rows.len().max(n)));
            let mut next = 0usize;
            for i in 0..n as u32 {
                let first = next;
                while next < input_rows.len() && input_rows[next] == i {
                    left.push(i);
                    right.push(Some(next as u32));
                    next += 1;
                }
                if first == next {
                    left.push(i);
                    right.push(None);
                }
            }
            let right_idx = UInt32Array::from(right);
            let cols = fn_columns.iter().map(|c| take(c, &right_idx, None)).collect::<Result<Vec<_>, _>>().map_err(|e| format!("{}: {e}", self.name))?;
            (left, cols)
        } else {
            (input_rows, fn_columns)
        };
        if left.is_empty() {
            return Ok(None);
        }
        let left_idx = UInt32Array::from(left);
        let mut columns: Vec<ArrayRef> = batch.columns().iter().map(|c| take(c, &left_idx, None)).collect::<Result<_, _>>().map_err(|e| format!("{}: {e}", self.name))?;
        columns.extend(fn_columns);
        let kinds = b.kinds.as_ref().map(|k| left_idx.values().iter().map(|i| k[*i as usize]).collect());
        let rows = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| format!("{}: {e}", self.name))?;
        Ok(Some(ChangeBatch { rows: weir::arrow::ArrowBatch(rows), kinds }))
    }

    /// The number of input columns (before the function's).
    pub fn input_width(&self) -> usize {
        self.schema.fields().len() - self.fields.len()
    }

    /// The function kept its contract: columns of the declared types, one value per
    /// output row, input rows ascending and in range.
    fn check(&self, out: &TableRows, n: usize) -> Result<(), String> {
        let name = self.func.name();
        if out.columns.len() != self.fields.len() {
            return Err(format!("table function {name} returned {} columns, its output has {}", out.columns.len(), self.fields.len()));
        }
        for (c, f) in out.columns.iter().zip(&self.fields) {
            if c.len() != out.input_rows.len() {
                return Err(format!("table function {name}: column '{}' has {} values for {} rows", f.name(), c.len(), out.input_rows.len()));
            }
            if c.data_type() != f.data_type() {
                return Err(format!("table function {name}: column '{}' is {}, its output declares {}", f.name(), c.data_type(), f.data_type()));
            }
        }
        if let Some(w) = out.input_rows.windows(2).find(|w| w[0] > w[1]) {
            return Err(format!("table function {name}: input rows must ascend ({} after {})", w[1], w[0]));
        }
        if let Some(last) = out.input_rows.last()
            && *last as usize >= n
        {
            return Err(format!("table function {name}: input row {last} of a batch of {n} rows"));
        }
        Ok(())
    }

    /// As a `flat_map` function.
    pub fn run(&self, b: ChangeBatch, out: &mut weir::record::Collector<'_, ChangeBatch>) {
        match self.apply(b) {
            Ok(Some(b)) => out.emit(b),
            Ok(None) => {}
            Err(e) => crate::ops::fail(&self.name, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{Int64Type, Schema};
    use datafusion::physical_expr::expressions::Column;

    /// `repeat(n)`: n rows 0..n for every input row.
    struct Repeat;
    impl TableFunction for Repeat {
        fn name(&self) -> &str {
            "repeat"
        }
        fn output(&self, _: &[DataType]) -> Result<Vec<Field>, String> {
            Ok(vec![Field::new("i", DataType::Int64, false)])
        }
        fn eval(&self, args: &[ArrayRef], _rows: usize) -> Result<TableRows, String> {
            let n = args[0].as_primitive::<Int64Type>();
            let (mut rows, mut vals) = (Vec::new(), Vec::new());
            for r in 0..n.len() {
                for i in 0..n.value(r) {
                    rows.push(r as u32);
                    vals.push(i);
                }
            }
            Ok(TableRows { input_rows: rows, columns: vec![Arc::new(Int64Array::from(vals))] })
        }
    }

    fn lateral(outer: bool) -> Lateral {
        let fields = vec![Field::new("i", DataType::Int64, true)];
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true), Field::new("n", DataType::Int64, true), fields[0].clone()]));
        Lateral { name: "test".into(), func: Arc::new(Repeat), args: vec![Arc::new(Column::new("n", 1))], fields: vec![Field::new("i", DataType::Int64, false)], outer, schema }
    }

    fn input(kinds: Option<Vec<crate::RowKind>>) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a", "b", "c"])), Arc::new(Int64Array::from(vec![2, 0, 1]))]).unwrap();
        ChangeBatch { rows: weir::arrow::ArrowBatch(b), kinds }
    }

    fn strings(b: &ChangeBatch, col: usize) -> Vec<String> {
        let c = b.rows.0.column(col);
        (0..c.len()).map(|i| if c.is_null(i) { "null".into() } else { arrow::util::display::array_value_to_string(c, i).unwrap() }).collect()
    }

    #[test]
    fn inner_rows_repeat_the_input_row_per_function_row() {
        let out = lateral(false).apply(input(None)).unwrap().unwrap();
        assert_eq!(strings(&out, 0), ["a", "a", "c"]);
        assert_eq!(strings(&out, 2), ["0", "1", "0"]);
        assert!(out.kinds.is_none());
    }

    #[test]
    fn outer_keeps_rows_without_function_rows_with_nulls() {
        let out = lateral(true).apply(input(None)).unwrap().unwrap();
        assert_eq!(strings(&out, 0), ["a", "a", "b", "c"]);
        assert_eq!(strings(&out, 2), ["0", "1", "null", "0"]);
    }

    #[test]
    fn output_rows_keep_the_kind_of_their_input_row() {
        use crate::RowKind::*;
        let out = lateral(true).apply(input(Some(vec![Insert, Delete, UpdateAfter]))).unwrap().unwrap();
        assert_eq!(out.kinds, Some(vec![Insert, Insert, Delete, UpdateAfter]));
    }

    #[test]
    fn a_function_breaking_its_contract_is_an_error_naming_it() {
        struct Bad;
        impl TableFunction for Bad {
            fn name(&self) -> &str {
                "bad"
            }
            fn output(&self, _: &[DataType]) -> Result<Vec<Field>, String> {
                Ok(vec![Field::new("i", DataType::Int64, false)])
            }
            fn eval(&self, _: &[ArrayRef], _: usize) -> Result<TableRows, String> {
                Ok(TableRows { input_rows: vec![2, 1], columns: vec![Arc::new(Int64Array::from(vec![1, 2]))] })
            }
        }
        let l = Lateral { func: Arc::new(Bad), ..lateral(false) };
        let e = l.apply(input(None)).err().unwrap();
        assert!(e.contains("bad") && e.contains("ascend"), "{e}");
    }
}
