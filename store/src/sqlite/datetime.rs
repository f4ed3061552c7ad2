//! Times as SQLite stores them: TEXT in GORM/glebarez's layout, read back leniently.
//!
//! GPT-Load v1 (GORM on the glebarez driver) writes `2025-09-01 12:00:00.123456789+08:00`: local
//! offset, fractional seconds with trailing zeros trimmed (or none at all). We write the same
//! layout in UTC with all nine digits, so our rows sort as text among themselves and v1 can still
//! read them. Reading accepts what any v1 build or a hand edit may have left: `T` or space,
//! 0–9+ fractional digits, `Z`, `±HH:MM`, `±HHMM`, `±HH` or no offset (UTC), a Go zone
//! abbreviation after the offset, a bare date, and integer Unix seconds. The parser is
//! hand-written and allocation-free because the first snapshot reads three times per key for a
//! million keys.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// The stored form of `t`: `YYYY-MM-DD HH:MM:SS.fffffffff+00:00`.
pub(crate) fn format(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return t.format("%Y-%m-%d %H:%M:%S%.9f+00:00").to_string();
    }
    // By hand: every request log row has a time, and chrono's formatter interprets its
    // pattern each call (a tenth of the log writer's time).
    let mut out = [0u8; 35];
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    // A leap second (nanoseconds past 1e9) prints as second 60, as chrono prints it.
    put(17, t.second() + t.nanosecond() / 1_000_000_000, 2);
    put(20, t.nanosecond() % 1_000_000_000, 9);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b' '),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        out[at] = sep;
    }
    out[29..].copy_from_slice(b"+00:00");
    // Digits and separators only, so never the empty fallback; checked rather than lossy,
    // which walks the bytes as chunks (a fifth of this function).
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// `t` with minutes, seconds and fraction dropped: the `group_hourly_stats.time` bucket, which
/// is stored like any other time.
pub(crate) fn truncate_to_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let hour_start = t.timestamp().div_euclid(3600) * 3600;
    // A whole-hour timestamp at or before a valid one is always in chrono's range.
    DateTime::from_timestamp(hour_start, 0).unwrap_or(t)
}

/// Parses any of the layouts listed in the module docs; `None` for anything else.
pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    parse_layout(text.as_bytes())
        .or_else(|| DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc()))
}

/// A Unix timestamp in seconds, as a driver that stores times as integers leaves them.
pub(crate) fn from_unix_seconds(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
}

fn parse_layout(b: &[u8]) -> Option<DateTime<Utc>> {
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(b, 0, 4)?).ok()?,
        digits(b, 5, 2)?,
        digits(b, 8, 2)?,
    )?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if b.len() == 10 {
        return Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?));
    }
    if !matches!(b.get(10), Some(b' ' | b'T' | b't')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (hour, minute) = (digits(b, 11, 2)?, digits(b, 14, 2)?);
    let (second, rest) = if b.get(16) == Some(&b':') {
        (digits(b, 17, 2)?, &b[19..])
    } else {
        (0, &b[16..])
    };
    let (nanos, rest) = fraction(rest);
    let offset = offset(rest)?;
    let local = NaiveDateTime::new(
        date,
        chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?,
    );
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.to_utc())
}

/// The number written in `len` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let field = b.get(at..at + len)?;
    field.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// Parses `.fffffffff` (any number of digits; past nine they are dropped) at the start of `b`.
fn fraction(b: &[u8]) -> (u32, &[u8]) {
    if b.first() != Some(&b'.') {
        return (0, b);
    }
    let count = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut nanos = 0u32;
    for i in 0..9 {
        let digit = if i < count {
            u32::from(b[1 + i] - b'0')
        } else {
            0
        };
        nanos = nanos * 10 + digit;
    }
    (nanos, &b[1 + count..])
}

/// Parses the zone suffix: nothing (UTC), `Z`, `±HH:MM`, `±HHMM` or `±HH`, optionally after a
/// space and optionally followed by a zone abbreviation (` CST`), which is ignored.
fn offset(b: &[u8]) -> Option<FixedOffset> {
    let b = trim_start(b);
    let (seconds, rest) = match b.first() {
        None => (0, b),
        Some(b'Z' | b'z') => (0, &b[1..]),
        Some(&sign @ (b'+' | b'-')) => {
            let hours = digits(b, 1, 2)?;
            let (minutes, used) = match b.get(3) {
                Some(b':') => (digits(b, 4, 2)?, 6),
                Some(c) if c.is_ascii_digit() => (digits(b, 3, 2)?, 5),
                _ => (0, 3),
            };
            let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            (if sign == b'-' { -seconds } else { seconds }, &b[used..])
        }
        Some(_) => return None,
    };
    let rest = trim_start(rest);
    if !rest.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    FixedOffset::east_opt(seconds)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let spaces = b.iter().take_while(|c| **c == b' ').count();
    &b[spaces..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_by_hand_matches_chrono() {
        let chrono = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S%.9f+00:00").to_string();
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .map(|t| Utc.from_utc_datetime(&t))
            .expect("leap second");
        let mut times = vec![
            leap,
            DateTime::from_timestamp(0, 0).expect("epoch"),
            DateTime::from_timestamp(1_764_151_200, 7).expect("t"),
            DateTime::from_timestamp(253_402_300_799, 999_999_999).expect("9999"),
            DateTime::from_timestamp(-62_000_000_000, 0).expect("year 5"),
            DateTime::from_timestamp(-70_000_000_000, 0).expect("before year 0"),
        ];
        times.extend((0..1000).map(|i| {
            DateTime::from_timestamp(1_700_000_000 + i * 7919 * 13, (i as u32) * 999_983)
                .expect("t")
        }));
        for t in times {
            assert_eq!(format(t), chrono(t));
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test input is RFC 3339")
            .to_utc()
    }

    #[test]
    fn reads_gorm_layout_with_offset() {
        assert_eq!(
            parse("2025-09-01 12:00:00.123456789+08:00"),
            Some(utc("2025-09-01T04:00:00.123456789Z"))
        );
    }

    #[test]
    fn reads_every_lenient_variant() {
        let want = utc("2025-09-01T12:00:00Z");
        for text in [
            "2025-09-01 12:00:00",
            "2025-09-01T12:00:00",
            "2025-09-01T12:00:00Z",
            "2025-09-01 12:00:00+00:00",
            "2025-09-01 12:00:00.000+00:00",
            "2025-09-01 14:00:00+0200",
            "2025-09-01 14:00:00 +02",
            "2025-09-01 07:00:00-05:00",
            "2025-09-01 20:00:00 +0800 CST",
            "  2025-09-01 12:00:00Z  ",
            "2025-09-01 12:00",
        ] {
            assert_eq!(parse(text), Some(want), "{text}");
        }
        assert_eq!(parse("2025-09-01"), Some(utc("2025-09-01T00:00:00Z")));
    }

    #[test]
    fn keeps_fraction_digits_in_place() {
        assert_eq!(
            parse("2025-09-01 12:00:00.5Z"),
            Some(utc("2025-09-01T12:00:00.5Z"))
        );
        assert_eq!(
            parse("2025-09-01 12:00:00.1234567891234Z"),
            Some(utc("2025-09-01T12:00:00.123456789Z"))
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for text in [
            "",
            "yesterday",
            "2025-13-01 00:00:00",
            "2025-09-01 25:00:00",
            "2025-09-01 12:00:00+99:00",
            "2025-09-01 12:00:00 garbage!",
            "2025-09-01X12:00:00",
            "２０２５-09-01",
            "2025-09-01 12:0",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn round_trips_our_own_format() {
        let t = utc("2025-09-01T04:05:06.000000007Z");
        assert_eq!(format(t), "2025-09-01 04:05:06.000000007+00:00");
        assert_eq!(parse(&format(t)), Some(t));
    }

    #[test]
    fn buckets_by_utc_hour() {
        let t = utc("2025-09-01T04:59:59.999Z");
        assert_eq!(
            format(truncate_to_hour(t)),
            "2025-09-01 04:00:00.000000000+00:00"
        );
        let before_epoch = utc("1969-12-31T23:30:00Z");
        assert_eq!(truncate_to_hour(before_epoch), utc("1969-12-31T23:00:00Z"));
    }
}
