//! Name resolution for the rare host a shard meets at request time (a redirect target): the
//! blocking `getaddrinfo` runs on a helper thread, and the shard awaits, through its own event
//! loop, a socket that the thread closes when the answer is in. The shard never blocks, and no
//! waker crosses threads (monoio is built without its `sync` feature).
//!
//! One short-lived thread per lookup: redirects to a new host are rare, so a pool would only
//! hold threads idle. A lookup that outlives `timeout` finishes on its thread and is dropped.
//!
//! Hosts known in advance (upstreams, proxies) are resolved by the control plane instead.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use monoio::io::AsyncReadRent;

type Answer = Arc<Mutex<Option<io::Result<Vec<SocketAddr>>>>>;

/// The addresses of `host:port`, or an error in Go's words ("dial tcp: lookup x: …").
pub async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let fail = |why: String| format!("dial tcp: lookup {host}: {why}");
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| fail(e.to_string()))?;
    ours.set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let answer: Answer = Arc::default();
    let (name, slot) = (host.to_string(), answer.clone());
    std::thread::Builder::new()
        .name("gpt-load-resolve".into())
        .spawn(move || {
            let addrs = (name.as_str(), port).to_socket_addrs().map(|a| a.collect());
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(addrs);
            }
            // Closing our end is the signal: the shard's read returns end of stream.
            drop(theirs);
        })
        .map_err(|e| fail(format!("cannot start a resolver thread: {e}")))?;
    let mut stream = monoio::net::UnixStream::from_std(ours).map_err(|e| fail(e.to_string()))?;
    let closed = async {
        let (result, _) = stream.read(vec![0u8; 1]).await;
        result
    };
    if crate::time::timeout(timeout, closed).await.is_err() {
        return Err(fail(format!("no answer within {}s", timeout.as_secs())));
    }
    let answer = answer.lock().ok().and_then(|mut a| a.take());
    match answer {
        Some(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Some(Ok(_)) => Err(fail("no such host".into())),
        Some(Err(e)) => Err(fail(e.to_string())),
        None => Err(fail("the resolver thread gave no answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::run;

    #[test]
    fn resolves_names_on_a_helper_thread() {
        let addrs = run(resolve("localhost", 8080, Duration::from_secs(10))).unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 8080 && a.ip().is_loopback()),
            "{addrs:?}"
        );
        assert!(!addrs.is_empty());
        let ip = run(resolve("10.1.2.3", 1, Duration::from_secs(1))).unwrap();
        assert_eq!(ip, vec!["10.1.2.3:1".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn unknown_names_fail_with_the_name() {
        let e = run(resolve("no-such-host.invalid", 80, Duration::from_secs(10))).unwrap_err();
        assert!(
            e.starts_with("dial tcp: lookup no-such-host.invalid: "),
            "{e}"
        );
    }
}
