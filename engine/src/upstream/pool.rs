//! The shard's keep-alive pool of upstream connections, keyed by scheme, host and port.
//!
//! One pool per shard (`!Send`, no lock): a connection is only ever used by the shard that
//! opened it. Idle connections are handed out LIFO (the warmest first) and dropped when they
//! have been idle longer than the group's `idle_conn_timeout`, when the peer closed them, or when
//! the host already holds `max_idle_conns_per_host` idle ones.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::target::{Scheme, Upstream};

struct HostPool {
    scheme: Scheme,
    host: Box<str>,
    port: u16,
    idle: Vec<Conn>,
}

#[derive(Default)]
pub struct Pool {
    /// A short list scanned linearly: a deployment talks to a handful of upstream hosts, and a
    /// scan of a few entries beats hashing a key built per request.
    hosts: RefCell<Vec<HostPool>>,
}

impl Pool {
    /// An idle connection to `upstream` that still looks usable, if any.
    pub fn checkout(&self, upstream: &Upstream, idle_timeout: Duration) -> Option<Conn> {
        let mut hosts = self.hosts.borrow_mut();
        let host = hosts.iter_mut().find(|h| matches(h, upstream))?;
        let now = Instant::now();
        while let Some(mut conn) = host.idle.pop() {
            if now.duration_since(conn.idle_since) < idle_timeout && conn.looks_alive() {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn checkin(&self, upstream: &Upstream, mut conn: Conn, max_idle_per_host: usize) {
        conn.buf.clear();
        conn.idle_since = Instant::now();
        let mut hosts = self.hosts.borrow_mut();
        let index = match hosts.iter().position(|h| matches(h, upstream)) {
            Some(i) => i,
            None => {
                hosts.push(HostPool {
                    scheme: upstream.scheme,
                    host: upstream.host.clone(),
                    port: upstream.port,
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

fn matches(host: &HostPool, upstream: &Upstream) -> bool {
    host.port == upstream.port && host.scheme == upstream.scheme && *host.host == *upstream.host
}
