//! Writing text into reused byte buffers without allocating: the `put!` macro and JSON string
//! escaping.

use std::fmt;

/// `write!` into a `Vec<u8>`, which cannot fail: `Vec`'s `io::Write` only grows the vector.
macro_rules! put {
    ($buf:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _cannot_fail = $buf.write_fmt(format_args!($($arg)*));
    }};
}

/// Displays a string as a quoted JSON string literal, escaping as RFC 8259 requires.
pub(crate) struct JsonStr<'a>(pub(crate) &'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let mut plain_from = 0;
        for (at, c) in self.0.char_indices() {
            let escaped = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if c < ' ' => "",
                _ => continue,
            };
            f.write_str(&self.0[plain_from..at])?;
            match escaped {
                "" => write!(f, "\\u{:04x}", c as u32)?,
                escaped => f.write_str(escaped)?,
            }
            plain_from = at + c.len_utf8();
        }
        f.write_str(&self.0[plain_from..])?;
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::JsonStr;

    #[test]
    fn json_strings_round_trip_through_serde() {
        for text in [
            "plain",
            "quote\" back\\slash",
            "line\nbreak\ttab\u{1}\u{1f}",
            "ünï😀",
        ] {
            let written = JsonStr(text).to_string();
            let parsed: String = serde_json::from_str(&written).unwrap();
            assert_eq!(parsed, text);
        }
    }
}
