//! Reading one column of a row whatever SQLite actually holds there.
//!
//! SQLite columns have affinities, not types: a v1 database may hold NULL in a nullable column,
//! `'1'` where GORM wrote `1`, a float where an integer belongs, or text that is not UTF-8. Every
//! reader here returns a value for every input (NULL → `""`, `0`, `false`, `None`) instead of an
//! error, so one odd row never stops the proxy from starting. Reading borrows the column; the
//! only allocation is the `String` a text field ends up in.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::ValueRef;

use super::datetime;

fn value<'r>(row: &'r Row<'_>, idx: usize) -> ValueRef<'r> {
    // `get_ref` fails only for an index past the SELECT list, which the callers' fixed column
    // lists rule out; reading it as NULL keeps even that case from panicking.
    row.get_ref(idx).unwrap_or(ValueRef::Null)
}

/// A text column; numbers are rendered, invalid UTF-8 is replaced, NULL is `""`.
pub(super) fn text(row: &Row<'_>, idx: usize) -> String {
    match value(row, idx) {
        ValueRef::Null => String::new(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}

/// A text column that reads as `fallback` when NULL or empty.
pub(super) fn text_or(row: &Row<'_>, idx: usize, fallback: &str) -> String {
    let found = text(row, idx);
    if found.is_empty() {
        fallback.to_owned()
    } else {
        found
    }
}

/// An integer column; reals are truncated, numeric text is parsed, anything else is 0.
pub(super) fn int(row: &Row<'_>, idx: usize) -> i64 {
    match value(row, idx) {
        ValueRef::Integer(n) => n,
        // `as` saturates (and maps NaN to 0), which is what a lenient read wants.
        ValueRef::Real(f) => f as i64,
        ValueRef::Text(bytes) => parse_int(bytes),
        ValueRef::Null | ValueRef::Blob(_) => 0,
    }
}

fn parse_int(bytes: &[u8]) -> i64 {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return 0;
    };
    let text = text.trim();
    text.parse::<i64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
        .unwrap_or(0)
}

/// A boolean column: GORM writes 0/1; `true`/`t`/`yes` and any non-zero number also read true.
pub(super) fn flag(row: &Row<'_>, idx: usize) -> bool {
    match value(row, idx) {
        ValueRef::Integer(n) => n != 0,
        ValueRef::Real(f) => f != 0.0,
        ValueRef::Text(bytes) => {
            let word = std::str::from_utf8(bytes).unwrap_or("").trim();
            ["true", "t", "yes", "y", "on"]
                .iter()
                .any(|yes| word.eq_ignore_ascii_case(yes))
                || parse_int(bytes) != 0
        }
        ValueRef::Null | ValueRef::Blob(_) => false,
    }
}

/// A nullable time column; NULL and unparseable values are `None`.
pub(super) fn time_opt(row: &Row<'_>, idx: usize) -> Option<DateTime<Utc>> {
    match value(row, idx) {
        ValueRef::Text(bytes) => datetime::parse(std::str::from_utf8(bytes).ok()?),
        ValueRef::Integer(seconds) => datetime::from_unix_seconds(seconds),
        ValueRef::Real(seconds) => datetime::from_unix_seconds(seconds as i64),
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
}

/// A time column the model requires; NULL or garbage reads as the Unix epoch.
pub(super) fn time(row: &Row<'_>, idx: usize) -> DateTime<Utc> {
    time_opt(row, idx).unwrap_or(DateTime::UNIX_EPOCH)
}
