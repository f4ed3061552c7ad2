//! The shard's keep-alive pool of upstream connections, keyed by scheme, host, port and proxy.
//!
//! One pool per shard (`!Send`, no lock): a connection is only ever used by the shard that
//! opened it. Idle connections are handed out LIFO (the warmest first) and dropped when they
//! have been idle longer than the group's `idle_conn_timeout`, when the peer closed them, or when
//! they are beyond `max_idle_conns_per_host` (or the shard's `max_idle_conns`) and have been idle
//! for `SURPLUS_IDLE`. A connection is filed under the route it was opened for (`Conn::route`),
//! which after a redirect may not be the upstream the request started with.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::conn::{Conn, Route};
use super::proxy::ProxyServer;
use super::target::Upstream;

/// A connection idle for less than this is handed out without a liveness peek (a syscall per
/// request under load). Should the upstream have closed it in that moment, the exchange fails
/// before any response byte and is retried once on a fresh connection (`send_once`).
const TRUSTED_IDLE: Duration = Duration::from_millis(500);

/// How long a connection beyond the idle bounds is kept before it is closed. Go's transport (and
/// so v1) closes it as it is handed back; under a load whose concurrency swings around the bound
/// (64 connections against the default 50 per host) that closed and reopened some 600
/// connections a second, a connect and a close on both sides each, where a second's grace
/// reuses them all. The bounds still hold for anything longer than a second.
const SURPLUS_IDLE: Duration = Duration::from_secs(1);

/// Surplus connections closed by one hand-back, and by one pass of the shard's timer (every
/// 10 ms). A close costs the shard ~20 µs of TCP work; after a burst of a thousand streams,
/// closing its surplus in one pass would hold the shard for ~20 ms, where 16 a pass is a third
/// of a millisecond and still closes 1,600 a second.
const CLOSES_PER_CHECKIN: usize = 1;
const CLOSES_PER_PASS: usize = 16;

struct HostPool {
    route: Route,
    /// Oldest first: connections are pushed and popped at the end, so `idle_since` ascends.
    idle: Vec<Conn>,
    /// `max_idle_conns_per_host` of the group that last handed a connection back.
    max_idle: usize,
}

#[derive(Default)]
pub struct Pool {
    /// A short list scanned linearly: a deployment talks to a handful of upstream hosts, and a
    /// scan of a few entries beats hashing a key built per request.
    hosts: RefCell<Vec<HostPool>>,
    /// `max_idle_conns` of the group that last handed a connection back.
    max_idle_total: Cell<usize>,
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
    /// opened for. Beyond `max_idle_per_host` for its route or `max_idle_total` for the shard it
    /// is still kept, for `SURPLUS_IDLE`, then closed.
    pub fn checkin(&self, mut conn: Conn, max_idle_per_host: usize, max_idle_total: usize) {
        let Some(route) = conn.route.as_ref() else {
            return;
        };
        conn.buf.clear();
        let now = Instant::now();
        conn.idle_since = now;
        self.max_idle_total.set(max_idle_total);
        let mut hosts = self.hosts.borrow_mut();
        let index = match hosts.iter().position(|h| h.route == *route) {
            Some(i) => i,
            None => {
                hosts.push(HostPool {
                    route: route.clone(),
                    idle: Vec::new(),
                    max_idle: max_idle_per_host,
                });
                hosts.len() - 1
            }
        };
        let host = &mut hosts[index];
        host.max_idle = max_idle_per_host;
        host.idle.push(conn);
        trim_surplus(&mut hosts, now, max_idle_total, CLOSES_PER_CHECKIN);
    }

    /// Closes some of the connections beyond the idle bounds idle for `SURPLUS_IDLE`; run from
    /// the shard's timer.
    pub fn trim(&self) {
        let mut hosts = self.hosts.borrow_mut();
        trim_surplus(
            &mut hosts,
            Instant::now(),
            self.max_idle_total.get(),
            CLOSES_PER_PASS,
        );
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

/// Closes up to `budget` of the oldest idle connections beyond each host's bound and then
/// beyond the shard's, among those idle for `SURPLUS_IDLE` or longer.
fn trim_surplus(hosts: &mut [HostPool], now: Instant, max_idle_total: usize, mut budget: usize) {
    let expired = |host: &HostPool| {
        host.idle
            .partition_point(|c| now.duration_since(c.idle_since) >= SURPLUS_IDLE)
    };
    let mut total = 0;
    for host in hosts.iter_mut() {
        let close = surplus(host.idle.len(), host.max_idle, expired(host)).min(budget);
        host.idle.drain(..close);
        budget -= close;
        total += host.idle.len();
    }
    for host in hosts.iter_mut() {
        if total <= max_idle_total || budget == 0 {
            break;
        }
        let close = surplus(total, max_idle_total, expired(host)).min(budget);
        host.idle.drain(..close);
        budget -= close;
        total -= close;
    }
}

/// How many of `held` connections to close to come down to `bound`, closing only the `expired`
/// (the oldest, idle for `SURPLUS_IDLE`).
fn surplus(held: usize, bound: usize, expired: usize) -> usize {
    held.saturating_sub(bound).min(expired)
}

#[cfg(test)]
mod tests {
    use super::surplus;

    #[test]
    fn only_expired_connections_beyond_the_bound_are_closed() {
        assert_eq!(surplus(64, 50, 64), 14, "all expired: down to the bound");
        assert_eq!(surplus(64, 50, 3), 3, "only the expired ones");
        assert_eq!(surplus(64, 50, 0), 0, "none expired: all kept for now");
        assert_eq!(surplus(40, 50, 40), 0, "within the bound: none");
        assert_eq!(surplus(50, 50, 50), 0, "at the bound: none");
    }
}
