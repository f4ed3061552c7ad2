//! Whole-group key operations through the public API: walking a group in id batches (export),
//! setting status and failure count by id (restore), deleting by id or the whole group (clear),
//! and a key's notes. Every operation stays inside its group.

mod common;

use common::{fresh, group, new_keys, raw};

/// Two groups: `a` with `n` keys, `b` with 3; returns (a, b, ids of a's keys).
async fn two_groups(db: &common::TestDb, n: usize) -> (i64, i64, Vec<i64>) {
    let a = db.store.insert_group(group("a")).await.expect("group a");
    let b = db.store.insert_group(group("b")).await.expect("group b");
    let keys = db
        .store
        .insert_keys(a.id, new_keys("a", n))
        .await
        .expect("insert a");
    db.store
        .insert_keys(b.id, new_keys("b", 3))
        .await
        .expect("insert b");
    (a.id, b.id, keys.iter().map(|k| k.id).collect())
}

#[tokio::test]
async fn keys_of_group_after_walks_a_group_in_id_batches() {
    let db = fresh().await;
    let (a, b, ids) = two_groups(&db, 1205).await;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let batch = db
            .store
            .keys_of_group_after(a, None, after, 500)
            .await
            .expect("batch");
        assert!(batch.len() <= 500);
        let Some(last) = batch.last() else { break };
        after = last.id;
        seen.extend(batch.into_iter().map(|k| k.id));
    }
    assert_eq!(seen, ids, "every key of the group once, in id order");
    let of_b = db
        .store
        .keys_of_group_after(b, None, 0, 500)
        .await
        .expect("b");
    assert_eq!(of_b.len(), 3);
    assert_eq!(of_b[0].key_value, "b-key-0");
}

#[tokio::test]
async fn keys_of_group_after_filters_by_status() {
    let db = fresh().await;
    let (a, _, ids) = two_groups(&db, 10).await;
    raw(&db.path)
        .execute(
            "UPDATE api_keys SET status = 'invalid' WHERE id IN (?1, ?2)",
            [ids[2], ids[7]],
        )
        .expect("plant invalid keys");
    let invalid = db
        .store
        .keys_of_group_after(a, Some("invalid".into()), 0, 100)
        .await
        .expect("invalid");
    assert_eq!(
        invalid.iter().map(|k| k.id).collect::<Vec<_>>(),
        [ids[2], ids[7]]
    );
    let active = db
        .store
        .keys_of_group_after(a, Some("active".into()), ids[7], 100)
        .await
        .expect("active");
    assert_eq!(active.iter().map(|k| k.id).collect::<Vec<_>>(), ids[8..]);
}

#[tokio::test]
async fn set_key_states_changes_only_the_given_keys_of_the_group() {
    let db = fresh().await;
    let (a, b, ids) = two_groups(&db, 600).await;
    raw(&db.path)
        .execute(
            "UPDATE api_keys SET status = 'invalid', failure_count = 9",
            [],
        )
        .expect("plant invalid keys");
    let b_id = db.store.keys_of_group(b).await.expect("b")[0].id;
    // 550 ids of a (more than a chunk), one id of b that must stay untouched.
    let mut targets: Vec<i64> = ids[..550].to_vec();
    targets.push(b_id);
    let changed = db
        .store
        .set_key_states(a, targets, "active", 0)
        .await
        .expect("restore");
    assert_eq!(changed, 550);
    let keys = db.store.keys_of_group(a).await.expect("a");
    assert!(
        keys[..550]
            .iter()
            .all(|k| k.status == "active" && k.failure_count == 0)
    );
    assert!(
        keys[550..]
            .iter()
            .all(|k| k.status == "invalid" && k.failure_count == 9)
    );
    let b_keys = db.store.keys_of_group(b).await.expect("b");
    assert!(b_keys.iter().all(|k| k.status == "invalid"));
}

#[tokio::test]
async fn delete_keys_by_id_deletes_only_in_that_group() {
    let db = fresh().await;
    let (a, b, ids) = two_groups(&db, 700).await;
    let b_id = db.store.keys_of_group(b).await.expect("b")[0].id;
    let mut targets: Vec<i64> = ids[100..650].to_vec();
    targets.push(b_id);
    targets.push(999_999);
    let deleted = db
        .store
        .delete_keys_by_id(a, targets)
        .await
        .expect("delete");
    assert_eq!(deleted, ids[100..650]);
    assert_eq!(db.store.count_keys(a).await.expect("count"), 150);
    assert_eq!(db.store.count_keys(b).await.expect("count"), 3);
}

#[tokio::test]
async fn delete_keys_of_group_empties_only_that_group() {
    let db = fresh().await;
    let (a, b, ids) = two_groups(&db, 1234).await;
    let mut deleted = db.store.delete_keys_of_group(a).await.expect("clear");
    deleted.sort_unstable();
    assert_eq!(deleted, ids);
    assert_eq!(db.store.count_keys(a).await.expect("count"), 0);
    assert_eq!(db.store.count_keys(b).await.expect("count"), 3);
    assert!(
        db.store
            .delete_keys_of_group(a)
            .await
            .expect("again")
            .is_empty()
    );
}

#[tokio::test]
async fn update_key_notes_sets_the_notes_of_an_existing_key() {
    let db = fresh().await;
    let (a, _, ids) = two_groups(&db, 2).await;
    assert!(
        db.store
            .update_key_notes(ids[1], "备注 — team A")
            .await
            .expect("notes")
    );
    let keys = db.store.keys_of_group(a).await.expect("a");
    assert_eq!(
        (keys[0].notes.as_str(), keys[1].notes.as_str()),
        ("", "备注 — team A")
    );
    assert!(
        !db.store
            .update_key_notes(999_999, "x")
            .await
            .expect("no such key")
    );
}
