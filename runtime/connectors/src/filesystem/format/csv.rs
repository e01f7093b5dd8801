//! `'format' = 'csv'`: RFC 4180 records (the `csv` crate) read by column position
//! into the table's physical columns, and written with quotes where needed.
//!
//! Flink's options: `csv.field-delimiter` (default `,`), `csv.quote-character`
//! (default `"`), `csv.disable-quote-character`, `csv.allow-comments` (lines
//! starting with `#` are skipped), `csv.ignore-parse-errors` (a record that does not
//! parse is skipped and counted instead of failing the job: `'bad-input' = 'skip'`,
//! see [`crate::bad_input`]), `csv.null-literal` (the text of a null, both ways;
//! default: a null is written as an empty field). An empty field of a non-string column is null.
//! Values are parsed by Arrow's casts: integers, floats, decimals, booleans,
//! dates `yyyy-MM-dd`, timestamps `yyyy-MM-dd HH:mm:ss[.SSS]`; timestamps are
//! written as `yyyy-MM-dd HH:mm:ss.SSS`.

use std::io::Read;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use weir::connector::{ConnectorError, SourceContext};

use super::{Input, Position};
use crate::bad_input::{BadInput, BadInputConfig};
use crate::registry::BatchSource;

/// The CSV options of a table.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub disable_quote: bool,
    pub allow_comments: bool,
    /// the old leniency of a reader that applies no bad-input policy (the Kinesis
    /// format): a field that does not parse is null and a short record gets nulls; the
    /// filesystem connector maps `csv.ignore-parse-errors` to `'bad-input' = 'skip'`
    pub ignore_parse_errors: bool,
    pub null_literal: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { delimiter: b',', quote: b'"', disable_quote: false, allow_comments: false, ignore_parse_errors: false, null_literal: None }
    }
}

impl CsvOptions {
    fn reader(&self) -> csv::ReaderBuilder {
        let mut b = csv::ReaderBuilder::new();
        b.has_headers(false).flexible(true).delimiter(self.delimiter).quote(self.quote).quoting(!self.disable_quote);
        if self.allow_comments {
            b.comment(Some(b'#'));
        }
        b
    }
}

/// One record as read: its line in the file and its fields.
pub type Record = (u64, csv::StringRecord);

/// The records as a batch of `schema` (by column position); errors name `file`,
/// the line and the column.
pub fn decode(records: &[Record], schema: &SchemaRef, o: &CsvOptions, file: &str) -> Result<RecordBatch, ConnectorError> {
    decode_with(records, schema, o, file, None)
}

/// The records as a batch of `schema`, less the bad ones (another number of fields
/// than the table has columns, a field that does not parse, a null in a `NOT NULL`
/// column): those as (index into `records`, error), the first error of each.
pub fn decode_good(records: &[Record], schema: &SchemaRef, o: &CsvOptions, file: &str) -> Result<(RecordBatch, Vec<(usize, String)>), ConnectorError> {
    let mut bad: Vec<Option<String>> = vec![None; records.len()];
    let b = decode_with(records, schema, o, file, Some(&mut bad))?;
    let errors: Vec<(usize, String)> = bad.into_iter().enumerate().filter_map(|(i, e)| e.map(|e| (i, e))).collect();
    let keep: arrow::array::BooleanArray = (0..records.len()).map(|i| Some(errors.binary_search_by_key(&i, |e| e.0).is_err())).collect();
    let b = arrow::compute::filter_record_batch(&b, &keep).map_err(|e| ConnectorError::Other(format!("{file}: {e}")))?;
    let b = RecordBatch::try_new_with_options(schema.clone(), b.columns().to_vec(), &arrow::array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())))
        .map_err(|e| ConnectorError::Other(format!("{file}: {e}")))?;
    Ok((b, errors))
}

fn field_count_error(n: usize, schema: &SchemaRef) -> String {
    format!("{n} fields, the table has {} columns ({})", schema.fields().len(), schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "))
}

/// `decode`, or with `bad` the bad records' errors collected there instead of
/// failing (their values in the batch are then null).
fn decode_with(records: &[Record], schema: &SchemaRef, o: &CsvOptions, file: &str, mut bad: Option<&mut Vec<Option<String>>>) -> Result<RecordBatch, ConnectorError> {
    let n_cols = schema.fields().len();
    let perr = |line: u64, message: String| ConnectorError::Parse { what: file.to_string(), line, message };
    match bad.as_deref_mut() {
        None => {
            if !o.ignore_parse_errors
                && let Some((line, r)) = records.iter().find(|(_, r)| r.len() != n_cols)
            {
                return Err(perr(*line, field_count_error(r.len(), schema)));
            }
        }
        Some(bad) => {
            for (i, (_, r)) in records.iter().enumerate() {
                if r.len() != n_cols {
                    bad[i] = Some(field_count_error(r.len(), schema));
                }
            }
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(n_cols);
    for (j, f) in schema.fields().iter().enumerate() {
        let is_string = matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        let texts: StringArray = records
            .iter()
            .map(|(_, r)| {
                let v = r.get(j)?;
                if o.null_literal.as_deref() == Some(v) {
                    return None;
                }
                if is_string {
                    Some(v)
                } else {
                    let t = v.trim();
                    (!t.is_empty()).then_some(t)
                }
            })
            .collect();
        let opts = CastOptions { safe: true, ..Default::default() };
        let col = cast_with_options(&texts, f.data_type(), &opts).map_err(|e| ConnectorError::Other(format!("{file}: column {} ('{}'): {e}", j + 1, f.name())))?;
        let unparsed = |i: usize| format!("column {} ('{}'): cannot parse '{}' as {}", j + 1, f.name(), texts.value(i), f.data_type());
        let null = || format!("column {} ('{}') is NOT NULL but the value is null", j + 1, f.name());
        match bad.as_deref_mut() {
            None => {
                if !o.ignore_parse_errors
                    && col.null_count() != texts.null_count()
                    && let Some(i) = (0..texts.len()).find(|&i| texts.is_valid(i) && col.is_null(i))
                {
                    return Err(perr(records[i].0, unparsed(i)));
                }
                if !f.is_nullable() && col.null_count() > 0 {
                    let i = (0..col.len()).find(|&i| col.is_null(i)).unwrap_or(0);
                    return Err(perr(records.get(i).map_or(0, |r| r.0), null()));
                }
            }
            Some(bad) => {
                for i in 0..col.len() {
                    if !col.is_null(i) || bad[i].is_some() {
                        continue;
                    }
                    if texts.is_valid(i) {
                        bad[i] = Some(unparsed(i));
                    } else if !f.is_nullable() {
                        bad[i] = Some(null());
                    }
                }
            }
        }
        columns.push(col);
    }
    // with bad records (nulls in a NOT NULL column, maybe) all nullable: filtered then
    let schema =
        if bad.is_some() { std::sync::Arc::new(arrow::datatypes::Schema::new(schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>())) } else { schema.clone() };
    RecordBatch::try_new_with_options(schema, columns, &arrow::array::RecordBatchOptions::new().with_row_count(Some(records.len()))).map_err(|e| ConnectorError::Other(format!("{file}: {e}")))
}

/// The rows of `batch` as CSV records (`\n` after each), quoted where needed.
pub fn encode(batch: &RecordBatch, o: &CsvOptions) -> Result<Vec<u8>, String> {
    let fmt = FormatOptions::default().with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.3f")).with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.3f")).with_date_format(Some("%Y-%m-%d"));
    let formatters: Vec<ArrayFormatter<'_>> = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &fmt)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .delimiter(o.delimiter)
        .quote(o.quote)
        .quote_style(if o.disable_quote { csv::QuoteStyle::Never } else { csv::QuoteStyle::Necessary })
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(batch.num_rows() * 32));
    let null = o.null_literal.clone().unwrap_or_default();
    let mut fields: Vec<String> = Vec::with_capacity(formatters.len());
    for i in 0..batch.num_rows() {
        fields.clear();
        for (c, f) in batch.columns().iter().zip(&formatters) {
            fields.push(if c.is_null(i) { null.clone() } else { f.value(i).to_string() });
        }
        w.write_record(&fields).map_err(|e| format!("writing CSV: {e}"))?;
    }
    w.into_inner().map_err(|e| format!("writing CSV: {e}"))
}

/// The input of a CSV reader, keeping the bytes read since `base` (the byte offset
/// of `buf[0]`) when dead letters need the raw records.
struct Recording {
    inner: Box<dyn Read + Send>,
    keep: bool,
    buf: Vec<u8>,
    base: u64,
}

impl Read for Recording {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        if self.keep {
            self.buf.extend_from_slice(&out[..n]);
        }
        Ok(n)
    }
}

impl Recording {
    /// Forgets the bytes before the offset `at`.
    fn forget_before(&mut self, at: u64) {
        let n = (at.saturating_sub(self.base) as usize).min(self.buf.len());
        self.buf.drain(..n);
        self.base += n as u64;
    }

    /// The bytes of `start..end` (offsets), without the line break that ends them.
    fn raw(&self, start: u64, end: u64) -> &[u8] {
        let (a, b) = ((start.saturating_sub(self.base) as usize).min(self.buf.len()), (end.saturating_sub(self.base) as usize).min(self.buf.len()));
        let mut r = &self.buf[a..b.max(a)];
        while let [rest @ .., b'\n' | b'\r'] = r {
            r = rest;
        }
        r
    }
}

/// Reads CSV files into batches of the table's physical schema; the files of the
/// path are read as [`Position`] says, and the position (file, records read) is
/// checkpointed. A record that does not parse goes where the table's bad-input policy
/// says ([`crate::bad_input`]).
pub struct CsvFileSource {
    path: Input,
    schema: SchemaRef,
    opts: CsvOptions,
    batch_rows: usize,
    pos: Position,
    reader: Option<csv::Reader<Recording>>,
    bad: BadInput,
}

impl CsvFileSource {
    /// Reads `path`: a local path (`PathBuf`) or an [`Input`].
    pub fn new(path: impl Into<Input>, schema: SchemaRef, opts: CsvOptions, batch_rows: usize) -> Self {
        CsvFileSource { path: path.into(), schema, opts, batch_rows: batch_rows.max(1), pos: Position::default(), reader: None, bad: BadInputConfig::fail("", "filesystem").handler() }
    }

    /// Bad records as `cfg` says (by default they fail the job).
    pub fn bad_input(mut self, cfg: &BadInputConfig) -> Self {
        self.bad = cfg.handler();
        self
    }
}

impl BatchSource for CsvFileSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.pos.open(&self.path, ctx)
    }

    fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        loop {
            match self.read_batch(max_rows)? {
                // every record of it was bad (skipped or a dead letter): on to the next ones
                Some(b) if b.num_rows() == 0 && !self.bad.fails() => continue,
                other => return Ok(other),
            }
        }
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        Ok(self.pos.snapshot())
    }

    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.pos.restore(splits)
    }
}

impl CsvFileSource {
    fn read_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.pos.owns() {
            return Ok(None);
        }
        let want = max_rows.min(self.batch_rows);
        let keep = self.bad.wants_raw();
        let mut records: Vec<Record> = Vec::new();
        // the byte range of each record (dead letters' raw bytes)
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        if let Some(r) = self.reader.as_mut() {
            let at = r.position().byte();
            r.get_mut().forget_before(at);
        }
        while records.len() < want {
            let Some(p) = self.pos.current() else { break };
            if self.reader.is_none() {
                self.reader = Some(self.opts.reader().from_reader(Recording { inner: p.open()?, keep, buf: Vec::new(), base: 0 }));
            }
            let r = self.reader.as_mut().expect("opened");
            let mut rec = csv::StringRecord::new();
            let (line, start) = (r.position().line(), r.position().byte());
            let more = match r.read_record(&mut rec) {
                Ok(more) => more,
                Err(e) => {
                    let line = e.position().map_or(line, |p| p.line());
                    let end = r.position().byte();
                    if self.bad.fails() || end <= start {
                        return Err(ConnectorError::Parse { what: p.display().to_string(), line, message: e.to_string() });
                    }
                    let what = p.display().to_string();
                    let counted = self.pos.count_record();
                    let r = self.reader.as_ref().expect("opened");
                    if counted {
                        self.bad.record(&what, line, &e.to_string(), r.get_ref().raw(start, end))?;
                    }
                    continue;
                }
            };
            if !more {
                if !records.is_empty() {
                    break; // decode this file's records first (errors name the file)
                }
                self.reader = None;
                self.pos.next_file();
                continue;
            }
            if !self.pos.count_record() {
                continue;
            }
            // a blank line is no record
            if rec.len() == 1 && rec.get(0).is_some_and(str::is_empty) && self.schema.fields().len() > 1 {
                continue;
            }
            let line = rec.position().map_or(line, |p| p.line());
            records.push((line, rec));
            ranges.push((start, r.position().byte()));
        }
        if records.is_empty() {
            return Ok(None);
        }
        let file = self.pos.files[self.pos.file].display().to_string();
        if self.bad.fails() {
            return decode(&records, &self.schema, &self.opts, &file).map(Some);
        }
        let (batch, errors) = decode_good(&records, &self.schema, &self.opts, &file)?;
        for (i, e) in errors {
            let raw = match (&self.reader, keep) {
                (Some(r), true) => r.get_ref().raw(ranges[i].0, ranges[i].1),
                _ => &[],
            };
            self.bad.record(&file, records[i].0, &e, raw)?;
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("x", DataType::Float64, true),
        ]))
    }

    fn records(text: &str, o: &CsvOptions) -> Vec<Record> {
        let mut r = o.reader().from_reader(text.as_bytes());
        let mut out = Vec::new();
        let mut rec = csv::StringRecord::new();
        while r.read_record(&mut rec).unwrap() {
            out.push((rec.position().unwrap().line(), rec.clone()));
        }
        out
    }

    fn strings(b: &RecordBatch) -> Vec<String> {
        let opts = FormatOptions::default().with_null("null");
        (0..b.num_rows()).map(|i| b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap().value(i).to_string()).collect::<Vec<_>>().join("|")).collect()
    }

    #[test]
    fn reads_every_type_by_position() {
        let o = CsvOptions::default();
        let text = "1,\"a, \"\"quoted\"\" name\",12.50,true,2024-01-02,2024-01-02 10:11:12.345,1.5\n2,,,,,2024-01-02 10:11:12,\n";
        let b = decode(&records(text, &o), &schema(), &o, "f.csv").unwrap();
        assert_eq!(strings(&b), vec!["1|a, \"quoted\" name|12.50|true|2024-01-02|2024-01-02T10:11:12.345|1.5", "2||null|null|null|2024-01-02T10:11:12|null"]);
    }

    #[test]
    fn parse_errors_name_file_line_and_column() {
        let o = CsvOptions::default();
        let e = decode(&records("1,a,1,true,2024-01-01,2024-01-01 00:00:00,1\nx,b,1,true,2024-01-01,2024-01-01 00:00:00,1\n", &o), &schema(), &o, "in.csv").unwrap_err().to_string();
        assert!(e.contains("in.csv, line 2: column 1 ('id'): cannot parse 'x' as Int64"), "{e}");
        let e = decode(&records("1,a\n", &o), &schema(), &o, "in.csv").unwrap_err().to_string();
        assert!(e.contains("in.csv, line 1: 2 fields, the table has 7 columns"), "{e}");
        let ignore = CsvOptions { ignore_parse_errors: true, ..o.clone() };
        let b = decode(&records("x,a\n", &ignore), &schema(), &ignore, "in.csv").unwrap();
        assert_eq!(strings(&b), vec!["null|a|null|null|null|null|null"]);
        // the bad records left out, each with its first error
        let text = "1,a,1,true,2024-01-01,2024-01-01 00:00:00,1\nx,a\n2,b,zz,true,2024-01-01,2024-01-01 00:00:00,1\n3,c,,,,,\n";
        let (b, bad) = decode_good(&records(text, &o), &schema(), &o, "in.csv").unwrap();
        assert_eq!(strings(&b), vec!["1|a|1.00|true|2024-01-01|2024-01-01T00:00:00|1.0", "3|c|null|null|null|null|null"]);
        assert_eq!(bad.len(), 2);
        assert!(bad[0].0 == 1 && bad[0].1.contains("2 fields, the table has 7 columns"), "{bad:?}");
        assert!(bad[1].0 == 2 && bad[1].1.contains("column 3 ('price'): cannot parse 'zz'"), "{bad:?}");
        let s: SchemaRef = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false), Field::new("b", DataType::Utf8, true)]));
        let (b, bad) = decode_good(&records("1,x\n,y\n", &o), &s, &o, "in.csv").unwrap();
        assert_eq!((b.num_rows(), bad.len()), (1, 1));
        assert!(bad[0].1.contains("column 1 ('a') is NOT NULL but the value is null"), "{bad:?}");
        assert!(!b.schema().field(0).is_nullable());
    }

    #[test]
    fn options_change_delimiter_quotes_comments_and_nulls() {
        let o = CsvOptions { delimiter: b';', quote: b'\'', allow_comments: true, null_literal: Some("N/A".into()), ..Default::default() };
        let s: SchemaRef = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true), Field::new("b", DataType::Int32, true)]));
        let b = decode(&records("# a comment\n'x;y';N/A\nN/A;3\n", &o), &s, &o, "f").unwrap();
        assert_eq!(strings(&b), vec!["x;y|null", "null|3"]);
        assert_eq!(String::from_utf8(encode(&b, &o).unwrap()).unwrap(), "'x;y';N/A\nN/A;3\n");
        let no_quotes = CsvOptions { disable_quote: true, ..Default::default() };
        let b = decode(&records("\"x\",1\n", &no_quotes), &s, &no_quotes, "f").unwrap();
        assert_eq!(strings(&b), vec!["\"x\"|1"]);
    }

    #[test]
    fn writes_quotes_only_where_needed_and_round_trips() {
        let o = CsvOptions::default();
        let text = "1,\"a,b\",1.00,false,2024-01-02,2024-01-02 10:11:12.345,2.5\n2,\"say \"\"hi\"\"\",,,,,\n3,\"two\nlines\",,,,,\n";
        let b = decode(&records(text, &o), &schema(), &o, "f").unwrap();
        let out = String::from_utf8(encode(&b, &o).unwrap()).unwrap();
        assert_eq!(out, "1,\"a,b\",1.00,false,2024-01-02,2024-01-02 10:11:12.345,2.5\n2,\"say \"\"hi\"\"\",,,,,\n3,\"two\nlines\",,,,,\n");
        let again = decode(&records(&out, &o), &schema(), &o, "f").unwrap();
        assert_eq!(strings(&again), strings(&b));
    }
}
