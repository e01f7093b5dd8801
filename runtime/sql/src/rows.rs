//! Arrow columns to rows of [`Value`]s and back: what the keyed operators do at
//! their edges. Both directions look at a column's type once per batch and then
//! read or append plain values (no `ScalarValue` per cell); a type without a fast
//! path goes through DataFusion's `ScalarValue`, as everything did before.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, RecordBatch,
    RecordBatchOptions, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef, TimeUnit, TimestampMillisecondType};
use datafusion::common::ScalarValue;
use weir::arrow::ArrowBatch;
use weir::record::{Collector, Timestamp};
use weir::{Key, KeyedContext};

use crate::ops::{ChangeBatch, RowKind, Value};

/// Reads the cells of one column as [`Value`]s.
pub enum ColumnReader<'a> {
    Bool(&'a arrow::array::BooleanArray),
    Int8(&'a arrow::array::Int8Array),
    Int16(&'a arrow::array::Int16Array),
    Int32(&'a arrow::array::Int32Array),
    Int64(&'a arrow::array::Int64Array),
    Float32(&'a arrow::array::Float32Array),
    Float64(&'a arrow::array::Float64Array),
    Utf8(&'a arrow::array::StringArray),
    Millis(&'a arrow::array::TimestampMillisecondArray),
    Date32(&'a arrow::array::Date32Array),
    Decimal(&'a arrow::array::Decimal128Array, u8, i8),
    /// any other type, through `ScalarValue`
    Other(&'a ArrayRef),
}

impl<'a> ColumnReader<'a> {
    pub fn new(a: &'a ArrayRef) -> Self {
        match a.data_type() {
            DataType::Boolean => ColumnReader::Bool(a.as_boolean()),
            DataType::Int8 => ColumnReader::Int8(a.as_primitive::<Int8Type>()),
            DataType::Int16 => ColumnReader::Int16(a.as_primitive::<Int16Type>()),
            DataType::Int32 => ColumnReader::Int32(a.as_primitive::<Int32Type>()),
            DataType::Int64 => ColumnReader::Int64(a.as_primitive::<Int64Type>()),
            DataType::Float32 => ColumnReader::Float32(a.as_primitive::<Float32Type>()),
            DataType::Float64 => ColumnReader::Float64(a.as_primitive::<Float64Type>()),
            DataType::Utf8 => ColumnReader::Utf8(a.as_string::<i32>()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => ColumnReader::Millis(a.as_primitive::<TimestampMillisecondType>()),
            DataType::Date32 => ColumnReader::Date32(a.as_primitive::<Date32Type>()),
            DataType::Decimal128(p, s) => ColumnReader::Decimal(a.as_primitive::<Decimal128Type>(), *p, *s),
            _ => ColumnReader::Other(a),
        }
    }

    /// The value in row `i`.
    #[inline]
    pub fn value(&self, i: usize) -> Result<Value, String> {
        macro_rules! read {
            ($a:expr, $f:expr) => {
                if $a.is_null(i) { Value::Null } else { $f($a.value(i)) }
            };
        }
        Ok(match self {
            ColumnReader::Bool(a) => read!(a, Value::Bool),
            ColumnReader::Int8(a) => read!(a, |v| Value::Int(v as i64)),
            ColumnReader::Int16(a) => read!(a, |v| Value::Int(v as i64)),
            ColumnReader::Int32(a) => read!(a, |v| Value::Int(v as i64)),
            ColumnReader::Int64(a) => read!(a, Value::Int),
            ColumnReader::Float32(a) => read!(a, |v| Value::Float(v as f64)),
            ColumnReader::Float64(a) => read!(a, Value::Float),
            ColumnReader::Utf8(a) => read!(a, |v: &str| Value::Str(v.to_string())),
            ColumnReader::Millis(a) => read!(a, Value::Int),
            ColumnReader::Date32(a) => read!(a, |v| Value::Int(v as i64)),
            ColumnReader::Decimal(a, p, s) => read!(a, |v| Value::Decimal(v, *p, *s)),
            ColumnReader::Other(a) => Value::from_array(a, i)?,
        })
    }
}

/// Readers of every column of `cols`.
pub fn readers(cols: &[ArrayRef]) -> Vec<ColumnReader<'_>> {
    cols.iter().map(ColumnReader::new).collect()
}

/// The values of row `i` read by `readers`.
#[inline]
pub fn read_row(readers: &[ColumnReader<'_>], i: usize) -> Result<Vec<Value>, String> {
    readers.iter().map(|r| r.value(i)).collect()
}

/// Column `col` of `rows` as an array of type `dt`.
fn column(dt: &DataType, rows: &[(RowKind, Vec<Value>)], col: usize) -> Result<ArrayRef, String> {
    let cells = rows.iter().map(|(_, r)| r.get(col).unwrap_or(&Value::Null));
    macro_rules! build {
        ($b:expr, $get:expr) => {{
            let mut b = $b;
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    v => match $get(v) {
                        Some(x) => b.append_value(x),
                        // another type (DataFusion's cast converts it)
                        None => return scalar_column(dt, rows, col),
                    },
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        _ => None,
    };
    let float = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    };
    let n = rows.len();
    Ok(match dt {
        DataType::Boolean => build!(BooleanBuilder::with_capacity(n), |v: &Value| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }),
        DataType::Int8 => build!(Int8Builder::with_capacity(n), |v| int(v).and_then(|i| i8::try_from(i).ok())),
        DataType::Int16 => build!(Int16Builder::with_capacity(n), |v| int(v).and_then(|i| i16::try_from(i).ok())),
        DataType::Int32 => build!(Int32Builder::with_capacity(n), |v| int(v).and_then(|i| i32::try_from(i).ok())),
        DataType::Int64 => build!(Int64Builder::with_capacity(n), int),
        DataType::Float32 => build!(Float32Builder::with_capacity(n), |v| float(v).map(|f| f as f32)),
        DataType::Float64 => build!(Float64Builder::with_capacity(n), float),
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Str(s) => b.append_value(s),
                    _ => return scalar_column(dt, rows, col),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            let a = build!(TimestampMillisecondBuilder::with_capacity(n), int);
            match tz {
                None => a,
                Some(tz) => Arc::new(a.as_primitive::<TimestampMillisecondType>().clone().with_timezone(tz.clone())),
            }
        }
        DataType::Date32 => build!(Date32Builder::with_capacity(n), |v| int(v).and_then(|i| i32::try_from(i).ok())),
        DataType::Decimal128(p, s) => {
            let mut b = Decimal128Builder::with_capacity(n);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Decimal(d, _, vs) if vs == s => b.append_value(*d),
                    // another scale: DataFusion's cast rescales
                    _ => return scalar_column(dt, rows, col),
                }
            }
            Arc::new(b.finish().with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?)
        }
        _ => return scalar_column(dt, rows, col),
    })
}

/// Column `col` of `rows` through `ScalarValue` (types without a fast path).
fn scalar_column(dt: &DataType, rows: &[(RowKind, Vec<Value>)], col: usize) -> Result<ArrayRef, String> {
    let scalars: Vec<ScalarValue> = rows.iter().map(|(_, r)| r.get(col).unwrap_or(&Value::Null).to_scalar(dt)).collect::<Result<_, _>>()?;
    if scalars.is_empty() {
        return Ok(arrow::array::new_empty_array(dt));
    }
    ScalarValue::iter_to_array(scalars).map_err(|e| e.to_string())
}

/// Rows of values (in `schema`'s column order) with their kinds, as a batch.
pub fn rows_to_batch(schema: &SchemaRef, rows: &[(RowKind, Vec<Value>)]) -> Result<ChangeBatch, String> {
    let cols = schema.fields().iter().enumerate().map(|(i, f)| column(f.data_type(), rows, i)).collect::<Result<Vec<_>, _>>()?;
    let b = RecordBatch::try_new_with_options(schema.clone(), cols, &RecordBatchOptions::new().with_row_count(Some(rows.len()))).map_err(|e| e.to_string())?;
    let kinds = if rows.iter().all(|(k, _)| *k == RowKind::Insert) { None } else { Some(rows.iter().map(|(k, _)| *k).collect()) };
    Ok(ChangeBatch { rows: ArrowBatch(b), kinds })
}

/// The output of a keyed SQL operator: the rows it emits while a batch of input (or
/// a watermark's round of timers) goes through it, collected and sent on as one
/// [`ChangeBatch`] by [`Output::flush`] from the function's `finish_batch`, so a
/// batch of input costs one Arrow batch downstream, not one per output row.
#[derive(Clone, Debug)]
pub struct Output {
    schema: SchemaRef,
    /// the operator's name, for the error should a row not fit the schema
    name: Arc<str>,
    rows: Vec<(RowKind, Vec<Value>)>,
    /// the latest timestamp of the collected rows: the batch's timestamp
    ts: Timestamp,
}

/// Rows collected before a batch goes out early (a watermark can fire many windows).
pub(crate) const MAX_ROWS: usize = 4096;

impl Output {
    pub fn new(schema: SchemaRef, name: &str) -> Self {
        Output { schema, name: name.into(), rows: Vec::new(), ts: Timestamp::MIN }
    }

    /// Collects `rows` at `ctx`'s time (the input record's, or the firing timer's).
    pub fn push<K: Key>(&mut self, ctx: &mut KeyedContext<'_, K, ChangeBatch>, rows: impl IntoIterator<Item = (RowKind, Vec<Value>)>) {
        self.add(ctx.timestamp(), rows);
        if self.rows.len() >= MAX_ROWS {
            let ts = self.ts;
            let b = self.take_batch();
            ctx.emit_at(ts, b);
        }
    }

    /// Collects `rows` at time `ts` (sent on by the next [`Output::flush`]).
    pub fn add(&mut self, ts: Timestamp, rows: impl IntoIterator<Item = (RowKind, Vec<Value>)>) {
        self.ts = self.ts.max(ts);
        self.rows.extend(rows);
    }

    /// Sends the collected rows on as one batch.
    pub fn flush(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        if !self.rows.is_empty() {
            let ts = self.ts;
            let b = self.take_batch();
            out.emit_at(ts, b);
        }
    }

    fn take_batch(&mut self) -> ChangeBatch {
        let b = rows_to_batch(&self.schema, &self.rows).unwrap_or_else(|e| crate::ops::fail(&self.name, e));
        self.rows.clear();
        self.ts = Timestamp::MIN;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    /// Every fast path gives what the `ScalarValue` path gives, and reading the batch
    /// back gives the rows.
    #[test]
    fn rows_round_trip_through_batches() {
        let types = [
            DataType::Boolean,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::Float32,
            DataType::Float64,
            DataType::Utf8,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            DataType::Date32,
            DataType::Decimal128(10, 2),
            DataType::LargeUtf8,
        ];
        let sample = |dt: &DataType, i: i64| match dt {
            DataType::Boolean => Value::Bool(i % 2 == 0),
            DataType::Float32 | DataType::Float64 => Value::Float(i as f64 * 0.5),
            DataType::Utf8 | DataType::LargeUtf8 => Value::Str(format!("s{i}")),
            DataType::Decimal128(p, s) => Value::Decimal(i as i128 * 101, *p, *s),
            _ => Value::Int(i),
        };
        let schema: SchemaRef = Arc::new(Schema::new(types.iter().enumerate().map(|(i, t)| Field::new(format!("c{i}"), t.clone(), true)).collect::<Vec<_>>()));
        let rows: Vec<(RowKind, Vec<Value>)> =
            (0..5).map(|r| (if r == 3 { RowKind::Delete } else { RowKind::Insert }, types.iter().map(|t| if r == 2 { Value::Null } else { sample(t, r) }).collect())).collect();
        let b = rows_to_batch(&schema, &rows).unwrap();
        for (i, t) in types.iter().enumerate() {
            assert_eq!(b.rows.0.column(i).data_type(), t);
            assert_eq!(b.rows.0.column(i).as_ref(), scalar_column(t, &rows, i).unwrap().as_ref(), "{t}");
        }
        let rd = readers(b.rows.0.columns());
        for (r, (kind, want)) in rows.iter().enumerate() {
            assert_eq!(&read_row(&rd, r).unwrap(), want);
            assert_eq!(b.kind(r), *kind);
        }
        assert!(rows_to_batch(&schema, &[]).unwrap().rows.0.num_rows() == 0);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        assert!(rows_to_batch(&schema, &[(RowKind::Insert, vec![Value::Str("x".into())])]).is_err());
        // a convertible one is converted
        let b = rows_to_batch(&schema, &[(RowKind::Insert, vec![Value::Float(2.0)])]).unwrap();
        assert_eq!(b.rows.0.column(0).as_primitive::<Int64Type>().value(0), 2);
    }
}
