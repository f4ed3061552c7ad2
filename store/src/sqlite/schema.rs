//! Opening a SQLite file: directories, pragmas, and the schema brought up to date.
//!
//! The schema is `migrations/sqlite`, applied by refinery. Its V1 is GPT-Load v1's own schema with
//! `IF NOT EXISTS` everywhere, so a v1 database opens as is and refinery only records V1. A
//! database from an older v1 release than the one V1 describes lacks columns that GORM's
//! AutoMigrate would have added on upgrade (`notes`, `parent_group_id`, …): before V1 runs
//! (its indexes name those columns) we add them the same way, taking their declarations from V1
//! itself so there is one definition of the v1 schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::Context;
use crate::error::{StoreError, StoreResult};

mod embedded {
    refinery::embed_migrations!("../migrations/sqlite");
}

/// V1 as text, the reference for the columns an older v1 database may lack.
const V1_SCHEMA: &str = include_str!("../../../migrations/sqlite/V1__gpt_load_v1_schema.sql");

/// GPT-Load v1 waits 5 s for a locked database; so do we.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page size of a database this program creates (SQLite ignores it for an existing file). Four
/// times the 4 KiB default: a request log row touches the last page of five B-trees, and bigger
/// pages split a quarter as often and reach the WAL in a quarter of the writes.
const PAGE_SIZE: i64 = 16384;

/// Prepared statements kept per connection. The store has about forty distinct statements;
/// past the cache size the least recently used is re-prepared, which costs microseconds.
const STATEMENT_CACHE: usize = 64;

/// Creates the directories the database file goes in, as GPT-Load does for its `./data`.
pub(super) fn create_parent_dir(path: &Path, label: &str) -> StoreResult<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Db(format!(
                "SQLite database '{label}': cannot create directory '{}': {e}",
                dir.display()
            ))
        }),
        _ => Ok(()),
    }
}

/// Opens the writer connection with our pragmas.
pub(super) fn connect(path: &Path, label: &str) -> StoreResult<Connection> {
    let conn = Connection::open(path)
        .with_context(|| format!("open database '{label}' (is the path a writable file?)"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .with_context(|| format!("'{label}': set busy_timeout"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .with_context(|| format!("'{label}': set page_size"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .with_context(|| format!("'{label}': set journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") && path != Path::new(":memory:") {
        tracing::warn!(
            database = label,
            mode,
            "SQLite refused WAL mode; reads will wait for writes"
        );
    }
    // NORMAL is durable across application crashes in WAL mode; only a power cut can lose the
    // last transactions, which for request logs and counters is the right trade for speed.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .with_context(|| format!("'{label}': set synchronous=NORMAL"))?;
    // v1 declares no foreign keys in SQLite and deletes children itself; keep it that way.
    conn.pragma_update(None, "foreign_keys", "OFF")
        .with_context(|| format!("'{label}': set foreign_keys=OFF"))?;
    Ok(conn)
}

/// Opens the reader connection: the same pragmas, and writes refused.
pub(super) fn connect_reader(path: &Path, label: &str) -> StoreResult<Connection> {
    let conn = connect(path, label)?;
    conn.pragma_update(None, "query_only", true)
        .with_context(|| format!("'{label}': set query_only"))?;
    Ok(conn)
}

/// Adds what an older v1 database lacks, then applies every pending migration.
pub(super) fn migrate(conn: &mut Connection, label: &str) -> StoreResult<()> {
    if !v1_recorded(conn).with_context(|| format!("'{label}': read migration history"))? {
        add_missing_v1_columns(conn, label)?;
    }
    let report = embedded::migrations::runner()
        .run(conn)
        .map_err(|e| StoreError::Db(format!("SQLite database '{label}': migration failed: {e}")))?;
    for migration in report.applied_migrations() {
        tracing::info!(database = label, migration = %migration, "applied migration");
    }
    Ok(())
}

/// Whether refinery already recorded V1 (then the columns were reconciled back then).
fn v1_recorded(conn: &Connection) -> rusqlite::Result<bool> {
    let has_history: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master \
         WHERE type = 'table' AND name = 'refinery_schema_history')",
        [],
        |row| row.get(0),
    )?;
    if !has_history {
        return Ok(false);
    }
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM refinery_schema_history WHERE version = 1)",
        [],
        |row| row.get(0),
    )
}

/// One column as `PRAGMA table_info` describes it.
struct Column {
    name: String,
    declared_type: String,
    not_null: bool,
    default: Option<String>,
    primary_key: bool,
}

impl Column {
    /// The `ALTER TABLE … ADD COLUMN` that adds this column to `table`. SQLite cannot add a
    /// NOT NULL column without a default, so one is supplied: 0 for numbers, '' otherwise,
    /// what GORM's zero values are.
    fn add_to(&self, table: &str) -> String {
        let mut sql = format!(
            "ALTER TABLE \"{table}\" ADD COLUMN \"{}\" {}",
            self.name, self.declared_type
        );
        let zero = if is_numeric(&self.declared_type) {
            "0"
        } else {
            "''"
        };
        match (&self.default, self.not_null) {
            (Some(default), true) => sql.push_str(&format!(" NOT NULL DEFAULT {default}")),
            (None, true) => sql.push_str(&format!(" NOT NULL DEFAULT {zero}")),
            (Some(default), false) => sql.push_str(&format!(" DEFAULT {default}")),
            (None, false) => {}
        }
        sql
    }
}

fn is_numeric(declared_type: &str) -> bool {
    let t = declared_type.to_ascii_lowercase();
    ["int", "numeric", "bool", "real", "decimal"]
        .iter()
        .any(|word| t.contains(word))
}

/// Adds to each existing v1 table the columns V1 declares and the file lacks.
fn add_missing_v1_columns(conn: &mut Connection, label: &str) -> StoreResult<()> {
    let reference = Connection::open_in_memory().context("open in-memory reference schema")?;
    reference
        .execute_batch(V1_SCHEMA)
        .context("build in-memory reference schema from V1")?;
    let txn = conn
        .transaction()
        .with_context(|| format!("'{label}': begin column reconciliation"))?;
    for table in table_names(&reference).context("list reference tables")? {
        let present =
            columns(&txn, &table).with_context(|| format!("'{label}': read columns of {table}"))?;
        if present.is_empty() {
            continue; // not there at all: V1 creates it whole
        }
        let wanted = columns(&reference, &table).context("read reference columns")?;
        for column in wanted {
            if present
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case(&column.name))
            {
                continue;
            }
            if column.primary_key {
                return Err(StoreError::Db(format!(
                    "SQLite database '{label}': table {table} has no primary key column '{}'; \
                     this is not a GPT-Load database",
                    column.name
                )));
            }
            tracing::info!(
                database = label,
                table,
                column = column.name,
                "adding a column this v1 database predates"
            );
            txn.execute_batch(&column.add_to(&table))
                .with_context(|| format!("'{label}': add column {table}.{}", column.name))?;
        }
    }
    txn.commit()
        .with_context(|| format!("'{label}': commit column reconciliation"))
}

fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names = stmt.query_map([], |row| row.get(0))?;
    names.collect()
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt =
        conn.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")?;
    let rows = stmt.query_map([table], |row| {
        Ok(Column {
            name: row.get(0)?,
            declared_type: row.get(1)?,
            not_null: row.get::<_, i64>(2)? != 0,
            default: row.get(3)?,
            primary_key: row.get::<_, i64>(4)? != 0,
        })
    })?;
    rows.collect()
}
