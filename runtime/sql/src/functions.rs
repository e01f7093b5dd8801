//! Flink built-in functions that DataFusion lacks or defines differently, as
//! DataFusion scalar UDFs registered on the planning context: `JSON_VALUE`,
//! `TO_TIMESTAMP`, `DATE_FORMAT`, `FROM_UNIXTIME` and `UNIX_TIMESTAMP` (Java date
//! formats), `TIMESTAMPDIFF`, `IF`, `SPLIT_INDEX`, `LOCATE`,
//! `MOD`, `REGEXP_REPLACE` (all matches, as in Flink), `REGEXP_EXTRACT`,
//! `CURRENT_WATERMARK` (the watermark of the projection/filter operator evaluating
//! it, see [`with_watermark`]; NULL elsewhere and before the first watermark),
//! `PROCTIME()` (the wall-clock time where it is evaluated; the column it makes is a
//! processing-time attribute, see `plan::proc_window`), and the date parts `YEAR`,
//! `QUARTER`, `MONTH`, `WEEK`, `DAYOFYEAR`, `DAYOFMONTH`, `DAYOFWEEK`, `HOUR`,
//! `MINUTE`, `SECOND` of a timestamp (BIGINT, as Flink's).

use std::cell::Cell;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{CastKind, Expr as SqlExpr, FunctionArgumentClause, FunctionArguments, Statement, Value as SqlValue, visit_expressions_mut};

use crate::SqlError;

thread_local! {
    static WATERMARK: Cell<Option<i64>> = const { Cell::new(None) };
}

/// Evaluates `f` with `wm` (the evaluating operator's current watermark; `i64::MIN`:
/// none yet) as what `CURRENT_WATERMARK` returns.
pub fn with_watermark<R>(wm: i64, f: impl FnOnce() -> R) -> R {
    let prev = WATERMARK.with(|w| w.replace((wm != i64::MIN).then_some(wm)));
    let r = f();
    WATERMARK.with(|w| w.set(prev));
    r
}

/// Registers the functions on `ctx` (replacing DataFusion's of the same name).
pub fn register(ctx: &SessionContext) {
    for f in [
        Func::JsonValue,
        Func::ToTimestamp,
        Func::DateFormat,
        Func::TimestampDiff,
        Func::If,
        Func::Mod,
        Func::RegexpReplace,
        Func::RegexpExtract,
        Func::SplitIndex,
        Func::Locate,
        Func::FromUnixtime,
        Func::UnixTimestamp,
        Func::CurrentWatermark,
        Func::Proctime,
    ]
    .into_iter()
    .chain(DatePart::ALL.map(Func::DatePart))
    {
        ctx.register_udf(ScalarUDF::new_from_impl(Udf::new(f)));
    }
}

/// The name of the `PROCTIME()` function in DataFusion plans.
pub const PROCTIME: &str = "proctime";

/// A part of a timestamp, as Flink's `YEAR(t)`, `HOUR(t)`, ... return it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DatePart {
    Year,
    Quarter,
    Month,
    /// the ISO week of the year (1..=53)
    Week,
    DayOfYear,
    DayOfMonth,
    /// 1 (Sunday) ..= 7 (Saturday)
    DayOfWeek,
    Hour,
    Minute,
    Second,
}

impl DatePart {
    const ALL: [DatePart; 10] = [DatePart::Year, DatePart::Quarter, DatePart::Month, DatePart::Week, DatePart::DayOfYear, DatePart::DayOfMonth, DatePart::DayOfWeek, DatePart::Hour, DatePart::Minute, DatePart::Second];

    fn name(self) -> &'static str {
        match self {
            DatePart::Year => "year",
            DatePart::Quarter => "quarter",
            DatePart::Month => "month",
            DatePart::Week => "week",
            DatePart::DayOfYear => "dayofyear",
            DatePart::DayOfMonth => "dayofmonth",
            DatePart::DayOfWeek => "dayofweek",
            DatePart::Hour => "hour",
            DatePart::Minute => "minute",
            DatePart::Second => "second",
        }
    }

    /// The part of `t` (a UTC date-time).
    fn of(self, t: &NaiveDateTime) -> i64 {
        use chrono::{Datelike, Timelike};
        (match self {
            DatePart::Year => t.year(),
            DatePart::Quarter => t.month0() as i32 / 3 + 1,
            DatePart::Month => t.month() as i32,
            DatePart::Week => t.iso_week().week() as i32,
            DatePart::DayOfYear => t.ordinal() as i32,
            DatePart::DayOfMonth => t.day() as i32,
            DatePart::DayOfWeek => t.weekday().number_from_sunday() as i32,
            DatePart::Hour => t.hour() as i32,
            DatePart::Minute => t.minute() as i32,
            DatePart::Second => t.second() as i32,
        }) as i64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Func {
    JsonValue,
    ToTimestamp,
    DateFormat,
    TimestampDiff,
    If,
    Mod,
    RegexpReplace,
    RegexpExtract,
    SplitIndex,
    Locate,
    FromUnixtime,
    UnixTimestamp,
    CurrentWatermark,
    Proctime,
    DatePart(DatePart),
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Udf {
    f: Func,
    signature: Signature,
}

impl Udf {
    fn new(f: Func) -> Self {
        let signature = match f {
            // a new value at every evaluation: never folded into a constant
            Func::Proctime => Signature::nullary(Volatility::Volatile),
            _ => Signature::user_defined(Volatility::Immutable),
        };
        Udf { f, signature }
    }
}

fn plan_err(m: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(m.into())
}

fn exec_err(m: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(m.into())
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
}

fn is_time(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null) || is_string(t)
}

const TS: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        match self.f {
            Func::JsonValue => "json_value",
            Func::ToTimestamp => "to_timestamp",
            Func::DateFormat => "date_format",
            Func::TimestampDiff => "timestampdiff",
            Func::If => "if",
            Func::Mod => "mod",
            Func::RegexpReplace => "regexp_replace",
            Func::RegexpExtract => "regexp_extract",
            Func::SplitIndex => "split_index",
            Func::Locate => "locate",
            Func::FromUnixtime => "from_unixtime",
            Func::UnixTimestamp => "unix_timestamp",
            Func::CurrentWatermark => "current_watermark",
            Func::Proctime => PROCTIME,
            Func::DatePart(p) => p.name(),
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, t: &[DataType]) -> DfResult<Vec<DataType>> {
        let name = self.name().to_uppercase();
        let strings = |n: &[usize]| -> DfResult<Vec<DataType>> {
            if !n.contains(&t.len()) {
                return Err(plan_err(format!("{name} takes {} arguments, not {}", n.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" or "), t.len())));
            }
            if let Some(bad) = t.iter().find(|x| !is_string(x)) {
                return Err(plan_err(format!("{name} takes strings, not {bad}")));
            }
            Ok(vec![DataType::Utf8; t.len()])
        };
        match self.f {
            Func::JsonValue => strings(&[2]),
            Func::ToTimestamp => strings(&[1, 2]),
            Func::RegexpReplace => strings(&[3]),
            Func::SplitIndex => match t {
                [a, b, i] if is_string(a) && is_string(b) && (i.is_integer() || *i == DataType::Null) => Ok(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
                _ => Err(plan_err("SPLIT_INDEX takes (string, separator, index)")),
            },
            Func::Locate => match t {
                [a, b] if is_string(a) && is_string(b) => Ok(vec![DataType::Utf8, DataType::Utf8]),
                [a, b, i] if is_string(a) && is_string(b) && (i.is_integer() || *i == DataType::Null) => Ok(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
                _ => Err(plan_err("LOCATE takes (substring, string [, start position])")),
            },
            Func::FromUnixtime => match t {
                [n] if n.is_integer() || *n == DataType::Null => Ok(vec![DataType::Int64]),
                [n, f] if (n.is_integer() || *n == DataType::Null) && is_string(f) => Ok(vec![DataType::Int64, DataType::Utf8]),
                _ => Err(plan_err("FROM_UNIXTIME takes (seconds since the epoch [, format])")),
            },
            Func::UnixTimestamp => match t {
                [] => Err(plan_err("UNIX_TIMESTAMP() without arguments (the current time) is not supported yet")),
                _ => strings(&[1, 2]).map_err(|_| plan_err("UNIX_TIMESTAMP takes (string [, format])")),
            },
            Func::RegexpExtract => match t {
                [a, b] if is_string(a) && is_string(b) => Ok(vec![DataType::Utf8, DataType::Utf8]),
                [a, b, i] if is_string(a) && is_string(b) && (i.is_integer() || *i == DataType::Null) => Ok(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
                _ => Err(plan_err("REGEXP_EXTRACT takes (string, regex [, group index])")),
            },
            Func::DateFormat => match t {
                [a, b] if is_time(a) && is_string(b) => Ok(vec![TS, DataType::Utf8]),
                _ => Err(plan_err("DATE_FORMAT takes (timestamp, format string)")),
            },
            Func::TimestampDiff => match t {
                [u, a, b] if is_string(u) && is_time(a) && is_time(b) => Ok(vec![DataType::Utf8, TS, TS]),
                _ => Err(plan_err("TIMESTAMPDIFF takes (SECOND|MINUTE|HOUR|DAY|WEEK|MONTH|YEAR, timestamp, timestamp)")),
            },
            Func::If => match t {
                [DataType::Boolean | DataType::Null, a, b] => {
                    let common = if a == b { Some(a.clone()) } else { comparison_coercion(a, b) };
                    let common = common.ok_or_else(|| plan_err(format!("IF: the two branches have incompatible types {a} and {b}")))?;
                    Ok(vec![DataType::Boolean, common.clone(), common])
                }
                _ => Err(plan_err("IF takes (boolean condition, value if true, value if false)")),
            },
            Func::Mod => match t {
                [a, b] if (a.is_integer() || *a == DataType::Null) && (b.is_integer() || *b == DataType::Null) => Ok(vec![DataType::Int64, DataType::Int64]),
                [a, b] if (a.is_numeric() || *a == DataType::Null) && (b.is_numeric() || *b == DataType::Null) => Ok(vec![DataType::Float64, DataType::Float64]),
                _ => Err(plan_err("MOD takes two numbers")),
            },
            Func::CurrentWatermark => match t {
                [DataType::Timestamp(_, _)] => Ok(vec![TS]),
                _ => Err(plan_err("CURRENT_WATERMARK takes the rowtime attribute (a timestamp column)")),
            },
            Func::Proctime => match t {
                [] => Ok(vec![]),
                _ => Err(plan_err("PROCTIME takes no arguments")),
            },
            Func::DatePart(_) => match t {
                [a] if is_time(a) => Ok(vec![TS]),
                _ => Err(plan_err(format!("{name} takes a timestamp or a date"))),
            },
        }
    }

    fn return_type(&self, t: &[DataType]) -> DfResult<DataType> {
        Ok(match self.f {
            Func::JsonValue | Func::DateFormat | Func::RegexpReplace | Func::RegexpExtract | Func::SplitIndex | Func::FromUnixtime => DataType::Utf8,
            Func::Locate => DataType::Int32,
            Func::UnixTimestamp => DataType::Int64,
            Func::ToTimestamp | Func::CurrentWatermark | Func::Proctime => TS,
            Func::DatePart(_) => DataType::Int64,
            Func::TimestampDiff => DataType::Int32,
            Func::If => t.get(1).cloned().unwrap_or(DataType::Null),
            Func::Mod => t.first().cloned().unwrap_or(DataType::Int64),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let n_eval = if all_scalar { 1 } else { n };
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array(n_eval)).collect::<DfResult<_>>()?;
        let out = self.eval(&arrays, n_eval)?;
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

fn strs(a: &ArrayRef) -> DfResult<StringArray> {
    Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn millis(a: &ArrayRef) -> DfResult<arrow::array::PrimitiveArray<TimestampMillisecondType>> {
    Ok(cast(a, &TS)?.as_primitive::<TimestampMillisecondType>().clone())
}

/// The value at `i` of a string argument that should be constant per batch.
fn str_at(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

impl Udf {
    fn eval(&self, a: &[ArrayRef], n: usize) -> DfResult<ArrayRef> {
        Ok(match self.f {
            Func::JsonValue => {
                let (json, path) = (strs(&a[0])?, strs(&a[1])?);
                let mut parsed: Option<(String, Vec<PathStep>)> = None;
                let out: StringArray = (0..n)
                    .map(|i| {
                        let (Some(j), Some(p)) = (str_at(&json, i), str_at(&path, i)) else { return Ok(None) };
                        if parsed.as_ref().is_none_or(|(s, _)| s != p) {
                            parsed = Some((p.to_string(), parse_json_path(p).map_err(exec_err)?));
                        }
                        let steps = parsed.as_ref().map(|(_, s)| s.as_slice()).unwrap_or_default();
                        Ok(json_value(j, steps))
                    })
                    .collect::<DfResult<_>>()?;
                Arc::new(out)
            }
            Func::ToTimestamp => {
                let out: TimestampMillisecondArray = parse_timestamps(a, n)?.into_iter().collect();
                Arc::new(out)
            }
            Func::DateFormat => {
                let (t, f) = (millis(&a[0])?, strs(&a[1])?);
                let mut conv: Option<(String, String)> = None;
                let out: StringArray = (0..n)
                    .map(|i| {
                        if t.is_null(i) {
                            return None;
                        }
                        let fmt = str_at(&f, i)?;
                        if conv.as_ref().is_none_or(|(j, _)| j != fmt) {
                            conv = Some((fmt.to_string(), java_format(fmt)));
                        }
                        let dt = DateTime::from_timestamp_millis(t.value(i))?.naive_utc();
                        let mut s = String::new();
                        use std::fmt::Write;
                        write!(s, "{}", dt.format(&conv.as_ref()?.1)).ok()?;
                        Some(s)
                    })
                    .collect();
                Arc::new(out)
            }
            Func::TimestampDiff => {
                let (u, t1, t2) = (strs(&a[0])?, millis(&a[1])?, millis(&a[2])?);
                let out: Int32Array = (0..n)
                    .map(|i| {
                        if t1.is_null(i) || t2.is_null(i) {
                            return Ok(None);
                        }
                        let Some(unit) = str_at(&u, i) else { return Ok(None) };
                        timestamp_diff(unit, t1.value(i), t2.value(i)).map_err(exec_err)
                    })
                    .collect::<DfResult<_>>()?;
                Arc::new(out)
            }
            Func::If => {
                let c = a[0].as_boolean();
                let mask: BooleanArray = c.iter().map(|v| Some(v.unwrap_or(false))).collect();
                arrow::compute::kernels::zip::zip(&mask, &a[1], &a[2])?
            }
            Func::Mod => match a[0].data_type() {
                DataType::Int64 => {
                    let (x, y) = (a[0].as_primitive::<arrow::datatypes::Int64Type>(), a[1].as_primitive::<arrow::datatypes::Int64Type>());
                    let out: Int64Array = x.iter().zip(y.iter()).map(|(x, y)| match (x, y) {
                        (Some(x), Some(y)) if y != 0 => Some(x.wrapping_rem(y)),
                        _ => None,
                    }).collect();
                    Arc::new(out)
                }
                _ => {
                    let (x, y) = (cast(&a[0], &DataType::Float64)?, cast(&a[1], &DataType::Float64)?);
                    let (x, y) = (x.as_primitive::<arrow::datatypes::Float64Type>(), y.as_primitive::<arrow::datatypes::Float64Type>());
                    let out: Float64Array = x.iter().zip(y.iter()).map(|(x, y)| match (x, y) {
                        (Some(x), Some(y)) if y != 0.0 => Some(x % y),
                        _ => None,
                    }).collect();
                    Arc::new(out)
                }
            },
            Func::SplitIndex => {
                let (s, sep, idx) = (strs(&a[0])?, strs(&a[1])?, a[2].as_primitive::<arrow::datatypes::Int64Type>());
                let out: StringArray = (0..n)
                    .map(|i| {
                        let (v, sep) = (str_at(&s, i)?, str_at(&sep, i)?);
                        let k = usize::try_from((!idx.is_null(i)).then(|| idx.value(i))?).ok()?;
                        if sep.is_empty() {
                            return None;
                        }
                        v.split(sep).nth(k).map(str::to_string)
                    })
                    .collect();
                Arc::new(out)
            }
            Func::Locate => {
                let (needle, hay) = (strs(&a[0])?, strs(&a[1])?);
                let from = a.get(2).map(|f| f.as_primitive::<arrow::datatypes::Int64Type>().clone());
                let out: Int32Array = (0..n)
                    .map(|i| {
                        let (nd, h) = (str_at(&needle, i)?, str_at(&hay, i)?);
                        let start = match &from {
                            Some(f) if f.is_null(i) => return None,
                            Some(f) => f.value(i).max(1) as usize - 1,
                            None => 0,
                        };
                        // 1-based character positions, 0 when not found
                        let byte = h.char_indices().nth(start).map(|(b, _)| b)?;
                        Some(h[byte..].find(nd).map_or(0, |p| (start + h[byte..byte + p].chars().count() + 1) as i32))
                    })
                    .collect();
                Arc::new(out)
            }
            Func::FromUnixtime => {
                let secs = a[0].as_primitive::<arrow::datatypes::Int64Type>();
                let f = if a.len() > 1 { Some(strs(&a[1])?) } else { None };
                let mut conv: Option<(String, String)> = None;
                let out: StringArray = (0..n)
                    .map(|i| {
                        if secs.is_null(i) {
                            return None;
                        }
                        let fmt = match &f {
                            None => "yyyy-MM-dd HH:mm:ss",
                            Some(f) => str_at(f, i)?,
                        };
                        if conv.as_ref().is_none_or(|(j, _)| j != fmt) {
                            conv = Some((fmt.to_string(), java_format(fmt)));
                        }
                        let dt = DateTime::from_timestamp(secs.value(i), 0)?.naive_utc();
                        Some(dt.format(&conv.as_ref()?.1).to_string())
                    })
                    .collect();
                Arc::new(out)
            }
            Func::UnixTimestamp => {
                let out: Int64Array = parse_timestamps(a, n)?.into_iter().map(|ms| ms.map(|ms| ms.div_euclid(1000))).collect();
                Arc::new(out)
            }
            Func::RegexpReplace | Func::RegexpExtract => {
                let (s, p) = (strs(&a[0])?, strs(&a[1])?);
                let third = if a.len() > 2 { Some(a[2].clone()) } else { None };
                let mut re: Option<(String, regex::Regex)> = None;
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let (Some(v), Some(pat)) = (str_at(&s, i), str_at(&p, i)) else {
                        out.push(None);
                        continue;
                    };
                    if re.as_ref().is_none_or(|(q, _)| q != pat) {
                        let r = regex::Regex::new(pat).map_err(|e| exec_err(format!("{}: bad regular expression '{pat}': {e}", self.name().to_uppercase())))?;
                        re = Some((pat.to_string(), r));
                    }
                    let Some((_, r)) = &re else { continue };
                    if self.f == Func::RegexpReplace {
                        let rep = third.as_ref().map(strs).transpose()?;
                        let Some(rep) = rep.as_ref().and_then(|x| str_at(x, i).map(str::to_string)) else {
                            out.push(None);
                            continue;
                        };
                        out.push(Some(r.replace_all(v, rep.as_str()).into_owned()));
                    } else {
                        let idx = match &third {
                            None => 0, // the whole match, as Flink
                            Some(t) if t.is_null(i) => {
                                out.push(None);
                                continue;
                            }
                            Some(t) => t.as_primitive::<arrow::datatypes::Int64Type>().value(i),
                        };
                        let g = usize::try_from(idx).ok();
                        out.push(r.captures(v).and_then(|c| g.and_then(|g| c.get(g))).map(|m| m.as_str().to_string()));
                    }
                }
                Arc::new(StringArray::from(out))
            }
            Func::CurrentWatermark => {
                let wm = WATERMARK.with(Cell::get);
                Arc::new(TimestampMillisecondArray::from(vec![wm; n]))
            }
            Func::Proctime => Arc::new(TimestampMillisecondArray::from(vec![weir::record::now_ms(); n])),
            Func::DatePart(p) => {
                let t = millis(&a[0])?;
                let out: Int64Array = t.iter().map(|ms| ms.and_then(DateTime::from_timestamp_millis).map(|d| p.of(&d.naive_utc()))).collect();
                Arc::new(out)
            }
        })
    }
}

/// One step of a JSON path (`$.a.b[0]['c']`).
#[derive(Debug, PartialEq)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn parse_json_path(p: &str) -> Result<Vec<PathStep>, String> {
    let bad = || format!("JSON_VALUE: unsupported JSON path '{p}' (use $.key, $.a.b, $.a[0], $['key'])");
    let rest = p.trim().strip_prefix('$').ok_or_else(bad)?;
    let b = rest.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                let s = i + 1;
                let mut e = s;
                while e < b.len() && b[e] != b'.' && b[e] != b'[' {
                    e += 1;
                }
                if e == s {
                    return Err(bad());
                }
                out.push(PathStep::Key(rest[s..e].to_string()));
                i = e;
            }
            b'[' => {
                let e = rest[i..].find(']').map(|x| x + i).ok_or_else(bad)?;
                let inner = rest[i + 1..e].trim();
                if let Some(q) = inner.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')).or_else(|| inner.strip_prefix('"').and_then(|x| x.strip_suffix('"'))) {
                    out.push(PathStep::Key(q.to_string()));
                } else {
                    out.push(PathStep::Index(inner.parse().map_err(|_| bad())?));
                }
                i = e + 1;
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// The scalar at `path` of `json` as a string (NULL for a missing path, a
/// non-scalar or invalid JSON, as Flink's default `NULL ON EMPTY/ERROR`).
fn json_value(json: &str, path: &[PathStep]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut cur = &v;
    for s in path {
        cur = match s {
            PathStep::Key(k) => cur.get(k.as_str())?,
            PathStep::Index(i) => cur.get(*i)?,
        };
    }
    match cur {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Java `SimpleDateFormat`/`DateTimeFormatter` pattern as a chrono format.
pub fn java_format(f: &str) -> String {
    let mut out = String::new();
    let c: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\'' {
            // quoted literal ('' is a quote)
            i += 1;
            if i < c.len() && c[i] == '\'' {
                out.push('\'');
                i += 1;
                continue;
            }
            while i < c.len() && c[i] != '\'' {
                if c[i] == '%' {
                    out.push('%');
                }
                out.push(c[i]);
                i += 1;
            }
            i += 1;
            continue;
        }
        let mut run = 1;
        while i + run < c.len() && c[i + run] == ch {
            run += 1;
        }
        let spec = match (ch, run) {
            ('y', 2) => "%y",
            ('y', _) | ('u', _) => "%Y",
            ('M', 1) | ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('a', _) => "%p",
            ('%', _) => "%%",
            _ => {
                for _ in 0..run {
                    out.push(ch);
                }
                i += run;
                continue;
            }
        };
        out.push_str(spec);
        i += run;
    }
    out
}

/// Epoch milliseconds of `a[0]`'s strings, parsed with the Java-style format `a[1]`
/// (default `yyyy-MM-dd HH:mm:ss`); NULL where a string, its format or the parse is
/// missing. A format is converted once while it repeats.
fn parse_timestamps(a: &[ArrayRef], n: usize) -> DfResult<Vec<Option<i64>>> {
    let s = strs(&a[0])?;
    let f = if a.len() > 1 { Some(strs(&a[1])?) } else { None };
    let mut conv: Option<(String, String)> = None;
    Ok((0..n)
        .map(|i| {
            let v = str_at(&s, i)?;
            let fmt = match &f {
                None => "yyyy-MM-dd HH:mm:ss",
                Some(f) => str_at(f, i)?,
            };
            if conv.as_ref().is_none_or(|(j, _)| j != fmt) {
                conv = Some((fmt.to_string(), java_format(fmt)));
            }
            parse_ts(v, &conv.as_ref()?.1)
        })
        .collect())
}

fn parse_ts(s: &str, fmt: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
        return Some(t.and_utc().timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

/// `TIMESTAMPDIFF(unit, t1, t2)`: whole units from `t1` to `t2` (ms), as Flink.
fn timestamp_diff(unit: &str, t1: i64, t2: i64) -> Result<Option<i32>, String> {
    let d = t2 - t1;
    let unit = UNIT_CODES.iter().find(|(_, c)| *c == unit).map_or(unit, |(u, _)| u);
    let v = match unit.to_ascii_uppercase().as_str() {
        "SECOND" => d / 1000,
        "MINUTE" => d / 60_000,
        "HOUR" => d / 3_600_000,
        "DAY" => d / 86_400_000,
        "WEEK" => d / (7 * 86_400_000),
        "MONTH" | "QUARTER" | "YEAR" => {
            let (a, b) = (DateTime::from_timestamp_millis(t1).ok_or("timestamp out of range")?.naive_utc(), DateTime::from_timestamp_millis(t2).ok_or("timestamp out of range")?.naive_utc());
            use chrono::{Datelike, Timelike};
            let months = |t: &NaiveDateTime| t.year() as i64 * 12 + t.month0() as i64;
            let rest = |t: &NaiveDateTime| (t.day(), t.num_seconds_from_midnight(), t.nanosecond());
            let mut m = months(&b) - months(&a);
            // an incomplete last month does not count
            if m > 0 && rest(&b) < rest(&a) {
                m -= 1;
            } else if m < 0 && rest(&b) > rest(&a) {
                m += 1;
            }
            match unit.to_ascii_uppercase().as_str() {
                "MONTH" => m,
                "QUARTER" => m / 3,
                _ => m / 12,
            }
        }
        other => return Err(format!("TIMESTAMPDIFF: unknown unit {other}")),
    };
    Ok(Some(v as i32))
}

/// `JSON_VALUE(j, path RETURNING type)` (parsed by sqlparser, refused by DataFusion's
/// planner) becomes `CAST(JSON_VALUE(j, path) AS type)`.
pub fn rewrite_ast(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let SqlExpr::Function(f) = e
            && f.name.to_string().eq_ignore_ascii_case("JSON_VALUE")
            && let FunctionArguments::List(list) = &mut f.args
            && let Some(i) = list.clauses.iter().position(|c| matches!(c, FunctionArgumentClause::JsonReturningClause(_)))
            && let FunctionArgumentClause::JsonReturningClause(r) = list.clauses.remove(i)
        {
            let inner = std::mem::replace(e, SqlExpr::Value(SqlValue::Null.into()));
            *e = SqlExpr::Cast { kind: CastKind::Cast, expr: Box::new(inner), data_type: r.data_type, array: false, format: None };
        }
        ControlFlow::<()>::Continue(())
    });
}

const UNITS: [&str; 7] = ["SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "YEAR"];
/// Units as the one-letter codes the rewrite uses (every unit name has 3 letters or more).
const UNIT_CODES: [(&str, &str); 8] = [("SECOND", "s"), ("MINUTE", "m"), ("HOUR", "h"), ("DAY", "d"), ("WEEK", "w"), ("MONTH", "M"), ("QUARTER", "q"), ("YEAR", "y")];

/// Rewrites the unit of `TIMESTAMPDIFF(UNIT, a, b)` (a keyword for Flink, a column
/// name for DataFusion) into a string literal, keeping every other offset of `text`:
/// `TIMESTAMPDIFF(HOUR, a, b)` becomes `TIMESTAMPDIFF('HOUR', a, b)` with the two
/// extra characters taken from the whitespace around the unit, or a
/// length-preserving code otherwise.
pub fn rewrite_timestampdiff(script: &str, text: &mut String) -> Result<(), SqlError> {
    let mut from = 0;
    while let Some(at) = crate::script::find_word(&text[from..], "TIMESTAMPDIFF").map(|x| x + from) {
        from = at + "TIMESTAMPDIFF".len();
        let rest = &text[from..];
        let Some(open) = rest.find(|c: char| !c.is_whitespace()).filter(|i| rest[*i..].starts_with('(')) else { continue };
        let args_at = from + open + 1;
        let arg_end = text[args_at..].find(',').map(|x| x + args_at).ok_or_else(|| SqlError::at(script, at, "expected TIMESTAMPDIFF(unit, timestamp1, timestamp2)"))?;
        let unit_text = &text[args_at..arg_end];
        let unit = unit_text.trim().to_ascii_uppercase();
        if unit.starts_with('\'') {
            continue;
        }
        let unit = unit.strip_prefix("SQL_TSI_").unwrap_or(&unit).to_string();
        if !UNITS.contains(&unit.as_str()) && unit != "QUARTER" {
            return Err(SqlError::at(script, args_at, format!("TIMESTAMPDIFF: unit must be one of SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER, YEAR, not '{}'", unit_text.trim())));
        }
        // a one-letter code keeps the text's length (and so every position after it)
        let code = UNIT_CODES.iter().find(|(u, _)| *u == unit).map_or("s", |(_, c)| c);
        let len = unit_text.len();
        text.replace_range(args_at..arg_end, &format!("'{code}'{}", " ".repeat(len - 3)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_formats() {
        assert_eq!(java_format("yyyy-MM-dd HH:mm:ss"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(java_format("yyyy-MM-dd'T'HH:mm:ss.SSS"), "%Y-%m-%dT%H:%M:%S.%3f");
        assert_eq!(parse_ts("2024-01-02 03:04:05", &java_format("yyyy-MM-dd HH:mm:ss")), Some(1704164645000));
        assert_eq!(parse_ts("2024/01/02", &java_format("yyyy/MM/dd")), Some(1704153600000));
        assert_eq!(parse_ts("nope", "%Y"), None);
    }

    #[test]
    fn json_paths() {
        let p = parse_json_path("$.a.b[1]['c d']").unwrap();
        assert_eq!(p, vec![PathStep::Key("a".into()), PathStep::Key("b".into()), PathStep::Index(1), PathStep::Key("c d".into())]);
        assert_eq!(json_value(r#"{"a": {"b": [0, {"c d": 7}]}}"#, &p), Some("7".into()));
        assert_eq!(json_value("not json", &p), None);
        assert!(parse_json_path("a.b").is_err());
    }

    #[test]
    fn date_parts() {
        // 2024-03-31 (a Sunday) 23:59:58 UTC
        let t = DateTime::from_timestamp_millis(1711929598000).unwrap().naive_utc();
        let parts: Vec<i64> = DatePart::ALL.iter().map(|p| p.of(&t)).collect();
        assert_eq!(parts, vec![2024, 1, 3, 13, 91, 31, 1, 23, 59, 58]);
    }

    #[test]
    fn timestamp_diffs() {
        assert_eq!(timestamp_diff("HOUR", 0, 7_199_999), Ok(Some(1)));
        assert_eq!(timestamp_diff("SECOND", 5000, 0), Ok(Some(-5)));
        // 2024-01-31 -> 2024-02-29: not a whole month
        assert_eq!(timestamp_diff("MONTH", 1706659200000, 1709164800000), Ok(Some(0)));
    }

    #[test]
    fn timestampdiff_units_become_strings() {
        let s = "SELECT TIMESTAMPDIFF( HOUR , a, b), TIMESTAMPDIFF(DAY, a, b), TIMESTAMPDIFF('MINUTE', a, b) FROM t";
        let mut t = s.to_string();
        rewrite_timestampdiff(s, &mut t).unwrap();
        assert_eq!(t, "SELECT TIMESTAMPDIFF('h'   , a, b), TIMESTAMPDIFF('d', a, b), TIMESTAMPDIFF('MINUTE', a, b) FROM t");
        let s = "SELECT TIMESTAMPDIFF(FORTNIGHT, a, b) FROM t";
        assert!(rewrite_timestampdiff(s, &mut s.to_string()).is_err());
    }
}
