//! The shard's keep-alive pool of upstream connections, keyed by scheme, host, port and proxy.
//!
//! One pool per shard (`!Send`, no lock): a connection is only ever used by the shard that
//! opened it. Idle connections are handed out LIFO (the warmest first) and dropped when they
//! have been idle longer than the group's `idle_conn_timeout`, when the peer closed them, or when
//! the host already holds `max_idle_conns_per_host` idle ones. A connection is filed under the
//! route it was opened for (`Conn::route`), which after a redirect may not be the upstream the
//! request started with.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::conn::{Conn, Route};
use super::proxy::ProxyServer;
use super::target::Upstream;

/// A connection idle for less than this is handed out without a liveness peek (a syscall per
/// request under load). Should the upstream have closed it in that moment, the exchange fails
/// before any response byte and is retried once on a fresh connection (`send_once`).
const TRUSTED_IDLE: Duration = Duration::from_millis(500);

struct HostPool {
    route: Route,
    idle: Vec<Conn>,
}

#[derive(Default)]
pub struct Pool {
    /// A short list scanned linearly: a deployment talks to a handful of upstream hosts, and a
    /// scan of a few entries beats hashing a key built per request.
    hosts: RefCell<Vec<HostPool>>,
}

impl Pool {
    /// An idle connection to `upstream` through `proxy` (or direct) that still looks usable.
    pub fn checkout(
        &self,
        upstream: &Upstream,
        proxy: Option<&ProxyServer>,
        idle_timeout: Duration,
    ) -> Option<Conn> {
        let mut hosts = self.hosts.borrow_mut();
        let host = hosts
            .iter_mut()
            .find(|h| h.route.leads_to(upstream, proxy))?;
        let now = Instant::now();
        while let Some(mut conn) = host.idle.pop() {
            let idle = now.duration_since(conn.idle_since);
            if idle < idle_timeout && (idle < TRUSTED_IDLE || conn.looks_alive()) {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly, under the route it was
    /// opened for; beyond `max_idle_per_host` for its route or `max_idle_total` for the shard
    /// it is closed instead.
    pub fn checkin(&self, mut conn: Conn, max_idle_per_host: usize, max_idle_total: usize) {
        let Some(route) = conn.route.as_ref() else {
            return;
        };
        conn.buf.clear();
        conn.idle_since = Instant::now();
        let mut hosts = self.hosts.borrow_mut();
        if hosts.iter().map(|h| h.idle.len()).sum::<usize>() >= max_idle_total {
            return;
        }
        let index = match hosts.iter().position(|h| h.route == *route) {
            Some(i) => i,
            None => {
                hosts.push(HostPool {
                    route: route.clone(),
                    idle: Vec::new(),
                });
                hosts.len() - 1
            }
        };
        let idle = &mut hosts[index].idle;
        if idle.len() < max_idle_per_host {
            idle.push(conn);
        }
    }

    /// Drops connections idle for longer than `max_idle`; run from the shard's timer.
    pub fn evict_idle(&self, max_idle: Duration) {
        let now = Instant::now();
        for host in self.hosts.borrow_mut().iter_mut() {
            host.idle
                .retain(|c| now.duration_since(c.idle_since) < max_idle);
        }
    }

    /// Idle connections held, over all hosts.
    pub fn idle_count(&self) -> usize {
        self.hosts.borrow().iter().map(|h| h.idle.len()).sum()
    }
}
