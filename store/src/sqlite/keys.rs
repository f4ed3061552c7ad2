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
            let mut rest = keys.into_iter().peekable();
            while rest.peek().is_some() {
                let chunk = rest.by_ref().take(CHUNK);
                insert_chunk(&mut lock(&writer), group_id, chunk, &mut inserted)?;
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

    pub(crate) async fn keys_of_group_after(
        &self,
        group_id: i64,
        status: Option<String>,
        after_id: i64,
        limit: usize,
    ) -> StoreResult<Vec<KeyRow>> {
        self.read("read a batch of keys", move |conn| {
            keys_of_group_after(conn, group_id, status.as_deref(), after_id, limit)
        })
        .await
    }

    pub(crate) async fn set_key_states(
        &self,
        group_id: i64,
        ids: Vec<i64>,
        status: String,
        failure_count: i64,
    ) -> StoreResult<usize> {
        let writer = std::sync::Arc::clone(&self.writer);
        super::run_blocking("set key states", move || {
            let mut changed = 0;
            for chunk in ids.chunks(CHUNK) {
                changed +=
                    set_states_chunk(&mut lock(&writer), group_id, chunk, &status, failure_count)?;
            }
            Ok(changed)
        })
        .await
    }

    pub(crate) async fn delete_keys_by_id(
        &self,
        group_id: i64,
        ids: Vec<i64>,
    ) -> StoreResult<Vec<i64>> {
        let writer = std::sync::Arc::clone(&self.writer);
        super::run_blocking("delete keys by id", move || {
            let mut deleted = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                deleted.extend(delete_ids_chunk(&mut lock(&writer), group_id, chunk)?);
            }
            Ok(deleted)
        })
        .await
    }

    pub(crate) async fn delete_keys_of_group(&self, group_id: i64) -> StoreResult<Vec<i64>> {
        let writer = std::sync::Arc::clone(&self.writer);
        super::run_blocking("delete keys of group", move || {
            let mut deleted = Vec::new();
            loop {
                let chunk = delete_group_chunk(&mut lock(&writer), group_id)?;
                if chunk.is_empty() {
                    return Ok(deleted);
                }
                deleted.extend(chunk);
            }
        })
        .await
    }

    pub(crate) async fn update_key_notes(&self, id: i64, notes: String) -> StoreResult<bool> {
        self.write("update key notes", move |conn| {
            let stamp = datetime::format(Utc::now());
            conn.prepare_cached("UPDATE api_keys SET notes = ?1, updated_at = ?2 WHERE id = ?3")
                .and_then(|mut stmt| stmt.execute(params![notes, stamp, id]))
                .map(|changed| changed > 0)
                .with_context(|| format!("update notes of key {id}"))
        })
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

    pub(crate) async fn all_keys_after(
        &self,
        after_id: i64,
        limit: usize,
    ) -> StoreResult<Vec<KeyRow>> {
        self.read("read a batch of keys", move |conn| {
            all_keys_after(conn, after_id, limit)
        })
        .await
    }

    pub(crate) async fn rewrite_all_keys<R, V>(
        &self,
        batch: usize,
        rewrite: R,
        verify: V,
    ) -> StoreResult<u64>
    where
        R: FnMut(&KeyRow) -> Result<NewKey, String> + Send + 'static,
        V: FnMut(&KeyRow) -> Result<(), String> + Send + 'static,
    {
        self.write("rewrite keys", move |conn| {
            rewrite_all_keys(conn, batch.max(1), rewrite, verify)
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

/// Inserts `keys` in one transaction, appending them to `inserted`. The keys are moved into
/// their rows, not copied: a million-key import allocates no string twice.
fn insert_chunk(
    conn: &mut Connection,
    group_id: i64,
    keys: impl Iterator<Item = NewKey>,
    inserted: &mut Vec<KeyRow>,
) -> StoreResult<()> {
    let now = Utc::now();
    let stamp = datetime::format(now);
    let txn = begin_write(conn)?;
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
                key_value: key.value,
                key_hash: key.hash,
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
    Ok(())
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

/// Up to `limit` keys of a group with ids above `after_id`, in id order: a batch of a walk over
/// a group of any size that never holds the reader for long and never skips or repeats a key.
fn keys_of_group_after(
    conn: &Connection,
    group_id: i64,
    status: Option<&str>,
    after_id: i64,
    limit: usize,
) -> StoreResult<Vec<KeyRow>> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE group_id = ?1 AND id > ?2 \
         AND (?3 IS NULL OR status = ?3) ORDER BY id LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql).context("read a batch of keys")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt
        .query(params![group_id, after_id, status, limit])
        .with_context(|| format!("read keys of group {group_id} after id {after_id}"))?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next().context("read a batch of keys")? {
        keys.push(key_from_row(row));
    }
    Ok(keys)
}

fn set_states_chunk(
    conn: &mut Connection,
    group_id: i64,
    ids: &[i64],
    status: &str,
    failure_count: i64,
) -> StoreResult<usize> {
    let stamp = datetime::format(Utc::now());
    let txn = begin_write(conn)?;
    let mut changed = 0;
    {
        let mut stmt = txn
            .prepare_cached(
                "UPDATE api_keys SET status = ?1, failure_count = ?2, updated_at = ?3 \
                 WHERE id = ?4 AND group_id = ?5",
            )
            .context("prepare key state update")?;
        for id in ids {
            changed += stmt
                .execute(params![status, failure_count, stamp, id, group_id])
                .with_context(|| format!("set state of key {id}"))?;
        }
    }
    txn.commit().context("commit key state update")?;
    Ok(changed)
}

fn delete_ids_chunk(conn: &mut Connection, group_id: i64, ids: &[i64]) -> StoreResult<Vec<i64>> {
    let txn = begin_write(conn)?;
    let mut deleted = Vec::with_capacity(ids.len());
    {
        let mut stmt = txn
            .prepare_cached("DELETE FROM api_keys WHERE id = ?1 AND group_id = ?2")
            .context("prepare key delete")?;
        for id in ids {
            let changed = stmt
                .execute(params![id, group_id])
                .with_context(|| format!("delete key {id}"))?;
            if changed > 0 {
                deleted.push(*id);
            }
        }
    }
    txn.commit().context("commit key delete")?;
    Ok(deleted)
}

/// Deletes up to [`CHUNK`] keys of the group in one transaction; none left when empty.
fn delete_group_chunk(conn: &mut Connection, group_id: i64) -> StoreResult<Vec<i64>> {
    let txn = begin_write(conn)?;
    let mut deleted = Vec::with_capacity(CHUNK);
    {
        let mut stmt = txn
            .prepare_cached(
                "DELETE FROM api_keys WHERE id IN \
                 (SELECT id FROM api_keys WHERE group_id = ?1 LIMIT ?2) RETURNING id",
            )
            .context("prepare group key delete")?;
        let mut rows = stmt
            .query(params![group_id, CHUNK as i64])
            .with_context(|| format!("delete keys of group {group_id}"))?;
        while let Some(row) = rows.next().context("delete keys of group")? {
            deleted.push(columns::int(row, 0));
        }
    }
    txn.commit().context("commit group key delete")?;
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

/// Up to `limit` keys of any group with ids above `after_id`, in id order.
fn all_keys_after(conn: &Connection, after_id: i64, limit: usize) -> StoreResult<Vec<KeyRow>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id > ?1 ORDER BY id LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql).context("read a batch of keys")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = stmt
        .query(params![after_id, limit])
        .with_context(|| format!("read keys after id {after_id}"))?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next().context("read a batch of keys")? {
        keys.push(key_from_row(row));
    }
    Ok(keys)
}

/// Rewrites then verifies every key inside one transaction: any error leaves the table as it
/// was. Batches keep memory flat for millions of keys; the transaction keeps it all-or-nothing.
fn rewrite_all_keys<R, V>(
    conn: &mut Connection,
    batch: usize,
    mut rewrite: R,
    mut verify: V,
) -> StoreResult<u64>
where
    R: FnMut(&KeyRow) -> Result<NewKey, String>,
    V: FnMut(&KeyRow) -> Result<(), String>,
{
    let refused = |id: i64, stage: &str, reason: String| {
        StoreError::Db(format!(
            "key id {id}: {stage}: {reason}; rolled back, no key was changed"
        ))
    };
    let txn = begin_write(conn)?;
    let mut rewritten = 0u64;
    let mut after = i64::MIN;
    loop {
        let keys = all_keys_after(&txn, after, batch)?;
        let Some(last) = keys.last() else { break };
        after = last.id;
        let mut stmt = txn
            .prepare_cached("UPDATE api_keys SET key_value = ?1, key_hash = ?2 WHERE id = ?3")
            .context("prepare key rewrite")?;
        for key in &keys {
            let new = rewrite(key).map_err(|e| refused(key.id, "rewrite", e))?;
            stmt.execute(params![new.value, new.hash, key.id])
                .with_context(|| format!("rewrite key {}", key.id))?;
            rewritten += 1;
        }
    }
    let mut verified = 0u64;
    let mut after = i64::MIN;
    loop {
        let keys = all_keys_after(&txn, after, batch)?;
        let Some(last) = keys.last() else { break };
        after = last.id;
        for key in &keys {
            verify(key).map_err(|e| refused(key.id, "verify", e))?;
            verified += 1;
        }
    }
    if verified != rewritten {
        return Err(StoreError::Db(format!(
            "rewrote {rewritten} keys but read back {verified}; rolled back, no key was changed"
        )));
    }
    txn.commit().context("commit key rewrite")?;
    Ok(rewritten)
}
