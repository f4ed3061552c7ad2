//! Opening databases: the schema the migrations create, reopening, GPT-Load v1 files as GORM
//! left them, odd values, and which DSNs mean what.

mod common;

use std::collections::BTreeSet;

use common::{fresh, raw, utc};
use store::{FlushBatch, Store, StoreError};

const TABLES: [&str; 6] = [
    "api_keys",
    "group_hourly_stats",
    "group_sub_groups",
    "groups",
    "request_logs",
    "system_settings",
];

/// v1's request log indexes that V3 drops: no query reads them (see the migration).
const DROPPED_BY_V3: [&str; 6] = [
    "idx_request_logs_group_id",
    "idx_request_logs_group_name",
    "idx_request_logs_model",
    "idx_request_logs_parent_group_id",
    "idx_request_logs_parent_group_name",
    "idx_request_logs_request_type",
];

const INDEXES: [&str; 9] = [
    "idx_api_keys_group_id",
    "idx_api_keys_group_last_used_id",
    "idx_api_keys_key_hash",
    "idx_api_keys_status",
    "idx_group_sub",
    "idx_group_time",
    "idx_request_logs_key_hash",
    "idx_request_logs_request_id",
    "idx_request_logs_timestamp",
];

fn names(conn: &rusqlite::Connection, kind: &str) -> BTreeSet<String> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = ?1 \
             AND name NOT LIKE 'sqlite_%' AND name != 'refinery_schema_history'",
        )
        .expect("prepare");
    stmt.query_map([kind], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("names")
}

fn index_columns(conn: &rusqlite::Connection, index: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
        .expect("prepare");
    stmt.query_map([index], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("columns")
}

fn is_unique(conn: &rusqlite::Connection, table: &str, index: &str) -> bool {
    conn.query_row(
        "SELECT \"unique\" FROM pragma_index_list(?1) WHERE name = ?2",
        [table, index],
        |row| row.get::<_, i64>(0),
    )
    .expect("index listed")
        == 1
}

fn migration_versions(conn: &rusqlite::Connection) -> Vec<i64> {
    let mut stmt = conn
        .prepare("SELECT version FROM refinery_schema_history ORDER BY version")
        .expect("prepare");
    stmt.query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("versions")
}

#[tokio::test]
async fn migrations_create_every_table_and_index() {
    let db = fresh().await;
    let conn = raw(&db.path);

    let want_tables: BTreeSet<String> = TABLES.iter().map(|t| t.to_string()).collect();
    assert_eq!(names(&conn, "table"), want_tables);
    let want_indexes: BTreeSet<String> = INDEXES.iter().map(|t| t.to_string()).collect();
    assert_eq!(names(&conn, "index"), want_indexes);

    assert_eq!(
        index_columns(&conn, "idx_api_keys_group_last_used_id"),
        ["group_id", "last_used_at", "id"]
    );
    assert_eq!(
        index_columns(&conn, "idx_group_sub"),
        ["group_id", "sub_group_id"]
    );
    assert_eq!(index_columns(&conn, "idx_group_time"), ["time", "group_id"]);
    assert!(is_unique(&conn, "group_sub_groups", "idx_group_sub"));
    assert!(is_unique(&conn, "group_hourly_stats", "idx_group_time"));
    assert!(!is_unique(&conn, "api_keys", "idx_api_keys_key_hash"));

    // setting_key and name are unique through table constraints, as GORM declares them.
    let dup = conn.execute_batch(
        "INSERT INTO system_settings (setting_key, setting_value) VALUES ('a', '1');
         INSERT INTO system_settings (setting_key, setting_value) VALUES ('a', '2');",
    );
    assert!(dup.is_err(), "duplicate setting_key must be refused");
    assert_eq!(migration_versions(&conn), [1, 2, 3]);
    assert_eq!(db.store.dialect(), "sqlite");
}

fn page_size(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("PRAGMA page_size", [], |row| row.get(0))
        .expect("page_size")
}

#[tokio::test]
async fn pragmas_are_set() {
    let db = fresh().await;
    let conn = raw(&db.path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    assert_eq!(
        page_size(&conn),
        16384,
        "a database we create gets 16 KiB pages"
    );
}

/// The page size of an existing file is its own: a v1 database keeps SQLite's 4 KiB default
/// (changing it would mean rewriting the whole file) and is written to as it is.
#[tokio::test]
async fn existing_database_keeps_its_page_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = create_from_fixture(&dir, include_str!("fixtures/gorm_v1_sqlite.sql"));
    let store = Store::open(path.to_str().expect("utf-8"))
        .await
        .expect("open v1 db");
    let batch = FlushBatch {
        logs: vec![common::log(
            "log-1",
            utc("2026-12-03T10:00:00Z"),
            1,
            "hash-1",
        )],
        key_states: Vec::new(),
        key_usage: Vec::new(),
    };
    store.write_batch_blocking(&batch).expect("write a log row");
    let conn = raw(&path);
    assert_eq!(page_size(&conn), 4096);
    let rows: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM request_logs WHERE id = 'log-1'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn opening_twice_is_idempotent() {
    let db = fresh().await;
    let path = db.path.to_str().expect("utf-8").to_owned();
    let inserted = db
        .store
        .insert_group(common::group("kept"))
        .await
        .expect("insert");
    drop(db.store);

    let again = Store::open(&path).await.expect("reopen");
    let groups = again.list_groups().await.expect("list");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].id, inserted.id);
    let conn = raw(&db.path);
    assert_eq!(migration_versions(&conn), [1, 2, 3]);
    assert_eq!(names(&conn, "index").len(), INDEXES.len());

    // A third open while the second is still live (two processes on one file) works too.
    let third = Store::open(&path).await.expect("open alongside");
    assert_eq!(third.list_groups().await.expect("list").len(), 1);
}

fn create_from_fixture(dir: &tempfile::TempDir, sql: &str) -> std::path::PathBuf {
    let path = dir.path().join("v1.db");
    raw(&path).execute_batch(sql).expect("build v1 database");
    path
}

#[tokio::test]
async fn gorm_v1_database_opens_as_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = create_from_fixture(&dir, include_str!("fixtures/gorm_v1_sqlite.sql"));
    let schema_before: Vec<String> = {
        let conn = raw(&path);
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .expect("prepare");
        stmt.query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("schema")
    };

    let store = Store::open(path.to_str().expect("utf-8"))
        .await
        .expect("open v1 db");

    // Nothing of v1's schema was changed or added; only refinery's history table is new.
    let conn = raw(&path);
    let mut stmt = conn
        .prepare(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL \
             AND tbl_name != 'refinery_schema_history' ORDER BY name",
        )
        .expect("prepare");
    let schema_after: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("schema");
    // v1's schema is kept as it was but for the request log indexes V3 drops (v1 recreates
    // them should it open the file again); our additions only add a column and its index.
    let ours = |sql: &String| sql.contains("idx_request_logs_request_id");
    let schema_before: Vec<String> = schema_before
        .into_iter()
        .filter(|sql| {
            !DROPPED_BY_V3
                .iter()
                .any(|i| sql.contains(&format!("`{i}`")))
        })
        .collect();
    let after: Vec<String> = schema_after
        .iter()
        .filter(|sql| !ours(sql))
        .map(|sql| sql.replace(", request_id varchar(64)", ""))
        .collect();
    assert_eq!(after, schema_before);
    assert!(
        schema_after
            .iter()
            .any(|sql| sql.contains("request_id varchar(64)"))
    );
    assert_eq!(migration_versions(&conn), [1, 2, 3]);

    let settings = store.load_settings().await.expect("settings");
    assert_eq!(settings.len(), 3);
    assert_eq!(settings[1].key, "proxy_keys");
    assert_eq!(settings[1].value, "sk-123456");
    assert_eq!(
        settings[2].description, "",
        "NULL description reads as empty"
    );

    let groups = store.list_groups().await.expect("groups");
    let order: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(order, ["gemini", "mix", "openai"], "sort asc");

    let openai = &groups[2];
    assert_eq!(openai.id, 1);
    assert_eq!(openai.display_name, "OpenAI");
    assert_eq!(openai.proxy_keys, "gk-a,gk-b");
    assert_eq!(
        openai.upstreams,
        r#"[{"url":"https://api.openai.com","weight":1}]"#
    );
    assert_eq!(openai.param_overrides, r#"{"temperature":0.5}"#);
    assert_eq!(openai.config, r#"{"max_retries":3}"#);
    assert_eq!(openai.model_redirect_rules, r#"{"gpt-4":"gpt-4.1"}"#);
    assert!(openai.model_redirect_strict);
    assert_eq!(openai.sort, 2);
    assert_eq!(
        openai.last_validated_at,
        Some(utc("2025-09-01T04:30:00.5Z"))
    );
    assert_eq!(openai.created_at, utc("2025-09-01T04:00:00.123456789Z"));
    assert_eq!(openai.updated_at, utc("2025-09-01T04:10:00.123456789Z"));

    let gemini = &groups[0];
    assert_eq!(gemini.group_type, "standard", "NULL group_type is standard");
    assert_eq!(gemini.display_name, "");
    assert_eq!(gemini.proxy_keys, "");
    assert_eq!(gemini.param_overrides, "");
    assert_eq!(gemini.config, "");
    assert_eq!(gemini.header_rules, "");
    assert!(!gemini.model_redirect_strict);
    assert_eq!(gemini.last_validated_at, None);
    assert_eq!(groups[1].group_type, "aggregate");

    let links = store.list_sub_groups().await.expect("sub groups");
    let pairs: Vec<(i64, i64, i64)> = links
        .iter()
        .map(|l| (l.group_id, l.sub_group_id, l.weight))
        .collect();
    assert_eq!(pairs, [(3, 1, 10), (3, 2, 0)]);

    let keys = store.all_keys().await.expect("keys");
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0].key_value, "sk-live-1");
    assert_eq!(keys[0].notes, "primary");
    assert_eq!(keys[0].request_count, 42);
    assert_eq!(
        keys[0].last_used_at,
        Some(utc("2025-09-01T04:00:00.123456789Z"))
    );
    assert_eq!(keys[1].status, "invalid");
    assert_eq!(keys[1].notes, "", "NULL notes read as empty");
    assert_eq!(keys[1].failure_count, 3);
    assert_eq!(keys[1].last_used_at, None);
    assert_eq!(keys[2].created_at, utc("2025-09-01T02:00:00Z"));

    // The flush works against GORM's indexes: the served key's usage bumps its counter and
    // the hourly stats upsert lands on idx_group_time.
    let at = utc("2025-09-01T05:10:00Z");
    store
        .write_batch(FlushBatch {
            logs: vec![common::log("new-log-1", at, 1, "hash-1")],
            key_states: vec![],
            key_usage: vec![store::KeyUsage {
                key_id: keys[0].id,
                requests: 1,
                last_used_at: at,
            }],
        })
        .await
        .expect("flush into v1 db");
    let key = store.keys_of_group(1).await.expect("keys")[0].clone();
    assert_eq!(key.request_count, 43);
    assert_eq!(key.last_used_at, Some(at));
}

fn column_names(conn: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .expect("prepare");
    stmt.query_map([table], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("columns")
}

#[tokio::test]
async fn older_v1_database_gains_the_columns_it_lacks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = create_from_fixture(&dir, include_str!("fixtures/gorm_v1_2_sqlite.sql"));

    let store = Store::open(path.to_str().expect("utf-8"))
        .await
        .expect("open old v1 db");

    let conn = raw(&path);
    assert!(column_names(&conn, "api_keys").contains(&"notes".to_owned()));
    let log_columns = column_names(&conn, "request_logs");
    for column in ["parent_group_id", "parent_group_name", "request_type"] {
        assert!(log_columns.contains(&column.to_owned()), "{column} added");
    }
    assert!(names(&conn, "table").contains("group_sub_groups"));
    // The v1 index that came with the new column is among those V3 drops.
    assert!(!names(&conn, "index").contains("idx_request_logs_parent_group_id"));

    let group = store.get_group(1).await.expect("get").expect("group 1");
    assert_eq!(group.name, "old");
    assert_eq!(group.group_type, "standard");
    assert!(!group.model_redirect_strict);
    assert_eq!(group.model_redirect_rules, "");
    let keys = store.keys_of_group(1).await.expect("keys");
    assert_eq!(keys[0].notes, "");
    assert_eq!(keys[0].status, "active");

    let mut entry = common::log("old-1", utc("2025-09-01T05:00:00Z"), 1, "hash-old");
    entry.parent_group_id = 9;
    store
        .write_batch(FlushBatch {
            logs: vec![entry],
            key_states: vec![],
            key_usage: vec![],
        })
        .await
        .expect("flush with the added columns");
    let stats: i64 = conn
        .query_row("SELECT COUNT(*) FROM group_hourly_stats", [], |row| {
            row.get(0)
        })
        .expect("count");
    assert_eq!(stats, 2, "one row for the group, one for its parent");
}

#[tokio::test]
async fn odd_values_read_without_panicking() {
    let db = fresh().await;
    raw(&db.path)
        .execute_batch(
            "INSERT INTO \"groups\" (id, name, upstreams, channel_type, test_model, sort, \
               model_redirect_strict, last_validated_at, created_at, updated_at) \
             VALUES (7, 'odd', '', 'openai', '-', '12', 'true', 'not a time', NULL, 1756699200);
             INSERT INTO api_keys (id, key_value, key_hash, group_id, status, request_count, \
               failure_count, last_used_at, created_at) \
             VALUES (5, X'FF00', NULL, 7, 'active', 3.9, 'many', X'00', '2025-09-01T12:00:00Z');",
        )
        .expect("plant odd rows");

    let group = db.store.get_group(7).await.expect("get").expect("group 7");
    assert_eq!(group.sort, 12);
    assert!(group.model_redirect_strict);
    assert_eq!(group.last_validated_at, None);
    assert_eq!(group.created_at, chrono::DateTime::UNIX_EPOCH);
    assert_eq!(
        group.updated_at,
        utc("2025-09-01T04:00:00Z"),
        "unix seconds"
    );
    assert_eq!(group.upstreams, "");

    let key = &db.store.all_keys().await.expect("keys")[0];
    assert_eq!(key.key_value, "\u{FFFD}\u{0}");
    assert_eq!(key.key_hash, "");
    assert_eq!(key.request_count, 3);
    assert_eq!(key.failure_count, 0);
    assert_eq!(key.last_used_at, None);
    assert_eq!(key.created_at, utc("2025-09-01T12:00:00Z"));
}

#[tokio::test]
async fn postgres_dsn_is_unsupported_and_masked() {
    let err = Store::open("postgres://gpt:hunter2@db.local:5432/gptload?sslmode=disable")
        .await
        .expect_err("PostgreSQL is not supported yet");
    let StoreError::Unsupported(message) = err else {
        panic!("want Unsupported, got {err:?}");
    };
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.contains("postgres://gpt:***@db.local:5432/gptload"),
        "{message}"
    );
    assert!(message.contains("PostgreSQL"), "{message}");
    assert!(message.contains("use a SQLite path for now"), "{message}");
}

#[tokio::test]
async fn mysql_dsn_is_unsupported_and_masked() {
    let err =
        Store::open("root:s3cret@tcp(127.0.0.1:3306)/gpt-load?charset=utf8mb4&parseTime=True")
            .await
            .expect_err("MySQL is not supported yet");
    let StoreError::Unsupported(message) = err else {
        panic!("want Unsupported, got {err:?}");
    };
    assert!(!message.contains("s3cret"), "{message}");
    assert!(
        message.contains("root:***@tcp(127.0.0.1:3306)/gpt-load"),
        "{message}"
    );
    assert!(
        message.contains("MySQL support arrives in a later release"),
        "{message}"
    );
}

#[tokio::test]
async fn sqlite_path_creates_nested_directories() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a").join("b").join("gpt-load.db");
    let store = Store::open(path.to_str().expect("utf-8"))
        .await
        .expect("open nested");
    assert!(path.is_file());
    assert_eq!(store.dialect(), "sqlite");
}

#[tokio::test]
async fn empty_dsn_is_refused() {
    assert!(matches!(
        Store::open("").await,
        Err(StoreError::Unsupported(_))
    ));
}

#[tokio::test]
async fn unopenable_path_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A directory where the database file should be.
    let err = Store::open(dir.path().to_str().expect("utf-8"))
        .await
        .expect_err("a directory is not a database");
    let StoreError::Db(message) = err else {
        panic!("want Db, got {err:?}");
    };
    assert!(
        message.contains(dir.path().to_str().expect("utf-8")),
        "{message}"
    );
}

#[tokio::test]
async fn in_memory_database_works() {
    let store = Store::open(":memory:").await.expect("open :memory:");
    let g = store
        .insert_group(common::group("mem"))
        .await
        .expect("insert");
    assert_eq!(
        store.get_group(g.id).await.expect("get").map(|g| g.name),
        Some("mem".into())
    );
}
