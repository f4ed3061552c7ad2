//! CORS (off by default, as v1) and the security headers v1 sends on every route (§7). The
//! engine writes every response head, proxied or relayed, so both are added in one place:
//! `Client::finish_head`.

/// v1's security headers, sent on every response.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    (
        "Permissions-Policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ),
    ("X-Frame-Options", "SAMEORIGIN"),
];

/// [`SECURITY_HEADERS`] as the header lines every response carries, written out once: they are
/// constants, and sanitising them for every response was 3% of a proxied request.
pub static SECURITY_HEADER_LINES: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut lines = Vec::new();
    for (name, value) in SECURITY_HEADERS {
        crate::http::write_header(&mut lines, name, value.as_bytes());
    }
    lines
});

/// ENABLE_CORS and friends, read at start.
#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    /// Allowed origins; `*` allows any (the request's origin is echoed, as v1 does).
    pub origins: Vec<String>,
    pub methods: String,
    pub headers: String,
    pub credentials: bool,
}

impl CorsConfig {
    /// The origin to echo for a request's `Origin`, when it is allowed.
    pub fn allow(&self, origin: Option<&[u8]>) -> Option<Box<str>> {
        let origin = std::str::from_utf8(origin?).ok()?.trim();
        if origin.is_empty() {
            return None;
        }
        self.origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
            .then(|| origin.into())
    }
}

/// Whether an upstream or control-plane response header is one we set ourselves (ours win).
pub fn is_ours(name: &str, cors_active: bool) -> bool {
    SECURITY_HEADERS
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
        || (cors_active && name.len() > 12 && name[..12].eq_ignore_ascii_case("access-contr"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_and_echoed() {
        let cors = CorsConfig {
            origins: vec!["https://a.example".into()],
            ..Default::default()
        };
        assert_eq!(
            cors.allow(Some(b"https://a.example")).as_deref(),
            Some("https://a.example")
        );
        assert!(cors.allow(Some(b"https://b.example")).is_none());
        assert!(cors.allow(None).is_none());
        let any = CorsConfig {
            origins: vec!["*".into()],
            ..Default::default()
        };
        assert_eq!(
            any.allow(Some(b"https://b.example")).as_deref(),
            Some("https://b.example")
        );
        assert!(
            is_ours("access-control-allow-origin", true)
                && !is_ours("access-control-allow-origin", false)
        );
        assert!(is_ours("x-frame-options", false));
    }
}
