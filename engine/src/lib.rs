//! The data plane of gpt-load: N shard threads, each a monoio runtime (io_uring, or epoll where
//! io_uring is unavailable) with its own SO_REUSEPORT listener and upstream pool. Shards serve
//! `/proxy/{group}/…` themselves and relay everything else to the control plane.
//!
//! The control plane talks to the engine in two places only: it publishes `Snapshot`s through
//! the `EngineHandle`, and it drains `Event`s from the channel given to `start`.

pub mod aggregate;
pub mod auth;
pub mod channel;
pub mod client_ip;
pub mod cors;
pub mod events;
pub mod failover;
pub mod forward;
pub mod header_rules;
pub mod http;
pub mod keys;
pub mod relay;
pub mod rewrite;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod time;
pub mod upstream;
pub mod validation;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use events::{Event, EventSink};
pub use server::{EngineHandle, start};
pub use snapshot::{Group, GroupSettings, Snapshot};

/// Process-level settings of the engine, from the environment (restart to change).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub threads: usize,
    pub listen: SocketAddr,
    pub limits: http::Limits,
    /// Largest proxied (`/proxy/…`) request body accepted (413 beyond).
    pub max_body: u64,
    /// Largest body of a request relayed to the control plane: a key file upload of a million
    /// keys is ~50 MB, more than a proxied request needs (413 beyond).
    pub max_admin_body: u64,
    /// SERVER_READ_TIMEOUT: the whole request, head and body.
    pub read_timeout: Duration,
    /// SERVER_WRITE_TIMEOUT: caps the time to produce a whole response, streams included.
    pub write_timeout: Duration,
    /// SERVER_IDLE_TIMEOUT: how long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// MAX_CONCURRENT_REQUESTS over all shards, proxy requests only; 0 = unbounded.
    pub max_concurrent_requests: usize,
    /// Where the control plane listens.
    pub control_socket: PathBuf,
    /// Extra trusted CA certificates (PEM) for upstream TLS, e.g. from SSL_CERT_FILE.
    pub extra_ca_file: Option<PathBuf>,
    /// Upper bound on how long any idle upstream connection is kept.
    pub max_upstream_idle: Duration,
    /// A per-process random number that makes generated request ids unique across restarts.
    pub boot_id: u64,
    /// TRUSTED_PROXIES: peers whose X-Forwarded-For / X-Real-IP are believed.
    pub trusted_proxies: Vec<client_ip::Cidr>,
    /// CORS, when ENABLE_CORS is on.
    pub cors: Option<std::sync::Arc<cors::CorsConfig>>,
    /// A per-process random secret that opens the control plane's internal routes on the
    /// public listener (key validation, `validation::VALIDATE_PATH`); empty closes them.
    pub internal_secret: String,
}
