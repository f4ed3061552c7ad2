//! The log flush: log rows, key usage, hourly stats for group and parent, key states, in one go.

mod common;

use std::time::Duration;

use common::{fresh, group, log, new_keys, raw, utc};
use store::{FlushBatch, KeyStateUpdate, KeyUsage, LogRow};

/// (time, group_id, success, failure) rows of group_hourly_stats, ordered.
fn hourly(path: &std::path::Path) -> Vec<(String, i64, i64, i64)> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare(
            "SELECT time, group_id, success_count, failure_count FROM group_hourly_stats \
             ORDER BY time, group_id",
        )
        .expect("prepare");
    stmt.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// A fresh database with group `g` holding `keys` keys.
async fn fresh_with_group(keys: usize) -> (common::TestDb, store::GroupRow) {
    let db = fresh().await;
    let g = db.store.insert_group(group("g")).await.expect("group");
    db.store
        .insert_keys(g.id, new_keys("g", keys))
        .await
        .expect("keys");
    (db, g)
}

fn log_count(path: &std::path::Path) -> i64 {
    raw(path)
        .query_row("SELECT COUNT(*) FROM request_logs", [], |row| row.get(0))
        .expect("count")
}

#[tokio::test]
async fn key_usage_adds_to_the_key_that_served() {
    let db = fresh().await;
    let a = db.store.insert_group(group("a")).await.expect("group");
    let b = db.store.insert_group(group("b")).await.expect("group");
    // The same key (same hash) imported into both groups: only the row that served counts.
    db.store
        .insert_keys(a.id, new_keys("k", 2))
        .await
        .expect("keys");
    db.store
        .insert_keys(b.id, new_keys("k", 1))
        .await
        .expect("keys");
    let in_a = db.store.keys_of_group(a.id).await.expect("keys");
    let usage = |key: usize, requests, at| KeyUsage {
        key_id: in_a[key].id,
        requests,
        last_used_at: at,
    };

    let (t1, t2, t3) = (
        utc("2025-09-01T04:10:00.5Z"),
        utc("2025-09-01T04:20:00.25Z"),
        utc("2025-09-01T04:30:00Z"),
    );
    let flush = |key_usage| FlushBatch {
        logs: vec![],
        key_states: vec![],
        key_usage,
    };
    db.store
        .write_batch(flush(vec![usage(0, 2, t2), usage(1, 1, t1)]))
        .await
        .expect("flush");
    db.store
        .write_batch(flush(vec![usage(0, 3, t3)]))
        .await
        .expect("second flush");

    let keys = db.store.keys_of_group(a.id).await.expect("keys");
    assert_eq!((keys[0].request_count, keys[0].last_used_at), (5, Some(t3)));
    assert_eq!((keys[1].request_count, keys[1].last_used_at), (1, Some(t1)));
    let in_b = &db.store.keys_of_group(b.id).await.expect("keys")[0];
    assert_eq!(
        (in_b.request_count, in_b.last_used_at),
        (0, None),
        "other group untouched"
    );
    // Log rows alone do not count: usage is summed by the caller.
    db.store
        .write_batch(FlushBatch {
            logs: vec![log("l1", t3, a.id, &keys[1].key_hash)],
            ..FlushBatch::default()
        })
        .await
        .expect("logs only");
    assert_eq!(
        db.store.keys_of_group(a.id).await.expect("keys")[1].request_count,
        1
    );
}

#[tokio::test]
async fn final_rows_count_hourly_for_group_and_parent() {
    let db = fresh().await;
    let at = utc("2025-09-01T04:59:59.999Z");
    let next_hour = utc("2025-09-01T05:00:00Z");
    let through_parent = |id: &str, t, ok: bool, kind: &str| LogRow {
        parent_group_id: 9,
        parent_group_name: "agg".to_owned(),
        is_success: ok,
        request_type: kind.to_owned(),
        ..log(id, t, 1, "h")
    };
    let batch = |prefix: &str| FlushBatch {
        logs: vec![
            through_parent(&format!("{prefix}1"), at, true, "final"),
            through_parent(&format!("{prefix}2"), at, false, "final"),
            through_parent(&format!("{prefix}3"), at, false, "retry"),
            log(&format!("{prefix}4"), next_hour, 1, "h"),
        ],
        key_states: vec![],
        key_usage: vec![],
    };
    db.store.write_batch(batch("a")).await.expect("first flush");
    db.store
        .write_batch(batch("b"))
        .await
        .expect("second flush adds up");

    let hour4 = "2025-09-01 04:00:00.000000000+00:00".to_owned();
    let hour5 = "2025-09-01 05:00:00.000000000+00:00".to_owned();
    assert_eq!(
        hourly(&db.path),
        [(hour4.clone(), 1, 2, 2), (hour4, 9, 2, 2), (hour5, 1, 2, 0),]
    );
}

#[tokio::test]
async fn key_states_are_applied_by_id() {
    let db = fresh().await;
    let g = db.store.insert_group(group("g")).await.expect("group");
    let keys = db
        .store
        .insert_keys(g.id, new_keys("g", 2))
        .await
        .expect("keys");
    tokio::time::sleep(Duration::from_millis(2)).await;
    db.store
        .write_batch(FlushBatch {
            logs: vec![],
            key_states: vec![KeyStateUpdate {
                key_id: keys[1].id,
                failure_count: 3,
                status: "invalid".to_owned(),
            }],
            key_usage: vec![],
        })
        .await
        .expect("flush");
    let stored = db.store.keys_of_group(g.id).await.expect("keys");
    assert_eq!(
        (stored[0].failure_count, stored[0].status.as_str()),
        (0, "active")
    );
    assert_eq!(
        (stored[1].failure_count, stored[1].status.as_str()),
        (3, "invalid")
    );
    assert!(stored[1].updated_at > keys[1].updated_at);
}

#[tokio::test]
async fn log_rows_are_stored_as_given() {
    let db = fresh().await;
    let mut entry = log(
        "0b6c1f5e-7d2a-4c33-9a57-3f0c8f1d2e01",
        utc("2025-09-01T04:10:00Z"),
        3,
        "h",
    );
    entry.parent_group_id = 7;
    entry.is_stream = true;
    entry.error_message = "quota".to_owned();
    entry.request_type = "retry".to_owned();
    db.store
        .write_batch(FlushBatch {
            logs: vec![entry],
            key_states: vec![],
            key_usage: vec![],
        })
        .await
        .expect("flush");
    let row: (String, i64, i64, bool, bool, String, String) = raw(&db.path)
        .query_row(
            "SELECT timestamp, group_id, parent_group_id, is_success, is_stream, error_message, \
             request_type FROM request_logs",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .expect("row");
    assert_eq!(
        row,
        (
            "2025-09-01 04:10:00.000000000+00:00".to_owned(),
            3,
            7,
            true,
            true,
            "quota".to_owned(),
            "retry".to_owned()
        )
    );
    assert!(hourly(&db.path).is_empty(), "retry rows are not counted");
}

/// Every column of every row reads back as written, with the storage class v1's rows have,
/// whether the row went in with fifteen others (text bound in place) or on its own (through
/// rusqlite): 17 rows take both paths.
#[tokio::test]
async fn every_column_is_stored_as_given_by_both_insert_paths() {
    let db = fresh().await;
    let rows: Vec<LogRow> = (0..17)
        .map(|i| {
            let mut row = log(
                &format!("0b6c1f5e-7d2a-4c33-9a57-3f0c8f1d2e{i:02}"),
                utc("2025-09-01T04:10:00Z") + chrono::Duration::milliseconds(i * 1_001),
                i + 1,
                &format!("hash-{i}"),
            );
            row.parent_group_id = i * 10;
            row.parent_group_name = if i % 2 == 0 {
                String::new()
            } else {
                format!("p-{i}")
            };
            row.model = format!("模型-{i}");
            row.is_success = i % 3 != 0;
            row.source_ip = format!("10.0.0.{i}");
            row.status_code = 200 + i;
            row.request_path = format!("/proxy/g/v1/x?i={i}");
            row.duration_ms = 1_000 + i;
            row.error_message = "e".repeat(i as usize);
            row.user_agent = format!("ua/{i}");
            row.request_type = if i % 2 == 0 { "final" } else { "retry" }.to_owned();
            row.upstream_addr = format!("https://u{i}.example.com/v1");
            row.is_stream = i % 2 == 1;
            row.request_body = format!("{{\"n\":{i}}}");
            row.request_id = format!("req-{i}");
            row
        })
        .collect();
    db.store
        .write_batch(FlushBatch {
            logs: rows.clone(),
            key_states: vec![],
            key_usage: vec![],
        })
        .await
        .expect("flush");
    let conn = raw(&db.path);
    let mut stmt = conn
        .prepare(
            "SELECT id, timestamp, group_id, group_name, parent_group_id, parent_group_name, \
             key_value, key_hash, model, is_success, source_ip, status_code, request_path, \
             duration_ms, error_message, user_agent, request_type, upstream_addr, is_stream, \
             request_body, request_id, typeof(id) || typeof(timestamp) || typeof(group_id) || \
             typeof(parent_group_name) || typeof(is_success) || typeof(status_code) || \
             typeof(error_message) || typeof(is_stream) FROM request_logs ORDER BY id",
        )
        .expect("prepare");
    let stored: Vec<(LogRow, String)> = stmt
        .query_map([], |r| {
            let timestamp: String = r.get(1)?;
            Ok((
                LogRow {
                    id: r.get(0)?,
                    timestamp: chrono::DateTime::parse_from_str(
                        &timestamp,
                        "%Y-%m-%d %H:%M:%S%.f%:z",
                    )
                    .expect("timestamp as v1 writes it")
                    .with_timezone(&chrono::Utc),
                    group_id: r.get(2)?,
                    group_name: r.get(3)?,
                    parent_group_id: r.get(4)?,
                    parent_group_name: r.get(5)?,
                    key_value: r.get(6)?,
                    key_hash: r.get(7)?,
                    model: r.get(8)?,
                    is_success: r.get(9)?,
                    source_ip: r.get(10)?,
                    status_code: r.get(11)?,
                    request_path: r.get(12)?,
                    duration_ms: r.get(13)?,
                    error_message: r.get(14)?,
                    user_agent: r.get(15)?,
                    request_type: r.get(16)?,
                    upstream_addr: r.get(17)?,
                    is_stream: r.get(18)?,
                    request_body: r.get(19)?,
                    request_id: r.get(20)?,
                },
                r.get(21)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(stored.len(), rows.len());
    for ((got, classes), want) in stored.iter().zip(&rows) {
        assert_eq!(got, want);
        assert_eq!(
            classes, "texttextintegertextintegerintegertextinteger",
            "row {}",
            want.id
        );
    }
}

#[tokio::test]
async fn a_replayed_batch_counts_once() {
    let (db, g) = fresh_with_group(1).await;
    let batch = FlushBatch {
        logs: vec![log(
            "same-id",
            utc("2025-09-01T04:10:00Z"),
            g.id,
            "g-hash-0",
        )],
        key_states: vec![],
        key_usage: vec![],
    };
    db.store.write_batch(batch.clone()).await.expect("flush");
    db.store.write_batch(batch).await.expect("replay");
    assert_eq!(log_count(&db.path), 1);
    assert_eq!(hourly(&db.path)[0].2, 1);
}

/// A replay that overlaps part of a large batch skips exactly the stored rows and stores and
/// counts the rest, wherever the stored rows sit: in the first rows, in the middle of the batch
/// after many new ones, or among the last few.
#[tokio::test]
async fn a_partly_replayed_large_batch_counts_each_row_once() {
    for stored in [0..40, 60..63, 97..100] {
        let (db, g) = fresh_with_group(1).await;
        let at = utc("2025-09-01T04:10:00Z");
        let logs: Vec<LogRow> = (0..100)
            .map(|n| log(&format!("id-{n:03}"), at, g.id, "g-hash-0"))
            .collect();
        let batch = |logs: &[LogRow]| FlushBatch {
            logs: logs.to_vec(),
            key_states: vec![],
            key_usage: vec![],
        };
        db.store
            .write_batch(batch(&logs[stored.clone()]))
            .await
            .expect("flush");
        db.store.write_batch(batch(&logs)).await.expect("replay");
        assert_eq!(log_count(&db.path), 100, "stored first: {stored:?}");
        assert_eq!(hourly(&db.path)[0].2, 100, "stored first: {stored:?}");
    }
}

/// A writer asked to give way between two statements leaves nothing of the batch behind (no
/// rows, no hourly counts, no key usage), and the same batch written afterwards lands whole.
#[tokio::test]
async fn a_batch_that_gives_way_leaves_nothing_behind() {
    let (db, g) = fresh_with_group(1).await;
    let key = db.store.keys_of_group(g.id).await.expect("keys")[0].id;
    let at = utc("2025-09-01T04:10:00Z");
    let batch = FlushBatch {
        logs: (0..100)
            .map(|n| log(&format!("id-{n:03}"), at, g.id, "g-hash-0"))
            .collect(),
        key_states: vec![],
        key_usage: vec![KeyUsage {
            key_id: key,
            requests: 100,
            last_used_at: at,
        }],
    };
    // Asked after the first statement (16 rows) went in.
    let asked = std::cell::Cell::new(0);
    let give_way = || {
        asked.set(asked.get() + 1);
        asked.get() > 1
    };
    let written = db
        .store
        .write_batch_unless(&batch, &give_way)
        .expect("gives way");
    assert!(!written);
    assert_eq!(asked.get(), 2);
    assert_eq!(log_count(&db.path), 0);
    assert!(hourly(&db.path).is_empty());
    let keys = db.store.keys_of_group(g.id).await.expect("keys");
    assert_eq!(keys[0].request_count, 0);

    assert!(
        db.store
            .write_batch_unless(&batch, &|| false)
            .expect("writes")
    );
    assert_eq!(log_count(&db.path), 100);
    assert_eq!(hourly(&db.path)[0].2, 100);
    let keys = db.store.keys_of_group(g.id).await.expect("keys");
    assert_eq!(keys[0].request_count, 100);
}

#[tokio::test]
async fn a_failed_batch_leaves_nothing_behind() {
    let (db, g) = fresh_with_group(1).await;
    // Make the last step of the flush fail: a trigger refuses the key state update.
    raw(&db.path)
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE UPDATE OF status ON api_keys \
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .expect("trigger");
    let result = db
        .store
        .write_batch(FlushBatch {
            logs: vec![log("l1", utc("2025-09-01T04:10:00Z"), g.id, "g-hash-0")],
            key_states: vec![KeyStateUpdate {
                key_id: 1,
                failure_count: 1,
                status: "invalid".to_owned(),
            }],
            key_usage: vec![],
        })
        .await;
    let err = result.expect_err("flush fails");
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(log_count(&db.path), 0);
    assert!(hourly(&db.path).is_empty());
    assert_eq!(
        db.store.keys_of_group(g.id).await.expect("keys")[0].request_count,
        0
    );
}

#[tokio::test]
async fn a_thousand_logs_on_a_big_group_land_in_one_flush() {
    let db = fresh().await;
    let g = db.store.insert_group(group("g")).await.expect("group");
    // A big group: a key lookup that scans the group instead of using the hash index would
    // make this flush take seconds.
    db.store
        .insert_keys(g.id, new_keys("g", 50_000))
        .await
        .expect("keys");
    let start = utc("2025-09-01T04:00:00Z");
    let logs: Vec<LogRow> = (0..1000)
        .map(|i| {
            let mut entry = log(
                &format!("log-{i}"),
                start + chrono::Duration::seconds(i),
                g.id,
                &format!("g-hash-{i}"),
            );
            entry.is_success = i % 10 != 0;
            entry.parent_group_id = 42;
            entry
        })
        .collect();

    // 900 keys served once each, spread over the table.
    let at = start + chrono::Duration::seconds(1000);
    let key_usage = db
        .store
        .keys_of_group(g.id)
        .await
        .expect("keys")
        .iter()
        .step_by(50)
        .take(900)
        .map(|k| KeyUsage {
            key_id: k.id,
            requests: 1,
            last_used_at: at,
        })
        .collect();
    db.store
        .write_batch(FlushBatch {
            logs,
            key_states: vec![],
            key_usage,
        })
        .await
        .expect("flush");

    assert_eq!(log_count(&db.path), 1000);
    let total: i64 = db
        .store
        .all_keys()
        .await
        .expect("keys")
        .iter()
        .map(|k| k.request_count)
        .sum();
    assert_eq!(total, 900);
    let stats = hourly(&db.path);
    assert_eq!(stats.len(), 2, "one hour, group and parent");
    assert_eq!((stats[0].2, stats[0].3), (900, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_flushes_and_reads_all_land() {
    let (db, g) = fresh_with_group(1).await;
    let key_id = db.store.keys_of_group(g.id).await.expect("keys")[0].id;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = db.store.clone();
        let group_id = g.id;
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                let batch = FlushBatch {
                    logs: vec![log(
                        &format!("t{task}-{n}"),
                        utc("2025-09-01T04:10:00Z"),
                        group_id,
                        "g-hash-0",
                    )],
                    key_states: vec![],
                    key_usage: vec![KeyUsage {
                        key_id,
                        requests: 1,
                        last_used_at: utc("2025-09-01T04:10:00Z"),
                    }],
                };
                store.write_batch(batch).await.expect("flush");
                store.list_groups().await.expect("read while writing");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(
        db.store.keys_of_group(g.id).await.expect("keys")[0].request_count,
        80
    );
    assert_eq!(hourly(&db.path)[0].2, 80);
}

#[tokio::test]
async fn an_empty_batch_is_a_no_op() {
    let db = fresh().await;
    db.store
        .write_batch(FlushBatch::default())
        .await
        .expect("empty flush");
    assert_eq!(log_count(&db.path), 0);
}
