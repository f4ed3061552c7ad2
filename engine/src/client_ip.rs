//! The client's address for logs and `${CLIENT_IP}`: the peer, or what trusted proxies in front
//! of us say in `X-Forwarded-For` / `X-Real-IP`. v1 trusts anyone's `X-Forwarded-For`, which lets
//! a client forge its logged address; here only TRUSTED_PROXIES (default: loopback) are believed.

use std::net::IpAddr;

/// An address range (`10.0.0.0/8`, `::1/128`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`; the error names the bad entry.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("'{text}' is not an IP address or CIDR range");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (text.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are treated as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `ip` as `Display` writes it, without going through `fmt` for the IPv4 addresses nearly every
/// request logs (`to_string` was the costliest step of routing a request).
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (n, octet) in v4.octets().into_iter().enumerate() {
        if n > 0 {
            text.push('.');
        }
        text.push_str(itoa::Buffer::new().format(octet));
    }
    text
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = (prefix / 8) as usize;
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// The default TRUSTED_PROXIES: loopback only (a reverse proxy on the same host).
pub fn default_trusted() -> Vec<Cidr> {
    vec![
        Cidr {
            addr: IpAddr::V4([127, 0, 0, 0].into()),
            prefix: 8,
        },
        Cidr {
            addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ]
}

/// The client address: walking `X-Forwarded-For` from the right, the first hop that is not a
/// trusted proxy; then `X-Real-IP`; else the peer. Headers count only when the peer is trusted.
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&[u8]>,
    real_ip: Option<&[u8]>,
    trusted: &[Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return canonical(peer);
    }
    if let Some(list) = forwarded_for.and_then(|v| std::str::from_utf8(v).ok()) {
        let hops: Vec<IpAddr> = list
            .split(',')
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        if let Some(ip) = hops
            .iter()
            .rev()
            .find(|ip| !is_trusted(**ip))
            .or(hops.first())
        {
            return canonical(*ip);
        }
    }
    real_ip
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .map_or(canonical(peer), canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.0.2.5",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let parsed = ip(text);
            assert_eq!(ip_text(parsed), parsed.to_string());
            assert_eq!(ip_text(parsed), text);
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")) && !net.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("127.0.0.0/8")
                .unwrap()
                .contains(ip("::ffff:127.0.0.9"))
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("nope").is_err());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted = default_trusted();
        let xff: &[u8] = b"203.0.113.7, 127.0.0.1";
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some(xff), None, &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("198.51.100.1"), Some(xff), None, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), None, Some(b"192.0.2.5"), &trusted),
            ip("192.0.2.5")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some(b"garbage"), None, &trusted),
            ip("127.0.0.1")
        );
        let spoofed: &[u8] = b"1.1.1.1, 203.0.113.7";
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some(spoofed), None, &trusted),
            ip("203.0.113.7")
        );
    }
}
