//! Table functions written in Rust, registered through `CompileOptions::udtfs` (what a
//! custom job image does), called per row with `LATERAL TABLE`: inner and LEFT
//! correlates, chained calls, `t.*`, time attributes kept for windows after them,
//! updating inputs (each output row keeps its input row's kind), the same result in
//! batch mode, and errors naming what is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type};
use weir_sql::CompileOptions;
use weir_sql::connectors::ConnectorRegistry;
use weir_sql::udtf::{TableFunction, TableRows};

mod common;
use common::{Collect, Collected, run_collected};

/// `split_words(s)`: a row (word, length) per space-separated word of `s`.
struct SplitWords;

impl TableFunction for SplitWords {
    fn name(&self) -> &str {
        "split_words"
    }
    fn output(&self, args: &[DataType]) -> Result<Vec<Field>, String> {
        match args {
            [DataType::Utf8] => Ok(vec![Field::new("word", DataType::Utf8, false), Field::new("len", DataType::Int64, false)]),
            other => Err(format!("expected one STRING argument, got {other:?}")),
        }
    }
    fn eval(&self, args: &[ArrayRef], _rows: usize) -> Result<TableRows, String> {
        let s = args[0].as_string_opt::<i32>().ok_or("split_words: STRING expected")?;
        let (mut rows, mut words, mut lens) = (Vec::new(), Vec::new(), Vec::new());
        for (r, v) in s.iter().enumerate() {
            for w in v.unwrap_or_default().split_whitespace() {
                rows.push(r as u32);
                words.push(w.to_string());
                lens.push(w.chars().count() as i64);
            }
        }
        Ok(TableRows { input_rows: rows, columns: vec![Arc::new(StringArray::from(words)), Arc::new(Int64Array::from(lens))] })
    }
}

/// `series(n)`: rows 1 … n.
struct Series;

impl TableFunction for Series {
    fn name(&self) -> &str {
        "series"
    }
    fn output(&self, args: &[DataType]) -> Result<Vec<Field>, String> {
        match args {
            [DataType::Int64] => Ok(vec![Field::new("i", DataType::Int64, false)]),
            other => Err(format!("expected one BIGINT argument, got {other:?}")),
        }
    }
    fn eval(&self, args: &[ArrayRef], _rows: usize) -> Result<TableRows, String> {
        let n = args[0].as_primitive::<Int64Type>();
        let (mut rows, mut vals) = (Vec::new(), Vec::new());
        for r in 0..n.len() {
            if n.is_valid(r) {
                for i in 1..=n.value(r) {
                    rows.push(r as u32);
                    vals.push(i);
                }
            }
        }
        Ok(TableRows { input_rows: rows, columns: vec![Arc::new(Int64Array::from(vals))] })
    }
}

fn options(collected: &Collected) -> CompileOptions {
    let mut connectors = ConnectorRegistry::default();
    connectors.register(Arc::new(Collect(collected.clone())));
    CompileOptions { connectors, udtfs: vec![Arc::new(SplitWords), Arc::new(Series)], ..CompileOptions::default() }
}

const ROWS: &str = r#"{"id": 1, "note": "fast red car", "ts": "2024-01-01 00:00:01"}
{"id": 2, "note": "", "ts": "2024-01-01 00:00:02"}
{"id": 3, "note": "red bike", "ts": "2024-01-01 00:00:03"}
{"id": 4, "note": "car", "ts": "2024-01-01 00:00:12"}
{"id": 5, "note": null, "ts": "2024-01-01 00:00:13"}
"#;

const TABLE: &str = "CREATE TABLE t (id BIGINT, note STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem', 'path' = '$DIR/t.json', 'format' = 'json');";

/// Runs [`TABLE`] and `sql` (`$DIR` holds `t.json` = [`ROWS`]) at `parallelism`,
/// streaming or batch: each collect table's final rows, sorted.
fn run(sql: &str, parallelism: u32, batch: bool) -> Result<BTreeMap<String, Vec<String>>, String> {
    run_collected(&format!("{TABLE}\n{sql}"), ROWS, parallelism, batch, options)
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Every mode and parallelism gives `want` for table `table`.
fn check(sql: &str, want: &BTreeMap<&str, Vec<&str>>) {
    for (p, batch) in [(1, false), (4, false), (2, true)] {
        let got = run(sql, p, batch).unwrap_or_else(|e| panic!("P={p} batch={batch}: {e}"));
        for (t, rows) in want {
            assert_eq!(got.get(*t).cloned().unwrap_or_default(), sorted(rows), "table {t} at P={p} batch={batch}");
        }
    }
}

#[test]
fn lateral_table_joins_each_row_with_its_function_rows() {
    let sql = "CREATE TABLE w (id BIGINT, word STRING, len BIGINT) WITH ('connector' = 'collect');
CREATE TABLE s (id BIGINT, word STRING, len BIGINT) WITH ('connector' = 'collect');
CREATE TABLE f (id BIGINT, word STRING) WITH ('connector' = 'collect');
EXECUTE STATEMENT SET BEGIN
INSERT INTO w SELECT o.id, x.word, x.len FROM t AS o, LATERAL TABLE(split_words(o.note)) AS x(word, len);
INSERT INTO s SELECT id, x.* FROM t CROSS JOIN LATERAL TABLE(split_words(UPPER(note))) AS x(word, len);
INSERT INTO f SELECT t.id, word FROM t JOIN LATERAL TABLE(split_words(note)) ON TRUE WHERE len > 3 AND t.id < 4;
END;";
    let want = BTreeMap::from([
        ("w", vec!["+I[1, fast, 4]", "+I[1, red, 3]", "+I[1, car, 3]", "+I[3, red, 3]", "+I[3, bike, 4]", "+I[4, car, 3]"]),
        ("s", vec!["+I[1, FAST, 4]", "+I[1, RED, 3]", "+I[1, CAR, 3]", "+I[3, RED, 3]", "+I[3, BIKE, 4]", "+I[4, CAR, 3]"]),
        ("f", vec!["+I[1, fast]", "+I[3, bike]"]),
    ]);
    check(sql, &want);
}

#[test]
fn left_join_lateral_keeps_rows_without_function_rows() {
    let sql = "CREATE TABLE l (id BIGINT, word STRING) WITH ('connector' = 'collect');
INSERT INTO l SELECT o.id, x.word FROM t AS o LEFT JOIN LATERAL TABLE(split_words(o.note)) AS x(word, len) ON TRUE WHERE o.id IN (2, 3, 5);";
    let want = BTreeMap::from([("l", vec!["+I[2, NULL]", "+I[3, red]", "+I[3, bike]", "+I[5, NULL]"])]);
    check(sql, &want);
}

#[test]
fn chained_calls_and_a_subquery_before_the_call() {
    let sql = "CREATE TABLE c (id BIGINT, word STRING, i BIGINT) WITH ('connector' = 'collect');
INSERT INTO c SELECT r.id, a.word, b.i FROM (SELECT id, note FROM t WHERE id <= 3) AS r, LATERAL TABLE(split_words(r.note)) AS a(word, len), LATERAL TABLE(series(a.len - 2)) AS b(i);";
    let want = BTreeMap::from([("c", vec!["+I[1, fast, 1]", "+I[1, fast, 2]", "+I[1, red, 1]", "+I[1, car, 1]", "+I[3, red, 1]", "+I[3, bike, 1]", "+I[3, bike, 2]"])]);
    check(sql, &want);
}

/// The rowtime attribute of the input stays one after the call: a window TVF over a
/// view with a LATERAL TABLE counts words per 10 s.
#[test]
fn the_time_attribute_survives_the_call() {
    let sql = "CREATE VIEW words AS SELECT o.ts, x.word FROM t AS o, LATERAL TABLE(split_words(o.note)) AS x(word, len);
CREATE TABLE n (ws TIMESTAMP(3), word STRING, cnt BIGINT) WITH ('connector' = 'collect');
INSERT INTO n SELECT window_start, word, COUNT(*) FROM TABLE(TUMBLE(TABLE words, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, word;";
    let want = BTreeMap::from([(
        "n",
        vec!["+I[2024-01-01T00:00:00, fast, 1]", "+I[2024-01-01T00:00:00, red, 2]", "+I[2024-01-01T00:00:00, car, 1]", "+I[2024-01-01T00:00:00, bike, 1]", "+I[2024-01-01T00:00:10, car, 1]"],
    )]);
    check(sql, &want);
}

/// Over an updating input (a GROUP BY's changelog) the function's rows are retracted
/// with the rows they came from: the final table has the rows of the final counts.
#[test]
fn over_an_updating_input_function_rows_follow_their_rows_kinds() {
    let sql = "CREATE TABLE u (big BOOLEAN, i BIGINT) WITH ('connector' = 'collect');
INSERT INTO u SELECT c.big, s.i FROM (SELECT id > 2 AS big, COUNT(*) AS n FROM t GROUP BY id > 2) AS c, LATERAL TABLE(series(c.n)) AS s(i);";
    // id <= 2: 2 rows; id > 2: 3 rows
    let want = BTreeMap::from([("u", vec!["+I[false, 1]", "+I[false, 2]", "+I[true, 1]", "+I[true, 2]", "+I[true, 3]"])]);
    check(sql, &want);
}

fn error(sql: &str) -> String {
    run(sql, 1, false).expect_err("an error")
}

#[test]
fn errors_name_the_function_and_what_is_wrong() {
    let sink = "CREATE TABLE o (id BIGINT, word STRING) WITH ('connector' = 'blackhole');\n";
    let e = error(&format!("{sink}INSERT INTO o SELECT t.id, x.w FROM t, LATERAL TABLE(nope(t.note)) AS x(w);"));
    assert!(e.contains("unknown table function 'nope'") && e.contains("CompileOptions::udtfs") && e.contains("split_words"), "{e}");
    let e = error(&format!("{sink}INSERT INTO o SELECT t.id, x.w FROM t, LATERAL TABLE(split_words(t.note)) AS x(w);"));
    assert!(e.contains("1 column names for the function's 2 columns (word, len)"), "{e}");
    let e = error(&format!("{sink}INSERT INTO o SELECT t.id, x.w FROM t, LATERAL TABLE(split_words(t.id)) AS x(w, l);"));
    assert!(e.contains("split_words(Int64)") && e.contains("expected one STRING argument"), "{e}");
    let e = error(&format!("{sink}INSERT INTO o SELECT t.id, x.w FROM t LEFT JOIN LATERAL TABLE(split_words(t.note)) AS x(w, l) ON x.l > 2;"));
    assert!(e.contains("ON TRUE"), "{e}");
    let e = error(&format!("{sink}INSERT INTO o SELECT t.id, x.note FROM t, LATERAL TABLE(split_words(t.note)) AS x(note, l);"));
    assert!(e.contains("its column 'note' is also a column of 't'"), "{e}");
}
