//! `'format' = 'parquet'` end to end: a SQL job writes Parquet part files with the
//! exactly-once file sink while its sink task fails mid-stream (an injected fault:
//! the job restarts from its last checkpoint), then a second job reads those files
//! back while its source task fails mid-file (restored at its checkpointed row): the
//! rows read back are the reference's (an uninterrupted run writing JSON), each once.
//! The same through a PARTITIONED BY table read back partition by partition, and the
//! errors a user sees (a column of the wrong type, a file that is no Parquet).

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir::connector::files::{IN_PROGRESS, read_committed};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-parquet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const ROWS: u64 = 20_000;
const COLUMNS: &str = "id BIGINT, name STRING, price DECIMAL(10, 2), x DOUBLE, ok BOOLEAN, ts TIMESTAMP(3), tag STRING";
const QUERY: &str = "SELECT id, name, price, x, ok, ts, CASE WHEN id % 7 = 0 THEN NULL ELSE CONCAT('t', name) END AS tag FROM gen";

fn env(sql: &str, parallelism: u32) -> weir::StreamEnv {
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}\n{sql}"));
    env
}

/// Generated rows of every column type into `sink` (`WITH (...)` options).
fn writing_job(with: &str, parallelism: u32) -> weir::StreamEnv {
    env(
        &format!(
            "CREATE TABLE gen (id BIGINT, name STRING, price DECIMAL(10, 2), x DOUBLE, ok BOOLEAN, ts TIMESTAMP(3))
  WITH ('connector' = 'datagen', 'number-of-rows' = '{ROWS}', 'rows-per-second' = '20000');
CREATE TABLE sink ({COLUMNS}) WITH ({with});
INSERT INTO sink {QUERY};"
        ),
        parallelism,
    )
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s
}

/// The directories of committed part files under `out` (the hour buckets or
/// partitions), in name order.
fn part_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.ends_with(IN_PROGRESS)).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The reference: the rows of an uninterrupted run, as JSON lines.
fn reference(dir: &Path) -> Vec<String> {
    let out = dir.join("ref");
    writing_job(&format!("'connector' = 'filesystem', 'path' = '{}/', 'format' = 'json'", out.display()), 1).execute().unwrap();
    let r = sorted(read_committed(&out).unwrap());
    assert_eq!(r.len() as u64, ROWS);
    r
}

/// Reads the Parquet files of `dirs` (one source table each, `extra` the columns
/// added to each row by its directory, e.g. a partition value) into JSON lines,
/// with the source's task failing at its `fault`-th record when given.
fn read_back(dir: &Path, tag: &str, dirs: &[(PathBuf, String)], columns: &str, select: &str, fault: Option<u64>) -> (Vec<String>, u32) {
    let out = dir.join(format!("back-{tag}"));
    let mut sql = String::new();
    let mut union = Vec::new();
    for (i, (d, extra)) in dirs.iter().enumerate() {
        sql.push_str(&format!("CREATE TABLE src{i} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'parquet', 'source.batch-rows' = '100');\n", d.display()));
        union.push(format!("SELECT {select}{extra} FROM src{i}"));
    }
    sql.push_str(&format!("CREATE TABLE back ({COLUMNS}) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');\n", out.display()));
    sql.push_str(&format!("INSERT INTO back {};", union.join(" UNION ALL ")));
    let mut s = settings(&dir.join(format!("ckpt-back-{tag}")));
    if let Some(n) = fault {
        s.faults = vec![("source: src0".into(), n)];
    }
    let report = coordinator::run(&env(&sql, 2), &s, &StopHandle::default(), |_| {}).unwrap_or_else(|e| panic!("{tag}: reading back: {e}"));
    (sorted(read_committed(&out).unwrap()), report.restarts)
}

#[test]
fn parquet_written_exactly_once_across_a_sink_fault_and_read_back_across_a_source_fault() {
    let dir = tempdir("roundtrip");
    let want = reference(&dir);
    let out = dir.join("pq");
    let job = writing_job(&format!("'connector' = 'filesystem', 'path' = '{}/', 'format' = 'parquet', 'parquet.compression' = 'zstd', 'sink.rolling-policy.file-size' = '32kb'", out.display()), 2);
    let mut s = settings(&dir.join("ckpt-write"));
    s.faults = vec![("sink: sink".into(), 30)];
    let report = coordinator::run(&job, &s, &StopHandle::default(), |_| {}).expect("the job recovers and finishes");
    assert_eq!(report.restarts, 1, "one injected fault, one restart");
    assert!(!report.checkpoints.is_empty(), "checkpoints completed before the fault");
    let dirs = part_dirs(&out);
    let files: usize = dirs.iter().map(|d| std::fs::read_dir(d).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "parquet")).count()).sum();
    assert!(files > 2, "rolled and per subtask: {files} part files in {dirs:?}");
    let sources: Vec<(PathBuf, String)> = dirs.into_iter().map(|d| (d, String::new())).collect();
    // uninterrupted, then with the source failing mid-file (restored at its row)
    let (got, _) = read_back(&dir, "plain", &sources, COLUMNS, "*", None);
    assert_eq!(got.len(), want.len(), "every row exactly once");
    assert!(got == want, "the reference's rows");
    let (got, restarts) = read_back(&dir, "fault", &sources, COLUMNS, "*", Some(50));
    assert_eq!(restarts, 1, "one injected fault in the source");
    assert_eq!(got.len(), want.len(), "every row exactly once after a restore mid-file");
    assert!(got == want, "the reference's rows after a restore mid-file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_partitioned_parquet_table_read_back_by_partition() {
    let dir = tempdir("partitioned");
    let want = reference(&dir);
    let out = dir.join("pq");
    let sql = format!(
        "CREATE TABLE gen (id BIGINT, name STRING, price DECIMAL(10, 2), x DOUBLE, ok BOOLEAN, ts TIMESTAMP(3))
  WITH ('connector' = 'datagen', 'number-of-rows' = '{ROWS}');
CREATE TABLE sink ({COLUMNS}, k BIGINT) PARTITIONED BY (k)
  WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'parquet', 'sink.partition-commit.policy.kind' = 'success-file');
INSERT INTO sink SELECT *, id % 3 FROM ({QUERY});",
        out.display()
    );
    env(&sql, 2).execute().unwrap();
    let dirs = part_dirs(&out);
    let names: Vec<String> = dirs.iter().map(|d| d.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(names, vec!["k=0", "k=1", "k=2"]);
    assert!(dirs.iter().all(|d| d.join("_SUCCESS").exists()));
    // the partition column is not in the files: each partition read as a table of the others
    let sources: Vec<(PathBuf, String)> = dirs.into_iter().map(|d| (d, String::new())).collect();
    let (got, _) = read_back(&dir, "parts", &sources, COLUMNS, "*", None);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the reference's rows");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_column_type_or_a_file_that_is_no_parquet_fails_the_job_naming_file_and_column() {
    let dir = tempdir("errors");
    let out = dir.join("pq");
    env(
        &format!(
            "CREATE TABLE gen (id BIGINT, name STRING) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE sink (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
INSERT INTO sink SELECT * FROM gen;",
            out.display()
        ),
        1,
    )
    .execute()
    .unwrap();
    let part = part_dirs(&out).pop().expect("a bucket directory");
    let run = |columns: &str| {
        let sql = format!(
            "CREATE TABLE src ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'parquet');
CREATE TABLE o ({columns}) WITH ('connector' = 'blackhole');
INSERT INTO o SELECT * FROM src;",
            part.display()
        );
        env(&sql, 1).execute().map(|_| ()).map_err(|e| e.to_string())
    };
    run("id BIGINT, name STRING").expect("the files are read");
    let e = run("id BIGINT, name INT").unwrap_err();
    assert!(e.contains(".parquet: column 'name' is Utf8 in the file, and the table declares Int32"), "{e}");
    let e = run("id BIGINT, other STRING NOT NULL").unwrap_err();
    assert!(e.contains("column 'other' is NOT NULL in the table, and the file has no such column"), "{e}");
    std::fs::write(part.join("zz.parquet"), "{\"id\": 1}\n").unwrap();
    let e = run("id BIGINT, name STRING").unwrap_err();
    assert!(e.contains("zz.parquet: not a readable Parquet file"), "{e}");
    // a single-file path is a directory of part files for Parquet; options checked
    let e = env_err(&format!(
        "CREATE TABLE s (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}/x/', 'format' = 'parquet', 'parquet.compression' = 'gzip');\nCREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '1');\nINSERT INTO s SELECT * FROM g;",
        dir.display()
    ));
    assert!(e.contains("'parquet.compression' = 'gzip'"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn env_err(sql: &str) -> String {
    let env = weir::StreamEnv::new(weir::JobConfig::default());
    weir_sql::compile(sql, &env, &Default::default()).map(|_| ()).map_err(|e| e.to_string()).unwrap_err()
}
