//! Keys and values of Kafka records in the table's formats, reusing the
//! `filesystem` connector's: `json` (Arrow's JSON decoder and writer, one object per
//! record), `csv` (one record per message, the same parsing and options), `raw`
//! (the bytes of one STRING or BYTES column).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use weir::connector::ConnectorError;

use super::options::Format;
use crate::filesystem::format::csv as fcsv;

/// Where a record comes from, for errors: `topic`/`partition`@`offset`.
#[derive(Clone, Copy, Debug)]
pub struct At<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic '{}' partition {} offset {}", self.topic, self.partition, self.offset)
    }
}

fn parse_err(what: &str, at: At<'_>, message: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Other(format!("{what} of the record at {at}: {message}"))
}

/// Decodes the payloads (`None`: null) of one batch into `schema` (`what`: "value" or "key").
pub fn decode(format: &Format, schema: &SchemaRef, payloads: &[(Option<&[u8]>, At<'_>)], what: &str) -> Result<RecordBatch, ConnectorError> {
    match format {
        Format::Json => decode_json(schema, payloads, what),
        Format::Csv(o) => {
            let mut records = Vec::with_capacity(payloads.len());
            for (i, (p, at)) in payloads.iter().enumerate() {
                let mut rdr = csv::ReaderBuilder::new();
                rdr.has_headers(false).flexible(true).delimiter(o.delimiter).quote(o.quote).quoting(!o.disable_quote);
                let mut r = csv::StringRecord::new();
                let ok = rdr.from_reader(p.unwrap_or_default()).read_record(&mut r).map_err(|e| parse_err(what, *at, e))?;
                if !ok {
                    r = csv::StringRecord::new();
                }
                records.push((i as u64, r));
            }
            fcsv::decode(&records, schema, o, what).map_err(|e| match e {
                ConnectorError::Parse { line, message, .. } => parse_err(what, payloads[line as usize].1, message),
                other => other,
            })
        }
        Format::Raw => {
            let f = schema.field(0);
            let col: ArrayRef = match f.data_type() {
                DataType::Utf8 => {
                    let mut v = Vec::with_capacity(payloads.len());
                    for (p, at) in payloads {
                        v.push(p.map(|b| std::str::from_utf8(b).map_err(|e| parse_err(what, *at, format!("'raw' into STRING column '{}': not UTF-8 ({e})", f.name())))).transpose()?);
                    }
                    Arc::new(StringArray::from(v))
                }
                _ => Arc::new(BinaryArray::from(payloads.iter().map(|(p, _)| *p).collect::<Vec<_>>())),
            };
            let col = if col.data_type() != f.data_type() { arrow::compute::cast(&col, f.data_type()).map_err(|e| ConnectorError::Other(e.to_string()))? } else { col };
            RecordBatch::try_new(schema.clone(), vec![col]).map_err(|e| ConnectorError::Other(e.to_string()))
        }
    }
}

fn decode_json(schema: &SchemaRef, payloads: &[(Option<&[u8]>, At<'_>)], what: &str) -> Result<RecordBatch, ConnectorError> {
    let new = || arrow::json::ReaderBuilder::new(schema.clone()).build_decoder().map_err(|e| ConnectorError::Other(e.to_string()));
    let mut d = new()?;
    for (p, at) in payloads {
        let Some(p) = p else { return Err(parse_err(what, *at, "null (a JSON object was expected)")) };
        if p.iter().all(u8::is_ascii_whitespace) {
            return Err(parse_err(what, *at, "empty (a JSON object was expected)"));
        }
        if let Err(e) = d.decode(p).and_then(|_| d.decode(b"\n")) {
            return Err(parse_err(what, *at, e));
        }
    }
    if let Ok(b) = d.flush() {
        let b = b.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
        if b.num_rows() == payloads.len() {
            return Ok(b);
        }
    }
    // find the record: one at a time
    for (p, at) in payloads {
        let mut one = new()?;
        match one.decode(p.unwrap_or_default()).and_then(|_| one.flush()) {
            Err(e) => return Err(parse_err(what, *at, e)),
            Ok(b) if b.as_ref().map_or(0, |b| b.num_rows()) != 1 => return Err(parse_err(what, *at, "not one JSON object")),
            Ok(_) => {}
        }
    }
    Err(ConnectorError::Other(format!("the {what}s of a batch do not decode as JSON")))
}

/// Encoded rows: one byte range of `bytes` per row (`None`: null).
#[derive(Default)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub ranges: Vec<Option<(usize, usize)>>,
}

impl Encoded {
    #[inline]
    pub fn get(&self, row: usize) -> Option<&[u8]> {
        self.ranges[row].map(|(a, b)| &self.bytes[a..b])
    }
}

/// Splits text of one record per line (JSON lines; CSV without line breaks inside
/// fields) into rows; false if the line count is not the row count.
fn split_lines(bytes: Vec<u8>, rows: usize) -> Result<Encoded, Vec<u8>> {
    let mut ranges = Vec::with_capacity(rows);
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            ranges.push(Some((start, i)));
            start = i + 1;
        }
    }
    if ranges.len() != rows || start != bytes.len() {
        return Err(bytes);
    }
    Ok(Encoded { bytes, ranges })
}

/// Encodes the rows of `batch` (already projected to the key's or value's columns).
pub fn encode(format: &Format, batch: &RecordBatch) -> Result<Encoded, String> {
    let rows = batch.num_rows();
    match format {
        Format::Json => {
            let mut buf = Vec::with_capacity(rows * 64);
            {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into())
                    .with_datetime_format("%Y-%m-%d %H:%M:%S%.3f".into())
                    .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
                w.write(batch).map_err(|e| e.to_string())?;
                w.finish().map_err(|e| e.to_string())?;
            }
            split_lines(buf, rows).map_err(|_| "JSON rows are not one line each".to_string())
        }
        Format::Csv(o) => match split_lines(fcsv::encode(batch, o)?, rows) {
            Ok(e) => Ok(e),
            Err(_) => {
                // a field with a line break: row by row
                let mut e = Encoded { bytes: Vec::new(), ranges: Vec::with_capacity(rows) };
                for i in 0..rows {
                    let one = fcsv::encode(&batch.slice(i, 1), o)?;
                    let a = e.bytes.len();
                    e.bytes.extend_from_slice(one.strip_suffix(b"\n").unwrap_or(&one));
                    e.ranges.push(Some((a, e.bytes.len())));
                }
                Ok(e)
            }
        },
        Format::Raw => {
            let c = batch.column(0);
            let mut e = Encoded { bytes: Vec::new(), ranges: Vec::with_capacity(rows) };
            let push = |e: &mut Encoded, v: Option<&[u8]>| match v {
                Some(v) => {
                    let a = e.bytes.len();
                    e.bytes.extend_from_slice(v);
                    e.ranges.push(Some((a, e.bytes.len())));
                }
                None => e.ranges.push(None),
            };
            if let Some(s) = c.as_any().downcast_ref::<StringArray>() {
                for i in 0..rows {
                    push(&mut e, s.is_valid(i).then(|| s.value(i).as_bytes()));
                }
            } else if let Some(b) = c.as_any().downcast_ref::<BinaryArray>() {
                for i in 0..rows {
                    push(&mut e, b.is_valid(i).then(|| b.value(i)));
                }
            } else {
                let c = arrow::compute::cast(c, &DataType::Binary).map_err(|e| e.to_string())?;
                let b = c.as_any().downcast_ref::<BinaryArray>().ok_or("raw: not bytes")?;
                for i in 0..rows {
                    push(&mut e, b.is_valid(i).then(|| b.value(i)));
                }
            }
            Ok(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filesystem::format::csv::CsvOptions;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    fn at(offset: i64) -> At<'static> {
        At { topic: "t", partition: 1, offset }
    }

    #[test]
    fn json_and_csv_round_trip_and_errors_name_the_record() {
        let b = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![Some(1), None])), Arc::new(StringArray::from(vec![Some("a,\"b\"\nc"), Some("d")]))]).unwrap();
        for f in [Format::Json, Format::Csv(CsvOptions::default())] {
            let e = encode(&f, &b).unwrap();
            let payloads: Vec<(Option<&[u8]>, At<'_>)> = (0..2).map(|i| (e.get(i), at(i as i64))).collect();
            let back = decode(&f, &schema(), &payloads, "value").unwrap();
            assert_eq!(back.column(1).as_any().downcast_ref::<StringArray>().unwrap().value(0), "a,\"b\"\nc", "{f:?}");
            assert!(back.column(0).is_null(1));
        }
        let bad: Vec<(Option<&[u8]>, At<'_>)> = vec![(Some(b"{\"id\": 1}"), at(5)), (Some(b"{\"id\": \"x\"}"), at(6))];
        let e = decode(&Format::Json, &schema(), &bad, "value").unwrap_err().to_string();
        assert!(e.contains("value of the record at topic 't' partition 1 offset 6"), "{e}");
        let two: Vec<(Option<&[u8]>, At<'_>)> = vec![(Some(b"{\"id\": 1}{\"id\": 2}"), at(7))];
        let e = decode(&Format::Json, &schema(), &two, "value").unwrap_err().to_string();
        assert!(e.contains("offset 7"), "{e}");
        let e = decode(&Format::Csv(CsvOptions::default()), &schema(), &[(Some(b"x,y"), at(9))], "key").unwrap_err().to_string();
        assert!(e.contains("key of the record at topic 't' partition 1 offset 9") && e.contains("cannot parse 'x'"), "{e}");
    }

    #[test]
    fn raw_values_are_bytes_or_utf8() {
        let s = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)]));
        let b = decode(&Format::Raw, &s, &[(Some(b"hi"), at(0)), (None, at(1))], "value").unwrap();
        assert_eq!(b.column(0).as_any().downcast_ref::<StringArray>().unwrap().value(0), "hi");
        assert!(b.column(0).is_null(1));
        let e = decode(&Format::Raw, &s, &[(Some(&[0xff, 0xfe]), at(3))], "value").unwrap_err().to_string();
        assert!(e.contains("offset 3") && e.contains("not UTF-8"), "{e}");
        let enc = encode(&Format::Raw, &b).unwrap();
        assert_eq!((enc.get(0), enc.get(1)), (Some(&b"hi"[..]), None));
    }
}
