//! The read side of `request_logs` and `group_hourly_stats`: the console's log search and key
//! export, and the counts behind the dashboard and the group statistics (spec §3.3).
//!
//! Log times compare as text, which is how GPT-Load v1 compares them on SQLite too. Our rows
//! (UTC, nine fraction digits) order exactly; a row v1 wrote with a local offset can land up to
//! that offset early or late at the edge of a time filter. Hourly stats are few (one row per
//! group and hour), so they are fetched with a day's margin and filtered by their parsed time,
//! which is exact whatever offset v1 wrote them with.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use super::{Context, SqliteStore, columns, datetime};
use crate::error::StoreResult;
use crate::model::{HourlyStat, LogFilter, LogKey, LogRow};

const LOG_COLUMNS: &str = "id, timestamp, group_id, group_name, parent_group_id, \
     parent_group_name, key_value, key_hash, model, is_success, source_ip, status_code, \
     request_path, duration_ms, error_message, user_agent, request_type, upstream_addr, \
     is_stream, request_body, request_id";

/// The widest UTC offset a v1 row may carry is 14 h; a day covers it with room to spare.
const OFFSET_MARGIN: TimeDelta = TimeDelta::days(1);

impl SqliteStore {
    pub(crate) async fn list_logs(
        &self,
        filter: LogFilter,
        page: i64,
        page_size: i64,
    ) -> StoreResult<(Vec<LogRow>, i64)> {
        self.read("list request logs", move |conn| {
            list_logs(conn, &filter, page, page_size)
        })
        .await
    }

    pub(crate) async fn latest_log_keys(
        &self,
        filter: LogFilter,
        after_hash: String,
        limit: usize,
    ) -> StoreResult<Vec<LogKey>> {
        self.read("export log keys", move |conn| {
            latest_log_keys(conn, &filter, &after_hash, limit)
        })
        .await
    }

    pub(crate) async fn count_final_logs(
        &self,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
    ) -> StoreResult<i64> {
        self.read("count final request logs", move |conn| {
            count_final_logs(conn, from, to)
        })
        .await
    }

    pub(crate) async fn hourly_stats(
        &self,
        group_id: Option<i64>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<HourlyStat>> {
        self.read("read hourly stats", move |conn| {
            hourly_stats(conn, group_id, from, to)
        })
        .await
    }
}

/// `WHERE` conditions (joined with AND, each with its `?`) and their values.
#[derive(Default)]
struct Conditions {
    sql: Vec<&'static str>,
    values: Vec<Value>,
}

impl Conditions {
    fn push(&mut self, sql: &'static str, value: Value) {
        self.sql.push(sql);
        self.values.push(value);
    }

    fn text(&mut self, sql: &'static str, value: &Option<String>) {
        if let Some(v) = value {
            self.push(sql, Value::Text(v.clone()));
        }
    }

    fn contains(&mut self, sql: &'static str, value: &Option<String>) {
        if let Some(v) = value {
            self.push(sql, Value::Text(like_pattern(v)));
        }
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// The conditions of every filter that is set (v1's `logFiltersScope`).
fn conditions(filter: &LogFilter) -> Conditions {
    let mut c = Conditions::default();
    c.contains(
        "parent_group_name LIKE ? ESCAPE '\\'",
        &filter.parent_group_name,
    );
    c.contains("group_name LIKE ? ESCAPE '\\'", &filter.group_name);
    c.text("key_hash = ?", &filter.key_hash);
    c.contains("model LIKE ? ESCAPE '\\'", &filter.model);
    if let Some(success) = filter.is_success {
        c.push("is_success = ?", Value::Integer(i64::from(success)));
    }
    c.text("request_type = ?", &filter.request_type);
    if let Some(code) = filter.status_code {
        c.push("status_code = ?", Value::Integer(code));
    }
    c.text("source_ip = ?", &filter.source_ip);
    c.contains("error_message LIKE ? ESCAPE '\\'", &filter.error_contains);
    c.text("request_id = ?", &filter.request_id);
    if let Some(start) = filter.start {
        c.push("timestamp >= ?", Value::Text(datetime::format(start)));
    }
    if let Some(end) = filter.end {
        c.push("timestamp <= ?", Value::Text(datetime::format(end)));
    }
    c
}

/// `%text%` with LIKE's own wildcards escaped, so a `_` in a group name matches only itself
/// (v1 passes them through as wildcards).
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn log_from_row(row: &Row<'_>) -> LogRow {
    LogRow {
        id: columns::text(row, 0),
        timestamp: columns::time(row, 1),
        group_id: columns::int(row, 2),
        group_name: columns::text(row, 3),
        parent_group_id: columns::int(row, 4),
        parent_group_name: columns::text(row, 5),
        key_value: columns::text(row, 6),
        key_hash: columns::text(row, 7),
        model: columns::text(row, 8),
        is_success: columns::flag(row, 9),
        source_ip: columns::text(row, 10),
        status_code: columns::int(row, 11),
        request_path: columns::text(row, 12),
        duration_ms: columns::int(row, 13),
        error_message: columns::text(row, 14),
        user_agent: columns::text(row, 15),
        request_type: columns::text_or(row, 16, "final"),
        upstream_addr: columns::text(row, 17),
        is_stream: columns::flag(row, 18),
        request_body: columns::text(row, 19),
        request_id: columns::text(row, 20),
    }
}

/// One page of matching logs, newest first, and how many match in all. `rowid` breaks ties of
/// equal timestamps so that pages never overlap; the timestamp index serves that order as is.
fn list_logs(
    conn: &Connection,
    filter: &LogFilter,
    page: i64,
    page_size: i64,
) -> StoreResult<(Vec<LogRow>, i64)> {
    let c = conditions(filter);
    let clause = c.clause();
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM request_logs{clause}"))
        .and_then(|mut stmt| stmt.query_row(params_from_iter(&c.values), |row| row.get(0)))
        .context("count request logs")?;
    let page_size = page_size.max(1);
    let mut values = c.values;
    values.push(Value::Integer(page_size));
    values.push(Value::Integer((page.max(1) - 1).saturating_mul(page_size)));
    let sql = format!(
        "SELECT {LOG_COLUMNS} FROM request_logs{clause} \
         ORDER BY timestamp DESC, rowid DESC LIMIT ? OFFSET ?"
    );
    let mut stmt = conn.prepare_cached(&sql).context("list request logs")?;
    let mut rows = stmt
        .query(params_from_iter(&values))
        .context("list request logs")?;
    let mut logs = Vec::new();
    while let Some(row) = rows.next().context("list request logs")? {
        logs.push(log_from_row(row));
    }
    Ok((logs, total))
}

/// SQLite's bare columns: with one `MAX()` in the select list, the other columns come from the
/// row that holds the maximum, i.e. each key's latest matching log (v1 gets the same with
/// `ROW_NUMBER() OVER (PARTITION BY key_hash ORDER BY timestamp DESC)`). Walking the key_hash
/// index from `after` lets the export read the keys a chunk at a time, releasing the reader in
/// between, instead of holding it for a whole download.
pub(super) const LATEST_LOG_KEYS: &str = "SELECT key_hash, key_value, group_name, status_code, \
     MAX(timestamp) FROM request_logs";

fn latest_log_keys(
    conn: &Connection,
    filter: &LogFilter,
    after_hash: &str,
    limit: usize,
) -> StoreResult<Vec<LogKey>> {
    let mut c = conditions(filter);
    // `> ''` also leaves out rows without a key (NULL or empty hash), as v1 does.
    c.push("key_hash > ?", Value::Text(after_hash.to_owned()));
    c.values.push(Value::Integer(limit as i64));
    let sql = format!(
        "{LATEST_LOG_KEYS}{} GROUP BY key_hash ORDER BY key_hash LIMIT ?",
        c.clause()
    );
    let mut stmt = conn.prepare_cached(&sql).context("export log keys")?;
    let mut rows = stmt
        .query(params_from_iter(&c.values))
        .context("export log keys")?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next().context("export log keys")? {
        keys.push(LogKey {
            key_hash: columns::text(row, 0),
            key_value: columns::text(row, 1),
            group_name: columns::text(row, 2),
            status_code: columns::int(row, 3),
        });
    }
    Ok(keys)
}

fn count_final_logs(
    conn: &Connection,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> StoreResult<i64> {
    let mut c = Conditions::default();
    c.push("timestamp >= ?", Value::Text(datetime::format(from)));
    if let Some(to) = to {
        c.push("timestamp < ?", Value::Text(datetime::format(to)));
    }
    c.push("request_type = ?", Value::Text("final".to_owned()));
    conn.prepare_cached(&format!("SELECT COUNT(*) FROM request_logs{}", c.clause()))
        .and_then(|mut stmt| stmt.query_row(params_from_iter(&c.values), |row| row.get(0)))
        .context("count final request logs")
}

/// Hourly rows with `from <= time < to`, of one group or of all, in time order.
fn hourly_stats(
    conn: &Connection,
    group_id: Option<i64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<Vec<HourlyStat>> {
    let mut c = Conditions::default();
    c.push(
        "time >= ?",
        Value::Text(datetime::format(from - OFFSET_MARGIN)),
    );
    c.push(
        "time < ?",
        Value::Text(datetime::format(to + OFFSET_MARGIN)),
    );
    if let Some(id) = group_id {
        c.push("group_id = ?", Value::Integer(id));
    }
    let sql = format!(
        "SELECT time, group_id, success_count, failure_count FROM group_hourly_stats{}",
        c.clause()
    );
    let mut stmt = conn.prepare_cached(&sql).context("read hourly stats")?;
    let mut rows = stmt
        .query(params_from_iter(&c.values))
        .context("read hourly stats")?;
    let mut stats = Vec::new();
    while let Some(row) = rows.next().context("read hourly stats")? {
        let Some(time) = columns::time_opt(row, 0) else {
            continue;
        };
        if time >= from && time < to {
            stats.push(HourlyStat {
                time,
                group_id: columns::int(row, 1),
                success_count: columns::int(row, 2),
                failure_count: columns::int(row, 3),
            });
        }
    }
    stats.sort_by_key(|s| (s.time, s.group_id));
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    fn plan(sql: &str, params: &[&dyn rusqlite::ToSql]) -> String {
        let mut conn = Connection::open_in_memory().expect("memory db");
        super::super::schema::migrate(&mut conn, ":memory:").expect("schema");
        let rows: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain")
            .query_map(params, |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        rows.join("\n")
    }

    /// The log page is read straight off the timestamp index, without sorting every match.
    #[test]
    fn log_page_order_needs_no_sort() {
        let plan = plan(
            &format!(
                "SELECT {} FROM request_logs ORDER BY timestamp DESC, rowid DESC LIMIT 15",
                super::LOG_COLUMNS
            ),
            &[],
        );
        assert!(plan.contains("idx_request_logs_timestamp"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    /// Each export chunk walks the key_hash index from where the last one stopped, so a chunk
    /// costs the rows of its own keys, not a scan and sort of the whole table.
    #[test]
    fn export_chunk_walks_the_key_hash_index() {
        let sql = format!(
            "{} WHERE key_hash > ?1 GROUP BY key_hash ORDER BY key_hash LIMIT 500",
            super::LATEST_LOG_KEYS
        );
        let plan = plan(&sql, &[&"h"]);
        assert!(plan.contains("idx_request_logs_key_hash"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    /// A request id is looked up on its index, not by scanning the table.
    #[test]
    fn request_id_lookup_uses_its_index() {
        let plan = plan(
            "SELECT id FROM request_logs WHERE request_id = ?1",
            &[&"0123456789ab00000001"],
        );
        assert!(plan.contains("idx_request_logs_request_id"), "{plan}");
    }

    /// The dashboard's count walks the time range, not every `final` row ever written (v1's
    /// request_type index, which SQLite would pick for the equality, is gone: V3).
    #[test]
    fn final_count_walks_the_time_range() {
        let plan = plan(
            "SELECT COUNT(*) FROM request_logs WHERE timestamp >= ?1 AND request_type = ?2",
            &[&"2026-01-01 00:00:00", &"final"],
        );
        assert!(plan.contains("idx_request_logs_timestamp"), "{plan}");
    }

    /// Request logs keep the indexes our queries read and none of v1's unused ones, each of
    /// which cost every logged request a B-tree insert.
    #[test]
    fn request_logs_carry_only_the_indexes_queries_use() {
        let mut conn = Connection::open_in_memory().expect("memory db");
        super::super::schema::migrate(&mut conn, ":memory:").expect("schema");
        let names: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' \
                 AND tbl_name = 'request_logs' AND sql IS NOT NULL ORDER BY name",
            )
            .expect("list")
            .query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("names");
        assert_eq!(
            names,
            [
                "idx_request_logs_key_hash",
                "idx_request_logs_request_id",
                "idx_request_logs_timestamp"
            ]
        );
    }

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(super::like_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
