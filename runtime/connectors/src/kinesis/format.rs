//! Record data as rows and rows as record data, in the table's format: `json` (Arrow's
//! JSON decoder, by column name; written as the filesystem connector's JSON lines
//! are), `csv` (the filesystem connector's CSV decoder and encoder, one CSV record per
//! Kinesis record) and `raw` (the data as it is, in a STRING or BYTES column), plus
//! the metadata columns. A record that does not decode fails the job with the
//! stream, the shard and its sequence number.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, RecordBatchOptions, StringArray, TimestampMillisecondArray};
use arrow::datatypes::DataType;
use weir::connector::ConnectorError;

use super::client::Record;
use super::options::{Format, KinesisOptions, Meta};
use crate::filesystem::format::csv as fcsv;

/// Where the records of a batch come from, for messages.
pub struct Origin<'a> {
    /// `stream 'name'`
    pub stream: &'a str,
    pub shard: &'a str,
}

fn record_error(at: &Origin<'_>, seq: &str, message: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Other(format!("kinesis {}, shard {}, record {seq}: {message}", at.stream, at.shard))
}

/// The rows of `records` (one per record), in the table's columns.
pub fn decode(o: &KinesisOptions, records: &[Record], at: &Origin<'_>) -> Result<RecordBatch, ConnectorError> {
    let n = records.len();
    let values = match &o.format {
        Format::Json => decode_json(o, records, at)?,
        Format::Csv(c) => decode_csv(o, c, records, at)?,
        Format::Raw => decode_raw(o, records, at)?,
    };
    if o.metadata.is_empty() {
        return Ok(values);
    }
    let mut columns: Vec<Option<ArrayRef>> = vec![None; o.schema.fields().len()];
    for (j, c) in o.value_columns.iter().enumerate() {
        columns[*c] = Some(values.column(j).clone());
    }
    for m in &o.metadata {
        let t = o.schema.field(m.column).data_type();
        let a: ArrayRef = match m.key {
            Meta::Timestamp => {
                let tz = match t {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(TimestampMillisecondArray::from_iter_values(records.iter().map(|r| r.arrival_ms)).with_timezone_opt(tz))
            }
            Meta::ShardId => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(at.shard, n))),
            Meta::SequenceNumber => Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.sequence.as_str()))),
            Meta::PartitionKey => Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.partition_key.as_str()))),
        };
        let a = if a.data_type() != t {
            arrow::compute::cast(&a, t).map_err(|e| ConnectorError::Other(format!("kinesis {}: metadata column '{}': {e}", at.stream, o.schema.field(m.column).name())))?
        } else {
            a
        };
        columns[m.column] = Some(a);
    }
    let cols: Vec<ArrayRef> = columns.into_iter().enumerate().map(|(i, c)| c.unwrap_or_else(|| arrow::array::new_null_array(o.schema.field(i).data_type(), n))).collect();
    RecordBatch::try_new_with_options(o.schema.clone(), cols, &RecordBatchOptions::new().with_row_count(Some(n))).map_err(|e| ConnectorError::Other(format!("kinesis {}: {e}", at.stream)))
}

fn decode_json(o: &KinesisOptions, records: &[Record], at: &Origin<'_>) -> Result<RecordBatch, ConnectorError> {
    let new_decoder =
        || arrow::json::ReaderBuilder::new(o.value_schema.clone()).with_batch_size(records.len().max(1) + 1).build_decoder().map_err(|e| ConnectorError::Other(format!("kinesis {}: {e}", at.stream)));
    let mut d = new_decoder()?;
    for r in records {
        let before = d.len();
        let data = r.data.as_ref();
        let fed = d.decode(data).and_then(|used| if used < data.len() { Err(arrow::error::ArrowError::JsonError("more than one JSON value in the record".into())) } else { d.decode(b"\n") });
        if let Err(e) = fed {
            return Err(record_error(at, &r.sequence, e));
        }
        if d.has_partial_record() {
            return Err(record_error(at, &r.sequence, "incomplete JSON (the record ends inside a value)"));
        }
        if d.len() != before + 1 {
            return Err(record_error(at, &r.sequence, "the record holds no JSON object (or more than one)"));
        }
    }
    match d.flush() {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Ok(RecordBatch::new_empty(o.value_schema.clone())),
        Err(e) => {
            // find the record: decode them one by one
            for r in records {
                let mut one = new_decoder()?;
                if let Err(e) = one.decode(r.data.as_ref()).and_then(|_| one.flush()) {
                    return Err(record_error(at, &r.sequence, e));
                }
            }
            Err(ConnectorError::Other(format!("kinesis {}, shard {}: {e}", at.stream, at.shard)))
        }
    }
}

fn decode_csv(o: &KinesisOptions, c: &fcsv::CsvOptions, records: &[Record], at: &Origin<'_>) -> Result<RecordBatch, ConnectorError> {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true).delimiter(c.delimiter).quote(c.quote).quoting(!c.disable_quote);
    if c.allow_comments {
        b.comment(Some(b'#'));
    }
    let mut rows: Vec<fcsv::Record> = Vec::with_capacity(records.len());
    let mut rec = csv::StringRecord::new();
    for (i, r) in records.iter().enumerate() {
        let mut rd = b.from_reader(r.data.as_ref());
        match rd.read_record(&mut rec) {
            Ok(true) => rows.push((i as u64 + 1, rec.clone())),
            Ok(false) => rows.push((i as u64 + 1, csv::StringRecord::new())),
            Err(e) => return Err(record_error(at, &r.sequence, e)),
        }
    }
    fcsv::decode(&rows, &o.value_schema, c, "").map_err(|e| match e {
        ConnectorError::Parse { line, message, .. } => {
            let seq = records.get((line as usize).saturating_sub(1)).map_or("?", |r| r.sequence.as_str());
            record_error(at, seq, message)
        }
        other => ConnectorError::Other(format!("kinesis {}, shard {}: {other}", at.stream, at.shard)),
    })
}

fn decode_raw(o: &KinesisOptions, records: &[Record], at: &Origin<'_>) -> Result<RecordBatch, ConnectorError> {
    let f = o.value_schema.field(0);
    let col: ArrayRef = match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => {
            let mut v = Vec::with_capacity(records.len());
            for r in records {
                v.push(std::str::from_utf8(r.data.as_ref()).map_err(|e| record_error(at, &r.sequence, format!("column '{}' is STRING and the data is not UTF-8: {e}", f.name())))?);
            }
            Arc::new(StringArray::from(v))
        }
        _ => Arc::new(BinaryArray::from_iter_values(records.iter().map(|r| r.data.as_ref()))),
    };
    let col = if col.data_type() != f.data_type() { arrow::compute::cast(&col, f.data_type()).map_err(|e| ConnectorError::Other(e.to_string()))? } else { col };
    RecordBatch::try_new(o.value_schema.clone(), vec![col]).map_err(|e| ConnectorError::Other(format!("kinesis {}: {e}", at.stream)))
}

/// The data of each row of `batch` (the table's columns), in the table's format.
pub fn encode(o: &KinesisOptions, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
    match &o.format {
        Format::Json => Ok(crate::rows::json_rows(batch)?.into_iter().map(String::into_bytes).collect()),
        Format::Csv(c) => (0..batch.num_rows())
            .map(|i| {
                let mut v = fcsv::encode(&batch.slice(i, 1), c)?;
                if v.last() == Some(&b'\n') {
                    v.pop();
                }
                Ok(v)
            })
            .collect(),
        Format::Raw => {
            let i = o.value_columns.first().copied().ok_or("no column")?;
            let c = batch.column(i);
            let c = arrow::compute::cast(c, &DataType::Binary).map_err(|e| e.to_string())?;
            let b = c.as_any().downcast_ref::<BinaryArray>().ok_or("not binary")?;
            Ok((0..b.len()).map(|i| if b.is_null(i) { Vec::new() } else { b.value(i).to_vec() }).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::TableOptions;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema, SchemaRef, TimeUnit};
    use aws_sdk_kinesis::primitives::Blob;
    use std::collections::BTreeMap;

    fn opts(format: &str, schema: SchemaRef, extra: &[(&str, &str)]) -> KinesisOptions {
        let mut map: BTreeMap<String, String> = [("stream".to_string(), "s".to_string()), ("format".to_string(), format.to_string())].into_iter().collect();
        for (k, v) in extra {
            map.insert(k.to_string(), v.to_string());
        }
        KinesisOptions::parse(&TableOptions { table: "t".into(), connector: "kinesis".into(), map, primary_key: vec![], partition_keys: vec![] }, &schema).unwrap()
    }

    fn rec(seq: &str, data: &str) -> Record {
        Record { sequence: seq.into(), data: Blob::new(data.as_bytes().to_vec()), partition_key: format!("k{seq}"), arrival_ms: 1_700_000_000_000 }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    const AT: Origin<'static> = Origin { stream: "stream 's'", shard: "shardId-000000000000" };

    #[test]
    fn json_csv_raw_round_trip() {
        for (f, extra) in [("json", vec![]), ("csv", vec![("csv.field-delimiter", "|")])] {
            let o = opts(f, schema(), &extra);
            let b = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])), Arc::new(StringArray::from(vec![Some("a|b"), Some("c"), Some("x\ny")]))]).unwrap();
            let data = encode(&o, &b).unwrap();
            assert_eq!(data.len(), 3);
            let recs: Vec<Record> = data.iter().enumerate().map(|(i, d)| rec(&i.to_string(), std::str::from_utf8(d).unwrap())).collect();
            let back = decode(&o, &recs, &AT).unwrap();
            assert_eq!(back.column(0).as_ref(), b.column(0).as_ref(), "{f}");
            // CSV reads an empty field of a STRING column as an empty string, not null; all are set here
            assert_eq!(back.column(1).as_ref(), b.column(1).as_ref(), "{f}");
        }
        let s: SchemaRef = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let o = opts("raw", s.clone(), &[]);
        let back = decode(&o, &[rec("1", "hello"), rec("2", "{not json")], &AT).unwrap();
        assert_eq!(back.column(0).as_any().downcast_ref::<StringArray>().unwrap().value(1), "{not json");
        let enc = encode(&o, &back).unwrap();
        assert_eq!(enc, vec![b"hello".to_vec(), b"{not json".to_vec()]);
    }

    #[test]
    fn bad_records_name_the_shard_and_sequence_number() {
        let o = opts("json", schema(), &[]);
        let e = decode(&o, &[rec("41", "{\"id\": 1}"), rec("42", "{\"id\": \"x\"")], &AT).unwrap_err().to_string();
        assert!(e.contains("kinesis stream 's', shard shardId-000000000000, record 42"), "{e}");
        let e = decode(&o, &[rec("7", "{\"id\": 1} {\"id\": 2}")], &AT).unwrap_err().to_string();
        assert!(e.contains("record 7"), "{e}");
        let e = decode(&o, &[rec("8", "")], &AT).unwrap_err().to_string();
        assert!(e.contains("record 8: the record holds no JSON object"), "{e}");
        let o = opts("csv", schema(), &[]);
        let e = decode(&o, &[rec("1", "1,a"), rec("9", "zz,b")], &AT).unwrap_err().to_string();
        assert!(e.contains("record 9: column 1 ('id'): cannot parse 'zz'"), "{e}");
        let s: SchemaRef = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let o = opts("raw", s, &[]);
        let bad = Record { sequence: "5".into(), data: Blob::new(vec![0xff, 0xfe]), partition_key: "k".into(), arrival_ms: 0 };
        let e = decode(&o, &[bad], &AT).unwrap_err().to_string();
        assert!(e.contains("record 5: column 'line' is STRING and the data is not UTF-8"), "{e}");
    }

    #[test]
    fn metadata_columns_are_filled() {
        let s: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("arrived", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
            Field::new("id", DataType::Int64, true),
            Field::new("shard", DataType::Utf8, true),
            Field::new("seq", DataType::Utf8, true),
            Field::new("pk", DataType::Utf8, true),
        ]));
        let o = opts("json", s, &[("__metadata.arrived", "timestamp"), ("__metadata.shard", "shard-id"), ("__metadata.seq", "sequence-number VIRTUAL"), ("__metadata.pk", "partition-key")]);
        let b = decode(&o, &[rec("1", "{\"id\": 10}"), rec("2", "{\"id\": 20}")], &AT).unwrap();
        assert_eq!(b.num_columns(), 5);
        assert_eq!(b.column(1).as_any().downcast_ref::<Int64Array>().unwrap().values(), &[10, 20]);
        assert_eq!(b.column(0).as_any().downcast_ref::<TimestampMillisecondArray>().unwrap().value(0), 1_700_000_000_000);
        assert_eq!(b.column(2).as_any().downcast_ref::<StringArray>().unwrap().value(1), "shardId-000000000000");
        assert_eq!(b.column(3).as_any().downcast_ref::<StringArray>().unwrap().value(1), "2");
        assert_eq!(b.column(4).as_any().downcast_ref::<StringArray>().unwrap().value(0), "k1");
    }
}
