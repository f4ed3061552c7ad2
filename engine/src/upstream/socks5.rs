//! The client side of SOCKS5 (RFC 1928) with no authentication or username/password (RFC 1929):
//! message encoding, reply decoding, and the handshake that turns a TCP connection to the proxy
//! into a tunnel to the upstream. Errors are plain text; the caller names the proxy.

use std::net::SocketAddr;

use super::Conn;
use super::proxy::ProxyServer;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NO_ACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_V6: u8 = 4;

/// Where the proxy should connect: a name it resolves (`socks5h`) or an address we resolved.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    Name(&'a str, u16),
    Addr(SocketAddr),
}

/// The method-selection message: no-auth, plus username/password when we have credentials.
pub fn greeting(with_password: bool) -> Vec<u8> {
    if with_password {
        vec![VERSION, 2, NO_AUTH, USER_PASS]
    } else {
        vec![VERSION, 1, NO_AUTH]
    }
}

/// RFC 1929's request; each field is at most 255 bytes (checked when the URL was parsed).
pub fn password_request(user: &str, pass: &str) -> Vec<u8> {
    let (user, pass) = (user.as_bytes(), pass.as_bytes());
    let mut out = Vec::with_capacity(3 + user.len() + pass.len());
    out.extend_from_slice(&[1, user.len().min(255) as u8]);
    out.extend_from_slice(&user[..user.len().min(255)]);
    out.push(pass.len().min(255) as u8);
    out.extend_from_slice(&pass[..pass.len().min(255)]);
    out
}

/// The CONNECT request for `dest`.
pub fn connect_request(dest: Destination<'_>) -> Result<Vec<u8>, String> {
    let mut out = vec![VERSION, CMD_CONNECT, 0];
    let port = match dest {
        Destination::Name(name, port) => {
            if name.is_empty() || name.len() > 255 {
                return Err(format!(
                    "host name '{name}' cannot be sent over SOCKS5 (1 to 255 bytes)"
                ));
            }
            out.extend_from_slice(&[ATYP_NAME, name.len() as u8]);
            out.extend_from_slice(name.as_bytes());
            port
        }
        Destination::Addr(SocketAddr::V4(a)) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Destination::Addr(SocketAddr::V6(a)) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
    };
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// The length of the CONNECT reply at the start of `buf`, once enough of it is there to know
/// (its bound address is variable-length); an error for a reply that is not SOCKS5.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(format!("not a SOCKS5 reply (version byte {})", buf[0]));
    }
    let addr_len = match buf[3] {
        ATYP_V4 => 4,
        ATYP_V6 => 16,
        ATYP_NAME => 1 + buf[4] as usize,
        other => return Err(format!("reply with unknown address type {other}")),
    };
    Ok(Some(4 + addr_len + 2))
}

/// RFC 1928 §6's reply codes.
pub fn reply_error(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown SOCKS error",
    }
}

/// Runs the handshake on `conn` (a fresh TCP connection to `proxy`); afterwards `conn` is a
/// tunnel to `dest`.
pub async fn handshake(
    conn: &mut Conn,
    proxy: &ProxyServer,
    dest: Destination<'_>,
) -> Result<(), String> {
    let credentials = proxy.credentials.as_ref();
    write(conn, greeting(credentials.is_some())).await?;
    let choice = read_exact(conn, 2).await?;
    if choice[0] != VERSION {
        return Err(format!("not a SOCKS5 proxy (version byte {})", choice[0]));
    }
    match (choice[1], credentials) {
        (NO_AUTH, _) => {}
        (USER_PASS, Some((user, pass))) => {
            write(conn, password_request(user, pass)).await?;
            let status = read_exact(conn, 2).await?;
            if status[1] != 0 {
                return Err("the proxy rejected the user name or password".into());
            }
        }
        (NO_ACCEPTABLE, None) | (USER_PASS, None) => {
            return Err("the proxy requires authentication; put user:password in the URL".into());
        }
        (NO_ACCEPTABLE, Some(_)) => {
            return Err("the proxy accepts no offered authentication method".into());
        }
        (other, _) => return Err(format!("the proxy chose unknown method {other}")),
    }
    write(conn, connect_request(dest)?).await?;
    let len = loop {
        if let Some(len) = reply_len(&conn.buf)? {
            break len;
        }
        fill(conn, conn.buf.len() + 1).await?;
    };
    let reply = read_exact(conn, len).await?;
    match reply[1] {
        0 => Ok(()),
        code => Err(format!(
            "CONNECT failed: {} (code {code})",
            reply_error(code)
        )),
    }
}

async fn write(conn: &mut Conn, bytes: Vec<u8>) -> Result<(), String> {
    conn.write_all(bytes)
        .await
        .map_err(|e| format!("write to the proxy: {e}"))
}

/// Reads until `conn.buf` holds at least `n` bytes.
async fn fill(conn: &mut Conn, n: usize) -> Result<(), String> {
    while conn.buf.len() < n {
        match conn.read_more().await {
            Ok(0) => return Err("the proxy closed the connection during the handshake".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read from the proxy: {e}")),
        }
    }
    Ok(())
}

/// Takes exactly `n` bytes off the front of the connection's buffer.
async fn read_exact(conn: &mut Conn, n: usize) -> Result<Vec<u8>, String> {
    fill(conn, n).await?;
    Ok(conn.buf.drain(..n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_offers_password_only_with_credentials() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
    }

    #[test]
    fn password_request_is_rfc1929() {
        assert_eq!(
            password_request("bob", "pw"),
            [1, 3, b'b', b'o', b'b', 2, b'p', b'w']
        );
        assert_eq!(password_request("u", ""), [1, 1, b'u', 0]);
    }

    #[test]
    fn connect_requests_by_name_and_address() {
        assert_eq!(
            connect_request(Destination::Name("a.io", 443)).unwrap(),
            [5, 1, 0, 3, 4, b'a', b'.', b'i', b'o', 1, 187]
        );
        assert_eq!(
            connect_request(Destination::Addr("10.0.0.2:80".parse().unwrap())).unwrap(),
            [5, 1, 0, 1, 10, 0, 0, 2, 0, 80]
        );
        let v6 = connect_request(Destination::Addr("[::1]:8080".parse().unwrap())).unwrap();
        assert_eq!(
            (v6[3], v6.len(), v6[19], &v6[20..]),
            (4, 22, 1, &[0x1f, 0x90][..])
        );
        let long = "a".repeat(256);
        assert!(connect_request(Destination::Name(&long, 1)).is_err());
    }

    #[test]
    fn reply_lengths() {
        assert_eq!(reply_len(&[5, 0, 0, 1]).unwrap(), None);
        assert_eq!(reply_len(&[5, 0, 0, 1, 0]).unwrap(), Some(10));
        assert_eq!(reply_len(&[5, 0, 0, 4, 0]).unwrap(), Some(22));
        assert_eq!(reply_len(&[5, 0, 0, 3, 7]).unwrap(), Some(4 + 8 + 2));
        assert!(reply_len(&[4, 0, 0, 1, 0]).is_err());
        assert!(reply_len(&[5, 0, 0, 9, 0]).is_err());
        assert_eq!(reply_error(5), "connection refused");
    }
}
