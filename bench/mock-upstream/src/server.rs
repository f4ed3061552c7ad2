//! Listening: binding loopback sockets, accepting connections (TLS or not), and stopping
//! everything when the [`crate::MockUpstream`] is dropped.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::connection;
use crate::controls::{FailingKeys, Gates};
use crate::record::RequestLog;
use crate::tls;

/// Everything the connection tasks and the test share: immutable settings and the
/// internally-synchronised log and controls.
pub(crate) struct Shared {
    pub(crate) log: RequestLog,
    pub(crate) failing_keys: FailingKeys,
    pub(crate) gates: Gates,
    /// `--latency-ms` / `MockOptions::latency`, before every response head.
    pub(crate) latency: Duration,
}

/// Binds 127.0.0.1:`port`, then tries `[::1]` on the same port: `localhost` resolves to ::1 first
/// on many hosts, and the TLS URL names `localhost`. The IPv6 socket is optional because some
/// sandboxes have no IPv6 loopback.
pub(crate) fn bind_loopback(port: u16) -> io::Result<Vec<StdTcpListener>> {
    let v4 = StdTcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("mock upstream: cannot bind 127.0.0.1:{port}: {e}"),
        )
    })?;
    let port = v4.local_addr()?.port();
    let mut listeners = vec![v4];
    if let Ok(v6) = StdTcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        listeners.push(v6);
    }
    for listener in &listeners {
        listener.set_nonblocking(true)?;
    }
    Ok(listeners)
}

/// A tokio runtime for a server of its own: current-thread for 1, multi-thread otherwise.
pub(crate) fn runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    builder.enable_all().thread_name("mock-upstream").build()
}

/// Spawns one accept loop per listener on the current runtime. Must run inside it.
pub(crate) fn spawn_accept_loops(
    listeners: Vec<StdTcpListener>,
    tls: Option<tls::Identity>,
    shared: Arc<Shared>,
    stop: watch::Receiver<()>,
) -> io::Result<()> {
    let acceptor = tls.map(|identity| identity.acceptor);
    for listener in listeners {
        let listener = TcpListener::from_std(listener)?;
        let accept = accept_loop(listener, acceptor.clone(), shared.clone(), stop.clone());
        tokio::spawn(accept);
    }
    Ok(())
}

/// Resolves when the owning `MockUpstream` is dropped.
pub(crate) async fn until_stopped(mut stop: watch::Receiver<()>) {
    // Nothing is ever sent: `changed` only returns, with an error, once the sender is gone.
    while stop.changed().await.is_ok() {}
}

/// Accepts until stopped. The connection tasks live in a `JoinSet` owned by this loop, so
/// returning from it aborts every connection, gated or idle.
async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: watch::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    let stopped = until_stopped(stop);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, acceptor.clone(), shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    eprintln!("mock upstream: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set does not grow with every one ever accepted.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(
    stream: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    // Streamed events are small writes that must leave at once, not wait for Nagle.
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let Some(acceptor) = acceptor else {
        return connection::serve(stream, &shared).await;
    };
    // A client that rejects our certificate aborts the handshake; that client's test says why.
    if let Ok(tls_stream) = acceptor.accept(stream).await {
        connection::serve(tls_stream, &shared).await;
    }
}
