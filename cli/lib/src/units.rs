//! Times and sizes as Docker prints them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now (or `SOURCE_DATE_EPOCH` when `reproducible` and it is set).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `SOURCE_DATE_EPOCH`, if set to a valid number.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

/// Formats seconds since the epoch as RFC 3339 UTC: `2026-11-22T23:32:32Z`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Formats now with nanoseconds, as Docker stamps log lines: `2026-11-22T23:32:32.123456789Z`.
pub fn rfc3339_nanos_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let base = rfc3339(d.as_secs() as i64);
    format!("{}.{:09}Z", base.trim_end_matches('Z'), d.subsec_nanos())
}

/// Parses an RFC 3339 time (any offset, optional fraction) to seconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        rest = &r[end..];
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let oh: i64 = o.get(1..3)?.parse().ok()?;
            let om: i64 = o.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Docker's `units.HumanDuration`: `About a minute`, `3 hours`, `2 weeks`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0).round() as i64;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// `N units ago` for an RFC 3339 time, or `N/A` when it cannot be read.
pub fn ago(created: Option<&str>) -> String {
    match created.and_then(parse_rfc3339) {
        Some(t) => format!("{} ago", human_duration(now_unix() - t)),
        None => "N/A".into(),
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`, as `images` and `history` print sizes.
pub fn human_size(bytes: u64) -> String {
    human_size_precision(bytes, 3)
}

/// Docker's `units.HumanSize` (4 significant digits), as `system df` prints sizes.
pub fn human_size4(bytes: u64) -> String {
    human_size_precision(bytes, 4)
}

/// Decimal units with `precision` significant digits, trailing zeros removed (Go's `%.*g`).
pub fn human_size_precision(bytes: u64, precision: i32) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", format_g(v, precision), UNITS[i])
}

/// Go's `%.*g` for values below 1000: `precision` significant digits, trailing zeros removed.
fn format_g(v: f64, precision: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits_before = v.abs().log10().floor() as i32 + 1;
    let decimals = (precision - digits_before).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    // Rounding can carry into a fourth digit (999.5 → "1000"); Go then prints 1e+03, which
    // never happens here because the caller divides by 1000 first.
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_768_058_126), "2026-01-10T15:15:26Z");
        assert_eq!(parse_rfc3339("2026-01-10T15:15:26Z"), Some(1_768_058_126));
        assert_eq!(
            parse_rfc3339("2026-01-10T16:15:26.123+01:00"),
            Some(1_768_058_126)
        );
        assert_eq!(parse_rfc3339("junk"), None);
    }

    #[test]
    fn sizes_and_durations_match_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(18), "18B");
        assert_eq!(human_size(6_890_000), "6.89MB");
        assert_eq!(human_size(1_169_000_000), "1.17GB");
        assert_eq!(human_size(2_404), "2.4kB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size4(2_404), "2.404kB");
        assert_eq!(human_size4(1_169_000_000), "1.169GB");
        assert_eq!(human_duration(48), "48 seconds");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(5 * 365 * 86400), "5 years");
    }
}
