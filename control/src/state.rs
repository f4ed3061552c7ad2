//! The control plane's in-memory model of groups, keys and settings, and the snapshots built
//! from it. An admin change patches the model, marks the groups it touched, and publishes a new
//! snapshot in which untouched groups are the same `Arc`s as before. Key slots are carried over
//! by id, so a key's live health survives every reload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use engine::aggregate::{Aggregate, AggregateMember};
use engine::channel::Channel;
use engine::keys::{KeyRing, KeySlot, KeyStatus};
use engine::upstream::{Upstream, Upstreams};
use engine::{Group, Snapshot};
use serde::Deserialize;
use store::{GroupRow, KeyRow, SubGroupRow};

use crate::encryption::KeyCipher;
use crate::settings::SystemSettings;

#[derive(Debug, Clone, Deserialize)]
pub struct UpstreamSpec {
    pub url: String,
    #[serde(default)]
    pub weight: i64,
}

pub struct Model {
    version: u64,
    pub settings: SystemSettings,
    pub groups: BTreeMap<i64, GroupRow>,
    /// Aggregate memberships (`group_sub_groups`).
    pub sub_groups: Vec<SubGroupRow>,
    /// Every key of every group, active or not, by group id.
    pub keys: HashMap<i64, Vec<KeySlot>>,
    /// Built groups of the last snapshot; an entry is removed when its group changes.
    built: HashMap<i64, Arc<Group>>,
    /// Resolved upstream addresses by (host, port), refreshed by the resolver task.
    pub resolved: HashMap<(String, u16), Vec<SocketAddr>>,
    /// Decrypts stored key values into the keys the slots send upstream.
    cipher: KeyCipher,
}

impl Model {
    pub fn new(
        settings: SystemSettings,
        groups: Vec<GroupRow>,
        sub_groups: Vec<SubGroupRow>,
        cipher: KeyCipher,
    ) -> Self {
        Self {
            version: 0,
            settings,
            groups: groups.into_iter().map(|g| (g.id, g)).collect(),
            sub_groups,
            keys: HashMap::new(),
            built: HashMap::new(),
            resolved: HashMap::new(),
            cipher,
        }
    }

    /// Adds a stored key (`key_value` as stored: ciphertext when ENCRYPTION_KEY is set).
    pub fn add_key(&mut self, key: &KeyRow) {
        let slot = KeySlot::new(
            key.id,
            &self.cipher.decrypt_or_raw(&key.key_value),
            KeyStatus::parse(&key.status),
            key.failure_count.max(0) as u64,
        );
        self.keys.entry(key.group_id).or_default().push(slot);
        self.built.remove(&key.group_id);
    }

    pub fn remove_keys(&mut self, group_id: i64, ids: &HashSet<i64>) {
        if let Some(slots) = self.keys.get_mut(&group_id) {
            slots.retain(|s| !ids.contains(&s.id()));
        }
        self.built.remove(&group_id);
    }

    pub fn upsert_group(&mut self, group: GroupRow) {
        self.built.remove(&group.id);
        self.groups.insert(group.id, group);
    }

    pub fn remove_group(&mut self, id: i64) {
        self.groups.remove(&id);
        self.sub_groups
            .retain(|l| l.group_id != id && l.sub_group_id != id);
        self.keys.remove(&id);
        self.built.remove(&id);
    }

    /// Marks a group for rebuilding (e.g. a key of it was blacklisted: its ring shrinks).
    pub fn touch_group(&mut self, id: i64) {
        self.built.remove(&id);
    }

    /// Settings changed: every group's effective settings may have.
    pub fn touch_all(&mut self) {
        self.built.clear();
    }

    /// (host, port) pairs of all upstreams and outbound proxies not resolved yet.
    pub fn unresolved_hosts(&self) -> Vec<(String, u16)> {
        let proxies = self.groups.values().flat_map(|g| {
            let rule = self.settings.proxy_rule(&parse_object(&g.config));
            rule.iter()
                .flat_map(|r| r.servers())
                .map(|s| (s.host.to_string(), s.port))
                .collect::<Vec<_>>()
        });
        let mut hosts: Vec<(String, u16)> = self
            .groups
            .values()
            .flat_map(|g| parse_upstreams(&g.upstreams))
            .filter_map(|u| Upstream::parse(&u.url, 1).ok())
            .map(|u| (u.host.to_string(), u.port))
            .chain(proxies)
            .filter(|hp| !self.resolved.contains_key(hp))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Builds the next snapshot, reusing every standard group that did not change. Aggregates
    /// are rebuilt every time: they are small, and they point at their members' current `Arc`s.
    pub fn snapshot(&mut self) -> Arc<Snapshot> {
        self.version += 1;
        let mut groups = engine::snapshot::LookupMap::with_capacity_and_hasher(
            self.groups.len(),
            Default::default(),
        );
        for (id, row) in self
            .groups
            .iter()
            .filter(|(_, g)| g.group_type != "aggregate")
        {
            let built = match self.built.get(id) {
                Some(g) => g.clone(),
                None => {
                    let g = Arc::new(build_group(
                        row,
                        &self.settings,
                        self.keys.get(id),
                        &self.resolved,
                    ));
                    self.built.insert(*id, g.clone());
                    g
                }
            };
            groups.insert(row.name.as_str().into(), built);
        }
        for row in self.groups.values().filter(|g| g.group_type == "aggregate") {
            let members = self
                .sub_groups
                .iter()
                .filter(|l| l.group_id == row.id)
                .filter_map(|l| {
                    let member = self.built.get(&l.sub_group_id)?.clone();
                    let weight = l.weight.clamp(0, 1000) as u32;
                    Some(AggregateMember {
                        group: member,
                        weight,
                    })
                })
                .collect();
            let mut group = build_group(row, &self.settings, None, &self.resolved);
            group.aggregate = Some(Aggregate::new(members));
            groups.insert(row.name.as_str().into(), Arc::new(group));
        }
        let global_proxy_keys = self
            .settings
            .proxy_keys()
            .into_iter()
            .map(Into::into)
            .collect();
        Arc::new(Snapshot {
            version: self.version,
            groups,
            global_proxy_keys,
        })
    }

    pub fn slot(&self, group_id: i64, key_id: i64) -> Option<&KeySlot> {
        self.keys.get(&group_id)?.iter().find(|s| s.id() == key_id)
    }
}

pub fn parse_upstreams(json: &str) -> Vec<UpstreamSpec> {
    serde_json::from_str(json).unwrap_or_default()
}

pub fn parse_object(json: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn build_group(
    row: &GroupRow,
    settings: &SystemSettings,
    keys: Option<&Vec<KeySlot>>,
    resolved: &HashMap<(String, u16), Vec<SocketAddr>>,
) -> Group {
    let upstreams = parse_upstreams(&row.upstreams)
        .into_iter()
        .filter_map(|spec| {
            let mut u =
                Upstream::parse(&spec.url, spec.weight.clamp(0, u32::MAX as i64) as u32).ok()?;
            u.addrs = resolved
                .get(&(u.host.to_string(), u.port))
                .cloned()
                .unwrap_or_default()
                .into();
            Some(u)
        })
        .collect();
    let overrides = parse_object(&row.param_overrides);
    Group {
        id: row.id,
        name: row.name.as_str().into(),
        channel: Channel::parse(&row.channel_type).unwrap_or(Channel::OpenAi),
        is_aggregate: row.group_type == "aggregate",
        upstreams: Upstreams::new(upstreams),
        keys: KeyRing::new(keys.into_iter().flatten().cloned()),
        proxy_keys: crate::settings::split_list(&row.proxy_keys)
            .into_iter()
            .map(Into::into)
            .collect(),
        settings: with_proxy_addrs(settings.effective(&parse_object(&row.config)), resolved),
        param_overrides: (!overrides.is_empty()).then_some(overrides),
        model_redirect: model_redirect(row),
        header_rules: engine::header_rules::parse(&row.header_rules),
        aggregate: None,
        test_model: row.test_model.as_str().into(),
        validation_endpoint: row.validation_endpoint.trim().into(),
    }
}

/// The group's proxy rule with its proxies' addresses filled in from `resolved`.
fn with_proxy_addrs(
    mut settings: engine::GroupSettings,
    resolved: &HashMap<(String, u16), Vec<SocketAddr>>,
) -> engine::GroupSettings {
    settings.proxy = settings.proxy.map(|rule| {
        let lookup = |host: &str, port| {
            resolved
                .get(&(host.to_string(), port))
                .cloned()
                .unwrap_or_default()
        };
        Arc::new(rule.with_addrs(lookup))
    });
    settings
}

fn model_redirect(row: &GroupRow) -> engine::rewrite::ModelRedirect {
    let rules = parse_object(&row.model_redirect_rules)
        .into_iter()
        .filter_map(|(from, to)| Some((from, to.as_str()?.to_string())));
    engine::rewrite::ModelRedirect::new(rules, row.model_redirect_strict)
}

/// Resolves host names off the shards (here, on the control plane's runtime).
pub async fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(host, port, error = %e, "could not resolve upstream host");
            Vec::new()
        }
    }
}
