//! The rows the store reads and writes, in the words of GPT-Load v1's tables (spec §1).
//!
//! These are plain data: no validation, no parsing of the JSON columns (the control plane owns
//! what `upstreams` or `config` mean). Times are UTC; how each backend stores them is its own
//! business. A column that is NULL in the database reads as `""`, `0`, `false` or `None`.

use chrono::{DateTime, Utc};

/// One `system_settings` row.
#[derive(Debug, Clone)]
pub struct SettingRow {
    pub key: String,
    pub value: String,
    pub description: String,
}

/// One `groups` row.
#[derive(Debug, Clone, Default)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// `standard` or `aggregate`; a NULL or empty column reads as `standard`, as v1 treats it.
    pub group_type: String,
    /// Raw JSON text: an array of `{url, weight}`.
    pub upstreams: String,
    pub validation_endpoint: String,
    pub channel_type: String,
    pub sort: i64,
    pub test_model: String,
    /// Raw JSON text (a map), `""` when NULL.
    pub param_overrides: String,
    /// Raw JSON text (a map of per-group setting overrides), `""` when NULL.
    pub config: String,
    /// Raw JSON text (an array of `{key, value, action}`), `""` when NULL.
    pub header_rules: String,
    /// Raw JSON text (a map of model → model), `""` when NULL.
    pub model_redirect_rules: String,
    pub model_redirect_strict: bool,
    /// Comma-separated group-specific proxy keys, plaintext.
    pub proxy_keys: String,
    pub last_validated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One `group_sub_groups` row: `sub_group_id` is a member of the aggregate `group_id`.
#[derive(Debug, Clone)]
pub struct SubGroupRow {
    pub group_id: i64,
    pub sub_group_id: i64,
    /// 0..=1000; 0 means temporarily out of rotation.
    pub weight: i64,
}

/// One `api_keys` row (an upstream provider key).
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: i64,
    /// Plaintext, or AES-GCM hex ciphertext when ENCRYPTION_KEY is set.
    pub key_value: String,
    /// SHA-256 (or HMAC-SHA256) hex of the plaintext: dedupe, search and log correlation.
    pub key_hash: String,
    pub group_id: i64,
    /// `active` or `invalid`.
    pub status: String,
    pub notes: String,
    pub request_count: i64,
    pub failure_count: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A key to import: its stored value and its lookup hash, both computed by the caller.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub value: String,
    pub hash: String,
}

/// A page of a group's keys, as the keys page of the console asks for it.
#[derive(Debug, Clone, Default)]
pub struct KeyQuery {
    /// The group; 0 means every group.
    pub group_id: i64,
    /// Only keys with this status.
    pub status: Option<String>,
    /// Only keys with this hash (the console's exact-match search).
    pub key_hash: Option<String>,
    /// 1-based; values below 1 read as 1.
    pub page: i64,
    /// Values below 1 read as 15, GPT-Load's default page size.
    pub page_size: i64,
}

/// One `request_logs` row: one attempt of one proxied request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRow {
    /// A UUID (v7 from the log writer); a row whose id is already stored is skipped, so a
    /// replayed batch counts once.
    pub id: String,
    pub timestamp: DateTime<Utc>,
    pub group_id: i64,
    pub group_name: String,
    /// The aggregate group the request came through; 0 = none.
    pub parent_group_id: i64,
    pub parent_group_name: String,
    pub key_value: String,
    pub key_hash: String,
    pub model: String,
    pub is_success: bool,
    pub source_ip: String,
    pub status_code: i64,
    pub request_path: String,
    pub duration_ms: i64,
    pub error_message: String,
    pub user_agent: String,
    /// `retry` (a failed attempt that was retried) or `final`.
    pub request_type: String,
    pub upstream_addr: String,
    pub is_stream: bool,
    pub request_body: String,
    /// The `X-Request-Id` of the client request (our addition to v1's columns).
    pub request_id: String,
}

/// The failure accounting of one key, as the data plane last saw it.
#[derive(Debug, Clone)]
pub struct KeyStateUpdate {
    pub key_id: i64,
    pub failure_count: i64,
    pub status: String,
}

/// Successful requests one key served since its usage was last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsage {
    pub key_id: i64,
    pub requests: i64,
    pub last_used_at: DateTime<Utc>,
}

/// Everything one log flush writes, in one transaction (spec §2.14).
#[derive(Debug, Clone, Default)]
pub struct FlushBatch {
    pub logs: Vec<LogRow>,
    pub key_states: Vec<KeyStateUpdate>,
    /// Added to `api_keys.request_count`, `last_used_at` set to the latest, by key id. The
    /// caller sums them (over a whole write interval, so a busy key costs one update per
    /// interval rather than one per request); log rows are not counted again.
    pub key_usage: Vec<KeyUsage>,
}

impl FlushBatch {
    pub fn is_empty(&self) -> bool {
        self.logs.is_empty() && self.key_states.is_empty() && self.key_usage.is_empty()
    }
}

/// The console's log search (spec §3.3): every filter that is `Some` must match.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Substring of `parent_group_name` (case-insensitive for ASCII, as SQLite's LIKE).
    pub parent_group_name: Option<String>,
    /// Substring of `group_name`.
    pub group_name: Option<String>,
    /// Exactly this `key_hash` (the console searches a key by its value; the caller hashes).
    pub key_hash: Option<String>,
    /// Substring of `model`.
    pub model: Option<String>,
    pub is_success: Option<bool>,
    /// `retry` or `final`.
    pub request_type: Option<String>,
    pub status_code: Option<i64>,
    /// Exactly this client address.
    pub source_ip: Option<String>,
    /// Substring of `error_message`.
    pub error_contains: Option<String>,
    /// Exactly this `request_id` (the `X-Request-Id` a client was given; ours, not v1's).
    pub request_id: Option<String>,
    /// Logs at or after this time.
    pub start: Option<DateTime<Utc>>,
    /// Logs at or before this time.
    pub end: Option<DateTime<Utc>>,
}

/// A key that produced matching logs, with its latest matching log's group and status (the
/// log export: "which keys got 429").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    pub key_hash: String,
    /// As stored: plain text, or ciphertext when ENCRYPTION_KEY is set.
    pub key_value: String,
    pub group_name: String,
    pub status_code: i64,
}

/// One `group_hourly_stats` row: final attempts of one group in the hour starting at `time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyStat {
    pub time: DateTime<Utc>,
    pub group_id: i64,
    pub success_count: i64,
    pub failure_count: i64,
}
