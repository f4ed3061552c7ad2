//! The one table of system settings (spec §5.2): name, default, minimum, category, whether a
//! group may override it. The settings API, validation, seeding, group overrides and the engine's
//! effective group settings are all derived from `SETTINGS`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use engine::GroupSettings;
use engine::failover::FailoverCodes;
use engine::upstream::proxy::{OutboundProxy, ProxyServer};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int {
        min: i64,
    },
    Bool,
    Text {
        required: bool,
    },
    /// The failover status-code grammar.
    FailoverCodes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Basic,
    Request,
    Keys,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Basic, Category::Request, Category::Keys];

    pub fn name(self) -> &'static str {
        match self {
            Category::Basic => "Basic",
            Category::Request => "Request Settings",
            Category::Keys => "Key Configuration",
        }
    }
}

/// One row of the settings table.
#[derive(Debug)]
pub struct SettingDef {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub category: Category,
    pub kind: Kind,
    /// The default as stored in `system_settings.setting_value`.
    pub default: &'static str,
    pub group_override: bool,
}

const fn def(
    key: &'static str,
    name: &'static str,
    description: &'static str,
    category: Category,
    kind: Kind,
    default: &'static str,
    group_override: bool,
) -> SettingDef {
    SettingDef {
        key,
        name,
        description,
        category,
        kind,
        default,
        group_override,
    }
}

use Category::{Basic, Keys, Request};

/// GPT-Load v1's settings, its defaults and minimums, in the console's order. `name` is v1's
/// en-US label; `description` is ours, in English. Both in zh-CN and ja-JP are in `i18n`.
pub const SETTINGS: &[SettingDef] = &[
    def(
        "app_url",
        "Application URL",
        "Base URL used to show each group's endpoint.",
        Basic,
        Kind::Text { required: true },
        "http://localhost:3001",
        false,
    ),
    def(
        "proxy_keys",
        "Global Proxy Keys",
        "Comma-separated keys clients may use for every group.",
        Basic,
        Kind::Text { required: true },
        "",
        false,
    ),
    def(
        "request_log_retention_days",
        "Log Retention Days",
        "Days request logs are kept; 0 keeps them forever.",
        Basic,
        Kind::Int { min: 0 },
        "7",
        false,
    ),
    def(
        "request_log_write_interval_minutes",
        "Log Write Interval (minutes)",
        "How often buffered request logs are written; 0 writes them at once.",
        Basic,
        Kind::Int { min: 0 },
        "1",
        false,
    ),
    def(
        "enable_request_body_logging",
        "Enable Request Body Logging",
        "Store the request body (up to 65,000 characters) and user agent with each log.",
        Basic,
        Kind::Bool,
        "false",
        true,
    ),
    def(
        "request_timeout",
        "Request Timeout (seconds)",
        "Longest time for a whole non-stream request.",
        Request,
        Kind::Int { min: 1 },
        "600",
        true,
    ),
    def(
        "connect_timeout",
        "Connect Timeout (seconds)",
        "Longest time to open a connection to an upstream.",
        Request,
        Kind::Int { min: 1 },
        "15",
        true,
    ),
    def(
        "idle_conn_timeout",
        "Idle Connection Timeout (seconds)",
        "How long an idle upstream connection is kept for reuse.",
        Request,
        Kind::Int { min: 1 },
        "120",
        true,
    ),
    def(
        "response_header_timeout",
        "Response Header Timeout (seconds)",
        "Longest wait for an upstream's response headers, streams included.",
        Request,
        Kind::Int { min: 1 },
        "600",
        true,
    ),
    def(
        "stream_idle_timeout",
        "Stream Idle Timeout (seconds)",
        "Longest silence between two chunks of a streamed response before it is cut; 0 never cuts.",
        Request,
        Kind::Int { min: 0 },
        "300",
        true,
    ),
    def(
        "max_idle_conns",
        "Max Idle Connections",
        "Idle upstream connections kept in total.",
        Request,
        Kind::Int { min: 1 },
        "100",
        true,
    ),
    def(
        "max_idle_conns_per_host",
        "Max Idle Connections Per Host",
        "Idle upstream connections kept per upstream host.",
        Request,
        Kind::Int { min: 1 },
        "50",
        true,
    ),
    def(
        "proxy_url",
        "Proxy Server URL",
        "Outbound HTTP/HTTPS/SOCKS5 proxy for upstream requests; empty uses HTTP_PROXY/HTTPS_PROXY.",
        Request,
        Kind::Text { required: false },
        "",
        true,
    ),
    def(
        "max_retries",
        "Max Retries",
        "Extra attempts with other keys after a failed one.",
        Keys,
        Kind::Int { min: 0 },
        "3",
        true,
    ),
    def(
        "blacklist_threshold",
        "Blacklist Threshold",
        "Counted failures after which a key becomes invalid; 0 never blacklists.",
        Keys,
        Kind::Int { min: 0 },
        "3",
        true,
    ),
    def(
        "failover_status_codes",
        "Failover Status Codes",
        "Upstream statuses that fail an attempt and move to the next key, e.g. 400-403,405-999.",
        Keys,
        Kind::FailoverCodes,
        engine::failover::DEFAULT_FAILOVER_CODES,
        true,
    ),
    def(
        "key_validation_interval_minutes",
        "Key Validation Interval (minutes)",
        "How often invalid keys are re-checked.",
        Keys,
        Kind::Int { min: 1 },
        "60",
        true,
    ),
    def(
        "key_validation_concurrency",
        "Key Validation Concurrency",
        "Keys validated in parallel.",
        Keys,
        Kind::Int { min: 1 },
        "10",
        true,
    ),
    def(
        "key_validation_timeout_seconds",
        "Key Validation Timeout (seconds)",
        "Longest time for one validation request.",
        Keys,
        Kind::Int { min: 1 },
        "20",
        true,
    ),
];

pub fn find(key: &str) -> Option<&'static SettingDef> {
    SETTINGS.iter().find(|d| d.key == key)
}

/// Current values, as stored (strings), for every known key.
#[derive(Debug, Clone)]
pub struct SystemSettings {
    values: BTreeMap<&'static str, String>,
    /// HTTP_PROXY/HTTPS_PROXY/NO_PROXY, read once at start: the proxy rule of groups without a
    /// `proxy_url` (the environment layer under the system settings).
    env_proxy: Option<Arc<OutboundProxy>>,
}

impl SystemSettings {
    /// Builds from stored rows; unknown rows are ignored, missing or unparsable values fall back
    /// to the default (a v1 database may hold anything).
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut values: BTreeMap<&'static str, String> = SETTINGS
            .iter()
            .map(|d| (d.key, d.default.to_string()))
            .collect();
        for (key, value) in rows {
            if let Some(def) = find(key).filter(|d| validate_stored(d, value)) {
                values.insert(def.key, value.to_string());
            }
        }
        Self {
            values,
            env_proxy: None,
        }
    }

    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn int(&self, key: &str) -> i64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| find(key).and_then(|d| d.default.parse().ok()).unwrap_or(0))
    }

    pub fn with_env_proxy(mut self, env_proxy: Option<Arc<OutboundProxy>>) -> Self {
        self.env_proxy = env_proxy;
        self
    }

    /// A group's proxy rule, hosts not resolved yet: its `proxy_url`, else the system's, else
    /// the environment's. A stored URL that does not parse (validation rejects new ones) is
    /// logged and skipped.
    pub fn proxy_rule(
        &self,
        group_config: &serde_json::Map<String, Value>,
    ) -> Option<Arc<OutboundProxy>> {
        let url = group_config
            .get("proxy_url")
            .and_then(Value::as_str)
            .unwrap_or_else(|| self.get("proxy_url"))
            .trim();
        if url.is_empty() {
            return self.env_proxy.clone();
        }
        match ProxyServer::parse(url) {
            Ok(server) => Some(Arc::new(OutboundProxy::Fixed(server))),
            Err(e) => {
                tracing::warn!("proxy_url: {e}; using the environment's proxy settings");
                self.env_proxy.clone()
            }
        }
    }

    pub fn set(&mut self, key: &'static str, value: String) {
        self.values.insert(key, value);
    }

    /// The value as JSON, typed per the table.
    pub fn typed(&self, def: &SettingDef) -> Value {
        typed_value(def, self.get(def.key))
    }

    /// Global proxy keys, split and trimmed.
    pub fn proxy_keys(&self) -> Vec<String> {
        split_list(self.get("proxy_keys"))
    }

    /// The engine's view of a group: these settings overlaid with the group's `config`.
    pub fn effective(&self, group_config: &serde_json::Map<String, Value>) -> GroupSettings {
        let int = |key: &str| -> i64 {
            group_config
                .get(key)
                .and_then(Value::as_i64)
                .unwrap_or_else(|| self.int(key))
        };
        let secs = |key: &str| Duration::from_secs(int(key).max(1) as u64);
        let failover = group_config
            .get("failover_status_codes")
            .and_then(Value::as_str)
            .unwrap_or_else(|| self.get("failover_status_codes"));
        let body_logging = group_config
            .get("enable_request_body_logging")
            .and_then(Value::as_bool)
            .unwrap_or(self.get("enable_request_body_logging") == "true");
        GroupSettings {
            max_retries: int("max_retries").clamp(0, 100) as u32,
            blacklist_threshold: int("blacklist_threshold").max(0) as u64,
            failover_codes: FailoverCodes::parse(failover).unwrap_or_default(),
            connect_timeout: secs("connect_timeout"),
            response_header_timeout: secs("response_header_timeout"),
            request_timeout: secs("request_timeout"),
            idle_conn_timeout: secs("idle_conn_timeout"),
            stream_idle_timeout: Some(int("stream_idle_timeout"))
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s as u64)),
            max_idle_conns_per_host: int("max_idle_conns_per_host").max(1) as usize,
            max_idle_conns: int("max_idle_conns").max(1) as usize,
            enable_request_body_logging: body_logging,
            proxy: self.proxy_rule(group_config),
        }
    }
}

pub fn typed_value(def: &SettingDef, stored: &str) -> Value {
    match def.kind {
        Kind::Int { .. } => stored
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::Null),
        Kind::Bool => Value::Bool(stored == "true"),
        Kind::Text { .. } | Kind::FailoverCodes => Value::String(stored.to_string()),
    }
}

fn validate_stored(def: &SettingDef, value: &str) -> bool {
    match def.kind {
        Kind::Int { min } => value.parse::<i64>().is_ok_and(|v| v >= min),
        Kind::Bool => value == "true" || value == "false",
        Kind::Text { .. } => true,
        Kind::FailoverCodes => FailoverCodes::parse(value).is_ok(),
    }
}

/// Splits a comma list, trims, drops empties.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Checks one value sent to `PUT /api/settings` or in a group's `config`; returns the string to
/// store. Errors name the setting and what is expected.
pub fn validate_value(def: &SettingDef, value: &Value) -> Result<String, String> {
    match (def.kind, value) {
        (Kind::Int { min }, Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= min => Ok(v.to_string()),
            Some(_) => Err(format!("{} must be at least {min}", def.key)),
            None => Err(format!("{} must be an integer", def.key)),
        },
        (Kind::Int { .. }, _) => Err(format!("{} must be an integer", def.key)),
        (Kind::Bool, Value::Bool(b)) => Ok(b.to_string()),
        (Kind::Bool, _) => Err(format!("{} must be true or false", def.key)),
        (Kind::Text { required }, Value::String(s)) => {
            let s = if def.key == "proxy_keys" {
                split_list(s).join(",")
            } else {
                s.trim().to_string()
            };
            if required && s.is_empty() {
                return Err(format!("{} is required", def.key));
            }
            if def.key == "proxy_url" && !s.is_empty() {
                ProxyServer::parse(&s).map_err(|e| format!("proxy_url: {e}"))?;
            }
            Ok(s)
        }
        (Kind::Text { .. }, _) => Err(format!("{} must be a string", def.key)),
        (Kind::FailoverCodes, Value::String(s)) => {
            FailoverCodes::parse(s).map_err(|e| e.to_string())?;
            Ok(s.trim().to_string())
        }
        (Kind::FailoverCodes, _) => Err(format!("{} must be a string", def.key)),
    }
}

/// Validates a group's `config` object: only overridable keys, typed and within limits.
pub fn validate_group_config(config: &serde_json::Map<String, Value>) -> Result<(), String> {
    for (key, value) in config {
        let def = find(key)
            .filter(|d| d.group_override)
            .ok_or_else(|| format!("invalid config key for a group: {key}"))?;
        if value.is_null() {
            continue;
        }
        validate_value(def, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_stored_values() {
        let s = SystemSettings::from_rows([
            ("max_retries", "5"),
            ("blacklist_threshold", "-1"),
            ("unknown", "x"),
        ]);
        assert_eq!(s.int("max_retries"), 5);
        assert_eq!(
            s.int("blacklist_threshold"),
            3,
            "invalid stored value falls back to default"
        );
        assert_eq!(s.get("failover_status_codes"), "400-403,405-999");
    }

    #[test]
    fn group_overrides_win() {
        let s = SystemSettings::from_rows([]);
        let config =
            json!({"max_retries": 0, "blacklist_threshold": 1, "failover_status_codes": "429"});
        let eff = s.effective(config.as_object().unwrap());
        assert_eq!((eff.max_retries, eff.blacklist_threshold), (0, 1));
        assert!(eff.failover_codes.contains(429) && !eff.failover_codes.contains(500));
        assert_eq!(eff.request_timeout, Duration::from_secs(600));
    }

    #[test]
    fn validation_rules() {
        let retries = find("max_retries").unwrap();
        assert_eq!(validate_value(retries, &json!(2)).unwrap(), "2");
        assert!(validate_value(retries, &json!(-1)).is_err());
        assert!(validate_value(retries, &json!(1.5)).is_err());
        assert!(validate_value(retries, &json!("2")).is_err());
        assert!(validate_value(find("failover_status_codes").unwrap(), &json!("abc")).is_err());
        assert_eq!(
            validate_value(find("proxy_keys").unwrap(), &json!(" a, ,b ")).unwrap(),
            "a,b"
        );
        assert!(validate_value(find("app_url").unwrap(), &json!("")).is_err());
        assert!(validate_group_config(json!({"app_url": "x"}).as_object().unwrap()).is_err());
        assert!(validate_group_config(json!({"max_retries": 1}).as_object().unwrap()).is_ok());
    }

    #[test]
    fn proxy_url_validation_and_layers() {
        let def = find("proxy_url").unwrap();
        assert_eq!(validate_value(def, &json!(" ")).unwrap(), "");
        assert_eq!(
            validate_value(def, &json!("socks5h://u:p@h:1")).unwrap(),
            "socks5h://u:p@h:1"
        );
        let e = validate_value(def, &json!("ftp://user:hunter2@h")).unwrap_err();
        assert!(
            e.starts_with("proxy_url: ") && !e.contains("hunter2"),
            "{e}"
        );
        let bad_group = json!({"proxy_url": "http://h:badport"});
        assert!(validate_group_config(bad_group.as_object().unwrap()).is_err());

        let env = OutboundProxy::from_env(|n| (n == "HTTP_PROXY").then(|| "http://env:1".into()))
            .unwrap()
            .map(Arc::new);
        let system = SystemSettings::from_rows([("proxy_url", "http://system:1")])
            .with_env_proxy(env.clone());
        let host = |config: serde_json::Value, settings: &SystemSettings| {
            let rule = settings.effective(config.as_object().unwrap()).proxy?;
            Some(rule.servers()[0].host.to_string())
        };
        assert_eq!(host(json!({}), &system).as_deref(), Some("system"));
        let group = json!({"proxy_url": "socks5://group:1"});
        assert_eq!(host(group, &system).as_deref(), Some("group"));
        let no_url = SystemSettings::from_rows([]).with_env_proxy(env);
        assert_eq!(host(json!({}), &no_url).as_deref(), Some("env"));
        assert_eq!(host(json!({}), &SystemSettings::from_rows([])), None);
    }
}
