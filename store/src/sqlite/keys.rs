//! `api_keys`: the upstream provider keys, up to millions of them.
//!
//! Bulk writes go in chunks of [`CHUNK`] rows, one transaction each, releasing the writer between
//! chunks so that a large import never holds up a log flush for long. Bulk reads stream rows
//! straight into `KeyRow`s.

use std::collections::HashSet;

use chrono::Utc;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::{Context, SqliteStore, begin_write, columns, datetime, is_unique_violation, lock};
use crate::error::{StoreError, StoreResult};
use crate::model::{KeyQuery, KeyRow, NewKey};

/// Rows per write transaction: big enough that per-transaction cost vanishes, small enough that
/// the writer is free again within a few milliseconds.
const CHUNK: usize = 500;

/// GPT-Load's page size when the client gives none.
const DEFAULT_PAGE_SIZE: i64 = 15;

const KEY_COLUMNS: &str = "id, key_value, key_hash, group_id, status, notes, request_count, \
     failure_count, last_used_at, created_at, updated_at";

impl SqliteStore {
    pub(crate) async fn all_keys(&self) -> StoreResult<Vec<KeyRow>> {
        self.read("read all keys", all_keys).await
    }

    pub(crate) async fn keys_of_group(&self, group_id: i64) -> StoreResult<Vec<KeyRow>> {
        self.read("read keys of group", move |conn| {
            keys_of_group(conn, group_id)
        })
        .await
    }

    pub(crate) async fn key_hashes_of_group(&self, group_id: i64) -> StoreResult<HashSet<String>> {
        self.read("read key hashes of group", move |conn| {
            key_hashes_of_group(conn, group_id)
        })
        .await
    }

    pub(crate) async fn insert_keys(
        &self,
        group_id: i64,
        keys: Vec<NewKey>,
    ) -> StoreResult<Vec<KeyRow>> {
        let writer = std::sync::Arc::clone(&self.writer);
        super::run_blocking("insert keys", move || {
            let mut inserted = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(CHUNK) {
                inserted.extend(insert_chunk(&mut lock(&writer), group_id, chunk)?);
            }
            Ok(inserted)
        })
        .await
    }

    pub(crate) async fn delete_keys_by_hash(
        &self,
        group_id: i64,
        hashes: Vec<String>,
    ) -> StoreResult<Vec<i64>> {
        let writer = std::sync::Arc::clone(&self.writer);
        super::run_blocking("delete keys", move || {
            let mut deleted = Vec::new();
            for chunk in hashes.chunks(CHUNK) {
                deleted.extend(delete_chunk(&mut lock(&writer), group_id, chunk)?);
            }
            Ok(deleted)
        })
        .await
    }

    pub(crate) async fn list_keys(&self, query: KeyQuery) -> StoreResult<(Vec<KeyRow>, i64)> {
        self.read("list keys", move |conn| list_keys(conn, &query))
            .await
    }

    pub(crate) async fn count_keys(&self, group_id: i64) -> StoreResult<i64> {
        self.read("count keys", move |conn| {
            conn.prepare_cached("SELECT COUNT(*) FROM api_keys WHERE group_id = ?1")
                .and_then(|mut stmt| stmt.query_row([group_id], |row| row.get(0)))
                .with_context(|| format!("count keys of group {group_id}"))
        })
        .await
    }
}

fn key_from_row(row: &Row<'_>) -> KeyRow {
    KeyRow {
        id: columns::int(row, 0),
        key_value: columns::text(row, 1),
        key_hash: columns::text(row, 2),
        group_id: columns::int(row, 3),
        status: columns::text(row, 4),
        notes: columns::text(row, 5),
        request_count: columns::int(row, 6),
        failure_count: columns::int(row, 7),
        last_used_at: columns::time_opt(row, 8),
        created_at: columns::time(row, 9),
        updated_at: columns::time(row, 10),
    }
}

/// Every key, in id order. The count first sizes the vector, so a million rows are not copied
/// through a dozen reallocations; it is a hint only, as writes may land in between.
fn all_keys(conn: &Connection) -> StoreResult<Vec<KeyRow>> {
    let count: i64 = conn
        .query_row("SELECT COUNT(*) FROM api_keys", [], |row| row.get(0))
        .context("count all keys")?;
    let mut keys = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id");
    let mut stmt = conn.prepare(&sql).context("read all keys")?;
    let mut rows = stmt.query([]).context("read all keys")?;
    while let Some(row) = rows.next().context("read all keys")? {
        keys.push(key_from_row(row));
    }
    Ok(keys)
}

fn keys_of_group(conn: &Connection, group_id: i64) -> StoreResult<Vec<KeyRow>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE group_id = ?1 ORDER BY id");
    let mut stmt = conn.prepare_cached(&sql).context("read keys of group")?;
    let mut rows = stmt
        .query([group_id])
        .with_context(|| format!("read keys of group {group_id}"))?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next().context("read keys of group")? {
        keys.push(key_from_row(row));
    }
    Ok(keys)
}

/// The non-empty hashes of a group's keys (an unhashed key cannot be matched anyway).
fn key_hashes_of_group(conn: &Connection, group_id: i64) -> StoreResult<HashSet<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT key_hash FROM api_keys WHERE group_id = ?1")
        .context("read key hashes")?;
    let mut rows = stmt
        .query([group_id])
        .with_context(|| format!("read key hashes of group {group_id}"))?;
    let mut hashes = HashSet::new();
    while let Some(row) = rows.next().context("read key hashes")? {
        let hash = columns::text(row, 0);
        if !hash.is_empty() {
            hashes.insert(hash);
        }
    }
    Ok(hashes)
}

fn insert_chunk(conn: &mut Connection, group_id: i64, keys: &[NewKey]) -> StoreResult<Vec<KeyRow>> {
    let now = Utc::now();
    let stamp = datetime::format(now);
    let txn = begin_write(conn)?;
    let mut inserted = Vec::with_capacity(keys.len());
    {
        let mut stmt = txn
            .prepare_cached(
                "INSERT INTO api_keys (key_value, key_hash, group_id, status, notes, \
                 request_count, failure_count, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'active', '', 0, 0, ?4, ?4)",
            )
            .context("prepare key insert")?;
        for key in keys {
            let id = stmt
                .insert(params![key.value, key.hash, group_id, stamp])
                .map_err(|e| insert_error(e, group_id, &key.hash))?;
            inserted.push(KeyRow {
                id,
                key_value: key.value.clone(),
                key_hash: key.hash.clone(),
                group_id,
                status: "active".to_owned(),
                notes: String::new(),
                request_count: 0,
                failure_count: 0,
                last_used_at: None,
                created_at: now,
                updated_at: now,
            });
        }
    }
    txn.commit().context("commit key insert")?;
    Ok(inserted)
}

/// v1 databases from before v1.1 may still carry a unique index on (group_id, key_value).
fn insert_error(e: rusqlite::Error, group_id: i64, hash: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Duplicate(format!(
            "key with hash {hash} already exists in group {group_id}"
        ))
    } else {
        StoreError::Db(format!("sqlite: insert key into group {group_id}: {e}"))
    }
}

fn delete_chunk(conn: &mut Connection, group_id: i64, hashes: &[String]) -> StoreResult<Vec<i64>> {
    let txn = begin_write(conn)?;
    let mut deleted = Vec::new();
    {
        let mut stmt = txn
            .prepare_cached(
                // `+group_id`: look up by hash, not by scanning the group (see logs.rs).
                "DELETE FROM api_keys WHERE key_hash = ?2 AND +group_id = ?1 RETURNING id",
            )
            .context("prepare key delete")?;
        for hash in hashes {
            let mut rows = stmt
                .query(params![group_id, hash])
                .with_context(|| format!("delete keys from group {group_id}"))?;
            while let Some(row) = rows.next().context("delete keys")? {
                deleted.push(columns::int(row, 0));
            }
        }
    }
    txn.commit().context("commit key delete")?;
    Ok(deleted)
}

/// One page of keys, most recently used first (never-used keys last), and the total count.
fn list_keys(conn: &Connection, query: &KeyQuery) -> StoreResult<(Vec<KeyRow>, i64)> {
    let mut filters = Vec::new();
    let mut values = Vec::new();
    if query.group_id > 0 {
        // With a hash to match, the hash index finds the row at once; the group index would
        // scan the group (`+` keeps SQLite from choosing it, see logs.rs).
        let by_group = if query.key_hash.is_some() {
            "+group_id = ?"
        } else {
            "group_id = ?"
        };
        filters.push(by_group);
        values.push(Value::Integer(query.group_id));
    }
    if let Some(status) = &query.status {
        filters.push("status = ?");
        values.push(Value::Text(status.clone()));
    }
    if let Some(hash) = &query.key_hash {
        filters.push("key_hash = ?");
        values.push(Value::Text(hash.clone()));
    }
    let filter = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };

    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM api_keys{filter}"))
        .and_then(|mut stmt| stmt.query_row(params_from_iter(&values), |row| row.get(0)))
        .context("count listed keys")?;

    let page = query.page.max(1);
    let page_size = if query.page_size < 1 {
        DEFAULT_PAGE_SIZE
    } else {
        query.page_size
    };
    values.push(Value::Integer(page_size));
    values.push(Value::Integer((page - 1).saturating_mul(page_size)));
    // SQLite sorts NULL below every value, so DESC puts never-used keys last, and the order
    // matches idx_api_keys_group_last_used_id, which serves it without a sort.
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys{filter} \
         ORDER BY last_used_at DESC, id DESC LIMIT ? OFFSET ?"
    );
    let mut stmt = conn.prepare_cached(&sql).context("list keys")?;
    let mut rows = stmt.query(params_from_iter(&values)).context("list keys")?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next().context("list keys")? {
        keys.push(key_from_row(row));
    }
    Ok((keys, total))
}
