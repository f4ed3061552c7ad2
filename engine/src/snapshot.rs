//! The snapshot: everything a shard needs to route a request, immutable and shared. The control
//! plane builds a new one on every change and sends it to each shard; a request keeps the
//! `Arc<Snapshot>` it started with, so a reload never disturbs a request in flight.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::aggregate::Aggregate;
use crate::channel::Channel;
use crate::failover::FailoverCodes;
use crate::header_rules::HeaderRule;
use crate::keys::KeyRing;
use crate::upstream::Upstreams;

/// The maps a request looks up with what the client sent (the group in its path, its proxy
/// key): foldhash instead of SipHash, which was 3% of a shard's work a request. Their keys
/// come from the configuration, never from clients, so there is no table for a client to fill
/// with colliding keys; the seed is random all the same.
pub type LookupMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// See [`LookupMap`].
pub type LookupSet<T> = HashSet<T, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every snapshot the control plane publishes.
    pub version: u64,
    pub groups: LookupMap<Box<str>, Arc<Group>>,
    /// The system setting `proxy_keys`: valid for every group.
    pub global_proxy_keys: LookupSet<Box<str>>,
}

impl Snapshot {
    pub fn group(&self, name: &str) -> Option<&Arc<Group>> {
        self.groups.get(name)
    }
}

/// One group as the engine routes it.
#[derive(Debug)]
pub struct Group {
    pub id: i64,
    pub name: Arc<str>,
    pub channel: Channel,
    pub is_aggregate: bool,
    pub upstreams: Upstreams,
    pub keys: KeyRing,
    /// The group's own proxy keys (in addition to the global ones).
    pub proxy_keys: LookupSet<Box<str>>,
    pub settings: GroupSettings,
    /// Top-level JSON fields merged into request bodies.
    pub param_overrides: Option<serde_json::Map<String, serde_json::Value>>,
    /// Client model → upstream model (v1 §2.8); strict refuses models without a rule.
    pub model_redirect: crate::rewrite::ModelRedirect,
    /// Headers set or removed on every upstream request, after key injection.
    pub header_rules: Box<[HeaderRule]>,
    /// For an aggregate group: its members (standard groups of the same channel).
    pub aggregate: Option<Aggregate>,
    /// The model key validation asks for (v1 §2.6).
    pub test_model: Box<str>,
    /// The group's `validation_endpoint` (a path, maybe with a query); empty means the
    /// channel's default. Gemini ignores it.
    pub validation_endpoint: Box<str>,
}

impl Group {
    /// Whether `key` may use this group.
    pub fn accepts(&self, key: &str, snapshot: &Snapshot) -> bool {
        self.proxy_keys.contains(key) || snapshot.global_proxy_keys.contains(key)
    }
}

/// The effective settings of a group (system settings overlaid with the group's `config`) that
/// the request path reads. Computed once per snapshot, never per request.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub max_retries: u32,
    /// Cumulative failures before a key turns invalid; 0 = never.
    pub blacklist_threshold: u64,
    pub failover_codes: FailoverCodes,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    /// Whole-request bound for non-stream requests.
    pub request_timeout: Duration,
    pub idle_conn_timeout: Duration,
    /// Longest silence between two chunks of a streamed response; `None` = unbounded.
    pub stream_idle_timeout: Option<Duration>,
    pub max_idle_conns_per_host: usize,
    /// Idle upstream connections one shard keeps over all hosts.
    pub max_idle_conns: usize,
    pub enable_request_body_logging: bool,
    /// The outbound proxy rule: the effective `proxy_url`, else HTTP(S)_PROXY/NO_PROXY; `None`
    /// connects directly.
    pub proxy: Option<std::sync::Arc<crate::upstream::proxy::OutboundProxy>>,
}

impl GroupSettings {
    /// How many idle upstream connections to keep, per host and in all, after a request of this
    /// kind. GPT-Load v1 sends stream requests through a client of their own whose pools are
    /// twice as large, at least 20 per host and 50 in all (spec §2.9): a hundred streams at once
    /// then find a hundred warm connections the next time instead of fifty, and the other fifty
    /// do not wait for a connect before their first event.
    pub fn idle_limits(&self, stream: bool) -> (usize, usize) {
        let (per_host, total) = (self.max_idle_conns_per_host, self.max_idle_conns);
        if stream {
            (
                per_host.saturating_mul(2).max(20),
                total.saturating_mul(2).max(50),
            )
        } else {
            (per_host, total)
        }
    }
}

impl Default for GroupSettings {
    /// GPT-Load v1's defaults (spec §5.2).
    fn default() -> Self {
        Self {
            max_retries: 3,
            blacklist_threshold: 3,
            failover_codes: FailoverCodes::default(),
            connect_timeout: Duration::from_secs(15),
            response_header_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(600),
            idle_conn_timeout: Duration::from_secs(120),
            stream_idle_timeout: Some(Duration::from_secs(300)),
            max_idle_conns_per_host: 50,
            max_idle_conns: 100,
            enable_request_body_logging: false,
            proxy: None,
        }
    }
}
