//! Rows of [`ChangeBatch`]es as text: JSON lines and Flink's `+I[a, b]` print form.

use arrow::array::RecordBatch;
use serde_json::value::RawValue;
use weir::connector::Sink;

use crate::changelog::ChangeBatch;
use crate::registry::SinkArgs;

/// JSON lines of rows (timestamps as `yyyy-MM-dd HH:mm:ss.SSS`), one string per row.
pub fn json_rows(b: &RecordBatch) -> Result<Vec<String>, String> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".into())
            .with_datetime_format("%Y-%m-%d %H:%M:%S%.3f".into())
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        w.write(b).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The `+I[a, b]` form of each row (Flink's print format).
pub fn print_rows(b: &ChangeBatch) -> Result<Vec<String>, String> {
    let opts = arrow::util::display::FormatOptions::default().with_null("NULL");
    let cols: Vec<_> = b.rows.0.columns().iter().map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    Ok((0..b.num_rows())
        .map(|i| format!("{}[{}]", b.kind(i).short(), cols.iter().map(|c| c.value(i).to_string()).collect::<Vec<_>>().join(", ")))
        .collect())
}

fn raw_rows(b: ChangeBatch, out: &mut weir::Collector<'_, Box<RawValue>>) {
    match json_rows(&b.rows.0) {
        Ok(rows) => {
            for r in rows {
                match RawValue::from_string(r) {
                    Ok(v) => out.emit(v),
                    Err(e) => panic!("SQL sink: {e}"),
                }
            }
        }
        Err(e) => panic!("SQL sink: cannot write rows as JSON: {e}"),
    }
}

/// Adds a sink of JSON rows (one JSON object per row, inserts only) to `args.stream`:
/// the rows are turned into JSON by a flat map with its own uid, then written by the
/// sinks `factory` makes.
pub fn json_sink<S: Sink<Box<RawValue>> + 'static>(args: SinkArgs<'_>, factory: impl Fn(&weir::connector::SinkContext) -> S + 'static) {
    let rows = args.stream.flat_map(raw_rows).uid(&format!("{}-rows", args.uid)).name(&format!("{}: to JSON", args.name));
    let rows = match args.parallelism {
        Some(p) => rows.parallelism(p),
        None => rows,
    };
    let h = rows.sink(args.name, factory).uid(args.uid);
    if let Some(p) = args.parallelism {
        h.parallelism(p);
    }
}
