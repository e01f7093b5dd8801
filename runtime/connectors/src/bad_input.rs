//! What a source does with a record that does not parse (the table option
//! `'bad-input'`), shared by the formats of every connector that reads records
//! (the `filesystem` formats; a Kafka or Kinesis format can use it for its records):
//!
//! - `'fail'` (the default): the job fails with an error naming the source (file,
//!   object, partition …), the position (line, row, offset) and the parse error.
//! - `'skip'`: the record is dropped and counted: `weir_bad_records_total{connector,
//!   table, policy="skip"}` in the worker's Prometheus metrics (`GET /metrics`).
//!   Flink's `json.ignore-parse-errors` / `csv.ignore-parse-errors` = `'true'` mean this.
//! - `'dead-letter'`: the record is counted as for `'skip'` (`policy="dead-letter"`)
//!   and written to `'bad-input.dead-letter.path'` (a directory or a bucket prefix) as
//!   one JSON object `{"source": …, "position": …, "error": …, "raw": …}` (`raw`: the
//!   record's bytes as text; bytes that are not UTF-8 as `"raw_bytes": [..]`).
//!
//! **Dead letters are exactly once by idempotence**: each bad record is its own file
//! (object) `bad-<hash of the source>-<position>.json`, named by where it was read, and
//! written when it is read (a local file is written aside and renamed into place, an
//! object is one PUT). A source restored from a checkpoint reads the records after its
//! position again and writes the same dead letters under the same names: each bad
//! record is there once, whatever the restores. A dead letter can be visible before the
//! checkpoint that covers its position completes (it is then written again, the same,
//! by the replay). One file per bad record: meant for rare bad records (use `'skip'`
//! when they are many).

use std::path::PathBuf;
use std::sync::OnceLock;

use weir::connector::ConnectorError;
use weir::metrics::prometheus::{IntCounter, IntCounterVec, Opts};

use crate::filesystem::store::{Bucket, BucketUrl, is_bucket_url};
use crate::registry::TableOptions;

/// The options (besides a format's `<format>.ignore-parse-errors`).
pub const OPTIONS: &[&str] = &["bad-input", "bad-input.dead-letter.path"];

/// What is done with a bad record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    Fail,
    Skip,
    /// written to this directory or bucket prefix
    DeadLetter(String),
}

impl Policy {
    fn label(&self) -> &'static str {
        match self {
            Policy::Fail => "fail",
            Policy::Skip => "skip",
            Policy::DeadLetter(_) => "dead-letter",
        }
    }
}

/// A table's bad-input policy, parsed from its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadInputConfig {
    pub policy: Policy,
    pub table: String,
    pub connector: String,
}

fn bad(connector: &str, opt: &str, v: &str, why: impl std::fmt::Display) -> String {
    format!("connector '{connector}': option '{opt}' = '{v}': {why}")
}

impl BadInputConfig {
    /// The policy of `opts`: `'bad-input'`, `'bad-input.dead-letter.path'`, and the
    /// format's Flink option `ignore_key` (e.g. `json.ignore-parse-errors`), `'true'`
    /// meaning `'skip'`.
    pub fn parse(opts: &TableOptions, ignore_key: Option<&str>) -> Result<Self, String> {
        let c = opts.connector.as_str();
        let ignore = match ignore_key.and_then(|k| opts.get(k).map(|v| (k, v))) {
            None => None,
            Some((k, v)) => match v.to_ascii_lowercase().as_str() {
                "true" => Some((k, true)),
                "false" => Some((k, false)),
                _ => return Err(bad(c, k, v, "expected 'true' or 'false'")),
            },
        };
        let dl_path = opts.get("bad-input.dead-letter.path");
        let policy = match (opts.get("bad-input"), ignore) {
            (None, None | Some((_, false))) => Policy::Fail,
            (None, Some((_, true))) => Policy::Skip,
            (Some(v), ignore) => {
                let p = match v {
                    "fail" => Policy::Fail,
                    "skip" => Policy::Skip,
                    "dead-letter" => {
                        let path = dl_path.ok_or_else(|| bad(c, "bad-input", v, "needs 'bad-input.dead-letter.path' (a directory or bucket prefix for the dead letters)"))?;
                        if is_bucket_url(path) {
                            BucketUrl::parse(path).map_err(|e| format!("connector '{c}': option 'bad-input.dead-letter.path' = {e}"))?;
                        }
                        Policy::DeadLetter(path.to_string())
                    }
                    other => return Err(bad(c, "bad-input", other, "not supported (supported: fail, skip, dead-letter)")),
                };
                if let Some((k, i)) = ignore
                    && i != (p == Policy::Skip)
                {
                    return Err(format!("connector '{c}': options '{k}' = '{i}' and 'bad-input' = '{v}' contradict each other ('{k}' = 'true' is 'bad-input' = 'skip')"));
                }
                p
            }
        };
        if dl_path.is_some() && !matches!(policy, Policy::DeadLetter(_)) {
            return Err(format!("connector '{c}': option 'bad-input.dead-letter.path' needs 'bad-input' = 'dead-letter'"));
        }
        Ok(BadInputConfig { policy, table: opts.table.clone(), connector: c.to_string() })
    }

    /// The default: fail.
    pub fn fail(table: &str, connector: &str) -> Self {
        BadInputConfig { policy: Policy::Fail, table: table.to_string(), connector: connector.to_string() }
    }

    /// The handler of one source subtask (or file reader).
    pub fn handler(&self) -> BadInput {
        let counter = (self.policy != Policy::Fail).then(|| counters().with_label_values(&[&self.connector, &self.table, self.policy.label()]));
        BadInput { cfg: self.clone(), counter, out: None }
    }
}

/// `weir_bad_records_total`, registered once per process with the connector metrics.
fn counters() -> &'static IntCounterVec {
    static C: OnceLock<IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        let c = IntCounterVec::new(Opts::new("weir_bad_records_total", "Records that did not parse, skipped or written as dead letters"), &["connector", "table", "policy"]).expect("valid counter");
        let _ = weir::metrics::connector_registry().register(Box::new(c.clone()));
        c
    })
}

/// The bad records of `table` counted in this process so far (skipped and dead letters).
pub fn count(connector: &str, table: &str) -> u64 {
    use weir::metrics::prometheus::core::Collector;
    let is = |m: &weir::metrics::prometheus::proto::Metric, k: &str, v: &str| m.get_label().iter().any(|l| l.name() == k && l.value() == v);
    counters().collect().iter().flat_map(|f| f.get_metric()).filter(|m| is(m, "connector", connector) && is(m, "table", table)).map(|m| m.get_counter().get_value() as u64).sum()
}

/// Where dead letters go.
enum Out {
    Dir(PathBuf),
    Bucket(Bucket, object_store::path::Path),
}

/// Applies a table's policy to its bad records (see the module).
pub struct BadInput {
    cfg: BadInputConfig,
    counter: Option<IntCounter>,
    /// opened at the first dead letter
    out: Option<Out>,
}

impl std::fmt::Debug for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BadInput").field("cfg", &self.cfg).finish()
    }
}

/// FNV-1a: a stable hash of a source's name (the dead letters' file names).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

impl BadInput {
    /// Whether a bad record fails the job (the formats then keep their fast path).
    pub fn fails(&self) -> bool {
        self.cfg.policy == Policy::Fail
    }

    /// Whether bad records are written out (their raw bytes are needed).
    pub fn wants_raw(&self) -> bool {
        matches!(self.cfg.policy, Policy::DeadLetter(_))
    }

    /// A record of `source` at `position` (line, row, offset) did not parse: an error
    /// to fail with (policy `fail`), or counted, and written out with `dead-letter`.
    pub fn record(&mut self, source: &str, position: u64, error: &str, raw: &[u8]) -> Result<(), ConnectorError> {
        let dir = match &self.cfg.policy {
            Policy::Fail => return Err(ConnectorError::Parse { what: source.to_string(), line: position, message: error.to_string() }),
            Policy::Skip => {
                if let Some(c) = &self.counter {
                    c.inc();
                }
                return Ok(());
            }
            Policy::DeadLetter(dir) => dir.clone(),
        };
        let mut letter = serde_json::json!({ "source": source, "position": position, "error": error });
        match std::str::from_utf8(raw) {
            Ok(t) => letter["raw"] = t.into(),
            Err(_) => letter["raw_bytes"] = raw.to_vec().into(),
        }
        let mut bytes = serde_json::to_vec(&letter).map_err(|e| ConnectorError::Other(format!("a dead letter of table '{}': {e}", self.cfg.table)))?;
        bytes.push(b'\n');
        let name = format!("bad-{:016x}-{position:020}.json", fnv(source));
        self.write(&dir, &name, bytes)?;
        if let Some(c) = &self.counter {
            c.inc();
        }
        Ok(())
    }

    fn write(&mut self, dir: &str, name: &str, bytes: Vec<u8>) -> Result<(), ConnectorError> {
        let table = &self.cfg.table;
        if self.out.is_none() {
            self.out = Some(if is_bucket_url(dir) {
                let url = BucketUrl::parse(dir).map_err(|e| ConnectorError::Other(format!("table '{table}': option 'bad-input.dead-letter.path' = {e}")))?;
                Out::Bucket(Bucket::open(&url).map_err(|e| ConnectorError::Other(format!("table '{table}': dead letters: {e}")))?, url.path)
            } else {
                let d = PathBuf::from(dir.strip_prefix("file://").unwrap_or(dir));
                std::fs::create_dir_all(&d).map_err(|e| ConnectorError::io(format!("table '{table}': creating the dead-letter directory {}", d.display()), e))?;
                Out::Dir(d)
            });
        }
        match &self.out {
            Some(Out::Dir(d)) => {
                let (tmp, fin) = (d.join(format!(".{name}.tmp")), d.join(name));
                std::fs::write(&tmp, &bytes).map_err(|e| ConnectorError::io(format!("writing the dead letter {}", tmp.display()), e))?;
                std::fs::rename(&tmp, &fin).map_err(|e| ConnectorError::io(format!("writing the dead letter {}", fin.display()), e))
            }
            Some(Out::Bucket(b, prefix)) => {
                let key = Bucket::child(prefix, name)?;
                b.put(&key, bytes).map_err(|e| ConnectorError::Other(format!("table '{table}': dead letters: {e}")))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> TableOptions {
        TableOptions { table: "t".into(), connector: "filesystem".into(), map: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), primary_key: Vec::new(), partition_keys: Vec::new() }
    }

    #[test]
    fn options_and_flinks_ignore_parse_errors() {
        let p = |kv: &[(&str, &str)]| BadInputConfig::parse(&opts(kv), Some("json.ignore-parse-errors")).map(|c| c.policy);
        assert_eq!(p(&[]), Ok(Policy::Fail));
        assert_eq!(p(&[("json.ignore-parse-errors", "true")]), Ok(Policy::Skip));
        assert_eq!(p(&[("json.ignore-parse-errors", "false")]), Ok(Policy::Fail));
        assert_eq!(p(&[("bad-input", "skip"), ("json.ignore-parse-errors", "true")]), Ok(Policy::Skip));
        assert_eq!(p(&[("bad-input", "dead-letter"), ("bad-input.dead-letter.path", "/tmp/dl/")]), Ok(Policy::DeadLetter("/tmp/dl/".into())));
        let e = p(&[("bad-input", "dead-letter")]).unwrap_err();
        assert!(e.contains("option 'bad-input' = 'dead-letter': needs 'bad-input.dead-letter.path'"), "{e}");
        let e = p(&[("bad-input", "drop")]).unwrap_err();
        assert!(e.contains("connector 'filesystem': option 'bad-input' = 'drop': not supported"), "{e}");
        let e = p(&[("bad-input", "fail"), ("json.ignore-parse-errors", "true")]).unwrap_err();
        assert!(e.contains("contradict"), "{e}");
        let e = p(&[("bad-input.dead-letter.path", "/x")]).unwrap_err();
        assert!(e.contains("needs 'bad-input' = 'dead-letter'"), "{e}");
        let e = p(&[("json.ignore-parse-errors", "yes")]).unwrap_err();
        assert!(e.contains("'json.ignore-parse-errors' = 'yes': expected 'true' or 'false'"), "{e}");
    }

    #[test]
    fn fail_names_the_record_skip_counts_and_dead_letters_are_idempotent() {
        let mut f = BadInputConfig::fail("t", "filesystem").handler();
        let e = f.record("in.json", 3, "expected value", b"{x").unwrap_err().to_string();
        assert_eq!(e, "in.json, line 3: expected value");
        let skip = BadInputConfig { policy: Policy::Skip, table: "skip-test".into(), connector: "filesystem".into() };
        let mut s = skip.handler();
        s.record("in.json", 3, "e", b"{x").unwrap();
        s.record("in.json", 4, "e", b"{y").unwrap();
        assert_eq!(count("filesystem", "skip-test"), 2);
        let d = tempfile::tempdir().unwrap();
        let dl = BadInputConfig { policy: Policy::DeadLetter(d.path().display().to_string()), table: "dl-test".into(), connector: "filesystem".into() };
        let mut h = dl.handler();
        h.record("in.json", 3, "expected value", b"{x").unwrap();
        h.record("in.json", 3, "expected value", b"{x").unwrap(); // replayed after a restore
        h.record("in.csv", 3, "bad", &[0xff, b'a']).unwrap();
        let mut files: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
        files.sort();
        assert_eq!(files.len(), 2, "one file per bad record: {files:?}");
        let v: Vec<serde_json::Value> = files.iter().map(|f| serde_json::from_str(f).unwrap()).collect();
        assert!(v.iter().any(|v| *v == serde_json::json!({"source": "in.json", "position": 3, "error": "expected value", "raw": "{x"})), "{v:?}");
        assert!(v.iter().any(|v| v["raw_bytes"] == serde_json::json!([255, 97])), "{v:?}");
        assert_eq!(count("filesystem", "dl-test"), 3, "counted as read (a replay counts again)");
    }
}
