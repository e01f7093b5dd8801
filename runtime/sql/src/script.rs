//! The script level: splitting a script into statements (with their positions),
//! `SET`, statement sets, and the Flink parts of `CREATE TABLE` that `sqlparser`
//! does not know (`WATERMARK FOR`, computed columns, `PRIMARY KEY ... NOT ENFORCED`,
//! `WITH ('key' = 'value')`), which are cut out of the text before `sqlparser` sees it.
//! Cut-out text is replaced by spaces, so `sqlparser`'s line and column numbers stay
//! those of the script.

use crate::SqlError;

/// A position in the script (1-based line and column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The position of byte offset `at` of `script`.
pub fn pos_of(script: &str, at: usize) -> Pos {
    let before = &script[..at.min(script.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |n| before[n + 1..].chars().count()) + 1;
    Pos { line, column }
}

/// One statement of a script: byte range `start..end` (without the `;`).
#[derive(Clone, Debug)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
}

impl Piece {
    pub fn text<'a>(&self, script: &'a str) -> &'a str {
        &script[self.start..self.end]
    }
}

/// Byte offsets of the characters that are code (not in quotes or comments), with
/// the paren depth at each: calls `f(offset, char, depth)` for code characters.
fn scan(text: &str, mut f: impl FnMut(usize, char, i32) -> bool) {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c == '\'' || c == '"' || c == '`' {
            let q = c;
            i += 1;
            while i < b.len() {
                if b[i] as char == q {
                    if i + 1 < b.len() && b[i + 1] as char == q {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        if c == '-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == '(' {
            depth += 1;
        }
        if c == ')' {
            depth -= 1;
        }
        if !c.is_ascii() {
            i += 1;
            continue;
        }
        if !f(i, c, depth) {
            return;
        }
        i += 1;
    }
}

/// Splits a script at top-level `;` (not in quotes or comments); empty statements are dropped.
pub fn split(script: &str) -> Vec<Piece> {
    let mut cuts = Vec::new();
    scan(script, |i, c, _| {
        if c == ';' {
            cuts.push(i);
        }
        true
    });
    let mut out = Vec::new();
    let mut start = 0;
    for end in cuts.into_iter().chain(std::iter::once(script.len())) {
        let p = trim(script, start, end);
        if p.start < p.end && !only_comments(&script[p.start..p.end]) {
            // a statement starts at its first code, after any leading comments
            out.push(Piece { start: p.start + skip_comments(&script[p.start..p.end]), end: p.end });
        }
        start = end + 1;
    }
    out
}

fn only_comments(s: &str) -> bool {
    let mut code = false;
    scan(s, |_, c, _| {
        if !c.is_whitespace() {
            code = true;
            return false;
        }
        true
    });
    !code
}

/// The length of the whitespace and comments at the start of `s`.
fn skip_comments(s: &str) -> usize {
    let mut i = 0;
    loop {
        let rest = &s[i..];
        let t = rest.trim_start();
        i += rest.len() - t.len();
        if t.starts_with("--") {
            i += t.find('\n').unwrap_or(t.len());
        } else if let Some(body) = t.strip_prefix("/*") {
            i += body.find("*/").map_or(t.len(), |e| e + 4);
        } else {
            return i;
        }
    }
}

fn trim(script: &str, mut start: usize, mut end: usize) -> Piece {
    let b = script.as_bytes();
    while start < end && (b[start] as char).is_whitespace() {
        start += 1;
    }
    while end > start && (b[end - 1] as char).is_whitespace() {
        end -= 1;
    }
    Piece { start, end }
}

/// The whole script with everything outside `piece` blanked (newlines kept), so that
/// a parser's positions are the script's.
pub fn masked(script: &str, start: usize, end: usize) -> String {
    script
        .char_indices()
        .map(|(i, c)| if (start..end).contains(&i) || c == '\n' { c } else { ' ' })
        .collect()
}

/// Blanks `start..end` of `s` (ASCII-safe: non-ASCII characters become spaces too).
fn blank(s: &mut String, start: usize, end: usize) {
    let replaced: String = s[start..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
    // keep the byte length (multi-byte chars become several spaces)
    let pad = (end - start) - replaced.len();
    s.replace_range(start..end, &(replaced + &" ".repeat(pad)));
}

/// The length of the whitespace and comments at the start of `text`.
pub fn leading_trivia(text: &str) -> usize {
    let mut first = text.len();
    scan(text, |i, c, _| {
        if c.is_whitespace() {
            return true;
        }
        first = i;
        false
    });
    first
}

/// The upper-cased words at the start of `text` (code only), at most `n`.
pub fn leading_words(text: &str, n: usize) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ';' || c == '\'')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

/// Offset just after the first `n` words of `text` (whitespace separated).
pub fn after_words(text: &str, n: usize) -> usize {
    let mut seen = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                seen += 1;
                in_word = false;
                if seen == n {
                    return i;
                }
            }
        } else {
            in_word = true;
        }
    }
    text.len()
}

/// `SET 'key' = 'value'` (quotes optional): the key and value.
pub fn parse_set(text: &str) -> Option<(String, String)> {
    let rest = text.trim()[3..].trim();
    let (k, v) = rest.split_once('=')?;
    let unq = |s: &str| s.trim().trim_matches('\'').trim_matches('"').trim_matches('`').to_string();
    Some((unq(k), unq(v)))
}

/// The Flink extras of one `CREATE TABLE`.
#[derive(Clone, Debug, Default)]
pub struct TableExtras {
    /// `(name, expression text, position)` of computed columns, with the index among all columns.
    pub computed: Vec<(usize, String, String, Pos)>,
    /// `(rowtime column, expression text, position)`.
    pub watermark: Option<(String, String, Pos)>,
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (...)` columns, and where the clause is.
    pub partition_keys: Vec<String>,
    pub partitioned_at: Option<Pos>,
    /// `WITH` options in order, with the position of each key.
    pub options: Vec<(String, String, Pos)>,
    /// `(column, metadata key, VIRTUAL)` of `METADATA` columns (physical columns the connector fills).
    pub metadata: Vec<(String, String, bool)>,
}

/// Cuts the Flink extras out of a masked `CREATE TABLE` statement (`text` is the whole
/// masked script, `start..end` the statement), returning the text for `sqlparser`.
pub fn strip_create_table(script: &str, text: &str, start: usize, end: usize) -> Result<(String, TableExtras), SqlError> {
    let mut out = text.to_string();
    let mut extras = TableExtras::default();
    // the column list: the first '(' at depth 1 and its matching ')'
    let mut open = None;
    let mut close = None;
    let mut elements: Vec<(usize, usize)> = Vec::new();
    let mut elem_start = 0;
    // `<...>` of a type (ROW<a INT, b INT>, ARRAY<T>, MAP<K, V>): its commas separate fields, not columns
    let mut angle = 0;
    let mut rows: Vec<usize> = Vec::new();
    scan(&text[start..end], |i, c, d| {
        let i = i + start;
        if c == '<' && open.is_some() && close.is_none() {
            if let Some(w) = type_word_before(text, i) {
                angle += 1;
                if text[w..].get(..3).is_some_and(|x| x.eq_ignore_ascii_case("ROW")) {
                    rows.push(w);
                }
            }
        } else if c == '>' && angle > 0 {
            angle -= 1;
        } else if c == '(' && d == 1 && open.is_none() {
            open = Some(i);
            elem_start = i + 1;
        } else if c == ',' && d == 1 && angle == 0 && open.is_some() && close.is_none() {
            elements.push((elem_start, i));
            elem_start = i + 1;
        } else if c == ')' && d == 0 && open.is_some() && close.is_none() {
            close = Some(i);
            elements.push((elem_start, i));
        }
        true
    });
    let (Some(_open), Some(close)) = (open, close) else {
        return Err(SqlError::at(script, start, "CREATE TABLE needs a column list: CREATE TABLE t (col TYPE, ...)"));
    };
    // elements to remove, with the comma range to blank
    let mut removed: Vec<usize> = Vec::new();
    for (idx, &(s, e)) in elements.iter().enumerate() {
        let el = &text[s..e];
        let lead = el.len() - el.trim_start().len();
        let es = s + lead;
        let words = leading_words(el, 3);
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        if w(0) == "WATERMARK" {
            if w(1) != "FOR" {
                return Err(SqlError::at(script, es, "expected WATERMARK FOR <column> AS <expression>"));
            }
            let body = el.trim_start();
            let after_for = after_words(body, 2);
            let rest = body[after_for..].trim_start();
            let col_len = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
            let col = rest[..col_len].trim_matches('`').to_string();
            let rest2 = rest[col_len..].trim_start();
            if !rest2.to_ascii_uppercase().starts_with("AS") {
                return Err(SqlError::at(script, es, "expected WATERMARK FOR <column> AS <expression>"));
            }
            let expr = rest2[2..].trim().to_string();
            let expr_at = es + body.rfind(expr.as_str()).unwrap_or(0);
            extras.watermark = Some((col, expr, pos_of(script, expr_at)));
            removed.push(idx);
        } else if w(0) == "PRIMARY" && w(1) == "KEY" {
            let body = el.trim();
            let (Some(a), Some(b)) = (body.find('('), body.rfind(')')) else {
                return Err(SqlError::at(script, es, "expected PRIMARY KEY (col, ...) NOT ENFORCED"));
            };
            extras.primary_key = body[a + 1..b].split(',').map(|c| c.trim().trim_matches('`').to_string()).collect();
            let tail = body[b + 1..].trim().to_ascii_uppercase();
            if tail != "NOT ENFORCED" {
                return Err(SqlError::at(script, es, "Flink only supports PRIMARY KEY (...) NOT ENFORCED"));
            }
            removed.push(idx);
        } else if w(1) == "AS" {
            let body = el.trim_start();
            let name = words_raw(body, 1).trim_matches('`').to_string();
            let expr = body[after_words(body, 2)..].trim().to_string();
            extras.computed.push((idx, name, expr, pos_of(script, es)));
            removed.push(idx);
        } else if let Some(m) = find_word(&el[lead..], "METADATA").filter(|m| *m > 0).map(|m| m + lead) {
            // `col TYPE METADATA [FROM 'key'] [VIRTUAL]`: a physical column the
            // connector fills from the record's metadata; sqlparser sees `col TYPE`
            let name = words_raw(el.trim_start(), 1).trim_matches('`').to_string();
            let mut rest = el[m + "METADATA".len()..].trim();
            let mut key = name.clone();
            if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case("FROM") {
                let r = rest[4..].trim_start();
                let Some(q) = r.strip_prefix('\'') else { return Err(SqlError::at(script, s + m, "expected METADATA FROM '<key>'")) };
                let Some(close) = q.find('\'') else { return Err(SqlError::at(script, s + m, "expected METADATA FROM '<key>'")) };
                key = q[..close].to_string();
                rest = q[close + 1..].trim();
            }
            let is_virtual = rest.eq_ignore_ascii_case("VIRTUAL");
            if !is_virtual && !rest.is_empty() {
                return Err(SqlError::at(script, s + m, "expected METADATA [FROM '<key>'] [VIRTUAL]"));
            }
            extras.metadata.push((name, key, is_virtual));
            blank(&mut out, s + m, e);
        }
    }
    if removed.len() == elements.len() {
        return Err(SqlError::at(script, start, "CREATE TABLE needs at least one physical column"));
    }
    // blank removed elements and one adjacent comma each
    for &idx in removed.iter().rev() {
        let (s, e) = elements[idx];
        if idx > 0 {
            // include the comma before (it is at s - 1)
            blank(&mut out, s - 1, e);
        } else {
            blank(&mut out, s, e + 1);
        }
    }
    // the WITH options after the column list
    let tail = &text[close + 1..end];
    if let Some(pb) = find_word(tail, "PARTITIONED") {
        let pabs = close + 1 + pb;
        let rest = &text[pabs..end];
        let by = leading_words(rest, 2);
        let (Some(po), Some(pc)) = (rest.find('(').map(|x| x + pabs), rest.find(')').map(|x| x + pabs)) else {
            return Err(SqlError::at(script, pabs, "expected PARTITIONED BY (column, ...)"));
        };
        if by.get(1).map(String::as_str) != Some("BY") || !text[pabs + "PARTITIONED".len()..po].trim().eq_ignore_ascii_case("BY") {
            return Err(SqlError::at(script, pabs, "expected PARTITIONED BY (column, ...)"));
        }
        extras.partition_keys = text[po + 1..pc].split(',').map(|c| c.trim().trim_matches('`').trim_matches('"').to_string()).collect();
        if extras.partition_keys.iter().any(String::is_empty) {
            return Err(SqlError::at(script, po, "expected PARTITIONED BY (column, ...)"));
        }
        extras.partitioned_at = Some(pos_of(script, pabs));
        blank(&mut out, pabs, pc + 1);
    }
    if let Some(wpos) = find_word(tail, "WITH") {
        let wabs = close + 1 + wpos;
        let (Some(po), Some(pc)) = (text[wabs..end].find('(').map(|x| x + wabs), text[wabs..end].rfind(')').map(|x| x + wabs)) else {
            return Err(SqlError::at(script, wabs, "expected WITH ('key' = 'value', ...)"));
        };
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let mut ps = po + 1;
        scan(&text[po + 1..pc], |i, c, d| {
            if c == ',' && d == 0 {
                pairs.push((ps, po + 1 + i));
                ps = po + 2 + i;
            }
            true
        });
        pairs.push((ps, pc));
        for (s, e) in pairs {
            let p = text[s..e].trim();
            if p.is_empty() {
                continue;
            }
            let at = s + (text[s..e].len() - text[s..e].trim_start().len());
            let Some((k, v)) = split_option(p) else {
                return Err(SqlError::at(script, at, format!("expected 'key' = 'value' in WITH, found {p}")));
            };
            extras.options.push((k, v, pos_of(script, at)));
        }
        blank(&mut out, wabs, end);
    }
    // Flink's ROW<...> is sqlparser's STRUCT<...> (the text after it on that line shifts by 3 columns)
    for &w in rows.iter().rev() {
        out.replace_range(w..w + 3, "STRUCT");
    }
    Ok((out, extras))
}

/// The start of the type keyword (`ROW`, `ARRAY`, `MAP`, `MULTISET`, `STRUCT`) just
/// before the `<` at `lt`, if there is one.
fn type_word_before(text: &str, lt: usize) -> Option<usize> {
    let before = text[..lt].trim_end();
    let word_start = before.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    let word = &before[word_start..];
    ["ROW", "ARRAY", "MAP", "MULTISET", "STRUCT"].iter().any(|k| word.eq_ignore_ascii_case(k)).then_some(word_start)
}

fn words_raw(s: &str, n: usize) -> &str {
    s.split_whitespace().nth(n - 1).unwrap_or("")
}

/// `'key' = 'value'` with SQL quoting ('' inside a string is one ').
fn split_option(p: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut chars = p.chars().peekable();
    let mut eq_seen = false;
    while let Some(c) = chars.next() {
        if in_q {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    cur.push('\'');
                    chars.next();
                } else {
                    in_q = false;
                    parts.push(std::mem::take(&mut cur));
                }
            } else {
                cur.push(c);
            }
        } else if c == '\'' {
            in_q = true;
        } else if c == '=' && parts.len() == 1 {
            eq_seen = true;
        } else if !c.is_whitespace() {
            return None;
        }
    }
    if parts.len() == 2 && eq_seen && !in_q { Some((parts.remove(0), parts.remove(0))) } else { None }
}

/// The offset of `word` (case-insensitive, as a whole code word) in `text`.
pub fn find_word(text: &str, word: &str) -> Option<usize> {
    let up = word.to_ascii_uppercase();
    let mut found = None;
    let b = text.as_bytes();
    scan(text, |i, _c, _| {
        if text.len() >= i + up.len()
            && text[i..i + up.len()].eq_ignore_ascii_case(&up)
            && (i == 0 || !(b[i - 1] as char).is_alphanumeric() && b[i - 1] != b'_')
            && b.get(i + up.len()).is_none_or(|n| !(*n as char).is_alphanumeric() && *n != b'_')
        {
            found = Some(i);
            return false;
        }
        true
    });
    found
}

/// Flink SQL that our parser or DataFusion would take differently (an error that
/// does not say why, or a silently different result): where, and the error.
pub fn unsupported_flink(text: &str) -> Option<(usize, &'static str)> {
    const WORDS: &[(&str, &str)] = &[
        ("MATCH_RECOGNIZE", "MATCH_RECOGNIZE (pattern matching, CEP in SQL) is not supported yet"),
    ];
    WORDS.iter().filter_map(|(w, m)| find_word(text, w).map(|at| (at, *m))).min_by_key(|(at, _)| *at)
}

/// The table of a lookup join found in a query: `t FOR SYSTEM_TIME AS OF x.pt`.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupCall {
    pub table: String,
    /// the `AS OF` expression (a column reference, as written)
    pub time: String,
    /// The placeholder table name that replaced `t FOR SYSTEM_TIME AS OF x.pt`.
    pub placeholder: String,
    pub pos: Pos,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces every `t FOR SYSTEM_TIME AS OF x.pt` in `text` by a placeholder table
/// name (`AS t` added when no alias follows, so `t.col` still resolves), padded to
/// the same length.
pub fn rewrite_lookups(script: &str, text: &mut String, next_id: &mut usize) -> Result<Vec<LookupCall>, SqlError> {
    const SYNTAX: &str = "expected <table> FOR SYSTEM_TIME AS OF <time attribute> (a column, e.g. o.proc_time)";
    let mut calls = Vec::new();
    while let Some(at) = find_word(text, "SYSTEM_TIME") {
        let before = text[..at].trim_end();
        let for_at = before.len().checked_sub(3).filter(|&i| before.get(i..).is_some_and(|w| w.eq_ignore_ascii_case("FOR")) && !before[..i].ends_with(is_ident_char));
        let Some(for_at) = for_at else { return Err(SqlError::at(script, at, SYNTAX)) };
        let tb = text[..for_at].trim_end();
        let name_start = tb.rfind(|c: char| !(is_ident_char(c) || c == '.' || c == '`' || c == '"')).map_or(0, |i| i + tb[i..].chars().next().map_or(1, char::len_utf8));
        let table_raw = tb[name_start..].to_string();
        if table_raw.is_empty() {
            return Err(SqlError::at(script, for_at, SYNTAX));
        }
        let after = at + "SYSTEM_TIME".len();
        let words = leading_words(&text[after..], 2);
        if words.first().map(String::as_str) != Some("AS") || words.get(1).map(String::as_str) != Some("OF") {
            return Err(SqlError::at(script, after, SYNTAX));
        }
        let expr_at = after + after_words(&text[after..], 2);
        let expr_at = expr_at + (text[expr_at..].len() - text[expr_at..].trim_start().len());
        let expr_len = text[expr_at..].find(|c: char| !(is_ident_char(c) || c == '.' || c == '`' || c == '"')).unwrap_or(text.len() - expr_at);
        if expr_len == 0 {
            return Err(SqlError::at(script, expr_at, SYNTAX));
        }
        let end = expr_at + expr_len;
        let time = text[expr_at..end].to_string();
        // an alias after it?
        const NOT_ALIAS: &[&str] = &["ON", "JOIN", "LEFT", "RIGHT", "INNER", "FULL", "CROSS", "WHERE", "GROUP", "ORDER", "UNION", "LIMIT", "HAVING", "WINDOW", "USING", "NATURAL"];
        let next = text[end..].trim_start();
        let has_alias = next.starts_with(|c: char| is_ident_char(c) || c == '`' || c == '"') && !NOT_ALIAS.iter().any(|w| leading_words(next, 1).first().is_some_and(|n| n == w));
        let placeholder = format!("__lookup_{next_id}");
        *next_id += 1;
        let alias = table_raw.rsplit('.').next().unwrap_or(&table_raw).to_string();
        let replacement = if has_alias { placeholder.clone() } else { format!("{placeholder} AS {alias}") };
        let span = end - name_start;
        if replacement.len() > span {
            return Err(SqlError::at(script, name_start, "internal: no room for the lookup placeholder"));
        }
        let padded: String = text[name_start..end].bytes().enumerate().map(|(k, b)| if k < replacement.len() { replacement.as_bytes()[k] as char } else if b == b'\n' { '\n' } else { ' ' }).collect();
        text.replace_range(name_start..end, &padded);
        let table = table_raw.split('.').map(|p| p.trim_matches('`').trim_matches('"')).collect::<Vec<_>>().join(".");
        calls.push(LookupCall { table, time, placeholder, pos: pos_of(script, name_start) });
    }
    Ok(calls)
}

/// A windowing table-valued function call found in a query.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowCall {
    pub kind: WindowKind,
    pub table: String,
    pub time_col: String,
    /// The placeholder table name that replaced the call in the query text.
    pub placeholder: String,
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Tumble { size: i64 },
    Hop { slide: i64, size: i64 },
    Cumulate { step: i64, size: i64 },
    /// windows of rows at most `gap` apart (per GROUP BY key)
    Session { gap: i64 },
}

/// Replaces every `TABLE(TUMBLE|HOP|CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL ...))`
/// in `text` by a placeholder table name padded to the same length.
pub fn rewrite_window_tvfs(script: &str, text: &mut String, next_id: &mut usize) -> Result<Vec<WindowCall>, SqlError> {
    let mut calls = Vec::new();
    while let Some(at) = find_tvf(text) {
        // at points to TABLE; find its '(' and matching ')'
        let open = at + text[at..].find('(').expect("found by find_tvf");
        let mut close = None;
        scan(&text[open..], |i, c, d| {
            if c == ')' && d == 0 {
                close = Some(open + i);
                return false;
            }
            true
        });
        let Some(close) = close else { return Err(SqlError::at(script, at, "unbalanced parentheses in TABLE(...)")) };
        let inner = text[open + 1..close].trim();
        let fname_len = inner.find('(').unwrap_or(inner.len());
        let fname = inner[..fname_len].trim().to_ascii_uppercase();
        let args_text = inner[fname_len..].trim();
        let args_text = args_text.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| SqlError::at(script, at, "expected TABLE(TUMBLE(TABLE t, DESCRIPTOR(col), INTERVAL ...))"))?;
        let mut args = Vec::new();
        let mut s0 = 0;
        scan(args_text, |i, c, d| {
            if c == ',' && d == 0 {
                args.push(args_text[s0..i].trim().to_string());
                s0 = i + 1;
            }
            true
        });
        args.push(args_text[s0..].trim().to_string());
        let bad = |m: &str| SqlError::at(script, at, format!("{fname}: {m}"));
        if args.len() < 3 {
            return Err(bad("expected (TABLE t, DESCRIPTOR(time column), INTERVAL ...)"));
        }
        let table_arg = args[0].get(..6).filter(|p| p.eq_ignore_ascii_case("TABLE ")).map(|_| args[0][6..].trim()).ok_or_else(|| bad("the first argument must be TABLE <name>"))?;
        let (table, partition) = table_arg.split_once(char::is_whitespace).map_or((table_arg, ""), |(t, r)| (t, r.trim()));
        let table = table.trim_matches('`').to_string();
        // SESSION(TABLE t PARTITION BY k, ...): the sessions are per GROUP BY key anyway
        if !partition.is_empty() {
            let up = partition.to_ascii_uppercase();
            if fname != "SESSION" || !up.starts_with("PARTITION") || !up["PARTITION".len()..].trim_start().starts_with("BY") {
                return Err(bad(&format!("unexpected '{partition}' after TABLE {table}")));
            }
        }
        let d = args[1].trim();
        if !d.to_ascii_uppercase().starts_with("DESCRIPTOR") {
            return Err(bad("the second argument must be DESCRIPTOR(<time column>)"));
        }
        let time_col = d[10..].trim().trim_start_matches('(').trim_end_matches(')').trim().trim_matches('`').to_string();
        let iv: Vec<i64> = args[2..].iter().map(|a| parse_interval_ms(a).ok_or_else(|| bad(&format!("expected INTERVAL 'n' UNIT, found {a}")))).collect::<Result<_, _>>()?;
        let kind = match (fname.as_str(), iv.as_slice()) {
            ("TUMBLE", [size]) => WindowKind::Tumble { size: *size },
            ("HOP", [slide, size]) => {
                if size % slide != 0 {
                    return Err(bad("the size must be a multiple of the slide"));
                }
                WindowKind::Hop { slide: *slide, size: *size }
            }
            ("CUMULATE", [step, size]) => {
                if size % step != 0 {
                    return Err(bad("the max size must be a multiple of the step"));
                }
                WindowKind::Cumulate { step: *step, size: *size }
            }
            ("SESSION", [gap]) => WindowKind::Session { gap: *gap },
            ("SESSION", _) => return Err(bad("expected one INTERVAL (the gap)")),
            ("TUMBLE", _) => return Err(bad("expected one INTERVAL (the size); offsets are not supported yet")),
            ("HOP", _) | ("CUMULATE", _) => return Err(bad("expected two INTERVALs (slide/step, size)")),
            _ => return Err(bad("unknown windowing function")),
        };
        if iv.iter().any(|v| *v <= 0) {
            return Err(bad("window sizes must be positive"));
        }
        let placeholder = format!("__window_{}", *next_id);
        *next_id += 1;
        let len = close + 1 - at;
        if placeholder.len() > len {
            return Err(bad("internal: window call too short to rewrite"));
        }
        let rep = format!("{placeholder}{}", " ".repeat(len - placeholder.len()));
        text.replace_range(at..close + 1, &rep);
        calls.push(WindowCall { kind, table, time_col, placeholder, pos: pos_of(script, at) });
    }
    Ok(calls)
}

fn find_tvf(text: &str) -> Option<usize> {
    let mut found = None;
    let b = text.as_bytes();
    scan(text, |i, _, _| {
        if text.len() >= i + 5 && text[i..i + 5].eq_ignore_ascii_case("TABLE") && (i == 0 || !(b[i - 1] as char).is_alphanumeric() && b[i - 1] != b'_') {
            let rest = text[i + 5..].trim_start();
            if let Some(r) = rest.strip_prefix('(') {
                let r = r.trim_start().to_ascii_uppercase();
                if ["TUMBLE", "HOP", "CUMULATE", "SESSION"].iter().any(|f| r.starts_with(f) && r[f.len()..].trim_start().starts_with('(')) {
                    found = Some(i);
                    return false;
                }
            }
        }
        true
    });
    found
}

/// `INTERVAL '10' SECOND` (also MILLISECOND, MINUTE, HOUR, DAY; plural accepted) in ms.
pub fn parse_interval_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let up = s.to_ascii_uppercase();
    let rest = up.strip_prefix("INTERVAL")?.trim();
    let rest = rest.strip_prefix('\'')?;
    let (num, unit) = rest.split_once('\'')?;
    let n: i64 = num.trim().parse().ok()?;
    let unit = unit.trim();
    let unit = unit.split('(').next().unwrap_or(unit).trim();
    let mult = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_respecting_quotes_and_comments() {
        let s = "SET 'a' = 'x;y';\n-- c; d\nSELECT 1; /* ; */ SELECT ';';  ;";
        let p: Vec<&str> = split(s).iter().map(|p| p.text(s)).collect();
        assert_eq!(p, vec!["SET 'a' = 'x;y'", "SELECT 1", "SELECT ';'"]);
    }

    #[test]
    fn flink_only_syntax_is_named() {
        let q = "SELECT a FROM x MATCH_RECOGNIZE (PARTITION BY k)";
        assert_eq!(unsupported_flink(q), Some((16, "MATCH_RECOGNIZE (pattern matching, CEP in SQL) is not supported yet")));
        assert_eq!(unsupported_flink("SELECT 'MATCH_RECOGNIZE' AS m FROM t"), None);
    }

    #[test]
    fn lookup_tables_become_placeholders_keeping_or_adding_the_alias() {
        let mut q = "SELECT * FROM o JOIN dim FOR SYSTEM_TIME AS OF o.pt AS d ON o.k = d.k".to_string();
        let n = q.len();
        let calls = rewrite_lookups(&q.clone(), &mut q, &mut 0).unwrap();
        assert_eq!(q.len(), n);
        assert_eq!(q.split_whitespace().collect::<Vec<_>>().join(" "), "SELECT * FROM o JOIN __lookup_0 AS d ON o.k = d.k");
        assert_eq!((calls[0].table.as_str(), calls[0].time.as_str(), calls[0].pos.column), ("dim", "o.pt", 22));
        let mut q = "SELECT * FROM o LEFT JOIN `dim` FOR SYSTEM_TIME AS OF o.pt\nON o.k = dim.k".to_string();
        let calls = rewrite_lookups(&q.clone(), &mut q, &mut 3).unwrap();
        assert_eq!(q.split_whitespace().collect::<Vec<_>>().join(" "), "SELECT * FROM o LEFT JOIN __lookup_3 AS `dim` ON o.k = dim.k");
        assert_eq!(calls[0].table, "dim");
        assert!(q.contains('\n'), "line breaks stay");
        let mut q = "SELECT * FROM o JOIN dim FOR SYSTEM_TIME o.pt".to_string();
        assert!(rewrite_lookups(&q.clone(), &mut q, &mut 0).unwrap_err().message.contains("FOR SYSTEM_TIME AS OF"));
    }

    #[test]
    fn partitioned_by_is_cut_out() {
        let s = "CREATE TABLE t (a INT, dt STRING, hm STRING) PARTITIONED BY (dt, `hm`) WITH ('connector' = 'x')";
        let (out, ex) = strip_create_table(s, s, 0, s.len()).unwrap();
        assert_eq!(out.split_whitespace().collect::<Vec<_>>().join(" "), "CREATE TABLE t (a INT, dt STRING, hm STRING)");
        assert_eq!(ex.partition_keys, vec!["dt", "hm"]);
        assert_eq!(ex.partitioned_at.map(|p| p.column), Some(46));
        let s = "CREATE TABLE t (a INT) PARTITIONED (a) WITH ('connector' = 'x')";
        assert!(strip_create_table(s, s, 0, s.len()).unwrap_err().message.contains("PARTITIONED BY (column"));
    }

    #[test]
    fn statements_start_after_leading_comments() {
        let script = "-- a header\n/* and a block */ CREATE TABLE t (a INT);\n-- next\nINSERT INTO t SELECT 1;";
        let texts: Vec<&str> = split(script).iter().map(|p| p.text(script)).collect();
        assert_eq!(texts, ["CREATE TABLE t (a INT)", "INSERT INTO t SELECT 1"]);
    }

    #[test]
    fn leading_comments_are_trivia() {
        let s = "-- a; comment\n /* b */ SET 'x' = 'y'";
        assert_eq!(&s[leading_trivia(s)..], "SET 'x' = 'y'");
        assert_eq!(leading_trivia("SELECT"), 0);
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(pos_of("ab\ncd", 4), Pos { line: 2, column: 2 });
    }

    #[test]
    fn strips_flink_extras() {
        let s = "CREATE TABLE t (a INT, b AS a + 1, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND, PRIMARY KEY (a) NOT ENFORCED) WITH ('connector' = 'x', 'path' = 'it''s')";
        let (out, ex) = strip_create_table(s, s, 0, s.len()).unwrap();
        assert_eq!(out.split_whitespace().collect::<Vec<_>>().join(" "), "CREATE TABLE t (a INT , ts TIMESTAMP(3) )");
        assert_eq!(ex.computed[0].1, "b");
        assert_eq!(ex.computed[0].2, "a + 1");
        assert_eq!(ex.watermark.as_ref().unwrap().1, "ts - INTERVAL '5' SECOND");
        assert_eq!(ex.primary_key, vec!["a"]);
        assert_eq!(ex.options.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), vec![("connector", "x"), ("path", "it's")]);
        assert_eq!(out.len(), s.len());
    }

    #[test]
    fn rewrites_window_calls_in_place() {
        let s = "SELECT * FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECONDS)) GROUP BY 1";
        let mut t = s.to_string();
        let mut id = 0;
        let calls = rewrite_window_tvfs(s, &mut t, &mut id).unwrap();
        assert_eq!(t.len(), s.len());
        assert!(t.starts_with("SELECT * FROM __window_0 "));
        assert_eq!(calls[0].kind, WindowKind::Hop { slide: 5000, size: 10000 });
        assert_eq!(calls[0].table, "bids");
        assert_eq!(calls[0].time_col, "ts");
    }

    #[test]
    fn rewrites_session_calls_with_partition() {
        let s = "SELECT * FROM TABLE(SESSION(TABLE bids PARTITION BY item, DESCRIPTOR(ts), INTERVAL '5' MINUTE)) GROUP BY 1";
        let mut t = s.to_string();
        let calls = rewrite_window_tvfs(s, &mut t, &mut 0).unwrap();
        assert_eq!(calls[0].kind, WindowKind::Session { gap: 300_000 });
        assert_eq!(calls[0].table, "bids");
        let s = "SELECT * FROM TABLE(TUMBLE(TABLE bids PARTITION BY item, DESCRIPTOR(ts), INTERVAL '5' MINUTE))";
        assert!(rewrite_window_tvfs(s, &mut s.to_string(), &mut 0).is_err());
    }
}
