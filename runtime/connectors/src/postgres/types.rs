//! Arrow columns as PostgreSQL parameters and PostgreSQL columns as Arrow arrays.
//!
//! Every parameter of a statement carries an explicit cast to the type its Arrow
//! column maps to (`$1::int8`), so the server never has to guess and PostgreSQL's
//! assignment casts convert to the column's declared type (an `int8` parameter into
//! an `integer` column, `text` into `varchar`). Reading, the scan selects each column
//! cast the same way, so a table column of any compatible type reads into the Arrow
//! type the SQL table declares.

use std::error::Error as StdError;
use std::sync::Arc;

use arrow::array::{self as aa, Array, ArrayRef, AsArray};
use arrow::datatypes::{self as dt, DataType, Field, TimeUnit};
use bytes::BytesMut;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use postgres::types::{IsNull, ToSql, Type};

/// The PostgreSQL type an Arrow column is written as and read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bool,
    /// `timestamp` (Arrow timestamps without a time zone)
    Timestamp,
    /// `timestamptz` (Arrow timestamps with a time zone: `TIMESTAMP_LTZ`)
    Timestamptz,
    /// `numeric`, sent as text (exact)
    Numeric,
    Date,
}

impl PgType {
    /// The type of `field`; an unsupported Arrow type is an error naming the column.
    pub fn of(field: &Field) -> Result<PgType, String> {
        Ok(match field.data_type() {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgType::Int2,
            DataType::Int32 | DataType::UInt16 => PgType::Int4,
            DataType::Int64 | DataType::UInt32 => PgType::Int8,
            DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType::Text,
            DataType::Boolean => PgType::Bool,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgType::Timestamptz,
            DataType::Decimal128(_, _) => PgType::Numeric,
            DataType::Date32 => PgType::Date,
            other => return Err(format!("column '{}' has type {other}, which the postgres connector does not support (supported: TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, STRING/VARCHAR, BOOLEAN, TIMESTAMP, TIMESTAMP_LTZ, DECIMAL, DATE)", field.name())),
        })
    }

    /// The cast of a parameter of this type (`$1::int8`; numerics travel as text).
    pub fn param_cast(self) -> &'static str {
        match self {
            PgType::Int2 => "::int2",
            PgType::Int4 => "::int4",
            PgType::Int8 => "::int8",
            PgType::Float4 => "::float4",
            PgType::Float8 => "::float8",
            PgType::Text => "::text",
            PgType::Bool => "::bool",
            PgType::Timestamp => "::timestamp",
            PgType::Timestamptz => "::timestamptz",
            PgType::Numeric => "::text::numeric",
            PgType::Date => "::date",
        }
    }

    /// The PostgreSQL name of the type.
    pub fn name(self) -> &'static str {
        match self {
            PgType::Int2 => "int2",
            PgType::Int4 => "int4",
            PgType::Int8 => "int8",
            PgType::Float4 => "float4",
            PgType::Float8 => "float8",
            PgType::Text => "text",
            PgType::Bool => "bool",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Numeric => "numeric",
            PgType::Date => "date",
        }
    }

    /// How the scan selects a column to read it as this type.
    pub fn select_cast(self) -> &'static str {
        match self {
            PgType::Numeric => "::numeric::text",
            t => t.param_cast(),
        }
    }
}

/// One value of a row, as a parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Text(String),
    Bool(bool),
    Timestamp(NaiveDateTime),
    Timestamptz(DateTime<Utc>),
    Date(NaiveDate),
}

impl Value {
    /// Appends an encoding of the value that is equal exactly for equal values (a key).
    pub fn key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::I16(v) => {
                out.push(1);
                out.extend_from_slice(&(*v as i64).to_le_bytes());
            }
            Value::I32(v) => {
                out.push(1);
                out.extend_from_slice(&(*v as i64).to_le_bytes());
            }
            Value::I64(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::F32(v) => {
                out.push(2);
                out.extend_from_slice(&(*v as f64).to_bits().to_le_bytes());
            }
            Value::F64(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Value::Text(s) => {
                out.push(3);
                out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bool(b) => out.extend_from_slice(&[4, u8::from(*b)]),
            Value::Timestamp(t) => {
                out.push(5);
                out.extend_from_slice(&t.and_utc().timestamp_micros().to_le_bytes());
            }
            Value::Timestamptz(t) => {
                out.push(6);
                out.extend_from_slice(&t.timestamp_micros().to_le_bytes());
            }
            Value::Date(d) => {
                out.push(7);
                out.extend_from_slice(&d.to_string().into_bytes());
            }
        }
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::I16(v) => v.to_sql_checked(ty, out),
            Value::I32(v) => v.to_sql_checked(ty, out),
            Value::I64(v) => v.to_sql_checked(ty, out),
            Value::F32(v) => v.to_sql_checked(ty, out),
            Value::F64(v) => v.to_sql_checked(ty, out),
            Value::Text(v) => v.to_sql_checked(ty, out),
            Value::Bool(v) => v.to_sql_checked(ty, out),
            Value::Timestamp(v) => v.to_sql_checked(ty, out),
            Value::Timestamptz(v) => v.to_sql_checked(ty, out),
            Value::Date(v) => v.to_sql_checked(ty, out),
        }
    }
    fn accepts(_ty: &Type) -> bool {
        // every parameter is cast to its value's type (`$n::int8`): the inner
        // value's own `to_sql_checked` checks the match
        true
    }
    postgres::types::to_sql_checked!();
}

/// A decimal `v / 10^scale` as text (`-12.340`).
pub fn decimal_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = v.to_string();
        if v != 0 {
            s.extend(std::iter::repeat_n('0', (-scale) as usize));
        }
        return s;
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale + 1 - digits.len())) } else { digits };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// Parses the text of a numeric into `v` of `v / 10^scale` (rounded half away from zero).
pub fn parse_decimal(s: &str, scale: i8) -> Result<i128, String> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(format!("'{s}' is not a decimal number"));
    }
    let overflow = || format!("'{s}' does not fit a DECIMAL of scale {scale}");
    let mut v: i128 = 0;
    for c in int.chars() {
        v = v.checked_mul(10).and_then(|v| v.checked_add((c as u8 - b'0') as i128)).ok_or_else(overflow)?;
    }
    let scale_u = scale.max(0) as usize;
    let mut fdigits = frac.chars();
    for _ in 0..scale_u {
        let d = fdigits.next().map_or(0, |c| (c as u8 - b'0') as i128);
        v = v.checked_mul(10).and_then(|v| v.checked_add(d)).ok_or_else(overflow)?;
    }
    if fdigits.next().is_some_and(|c| c >= '5') {
        v = v.checked_add(1).ok_or_else(overflow)?;
    }
    if scale < 0 {
        v /= 10i128.pow((-scale) as u32);
    }
    Ok(if neg { -v } else { v })
}

fn ts_micros(v: i64, unit: &TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
    }
}

/// The values of row `i` of `col` (of the Arrow type `PgType::of` accepted).
pub fn value(col: &dyn Array, i: usize) -> Result<Value, String> {
    if col.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match col.data_type() {
        DataType::Int8 => Value::I16(col.as_primitive::<dt::Int8Type>().value(i) as i16),
        DataType::Int16 => Value::I16(col.as_primitive::<dt::Int16Type>().value(i)),
        DataType::UInt8 => Value::I16(col.as_primitive::<dt::UInt8Type>().value(i) as i16),
        DataType::Int32 => Value::I32(col.as_primitive::<dt::Int32Type>().value(i)),
        DataType::UInt16 => Value::I32(col.as_primitive::<dt::UInt16Type>().value(i) as i32),
        DataType::Int64 => Value::I64(col.as_primitive::<dt::Int64Type>().value(i)),
        DataType::UInt32 => Value::I64(col.as_primitive::<dt::UInt32Type>().value(i) as i64),
        DataType::Float32 => Value::F32(col.as_primitive::<dt::Float32Type>().value(i)),
        DataType::Float64 => Value::F64(col.as_primitive::<dt::Float64Type>().value(i)),
        DataType::Utf8 => Value::Text(col.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::Text(col.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::Text(col.as_string_view().value(i).to_string()),
        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
        DataType::Timestamp(unit, tz) => {
            let raw = match unit {
                TimeUnit::Second => col.as_primitive::<dt::TimestampSecondType>().value(i),
                TimeUnit::Millisecond => col.as_primitive::<dt::TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => col.as_primitive::<dt::TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => col.as_primitive::<dt::TimestampNanosecondType>().value(i),
            };
            let t = ts_micros(raw, unit).and_then(DateTime::from_timestamp_micros).ok_or_else(|| format!("timestamp {raw} ({unit:?}) is out of range"))?;
            if tz.is_some() { Value::Timestamptz(t) } else { Value::Timestamp(t.naive_utc()) }
        }
        DataType::Decimal128(_, s) => Value::Text(decimal_text(col.as_primitive::<dt::Decimal128Type>().value(i), *s)),
        DataType::Date32 => {
            let d = col.as_primitive::<dt::Date32Type>().value(i);
            Value::Date(NaiveDate::from_num_days_from_ce_opt(d + 719_163).ok_or_else(|| format!("date {d} is out of range"))?)
        }
        other => return Err(format!("type {other} is not supported")),
    })
}

/// Reads column `idx` of `rows` (selected with `PgType::select_cast` of `field`)
/// into an array of `field`'s type.
pub fn column(rows: &[postgres::Row], idx: usize, field: &Field) -> Result<ArrayRef, String> {
    fn get<'a, T: postgres::types::FromSql<'a>>(r: &'a postgres::Row, idx: usize, name: &str) -> Result<Option<T>, String> {
        r.try_get::<_, Option<T>>(idx).map_err(|e| format!("column '{name}': {}", super::error::describe(&e)))
    }
    let name = field.name();
    let range = |what: &str| format!("column '{name}': a value does not fit {what}");
    Ok(match field.data_type() {
        DataType::Int8 => Arc::new(rows.iter().map(|r| get::<i16>(r, idx, name)?.map(|v| i8::try_from(v).map_err(|_| range("TINYINT"))).transpose()).collect::<Result<aa::Int8Array, _>>()?),
        DataType::Int16 => Arc::new(rows.iter().map(|r| get::<i16>(r, idx, name)).collect::<Result<aa::Int16Array, _>>()?),
        DataType::UInt8 => Arc::new(rows.iter().map(|r| get::<i16>(r, idx, name)?.map(|v| u8::try_from(v).map_err(|_| range("UTINYINT"))).transpose()).collect::<Result<aa::UInt8Array, _>>()?),
        DataType::Int32 => Arc::new(rows.iter().map(|r| get::<i32>(r, idx, name)).collect::<Result<aa::Int32Array, _>>()?),
        DataType::UInt16 => Arc::new(rows.iter().map(|r| get::<i32>(r, idx, name)?.map(|v| u16::try_from(v).map_err(|_| range("USMALLINT"))).transpose()).collect::<Result<aa::UInt16Array, _>>()?),
        DataType::Int64 => Arc::new(rows.iter().map(|r| get::<i64>(r, idx, name)).collect::<Result<aa::Int64Array, _>>()?),
        DataType::UInt32 => Arc::new(rows.iter().map(|r| get::<i64>(r, idx, name)?.map(|v| u32::try_from(v).map_err(|_| range("UINT"))).transpose()).collect::<Result<aa::UInt32Array, _>>()?),
        DataType::Float32 => Arc::new(rows.iter().map(|r| get::<f32>(r, idx, name)).collect::<Result<aa::Float32Array, _>>()?),
        DataType::Float64 => Arc::new(rows.iter().map(|r| get::<f64>(r, idx, name)).collect::<Result<aa::Float64Array, _>>()?),
        DataType::Utf8 => Arc::new(rows.iter().map(|r| get::<&str>(r, idx, name)).collect::<Result<aa::StringArray, _>>()?),
        DataType::LargeUtf8 => Arc::new(rows.iter().map(|r| get::<&str>(r, idx, name)).collect::<Result<aa::LargeStringArray, _>>()?),
        DataType::Utf8View => Arc::new(rows.iter().map(|r| get::<&str>(r, idx, name)).collect::<Result<aa::StringViewArray, _>>()?),
        DataType::Boolean => Arc::new(rows.iter().map(|r| get::<bool>(r, idx, name)).collect::<Result<aa::BooleanArray, _>>()?),
        DataType::Timestamp(unit, tz) => {
            let micros: Vec<Option<i64>> = if tz.is_some() {
                rows.iter().map(|r| Ok(get::<DateTime<Utc>>(r, idx, name)?.map(|t| t.timestamp_micros()))).collect::<Result<_, String>>()?
            } else {
                rows.iter().map(|r| Ok(get::<NaiveDateTime>(r, idx, name)?.map(|t| t.and_utc().timestamp_micros()))).collect::<Result<_, String>>()?
            };
            let conv = |m: i64| -> Result<i64, String> {
                match unit {
                    TimeUnit::Second => Ok(m.div_euclid(1_000_000)),
                    TimeUnit::Millisecond => Ok(m.div_euclid(1_000)),
                    TimeUnit::Microsecond => Ok(m),
                    TimeUnit::Nanosecond => m.checked_mul(1_000).ok_or_else(|| range("TIMESTAMP(9)")),
                }
            };
            let vals: Vec<Option<i64>> = micros.into_iter().map(|m| m.map(conv).transpose()).collect::<Result<_, _>>()?;
            match unit {
                TimeUnit::Second => Arc::new(aa::TimestampSecondArray::from(vals).with_timezone_opt(tz.clone())),
                TimeUnit::Millisecond => Arc::new(aa::TimestampMillisecondArray::from(vals).with_timezone_opt(tz.clone())),
                TimeUnit::Microsecond => Arc::new(aa::TimestampMicrosecondArray::from(vals).with_timezone_opt(tz.clone())),
                TimeUnit::Nanosecond => Arc::new(aa::TimestampNanosecondArray::from(vals).with_timezone_opt(tz.clone())),
            }
        }
        DataType::Decimal128(p, s) => {
            let vals = rows.iter().map(|r| get::<&str>(r, idx, name)?.map(|t| parse_decimal(t, *s).map_err(|m| format!("column '{name}': {m}"))).transpose()).collect::<Result<Vec<Option<i128>>, String>>()?;
            Arc::new(aa::Decimal128Array::from(vals).with_precision_and_scale(*p, *s).map_err(|e| format!("column '{name}': {e}"))?)
        }
        DataType::Date32 => Arc::new(rows.iter().map(|r| Ok(get::<NaiveDate>(r, idx, name)?.map(|d| d.num_days_from_ce() - 719_163))).collect::<Result<aa::Date32Array, String>>()?),
        other => return Err(format!("column '{name}' has type {other}, which the postgres connector does not support")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int32Array, StringArray, TimestampMillisecondArray};

    #[test]
    fn type_mapping() {
        let f = |t: DataType| PgType::of(&Field::new("c", t, true));
        assert_eq!(f(DataType::Int64).unwrap(), PgType::Int8);
        assert_eq!(f(DataType::Int32).unwrap().param_cast(), "::int4");
        assert_eq!(f(DataType::Timestamp(TimeUnit::Millisecond, None)).unwrap(), PgType::Timestamp);
        assert_eq!(f(DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))).unwrap(), PgType::Timestamptz);
        assert_eq!(f(DataType::Decimal128(10, 2)).unwrap().param_cast(), "::text::numeric");
        let e = f(DataType::Binary).unwrap_err();
        assert!(e.contains("column 'c'") && e.contains("Binary"), "{e}");
    }

    #[test]
    fn values_from_arrays() {
        let ts = TimestampMillisecondArray::from(vec![Some(1_500), None]);
        assert_eq!(value(&ts, 0).unwrap(), Value::Timestamp(DateTime::from_timestamp_millis(1_500).unwrap().naive_utc()));
        assert_eq!(value(&ts, 1).unwrap(), Value::Null);
        let d = Decimal128Array::from(vec![-1234i128, 5]).with_precision_and_scale(10, 3).unwrap();
        assert_eq!(value(&d, 0).unwrap(), Value::Text("-1.234".into()));
        assert_eq!(value(&d, 1).unwrap(), Value::Text("0.005".into()));
        assert_eq!(value(&Int32Array::from(vec![7]), 0).unwrap(), Value::I32(7));
        assert_eq!(value(&StringArray::from(vec!["x"]), 0).unwrap(), Value::Text("x".into()));
        let date = arrow::array::Date32Array::from(vec![0, 19_000]);
        assert_eq!(value(&date, 0).unwrap(), Value::Date(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()));
        assert_eq!(value(&date, 1).unwrap(), Value::Date(NaiveDate::from_ymd_opt(2022, 1, 8).unwrap()));
    }

    #[test]
    fn decimals_round_trip() {
        for (v, s, text) in [(0i128, 2i8, "0.00"), (5, 2, "0.05"), (-5, 2, "-0.05"), (123456, 3, "123.456"), (42, 0, "42"), (7, -2, "700")] {
            assert_eq!(decimal_text(v, s), text);
            assert_eq!(parse_decimal(text, s).unwrap(), v, "{text}");
        }
        assert_eq!(parse_decimal("1.235", 2).unwrap(), 124);
        assert_eq!(parse_decimal("-1.2", 3).unwrap(), -1200);
        assert!(parse_decimal("abc", 2).is_err());
    }

    #[test]
    fn keys_distinguish_values() {
        let k = |v: &[Value]| {
            let mut b = Vec::new();
            v.iter().for_each(|x| x.key_bytes(&mut b));
            b
        };
        assert_eq!(k(&[Value::I32(1)]), k(&[Value::I64(1)]));
        assert_ne!(k(&[Value::Text("ab".into()), Value::Text("c".into())]), k(&[Value::Text("a".into()), Value::Text("bc".into())]));
        assert_ne!(k(&[Value::Null]), k(&[Value::I64(0)]));
    }
}
