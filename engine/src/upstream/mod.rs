//! Talking to upstreams: connections, the per-shard pool, and one HTTP/1.1 exchange (send a
//! request, read the response head, read the body as it arrives).

pub mod conn;
pub mod exchange;
pub mod pool;
pub mod target;

pub use conn::Conn;
pub use exchange::{BodyReader, read_response_head};
pub use pool::Pool;
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
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(m) | UpstreamError::Io(m) => f.write_str(m),
            UpstreamError::Timeout(what) => write!(f, "upstream timeout: {what}"),
            UpstreamError::ClosedEarly { .. } => {
                f.write_str("upstream closed the connection before sending a response (EOF)")
            }
            UpstreamError::Protocol(m) => write!(f, "malformed upstream response: {m}"),
        }
    }
}
