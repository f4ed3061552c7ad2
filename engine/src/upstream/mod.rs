//! Talking to upstreams: connections (direct or through an outbound proxy), the per-shard pool,
//! one HTTP/1.1 exchange (send a request, read the response head, read the body as it arrives),
//! and `send`, which puts them together and follows redirects.

pub mod conn;
pub mod exchange;
pub mod pool;
pub mod proxy;
pub mod redirect;
pub mod resolve;
pub mod send;
pub mod socks5;
pub mod target;

pub use conn::Conn;
pub use exchange::{BodyReader, exchange_head, read_response_head};
pub use pool::Pool;
pub use proxy::OutboundProxy;
pub use send::{SendOptions, send};
pub use target::{Scheme, Upstream, Upstreams};

use std::fmt;

/// Why an exchange with an upstream failed. Messages follow Go's net errors where v1 users
/// know them ("dial tcp …: connection refused").
#[derive(Debug, Clone)]
pub enum UpstreamError {
    Connect(String),
    Timeout(&'static str),
    Io(String),
    /// The connection closed before a complete response head; `reused` says whether it was a
    /// pooled connection (then one retry on a fresh connection is safe).
    ClosedEarly {
        reused: bool,
    },
    Protocol(String),
    /// A redirect that cannot be followed, or one too many.
    Redirect(String),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(m) | UpstreamError::Io(m) | UpstreamError::Redirect(m) => {
                f.write_str(m)
            }
            UpstreamError::Timeout(what) => write!(f, "upstream timeout: {what}"),
            UpstreamError::ClosedEarly { .. } => {
                f.write_str("upstream closed the connection before sending a response (EOF)")
            }
            UpstreamError::Protocol(m) => write!(f, "malformed upstream response: {m}"),
        }
    }
}
