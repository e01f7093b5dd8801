//! Flink SQL column types to Arrow types.

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::sql::sqlparser::ast::{DataType as S, ExactNumberInfo, TimezoneInfo};

fn ts_unit(p: Option<u64>) -> TimeUnit {
    match p {
        Some(0) => TimeUnit::Second,
        None | Some(1..=3) => TimeUnit::Millisecond,
        Some(4..=6) => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

/// The Arrow type of a declared column type.
pub fn arrow_type(t: &S) -> Result<DataType, String> {
    Ok(match t {
        S::Boolean | S::Bool => DataType::Boolean,
        S::TinyInt(_) => DataType::Int8,
        S::SmallInt(_) => DataType::Int16,
        S::Int(_) | S::Integer(_) => DataType::Int32,
        S::BigInt(_) => DataType::Int64,
        S::Float(_) | S::Real => DataType::Float32,
        S::Double(_) | S::DoublePrecision => DataType::Float64,
        S::String(_) | S::Varchar(_) | S::Char(_) | S::Text | S::CharVarying(_) | S::Character(_) | S::CharacterVarying(_) => DataType::Utf8,
        S::Bytea | S::Bytes(_) | S::Binary(_) | S::Varbinary(_) => DataType::Binary,
        S::Date => DataType::Date32,
        S::Decimal(info) | S::Numeric(info) => match info {
            ExactNumberInfo::PrecisionAndScale(p, s) => DataType::Decimal128(*p as u8, *s as i8),
            ExactNumberInfo::Precision(p) => DataType::Decimal128(*p as u8, 0),
            ExactNumberInfo::None => DataType::Decimal128(10, 0),
        },
        S::Timestamp(p, tz) => match tz {
            TimezoneInfo::None | TimezoneInfo::WithoutTimeZone => DataType::Timestamp(ts_unit(*p), None),
            _ => DataType::Timestamp(ts_unit(*p), Some("UTC".into())),
        },
        // Flink's `ROW<name TYPE, ...>` (parsed as `STRUCT<...>`, see `script::strip_create_table`)
        S::Struct(fields, _) => {
            let mut out = Vec::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                let name = f.field_name.as_ref().map(|n| n.value.clone()).ok_or_else(|| format!("field {} of {t} needs a name", i + 1))?;
                out.push(Field::new(name.clone(), arrow_type(&f.field_type).map_err(|m| format!("field '{name}': {m}"))?, true));
            }
            DataType::Struct(Fields::from(out))
        }
        S::Custom(name, args) => {
            let n = name.to_string().to_ascii_uppercase();
            let p = args.first().and_then(|a| a.parse().ok());
            match n.as_str() {
                "STRING" => DataType::Utf8,
                "TIMESTAMP_LTZ" => DataType::Timestamp(ts_unit(p), Some("UTC".into())),
                "BYTES" => DataType::Binary,
                _ => return Err(format!("unknown type {t}")),
            }
        }
        other => return Err(format!("type {other} is not supported yet")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn ty(s: &str) -> Result<DataType, String> {
        let mut p = Parser::new(&GenericDialect {}).try_with_sql(s).unwrap();
        arrow_type(&p.parse_data_type().unwrap())
    }

    #[test]
    fn flink_types() {
        assert_eq!(ty("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(ty("STRING").unwrap(), DataType::Utf8);
        assert_eq!(ty("TIMESTAMP(3)").unwrap(), DataType::Timestamp(TimeUnit::Millisecond, None));
        assert_eq!(ty("TIMESTAMP_LTZ(3)").unwrap(), DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())));
        assert_eq!(ty("DECIMAL(10, 2)").unwrap(), DataType::Decimal128(10, 2));
        assert!(ty("INTERVAL").is_err());
        let row = ty("STRUCT<id BIGINT, `dateTime` TIMESTAMP(3), name VARCHAR>").unwrap();
        let DataType::Struct(fields) = row else { panic!("{row}") };
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "dateTime", "name"]);
        assert_eq!(fields[1].data_type(), &DataType::Timestamp(TimeUnit::Millisecond, None));
    }
}
