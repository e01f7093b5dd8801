//! Timestamps as the Flink Nexmark table writes them: `YYYY-MM-DD HH:MM:SS.mmm` (UTC).

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `ms` formatted as `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn write_timestamp(ms: i64, out: &mut String) {
    use std::fmt::Write;
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}", rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
}

pub fn format_timestamp(ms: i64) -> String {
    let mut s = String::with_capacity(23);
    write_timestamp(ms, &mut s);
    s
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff]` (also with `T` and a trailing `Z`).
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let bad = || format!("'{s}' is not a timestamp like 2015-07-15 00:00:01.000");
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T']).ok_or_else(bad)?;
    let mut dp = date.splitn(3, '-');
    let (y, m, d) = (dp.next().ok_or_else(bad)?, dp.next().ok_or_else(bad)?, dp.next().ok_or_else(bad)?);
    let (y, m, d): (i64, u32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut tp = hms.splitn(3, ':');
    let h: i64 = tp.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let mi: i64 = tp.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let se: i64 = tp.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    if h > 23 || mi > 59 || se > 60 || frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ms: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().map_err(|_| bad())?;
    Ok(days_from_civil(y, m, d) * 86_400_000 + h * 3_600_000 + mi * 60_000 + se * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_timestamp(1436918400000), "2015-07-15 00:00:00.000");
        assert_eq!(parse_timestamp("2015-07-15 00:00:01.5").unwrap(), 1436918401500);
        assert_eq!(parse_timestamp("2015-07-15T00:00:01.123Z").unwrap(), 1436918401123);
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999");
        assert!(parse_timestamp("2015-13-01 00:00:00").is_err());
        assert!(parse_timestamp("yesterday").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(ms in -62_135_596_800_000i64..253_402_300_799_999) {
            prop_assert_eq!(parse_timestamp(&format_timestamp(ms)).unwrap(), ms);
        }
    }
}
