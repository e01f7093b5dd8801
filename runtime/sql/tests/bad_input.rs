//! Records that do not parse, under each `'bad-input'` policy of the filesystem
//! connector: `fail` names the file and line, `skip` (and Flink's
//! `*.ignore-parse-errors`) emits the good rows and counts the bad ones in
//! `weir_bad_records_total`, `dead-letter` writes exactly the bad lines with their
//! errors, also across an injected fault (the job restarts from its last checkpoint
//! and reads the bad lines after it again: their dead letters are the same files).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir::connector::files::read_committed;
use weir_connectors::bad_input;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-bad-input-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(sql: &str, parallelism: u32) -> Result<(), String> {
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(sql, &env, &Default::default()).map_err(|e| format!("compile: {e}"))?;
    env.execute().map(|_| ()).map_err(|e| e.to_string())
}

/// 100 lines, every 10th (from line 4) bad in its own way; the ids of the good ones.
fn json_input() -> (String, Vec<i64>, usize) {
    let (mut text, mut good, mut bad) = (String::new(), Vec::new(), 0);
    for i in 1..=100i64 {
        match i % 10 {
            4 if i % 20 == 4 => text.push_str(&format!("{{\"id\": \"x{i}\", \"name\": \"n{i}\"}}\n")),
            4 => text.push_str(&format!("{{\"id\": {i}, \"name\": \n")),
            _ => {
                text.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n"));
                good.push(i);
                continue;
            }
        }
        bad += 1;
    }
    (text, good, bad)
}

fn csv_input() -> (String, Vec<i64>, usize) {
    let (mut text, mut good, mut bad) = (String::new(), Vec::new(), 0);
    for i in 1..=100i64 {
        match i % 10 {
            7 if i % 20 == 7 => text.push_str(&format!("{i}\n")),
            7 => text.push_str(&format!("seven{i},n{i}\n")),
            _ => {
                text.push_str(&format!("{i},n{i}\n"));
                good.push(i);
                continue;
            }
        }
        bad += 1;
    }
    (text, good, bad)
}

fn ids(out: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = read_committed(out).unwrap().iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap()).collect();
    v.sort();
    v
}

fn sql(table: &str, input: &Path, format: &str, with: &str, out: &Path) -> String {
    format!(
        "CREATE TABLE {table} (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = '{format}', 'source.batch-rows' = '16'{with});
CREATE TABLE out (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
INSERT INTO out SELECT id, name FROM {table};",
        input.display(),
        out.display()
    )
}

#[test]
fn fail_is_the_default_and_names_the_file_and_line() {
    let d = tempdir("fail");
    let (j, _, _) = json_input();
    std::fs::write(d.join("in.json"), j).unwrap();
    let e = run(&sql("fail_json", &d.join("in.json"), "json", "", &d.join("out")), 1).unwrap_err();
    assert!(e.contains("in.json, line 4: "), "{e}");
    let (c, _, _) = csv_input();
    std::fs::write(d.join("in.csv"), c).unwrap();
    let e = run(&sql("fail_csv", &d.join("in.csv"), "csv", ", 'bad-input' = 'fail'", &d.join("out2")), 1).unwrap_err();
    assert!(e.contains("in.csv, line 7: 1 fields, the table has 2 columns (id, name)"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn skip_emits_the_good_rows_and_counts_the_bad_ones() {
    let d = tempdir("skip");
    let (j, good_j, bad_j) = json_input();
    std::fs::write(d.join("in.json"), j).unwrap();
    run(&sql("skip_json", &d.join("in.json"), "json", ", 'json.ignore-parse-errors' = 'true'", &d.join("out-json")), 2).unwrap();
    assert_eq!(ids(&d.join("out-json")), good_j);
    assert_eq!(bad_input::count("filesystem", "skip_json"), bad_j as u64, "every bad line counted once");
    let (c, good_c, bad_c) = csv_input();
    std::fs::write(d.join("in.csv"), c).unwrap();
    run(&sql("skip_csv", &d.join("in.csv"), "csv", ", 'bad-input' = 'skip'", &d.join("out-csv")), 1).unwrap();
    assert_eq!(ids(&d.join("out-csv")), good_c);
    assert_eq!(bad_input::count("filesystem", "skip_csv"), bad_c as u64);
    // the counter is where the engine's metrics are: the worker's GET /metrics
    let families = weir::metrics::connector_registry().gather();
    let f = families.iter().find(|f| f.name() == "weir_bad_records_total").expect("registered");
    let m =
        f.get_metric().iter().find(|m| m.get_label().iter().any(|l| l.value() == "skip_csv") && m.get_label().iter().any(|l| l.name() == "policy" && l.value() == "skip")).expect("labelled by table");
    assert_eq!(m.get_counter().get_value() as usize, bad_c);
    let _ = std::fs::remove_dir_all(&d);
}

/// Dead letters under `dir`: (source file name, line, error, raw), sorted.
fn letters(dir: &Path) -> Vec<(String, u64, String, String)> {
    let mut v: Vec<(String, u64, String, String)> = std::fs::read_dir(dir)
        .map(|r| r.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            let file = Path::new(j["source"].as_str().unwrap()).file_name().unwrap().to_string_lossy().to_string();
            (file, j["position"].as_u64().unwrap(), j["error"].as_str().unwrap().to_string(), j["raw"].as_str().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn dead_letters_hold_exactly_the_bad_lines_across_a_fault() {
    let d = tempdir("dead-letter");
    let (input, out, dl, ckpt) = (d.join("in"), d.join("out"), d.join("dl"), d.join("ckpt"));
    std::fs::create_dir_all(&input).unwrap();
    const FILES: i64 = 30;
    // file k: 20 CSV lines, lines 5 and 13 bad (a word for the id, one field)
    let file = |k: i64| -> String {
        (1..=20)
            .map(|i| {
                if i == 5 {
                    format!("five,{k}\n")
                } else if i == 13 {
                    format!("{}\n", k * 100 + i)
                } else {
                    format!("{},f{k}\n", k * 100 + i)
                }
            })
            .collect()
    };
    let add = move |dir: &Path, k: i64| {
        let tmp = dir.join(format!(".f{k:03}.csv"));
        std::fs::write(&tmp, file(k)).unwrap();
        std::fs::rename(&tmp, dir.join(format!("f{k:03}.csv"))).unwrap();
    };
    let sql = format!(
        "CREATE TABLE dl_src (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'csv',
    'source.monitor-interval' = '20 ms', 'source.batch-rows' = '3', 'bad-input' = 'dead-letter', 'bad-input.dead-letter.path' = '{}');
CREATE TABLE out (id BIGINT, name STRING) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
INSERT INTO out SELECT id, name FROM dl_src;",
        input.display(),
        dl.display(),
        out.display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism: 2, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap();
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s.faults = vec![("source: dl_src".into(), 60)];
    let stop = StopHandle::default();
    let want: Vec<i64> = (0..FILES).flat_map(|k| (1..=20).filter(|i| *i != 5 && *i != 13).map(move |i| k * 100 + i)).collect();
    let (dir, o, n, st) = (input.clone(), out.clone(), want.len(), stop.clone());
    let feeder = std::thread::spawn(move || {
        for k in 0..FILES {
            add(&dir, k);
            std::thread::sleep(Duration::from_millis(15));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while read_committed(&o).map(|v| v.len()).unwrap_or(0) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        st.stop_with_savepoint();
    });
    let report = coordinator::run(&env, &s, &stop, |_| {}).unwrap_or_else(|e| panic!("run: {e}"));
    feeder.join().unwrap();
    assert_eq!(report.restarts, 1, "one injected fault, one restart");
    assert_eq!(ids(&out), want, "every good row exactly once");
    let got = letters(&dl);
    let mut expected: Vec<(String, u64, String, String)> = Vec::new();
    for k in 0..FILES {
        let f = format!("f{k:03}.csv");
        expected.push((f.clone(), 5, "column 1 ('id'): cannot parse 'five' as Int64".into(), format!("five,{k}")));
        expected.push((f, 13, "1 fields, the table has 2 columns (id, name)".into(), format!("{}", k * 100 + 13)));
    }
    expected.sort();
    assert_eq!(got.len(), expected.len(), "one dead letter per bad line, none twice");
    assert!(got == expected, "the bad lines and their errors: {:?}", got.iter().zip(&expected).find(|(a, b)| a != b));
    assert!(bad_input::count("filesystem", "dl_src") >= expected.len() as u64, "counted as read (a replay after the fault counts again)");
    let _ = std::fs::remove_dir_all(&d);
}
