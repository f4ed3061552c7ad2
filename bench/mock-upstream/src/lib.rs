//! A recording mock of the OpenAI, Anthropic and Gemini wire formats, for the proxy's integration
//! tests and benchmarks.
//!
//! Tests start it in-process, point the proxy at [`MockUpstream::url`], and assert on
//! [`MockUpstream::requests`]: what the proxy really sent upstream (path, headers, injected key,
//! rewritten body). Request headers steer the answer (`x-mock-status`, `x-mock-delay-ms`,
//! `x-mock-chunks`, `x-mock-chunk-delay-ms`, `x-mock-gate`, `x-mock-framing`; see
//! [`controls`]); the proxy forwards them unchanged, so a test can script the upstream through
//! the proxy. Benchmarks run the `mock-upstream` binary, which serves the same routes but only
//! counts requests.
//!
//! It is not an HTTP server for anything else: HTTP/1.1 only (keep-alive, pipelining,
//! `Content-Length` and chunked request bodies), no HTTP/2, no compression, answers are canned
//! and deterministic (see [`formats`] for the exact text and token counts).
//!
//! ```no_run
//! # async fn example() {
//! use mock_upstream::MockUpstream;
//!
//! let upstream = MockUpstream::start().await;
//! upstream.fail_key("sk-revoked", 401, r#"{"error":{"message":"revoked"}}"#);
//! // ... point the proxy at upstream.url() and send it a request ...
//! upstream.wait_requests(1).await;
//! let sent = &upstream.requests()[0];
//! assert_eq!(sent.path, "/v1/chat/completions");
//! assert_eq!(sent.upstream_key().as_deref(), Some("sk-live"));
//! # }
//! ```

#[macro_use]
mod write;

mod connection;
pub mod controls;
pub mod formats;
mod http;
mod record;
mod routes;
mod server;
mod tls;

use std::io;
use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::controls::{FailingKeys, Gates};
pub use crate::record::RecordedRequest;
use crate::record::RequestLog;
use crate::server::Shared;

/// How the server is started. `MockOptions::default()` is what [`MockUpstream::start`] uses.
#[derive(Clone, Debug, Default)]
pub struct MockOptions {
    /// Port on 127.0.0.1 (and, best effort, on `[::1]`); 0 picks a free one.
    pub port: u16,
    /// Serve HTTPS with a freshly generated CA and leaf certificate.
    pub tls: bool,
    /// Added before every response head, on top of `x-mock-delay-ms`.
    pub latency: Duration,
    /// What is remembered about each request.
    pub recording: Recording,
}

/// What the server remembers about the requests it received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recording {
    /// Every request in full, for [`MockUpstream::requests`]. Memory grows with each request.
    #[default]
    Everything,
    /// Only [`MockUpstream::request_count`]; [`MockUpstream::requests`] stays empty. For
    /// benchmarks, where millions of requests must not grow memory.
    CountOnly,
}

/// A running mock upstream. Dropping it stops the server and closes every connection.
pub struct MockUpstream {
    shared: Arc<Shared>,
    port: u16,
    ca_pem: Option<String>,
    /// The accept loops watch this; dropping it ends them, and with them every connection task.
    _stop: watch::Sender<()>,
}

impl MockUpstream {
    /// Plain HTTP on a free port of 127.0.0.1, recording everything.
    ///
    /// # Panics
    /// If no loopback port can be bound, or when called outside a tokio runtime.
    pub async fn start() -> MockUpstream {
        Self::start_with(MockOptions::default())
            .await
            .unwrap_or_else(|e| panic!("mock upstream: cannot listen on 127.0.0.1:0: {e}"))
    }

    /// HTTPS on a free port, with a fresh CA (see [`MockUpstream::ca_pem`]) and a leaf for
    /// `localhost`, `127.0.0.1` and `::1`.
    ///
    /// # Panics
    /// If no loopback port can be bound, or when called outside a tokio runtime.
    pub async fn start_tls() -> MockUpstream {
        let options = MockOptions {
            tls: true,
            ..MockOptions::default()
        };
        Self::start_with(options)
            .await
            .unwrap_or_else(|e| panic!("mock upstream: cannot start TLS on 127.0.0.1:0: {e}"))
    }

    /// Starts the server on the current tokio runtime: its tasks run only while that runtime is
    /// driven. A test whose thread blocks (on a sync client, a join) should use
    /// [`MockUpstream::start_on_thread`] instead.
    pub async fn start_with(options: MockOptions) -> io::Result<MockUpstream> {
        let (upstream, listeners, tls) = Self::prepare(&options)?;
        let stop = upstream._stop.subscribe();
        server::spawn_accept_loops(listeners, tls, upstream.shared.clone(), stop)?;
        Ok(upstream)
    }

    /// Starts the server on its own thread with its own single-threaded tokio runtime, so it
    /// keeps answering whatever the caller's thread does. Needs no runtime from the caller.
    pub fn start_on_thread(options: MockOptions) -> io::Result<MockUpstream> {
        Self::start_on_threads(options, 1)
    }

    /// Like [`MockUpstream::start_on_thread`], on a runtime with `threads` workers (1 means a
    /// current-thread runtime, the fastest for one client connection at a time).
    pub fn start_on_threads(options: MockOptions, threads: usize) -> io::Result<MockUpstream> {
        let (upstream, listeners, tls) = Self::prepare(&options)?;
        let stop = upstream._stop.subscribe();
        let shared = upstream.shared.clone();
        let runtime = server::runtime(threads)?;
        std::thread::Builder::new()
            .name(format!("mock-upstream-{}", upstream.port))
            .spawn(move || {
                runtime.block_on(async move {
                    match server::spawn_accept_loops(listeners, tls, shared, stop.clone()) {
                        Ok(()) => server::until_stopped(stop).await,
                        Err(e) => eprintln!("mock upstream: cannot start accept loop: {e}"),
                    }
                });
            })?;
        Ok(upstream)
    }

    /// Binds the listeners and builds the TLS identity, before anything is spawned, so that
    /// every start-up error reaches the caller.
    fn prepare(
        options: &MockOptions,
    ) -> io::Result<(MockUpstream, Vec<StdTcpListener>, Option<tls::Identity>)> {
        let listeners = server::bind_loopback(options.port)?;
        let port = listeners[0].local_addr()?.port();
        let tls = options.tls.then(tls::Identity::generate).transpose()?;
        let shared = Arc::new(Shared {
            log: RequestLog::new(options.recording),
            failing_keys: FailingKeys::default(),
            gates: Gates::default(),
            latency: options.latency,
        });
        let (stop, _) = watch::channel(());
        let upstream = MockUpstream {
            shared,
            port,
            ca_pem: tls.as_ref().map(|identity| identity.ca_pem.clone()),
            _stop: stop,
        };
        Ok((upstream, listeners, tls))
    }

    /// The CA certificate (PEM) that signed the server's leaf; `None` for plain HTTP. Trust it as
    /// the only root to reach [`MockUpstream::url`].
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS (the certificate also
    /// covers 127.0.0.1 and ::1).
    pub fn url(&self) -> String {
        match self.ca_pem {
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything received since the start or the last [`MockUpstream::clear`], in arrival order.
    /// Empty under [`Recording::CountOnly`].
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log.requests()
    }

    /// How many requests were received since the start or the last [`MockUpstream::clear`].
    pub fn request_count(&self) -> usize {
        self.shared.log.count()
    }

    /// Forgets the recorded requests (and resets the count). Failing keys and open gates stay.
    pub fn clear(&self) {
        self.shared.log.clear();
    }

    /// From now on, a request whose upstream key (see [`RecordedRequest::upstream_key`]) is `key`
    /// is answered with `status` and the JSON `body`, whatever its route. It is still recorded.
    pub fn fail_key(&self, key: &str, status: u16, body: &str) {
        self.shared.failing_keys.insert(key, status, body);
    }

    /// Undoes [`MockUpstream::fail_key`] for `key`.
    pub fn heal_key(&self, key: &str) {
        self.shared.failing_keys.remove(key);
    }

    /// Releases every response held by `x-mock-gate: NAME`, now and in the future.
    pub fn open_gate(&self, name: &str) {
        self.shared.gates.open(name);
    }

    /// Resolves once at least `n` requests have been recorded since the start or the last
    /// [`MockUpstream::clear`]. Wrap it in a timeout: it waits forever otherwise.
    pub async fn wait_requests(&self, n: usize) {
        self.shared.log.wait_for(n).await;
    }
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream")
            .field("url", &self.url())
            .field("requests", &self.request_count())
            .finish()
    }
}
