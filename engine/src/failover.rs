//! The `failover_status_codes` grammar (GPT-Load v1.4.7): which upstream statuses make an
//! attempt count as failed, penalise its key and move on to the next key.
//!
//! A spec is a list of single codes and inclusive ranges separated by commas or newlines, each
//! within 100–999, e.g. `400-403,405-999`. Parsing merges the ranges once, so a lookup on the
//! request path is a binary search over a handful of ranges.

use std::fmt;

/// The v1 default: every 4xx and 5xx except 404.
pub const DEFAULT_FAILOVER_CODES: &str = "400-403,405-999";

/// A compiled, merged set of status ranges.
#[derive(Clone, PartialEq, Eq)]
pub struct FailoverCodes {
    /// Sorted, non-overlapping, non-adjacent inclusive ranges.
    ranges: Box<[(u16, u16)]>,
}

/// What is wrong with a failover spec; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverSpecError(pub String);

impl fmt::Display for FailoverSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FailoverSpecError {}

impl FailoverCodes {
    /// Parses a spec. An empty spec (only separators and spaces) is an error, as in v1.
    pub fn parse(spec: &str) -> Result<Self, FailoverSpecError> {
        let mut ranges = Vec::new();
        for part in spec.split([',', '\n', '\r']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            ranges.push(parse_part(part)?);
        }
        if ranges.is_empty() {
            return Err(FailoverSpecError(
                "failover status codes: no code given (expected e.g. 400-403,405-999)".into(),
            ));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Ok(Self {
            ranges: merged.into_boxed_slice(),
        })
    }

    /// Whether `status` triggers failover.
    pub fn contains(&self, status: u16) -> bool {
        self.ranges
            .binary_search_by(|&(lo, hi)| {
                if hi < status {
                    std::cmp::Ordering::Less
                } else if lo > status {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

impl Default for FailoverCodes {
    fn default() -> Self {
        Self {
            ranges: Box::new([(400, 403), (405, 999)]),
        }
    }
}

impl fmt::Debug for FailoverCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        write!(f, "FailoverCodes({})", parts.join(","))
    }
}

fn parse_part(part: &str) -> Result<(u16, u16), FailoverSpecError> {
    let (lo, hi) = match part.split_once('-') {
        Some((lo, hi)) => (parse_code(lo.trim(), part)?, parse_code(hi.trim(), part)?),
        None => {
            let code = parse_code(part, part)?;
            (code, code)
        }
    };
    if lo > hi {
        return Err(FailoverSpecError(format!(
            "failover status codes: range '{part}' starts after it ends"
        )));
    }
    Ok((lo, hi))
}

fn parse_code(text: &str, part: &str) -> Result<u16, FailoverSpecError> {
    let valid = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(code) if valid && (100..=999).contains(&code) => Ok(code),
        _ => Err(FailoverSpecError(format!(
            "failover status codes: '{part}' is not a status code or range within 100-999"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_excludes_404_only() {
        let codes = FailoverCodes::parse(DEFAULT_FAILOVER_CODES).unwrap();
        assert_eq!(codes, FailoverCodes::default());
        assert!(codes.contains(400) && codes.contains(403) && codes.contains(405));
        assert!(codes.contains(429) && codes.contains(500) && codes.contains(999));
        assert!(!codes.contains(404) && !codes.contains(200) && !codes.contains(399));
    }

    #[test]
    fn singles_ranges_newlines_and_overlaps_merge() {
        let codes = FailoverCodes::parse(" 429 \n500-503, 502-504\r\n401").unwrap();
        assert_eq!(format!("{codes:?}"), "FailoverCodes(401,429,500-504)");
        assert!(codes.contains(504) && !codes.contains(505) && !codes.contains(400));
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "", " , ", "99", "1000", "abc", "500-400", "4x9", "+429", "400-", "-5",
        ] {
            assert!(
                FailoverCodes::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
