//! Helpers shared by the integration tests: a store on a fresh file, raw access to that file,
//! and rows with sensible values to start from.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use store::{GroupRow, LogRow, NewKey, Store};
use tempfile::TempDir;

/// A store on a new file in its own temporary directory (removed on drop).
pub struct TestDb {
    pub dir: TempDir,
    pub path: PathBuf,
    pub store: Store,
}

pub async fn fresh() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gpt-load.db");
    let store = Store::open(path.to_str().expect("utf-8 temp path"))
        .await
        .expect("open fresh store");
    TestDb { dir, path, store }
}

/// A second, plain connection to the file, to look at or plant what the API does not show.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

pub fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("test time is RFC 3339")
        .to_utc()
}

pub fn group(name: &str) -> GroupRow {
    GroupRow {
        name: name.to_owned(),
        display_name: format!("{name} display"),
        group_type: "standard".to_owned(),
        upstreams: r#"[{"url":"https://api.example.com","weight":1}]"#.to_owned(),
        channel_type: "openai".to_owned(),
        test_model: "gpt-4.1-nano".to_owned(),
        ..GroupRow::default()
    }
}

pub fn new_keys(prefix: &str, count: usize) -> Vec<NewKey> {
    (0..count)
        .map(|i| NewKey {
            value: format!("{prefix}-key-{i}"),
            hash: format!("{prefix}-hash-{i}"),
        })
        .collect()
}

/// A successful final attempt by the key with `key_hash` in `group_id`.
pub fn log(id: &str, at: DateTime<Utc>, group_id: i64, key_hash: &str) -> LogRow {
    LogRow {
        id: id.to_owned(),
        timestamp: at,
        group_id,
        group_name: format!("group-{group_id}"),
        parent_group_id: 0,
        parent_group_name: String::new(),
        key_value: format!("value-of-{key_hash}"),
        key_hash: key_hash.to_owned(),
        model: "gpt-4.1".to_owned(),
        is_success: true,
        source_ip: "127.0.0.1".to_owned(),
        status_code: 200,
        request_path: "/proxy/x/v1/chat/completions".to_owned(),
        duration_ms: 120,
        error_message: String::new(),
        user_agent: String::new(),
        request_type: "final".to_owned(),
        upstream_addr: "https://api.example.com".to_owned(),
        is_stream: false,
        request_body: String::new(),
        request_id: String::new(),
    }
}
