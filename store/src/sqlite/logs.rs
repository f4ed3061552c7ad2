//! `request_logs`, `group_hourly_stats` and the key counters: the log flush (spec §2.14).
//!
//! One flush is one transaction: the log rows, the usage of each key that served a successful
//! request, the hourly success/failure counts of each group (and of the aggregate it was reached
//! through), and the failure accounting the data plane keeps for each key. Counts are summed in
//! memory first, so a batch of 1,000 rows costs 62 inserts of 16 rows and 8 of one, plus one
//! statement per distinct key and hour, all through cached statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, ffi, params};

use super::{Context, SqliteStore, begin_write, datetime};
use crate::error::StoreResult;
use crate::model::{FlushBatch, KeyStateUpdate, KeyUsage, LogRow};

impl SqliteStore {
    pub(crate) async fn write_batch(&self, batch: FlushBatch) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write("write log batch", move |conn| {
            write_batch(conn, &batch, &|| false).map(|_| ())
        })
        .await
    }

    pub(crate) fn write_batch_blocking(
        &self,
        batch: &FlushBatch,
        give_way: &dyn Fn() -> bool,
    ) -> StoreResult<bool> {
        if batch.is_empty() {
            return Ok(true);
        }
        write_batch(&mut super::lock(&self.writer), batch, give_way)
    }
}

/// How the inserts of a batch's rows ended.
enum Inserted {
    All,
    /// A row's id was stored before: the batch was flushed again after a commit that landed.
    SomeStoredBefore,
    /// `give_way` asked for the connection back before the last statement.
    GaveWay,
}

/// Final attempts of one group in one hour.
#[derive(Default)]
struct HourCounts {
    success: i64,
    failure: i64,
}

// Not inlined, so that a profiler can count what a flush costs (bench/log-rows.sh).
#[inline(never)]
fn write_batch(
    conn: &mut Connection,
    batch: &FlushBatch,
    give_way: &dyn Fn() -> bool,
) -> StoreResult<bool> {
    let now = datetime::format(Utc::now());
    let mut txn = begin_write(conn)?;
    let stored = match insert_new_logs(&txn, &batch.logs, give_way)? {
        Inserted::All => batch.logs.iter().collect(),
        Inserted::GaveWay => {
            txn.rollback().context("undo log inserts to give way")?;
            return Ok(false);
        }
        Inserted::SomeStoredBefore => {
            // Some ids were stored before: a batch flushed again after a commit that did land.
            // Nothing but log rows is in the transaction yet, so it is undone whole and the rows
            // go in one at a time, each saying whether it was new. (A savepoint around the inserts
            // would do the same but copies every page it finds in use to a temporary file first:
            // a file created, written and unlinked on every flush.)
            txn.rollback()
                .context("undo log insert for a row-by-row retry")?;
            txn = begin_write(conn)?;
            insert_logs_one_by_one(&txn, &batch.logs)?
        }
    };
    let mut hours: HashMap<(DateTime<Utc>, i64), HourCounts> = HashMap::new();
    for log in stored {
        count_hour(log, &mut hours);
    }
    add_key_usage(&txn, &batch.key_usage)?;
    add_hourly_counts(&txn, &hours, &now)?;
    apply_key_states(&txn, &batch.key_states, &now)?;
    txn.commit().context("commit log batch")?;
    Ok(true)
}

/// Rows inserted between offers of the core to other threads (~0.2 ms of work).
const YIELD_EVERY: usize = 64;

/// Rows per INSERT statement. Within one statement SQLite keeps each B-tree's cursor on the
/// leaf it last wrote, so the next row's index entries (ascending ids and timestamps, the same
/// few key hashes) mostly skip the root-to-leaf search a fresh statement starts with: 28.9k
/// instructions a row one at a time, 21.6k at 8 (bench/log-rows.sh). With the text bound in
/// place ([`BorrowingInsert`]) 19.1k at 8, 18.5k at 16, 18.4k at 32; the rows of a batch past
/// the last multiple go one at a time, so a bigger statement costs small batches more.
const ROWS_PER_INSERT: usize = 16;

const LOG_COLUMNS: &str = "id, timestamp, group_id, group_name, parent_group_id, \
     parent_group_name, key_value, key_hash, model, is_success, source_ip, status_code, \
     request_path, duration_ms, error_message, user_agent, request_type, upstream_addr, \
     is_stream, request_body, request_id";

/// `INSERT` of `rows` log rows. `OR IGNORE` rather than `ON CONFLICT (id) DO NOTHING`: the
/// same for the one constraint a row of ours can meet (a stored id), and a statement that cannot
/// abort half way needs no statement journal.
fn insert_sql(rows: usize) -> String {
    let values = vec!["(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"; rows].join(",");
    format!("INSERT OR IGNORE INTO request_logs ({LOG_COLUMNS}) VALUES {values}")
}

/// Inserts `logs` several to a statement (the last few one at a time, so that only two
/// statements are ever cached), stopping as soon as one was already stored, or before a
/// statement when `give_way` says so.
fn insert_new_logs(
    conn: &Connection,
    logs: &[LogRow],
    give_way: &dyn Fn() -> bool,
) -> StoreResult<Inserted> {
    let mut several = BorrowingInsert::new(conn, ROWS_PER_INSERT)?;
    let mut one = conn
        .prepare_cached(&insert_sql(1))
        .context("prepare log insert")?;
    let mut chunks = logs.chunks_exact(ROWS_PER_INSERT);
    for (n, rows) in chunks.by_ref().enumerate() {
        // A batch is milliseconds of CPU, and the scheduler only takes the core back at its
        // tick (4 ms here): offered back every few rows, a shard that woke on the same core
        // runs within ~0.2 ms instead of waiting out the batch (p99 at 16 connections: 7.8 ms).
        if n > 0 && (n * ROWS_PER_INSERT).is_multiple_of(YIELD_EVERY) {
            std::thread::yield_now();
        }
        if give_way() {
            return Ok(Inserted::GaveWay);
        }
        if several.run(rows)? < rows.len() {
            return Ok(Inserted::SomeStoredBefore);
        }
    }
    for log in chunks.remainder() {
        if bind_and_insert(&mut one, std::slice::from_ref(log))? == 0 {
            return Ok(Inserted::SomeStoredBefore);
        }
    }
    Ok(Inserted::All)
}

/// The several-rows insert, bound to the rows' own text instead of copies of it.
///
/// rusqlite binds every text as `SQLITE_TRANSIENT`, so SQLite copies each of a row's fifteen
/// texts before the insert copies them again into the record: a quarter of what a row cost
/// was binding. Bound `SQLITE_STATIC`, SQLite reads them where they are: 21,290 → 19,082
/// instructions a row at 8 rows a statement (bench/log-rows.sh). rusqlite gives no access to
/// its statements' handles, so this finds the handle of the statement rusqlite prepared and
/// cached (by its text, among the connection's statements) and holds rusqlite's statement
/// borrowed while using it. If it is not found, the rows are bound through rusqlite.
struct BorrowingInsert<'c> {
    stmt: rusqlite::CachedStatement<'c>,
    /// `stmt`'s own handle, when found.
    raw: Option<std::ptr::NonNull<ffi::sqlite3_stmt>>,
    db: *mut ffi::sqlite3,
}

impl<'c> BorrowingInsert<'c> {
    fn new(conn: &'c Connection, rows: usize) -> StoreResult<Self> {
        let sql = insert_sql(rows);
        let stmt = conn.prepare_cached(&sql).context("prepare log insert")?;
        // SAFETY: the handle is only used while `conn` is borrowed by `stmt`, on this thread.
        let db = unsafe { conn.handle() };
        let mut raw = None;
        // SAFETY: walking the connection's own list of statements and reading their SQL text,
        // which SQLite keeps for as long as each statement lives; none is finalized meanwhile
        // (the connection is borrowed). The insert's text is unique among them: it is only
        // ever prepared here, through the cache.
        unsafe {
            let mut next = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
            while let Some(candidate) = std::ptr::NonNull::new(next) {
                let text = ffi::sqlite3_sql(candidate.as_ptr());
                if !text.is_null() && std::ffi::CStr::from_ptr(text).to_bytes() == sql.as_bytes() {
                    raw = Some(candidate);
                    break;
                }
                next = ffi::sqlite3_next_stmt(db, candidate.as_ptr());
            }
        }
        Ok(Self { stmt, raw, db })
    }

    /// Binds `rows` in order, runs the statement and leaves it reset: the number of rows stored.
    fn run(&mut self, rows: &[LogRow]) -> StoreResult<usize> {
        let Some(raw) = self.raw else {
            return bind_and_insert(&mut self.stmt, rows);
        };
        let timestamps: Vec<String> = rows.iter().map(|l| datetime::format(l.timestamp)).collect();
        let mut binder = Binder {
            stmt: raw.as_ptr(),
            index: 0,
            failed: 0,
        };
        for (log, timestamp) in rows.iter().zip(&timestamps) {
            for_each_value(log, timestamp, |value| match value {
                Column::Text(text) => binder.text(text),
                Column::Int(number) => binder.int(number),
            });
        }
        // SAFETY: `raw` is `self.stmt`'s handle, borrowed with it; every text bound above
        // (the rows and `timestamps`) outlives the step. SQLite reads bound text only while
        // stepping, and every step here first binds all the parameters again; the pointers left
        // bound afterwards are never read, and are cleared when the insert is dropped (and by
        // rusqlite when the statement goes back to its cache). Clearing them after every step
        // cost 316 instructions a row (1.7%).
        let (code, stored) = unsafe {
            let code = if binder.failed == 0 {
                ffi::sqlite3_step(raw.as_ptr())
            } else {
                binder.failed
            };
            let stored = ffi::sqlite3_changes(self.db);
            ffi::sqlite3_reset(raw.as_ptr());
            (code, stored)
        };
        if code == ffi::SQLITE_DONE {
            return Ok(usize::try_from(stored).unwrap_or(0));
        }
        // SAFETY: SQLite's static text for a result code.
        let message = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errstr(code)) };
        Err(crate::error::StoreError::Db(format!(
            "insert request logs: {} (code {code})",
            message.to_string_lossy()
        )))
    }
}

impl Drop for BorrowingInsert<'_> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw {
            // SAFETY: `self.stmt`'s handle, still alive: fields are dropped after this.
            unsafe { ffi::sqlite3_clear_bindings(raw.as_ptr()) };
        }
    }
}

/// Binds values to consecutive parameters of a raw statement, remembering the first failure.
struct Binder {
    stmt: *mut ffi::sqlite3_stmt,
    index: i32,
    failed: i32,
}

impl Binder {
    fn text(&mut self, value: &str) {
        self.index += 1;
        let code = match i32::try_from(value.len()) {
            // SAFETY: a live statement (see `BorrowingInsert::run`); `value` is valid for its
            // length and outlives the statement's use of it (SQLITE_STATIC: not copied).
            Ok(len) => unsafe {
                ffi::sqlite3_bind_text(
                    self.stmt,
                    self.index,
                    value.as_ptr().cast(),
                    len,
                    ffi::SQLITE_STATIC(),
                )
            },
            Err(_) => ffi::SQLITE_TOOBIG,
        };
        self.note(code);
    }

    fn int(&mut self, value: i64) {
        self.index += 1;
        // SAFETY: a live statement (see `BorrowingInsert::run`); no pointers.
        let code = unsafe { ffi::sqlite3_bind_int64(self.stmt, self.index, value) };
        self.note(code);
    }

    fn note(&mut self, code: i32) {
        if code != ffi::SQLITE_OK && self.failed == 0 {
            self.failed = code;
        }
    }
}

/// One value of a log row as it is bound: text, or an integer (ids, counts, and the booleans,
/// which SQLite stores as 0 and 1).
#[derive(Clone, Copy)]
enum Column<'a> {
    Text(&'a str),
    Int(i64),
}

impl rusqlite::ToSql for Column<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match *self {
            Column::Text(text) => text.into(),
            Column::Int(number) => number.into(),
        })
    }
}

/// Hands a row's values to `bind` in the order of [`LOG_COLUMNS`], for both ways of binding
/// them. A visitor rather than an array, so that each call site compiles to its binding calls
/// in a row (an array of 21 values, built and matched, cost 1.3% of a row).
#[inline(always)]
fn for_each_value<'a>(log: &'a LogRow, timestamp: &'a str, mut bind: impl FnMut(Column<'a>)) {
    use Column::{Int, Text};
    bind(Text(&log.id));
    bind(Text(timestamp));
    bind(Int(log.group_id));
    bind(Text(&log.group_name));
    bind(Int(log.parent_group_id));
    bind(Text(&log.parent_group_name));
    bind(Text(&log.key_value));
    bind(Text(&log.key_hash));
    bind(Text(&log.model));
    bind(Int(log.is_success.into()));
    bind(Text(&log.source_ip));
    bind(Int(log.status_code));
    bind(Text(&log.request_path));
    bind(Int(log.duration_ms));
    bind(Text(&log.error_message));
    bind(Text(&log.user_agent));
    bind(Text(&log.request_type));
    bind(Text(&log.upstream_addr));
    bind(Int(log.is_stream.into()));
    bind(Text(&log.request_body));
    bind(Text(&log.request_id));
}

/// Binds `rows` to `stmt`'s parameters in order and runs it: the number of rows stored.
fn bind_and_insert(stmt: &mut rusqlite::Statement<'_>, rows: &[LogRow]) -> StoreResult<usize> {
    let mut index = 0;
    for log in rows {
        let timestamp = datetime::format(log.timestamp);
        let mut bound = Ok(());
        for_each_value(log, &timestamp, |value| {
            index += 1;
            if bound.is_ok() {
                bound = stmt.raw_bind_parameter(index, value);
            }
        });
        bound.with_context(|| format!("bind request log {}", log.id))?;
    }
    stmt.raw_execute().context("insert request logs")
}

/// One row a statement, each saying whether it was stored.
fn insert_logs_one_by_one<'a>(
    txn: &Transaction<'_>,
    logs: &'a [LogRow],
) -> StoreResult<Vec<&'a LogRow>> {
    let mut stmt = txn
        .prepare_cached(&insert_sql(1))
        .context("prepare log insert")?;
    let mut inserted = Vec::with_capacity(logs.len());
    for log in logs {
        if bind_and_insert(&mut stmt, std::slice::from_ref(log))? > 0 {
            inserted.push(log);
        }
    }
    Ok(inserted)
}

/// Adds one stored log row to the per-hour sums.
fn count_hour(log: &LogRow, hours: &mut HashMap<(DateTime<Utc>, i64), HourCounts>) {
    if log.request_type == "final" {
        let hour = datetime::truncate_to_hour(log.timestamp);
        let groups = [log.group_id, log.parent_group_id];
        for group_id in groups.into_iter().filter(|id| *id != 0) {
            let counts = hours.entry((hour, group_id)).or_default();
            if log.is_success {
                counts.success += 1;
            } else {
                counts.failure += 1;
            }
        }
    }
}

/// `request_count += n, last_used_at = latest` for the key that served, found by its id (the
/// row itself, not a search of the hash index); a key imported into several groups has a row
/// per group and is counted only in the one that served.
const KEY_USAGE_UPDATE: &str = "UPDATE api_keys SET request_count = request_count + ?1, \
     last_used_at = ?2 WHERE id = ?3";

/// In key id order: rows close in id share pages, so a big update walks the table once.
fn add_key_usage(txn: &Transaction<'_>, usage: &[KeyUsage]) -> StoreResult<()> {
    let mut stmt = txn
        .prepare_cached(KEY_USAGE_UPDATE)
        .context("prepare key usage update")?;
    let mut ordered: Vec<&KeyUsage> = usage.iter().collect();
    ordered.sort_unstable_by_key(|u| u.key_id);
    for used in ordered {
        stmt.execute(params![
            used.requests,
            datetime::format(used.last_used_at),
            used.key_id
        ])
        .with_context(|| format!("update usage of key {}", used.key_id))?;
    }
    Ok(())
}

fn add_hourly_counts(
    txn: &Transaction<'_>,
    hours: &HashMap<(DateTime<Utc>, i64), HourCounts>,
    now: &str,
) -> StoreResult<()> {
    let mut stmt = txn
        .prepare_cached(
            "INSERT INTO group_hourly_stats \
             (time, group_id, success_count, failure_count, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
             ON CONFLICT (time, group_id) DO UPDATE SET \
             success_count = success_count + excluded.success_count, \
             failure_count = failure_count + excluded.failure_count, \
             updated_at = excluded.updated_at",
        )
        .context("prepare hourly stats upsert")?;
    for ((hour, group_id), counts) in hours {
        stmt.execute(params![
            datetime::format(*hour),
            group_id,
            counts.success,
            counts.failure,
            now
        ])
        .with_context(|| format!("add hourly stats of group {group_id}"))?;
    }
    Ok(())
}

fn apply_key_states(
    txn: &Transaction<'_>,
    states: &[KeyStateUpdate],
    now: &str,
) -> StoreResult<()> {
    let mut stmt = txn
        .prepare_cached(
            "UPDATE api_keys SET failure_count = ?1, status = ?2, updated_at = ?3 WHERE id = ?4",
        )
        .context("prepare key state update")?;
    for state in states {
        stmt.execute(params![
            state.failure_count,
            state.status,
            now,
            state.key_id
        ])
        .with_context(|| format!("update state of key {}", state.key_id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// The plan, not a stopwatch, proves the key update goes straight to the row by id
    /// rather than searching an index or scanning the group.
    #[test]
    fn key_usage_update_finds_the_row_by_id() {
        let mut conn = Connection::open_in_memory().expect("memory db");
        super::super::schema::migrate(&mut conn, ":memory:").expect("schema");
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", super::KEY_USAGE_UPDATE))
            .expect("explain")
            .query_map(rusqlite::params![1, "t", 1], |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        let plan = plan.join("\n");
        assert!(plan.contains("INTEGER PRIMARY KEY"), "{plan}");
        assert!(!plan.contains("idx_api_keys"), "{plan}");
    }
}
