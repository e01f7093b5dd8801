//! `CREATE [TEMPORARY [SYSTEM]] FUNCTION [IF NOT EXISTS] name AS 'identifier'
//! [LANGUAGE JAVA|SCALA]`: binds a SQL name to a scalar function found by its
//! identifier (in Flink a class name): one the embedding program registered
//! (`CompileOptions::udfs_by_identifier`, DataFusion `ScalarUDF`s), else one of the
//! identifiers Weir implements itself ([`builtin`]: the Nexmark benchmark's UDFs, so
//! its queries run unchanged).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// A parsed `CREATE FUNCTION` statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateFunction {
    /// The SQL name (unquoted; a `catalog.db.` prefix dropped).
    pub name: String,
    /// The identifier it binds (`'com.example.MyFunction'`), unquoted.
    pub identifier: String,
    /// Byte offset of the identifier's literal in the statement text.
    pub identifier_at: usize,
    pub if_not_exists: bool,
}

/// Why a `CREATE FUNCTION` statement cannot be taken: the message and the byte
/// offset in the statement text it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

/// Words and quoted strings of a statement, with their offsets.
fn tokens(text: &str) -> Result<Vec<(usize, String, bool)>, ParseError> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == '\'' || c == '`' || c == '"' {
            // a string ('...') or a quoted name (`...`, "..."); a doubled quote is one
            let start = i;
            let mut s = String::new();
            i += 1;
            loop {
                let Some(ch) = text[i..].chars().next() else {
                    return Err(ParseError { at: start, message: format!("unterminated {c}...{c} in CREATE FUNCTION") });
                };
                if ch == c {
                    if b.get(i + 1) == Some(&(c as u8)) {
                        s.push(c);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(ch);
                i += ch.len_utf8();
            }
            out.push((start, s, c == '\''));
        } else {
            let start = i;
            while i < b.len() && !(b[i] as char).is_whitespace() && !matches!(b[i], b'\'' | b'`' | b'"') {
                i += text[i..].chars().next().map_or(1, char::len_utf8);
            }
            out.push((start, text[start..i].to_string(), false));
        }
    }
    Ok(out)
}

/// Parses `CREATE [TEMPORARY [SYSTEM]] FUNCTION [IF NOT EXISTS] [catalog.][db.]name
/// AS 'identifier' [LANGUAGE JAVA|SCALA]`.
pub fn parse_create_function(text: &str) -> Result<CreateFunction, ParseError> {
    let toks = tokens(text)?;
    let word = |i: usize| toks.get(i).filter(|t| !t.2).map(|t| t.1.to_ascii_uppercase());
    let at = |i: usize| toks.get(i).map_or(text.len(), |t| t.0);
    let expected = |i: usize, what: &str| ParseError { at: at(i), message: format!("CREATE FUNCTION: expected {what}, found {}", toks.get(i).map_or("the end of the statement".to_string(), |t| format!("'{}'", t.1))) };
    let mut i = 0;
    if word(i).as_deref() != Some("CREATE") {
        return Err(expected(i, "CREATE"));
    }
    i += 1;
    if word(i).as_deref() == Some("TEMPORARY") {
        i += 1;
        if word(i).as_deref() == Some("SYSTEM") {
            i += 1;
        }
    }
    if word(i).as_deref() != Some("FUNCTION") {
        return Err(expected(i, "FUNCTION"));
    }
    i += 1;
    let mut if_not_exists = false;
    if word(i).as_deref() == Some("IF") {
        if word(i + 1).as_deref() != Some("NOT") || word(i + 2).as_deref() != Some("EXISTS") {
            return Err(expected(i + 1, "IF NOT EXISTS"));
        }
        if_not_exists = true;
        i += 3;
    }
    // the name: a word, `quoted` or "quoted", maybe catalog- and database-qualified
    let Some((_, raw, false)) = toks.get(i).cloned() else { return Err(expected(i, "the function's name")) };
    i += 1;
    let mut name = raw;
    while name.ends_with('.') || toks.get(i).is_some_and(|t| t.1.starts_with('.') && !t.2) {
        // a qualified name split at quotes: `db`.`f`, db.`f`
        let Some(t) = toks.get(i) else { break };
        name.push_str(&t.1);
        i += 1;
    }
    let name = name.rsplit('.').next().unwrap_or_default().to_string();
    if name.is_empty() || name.eq_ignore_ascii_case("AS") {
        return Err(expected(i - 1, "the function's name"));
    }
    if word(i).as_deref() != Some("AS") {
        return Err(expected(i, "AS 'identifier'"));
    }
    i += 1;
    let Some((identifier_at, identifier, true)) = toks.get(i).cloned() else { return Err(expected(i, "the function's identifier as a string ('com.example.MyFunction')")) };
    i += 1;
    if word(i).as_deref() == Some("LANGUAGE") {
        match word(i + 1).as_deref() {
            Some("JAVA" | "SCALA") => i += 2,
            Some(other) => return Err(ParseError { at: at(i + 1), message: format!("CREATE FUNCTION {name}: LANGUAGE {other} is not supported (the identifier names a function written in Rust, registered by the program or built into Weir)") }),
            None => return Err(expected(i + 1, "JAVA or SCALA after LANGUAGE")),
        }
    }
    if word(i).as_deref() == Some("USING") {
        return Err(ParseError { at: at(i), message: format!("CREATE FUNCTION {name}: USING JAR is not supported (functions are written in Rust and registered by the program)") });
    }
    if i < toks.len() {
        return Err(expected(i, "the end of the statement"));
    }
    Ok(CreateFunction { name, identifier, identifier_at, if_not_exists })
}

/// The identifiers Weir implements itself.
pub const BUILTIN_IDENTIFIERS: &[&str] = &[COUNT_CHAR];

/// The Nexmark benchmark's `CountChar` (its q14).
const COUNT_CHAR: &str = "com.github.nexmark.flink.udf.CountChar";

/// The function Weir implements for `identifier`, if it is one of [`BUILTIN_IDENTIFIERS`].
pub fn builtin(identifier: &str) -> Option<ScalarUDF> {
    match identifier {
        COUNT_CHAR => Some(ScalarUDF::new_from_impl(CountChar::default())),
        _ => None,
    }
}

/// `count_char(s, c)`: how many bytes of `s` (UTF-8) are the first byte of `c`, as
/// the Nexmark benchmark's `CountChar`: 0 for a NULL `s`, NULL for a NULL or empty `c`
/// (where the Java function fails).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CountChar {
    signature: Signature,
}

impl Default for CountChar {
    fn default() -> Self {
        CountChar { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for CountChar {
    fn name(&self) -> &str {
        "CountChar"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, t: &[DataType]) -> DfResult<Vec<DataType>> {
        match t {
            [a, b] if [a, b].iter().all(|x| matches!(x, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)) => Ok(vec![DataType::Utf8, DataType::Utf8]),
            _ => Err(DataFusionError::Plan(format!("CountChar takes (string, character), not ({})", t.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")))),
        }
    }
    fn return_type(&self, _t: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n = if scalar { 1 } else { args.number_rows };
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array(n)).collect::<DfResult<_>>()?;
        let (s, c) = match arrays.as_slice() {
            [s, c] => (arrow::compute::cast(s, &DataType::Utf8)?, arrow::compute::cast(c, &DataType::Utf8)?),
            _ => return Err(DataFusionError::Execution("CountChar takes two arguments".into())),
        };
        let (s, c) = (s.as_string::<i32>(), c.as_string::<i32>());
        let out: Int64Array = (0..n)
            .map(|i| {
                let chr = (!c.is_null(i)).then(|| c.value(i).as_bytes().first().copied()).flatten()?;
                Some(if s.is_null(i) { 0 } else { s.value(i).bytes().filter(|b| *b == chr).count() as i64 })
            })
            .collect();
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `udf` under the SQL name `name` (what `CREATE FUNCTION name AS ...` binds): the
/// function itself, called by another name.
pub fn bind(name: &str, udf: Arc<ScalarUDF>) -> ScalarUDF {
    ScalarUDF::new_from_impl(Bound { name: name.to_string(), inner: udf })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bound {
    name: String,
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for Bound {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, t: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(t)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn output_ordering(&self, inputs: &[ExprProperties]) -> DfResult<SortProperties> {
        self.inner.output_ordering(inputs)
    }
    fn coerce_types(&self, t: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(t)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_create_function() {
        let f = parse_create_function("CREATE FUNCTION count_char AS 'com.github.nexmark.flink.udf.CountChar'").unwrap();
        assert_eq!(f, CreateFunction { name: "count_char".into(), identifier: COUNT_CHAR.into(), identifier_at: 30, if_not_exists: false });
        let f = parse_create_function("create temporary system function if not exists cat.db.`My Fn`\n  AS 'a.B''c' LANGUAGE java").unwrap();
        assert_eq!((f.name.as_str(), f.identifier.as_str(), f.if_not_exists), ("My Fn", "a.B'c", true));
        let e = parse_create_function("CREATE FUNCTION f AS 'x' LANGUAGE PYTHON").unwrap_err();
        assert_eq!(e.at, 34);
        assert!(e.message.contains("LANGUAGE PYTHON is not supported"), "{e}");
        let e = parse_create_function("CREATE FUNCTION f AS x").unwrap_err();
        assert!(e.message.contains("expected the function's identifier"), "{e}");
        assert!(parse_create_function("CREATE FUNCTION f AS 'x' USING JAR 'a.jar'").unwrap_err().message.contains("USING JAR"));
        assert!(parse_create_function("CREATE FUNCTION f AS 'x' extra").is_err());
    }

    #[test]
    fn count_char_counts_bytes_of_the_first_character() {
        let f = CountChar::default();
        let s: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![Some("abcabc"), None, Some("ccc"), Some("x")]));
        let c: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![Some("c"), Some("c"), Some("cd"), None]));
        let fields = vec![Arc::new(arrow::datatypes::Field::new("s", DataType::Utf8, true)), Arc::new(arrow::datatypes::Field::new("c", DataType::Utf8, true))];
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(s), ColumnarValue::Array(c)],
            arg_fields: fields,
            number_rows: 4,
            return_field: Arc::new(arrow::datatypes::Field::new("n", DataType::Int64, true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = f.invoke_with_args(args).unwrap() else { panic!("an array") };
        let out = out.as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![Some(2), Some(0), Some(3), None]);
    }
}
