//! The runtime side of SQL: what flows between the lowered operators (columnar
//! [`ChangeBatch`]es with a row kind per row) and the functions the operators run:
//! projection/filter ([`Calc`], DataFusion physical expressions on Arrow batches),
//! window assignment, and the keyed aggregations (window and unbounded).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, TimestampMillisecondArray, UInt32Array};
use arrow::compute::{cast, filter_record_batch, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};
use weir::arrow::ArrowBatch;
use weir::record::{Collector, Timestamp};
use weir::state::{OpenContext, ValueState};
use weir::{JobError, Key, KeyedContext, KeyedProcessFunction, TimeDomain};

pub use weir_connectors::changelog::{ChangeBatch, RowKind};

/// All fields nullable (SQL results may be null where the declared type is not).
pub fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<Field>>()))
}

/// A failure while running a SQL operator: the task fails with this message.
pub(crate) fn fail(op: &str, e: impl std::fmt::Display) -> ! {
    panic!("SQL operator {op}: {e}")
}

/// One step of a stateless pipeline.
#[derive(Clone, Debug)]
pub enum Step {
    Filter(Arc<dyn PhysicalExpr>),
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
}

/// Projection and filter steps, evaluated with DataFusion physical expressions.
#[derive(Clone, Debug)]
pub struct Calc {
    pub name: String,
    pub steps: Vec<Step>,
}

impl Calc {
    pub fn apply(&self, mut b: ChangeBatch) -> Result<Option<ChangeBatch>, String> {
        for s in &self.steps {
            match s {
                Step::Filter(p) => {
                    let v = p.evaluate(&b.rows.0).map_err(|e| e.to_string())?.into_array(b.num_rows()).map_err(|e| e.to_string())?;
                    let mask = v.as_boolean_opt().ok_or("filter predicate is not boolean")?;
                    let mask = if mask.null_count() > 0 { arrow::compute::prep_null_mask_filter(mask) } else { mask.clone() };
                    let rows = filter_record_batch(&b.rows.0, &mask).map_err(|e| e.to_string())?;
                    let kinds = b.kinds.map(|k| k.into_iter().zip(mask.values().iter()).filter(|(_, m)| *m).map(|(k, _)| k).collect());
                    b = ChangeBatch { rows: ArrowBatch(rows), kinds };
                }
                Step::Project(exprs, schema) => {
                    let n = b.num_rows();
                    let cols: Vec<ArrayRef> = exprs
                        .iter()
                        .zip(schema.fields())
                        .map(|(e, f)| {
                            let a = e.evaluate(&b.rows.0).and_then(|v| v.into_array(n)).map_err(|e| e.to_string())?;
                            if a.data_type() == f.data_type() { Ok(a) } else { cast(&a, f.data_type()).map_err(|e| e.to_string()) }
                        })
                        .collect::<Result<_, String>>()?;
                    let rows = RecordBatch::try_new_with_options(schema.clone(), cols, &RecordBatchOptions::new().with_row_count(Some(n))).map_err(|e| e.to_string())?;
                    b = ChangeBatch { rows: ArrowBatch(rows), kinds: b.kinds };
                }
            }
            if b.num_rows() == 0 {
                return Ok(None);
            }
        }
        Ok(Some(b))
    }

    /// As a process function: CURRENT_WATERMARK() evaluates to the operator's watermark.
    pub fn run_at(&self, b: ChangeBatch, ctx: &mut weir::ProcessContext<'_, ChangeBatch>) {
        match crate::functions::with_watermark(ctx.current_watermark(), || self.apply(b)) {
            Ok(Some(b)) => ctx.emit(b),
            Ok(None) => {}
            Err(e) => fail(&self.name, e),
        }
    }

    /// As a `flat_map` function.
    pub fn run(&self, b: ChangeBatch, out: &mut Collector<'_, ChangeBatch>) {
        match self.apply(b) {
            Ok(Some(b)) => out.emit(b),
            Ok(None) => {}
            Err(e) => fail(&self.name, e),
        }
    }
}

/// Milliseconds of a timestamp column (any unit), nulls as `None`.
pub fn millis(col: &ArrayRef) -> Result<Vec<Option<i64>>, String> {
    let c = cast(col, &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(|e| format!("time column: {e}"))?;
    let c = c.as_primitive::<TimestampMillisecondType>();
    Ok((0..c.len()).map(|i| if c.is_null(i) { None } else { Some(c.value(i)) }).collect())
}

/// The greatest value of a timestamp column, in ms.
pub fn max_millis(col: &ArrayRef) -> Result<Option<i64>, String> {
    Ok(millis(col)?.into_iter().flatten().max())
}

/// Window assignment of a windowing TVF: replicates each row once per window it
/// belongs to and appends `window_start`, `window_end`, `window_time`.
#[derive(Clone, Debug)]
pub struct WindowAssign {
    pub name: String,
    pub kind: crate::script::WindowKind,
    pub time_col: usize,
    pub schema: SchemaRef,
    /// processing-time windows: each row once, with the bounds of its first window
    /// (the aggregation assigns the windows by its own clock, see `plan::proc_window`)
    pub proctime: bool,
}

/// The windows `[start, end)` of `kind` that time `ts` belongs to, in order (a
/// SESSION: the proto-session `[ts, ts + gap)`).
pub fn assign_windows(kind: crate::script::WindowKind, ts: i64, out: &mut Vec<(i64, i64)>) {
    WindowAssign::assign(kind, ts, out)
}

impl WindowAssign {
    pub fn windows(&self, ts: i64, out: &mut Vec<(i64, i64)>) {
        Self::assign(self.kind, ts, out);
        if self.proctime {
            out.truncate(1);
        }
    }

    fn assign(kind: crate::script::WindowKind, ts: i64, out: &mut Vec<(i64, i64)>) {
        use crate::script::WindowKind::*;
        match kind {
            Tumble { size } => {
                let s = ts - ts.rem_euclid(size);
                out.push((s, s + size));
            }
            Hop { slide, size } => {
                let last = ts - ts.rem_euclid(slide);
                let mut s = last;
                while s > ts - size {
                    out.push((s, s + size));
                    s -= slide;
                }
                out.reverse();
            }
            // a proto-session: the aggregation merges overlapping ones
            Session { gap } => out.push((ts, ts + gap)),
            Cumulate { step, size } => {
                let s = ts - ts.rem_euclid(size);
                let mut e = s + step;
                while e <= s + size {
                    if e > ts {
                        out.push((s, e));
                    }
                    e += step;
                }
            }
        }
    }

    pub fn apply(&self, b: ChangeBatch) -> Result<Option<ChangeBatch>, String> {
        let ts = millis(b.rows.0.column(self.time_col))?;
        let mut idx = Vec::new();
        let (mut st, mut en) = (Vec::new(), Vec::new());
        let mut ws = Vec::new();
        for (i, t) in ts.iter().enumerate() {
            let Some(t) = t else { continue };
            ws.clear();
            self.windows(*t, &mut ws);
            for (s, e) in &ws {
                idx.push(i as u32);
                st.push(*s);
                en.push(*e);
            }
        }
        if idx.is_empty() {
            return Ok(None);
        }
        let idx = UInt32Array::from(idx);
        let mut cols: Vec<ArrayRef> = b.rows.0.columns().iter().map(|c| take(c, &idx, None)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        let wt: Vec<i64> = en.iter().map(|e| e - 1).collect();
        for v in [st, en, wt] {
            let a: ArrayRef = Arc::new(TimestampMillisecondArray::from(v));
            cols.push(a);
        }
        let kinds = b.kinds.map(|k| idx.values().iter().map(|i| k[*i as usize]).collect());
        let rows = RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| e.to_string())?;
        Ok(Some(ChangeBatch { rows: ArrowBatch(rows), kinds }))
    }

    pub fn run(&self, b: ChangeBatch, out: &mut Collector<'_, ChangeBatch>) {
        match self.apply(b) {
            Ok(Some(b)) => out.emit(b),
            Ok(None) => {}
            Err(e) => fail(&self.name, e),
        }
    }
}

/// A SQL value in keyed state and keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Decimal(i128, u8, i8),
}

impl PartialEq for Value {
    fn eq(&self, o: &Self) -> bool {
        match (self, o) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Decimal(a, p, s), Value::Decimal(b, q, t)) => a == b && p == q && s == t,
            _ => false,
        }
    }
}
impl Eq for Value {}
impl std::hash::Hash for Value {
    /// Consistent with `eq` (floats by their bits); no allocation.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self {
            Value::Null => h.write_u8(0),
            Value::Bool(b) => h.write_u16(0x100 | *b as u16),
            Value::Int(i) => {
                h.write_u8(2);
                h.write_i64(*i)
            }
            Value::Float(f) => {
                h.write_u8(3);
                h.write_u64(f.to_bits())
            }
            Value::Str(s) => {
                h.write_u8(4);
                h.write_usize(s.len());
                h.write(s.as_bytes())
            }
            Value::Decimal(v, p, s) => {
                h.write_u8(5);
                h.write_i128(*v);
                h.write_u8(*p);
                h.write_i8(*s)
            }
        }
    }
}

impl Value {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::Bool(b) => out.extend_from_slice(&[1, *b as u8]),
            Value::Int(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes())
            }
            Value::Float(f) => {
                out.push(3);
                out.extend_from_slice(&f.to_bits().to_le_bytes())
            }
            Value::Str(s) => {
                out.push(4);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes())
            }
            Value::Decimal(v, p, s) => {
                out.push(5);
                out.extend_from_slice(&v.to_le_bytes());
                out.extend_from_slice(&[*p, *s as u8])
            }
        }
    }

    /// The value of row `row` of `a`.
    pub fn from_array(a: &ArrayRef, row: usize) -> Result<Value, String> {
        if a.is_null(row) {
            return Ok(Value::Null);
        }
        Value::from_scalar(ScalarValue::try_from_array(a, row).map_err(|e| e.to_string())?)
    }

    /// The value of a scalar.
    pub fn from_scalar(s: ScalarValue) -> Result<Value, String> {
        if s.is_null() {
            return Ok(Value::Null);
        }
        Ok(match s {
            ScalarValue::Boolean(Some(b)) => Value::Bool(b),
            ScalarValue::Int8(Some(v)) => Value::Int(v as i64),
            ScalarValue::Int16(Some(v)) => Value::Int(v as i64),
            ScalarValue::Int32(Some(v)) => Value::Int(v as i64),
            ScalarValue::Int64(Some(v)) => Value::Int(v),
            ScalarValue::UInt8(Some(v)) => Value::Int(v as i64),
            ScalarValue::UInt16(Some(v)) => Value::Int(v as i64),
            ScalarValue::UInt32(Some(v)) => Value::Int(v as i64),
            ScalarValue::UInt64(Some(v)) => Value::Int(v as i64),
            ScalarValue::Float32(Some(v)) => Value::Float(v as f64),
            ScalarValue::Float64(Some(v)) => Value::Float(v),
            ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v)) | ScalarValue::Utf8View(Some(v)) => Value::Str(v),
            ScalarValue::Decimal128(Some(v), p, s) => Value::Decimal(v, p, s),
            ScalarValue::TimestampMillisecond(Some(v), _) | ScalarValue::TimestampSecond(Some(v), _) | ScalarValue::TimestampMicrosecond(Some(v), _) | ScalarValue::TimestampNanosecond(Some(v), _) => Value::Int(v),
            ScalarValue::Date32(Some(v)) => Value::Int(v as i64),
            ScalarValue::Date64(Some(v)) => Value::Int(v),
            other => return Err(format!("values of type {} are not supported in keys and aggregates yet", other.data_type())),
        })
    }

    /// As a scalar of type `dt`.
    pub fn to_scalar(&self, dt: &DataType) -> Result<ScalarValue, String> {
        let s = match (self, dt) {
            (Value::Null, _) => return ScalarValue::try_from(dt).map_err(|e| e.to_string()),
            (Value::Int(v), DataType::Timestamp(u, tz)) => match u {
                TimeUnit::Second => ScalarValue::TimestampSecond(Some(*v), tz.clone()),
                TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(*v), tz.clone()),
                TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(*v), tz.clone()),
                TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(*v), tz.clone()),
            },
            (Value::Int(v), DataType::Date32) => ScalarValue::Date32(Some(*v as i32)),
            (Value::Bool(b), _) => ScalarValue::Boolean(Some(*b)),
            (Value::Int(v), _) => ScalarValue::Int64(Some(*v)),
            (Value::Float(v), _) => ScalarValue::Float64(Some(*v)),
            (Value::Str(v), _) => ScalarValue::Utf8(Some(v.clone())),
            (Value::Decimal(v, p, s), _) => ScalarValue::Decimal128(Some(*v), *p, *s),
        };
        if &s.data_type() == dt { Ok(s) } else { s.cast_to(dt).map_err(|e| e.to_string()) }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Decimal(v, _, s) => Some(*v as f64 / 10f64.powi(*s as i32)),
            _ => None,
        }
    }

    pub(crate) fn cmp_sql(&self, o: &Value) -> std::cmp::Ordering {
        use std::cmp::Ordering::Equal;
        match (self, o) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Decimal(a, _, _), Value::Decimal(b, _, _)) => a.cmp(b),
            (a, b) => a.as_f64().zip(b.as_f64()).and_then(|(x, y)| x.partial_cmp(&y)).unwrap_or(Equal),
        }
    }
}

/// The grouping key of a SQL aggregation (or a row of a join's state). Shared, not
/// copied, when cloned: the engine takes a record's key once to route it and once
/// to process it. Serialized as the sequence of its values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey(pub Arc<[Value]>);

impl GroupKey {
    pub fn new(values: Vec<Value>) -> Self {
        GroupKey(values.into())
    }
}

impl Serialize for GroupKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

impl<'de> Deserialize<'de> for GroupKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Value>::deserialize(d).map(GroupKey::new)
    }
}

impl Key for GroupKey {
    fn write_canonical(&self, out: &mut Vec<u8>) {
        for v in self.0.iter() {
            v.write(out);
        }
    }
}

/// One input row of a keyed aggregation: its key, kind, and the aggregate arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyedRow {
    pub key: GroupKey,
    pub kind: RowKind,
    pub args: Vec<Value>,
}

/// The aggregate functions the keyed aggregations support.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AggKind {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// an aggregate function written in Rust (see `udaf`)
    Udaf(Arc<crate::udaf::UdafCall>),
}

/// Accumulator of one aggregate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Acc {
    Count(i64),
    Sum { int: i128, float: f64, is_float: bool, n: i64 },
    Avg { sum: f64, n: i64 },
    Extreme(Option<Value>),
    /// a DISTINCT aggregate: how often each value is in the group (so retractions
    /// work), the inner accumulator seeing each distinct value once
    Distinct { seen: Vec<(Value, i64)>, inner: Box<Acc> },
    /// an aggregate UDF's intermediate state
    Udaf(crate::udaf::UdafState),
}

impl AggKind {
    pub fn create(&self) -> Acc {
        match self {
            AggKind::CountStar | AggKind::Count => Acc::Count(0),
            AggKind::Sum => Acc::Sum { int: 0, float: 0.0, is_float: false, n: 0 },
            AggKind::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggKind::Min | AggKind::Max => Acc::Extreme(None),
            AggKind::Udaf(_) => Acc::Udaf(Default::default()),
        }
    }

    /// The accumulator of `self(DISTINCT ...)`.
    pub fn create_distinct(&self) -> Acc {
        Acc::Distinct { seen: Vec::new(), inner: Box::new(self.create()) }
    }

    /// Adds (`sign` = 1) or retracts (`sign` = -1) `v`. A UDAF sees nulls too (as in
    /// DataFusion's batch aggregation); the built-in aggregates skip them.
    pub fn update(&self, acc: &mut Acc, v: &Value, sign: i64) {
        if let (AggKind::Udaf(call), Acc::Udaf(st)) = (self, &mut *acc) {
            return call.update(st, v, sign).unwrap_or_else(|e| fail(&call.name, e));
        }
        if *self != AggKind::CountStar && *v == Value::Null {
            return;
        }
        match acc {
            Acc::Distinct { seen, inner } => {
                let at = seen.iter().position(|(x, _)| x == v);
                let (before, after) = match at {
                    Some(i) => {
                        let b = seen[i].1;
                        seen[i].1 += sign;
                        if seen[i].1 <= 0 {
                            seen.swap_remove(i);
                        }
                        (b, b + sign)
                    }
                    None if sign > 0 => {
                        seen.push((v.clone(), sign));
                        (0, sign)
                    }
                    None => (0, 0),
                };
                if before <= 0 && after > 0 {
                    self.update(inner, v, 1);
                } else if before > 0 && after <= 0 {
                    self.update(inner, v, -1);
                }
            }
            Acc::Count(n) => *n += sign,
            Acc::Sum { int, float, is_float, n } => {
                *n += sign;
                match v {
                    Value::Int(i) => *int += (*i as i128) * sign as i128,
                    Value::Decimal(d, _, _) => *int += *d * sign as i128,
                    other => {
                        *is_float = true;
                        *float += other.as_f64().unwrap_or(0.0) * sign as f64
                    }
                }
            }
            Acc::Avg { sum, n } => {
                *n += sign;
                *sum += v.as_f64().unwrap_or(0.0) * sign as f64;
            }
            Acc::Extreme(cur) => {
                let better = match cur {
                    None => true,
                    Some(c) => {
                        let o = v.cmp_sql(c);
                        if *self == AggKind::Min { o.is_lt() } else { o.is_gt() }
                    }
                };
                if better {
                    *cur = Some(v.clone());
                }
            }
            Acc::Udaf(_) => {}
        }
    }

    /// Folds `other` into `acc` (merging session windows).
    pub fn merge(&self, acc: &mut Acc, other: Acc) {
        match (acc, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum { int, float, is_float, n }, Acc::Sum { int: i2, float: f2, is_float: x2, n: n2 }) => {
                *int += i2;
                *float += f2;
                *is_float |= x2;
                *n += n2;
            }
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (a @ Acc::Extreme(_), Acc::Extreme(Some(v))) => self.update(a, &v, 1),
            (Acc::Distinct { seen, inner }, Acc::Distinct { seen: s2, .. }) => {
                for (v, c) in s2 {
                    match seen.iter_mut().find(|(x, _)| *x == v) {
                        Some(e) => e.1 += c,
                        None => seen.push((v, c)),
                    }
                }
                seen.retain(|(_, c)| *c > 0);
                **inner = self.create();
                for (v, _) in seen.iter() {
                    self.update(inner, v, 1);
                }
            }
            (Acc::Udaf(a), Acc::Udaf(b)) => {
                if let AggKind::Udaf(call) = self {
                    call.merge(a, &b).unwrap_or_else(|e| fail(&call.name, e));
                }
            }
            _ => {}
        }
    }

    pub fn result(&self, acc: &Acc, out_type: &DataType) -> Value {
        match acc {
            Acc::Count(n) => Value::Int(*n),
            Acc::Sum { n: 0, .. } => Value::Null,
            Acc::Sum { int, float, is_float, .. } => match out_type {
                DataType::Decimal128(p, s) => Value::Decimal(*int, *p, *s),
                _ if *is_float || matches!(out_type, DataType::Float32 | DataType::Float64) => Value::Float(*float + *int as f64),
                _ => Value::Int(*int as i64),
            },
            Acc::Avg { n: 0, .. } => Value::Null,
            Acc::Avg { sum, n } => Value::Float(sum / *n as f64),
            Acc::Extreme(v) => v.clone().unwrap_or(Value::Null),
            Acc::Distinct { inner, .. } => self.result(inner, out_type),
            Acc::Udaf(st) => match self {
                AggKind::Udaf(call) => call.result(st).unwrap_or_else(|e| fail(&call.name, e)),
                _ => Value::Null,
            },
        }
    }
}

/// What a keyed aggregation computes.
#[derive(Clone, Debug)]
pub struct AggSpec {
    pub name: String,
    pub aggs: Vec<AggKind>,
    /// per aggregate: `f(DISTINCT x)`
    pub distinct: Vec<bool>,
    /// group columns, then aggregates
    pub out_schema: SchemaRef,
    /// index of `window_end` in the key: a window aggregation (final rows when the
    /// watermark passes the window's end); `None`: unbounded (a changelog)
    pub window_end: Option<usize>,
}

impl AggSpec {
    /// Fresh accumulators, one per aggregate.
    pub fn new_accs(&self) -> Vec<Acc> {
        self.aggs.iter().enumerate().map(|(i, a)| if self.distinct.get(i).copied().unwrap_or(false) { a.create_distinct() } else { a.create() }).collect()
    }
}

/// The state of one group.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct GroupState {
    /// rows accumulated minus rows retracted
    pub rows: i64,
    pub accs: Vec<Acc>,
}

/// The keyed process function of window and unbounded aggregations.
#[derive(Clone)]
pub struct AggFunction {
    pub spec: Arc<AggSpec>,
    pub state: Option<ValueState<GroupState>>,
    pub out: crate::rows::Output,
}

impl AggFunction {
    fn row(&self, key: &GroupKey, st: &GroupState) -> Vec<Value> {
        let n = key.0.len();
        let mut v = Vec::with_capacity(n + self.spec.aggs.len());
        v.extend_from_slice(&key.0);
        for (i, (k, a)) in self.spec.aggs.iter().zip(&st.accs).enumerate() {
            v.push(k.result(a, self.spec.out_schema.field(n + i).data_type()));
        }
        v
    }
}

pub use crate::rows::rows_to_batch;

impl KeyedProcessFunction<GroupKey, KeyedRow, ChangeBatch> for AggFunction {
    fn open(&mut self, ctx: &mut OpenContext<'_, GroupKey>) -> Result<(), JobError> {
        self.state = Some(ctx.value_state("group")?);
        Ok(())
    }

    fn process(&mut self, r: KeyedRow, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        let Some(state) = self.state.clone() else { return };
        let sign = if r.kind.is_accumulate() { 1 } else { -1 };
        let spec = &self.spec;
        let fold = |st: &mut GroupState| {
            st.rows += sign;
            for ((k, a), v) in spec.aggs.iter().zip(st.accs.iter_mut()).zip(&r.args) {
                k.update(a, v, sign);
            }
        };
        if let Some(we) = spec.window_end {
            let Value::Int(end) = r.key.0[we] else { return };
            if end - 1 <= ctx.current_watermark() {
                return; // late: its window has fired
            }
            // the group's state is updated in place; the first row of a window's
            // group registers the timer that emits it
            match state.get_mut(ctx) {
                Some(st) => fold(st),
                None => {
                    let mut st = GroupState { rows: 0, accs: spec.new_accs() };
                    fold(&mut st);
                    state.update(ctx, st);
                    ctx.register_event_time_timer(end - 1);
                }
            }
            return;
        }
        let mut out = Vec::new();
        match state.get_mut(ctx) {
            Some(st) => {
                let before = (st.rows > 0).then(|| self.row(&r.key, st));
                fold(st);
                if st.rows <= 0 {
                    if let Some(b) = before {
                        out.push((RowKind::Delete, b));
                    }
                    state.clear(ctx);
                } else {
                    let after = self.row(&r.key, st);
                    match before {
                        None => out.push((RowKind::Insert, after)),
                        Some(b) if b != after => {
                            out.push((RowKind::UpdateBefore, b));
                            out.push((RowKind::UpdateAfter, after));
                        }
                        Some(_) => {}
                    }
                }
            }
            None => {
                let mut st = GroupState { rows: 0, accs: spec.new_accs() };
                fold(&mut st);
                if st.rows > 0 {
                    out.push((RowKind::Insert, self.row(&r.key, &st)));
                    state.update(ctx, st);
                }
            }
        }
        self.out.push(ctx, out);
    }

    fn on_timer(&mut self, _time: Timestamp, domain: TimeDomain, ctx: &mut KeyedContext<'_, GroupKey, ChangeBatch>) {
        if domain != TimeDomain::EventTime {
            return;
        }
        let Some(state) = self.state.clone() else { return };
        if let Some(st) = state.value(ctx) {
            state.clear(ctx);
            if st.rows > 0 {
                let row = self.row(ctx.key(), &st);
                self.out.push(ctx, [(RowKind::Insert, row)]);
            }
        }
    }

    fn finish_batch(&mut self, out: &mut Collector<'_, ChangeBatch>) {
        self.out.flush(out);
    }
}

/// Turns a batch into keyed rows: key expressions and aggregate arguments are
/// evaluated columnar (DataFusion), then split into one record per row.
#[derive(Clone, Debug)]
pub struct KeyRows {
    pub name: String,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// one argument per aggregate (`None`: COUNT(*))
    pub args: Vec<Option<Arc<dyn PhysicalExpr>>>,
}

impl KeyRows {
    pub fn apply(&self, b: &ChangeBatch) -> Result<Vec<KeyedRow>, String> {
        let n = b.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| e.evaluate(&b.rows.0).and_then(|v| v.into_array(n)).map_err(|e| e.to_string());
        let keys: Vec<ArrayRef> = self.keys.iter().map(eval).collect::<Result<_, _>>()?;
        let args: Vec<Option<ArrayRef>> = self.args.iter().map(|a| a.as_ref().map(eval).transpose()).collect::<Result<_, _>>()?;
        let keys = crate::rows::readers(&keys);
        let args: Vec<Option<crate::rows::ColumnReader<'_>>> = args.iter().map(|a| a.as_ref().map(crate::rows::ColumnReader::new)).collect();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let key = GroupKey::new(crate::rows::read_row(&keys, i)?);
            let args = args.iter().map(|a| a.as_ref().map_or(Ok(Value::Int(1)), |a| a.value(i))).collect::<Result<_, _>>()?;
            out.push(KeyedRow { key, kind: b.kind(i), args });
        }
        Ok(out)
    }

    pub fn run(&self, b: ChangeBatch, out: &mut Collector<'_, KeyedRow>) {
        match self.apply(&b) {
            Ok(rows) => rows.into_iter().for_each(|r| out.emit(r)),
            Err(e) => fail(&self.name, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::WindowKind;

    fn assign(kind: WindowKind, ts: i64) -> Vec<(i64, i64)> {
        let w = WindowAssign { name: "w".into(), kind, time_col: 0, schema: Arc::new(Schema::empty()), proctime: false };
        let mut v = Vec::new();
        w.windows(ts, &mut v);
        v
    }

    #[test]
    fn window_assignment() {
        assert_eq!(assign(WindowKind::Tumble { size: 10 }, 13), vec![(10, 20)]);
        assert_eq!(assign(WindowKind::Tumble { size: 10 }, -1), vec![(-10, 0)]);
        assert_eq!(assign(WindowKind::Hop { slide: 5, size: 10 }, 13), vec![(5, 15), (10, 20)]);
        assert_eq!(assign(WindowKind::Cumulate { step: 5, size: 15 }, 7), vec![(0, 10), (0, 15)]);
        let w = WindowAssign { name: "w".into(), kind: WindowKind::Hop { slide: 5, size: 10 }, time_col: 0, schema: Arc::new(Schema::empty()), proctime: true };
        let mut v = Vec::new();
        w.windows(13, &mut v);
        assert_eq!(v, vec![(5, 15)], "processing-time windows: each row once");
    }

    #[test]
    fn accumulators_retract() {
        let mut a = AggKind::Sum.create();
        AggKind::Sum.update(&mut a, &Value::Int(5), 1);
        AggKind::Sum.update(&mut a, &Value::Int(7), 1);
        AggKind::Sum.update(&mut a, &Value::Int(5), -1);
        assert_eq!(AggKind::Sum.result(&a, &DataType::Int64), Value::Int(7));
        let mut c = AggKind::Count.create();
        AggKind::Count.update(&mut c, &Value::Null, 1);
        assert_eq!(AggKind::Count.result(&c, &DataType::Int64), Value::Int(0));
    }

    #[test]
    fn distinct_accumulators_count_values_once_and_retract() {
        let k = AggKind::Count;
        let mut a = k.create_distinct();
        for v in [1, 1, 2] {
            k.update(&mut a, &Value::Int(v), 1);
        }
        assert_eq!(k.result(&a, &DataType::Int64), Value::Int(2));
        k.update(&mut a, &Value::Int(1), -1);
        assert_eq!(k.result(&a, &DataType::Int64), Value::Int(2), "1 is still there once");
        k.update(&mut a, &Value::Int(1), -1);
        assert_eq!(k.result(&a, &DataType::Int64), Value::Int(1));
        let s = AggKind::Sum;
        let (mut x, mut y) = (s.create_distinct(), s.create_distinct());
        s.update(&mut x, &Value::Int(5), 1);
        s.update(&mut y, &Value::Int(5), 1);
        s.update(&mut y, &Value::Int(7), 1);
        s.merge(&mut x, y);
        assert_eq!(s.result(&x, &DataType::Int64), Value::Int(12));
    }

    #[test]
    fn group_keys_hash_canonically() {
        let a = GroupKey::new(vec![Value::Str("ab".into()), Value::Str("c".into())]);
        let b = GroupKey::new(vec![Value::Str("a".into()), Value::Str("bc".into())]);
        assert_ne!(a.canonical_hash(), b.canonical_hash());
        assert_eq!(a.canonical_hash(), a.clone().canonical_hash());
    }
}
