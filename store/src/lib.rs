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
    FlushBatch, GroupRow, KeyQuery, KeyRow, KeyStateUpdate, LogRow, NewKey, SettingRow, SubGroupRow,
};

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
    /// in input order. Does not deduplicate: the caller filters with
    /// [`Store::key_hashes_of_group`]. On error, earlier chunks stay inserted.
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

    /// One page of keys matching `q`, most recently used first (never-used last, then id
    /// descending), and how many keys match in all.
    pub async fn list_keys(&self, q: KeyQuery) -> StoreResult<(Vec<KeyRow>, i64)> {
        dispatch!(self, db => db.list_keys(q))
    }

    /// How many keys the group has.
    pub async fn count_keys(&self, group_id: i64) -> StoreResult<i64> {
        dispatch!(self, db => db.count_keys(group_id))
    }

    // ---- request logs -------------------------------------------------------------------

    /// Writes one log flush in one transaction (spec §2.14): inserts the log rows; for
    /// successful rows adds to `api_keys.request_count` and sets `last_used_at` to the latest
    /// timestamp, per (group, key hash); for `final` rows adds to `group_hourly_stats` of the
    /// group and of its parent aggregate; then applies each key's failure count and status.
    /// Log rows whose id is already stored are skipped and not counted again.
    pub async fn write_batch(&self, batch: FlushBatch) -> StoreResult<()> {
        dispatch!(self, db => db.write_batch(batch))
    }
}

fn not_yet(dsn: &str, database: &str) -> StoreError {
    StoreError::Unsupported(format!(
        "DATABASE_DSN '{}': {database} support arrives in a later release; use a SQLite path for now",
        dsn::redact(dsn)
    ))
}
