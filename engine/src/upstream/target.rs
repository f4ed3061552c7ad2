//! Upstream endpoints: parsing a group's `upstreams` URLs and choosing one per attempt with
//! smooth weighted round-robin.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// One upstream base URL, parsed once per snapshot, with its addresses resolved off the shards.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The URL as configured (logged as `upstream_addr` with the request path appended).
    pub url: Box<str>,
    pub scheme: Scheme,
    pub host: Box<str>,
    pub port: u16,
    /// The value of the `Host` header: host, plus the port when it is not the scheme's default.
    pub authority: Box<str>,
    /// The URL's path without a trailing `/`; the client's path is appended to it.
    pub base_path: Box<str>,
    pub weight: u32,
    /// Resolved by the control plane; a shard never resolves a name.
    pub addrs: Box<[SocketAddr]>,
}

impl Upstream {
    /// Parses `http(s)://host[:port][/base]`; the error says what is wrong with the URL.
    pub fn parse(url: &str, weight: u32) -> Result<Self, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(format!(
                "upstream '{url}': must start with http:// or https://"
            ));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(format!(
                "upstream '{url}': a base URL cannot carry a query or fragment"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "upstream '{url}': credentials in the URL are not supported"
            ));
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| format!("upstream '{url}': invalid host or port"))?;
        Ok(Self {
            url: url.into(),
            scheme,
            host: host.into(),
            port,
            authority: authority.into(),
            base_path: path.trim_end_matches('/').into(),
            weight,
            addrs: Box::new([]),
        })
    }
}

pub(crate) fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        match &rest[end + 1..] {
            "" => (host, default_port),
            p => (host, p.strip_prefix(':')?.parse().ok()?),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default_port),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    (valid_host && port != 0).then_some((host, port))
}

/// A group's upstreams with a precomputed smooth weighted round-robin schedule.
///
/// Smooth WRR (nginx's algorithm) is stateful; instead of a lock around that state, the whole
/// period of the sequence is computed once per snapshot and a shared atomic counter walks it, so
/// every shard follows the same sequence with one atomic add per pick.
#[derive(Debug, Default)]
pub struct Upstreams {
    list: Box<[Upstream]>,
    /// Indices into `list`, one full period of the smooth WRR sequence. u16 indices: a group
    /// with more than 65,535 upstreams is not a thing.
    schedule: Box<[u16]>,
    next: AtomicUsize,
}

/// Longest schedule kept; weights are scaled down proportionally beyond it (4 KiB per group).
const MAX_SCHEDULE: u64 = 2048;

impl Upstreams {
    /// Upstreams with weight 0 are dropped, as in v1.
    pub fn new(list: Vec<Upstream>) -> Self {
        let list: Box<[Upstream]> = list.into_iter().filter(|u| u.weight > 0).collect();
        let schedule =
            smooth_wrr_schedule(&list.iter().map(|u| u.weight as u64).collect::<Vec<_>>());
        Self {
            list,
            schedule,
            next: AtomicUsize::new(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn list(&self) -> &[Upstream] {
        &self.list
    }

    /// The upstream for the next attempt.
    pub fn pick(&self) -> Option<&Upstream> {
        match self.list.len() {
            0 => None,
            1 => self.list.first(),
            _ => {
                let n = self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
                self.list.get(self.schedule[n] as usize)
            }
        }
    }
}

pub(crate) fn smooth_wrr_schedule(weights: &[u64]) -> Box<[u16]> {
    if weights.is_empty() {
        return Box::new([]);
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        weights = weights
            .iter()
            .map(|w| (w * MAX_SCHEDULE / total).max(1))
            .collect();
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += *w as i64;
            }
            let best = (0..current.len())
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .unwrap_or(0);
            current[best] -= total;
            best as u16
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Upstream::parse("https://api.openai.com", 1).unwrap();
        assert_eq!(
            (u.scheme, &*u.host, u.port, &*u.base_path),
            (Scheme::Https, "api.openai.com", 443, "")
        );
        let u = Upstream::parse("http://127.0.0.1:8080/base/", 1).unwrap();
        assert_eq!(
            (&*u.host, u.port, &*u.base_path, &*u.authority),
            ("127.0.0.1", 8080, "/base", "127.0.0.1:8080")
        );
        let u = Upstream::parse("http://[::1]:9/x", 1).unwrap();
        assert_eq!((&*u.host, u.port), ("::1", 9));
        for bad in [
            "ftp://x",
            "http://",
            "http://a:0",
            "http://a:b",
            "http://u:p@h",
            "https://h/?q=1",
            "http://a b",
        ] {
            assert!(Upstream::parse(bad, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn smooth_wrr_matches_nginx_sequence() {
        // nginx's documented example: weights 5,1,1 → a a b a c a a
        assert_eq!(&*smooth_wrr_schedule(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*smooth_wrr_schedule(&[2, 2]), &[0, 1]);
        let big = smooth_wrr_schedule(&[100_000, 1]);
        assert!(big.len() as u64 <= MAX_SCHEDULE + 1 && big.contains(&1));
    }

    #[test]
    fn zero_weight_upstreams_are_dropped() {
        let ups = Upstreams::new(vec![
            Upstream::parse("http://a", 0).unwrap(),
            Upstream::parse("http://b", 3).unwrap(),
        ]);
        assert_eq!(ups.list().len(), 1);
        assert_eq!(&*ups.pick().unwrap().host, "b");
    }
}
