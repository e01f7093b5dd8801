//! Aggregate functions written in Rust, registered through `CompileOptions::udafs` (what
//! a custom job image does): called from SQL in GROUP BY, window (tumbling, session)
//! and OVER aggregations, their accumulators' state kept in keyed state (across a
//! savepoint and a rescale), retracted over updating inputs, and refused there when
//! they cannot retract.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Accumulator, AggregateUDF, Volatility, create_udaf};
use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir_sql::CompileOptions;
use weir_sql::connectors::ConnectorRegistry;

mod common;
use common::{Collect, Collected, run_collected};

fn bad_input(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("{what}: unexpected argument type"))
}

/// The geometric mean of the positive values: exp(mean(ln x)); retracts.
#[derive(Debug, Default)]
struct GeoMean {
    log_sum: f64,
    n: i64,
}

impl GeoMean {
    fn add(&mut self, values: &[ArrayRef], sign: i64) -> DfResult<()> {
        let a = values[0].as_primitive_opt::<Float64Type>().ok_or_else(|| bad_input("geo_mean"))?;
        for v in a.iter().flatten().filter(|v| *v > 0.0) {
            self.log_sum += sign as f64 * v.ln();
            self.n += sign;
        }
        Ok(())
    }
}

impl Accumulator for GeoMean {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.add(values, 1)
    }
    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.add(values, -1)
    }
    fn supports_retract_batch(&self) -> bool {
        true
    }
    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Float64((self.n > 0).then(|| (self.log_sum / self.n as f64).exp())))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Float64(Some(self.log_sum)), ScalarValue::Int64(Some(self.n))])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let sums = states[0].as_primitive_opt::<Float64Type>().ok_or_else(|| bad_input("geo_mean state"))?;
        let ns = states[1].as_primitive_opt::<Int64Type>().ok_or_else(|| bad_input("geo_mean state"))?;
        for i in 0..sums.len() {
            if sums.is_valid(i) && ns.is_valid(i) {
                self.log_sum += sums.value(i);
                self.n += ns.value(i);
            }
        }
        Ok(())
    }
}

/// The second largest value (null with fewer than two values); cannot retract.
#[derive(Debug, Default)]
struct SecondLargest {
    top: Option<i64>,
    second: Option<i64>,
}

impl SecondLargest {
    fn push(&mut self, v: i64) {
        match self.top {
            Some(t) if v <= t => self.second = Some(self.second.map_or(v, |s| s.max(v))),
            _ => {
                self.second = self.top;
                self.top = Some(v);
            }
        }
    }
}

impl Accumulator for SecondLargest {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let a = values[0].as_primitive_opt::<Int64Type>().ok_or_else(|| bad_input("second_largest"))?;
        a.iter().flatten().for_each(|v| self.push(v));
        Ok(())
    }
    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Int64(self.second))
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Int64(self.top), ScalarValue::Int64(self.second)])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        for s in states {
            let a = s.as_primitive_opt::<Int64Type>().ok_or_else(|| bad_input("second_largest state"))?;
            a.iter().flatten().for_each(|v| self.push(v));
        }
        Ok(())
    }
}

fn geo_mean() -> Arc<AggregateUDF> {
    Arc::new(create_udaf("geo_mean", vec![DataType::Float64], Arc::new(DataType::Float64), Volatility::Immutable, Arc::new(|_| Ok(Box::new(GeoMean::default()) as Box<dyn Accumulator>)), Arc::new(vec![DataType::Float64, DataType::Int64])))
}

fn second_largest() -> Arc<AggregateUDF> {
    Arc::new(create_udaf("second_largest", vec![DataType::Int64], Arc::new(DataType::Int64), Volatility::Immutable, Arc::new(|_| Ok(Box::new(SecondLargest::default()) as Box<dyn Accumulator>)), Arc::new(vec![DataType::Int64, DataType::Int64])))
}

fn options(udafs: bool, collected: &Collected) -> CompileOptions {
    let mut connectors = ConnectorRegistry::default();
    connectors.register(Arc::new(Collect(collected.clone())));
    CompileOptions { connectors, udafs: if udafs { vec![geo_mean(), second_largest()] } else { Vec::new() }, ..CompileOptions::default() }
}

const ROWS: &str = r#"{"k": "a", "x": 1, "ts": "2024-01-01 00:00:01"}
{"k": "a", "x": 4, "ts": "2024-01-01 00:00:02"}
{"k": "b", "x": 2, "ts": "2024-01-01 00:00:03"}
{"k": "a", "x": 16, "ts": "2024-01-01 00:00:12"}
{"k": "b", "x": 8, "ts": "2024-01-01 00:00:13"}
{"k": "b", "x": 3, "ts": "2024-01-01 00:00:14"}
"#;

/// Runs `sql` (`$DIR` is a temp dir holding `t.json` = [`ROWS`]) at `parallelism`, in
/// streaming or batch mode: each collect table's final rows, sorted.
fn run(sql: &str, parallelism: u32, batch: bool) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
    run_collected(sql, ROWS, parallelism, batch, |c| options(true, c))
}

const TABLE: &str = "CREATE TABLE t (k STRING, x BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem', 'path' = '$DIR/t.json', 'format' = 'json');";

#[test]
fn rust_udafs_in_group_by_window_and_over_aggregations() {
    let sql = format!(
        "{TABLE}
CREATE TABLE g (k STRING, gm DOUBLE, second BIGINT, n BIGINT) WITH ('connector' = 'collect');
CREATE TABLE w (ws TIMESTAMP(3), k STRING, gm DOUBLE, second BIGINT) WITH ('connector' = 'collect');
CREATE TABLE s (ws TIMESTAMP(3), we TIMESTAMP(3), k STRING, gm DOUBLE, second BIGINT) WITH ('connector' = 'collect');
CREATE TABLE o (k STRING, x BIGINT, gm DOUBLE) WITH ('connector' = 'collect');
EXECUTE STATEMENT SET BEGIN
INSERT INTO g SELECT k, ROUND(geo_mean(x), 6), second_largest(x), COUNT(*) FROM t GROUP BY k;
INSERT INTO w SELECT window_start, k, ROUND(GEO_MEAN(x), 6), second_largest(x) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) GROUP BY window_start, window_end, k;
INSERT INTO s SELECT window_start, window_end, k, ROUND(geo_mean(x), 6), second_largest(x) FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k;
INSERT INTO o SELECT k, x, ROUND(geo_mean(x) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), 6) FROM t;
END;"
    );
    let want = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = match t {
            // a: 1, 4, 16 (geometric mean 4); b: 2, 8, 3 (48^(1/3))
            "g" => vec!["+I[a, 4.0, 4, 3]", "+I[b, 3.634241, 3, 3]"],
            "w" => vec!["+I[2024-01-01T00:00:00, a, 2.0, 1]", "+I[2024-01-01T00:00:00, b, 2.0, NULL]", "+I[2024-01-01T00:00:10, a, 16.0, NULL]", "+I[2024-01-01T00:00:10, b, 4.898979, 3]"],
            // sessions of a 5 s gap: a {1, 4} and {16}; b {2} and {8, 3}
            "s" => vec![
                "+I[2024-01-01T00:00:01, 2024-01-01T00:00:07, a, 2.0, 1]",
                "+I[2024-01-01T00:00:12, 2024-01-01T00:00:17, a, 16.0, NULL]",
                "+I[2024-01-01T00:00:03, 2024-01-01T00:00:08, b, 2.0, NULL]",
                "+I[2024-01-01T00:00:13, 2024-01-01T00:00:19, b, 4.898979, 3]",
            ],
            // the last two rows of each k
            "o" => vec!["+I[a, 1, 1.0]", "+I[a, 4, 2.0]", "+I[a, 16, 8.0]", "+I[b, 2, 2.0]", "+I[b, 8, 4.0]", "+I[b, 3, 4.898979]"],
            _ => vec![],
        }
        .into_iter()
        .map(str::to_string)
        .collect();
        v.sort();
        v
    };
    for (p, batch) in [(1, false), (4, false), (2, true)] {
        let got = run(&sql, p, batch).unwrap_or_else(|e| panic!("P={p} batch={batch}: {e}"));
        for t in ["g", "w", "s", "o"] {
            assert_eq!(got.get(t).cloned().unwrap_or_default(), want(t), "table {t} at P={p} batch={batch}");
        }
    }
}

/// Over an updating input (a GROUP BY's changelog) the UDAF's accumulator retracts
/// the old values.
#[test]
fn a_udaf_retracts_over_an_updating_input() {
    let sql = format!(
        "{TABLE}
CREATE TABLE g (k STRING, gm DOUBLE) WITH ('connector' = 'collect');
INSERT INTO g SELECT k, ROUND(geo_mean(s), 6) FROM (SELECT k, x % 2 AS odd, SUM(x) AS s FROM t GROUP BY k, x % 2) GROUP BY k;"
    );
    // a: odd 1, even 4 + 16 = 20 -> sqrt(20); b: odd 3, even 2 + 8 = 10 -> sqrt(30)
    let want = vec!["+I[a, 4.472136]".to_string(), "+I[b, 5.477226]".to_string()];
    for (p, batch) in [(1, false), (4, false), (1, true)] {
        let got = run(&sql, p, batch).unwrap_or_else(|e| panic!("P={p} batch={batch}: {e}"));
        assert_eq!(got.get("g").cloned().unwrap_or_default(), want, "P={p} batch={batch}");
    }
}

#[test]
fn a_udaf_that_cannot_retract_is_refused_over_an_updating_input() {
    let sql = format!(
        "{TABLE}
CREATE TABLE g (k STRING, s BIGINT) WITH ('connector' = 'collect');
INSERT INTO g SELECT k, second_largest(s) FROM (SELECT k, x % 2 AS odd, SUM(x) AS s FROM t GROUP BY k, x % 2) GROUP BY k;"
    );
    let e = run(&sql, 1, false).expect_err("refused");
    assert!(e.contains("line 3, column 1"), "{e}");
    assert!(e.contains("second_largest cannot aggregate the updating input from GroupAggregate"), "{e}");
    assert!(e.contains("retract"), "{e}");
}

#[test]
fn an_unregistered_udaf_is_named_in_the_error() {
    let sql = format!("{TABLE}\nCREATE TABLE g (k STRING, gm DOUBLE) WITH ('connector' = 'blackhole');\nINSERT INTO g SELECT k, geo_mean(x) FROM t GROUP BY k;");
    let env = weir::StreamEnv::new(weir::JobConfig::default());
    let collected: Collected = Arc::default();
    let e = weir_sql::compile(&sql, &env, &options(false, &collected)).err().expect("an unknown function");
    let m = e.to_string();
    assert!(m.contains("GEO_MEAN") && m.contains("line 3, column 1"), "{m}");
}

// ------------------------------------------------------------ savepoint and rescale

const N: i64 = 8000;

/// `n` (0 … N-1, at n ms) into `raw`; per 1 s window and n % 7: the geometric mean of
/// n + 1 and the second largest n into `agg`. The watermark trails by 10 s, so every
/// window's state lives until the end of the input (across the savepoint).
fn udaf_job(dir: &Path, parallelism: u32, rate: Option<u64>) -> weir::StreamEnv {
    let rate = rate.map(|r| format!(", 'rows-per-second' = '{r}'")).unwrap_or_default();
    let sql = format!(
        "CREATE TABLE t (n BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '10' SECOND) WITH ('connector' = 'datagen', 'number-of-rows' = '{N}'{rate});
CREATE TABLE raw (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{raw}/', 'format' = 'json');
CREATE TABLE agg (ws TIMESTAMP(3), k BIGINT, gm DOUBLE, second BIGINT) WITH ('connector' = 'filesystem', 'path' = '{agg}/', 'format' = 'json');
EXECUTE STATEMENT SET BEGIN
INSERT INTO raw SELECT n FROM t;
INSERT INTO agg SELECT window_start, n % 7, geo_mean(n + 1), second_largest(n) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, n % 7;
END;",
        raw = dir.join("raw").display(),
        agg = dir.join("agg").display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    let collected: Collected = Arc::default();
    weir_sql::compile(&sql, &env, &options(true, &collected)).unwrap_or_else(|e| panic!("compile: {e}"));
    env
}

/// (window start, k, geometric mean, second largest) of `agg`'s committed rows.
fn agg_rows(dir: &Path) -> Vec<(String, i64, f64, Option<i64>)> {
    let mut v: Vec<(String, i64, f64, Option<i64>)> = weir::connector::files::read_committed(&dir.join("agg"))
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (j["ws"].as_str().unwrap_or_default().to_string(), j["k"].as_i64().unwrap(), j["gm"].as_f64().unwrap(), j["second"].as_i64())
        })
        .collect();
    v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    v
}

#[test]
fn udaf_state_survives_a_savepoint_and_rescale() {
    let mut want = Vec::new();
    for w in 0..N / 1000 {
        for k in 0..7 {
            let ns: Vec<i64> = (w * 1000..(w + 1) * 1000).filter(|n| n % 7 == k).collect();
            let gm = (ns.iter().map(|n| ((n + 1) as f64).ln()).sum::<f64>() / ns.len() as f64).exp();
            want.push((format!("1970-01-01 00:00:{w:02}.000"), k, gm, ns.iter().rev().nth(1).copied()));
        }
    }
    for (p1, p2) in [(2, 3), (3, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = CheckpointSettings::new(dir.path().join("ckpt").to_string_lossy().to_string());
        settings.interval = Duration::from_millis(50);
        let env = udaf_job(dir.path(), p1, Some(4000));
        let stop = StopHandle::default();
        let st = stop.clone();
        let mut seen = 0;
        let report = coordinator::run(&env, &settings, &stop, move |c| {
            seen += usize::from(!c.savepoint);
            if seen == 4 {
                st.stop_with_savepoint();
            }
        })
        .unwrap();
        let sp = report.savepoint.expect("stopped with a savepoint");
        let partial = weir::connector::files::read_committed(&dir.path().join("raw")).unwrap().len();
        assert!(partial > 0 && (partial as i64) < N, "stopped in the middle ({partial} of {N} rows)");
        assert!(agg_rows(dir.path()).is_empty(), "no window has fired before the stop");
        let env = udaf_job(dir.path(), p2, None);
        settings.restore_from = Some(sp.url.clone());
        coordinator::run(&env, &settings, &StopHandle::default(), |_| {}).unwrap();
        let got = agg_rows(dir.path());
        assert_eq!(got.len(), want.len(), "P={p1} -> P={p2}: one row per window and key");
        for (g, w) in got.iter().zip(&want) {
            assert!(g.0 == w.0 && g.1 == w.1 && g.3 == w.3 && (g.2 - w.2).abs() < 1e-9 * w.2, "P={p1} -> P={p2}: got {g:?}, want {w:?}");
        }
        let raw = weir::connector::files::read_committed(&dir.path().join("raw")).unwrap().len();
        assert_eq!(raw as i64, N, "P={p1} -> P={p2}: every row once");
    }
}
