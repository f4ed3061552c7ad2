//! The SQLite backend: one file, one writer connection, one reader connection.
//!
//! SQLite allows one writer at a time, so every write goes through a single connection behind a
//! mutex, run on tokio's blocking pool; reads use a second connection, which WAL lets run while
//! a write is in progress. Both connections live for the life of the store. `:memory:` is the
//! exception: a second connection would open a second, empty database, so it shares the one.
//!
//! The submodules are the tables' concerns: `schema` (opening, pragmas, migrations), `settings`,
//! `groups`, `keys`, `logs` (the flush), plus `columns` and `datetime`, which read and write
//! values the way GORM left them in a v1 database.

mod columns;
mod datetime;
mod groups;
mod keys;
mod logs;
mod queries;
mod retention;
mod schema;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, Transaction, TransactionBehavior, ffi};

use crate::error::{StoreError, StoreResult};

/// The SQLite implementation of the store.
pub(crate) struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, its parent directories included,
    /// and brings its schema up to date.
    pub(crate) async fn open(path: PathBuf) -> StoreResult<Self> {
        run_blocking("open", move || Self::open_blocking(&path)).await
    }

    fn open_blocking(path: &Path) -> StoreResult<Self> {
        let label = crate::dsn::redact(&path.to_string_lossy());
        if path == Path::new(":memory:") {
            let mut conn = schema::connect(path, &label)?;
            schema::migrate(&mut conn, &label)?;
            let shared = Arc::new(Mutex::new(conn));
            return Ok(Self {
                writer: Arc::clone(&shared),
                reader: shared,
            });
        }
        schema::create_parent_dir(path, &label)?;
        let mut writer = schema::connect(path, &label)?;
        schema::migrate(&mut writer, &label)?;
        let reader = schema::connect_reader(path, &label)?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Runs `job` on the writer connection, off the async threads.
    async fn write<T, F>(&self, what: &'static str, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.writer);
        run_blocking(what, move || job(&mut lock(&conn))).await
    }

    /// Runs `job` on the reader connection, off the async threads.
    async fn read<T, F>(&self, what: &'static str, job: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.reader);
        run_blocking(what, move || job(&lock(&conn))).await
    }
}

/// Runs blocking SQLite work on tokio's blocking pool.
async fn run_blocking<T, F>(what: &'static str, job: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| StoreError::Db(format!("sqlite: {what}: worker thread failed: {e}")))?
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while the lock was held cannot leave a half-done write behind: the transaction
    // guard rolls back when it is dropped during unwinding, so the connection is still good.
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts a write transaction that takes the write lock at once, so that a concurrent writer
/// (another process on the same file) makes us wait at BEGIN, within busy_timeout, instead of
/// failing half-way through.
fn begin_write(conn: &mut Connection) -> StoreResult<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .context("begin write transaction")
}

/// Whether `e` is a UNIQUE or PRIMARY KEY constraint refusing a row.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_extended_error_code().is_some_and(|code| {
        code == ffi::SQLITE_CONSTRAINT_UNIQUE || code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    })
}

/// Turns a rusqlite error into a [`StoreError::Db`] that says what we were doing.
trait Context<T> {
    fn context(self, what: &str) -> StoreResult<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> StoreResult<T>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, what: &str) -> StoreResult<T> {
        self.map_err(|e| StoreError::Db(format!("sqlite: {what}: {e}")))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> StoreResult<T> {
        self.map_err(|e| StoreError::Db(format!("sqlite: {}: {e}", what())))
    }
}
