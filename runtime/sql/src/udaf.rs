//! Aggregate functions written in Rust (DataFusion `AggregateUDF`s registered through
//! `CompileOptions::udafs`) in the keyed aggregations.
//!
//! The keyed state of a group holds a UDAF's accumulator as its intermediate state
//! (`Accumulator::state()`, a few `ScalarValue`s) and its current result; each row
//! rebuilds the accumulator from that state (`merge_batch` into a fresh one), adds
//! the row (`update_batch`) or takes it back (`retract_batch`, for updating inputs),
//! and stores the new state. So the state survives checkpoints and rescaling like the
//! built-in aggregates' (serialized in key groups; the scalars as one Arrow IPC row),
//! and a session merge is `merge_batch` of both states.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{Accumulator, AggregateUDF};
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use weir::arrow::ArrowBatch;

use crate::ops::Value;

/// One call of an aggregate UDF in a query: the function and what its accumulators
/// are created with.
pub struct UdafCall {
    pub udf: Arc<AggregateUDF>,
    /// `name(args)` as written in the plan (in errors)
    pub name: String,
    /// the aggregation's input schema and the argument expressions over it
    pub input_schema: SchemaRef,
    pub arg_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub arg_fields: Vec<FieldRef>,
    pub return_field: FieldRef,
    /// the input retracts rows: accumulators come from `create_sliding_accumulator`
    /// and must support `retract_batch`
    pub retracting: bool,
}

impl std::fmt::Debug for UdafCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Udaf({})", self.name)
    }
}

impl PartialEq for UdafCall {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.udf.name() == o.udf.name() && self.arg_fields == o.arg_fields && self.retracting == o.retracting
    }
}
impl Eq for UdafCall {}

/// A UDAF's accumulator in keyed state: its intermediate state (`None`: no row
/// yet) and its result after the last row.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct UdafState {
    pub state: Option<Vec<ScalarValue>>,
    pub result: Option<ScalarValue>,
}

impl UdafCall {
    /// A fresh accumulator.
    pub fn accumulator(&self) -> Result<Box<dyn Accumulator>, String> {
        let args = AccumulatorArgs {
            return_field: self.return_field.clone(),
            schema: &self.input_schema,
            ignore_nulls: false,
            order_bys: &[],
            is_reversed: false,
            name: &self.name,
            is_distinct: false,
            exprs: &self.arg_exprs,
            expr_fields: &self.arg_fields,
        };
        let acc = if self.retracting { self.udf.create_sliding_accumulator(args) } else { self.udf.accumulator(args) };
        acc.map_err(|e| format!("{}: creating the accumulator: {e}", self.name))
    }

    /// The accumulator holding `st`.
    fn restore(&self, st: &UdafState) -> Result<Box<dyn Accumulator>, String> {
        let mut acc = self.accumulator()?;
        if let Some(values) = &st.state {
            let arrays: Vec<ArrayRef> = values.iter().map(|v| v.to_array()).collect::<Result<_, _>>().map_err(|e| format!("{}: state: {e}", self.name))?;
            acc.merge_batch(&arrays).map_err(|e| format!("{}: merge_batch: {e}", self.name))?;
        }
        Ok(acc)
    }

    fn save(&self, acc: &mut dyn Accumulator, st: &mut UdafState) -> Result<(), String> {
        // evaluate first: it must not consume the state, state() may
        st.result = Some(acc.evaluate().map_err(|e| format!("{}: evaluate: {e}", self.name))?);
        st.state = Some(acc.state().map_err(|e| format!("{}: state: {e}", self.name))?);
        Ok(())
    }

    /// Adds (`sign` > 0) or retracts one row's argument `v`.
    pub fn update(&self, st: &mut UdafState, v: &Value, sign: i64) -> Result<(), String> {
        let dt = self.arg_fields.first().map(|f| f.data_type().clone()).unwrap_or(arrow::datatypes::DataType::Null);
        let arg = v.to_scalar(&dt).and_then(|s| s.to_array().map_err(|e| e.to_string())).map_err(|e| format!("{}: argument: {e}", self.name))?;
        let mut acc = self.restore(st)?;
        if sign > 0 {
            acc.update_batch(&[arg]).map_err(|e| format!("{}: update_batch: {e}", self.name))?;
        } else {
            acc.retract_batch(&[arg]).map_err(|e| format!("{}: retract_batch: {e}", self.name))?;
        }
        self.save(acc.as_mut(), st)
    }

    /// Folds `other` into `st` (merging session windows).
    pub fn merge(&self, st: &mut UdafState, other: &UdafState) -> Result<(), String> {
        let Some(values) = &other.state else { return Ok(()) };
        let mut acc = self.restore(st)?;
        let arrays: Vec<ArrayRef> = values.iter().map(|v| v.to_array()).collect::<Result<_, _>>().map_err(|e| format!("{}: state: {e}", self.name))?;
        acc.merge_batch(&arrays).map_err(|e| format!("{}: merge_batch: {e}", self.name))?;
        self.save(acc.as_mut(), st)
    }

    /// The aggregate's value.
    pub fn result(&self, st: &UdafState) -> Result<Value, String> {
        let r = match &st.result {
            Some(r) => r.clone(),
            None => self.restore(st)?.evaluate().map_err(|e| format!("{}: evaluate: {e}", self.name))?,
        };
        Value::from_scalar(r).map_err(|e| format!("{}: result: {e}", self.name))
    }
}

/// Serialized as one Arrow IPC row (the state's scalars, then the result); no row
/// yet: no bytes.
impl Serialize for UdafState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(values) = &self.state else { return s.serialize_none() };
        let mut fields = Vec::with_capacity(values.len() + 1);
        let mut cols = Vec::with_capacity(values.len() + 1);
        for (i, v) in values.iter().chain(self.result.iter()).enumerate() {
            fields.push(Field::new(format!("s{i}"), v.data_type(), true));
            cols.push(v.to_array().map_err(serde::ser::Error::custom)?);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema, cols).map_err(serde::ser::Error::custom)?;
        s.serialize_some(&(values.len() as u32, ArrowBatch(batch)))
    }
}

impl<'de> Deserialize<'de> for UdafState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Some((n, ArrowBatch(b))) = Option::<(u32, ArrowBatch)>::deserialize(d)? else { return Ok(UdafState::default()) };
        let n = n as usize;
        let mut values = Vec::with_capacity(b.num_columns());
        for c in b.columns() {
            values.push(ScalarValue::try_from_array(c, 0).map_err(serde::de::Error::custom)?);
        }
        if values.len() < n {
            return Err(serde::de::Error::custom(format!("UDAF state of {} values, {n} expected", values.len())));
        }
        let result = values.split_off(n).pop();
        Ok(UdafState { state: Some(values), result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    /// DataFusion's SUM as a UDAF call over one BIGINT column.
    fn sum_call(retracting: bool) -> UdafCall {
        let f: FieldRef = Arc::new(Field::new("x", DataType::Int64, true));
        let udf = datafusion::functions_aggregate::sum::sum_udaf();
        let return_field = udf.return_field(std::slice::from_ref(&f)).unwrap();
        UdafCall {
            udf,
            name: "sum(x)".into(),
            input_schema: Arc::new(Schema::new(vec![f.as_ref().clone()])),
            arg_exprs: vec![Arc::new(datafusion::physical_expr::expressions::Column::new("x", 0))],
            arg_fields: vec![f],
            return_field,
            retracting,
        }
    }

    #[test]
    fn updates_retractions_merges_and_a_restore_in_between() {
        let call = sum_call(true);
        let mut st = UdafState::default();
        assert_eq!(call.result(&st).unwrap(), Value::Null, "no row yet");
        call.update(&mut st, &Value::Int(5), 1).unwrap();
        call.update(&mut st, &Value::Int(7), 1).unwrap();
        // through a checkpoint
        let mut st: UdafState = postcard::from_bytes(&postcard::to_allocvec(&st).unwrap()).unwrap();
        call.update(&mut st, &Value::Int(5), -1).unwrap();
        assert_eq!(call.result(&st).unwrap(), Value::Int(7));
        let mut other = UdafState::default();
        call.update(&mut other, &Value::Int(30), 1).unwrap();
        call.merge(&mut st, &other).unwrap();
        assert_eq!(call.result(&st).unwrap(), Value::Int(37));
        call.merge(&mut st, &UdafState::default()).unwrap();
        assert_eq!(call.result(&st).unwrap(), Value::Int(37), "an empty state merges as nothing");
    }

    #[test]
    fn state_round_trips_through_postcard() {
        let list = ScalarValue::List(ScalarValue::new_list_nullable(&[ScalarValue::Int64(Some(3)), ScalarValue::Int64(None)], &arrow::datatypes::DataType::Int64));
        for st in [
            UdafState::default(),
            UdafState { state: Some(vec![ScalarValue::Float64(Some(1.5)), ScalarValue::Int64(Some(2)), list.clone()]), result: Some(ScalarValue::Float64(Some(0.75))) },
            UdafState { state: Some(vec![ScalarValue::Utf8(Some("x".into()))]), result: None },
        ] {
            let bytes = postcard::to_allocvec(&st).unwrap();
            let back: UdafState = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, st);
        }
    }
}
