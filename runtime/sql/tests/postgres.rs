//! SQL jobs writing to and reading from PostgreSQL (`WEIR_TEST_POSTGRES`, started by
//! `scripts/test.d/postgres.sh`): an updating query into an upsert table ends as its
//! materialized changelog, also across a failure and a savepoint restored at another
//! parallelism; append mode is at-least-once; a partitioned scan reads each row once.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{CollectSink, Collected};
use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir_sql::connectors::{Connector, ConnectorRegistry, SinkArgs, TableOptions};
use weir_sql::{ChangelogMode, CompileOptions};

fn server(test: &str) -> Option<String> {
    match std::env::var("WEIR_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIPPING {test} (WEIR_TEST_POSTGRES unset)");
            None
        }
    }
}

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect to the test server")
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-pg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `WITH` options of a table `t` on the test server; the password from a file.
fn with(url: &str, dir: &Path, table: &str, extra: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let (auth, host) = rest.rsplit_once('@').unwrap();
    let (user, pass) = auth.split_once(':').unwrap();
    let pw = dir.join("pgpass");
    std::fs::write(&pw, format!("{pass}\n")).unwrap();
    format!("'connector' = 'postgres', 'url' = 'postgresql://{host}', 'table-name' = '{table}', 'username' = '{user}', 'password-file' = '{}'{extra}", pw.display())
}

/// The rows of a table as text, sorted.
fn table(c: &mut postgres::Client, t: &str) -> Vec<String> {
    let mut v: Vec<String> = c
        .simple_query(&format!("SELECT * FROM {t}"))
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect::<Vec<_>>().join(", ")),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// A sink keeping the changelog in print form (`+I[a, b]`).
struct Collect(Collected);

impl Connector for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn options(&self) -> &[&str] {
        &[]
    }
    fn sink_mode(&self, _opts: &TableOptions) -> Option<ChangelogMode> {
        Some(ChangelogMode::All)
    }
    fn add_sink(&self, opts: &TableOptions, args: SinkArgs<'_>) -> Result<(), String> {
        let (t, out) = (opts.table.clone(), self.0.clone());
        args.stream.sink(args.name, move |_| CollectSink { table: t.clone(), out: out.clone() }).uid(args.uid);
        Ok(())
    }
}

/// Applies a changelog in print form to a table keyed by its first `key` columns.
fn materialize(log: &[String], key: usize) -> Vec<String> {
    let mut m: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for l in log {
        let (kind, rest) = l.split_at(2);
        let vals: Vec<String> = rest.trim_start_matches('[').trim_end_matches(']').split(", ").map(str::to_string).collect();
        let k = vals[..key].to_vec();
        match kind {
            "+I" | "+U" => {
                m.insert(k, vals);
            }
            "-D" => {
                m.remove(&k);
            }
            _ => {}
        }
    }
    let mut v: Vec<String> = m.into_values().map(|r| r.join(", ")).collect();
    v.sort();
    v
}

const ROWS: u64 = 6000;

/// `COUNT(*)` per key of `n % 200`, then how many keys have each count: the outer
/// aggregation retracts and deletes rows as the inner counts grow.
fn updating_job(url: &str, dir: &Path, t: &str, parallelism: u32, rate: Option<u64>, collect: Option<&Collected>) -> weir::StreamEnv {
    let rate = rate.map(|r| format!(", 'rows-per-second' = '{r}'")).unwrap_or_default();
    let query = "SELECT c, COUNT(*), SUM(k) FROM (SELECT n % 200 AS k, COUNT(*) AS c FROM src GROUP BY n % 200) GROUP BY c";
    let mut sql = format!(
        "CREATE TABLE src (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '{ROWS}'{rate});
CREATE TABLE counts (c BIGINT, keys BIGINT, key_sum BIGINT, PRIMARY KEY (c) NOT ENFORCED) WITH ({});
CREATE TABLE totals (k BIGINT, n BIGINT, biggest BIGINT, PRIMARY KEY (k) NOT ENFORCED) WITH ({});
INSERT INTO counts {query};
INSERT INTO totals SELECT n % 500, COUNT(*), MAX(n) FROM src GROUP BY n % 500;",
        with(url, dir, &format!("{t}_counts"), ", 'sink.buffer-flush.max-rows' = '50'"),
        with(url, dir, &format!("{t}_totals"), "")
    );
    let mut reg = ConnectorRegistry::default();
    if let Some(c) = collect {
        reg.register(Arc::new(Collect(c.clone())));
        sql.push_str(&format!("\nCREATE TABLE log (c BIGINT, keys BIGINT, key_sum BIGINT) WITH ('connector' = 'collect');\nINSERT INTO log {query};"));
    }
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(&sql, &env, &CompileOptions { connectors: reg, ..Default::default() }).unwrap_or_else(|e| panic!("compile: {e}"));
    env
}

fn create_tables(c: &mut postgres::Client, t: &str) {
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {t}_counts; DROP TABLE IF EXISTS {t}_totals;
         CREATE TABLE {t}_counts (c bigint PRIMARY KEY, keys bigint, key_sum bigint);
         CREATE TABLE {t}_totals (k bigint PRIMARY KEY, n bigint, biggest bigint)"
    ))
    .unwrap();
}

/// The final tables, computed.
fn expected() -> (Vec<String>, Vec<String>) {
    let mut per_key = BTreeMap::new();
    for n in 0..ROWS as i64 {
        *per_key.entry(n % 200).or_insert(0i64) += 1;
    }
    let mut by_count: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (k, c) in per_key {
        let e = by_count.entry(c).or_default();
        e.0 += 1;
        e.1 += k;
    }
    let mut counts: Vec<String> = by_count.iter().map(|(c, (n, s))| format!("{c}, {n}, {s}")).collect();
    counts.sort();
    let mut totals: Vec<String> = (0..500i64).map(|k| format!("{k}, {}, {}", (ROWS as i64 - 1 - k) / 500 + 1, k + 500 * ((ROWS as i64 - 1 - k) / 500))).collect();
    totals.sort();
    (counts, totals)
}

#[test]
fn an_updating_query_into_an_upsert_table_ends_as_its_materialized_changelog() {
    let Some(url) = server("an_updating_query_into_an_upsert_table_ends_as_its_materialized_changelog") else { return };
    let dir = tempdir("upsert");
    let t = format!("sql_upsert_{}", std::process::id());
    let mut c = client(&url);
    create_tables(&mut c, &t);
    let log: Collected = Arc::default();
    updating_job(&url, &dir, &t, 2, None, Some(&log)).execute().unwrap();
    let changelog = log.lock().unwrap().get("log").cloned().unwrap_or_default();
    assert!(changelog.iter().any(|l| l.starts_with("-D")) && changelog.iter().any(|l| l.starts_with("-U")), "the query retracts and deletes");
    let (counts, totals) = expected();
    assert_eq!(materialize(&changelog, 1), counts);
    assert_eq!(table(&mut c, &format!("{t}_counts")), counts, "the upsert table is the materialized changelog");
    assert_eq!(table(&mut c, &format!("{t}_totals")), totals);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_updating_query_into_a_table_without_a_key_is_refused() {
    let dir = tempdir("refused");
    let url = "postgresql://u:p@127.0.0.1:1/db";
    let sql = format!(
        "CREATE TABLE src (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '10');
CREATE TABLE pg (k BIGINT, c BIGINT) WITH ({});
INSERT INTO pg SELECT n % 2, COUNT(*) FROM src GROUP BY n % 2;",
        with(url, &dir, "pg", "")
    );
    let env = weir::StreamEnv::new(weir::JobConfig::default());
    let e = weir_sql::compile(&sql, &env, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("table 'pg'") && e.contains("GroupAggregate") && e.contains("PRIMARY KEY"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s
}

#[test]
fn upserts_end_exactly_as_an_uninterrupted_run_after_a_failure_and_a_rescaled_restore() {
    let Some(url) = server("upserts_end_exactly_as_an_uninterrupted_run_after_a_failure_and_a_rescaled_restore") else { return };
    let mut c = client(&url);
    let (counts, totals) = expected();
    // an uninterrupted run
    let dir = tempdir("upsert-ref");
    let r = format!("sql_ref_{}", std::process::id());
    create_tables(&mut c, &r);
    updating_job(&url, &dir, &r, 2, None, None).execute().unwrap();
    let reference = (table(&mut c, &format!("{r}_counts")), table(&mut c, &format!("{r}_totals")));
    assert_eq!(reference, (counts.clone(), totals.clone()));
    // killed mid-stream (the sink's task fails), restarted from the last checkpoint
    let t = format!("sql_fault_{}", std::process::id());
    create_tables(&mut c, &t);
    let mut s = settings(&dir.join("ckpt-fault"));
    s.faults = vec![("sink: counts".into(), 2500)];
    let report = coordinator::run(&updating_job(&url, &dir, &t, 2, Some(3000), None), &s, &StopHandle::default(), |_| {}).expect("the job recovers and finishes");
    assert_eq!(report.restarts, 1, "one injected fault, one restart");
    assert!(!report.checkpoints.is_empty(), "checkpoints completed before the fault");
    assert_eq!((table(&mut c, &format!("{t}_counts")), table(&mut c, &format!("{t}_totals"))), reference, "after a failure");
    // stopped with a savepoint at parallelism 2, restored at 3 (and 3 to 1)
    for (p1, p2) in [(2, 3), (3, 1)] {
        let t = format!("sql_sp{p1}{p2}_{}", std::process::id());
        create_tables(&mut c, &t);
        let ckpt = dir.join(format!("ckpt-sp-{p1}-{p2}"));
        let stop = StopHandle::default();
        let st = stop.clone();
        let mut seen = 0;
        let report = coordinator::run(&updating_job(&url, &dir, &t, p1, Some(4000), None), &settings(&ckpt), &stop, move |cp| {
            seen += usize::from(!cp.savepoint);
            if seen == 4 {
                st.stop_with_savepoint();
            }
        })
        .unwrap();
        let sp = report.savepoint.expect("stopped with a savepoint");
        let partial = table(&mut c, &format!("{t}_totals"));
        assert!(partial != reference.1, "P={p1}: stopped before the end");
        let mut s = settings(&ckpt);
        s.restore_from = Some(sp.url.clone());
        coordinator::run(&updating_job(&url, &dir, &t, p2, None, None), &s, &StopHandle::default(), |_| {}).unwrap();
        assert_eq!((table(&mut c, &format!("{t}_counts")), table(&mut c, &format!("{t}_totals"))), reference, "P={p1} -> P={p2}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn append_mode_is_at_least_once_across_a_failure() {
    let Some(url) = server("append_mode_is_at_least_once_across_a_failure") else { return };
    let mut c = client(&url);
    let dir = tempdir("append");
    let t = format!("sql_append_{}", std::process::id());
    c.batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (n bigint, label text, at timestamp(3), price numeric(10, 2), even boolean)")).unwrap();
    let sql = format!(
        "CREATE TABLE src (n BIGINT, at TIMESTAMP(3)) WITH ('connector' = 'datagen', 'number-of-rows' = '4000', 'rows-per-second' = '4000');
CREATE TABLE pg (n BIGINT, label STRING, at TIMESTAMP(3), price DECIMAL(10, 2), even BOOLEAN) WITH ({});
INSERT INTO pg SELECT DISTINCT n, CONCAT('row-', CAST(n AS STRING)), at, CAST(n AS DECIMAL(10, 2)) / 4, n % 2 = 0 FROM src;",
        with(&url, &dir, &t, ", 'sink.buffer-flush.max-rows' = '200'")
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 2, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    let mut s = settings(&dir.join("ckpt"));
    // SELECT DISTINCT is append-only here, and keyed: the sink's task counts rows
    s.faults = vec![("sink: pg".into(), 1200)];
    let report = coordinator::run(&env, &s, &StopHandle::default(), |_| {}).expect("the job recovers and finishes");
    assert_eq!(report.restarts, 1);
    let got = table(&mut c, &t);
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4000, "every row is in the table");
    assert!(got.len() >= 4000, "at least once");
    eprintln!("append mode across a failure: {} rows written for 4000 ({} written twice)", got.len(), got.len() - 4000);
    let row7: Vec<&String> = distinct.iter().filter(|r| r.starts_with("7, ")).collect();
    assert_eq!(row7, vec!["7, row-7, 1970-01-01 00:00:00.007, 1.75, f"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_partitioned_scan_over_three_subtasks_reads_each_row_once() {
    let Some(url) = server("a_partitioned_scan_over_three_subtasks_reads_each_row_once") else { return };
    let mut c = client(&url);
    let dir = tempdir("scan");
    let t = format!("sql_scan_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {t}_src; DROP TABLE IF EXISTS {t}_dst;
         CREATE TABLE {t}_src (id bigint, grp int, name text);
         INSERT INTO {t}_src SELECT g, g % 7, 'n' || g FROM generate_series(1, 3000) g;
         INSERT INTO {t}_src VALUES (NULL, 0, 'null'), (-1, 6, 'negative');
         CREATE TABLE {t}_dst (grp int PRIMARY KEY, cnt bigint, names bigint)"
    ))
    .unwrap();
    let sql = format!(
        "CREATE TABLE src (id BIGINT, grp INT, name STRING) WITH ({});
CREATE TABLE dst (grp INT, cnt BIGINT, names BIGINT, PRIMARY KEY (grp) NOT ENFORCED) WITH ({});
INSERT INTO dst SELECT grp, COUNT(*), COUNT(DISTINCT name) FROM src GROUP BY grp;",
        with(&url, &dir, &format!("{t}_src"), ", 'scan.partition.column' = 'id', 'scan.partition.num' = '3', 'scan.partition.lower-bound' = '1', 'scan.partition.upper-bound' = '3000', 'scan.fetch-size' = '100'"),
        with(&url, &dir, &format!("{t}_dst"), "")
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 3, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    env.execute().unwrap();
    let mut want: Vec<String> = (0..7)
        .map(|g| {
            let n = (1..=3000).filter(|x| x % 7 == g).count() + usize::from(g == 0 || g == 6);
            format!("{g}, {n}, {n}")
        })
        .collect();
    want.sort();
    assert_eq!(table(&mut c, &format!("{t}_dst")), want, "each row read once by the three splits");
    let _ = std::fs::remove_dir_all(&dir);
}
