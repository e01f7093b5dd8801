//! The Nexmark benchmark's queries as SQL (`runtime/sql/nexmark/*.sql`, the query
//! texts of the Flink Nexmark benchmark), and the script that runs one: the shared
//! DDL (`ddl.sql`, the `nexmark` table and its views) with its `${...}` settings
//! filled in, then the query's sink table and `INSERT`.

use std::collections::BTreeMap;

/// The shared DDL, with `${TPS}`, `${EVENTS_NUM}`, ... (see the file's header).
pub const NEXMARK_DDL: &str = include_str!("../nexmark/ddl.sql");

/// The queries, in order.
pub const NEXMARK_QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../nexmark/q0.sql")),
    ("q1", include_str!("../nexmark/q1.sql")),
    ("q2", include_str!("../nexmark/q2.sql")),
    ("q3", include_str!("../nexmark/q3.sql")),
    ("q4", include_str!("../nexmark/q4.sql")),
    ("q5", include_str!("../nexmark/q5.sql")),
    ("q6", include_str!("../nexmark/q6.sql")),
    ("q7", include_str!("../nexmark/q7.sql")),
    ("q8", include_str!("../nexmark/q8.sql")),
    ("q9", include_str!("../nexmark/q9.sql")),
    ("q10", include_str!("../nexmark/q10.sql")),
    ("q11", include_str!("../nexmark/q11.sql")),
    ("q12", include_str!("../nexmark/q12.sql")),
    ("q13", include_str!("../nexmark/q13.sql")),
    ("q14", include_str!("../nexmark/q14.sql")),
    ("q15", include_str!("../nexmark/q15.sql")),
    ("q16", include_str!("../nexmark/q16.sql")),
    ("q17", include_str!("../nexmark/q17.sql")),
    ("q18", include_str!("../nexmark/q18.sql")),
    ("q19", include_str!("../nexmark/q19.sql")),
    ("q20", include_str!("../nexmark/q20.sql")),
    ("q21", include_str!("../nexmark/q21.sql")),
    ("q22", include_str!("../nexmark/q22.sql")),
];

/// The text of query `name` (`q0` … `q22`; `nexmark-q5` is accepted too): its sink
/// table and `INSERT`, without the DDL.
pub fn nexmark_query(name: &str) -> Option<&'static str> {
    let name = name.strip_prefix("nexmark-").unwrap_or(name);
    NEXMARK_QUERIES.iter().find(|(n, _)| *n == name).map(|(_, q)| *q)
}

/// The settings of the shared DDL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexmarkSettings {
    /// Events to generate; `None`: unbounded.
    pub events: Option<u64>,
    /// Event-time rate (events per second of event time).
    pub event_rate: u64,
    /// Wall-clock limit (events per second over all subtasks); `None`: as fast as possible.
    pub rate: Option<u64>,
    pub person_proportion: u64,
    pub auction_proportion: u64,
    pub bid_proportion: u64,
}

impl Default for NexmarkSettings {
    /// The benchmark's defaults (those of the built-in jobs' generator).
    fn default() -> Self {
        NexmarkSettings { events: None, event_rate: 10_000, rate: None, person_proportion: 1, auction_proportion: 3, bid_proportion: 46 }
    }
}

impl NexmarkSettings {
    fn vars(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("TPS", self.event_rate.to_string()),
            ("EVENTS_NUM", self.events.unwrap_or(0).to_string()),
            ("RATE", self.rate.unwrap_or(0).to_string()),
            ("PERSON_PROPORTION", self.person_proportion.to_string()),
            ("AUCTION_PROPORTION", self.auction_proportion.to_string()),
            ("BID_PROPORTION", self.bid_proportion.to_string()),
        ])
    }
}

/// The shared DDL with `settings` (for a query of one's own over the Nexmark views).
pub fn nexmark_ddl(settings: &NexmarkSettings) -> Result<String, String> {
    substitute(NEXMARK_DDL, &settings.vars())
}

/// The whole script of query `name`: the DDL with `settings`, then the query.
pub fn nexmark_script(name: &str, settings: &NexmarkSettings) -> Result<String, String> {
    let q = nexmark_query(name).ok_or_else(|| format!("no Nexmark query '{name}' (known: q0 … q22)"))?;
    Ok(format!("{}\n{q}", nexmark_ddl(settings)?))
}

/// Replaces each `${NAME}` of `text` by its value; a name without one is an error.
fn substitute(text: &str, vars: &BTreeMap<&'static str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or_else(|| format!("unterminated ${{ in the Nexmark DDL: {}", &rest[i..rest.len().min(i + 20)]))?;
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => return Err(format!("the Nexmark DDL uses ${{{name}}}, which has no value")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_is_there() {
        for i in 0..=22 {
            let q = nexmark_query(&format!("q{i}")).unwrap_or_else(|| panic!("q{i}"));
            assert!(q.contains(&format!("nexmark_q{i}")), "q{i} writes nexmark_q{i}");
        }
        assert_eq!(nexmark_query("nexmark-q5"), nexmark_query("q5"));
        assert!(nexmark_query("q23").is_none());
    }

    #[test]
    fn settings_fill_the_ddl() {
        let s = NexmarkSettings { events: Some(5000), rate: Some(100), ..Default::default() };
        let script = nexmark_script("q1", &s).unwrap();
        assert!(script.contains("'events.num' = '5000'"), "{script}");
        assert!(script.contains("'first-event.rate' = '10000'"));
        assert!(script.contains("'tps' = '100'"));
        assert!(!script.contains("${"));
        assert!(script.contains("INSERT INTO nexmark_q1"));
        assert!(substitute("${NOPE}", &s.vars()).unwrap_err().contains("NOPE"));
    }
}
