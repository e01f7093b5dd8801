//! Partition directories as Flink names them: `k1=v1/k2=v2`, values escaped
//! (`%XX` for `/`, `:`, `=`, `%`, ... so that a value is one path segment), nulls in
//! `__DEFAULT_PARTITION__`; and the partition's time from its values
//! (`partition.time-extractor.timestamp-pattern`, e.g. `'$dt $hm:00'`).

/// Flink's name of the partition of a null value.
pub const DEFAULT_PARTITION: &str = "__DEFAULT_PARTITION__";

/// Whether Flink escapes `c` in a partition value.
fn needs_escape(c: char) -> bool {
    (c as u32) < 0x20 || matches!(c, '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '\u{7f}' | '{' | '[' | ']' | '^')
}

/// A partition value as one path segment (Flink's `PartitionPathUtils.escapePathName`).
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if needs_escape(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The directory of a partition: `k1=v1/k2=v2` (values `None`: null).
pub fn path(names: &[String], values: &[Option<String>]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{}={}", escape(n), v.as_deref().map_or_else(|| DEFAULT_PARTITION.to_string(), escape)))
        .collect::<Vec<_>>()
        .join("/")
}

/// Checks that every `$name` of `pattern` is a partition column.
pub fn check_pattern(pattern: &str, names: &[String]) -> Result<(), String> {
    let mut rest = pattern;
    let mut any = false;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        let n: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !names.iter().any(|p| *p == n) {
            return Err(format!("'${n}' is not a partition column (partition columns: {})", names.join(", ")));
        }
        any = true;
        rest = &after[n.len()..];
    }
    if !any {
        return Err("the pattern names no partition column ($column)".into());
    }
    Ok(())
}

/// The pattern with each `$name` replaced by its partition value (longest names first).
fn fill(pattern: &str, names: &[String], values: &[Option<String>]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let n: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let at = names.iter().position(|p| *p == n).ok_or_else(|| format!("'${n}' is not a partition column"))?;
        match &values[at] {
            Some(v) => out.push_str(v),
            None => return Err(format!("partition column '{n}' is null")),
        }
        rest = &after[n.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The partition's time (UTC milliseconds) from its values: the pattern filled in,
/// read as `yyyy-MM-dd HH:mm:ss[.SSS]` or `yyyy-MM-dd`.
pub fn time(pattern: &str, names: &[String], values: &[Option<String>]) -> Result<i64, String> {
    let s = fill(pattern, names, values)?;
    arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s.trim())
        .map(|ns| ns.div_euclid(1_000_000))
        .map_err(|_| format!("partition time '{s}' (from the pattern '{pattern}') is not a timestamp 'yyyy-MM-dd HH:mm:ss' or a date 'yyyy-MM-dd'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["dt".into(), "hm".into()]
    }

    #[test]
    fn paths_escape_values_as_flink_does() {
        assert_eq!(path(&names(), &[Some("2015-07-15".into()), Some("10:15".into())]), "dt=2015-07-15/hm=10%3A15");
        assert_eq!(path(&names(), &[None, Some("a/b=c%".into())]), "dt=__DEFAULT_PARTITION__/hm=a%2Fb%3Dc%25");
    }

    #[test]
    fn partition_time_from_the_pattern() {
        let v = [Some("2015-07-15".to_string()), Some("10:15".to_string())];
        assert_eq!(time("$dt $hm:00", &names(), &v).unwrap(), 1436955300000);
        assert_eq!(time("$dt", &names(), &v).unwrap(), 1436918400000);
        assert!(time("$hm", &names(), &v).unwrap_err().contains("'10:15'"));
        assert!(time("$dt", &names(), &[None, None]).unwrap_err().contains("null"));
        assert!(check_pattern("$dt $hour", &names()).unwrap_err().contains("$hour"));
        assert!(check_pattern("$dt $hm:00", &names()).is_ok());
    }
}
