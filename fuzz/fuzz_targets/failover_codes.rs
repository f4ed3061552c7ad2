//! `FailoverCodes::parse` against a naive model of the `failover_status_codes` grammar.
//!
//! The engine parses once and merges ranges for a binary search; the model below reads the
//! grammar literally (split on separators, trim, one code or `lo-hi` within 100–999) into a
//! table of 1001 booleans. Any input must parse in both or in neither, and when it parses the
//! two must agree on every status from 0 to 1000.

#![no_main]

use engine::failover::FailoverCodes;
use libfuzzer_sys::fuzz_target;

/// Statuses the table covers: every three-digit code plus the first ones outside on each side.
const CHECKED: usize = 1001;

fuzz_target!(|data: &[u8]| {
    // The spec is a setting edited as text; non-UTF-8 never reaches the parser.
    let Ok(spec) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = FailoverCodes::parse(spec);
    let model = naive_parse(spec);
    match (&parsed, &model) {
        (Ok(codes), Some(table)) => {
            for (status, &expected) in (0u16..).zip(table.iter()) {
                assert_eq!(
                    codes.contains(status),
                    expected,
                    "{spec:?}: status {status}, parsed as {codes:?}"
                );
            }
            assert!(!codes.contains(u16::MAX), "{spec:?} contains 65535");
        }
        (Err(_), None) => {}
        _ => panic!(
            "{spec:?}: engine says {parsed:?}, model says {}",
            if model.is_some() { "valid" } else { "invalid" }
        ),
    }
});

/// The grammar read literally: `None` when the spec is invalid or names no code.
fn naive_parse(spec: &str) -> Option<[bool; CHECKED]> {
    let mut table = [false; CHECKED];
    let mut any = false;
    for item in spec.split([',', '\n', '\r']) {
        let item = trim_whitespace(item);
        if item.is_empty() {
            continue;
        }
        let (lo, hi) = match item.find('-') {
            Some(dash) => (
                naive_code(trim_whitespace(&item[..dash]))?,
                naive_code(trim_whitespace(&item[dash + 1..]))?,
            ),
            None => {
                let code = naive_code(item)?;
                (code, code)
            }
        };
        if lo > hi {
            return None;
        }
        for slot in &mut table[lo..=hi] {
            *slot = true;
        }
        any = true;
    }
    any.then_some(table)
}

/// One to three ASCII digits with a value in 100–999, digit by digit.
fn naive_code(text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 3 {
        return None;
    }
    let mut value = 0;
    for b in text.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + usize::from(b - b'0');
    }
    (100..=999).contains(&value).then_some(value)
}

/// Leading and trailing whitespace (Unicode `White_Space`) removed, char by char.
fn trim_whitespace(text: &str) -> &str {
    let start = text
        .char_indices()
        .find(|(_, c)| !c.is_whitespace())
        .map_or(text.len(), |(i, _)| i);
    let end = text
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_whitespace())
        .map_or(start, |(i, c)| i + c.len_utf8());
    &text[start..end]
}
