//! Upstream keys through the public API: bulk insert, paging, filters, order, delete, counts.

mod common;

use common::{fresh, group, new_keys, raw, utc};
use store::KeyQuery;

#[tokio::test]
async fn insert_keys_returns_rows_with_ids_across_chunks() {
    let db = fresh().await;
    let g = db.store.insert_group(group("g")).await.expect("group");
    // 1,234 rows = three chunks of 500, 500 and 234.
    let inserted = db
        .store
        .insert_keys(g.id, new_keys("g", 1234))
        .await
        .expect("insert");
    assert_eq!(inserted.len(), 1234);
    assert!(
        inserted.windows(2).all(|w| w[0].id < w[1].id),
        "ids ascend in input order"
    );
    assert_eq!(inserted[1233].key_value, "g-key-1233");
    assert_eq!(inserted[1233].key_hash, "g-hash-1233");
    assert!(
        inserted
            .iter()
            .all(|k| k.status == "active" && k.group_id == g.id)
    );

    let stored = db.store.keys_of_group(g.id).await.expect("read back");
    assert_eq!(stored.len(), 1234);
    assert_eq!(stored[0].id, inserted[0].id);
    assert_eq!(stored[0].key_value, "g-key-0");
    assert_eq!(stored[0].status, "active");
    assert_eq!((stored[0].request_count, stored[0].failure_count), (0, 0));
    assert_eq!(stored[0].last_used_at, None);
    // Times survive the text round trip to the nanosecond.
    assert_eq!(stored[0].created_at, inserted[0].created_at);

    assert_eq!(db.store.count_keys(g.id).await.expect("count"), 1234);
    assert_eq!(db.store.all_keys().await.expect("all").len(), 1234);
    assert!(
        db.store
            .insert_keys(g.id, vec![])
            .await
            .expect("none")
            .is_empty()
    );
}

#[tokio::test]
async fn hashes_and_keys_are_scoped_to_their_group() {
    let db = fresh().await;
    let a = db.store.insert_group(group("a")).await.expect("group");
    let b = db.store.insert_group(group("b")).await.expect("group");
    db.store
        .insert_keys(a.id, new_keys("a", 3))
        .await
        .expect("insert");
    db.store
        .insert_keys(b.id, new_keys("b", 2))
        .await
        .expect("insert");

    let hashes = db.store.key_hashes_of_group(a.id).await.expect("hashes");
    assert_eq!(hashes.len(), 3);
    assert!(hashes.contains("a-hash-2"));
    assert!(!hashes.contains("b-hash-0"));
    assert_eq!(db.store.keys_of_group(b.id).await.expect("keys").len(), 2);
    assert_eq!(db.store.count_keys(b.id).await.expect("count"), 2);
    assert_eq!(db.store.all_keys().await.expect("all").len(), 5);
}

#[tokio::test]
async fn delete_by_hash_deletes_only_in_that_group() {
    let db = fresh().await;
    let a = db.store.insert_group(group("a")).await.expect("group");
    let b = db.store.insert_group(group("b")).await.expect("group");
    let in_a = db
        .store
        .insert_keys(a.id, new_keys("x", 4))
        .await
        .expect("insert");
    // Same hashes in another group: must survive.
    db.store
        .insert_keys(b.id, new_keys("x", 4))
        .await
        .expect("insert");

    let mut deleted = db
        .store
        .delete_keys_by_hash(
            a.id,
            vec!["x-hash-1".into(), "x-hash-3".into(), "nope".into()],
        )
        .await
        .expect("delete");
    deleted.sort_unstable();
    assert_eq!(deleted, [in_a[1].id, in_a[3].id]);
    assert_eq!(db.store.count_keys(a.id).await.expect("count"), 2);
    assert_eq!(db.store.count_keys(b.id).await.expect("count"), 4);
    let left = db.store.key_hashes_of_group(a.id).await.expect("hashes");
    assert!(left.contains("x-hash-0") && !left.contains("x-hash-1"));
}

#[tokio::test]
async fn delete_by_hash_handles_more_than_a_chunk() {
    let db = fresh().await;
    let g = db.store.insert_group(group("g")).await.expect("group");
    db.store
        .insert_keys(g.id, new_keys("g", 1100))
        .await
        .expect("insert");
    let hashes: Vec<String> = (0..1050).map(|i| format!("g-hash-{i}")).collect();
    let deleted = db
        .store
        .delete_keys_by_hash(g.id, hashes)
        .await
        .expect("delete");
    assert_eq!(deleted.len(), 1050);
    assert_eq!(db.store.count_keys(g.id).await.expect("count"), 50);
}

/// Five keys; ids ascend with the index. Last used: k0 10:00, k1 never, k2 12:00, k3 never,
/// k4 11:00. k2 and k4 are invalid.
async fn listed_group(db: &common::TestDb) -> (i64, Vec<i64>) {
    let g = db.store.insert_group(group("g")).await.expect("group");
    let keys = db
        .store
        .insert_keys(g.id, new_keys("g", 5))
        .await
        .expect("insert");
    let conn = raw(&db.path);
    for (index, used) in [(0, "10"), (2, "12"), (4, "11")] {
        conn.execute(
            "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2",
            rusqlite::params![
                format!("2025-09-01 {used}:00:00.000000000+00:00"),
                keys[index].id
            ],
        )
        .expect("plant last_used_at");
    }
    conn.execute(
        "UPDATE api_keys SET status = 'invalid' WHERE id IN (?1, ?2)",
        [keys[2].id, keys[4].id],
    )
    .expect("plant status");
    (g.id, keys.iter().map(|k| k.id).collect())
}

#[tokio::test]
async fn list_keys_orders_by_last_use_then_id_with_nulls_last() {
    let db = fresh().await;
    let (group_id, ids) = listed_group(&db).await;
    let (page, total) = db
        .store
        .list_keys(KeyQuery {
            group_id,
            page: 1,
            page_size: 10,
            ..KeyQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(total, 5);
    let order: Vec<i64> = page.iter().map(|k| k.id).collect();
    assert_eq!(order, [ids[2], ids[4], ids[0], ids[3], ids[1]]);
    assert_eq!(page[0].last_used_at, Some(utc("2025-09-01T12:00:00Z")));
}

#[tokio::test]
async fn list_keys_pages() {
    let db = fresh().await;
    let (group_id, ids) = listed_group(&db).await;
    let query = |page| KeyQuery {
        group_id,
        page,
        page_size: 2,
        ..KeyQuery::default()
    };
    let (second, total) = db.store.list_keys(query(2)).await.expect("page 2");
    assert_eq!(total, 5);
    assert_eq!(
        second.iter().map(|k| k.id).collect::<Vec<_>>(),
        [ids[0], ids[3]]
    );
    let (third, _) = db.store.list_keys(query(3)).await.expect("page 3");
    assert_eq!(third.iter().map(|k| k.id).collect::<Vec<_>>(), [ids[1]]);
    let (past_end, total) = db.store.list_keys(query(9)).await.expect("page 9");
    assert!(past_end.is_empty());
    assert_eq!(total, 5);
    // Page 0 and a missing page size fall back to page 1 of 15.
    let (first, _) = db
        .store
        .list_keys(KeyQuery {
            group_id,
            ..KeyQuery::default()
        })
        .await
        .expect("defaults");
    assert_eq!(first.len(), 5);
}

#[tokio::test]
async fn list_keys_filters_by_status_and_hash() {
    let db = fresh().await;
    let (group_id, ids) = listed_group(&db).await;
    let other = db.store.insert_group(group("other")).await.expect("group");
    db.store
        .insert_keys(other.id, new_keys("g", 2))
        .await
        .expect("insert");

    let (invalid, total) = db
        .store
        .list_keys(KeyQuery {
            group_id,
            status: Some("invalid".into()),
            page: 1,
            page_size: 10,
            ..KeyQuery::default()
        })
        .await
        .expect("by status");
    assert_eq!(total, 2);
    assert_eq!(
        invalid.iter().map(|k| k.id).collect::<Vec<_>>(),
        [ids[2], ids[4]]
    );

    let (by_hash, total) = db
        .store
        .list_keys(KeyQuery {
            group_id,
            key_hash: Some("g-hash-3".into()),
            page: 1,
            page_size: 10,
            ..KeyQuery::default()
        })
        .await
        .expect("by hash");
    assert_eq!(total, 1);
    assert_eq!(by_hash[0].id, ids[3]);

    let (_, everywhere) = db
        .store
        .list_keys(KeyQuery {
            key_hash: Some("g-hash-0".into()),
            page: 1,
            page_size: 10,
            ..KeyQuery::default()
        })
        .await
        .expect("all groups");
    assert_eq!(everywhere, 2, "group_id 0 searches every group");
}

#[tokio::test]
async fn all_keys_reads_a_large_table_in_order() {
    let db = fresh().await;
    let g = db.store.insert_group(group("big")).await.expect("group");
    db.store
        .insert_keys(g.id, new_keys("big", 20_000))
        .await
        .expect("insert");
    let keys = db.store.all_keys().await.expect("all");
    assert_eq!(keys.len(), 20_000);
    assert_eq!(keys[19_999].key_value, "big-key-19999");
}

#[tokio::test]
async fn a_legacy_unique_index_reports_duplicates() {
    let db = fresh().await;
    let g = db.store.insert_group(group("g")).await.expect("group");
    // Pre-v1.1 databases kept keys unique per group by value.
    raw(&db.path)
        .execute_batch("CREATE UNIQUE INDEX idx_group_key ON api_keys (group_id, key_value)")
        .expect("legacy index");
    db.store
        .insert_keys(g.id, new_keys("g", 1))
        .await
        .expect("first");
    let err = db
        .store
        .insert_keys(g.id, new_keys("g", 1))
        .await
        .expect_err("same value again");
    assert!(
        matches!(&err, store::StoreError::Duplicate(m) if m.contains("g-hash-0")),
        "{err:?}"
    );
    assert_eq!(db.store.count_keys(g.id).await.expect("count"), 1);
}

#[tokio::test]
async fn update_key_states_sets_each_keys_own_state() {
    let db = fresh().await;
    let g = db.store.insert_group(group("v")).await.expect("group");
    let keys = db
        .store
        .insert_keys(g.id, new_keys("v", 3))
        .await
        .expect("insert");
    let state = |key: &store::KeyRow, failures: i64, status: &str| store::KeyStateUpdate {
        key_id: key.id,
        failure_count: failures,
        status: status.to_owned(),
    };
    db.store
        .update_key_states(vec![
            state(&keys[0], 2, "active"),
            state(&keys[1], 3, "invalid"),
        ])
        .await
        .expect("update");
    let stored = db.store.keys_of_group(g.id).await.expect("read back");
    let states: Vec<(i64, &str)> = stored
        .iter()
        .map(|k| (k.failure_count, k.status.as_str()))
        .collect();
    assert_eq!(states, [(2, "active"), (3, "invalid"), (0, "active")]);
}
