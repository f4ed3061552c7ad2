//! Settings and groups through the public API: seeding, upserting, group CRUD and the cascade.

mod common;

use common::{fresh, group, new_keys, raw};
use store::{SettingRow, StoreError};

fn setting(key: &str, value: &str, description: &str) -> SettingRow {
    SettingRow {
        key: key.to_owned(),
        value: value.to_owned(),
        description: description.to_owned(),
    }
}

#[tokio::test]
async fn seed_inserts_only_missing_keys() {
    let db = fresh().await;
    db.store
        .seed_settings(vec![setting("max_retries", "3", "d1")])
        .await
        .expect("first seed");
    db.store
        .upsert_settings(vec![setting("max_retries", "5", "")])
        .await
        .expect("admin change");
    db.store
        .seed_settings(vec![
            setting("max_retries", "3", "d1"),
            setting("app_url", "http://localhost:3001", "d2"),
        ])
        .await
        .expect("second seed");

    let settings = db.store.load_settings().await.expect("load");
    let pairs: Vec<(&str, &str, &str)> = settings
        .iter()
        .map(|s| (s.key.as_str(), s.value.as_str(), s.description.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("max_retries", "5", "d1"),
            ("app_url", "http://localhost:3001", "d2")
        ]
    );
}

#[tokio::test]
async fn upsert_updates_and_inserts_in_one_go() {
    let db = fresh().await;
    db.store
        .seed_settings(vec![setting("a", "1", "old")])
        .await
        .expect("seed");
    db.store
        .upsert_settings(vec![setting("a", "2", "new"), setting("b", "3", "")])
        .await
        .expect("upsert");
    let settings = db.store.load_settings().await.expect("load");
    assert_eq!(settings.len(), 2);
    assert_eq!(
        (settings[0].value.as_str(), settings[0].description.as_str()),
        ("2", "new")
    );
    assert_eq!(settings[1].key, "b");
    assert_eq!(settings[1].value, "3");
}

#[tokio::test]
async fn insert_group_stores_every_field() {
    let db = fresh().await;
    let mut g = group("openai");
    g.id = 999; // ignored
    g.description = "main".to_owned();
    g.validation_endpoint = "/v1/models".to_owned();
    g.sort = 4;
    g.param_overrides = r#"{"temperature":0}"#.to_owned();
    g.config = r#"{"max_retries":5}"#.to_owned();
    g.header_rules = r#"[{"key":"X","value":"1","action":"set"}]"#.to_owned();
    g.model_redirect_rules = r#"{"a":"b"}"#.to_owned();
    g.model_redirect_strict = true;
    g.proxy_keys = "gk-1".to_owned();
    g.last_validated_at = Some(common::utc("2025-09-01T04:00:00.25Z"));
    let before = chrono::Utc::now();

    let stored = db.store.insert_group(g.clone()).await.expect("insert");
    assert_ne!(stored.id, 999);
    assert!(stored.created_at >= before - chrono::Duration::seconds(1));
    assert_eq!(stored.created_at, stored.updated_at);

    let read = db
        .store
        .get_group(stored.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(read.name, "openai");
    assert_eq!(read.display_name, g.display_name);
    assert_eq!(read.description, "main");
    assert_eq!(read.validation_endpoint, "/v1/models");
    assert_eq!(read.sort, 4);
    assert_eq!(read.upstreams, g.upstreams);
    assert_eq!(read.param_overrides, g.param_overrides);
    assert_eq!(read.config, g.config);
    assert_eq!(read.header_rules, g.header_rules);
    assert_eq!(read.model_redirect_rules, g.model_redirect_rules);
    assert!(read.model_redirect_strict);
    assert_eq!(read.proxy_keys, "gk-1");
    assert_eq!(read.last_validated_at, g.last_validated_at);
    assert_eq!(read.created_at, stored.created_at);
    let missing = db.store.get_group(stored.id + 1).await.expect("get");
    assert!(missing.is_none());
}

#[tokio::test]
async fn empty_json_is_stored_as_null_and_read_as_empty() {
    let db = fresh().await;
    let mut g = group("agg");
    g.group_type = "aggregate".to_owned();
    g.upstreams = String::new();
    let stored = db.store.insert_group(g).await.expect("insert");
    assert_eq!(
        stored.upstreams, "[]",
        "upstreams is NOT NULL: empty becomes []"
    );
    assert_eq!(stored.config, "");
    let nulls: (Option<String>, Option<String>) = raw(&db.path)
        .query_row(
            "SELECT config, header_rules FROM \"groups\" WHERE id = ?1",
            [stored.id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("raw read");
    assert_eq!(nulls, (None, None));
}

#[tokio::test]
async fn duplicate_name_is_refused() {
    let db = fresh().await;
    db.store.insert_group(group("dup")).await.expect("first");
    let err = db
        .store
        .insert_group(group("dup"))
        .await
        .expect_err("second fails");
    let StoreError::Duplicate(message) = err else {
        panic!("want Duplicate, got {err:?}");
    };
    assert_eq!(message, "group name 'dup' already exists");
    assert_eq!(db.store.list_groups().await.expect("list").len(), 1);
}

#[tokio::test]
async fn update_group_rewrites_all_but_created_at() {
    let db = fresh().await;
    let stored = db
        .store
        .insert_group(group("before"))
        .await
        .expect("insert");
    let other = db.store.insert_group(group("other")).await.expect("insert");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let mut changed = stored.clone();
    changed.name = "after".to_owned();
    changed.sort = 9;
    changed.model_redirect_strict = true;
    changed.created_at = common::utc("2000-01-01T00:00:00Z");
    let updated = db.store.update_group(changed).await.expect("update");
    assert_eq!(updated.name, "after");
    assert_eq!(updated.sort, 9);
    assert!(updated.model_redirect_strict);
    assert_eq!(updated.created_at, stored.created_at, "created_at kept");
    assert!(updated.updated_at > stored.updated_at);

    let mut clash = updated.clone();
    clash.name = other.name.clone();
    assert!(matches!(
        db.store.update_group(clash).await,
        Err(StoreError::Duplicate(m)) if m == "group name 'other' already exists"
    ));

    let mut missing = group("ghost");
    missing.id = 12345;
    assert!(matches!(
        db.store.update_group(missing).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn list_groups_orders_by_sort_then_newest() {
    let db = fresh().await;
    for (name, sort) in [("a", 1), ("b", 0), ("c", 1), ("d", 0)] {
        let mut g = group(name);
        g.sort = sort;
        db.store.insert_group(g).await.expect("insert");
    }
    let names: Vec<String> = db
        .store
        .list_groups()
        .await
        .expect("list")
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["d", "b", "c", "a"]);
}

#[tokio::test]
async fn reorder_is_all_or_nothing() {
    let db = fresh().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(db.store.insert_group(group(name)).await.expect("insert").id);
    }
    let names = |groups: Vec<store::GroupRow>| -> Vec<(String, i64)> {
        groups.into_iter().map(|g| (g.name, g.sort)).collect()
    };
    let moved = vec![(ids[0], 30), (ids[2], 10)];
    assert!(db.store.reorder_groups(moved).await.expect("reorder"));
    let after = names(db.store.list_groups().await.expect("list"));
    assert_eq!(
        after,
        [
            ("b".to_owned(), 0),
            ("c".to_owned(), 10),
            ("a".to_owned(), 30)
        ]
    );

    let unknown = vec![(ids[1], 99), (9999, 1)];
    assert!(!db.store.reorder_groups(unknown).await.expect("reorder"));
    let unchanged = names(db.store.list_groups().await.expect("list"));
    assert_eq!(
        unchanged, after,
        "the known id's update was rolled back too"
    );
}

#[tokio::test]
async fn delete_group_cascades_to_keys_and_links() {
    let db = fresh().await;
    let doomed = db
        .store
        .insert_group(group("doomed"))
        .await
        .expect("insert");
    let kept = db.store.insert_group(group("kept")).await.expect("insert");
    let agg = db.store.insert_group(group("agg")).await.expect("insert");
    db.store
        .insert_keys(doomed.id, new_keys("d", 3))
        .await
        .expect("keys");
    db.store
        .insert_keys(kept.id, new_keys("k", 2))
        .await
        .expect("keys");
    raw(&db.path)
        .execute_batch(&format!(
            "INSERT INTO group_sub_groups (group_id, sub_group_id, weight) VALUES \
             ({agg}, {doomed}, 1), ({agg}, {kept}, 1), ({doomed}, {kept}, 1);",
            agg = agg.id,
            doomed = doomed.id,
            kept = kept.id
        ))
        .expect("links");

    assert!(db.store.delete_group(doomed.id).await.expect("delete"));
    assert!(
        !db.store
            .delete_group(doomed.id)
            .await
            .expect("delete again")
    );

    assert_eq!(
        db.store
            .get_group(doomed.id)
            .await
            .expect("get")
            .map(|g| g.id),
        None
    );
    assert_eq!(db.store.count_keys(doomed.id).await.expect("count"), 0);
    assert_eq!(db.store.count_keys(kept.id).await.expect("count"), 2);
    let links: Vec<(i64, i64)> = db
        .store
        .list_sub_groups()
        .await
        .expect("links")
        .iter()
        .map(|l| (l.group_id, l.sub_group_id))
        .collect();
    assert_eq!(links, [(agg.id, kept.id)]);
}

#[tokio::test]
async fn last_validated_at_is_stamped_without_touching_updated_at() {
    let db = fresh().await;
    let stored = db
        .store
        .insert_group(group("checked"))
        .await
        .expect("insert");
    assert!(stored.last_validated_at.is_none());
    let at = common::utc("2026-01-02T03:04:05Z");
    assert!(
        db.store
            .set_group_last_validated(stored.id, at)
            .await
            .expect("stamp")
    );
    let read = db
        .store
        .get_group(stored.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(read.last_validated_at, Some(at));
    assert_eq!(read.updated_at, stored.updated_at, "not an edit");
    assert!(
        !db.store
            .set_group_last_validated(stored.id + 100, at)
            .await
            .expect("no such group")
    );
}
