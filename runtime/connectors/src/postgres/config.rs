//! The options of a `postgres` table, parsed once: the connection (URL, user,
//! password source), the sink's batching and retries, the scan's partitioning.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::registry::TableOptions;

/// A secret string: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// None given: from the URL, or none (trust authentication).
    None,
    /// `'password' = '...'`
    Literal(Secret),
    /// `'password' = '${env:NAME}'`
    Env(String),
    /// `'password-file' = '/path'` (trailing newline removed)
    File(PathBuf),
}

/// A `postgres` table's options.
#[derive(Clone, Debug)]
pub struct PgConfig {
    /// The connector's name as the table gives it (`postgres` or `jdbc`), for messages.
    pub connector: String,
    /// The SQL table's name, for messages.
    pub table: String,
    /// The URL without its password (`postgresql://user@host:port/db`), for messages.
    pub target: String,
    /// `table-name`: the PostgreSQL table (`name` or `schema.name`).
    pub table_name: String,
    /// `table-name` quoted for SQL (`"schema"."name"`).
    pub quoted_table: String,
    base: postgres::Config,
    password: PasswordSource,
    pub max_rows: usize,
    pub interval: Option<Duration>,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    pub primary_key: Vec<String>,
    pub partition: Option<Partitioning>,
    pub fetch_size: usize,
}

/// `scan.partition.*`: `num` ranges of `column` covering `[lower, upper]`; the first
/// also takes the rows below `lower` (and NULL), the last those above `upper`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partitioning {
    pub column: String,
    pub num: u32,
    pub lower: i64,
    pub upper: i64,
}

/// A duration option: milliseconds (`'500'`) or a number and a unit (`'1 s'`,
/// `'100ms'`, `'5 min'`, `'1 h'`).
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("'{v}' is not a duration (expected e.g. '1 s', '100 ms', '5 min' or milliseconds)"))?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        other => return Err(format!("'{v}': unknown time unit '{other}' (use ms, s, min or h)")),
    };
    Ok(Duration::from_millis(n.checked_mul(ms).ok_or_else(|| format!("'{v}' is too long"))?))
}

/// `"a"` for `a`, `"a"."b"` for `a.b`; parts already in double quotes are kept.
pub fn quote_table(name: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = name.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            // a quoted part: up to the closing quote ("" is an escaped quote)
            let mut end = None;
            let b = r.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let e = end.unwrap_or(r.len());
            parts.push(format!("\"{}\"", &r[..e]));
            rest = r.get(e + 1..).unwrap_or("").trim_start_matches('.');
        } else {
            let (p, r) = rest.split_once('.').unwrap_or((rest, ""));
            parts.push(quote_ident(p));
            rest = r;
        }
    }
    parts.join(".")
}

/// A column or table name in double quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL without its password (or its `password=` parameter).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (auth_host, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let auth_host = match auth_host.rsplit_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{auth}@{host}"),
        },
        None => auth_host.to_string(),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let mut s = if scheme.is_empty() { auth_host } else { format!("{scheme}://{auth_host}") };
    if let Some(q) = query {
        s.push('?');
        s.push_str(&q);
    }
    s
}

impl PgConfig {
    /// Parses and checks the options (the password is not read yet).
    pub fn from_options(opts: &TableOptions) -> Result<PgConfig, String> {
        let c = &opts.connector;
        let err = |k: &str, m: String| format!("connector '{c}': option '{k}': {m}");
        let url = opts.required("url")?;
        let pg_url = match url.strip_prefix("jdbc:") {
            Some(u) => u,
            None if c == "jdbc" => return Err(err("url", format!("'{}' is not a JDBC URL (expected jdbc:postgresql://host:port/database)", redact_url(url)))),
            None => url,
        };
        if !(pg_url.starts_with("postgresql://") || pg_url.starts_with("postgres://")) {
            return Err(err("url", format!("'{}' is not a PostgreSQL URL (expected {}postgresql://host:port/database)", redact_url(url), if c == "jdbc" { "jdbc:" } else { "" })));
        }
        let mut base = postgres::Config::from_str(pg_url).map_err(|e| err("url", format!("'{}': {e}", redact_url(url))))?;
        if let Some(u) = opts.get("username") {
            base.user(u);
        }
        if base.get_user().is_none() {
            return Err(format!("connector '{c}' needs the option 'username' (or a user in the URL)"));
        }
        let password = match (opts.get("password"), opts.get("password-file")) {
            (Some(_), Some(_)) => return Err(format!("connector '{c}': give either 'password' or 'password-file', not both")),
            (Some(p), None) => match p.strip_prefix("${env:").and_then(|r| r.strip_suffix('}')) {
                Some(var) if !var.is_empty() => PasswordSource::Env(var.to_string()),
                Some(_) => return Err(err("password", "'${env:}' names no environment variable".into())),
                None => PasswordSource::Literal(Secret::new(p)),
            },
            (None, Some(f)) => PasswordSource::File(PathBuf::from(f)),
            (None, None) => PasswordSource::None,
        };
        let connect_timeout = match opts.get("connection.connect-timeout") {
            Some(v) => parse_duration(v).map_err(|m| err("connection.connect-timeout", m))?,
            None => Duration::from_secs(30),
        };
        if !connect_timeout.is_zero() {
            base.connect_timeout(connect_timeout);
        }
        base.application_name("weir");
        let table_name = opts.required("table-name")?.to_string();
        if table_name.trim().is_empty() {
            return Err(err("table-name", "is empty".into()));
        }
        let max_rows: usize = opts.parse("sink.buffer-flush.max-rows")?.unwrap_or(100);
        let interval = match opts.get("sink.buffer-flush.interval") {
            Some(v) => Some(parse_duration(v).map_err(|m| err("sink.buffer-flush.interval", m))?).filter(|d| !d.is_zero()),
            None => Some(Duration::from_secs(1)),
        };
        let max_retries: u32 = opts.parse("sink.max-retries")?.unwrap_or(3);
        let retry_backoff = match opts.get("sink.retry-backoff") {
            Some(v) => parse_duration(v).map_err(|m| err("sink.retry-backoff", m))?,
            None => Duration::from_millis(100),
        };
        let partition = match opts.get("scan.partition.column") {
            None => {
                for k in ["scan.partition.num", "scan.partition.lower-bound", "scan.partition.upper-bound"] {
                    if opts.get(k).is_some() {
                        return Err(format!("connector '{c}': option '{k}' needs 'scan.partition.column'"));
                    }
                }
                None
            }
            Some(column) => {
                let num: u32 = opts.parse("scan.partition.num")?.ok_or_else(|| format!("connector '{c}': 'scan.partition.column' needs the option 'scan.partition.num'"))?;
                let lower: i64 = opts.parse("scan.partition.lower-bound")?.ok_or_else(|| format!("connector '{c}': 'scan.partition.column' needs the option 'scan.partition.lower-bound'"))?;
                let upper: i64 = opts.parse("scan.partition.upper-bound")?.ok_or_else(|| format!("connector '{c}': 'scan.partition.column' needs the option 'scan.partition.upper-bound'"))?;
                if num == 0 {
                    return Err(err("scan.partition.num", "must be at least 1".into()));
                }
                if lower > upper {
                    return Err(format!("connector '{c}': 'scan.partition.lower-bound' ({lower}) is greater than 'scan.partition.upper-bound' ({upper})"));
                }
                Some(Partitioning { column: column.to_string(), num, lower, upper })
            }
        };
        let fetch_size: usize = opts.parse("scan.fetch-size")?.unwrap_or(1024);
        Ok(PgConfig {
            connector: c.clone(),
            table: opts.table.clone(),
            target: redact_url(url),
            quoted_table: quote_table(&table_name),
            table_name,
            base,
            password,
            max_rows,
            interval,
            max_retries,
            retry_backoff,
            primary_key: opts.primary_key.clone(),
            partition,
            fetch_size: fetch_size.max(1),
        })
    }

    /// The client configuration with the password read from its source.
    pub fn connect_config(&self) -> Result<postgres::Config, String> {
        let mut cfg = self.base.clone();
        match &self.password {
            PasswordSource::None => {}
            PasswordSource::Literal(p) => {
                cfg.password(p.expose());
            }
            PasswordSource::Env(var) => {
                let p = std::env::var(var).map_err(|_| format!("connector '{}': option 'password': the environment variable '{var}' is not set", self.connector))?;
                cfg.password(p);
            }
            PasswordSource::File(path) => {
                let p = std::fs::read_to_string(path).map_err(|e| format!("connector '{}': option 'password-file': cannot read {}: {e}", self.connector, path.display()))?;
                cfg.password(p.trim_end_matches(['\n', '\r']));
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn opts(kv: &[(&str, &str)]) -> TableOptions {
        TableOptions { table: "t".into(), connector: "postgres".into(), map: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(), primary_key: vec![], partition_keys: vec![] }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_table("orders"), "\"orders\"");
        assert_eq!(quote_table("sales.orders"), "\"sales\".\"orders\"");
        assert_eq!(quote_table("\"My.Schema\".t"), "\"My.Schema\".\"t\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgresql://u:secret@h:5432/db"), "postgresql://u:***@h:5432/db");
        assert_eq!(redact_url("jdbc:postgresql://h/db?user=u&password=secret&x=1"), "jdbc:postgresql://h/db?user=u&password=***&x=1");
        assert_eq!(redact_url("postgresql://h/db"), "postgresql://h/db");
    }

    #[test]
    fn options_and_secrets() {
        let c = PgConfig::from_options(&opts(&[("url", "postgresql://h:1/db"), ("table-name", "s.t"), ("username", "u"), ("password", "hunter2")])).unwrap();
        assert_eq!(c.quoted_table, "\"s\".\"t\"");
        assert_eq!((c.max_rows, c.interval, c.max_retries), (100, Some(Duration::from_secs(1)), 3));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(c.connect_config().unwrap().get_password(), Some(&b"hunter2"[..]));
        // from the environment
        let c = PgConfig::from_options(&opts(&[("url", "postgresql://u@h/db"), ("table-name", "t"), ("password", "${env:WEIR_PG_TEST_UNSET_VAR}")])).unwrap();
        let e = c.connect_config().unwrap_err();
        assert!(e.contains("WEIR_PG_TEST_UNSET_VAR"), "{e}");
        // from a file
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "s3cret\n").unwrap();
        let c = PgConfig::from_options(&opts(&[("url", "postgresql://u@h/db"), ("table-name", "t"), ("password-file", f.path().to_str().unwrap())])).unwrap();
        assert_eq!(c.connect_config().unwrap().get_password(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn bad_options_name_the_option() {
        let e = PgConfig::from_options(&opts(&[("url", "mysql://h/db"), ("table-name", "t"), ("username", "u")])).unwrap_err();
        assert!(e.contains("'url'") && e.contains("PostgreSQL"), "{e}");
        let e = PgConfig::from_options(&opts(&[("url", "postgresql://u:pw@h/db")])).unwrap_err();
        assert!(e.contains("'table-name'") && !e.contains("pw@"), "{e}");
        let e = PgConfig::from_options(&opts(&[("url", "postgresql://h/db"), ("table-name", "t")])).unwrap_err();
        assert!(e.contains("'username'"), "{e}");
        let e = PgConfig::from_options(&opts(&[("url", "postgresql://u@h/db"), ("table-name", "t"), ("sink.buffer-flush.interval", "soon")])).unwrap_err();
        assert!(e.contains("'sink.buffer-flush.interval'"), "{e}");
        let e = PgConfig::from_options(&opts(&[("url", "postgresql://u@h/db"), ("table-name", "t"), ("scan.partition.column", "id"), ("scan.partition.num", "3")])).unwrap_err();
        assert!(e.contains("'scan.partition.lower-bound'"), "{e}");
        let mut j = opts(&[("url", "postgresql://u@h/db"), ("table-name", "t")]);
        j.connector = "jdbc".into();
        let e = PgConfig::from_options(&j).unwrap_err();
        assert!(e.contains("connector 'jdbc'") && e.contains("jdbc:postgresql://"), "{e}");
        j.map.insert("url".into(), "jdbc:postgresql://h:5432/db?user=u".into());
        assert!(PgConfig::from_options(&j).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("250 ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("750").unwrap(), Duration::from_millis(750));
        assert!(parse_duration("1 fortnight").is_err());
    }
}
