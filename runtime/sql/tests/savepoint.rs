//! A SQL join job stopped with a savepoint mid-stream and restored at another
//! parallelism gives the same output as an uninterrupted run (join state in key
//! groups, operator uids derived from the plan).

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir::checkpoint::coordinator::{self, CheckpointSettings, StopHandle};
use weir::connector::files::read_committed;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-sql-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const ROWS: i64 = 8000;
const KEYS: i64 = 2000;

fn job(out: &Path, parallelism: u32, rate: Option<u64>) -> weir::StreamEnv {
    let rate = rate.map(|r| format!(", 'rows-per-second' = '{r}'")).unwrap_or_default();
    let sql = format!(
        "CREATE TABLE a (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '{ROWS}'{rate});
CREATE TABLE b (n BIGINT) WITH ('connector' = 'datagen', 'number-of-rows' = '{ROWS}'{rate});
CREATE TABLE out (l BIGINT, r BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}/', 'format' = 'json');
INSERT INTO out SELECT a.n, b.n FROM a JOIN b ON a.n % {KEYS} = b.n % {KEYS} AND a.n <= b.n;",
        out.display()
    );
    let env = weir::StreamEnv::new(weir::JobConfig { parallelism, ..Default::default() });
    weir_sql::compile(&sql, &env, &Default::default()).unwrap_or_else(|e| panic!("compile: {e}"));
    env
}

fn settings(ckpt: &Path) -> CheckpointSettings {
    let mut s = CheckpointSettings::new(ckpt.to_string_lossy().to_string());
    s.interval = Duration::from_millis(50);
    s
}

fn committed(dir: &Path) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = read_committed(dir)
        .unwrap()
        .iter()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            (j["l"].as_i64().unwrap(), j["r"].as_i64().unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn join_state_survives_a_savepoint_and_rescale() {
    let mut want: Vec<(i64, i64)> = Vec::new();
    for l in 0..ROWS {
        for r in (l % KEYS..ROWS).step_by(KEYS as usize) {
            if l <= r {
                want.push((l, r));
            }
        }
    }
    want.sort();
    for (p1, p2) in [(2, 3), (3, 1)] {
        let dir = tempdir(&format!("join-savepoint-{p1}-{p2}"));
        let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
        // rate-limited at p1, stopped with a savepoint after a few checkpoints
        let env = job(&out, p1, Some(6000));
        let stop = StopHandle::default();
        let st = stop.clone();
        let mut seen = 0;
        let report = coordinator::run(&env, &settings(&ckpt), &stop, move |c| {
            seen += usize::from(!c.savepoint);
            if seen == 4 {
                st.stop_with_savepoint();
            }
        })
        .unwrap();
        let sp = report.savepoint.expect("stopped with a savepoint");
        let partial = committed(&out);
        assert!(partial.len() < want.len(), "stopped before the end ({} of {})", partial.len(), want.len());
        // restore at p2, unthrottled, into the same output directory
        let env = job(&out, p2, None);
        let mut s = settings(&ckpt);
        s.restore_from = Some(sp.url.clone());
        coordinator::run(&env, &s, &StopHandle::default(), |_| {}).unwrap();
        let got = committed(&out);
        assert_eq!(got.len(), want.len(), "P={p1} -> P={p2}: nothing lost, nothing duplicated (partial {})", partial.len());
        assert!(got == want, "P={p1} -> P={p2}: results differ");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
