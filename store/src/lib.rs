//! Persistence for gpt-load-rs: GPT-Load v1's six tables, behind one async [`Store`].
//!
//! The control plane is the only user: it loads settings, groups and keys to build snapshots,
//! edits them for the admin API, and flushes request logs with their counters
//! ([`Store::write_batch`]). The data plane never touches the store. The schema is v1's own
//! (`migrations/`), so a database GPT-Load v1 created opens as is.
//!
//! `DATABASE_DSN` picks the backend exactly as GPT-Load does (see [`Store::open`]). SQLite is
//! implemented; MySQL and PostgreSQL are recognised and refused with a clear message until their
//! modules (`mysql.rs`, `postgres.rs`) join the `Backend` enum.
//!
//! ```no_run
//! # async fn demo() -> store::StoreResult<()> {
//! let store = store::Store::open("./data/gpt-load.db").await?;
//! for group in store.list_groups().await? {
//!     println!("{} has {} keys", group.name, store.count_keys(group.id).await?);
//! }
//! # Ok(()) }
//! ```

mod dsn;
mod error;
mod model;
mod sqlite;

use std::collections::HashSet;
use std::sync::Arc;

pub use error::{StoreError, StoreResult};
pub use model::{
    FlushBatch, GroupRow, KeyQuery, KeyRow, KeyStateUpdate, KeyUsage, LogRow, NewKey, SettingRow,
    SubGroupRow,
};
pub use model::{HourlyStat, LogFilter, LogKey};

use dsn::Dsn;

/// A handle to the database; cheap to clone, usable from any tokio task.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect())
            .finish()
    }
}

/// One variant per database kind; every [`Store`] method dispatches on it.
enum Backend {
    Sqlite(sqlite::SqliteStore),
}

/// Calls the same-named method on whichever backend the store has.
macro_rules! dispatch {
    ($store:expr, $db:ident => $call:expr) => {
        match &*$store.backend {
            Backend::Sqlite($db) => $call.await,
        }
    };
}

impl Store {
    /// Opens the database `dsn` names and applies pending migrations.
    ///
    /// As GPT-Load v1 decides: a `postgres://` or `postgresql://` URL is PostgreSQL, a DSN
    /// containing `@tcp(` is MySQL, anything else is a SQLite file path (its directories are
    /// created; `:memory:` is an in-memory database). MySQL and PostgreSQL return
    /// [`StoreError::Unsupported`] for now, with any password in the DSN masked.
    pub async fn open(dsn: &str) -> StoreResult<Store> {
        let backend = match Dsn::classify(dsn) {
            Dsn::Sqlite(path) if path.as_os_str().is_empty() => {
                return Err(StoreError::Unsupported(
                    "DATABASE_DSN is empty: give a SQLite file path (e.g. ./data/gpt-load.db)"
                        .to_owned(),
                ));
            }
            Dsn::Sqlite(path) => Backend::Sqlite(sqlite::SqliteStore::open(path.to_owned()).await?),
            Dsn::MySql => return Err(not_yet(dsn, "MySQL")),
            Dsn::Postgres => return Err(not_yet(dsn, "PostgreSQL")),
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// The SQL dialect in use: `"sqlite"` (later also `"mysql"`, `"postgres"`).
    pub fn dialect(&self) -> &'static str {
        match &*self.backend {
            Backend::Sqlite(_) => "sqlite",
        }
    }

    // ---- settings -----------------------------------------------------------------------

    /// Every `system_settings` row, in insertion order.
    pub async fn load_settings(&self) -> StoreResult<Vec<SettingRow>> {
        dispatch!(self, db => db.load_settings())
    }

    /// Inserts the rows whose key is missing; stored values are left alone (first start).
    pub async fn seed_settings(&self, rows: Vec<SettingRow>) -> StoreResult<()> {
        dispatch!(self, db => db.seed_settings(rows))
    }

    /// Stores every row's value in one transaction, inserting missing keys. A row's description
    /// replaces the stored one only when it is not empty.
    pub async fn upsert_settings(&self, rows: Vec<SettingRow>) -> StoreResult<()> {
        dispatch!(self, db => db.upsert_settings(rows))
    }

    // ---- groups -------------------------------------------------------------------------

    /// Every group, ordered as the console lists them: `sort` ascending, then newest first.
    pub async fn list_groups(&self) -> StoreResult<Vec<GroupRow>> {
        dispatch!(self, db => db.list_groups())
    }

    /// The group with this id, if any.
    pub async fn get_group(&self, id: i64) -> StoreResult<Option<GroupRow>> {
        dispatch!(self, db => db.get_group(id))
    }

    /// Inserts `g` (its `id` and times are ignored) and returns the stored row.
    /// [`StoreError::Duplicate`] when the name is taken.
    pub async fn insert_group(&self, g: GroupRow) -> StoreResult<GroupRow> {
        dispatch!(self, db => db.insert_group(g))
    }

    /// Overwrites every column of group `g.id` but `created_at` and returns the stored row.
    /// [`StoreError::NotFound`] when there is no such group, [`StoreError::Duplicate`] when the
    /// new name is taken.
    pub async fn update_group(&self, g: GroupRow) -> StoreResult<GroupRow> {
        dispatch!(self, db => db.update_group(g))
    }

    /// Deletes the group, its keys and its aggregate links (both as aggregate and as member) in
    /// one transaction. `false` when there was no such group.
    pub async fn delete_group(&self, id: i64) -> StoreResult<bool> {
        dispatch!(self, db => db.delete_group(id))
    }

    /// Sets the `sort` of each `(group id, sort)` pair in one transaction, all or nothing.
    /// `false` (nothing changed) when any id names no group.
    pub async fn reorder_groups(&self, items: Vec<(i64, i64)>) -> StoreResult<bool> {
        dispatch!(self, db => db.reorder_groups(items))
    }

    /// Records when the group's keys were last re-checked (the periodic validation, §2.15);
    /// `false` when there is no such group. Leaves `updated_at` alone: it is not an edit.
    pub async fn set_group_last_validated(
        &self,
        id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool> {
        dispatch!(self, db => db.set_group_last_validated(id, at))
    }

    /// Every aggregate membership.
    pub async fn list_sub_groups(&self) -> StoreResult<Vec<SubGroupRow>> {
        dispatch!(self, db => db.list_sub_groups())
    }

    /// Adds aggregate memberships in one transaction; an existing pair is `Duplicate`.
    pub async fn add_sub_groups(&self, links: Vec<SubGroupRow>) -> StoreResult<()> {
        dispatch!(self, db => db.add_sub_groups(links))
    }

    /// Changes a membership's weight; false if there is no such membership.
    pub async fn set_sub_group_weight(&self, link: SubGroupRow) -> StoreResult<bool> {
        dispatch!(self, db => db.set_sub_group_weight(link))
    }

    /// Removes a membership; false if there was none.
    pub async fn delete_sub_group(&self, group_id: i64, sub_group_id: i64) -> StoreResult<bool> {
        dispatch!(self, db => db.delete_sub_group(group_id, sub_group_id))
    }

    // ---- keys ---------------------------------------------------------------------------

    /// Every key of every group, in id order, for the first snapshot.
    pub async fn all_keys(&self) -> StoreResult<Vec<KeyRow>> {
        dispatch!(self, db => db.all_keys())
    }

    /// Every key of one group, in id order.
    pub async fn keys_of_group(&self, group_id: i64) -> StoreResult<Vec<KeyRow>> {
        dispatch!(self, db => db.keys_of_group(group_id))
    }

    /// The hashes of a group's keys, to skip duplicates at import.
    pub async fn key_hashes_of_group(&self, group_id: i64) -> StoreResult<HashSet<String>> {
        dispatch!(self, db => db.key_hashes_of_group(group_id))
    }

    /// Inserts active keys into a group, 500 per transaction, and returns them with their ids,
    /// in input order; each key's strings move into its row, none is copied. Does not
    /// deduplicate: the caller filters with [`Store::key_hashes_of_group`]. On error, earlier
    /// chunks stay inserted.
    pub async fn insert_keys(&self, group_id: i64, keys: Vec<NewKey>) -> StoreResult<Vec<KeyRow>> {
        dispatch!(self, db => db.insert_keys(group_id, keys))
    }

    /// Deletes the group's keys with these hashes and returns the ids deleted.
    pub async fn delete_keys_by_hash(
        &self,
        group_id: i64,
        hashes: Vec<String>,
    ) -> StoreResult<Vec<i64>> {
        dispatch!(self, db => db.delete_keys_by_hash(group_id, hashes))
    }

    /// Up to `limit` keys of a group with ids above `after_id` (and this status, if given), in
    /// id order. Walks a group of any size in batches: pass the last id seen as `after_id`.
    pub async fn keys_of_group_after(
        &self,
        group_id: i64,
        status: Option<String>,
        after_id: i64,
        limit: usize,
    ) -> StoreResult<Vec<KeyRow>> {
        dispatch!(self, db => db.keys_of_group_after(group_id, status, after_id, limit))
    }

    /// Sets status and failure count of the group's keys with these ids (e.g. a restore),
    /// 500 per transaction; returns how many rows changed.
    pub async fn set_key_states(
        &self,
        group_id: i64,
        ids: Vec<i64>,
        status: &str,
        failure_count: i64,
    ) -> StoreResult<usize> {
        let status = status.to_owned();
        dispatch!(self, db => db.set_key_states(group_id, ids, status, failure_count))
    }

    /// Applies each key's own failure count and status in one transaction (validation
    /// results); the same statement a log flush uses for the data plane's key states.
    pub async fn update_key_states(&self, states: Vec<KeyStateUpdate>) -> StoreResult<()> {
        self.write_batch(FlushBatch {
            logs: Vec::new(),
            key_states: states,
            key_usage: Vec::new(),
        })
        .await
    }

    /// Deletes the group's keys with these ids, 500 per transaction; returns the ids deleted.
    pub async fn delete_keys_by_id(&self, group_id: i64, ids: Vec<i64>) -> StoreResult<Vec<i64>> {
        dispatch!(self, db => db.delete_keys_by_id(group_id, ids))
    }

    /// Deletes every key of the group, 500 per transaction (the writer is free in between);
    /// returns the ids deleted.
    pub async fn delete_keys_of_group(&self, group_id: i64) -> StoreResult<Vec<i64>> {
        dispatch!(self, db => db.delete_keys_of_group(group_id))
    }

    /// Sets a key's notes; false when there is no key with this id.
    pub async fn update_key_notes(&self, id: i64, notes: &str) -> StoreResult<bool> {
        let notes = notes.to_owned();
        dispatch!(self, db => db.update_key_notes(id, notes))
    }

    /// One page of keys matching `q`, most recently used first (never-used last, then id
    /// descending), and how many keys match in all.
    pub async fn list_keys(&self, q: KeyQuery) -> StoreResult<(Vec<KeyRow>, i64)> {
        dispatch!(self, db => db.list_keys(q))
    }

    /// How many keys the group has.
    pub async fn count_keys(&self, group_id: i64) -> StoreResult<i64> {
        dispatch!(self, db => db.count_keys(group_id))
    }

    /// Up to `limit` keys of every group with ids above `after_id`, in id order: walks the
    /// whole table in batches from `i64::MIN` (`migrate-keys`, the encryption check's sample).
    pub async fn all_keys_after(&self, after_id: i64, limit: usize) -> StoreResult<Vec<KeyRow>> {
        dispatch!(self, db => db.all_keys_after(after_id, limit))
    }

    /// Replaces every key's value and hash in one write transaction, all or nothing
    /// (`migrate-keys`). Walks the table in id batches of `batch`, sets each row to what
    /// `rewrite` returns for it, then reads every row back through `verify`; `updated_at` is
    /// left as it was, as v1's migration leaves it. An `Err` from either closure rolls the whole
    /// transaction back and comes back as [`StoreError::Db`] naming the key id. Returns how many
    /// rows were rewritten.
    pub async fn rewrite_all_keys<R, V>(
        &self,
        batch: usize,
        rewrite: R,
        verify: V,
    ) -> StoreResult<u64>
    where
        R: FnMut(&KeyRow) -> Result<NewKey, String> + Send + 'static,
        V: FnMut(&KeyRow) -> Result<(), String> + Send + 'static,
    {
        dispatch!(self, db => db.rewrite_all_keys(batch, rewrite, verify))
    }

    // ---- request logs -------------------------------------------------------------------

    /// Writes one log flush in one transaction (spec §2.14): inserts the log rows; for
    /// `final` rows adds to `group_hourly_stats` of the group and of its parent aggregate;
    /// adds each key's usage (`request_count`, latest `last_used_at`) by id; then applies each
    /// key's failure count and status. Log rows whose id is already stored are skipped and not
    /// counted again.
    pub async fn write_batch(&self, batch: FlushBatch) -> StoreResult<()> {
        dispatch!(self, db => db.write_batch(batch))
    }

    /// [`Store::write_batch`] on the calling thread, which may block: the log writer's own
    /// thread, so that a flush neither hops to another thread nor competes with the API's
    /// blocking pool.
    pub fn write_batch_blocking(&self, batch: &FlushBatch) -> StoreResult<()> {
        self.write_batch_unless(batch, &|| false).map(|_| ())
    }

    /// [`Store::write_batch_blocking`] that gives the connection back when `give_way` says so
    /// between two statements of the log inserts: then nothing of the batch is written and the
    /// answer is `false`. For a writer thread that another wants to take over from at once.
    pub fn write_batch_unless(
        &self,
        batch: &FlushBatch,
        give_way: &dyn Fn() -> bool,
    ) -> StoreResult<bool> {
        match &*self.backend {
            Backend::Sqlite(db) => db.write_batch_blocking(batch, give_way),
        }
    }

    // ---- log search, statistics, retention ----------------------------------------------

    /// One page of the logs matching `filter`, newest first, and how many match in all.
    /// `page` is 1-based; `page_size` below 1 reads as 1.
    pub async fn list_logs(
        &self,
        filter: LogFilter,
        page: i64,
        page_size: i64,
    ) -> StoreResult<(Vec<LogRow>, i64)> {
        dispatch!(self, db => db.list_logs(filter, page, page_size))
    }

    /// Up to `limit` distinct keys (by hash) of the logs matching `filter`, hashes above
    /// `after_hash` in hash order, each with its latest matching log. Rows without a key are
    /// left out. Walks any number of keys in chunks: pass the last hash seen, `""` first.
    pub async fn latest_log_keys(
        &self,
        filter: LogFilter,
        after_hash: String,
        limit: usize,
    ) -> StoreResult<Vec<LogKey>> {
        dispatch!(self, db => db.latest_log_keys(filter, after_hash, limit))
    }

    /// How many `final` log rows have `from <= timestamp` (and `< to`, if given).
    pub async fn count_final_logs(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: Option<chrono::DateTime<chrono::Utc>>,
    ) -> StoreResult<i64> {
        dispatch!(self, db => db.count_final_logs(from, to))
    }

    /// The `group_hourly_stats` rows with `from <= time < to`, of one group or of every group,
    /// in time order.
    pub async fn hourly_stats(
        &self,
        group_id: Option<i64>,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<HourlyStat>> {
        dispatch!(self, db => db.hourly_stats(group_id, from, to))
    }

    /// Deletes the request logs older than `cutoff` in small chunks, so the database is never
    /// held for long; returns how many were deleted. Hourly stats stay (spec §2.14).
    pub async fn delete_logs_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64> {
        dispatch!(self, db => db.delete_logs_before(cutoff))
    }
}

fn not_yet(dsn: &str, database: &str) -> StoreError {
    StoreError::Unsupported(format!(
        "DATABASE_DSN '{}': {database} support arrives in a later release; use a SQLite path for now",
        dsn::redact(dsn)
    ))
}
