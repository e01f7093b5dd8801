//! `datagen`: deterministic rows, bounded or unbounded, paced, rescalable.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use weir::connector::sequence::SequenceSplits;
use weir::connector::{ConnectorError, SourceContext};

use crate::registry::{BatchSource, Connector, SourceFactory, TableOptions};

/// `datagen`: `'number-of-rows'` (bounded; unbounded without), `'rows-per-second'`.
/// Row `n` has `n` in integer columns, `n` as text in string columns, `n` ms in
/// timestamp columns, `n` in floats and `n % 2 = 0` in booleans: deterministic, so
/// results are checkable; the sequence splits make it rescalable.
pub struct Datagen;

impl Connector for Datagen {
    fn name(&self) -> &str {
        "datagen"
    }
    fn options(&self) -> &[&str] {
        &["number-of-rows", "rows-per-second"]
    }
    fn bounded(&self, opts: &TableOptions) -> bool {
        opts.get("number-of-rows").is_some()
    }
    fn validate(&self, opts: &TableOptions, _schema: &SchemaRef) -> Result<(), String> {
        opts.parse::<u64>("number-of-rows")?;
        opts.parse::<u64>("rows-per-second")?;
        Ok(())
    }
    fn source(&self, opts: &TableOptions, schema: SchemaRef) -> Result<SourceFactory, String> {
        let rows = opts.parse::<u64>("number-of-rows")?;
        let rate = opts.parse::<u64>("rows-per-second")?;
        for f in schema.fields() {
            let ok = matches!(f.data_type(), DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64 | DataType::Utf8 | DataType::Boolean | DataType::Timestamp(_, _) | DataType::Decimal128(_, _));
            if !ok {
                return Err(format!("connector 'datagen' cannot generate column '{}' of type {}", f.name(), f.data_type()));
            }
        }
        Ok(Arc::new(move |ctx: &SourceContext| {
            Box::new(DatagenSource { splits: SequenceSplits::initial(ctx.subtask, ctx.parallelism, rows), pacer: weir::connector::sequence::Pacer::new(rate, ctx.parallelism), schema: schema.clone() }) as Box<dyn BatchSource>
        }))
    }
}

struct DatagenSource {
    splits: SequenceSplits,
    pacer: weir::connector::sequence::Pacer,
    schema: SchemaRef,
}

impl BatchSource for DatagenSource {
    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if self.splits.is_finished() {
            return Ok(None);
        }
        let budget = self.pacer.budget(max_rows.min(1024) as u64);
        let mut ns = Vec::new();
        self.splits.take_run(budget, |n| ns.push(n as i64));
        self.pacer.produced(ns.len() as u64);
        if ns.is_empty() && self.splits.is_finished() {
            return Ok(None);
        }
        let base = Int64Array::from(ns.clone());
        let cols = self
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Ok(Arc::new(StringArray::from(ns.iter().map(|n| n.to_string()).collect::<Vec<_>>())) as arrow::array::ArrayRef),
                DataType::Boolean => Ok(Arc::new(arrow::array::BooleanArray::from(ns.iter().map(|n| n % 2 == 0).collect::<Vec<_>>())) as arrow::array::ArrayRef),
                DataType::Timestamp(_, _) => cast(&cast(&base, &DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None))?, f.data_type()),
                dt => cast(&base, dt),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConnectorError::Other(e.to_string()))?;
        RecordBatch::try_new(self.schema.clone(), cols).map(Some).map_err(|e| ConnectorError::Other(e.to_string()))
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.splits.snapshot())
    }
    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.splits.restore(splits)
    }
    fn redistribution(&self) -> weir::checkpoint::restore::Redistribution {
        weir::checkpoint::restore::Redistribution::Union
    }
}
