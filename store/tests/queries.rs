//! The read side: log search with every filter, the key export walk, hourly stats windows and
//! retention's chunked delete.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::{fresh, log, raw, utc};
use store::{FlushBatch, LogFilter, LogRow};

fn ids(rows: &[LogRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

async fn write(db: &common::TestDb, logs: Vec<LogRow>) {
    db.store
        .write_batch(FlushBatch {
            logs,
            key_states: vec![],
            key_usage: vec![],
        })
        .await
        .expect("flush");
}

/// Six rows differing in one field each from the base row `a`.
async fn varied_logs(db: &common::TestDb) -> DateTime<Utc> {
    let t0 = utc("2025-09-01T04:00:00Z");
    let at = |minutes: i64| t0 + TimeDelta::minutes(minutes);
    let mut rows = Vec::new();
    rows.push(log("a", at(0), 1, "h-1"));
    let mut b = log("b", at(1), 2, "h-2");
    b.group_name = "other_group".into();
    b.parent_group_id = 9;
    b.parent_group_name = "agg".into();
    rows.push(b);
    let mut c = log("c", at(2), 1, "h-1");
    c.model = "claude-3".into();
    rows.push(c);
    let mut d = log("d", at(3), 1, "h-3");
    (d.is_success, d.status_code, d.request_type) = (false, 429, "retry".into());
    d.error_message = "Rate limit reached for 100% of quota".into();
    rows.push(d);
    let mut e = log("e", at(4), 1, "h-3");
    (e.is_success, e.status_code) = (false, 500);
    e.source_ip = "10.0.0.7".into();
    rows.push(e);
    let mut f = log("f", at(5), 1, "");
    f.key_value = String::new();
    (f.is_success, f.status_code) = (false, 503);
    rows.push(f);
    write(db, rows).await;
    t0
}

async fn search(db: &common::TestDb, filter: LogFilter) -> Vec<String> {
    let (rows, total) = db.store.list_logs(filter, 1, 100).await.expect("list");
    assert_eq!(total as usize, rows.len(), "total counts the same rows");
    rows.into_iter().map(|r| r.id).collect()
}

#[tokio::test]
async fn every_filter_narrows_the_search() {
    let db = fresh().await;
    let t0 = varied_logs(&db).await;
    let none = LogFilter::default();
    assert_eq!(
        search(&db, none.clone()).await,
        ["f", "e", "d", "c", "b", "a"]
    );
    let with = |f: fn(&mut LogFilter)| {
        let mut filter = none.clone();
        f(&mut filter);
        filter
    };
    let cases: Vec<(LogFilter, Vec<&str>)> = vec![
        (with(|f| f.parent_group_name = Some("AG".into())), vec!["b"]),
        (with(|f| f.group_name = Some("other_".into())), vec!["b"]),
        // `_` is literal: "group_1" has no underscore where "group-1" has a dash.
        (with(|f| f.group_name = Some("group_1".into())), vec![]),
        (
            with(|f| f.group_name = Some("group-1".into())),
            vec!["f", "e", "d", "c", "a"],
        ),
        (with(|f| f.key_hash = Some("h-3".into())), vec!["e", "d"]),
        (with(|f| f.model = Some("claude".into())), vec!["c"]),
        (with(|f| f.is_success = Some(false)), vec!["f", "e", "d"]),
        (with(|f| f.is_success = Some(true)), vec!["c", "b", "a"]),
        (with(|f| f.request_type = Some("retry".into())), vec!["d"]),
        (with(|f| f.status_code = Some(500)), vec!["e"]),
        (with(|f| f.source_ip = Some("10.0.0.7".into())), vec!["e"]),
        (with(|f| f.error_contains = Some("100%".into())), vec!["d"]),
        (with(|f| f.error_contains = Some("0% of".into())), vec!["d"]),
        (with(|f| f.error_contains = Some("1%0".into())), vec![]),
    ];
    for (filter, want) in cases {
        assert_eq!(search(&db, filter.clone()).await, want, "{filter:?}");
    }
    let window = LogFilter {
        start: Some(t0 + TimeDelta::minutes(1)),
        end: Some(t0 + TimeDelta::minutes(3)),
        ..LogFilter::default()
    };
    assert_eq!(
        search(&db, window).await,
        ["d", "c", "b"],
        "both ends inclusive"
    );
    let combined = LogFilter {
        key_hash: Some("h-1".into()),
        model: Some("gpt".into()),
        ..LogFilter::default()
    };
    assert_eq!(search(&db, combined).await, ["a"]);
}

#[tokio::test]
async fn pages_are_newest_first_without_overlap() {
    let db = fresh().await;
    let t0 = utc("2025-09-01T04:00:00Z");
    // Two rows share a timestamp: the order between them must still be stable across pages.
    let rows: Vec<LogRow> = (0..7)
        .map(|i| log(&format!("r{i}"), t0 + TimeDelta::seconds(i.min(5)), 1, "h"))
        .collect();
    write(&db, rows).await;
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (rows, total) = db
            .store
            .list_logs(LogFilter::default(), page, 3)
            .await
            .expect("page");
        assert_eq!(total, 7);
        seen.extend(ids(&rows).into_iter().map(String::from));
    }
    assert_eq!(seen.len(), 7);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7, "no row on two pages: {seen:?}");
    assert_eq!(&seen[2..], ["r4", "r3", "r2", "r1", "r0"]);
    let (past_end, total) = db
        .store
        .list_logs(LogFilter::default(), 9, 3)
        .await
        .expect("page");
    assert!(past_end.is_empty());
    assert_eq!(total, 7);
}

#[tokio::test]
async fn export_walks_distinct_keys_with_their_latest_log() {
    let db = fresh().await;
    let t0 = varied_logs(&db).await;
    let mut later = log("g", t0 + TimeDelta::minutes(9), 1, "h-2");
    later.group_name = "latest-group".into();
    (later.is_success, later.status_code) = (false, 401);
    write(&db, vec![later]).await;

    let mut walked = Vec::new();
    let mut after = String::new();
    loop {
        let chunk = db
            .store
            .latest_log_keys(LogFilter::default(), after.clone(), 2)
            .await
            .expect("chunk");
        assert!(chunk.len() <= 2);
        let Some(last) = chunk.last() else { break };
        after = last.key_hash.clone();
        walked.extend(chunk);
    }
    let got: Vec<(&str, &str, i64)> = walked
        .iter()
        .map(|k| (k.key_hash.as_str(), k.group_name.as_str(), k.status_code))
        .collect();
    assert_eq!(
        got,
        [
            ("h-1", "group-1", 200),
            ("h-2", "latest-group", 401),
            ("h-3", "group-1", 500)
        ],
        "one row per key, its latest log; the keyless row is left out"
    );
    assert_eq!(walked[0].key_value, "value-of-h-1");

    let only_failures = LogFilter {
        is_success: Some(false),
        ..LogFilter::default()
    };
    let failed = db
        .store
        .latest_log_keys(only_failures, String::new(), 100)
        .await
        .expect("filtered");
    let got: Vec<(&str, i64)> = failed
        .iter()
        .map(|k| (k.key_hash.as_str(), k.status_code))
        .collect();
    assert_eq!(
        got,
        [("h-2", 401), ("h-3", 500)],
        "the latest among matching rows"
    );
}

#[tokio::test]
async fn hourly_stats_window_is_exact_even_for_rows_with_a_local_offset() {
    let db = fresh().await;
    let conn = raw(&db.path);
    for (time, group, success, failure) in [
        ("2025-09-01 11:00:00.000000000+00:00", 1, 1, 0),
        ("2025-09-01 12:00:00.000000000+00:00", 1, 2, 1),
        // v1 on a UTC+8 host: 12:00 UTC, text that sorts as if it were 20:00.
        ("2025-09-01 20:00:00+08:00", 2, 5, 5),
        ("2025-09-01 13:00:00.000000000+00:00", 1, 7, 0),
    ] {
        conn.execute(
            "INSERT INTO group_hourly_stats (time, group_id, success_count, failure_count) \
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![time, group, success, failure],
        )
        .expect("plant stats");
    }
    let from = utc("2025-09-01T12:00:00Z");
    let to = utc("2025-09-01T13:00:00Z");
    let all = db.store.hourly_stats(None, from, to).await.expect("all");
    let got: Vec<(i64, i64, i64)> = all
        .iter()
        .map(|s| (s.group_id, s.success_count, s.failure_count))
        .collect();
    assert_eq!(got, [(1, 2, 1), (2, 5, 5)]);
    assert!(all.iter().all(|s| s.time == from));
    let one = db.store.hourly_stats(Some(2), from, to).await.expect("one");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].group_id, 2);
}

#[tokio::test]
async fn final_logs_are_counted_in_a_window() {
    let db = fresh().await;
    let t0 = varied_logs(&db).await;
    let count = |from: i64, to: Option<i64>| {
        db.store.count_final_logs(
            t0 + TimeDelta::minutes(from),
            to.map(|m| t0 + TimeDelta::minutes(m)),
        )
    };
    assert_eq!(
        count(0, None).await.expect("count"),
        5,
        "the retry row is not"
    );
    assert_eq!(count(1, Some(4)).await.expect("count"), 2, "b and c");
    assert_eq!(count(6, None).await.expect("count"), 0);
}

#[tokio::test]
async fn retention_deletes_old_rows_in_chunks_and_keeps_the_rest() {
    let db = fresh().await;
    let old = utc("2025-08-01T00:00:00Z");
    let new = utc("2025-09-01T00:00:00Z");
    // More than two chunks' worth, so the loop has to go round.
    let mut rows: Vec<LogRow> = (0..2_345)
        .map(|i| log(&format!("old-{i}"), old + TimeDelta::seconds(i), 1, "h"))
        .collect();
    rows.extend((0..3).map(|i| log(&format!("new-{i}"), new, 1, "h")));
    write(&db, rows).await;
    let hourly_before: i64 = raw(&db.path)
        .query_row("SELECT COUNT(*) FROM group_hourly_stats", [], |r| r.get(0))
        .expect("count");

    let deleted = db
        .store
        .delete_logs_before(utc("2025-08-15T00:00:00Z"))
        .await
        .expect("delete");
    assert_eq!(deleted, 2_345);
    let (left, total) = db
        .store
        .list_logs(LogFilter::default(), 1, 100)
        .await
        .expect("list");
    assert_eq!(total, 3);
    assert!(left.iter().all(|r| r.id.starts_with("new-")));
    let hourly_after: i64 = raw(&db.path)
        .query_row("SELECT COUNT(*) FROM group_hourly_stats", [], |r| r.get(0))
        .expect("count");
    assert_eq!(hourly_after, hourly_before, "hourly stats are never pruned");
    assert_eq!(
        db.store
            .delete_logs_before(utc("2025-08-15T00:00:00Z"))
            .await
            .expect("again"),
        0
    );
}
