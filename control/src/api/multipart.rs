//! `multipart/form-data` (RFC 7578) over a body already in memory, for the key file upload of
//! `add-async`. The engine hands us whole bodies, so the parts are slices of it: a 50 MB key
//! file is never copied here.
//!
//! Not a general parser: no nested multiparts and no `Content-Transfer-Encoding` (browsers, curl
//! and axios send neither); only the `name` and `filename` of each part are read.

use memchr::memmem;

/// One form field or file.
#[derive(Debug)]
pub struct Part<'a> {
    pub name: String,
    /// Present for a file.
    pub filename: Option<String>,
    pub data: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type; `None` for any other type.
pub fn boundary(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|b| !b.is_empty())
}

/// Every part of `body`, in order.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, &'static str> {
    let delimiter = format!("--{boundary}");
    // Between parts the delimiter follows a line break, which belongs to it, not to the data.
    let next_delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(next_delimiter.as_bytes());
    let start = memmem::find(body, delimiter.as_bytes()).ok_or("no boundary in the body")?;
    let mut at = start + delimiter.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let rest = skip_line_end(rest).ok_or("no line break after a boundary")?;
        let head_end = memmem::find(rest, b"\r\n\r\n").ok_or("a part has no end of headers")?;
        let (name, filename) = disposition(&rest[..head_end])?;
        let data_start = head_end + 4;
        let data_len = finder
            .find(&rest[data_start..])
            .ok_or("the last boundary is missing")?;
        parts.push(Part {
            name,
            filename,
            data: &rest[data_start..data_start + data_len],
        });
        let consumed = body.len() - rest.len();
        at = consumed + data_start + data_len + next_delimiter.len();
    }
}

/// After a boundary: optional whitespace, then CRLF (or a bare LF).
fn skip_line_end(rest: &[u8]) -> Option<&[u8]> {
    let trimmed = rest.trim_ascii_start();
    let skipped = rest.len() - trimmed.len();
    let line = &rest[..skipped];
    line.ends_with(b"\n").then_some(trimmed)
}

/// `name` and `filename` of a part's `Content-Disposition: form-data` header.
fn disposition(head: &[u8]) -> Result<(String, Option<String>), &'static str> {
    let head = std::str::from_utf8(head).map_err(|_| "part headers are not UTF-8")?;
    let value = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-disposition"))
        .map(|(_, value)| value)
        .ok_or("a part has no Content-Disposition")?;
    let params = parameters(value);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let name = get("name").ok_or("a part has no name")?;
    Ok((name, get("filename")))
}

/// `; key=value` parameters of a header value; quoted values may hold `;` and `\"`.
fn parameters(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(semi) = rest.find(';') {
        rest = &rest[semi + 1..];
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let (val, remaining) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            }
        };
        out.push((key.trim().to_string(), val));
        rest = remaining;
    }
    out
}

/// The quoted string at the start of `text` (its opening quote already taken) and what follows.
fn unquote(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &text[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_boundary_of_form_data_only() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----abc"),
            Some("----abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; Boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn splits_fields_and_files() {
        let body = b"preamble\r\n--B\r\nContent-Disposition: form-data; name=\"group_id\"\r\n\r\n\
            12\r\n--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a;\\\"b\\\".txt\"\r\n\
            Content-Type: text/plain\r\n\r\nk1\r\nk2\r\n\r\n--B--\r\n";
        let parts = parse(body, "B").expect("parsed");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].data),
            ("group_id", &b"12"[..])
        );
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].filename.as_deref(), Some("a;\"b\".txt"));
        assert_eq!(parts[1].data, b"k1\r\nk2\r\n");
    }

    #[test]
    fn an_empty_file_and_broken_forms() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"e.txt\"\r\n\r\n\r\n--B--";
        let parts = parse(body, "B").expect("parsed");
        assert!(parts[0].data.is_empty());
        assert!(parse(b"no boundary here", "B").is_err());
        assert!(
            parse(
                b"--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ndata",
                "B"
            )
            .is_err()
        );
        assert!(parse(b"--B\r\nX: y\r\n\r\ndata\r\n--B--", "B").is_err());
    }
}
