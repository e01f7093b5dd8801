//! Scalar functions written in Rust, registered through `CompileOptions::udfs` (what a
//! custom job image does), called from SQL and evaluated on the engine's Arrow batches.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use weir_sql::CompileOptions;

fn with_tax() -> Arc<datafusion::logical_expr::ScalarUDF> {
    let f = Arc::new(|args: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let cents = arrays[0].as_any().downcast_ref::<Int64Array>().ok_or_else(|| datafusion::error::DataFusionError::Execution("with_tax: BIGINT expected".into()))?;
        let out: Int64Array = cents.iter().map(|c| c.map(|c| c + c / 5)).collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    });
    Arc::new(create_udf("with_tax", vec![DataType::Int64], DataType::Int64, Volatility::Immutable, f))
}

fn script(dir: &std::path::Path) -> String {
    format!(
        "CREATE TABLE t (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '6');\n\
         CREATE TABLE o (n BIGINT, gross BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         INSERT INTO o SELECT n, with_tax(n * 100) FROM t WHERE with_tax(n) >= 0;",
        dir.join("out.jsonl").display()
    )
}

#[test]
fn a_rust_scalar_function_is_callable_from_sql() {
    let dir = tempfile::tempdir().unwrap();
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 2, ..Default::default() });
    let options = CompileOptions { udfs: vec![with_tax()], ..CompileOptions::default() };
    weir_sql::compile(&script(dir.path()), &env, &options).unwrap_or_else(|e| panic!("{e}"));
    env.execute().unwrap();
    // one JSON-lines file per sink subtask (out.jsonl.0, out.jsonl.1)
    let mut rows: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flat_map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    rows.sort();
    let mut want: Vec<String> = (0..6).map(|n| format!("{{\"n\":{n},\"gross\":{}}}", n * 100 + n * 100 / 5)).collect();
    want.sort();
    assert_eq!(rows, want);
}

#[test]
fn without_the_registration_the_function_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = weir::StreamEnv::new(weir::JobConfig::default());
    let e = weir_sql::compile(&script(dir.path()), &env, &CompileOptions::default()).err().expect("an unknown function");
    assert!(e.message.to_lowercase().contains("with_tax"), "{e}");
}

/// `CREATE FUNCTION name AS 'identifier'` binds a function the program registered
/// under that identifier (`CompileOptions::udfs_by_identifier`) to the SQL name.
#[test]
fn create_function_binds_a_registered_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "CREATE TEMPORARY FUNCTION gross AS 'com.example.udf.WithTax';\n\
         CREATE TABLE t (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '4');\n\
         CREATE TABLE o (n BIGINT, gross BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         INSERT INTO o SELECT n, GROSS(n * 100) FROM t;",
        dir.path().join("out.jsonl").display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 1, ..Default::default() });
    let options = CompileOptions { udfs_by_identifier: [("com.example.udf.WithTax".to_string(), with_tax())].into(), ..CompileOptions::default() };
    weir_sql::compile(&script, &env, &options).unwrap_or_else(|e| panic!("{e}"));
    env.execute().unwrap();
    let mut rows: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flat_map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().map(str::to_string).collect::<Vec<_>>()).collect();
    rows.sort();
    let mut want: Vec<String> = (0..4).map(|n| format!("{{\"n\":{n},\"gross\":{}}}", n * 100 + n * 100 / 5)).collect();
    want.sort();
    assert_eq!(rows, want);
    // the function is known by its SQL name only
    let env = weir::StreamEnv::new(weir::JobConfig::default());
    let e = weir_sql::compile(&script.replace("GROSS(n * 100)", "with_tax(n * 100)"), &env, &options).err().expect("with_tax is not a SQL name here");
    assert!(e.message.contains("WITH_TAX"), "{e}");
}
