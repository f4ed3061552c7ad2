//! Upstream keys of a group, the synchronous calls (spec §3.3): list, add, delete, restore,
//! clear and notes, with v1's key-text parsing. The background import and delete are in
//! `key_tasks`, the export in `key_export`.

use std::collections::HashSet;
use std::sync::Arc;

use engine::keys::{KeySlot, KeyStatus};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{KeyQuery, NewKey};

use super::{ApiError, ApiResult, JsonBody, ok, ok_message, parse_id};
use crate::app::App;
use crate::encryption::KeyCipher;

/// Most keys one synchronous call takes (v1).
const SYNC_KEY_LIMIT: usize = 5000;

#[derive(Deserialize)]
pub struct KeysText {
    #[serde(default)]
    pub group_id: i64,
    #[serde(default)]
    pub keys_text: String,
}

/// v1's parsing: a JSON array of strings, else tokens split on whitespace, commas and
/// semicolons; trimmed, empties dropped. Repeats are kept: v1 counts them as ignored and
/// against the 5000-key limit.
pub fn parse_keys_text(text: &str) -> Vec<String> {
    // One allocation per key: an import may carry a million of them.
    match serde_json::from_str::<Vec<String>>(text.trim()) {
        Ok(parsed) => parsed
            .into_iter()
            .filter_map(|t| match t.trim() {
                "" => None,
                trimmed if trimmed.len() == t.len() => Some(t),
                trimmed => Some(trimmed.to_string()),
            })
            .collect(),
        Err(_) => text
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// What `api_keys` stores for a plaintext key: its value (encrypted when ENCRYPTION_KEY is
/// set) and its lookup hash. Every key written to the database goes through here
/// (add-multiple, add-async, group copy); every lookup by key uses `app.cipher.hash`.
pub fn stored_key(cipher: &KeyCipher, plain: String) -> ApiResult<NewKey> {
    let value = cipher.encrypt(&plain).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            format!("cannot encrypt the key: {e}"),
        )
    })?;
    Ok(NewKey {
        hash: cipher.hash(&plain),
        value,
    })
}

pub async fn standard_group(app: &App, group_id: i64) -> ApiResult<store::GroupRow> {
    if group_id <= 0 {
        return Err(ApiError::validation("group_id is required"));
    }
    let group = app
        .store
        .get_group(group_id)
        .await?
        .ok_or_else(|| ApiError::not_found("group not found"))?;
    if group.group_type == "aggregate" {
        return Err(ApiError::bad_request(
            "aggregate groups have no keys of their own",
        ));
    }
    Ok(group)
}

fn parse_limited(text: &str) -> ApiResult<Vec<String>> {
    let keys = parse_keys_text(text);
    if keys.is_empty() {
        return Err(ApiError::validation("keys_text contains no key"));
    }
    if keys.len() > SYNC_KEY_LIMIT {
        return Err(ApiError::validation(format!(
            "at most {SYNC_KEY_LIMIT} keys per request; use add-async for more"
        )));
    }
    Ok(keys)
}

#[handler]
pub async fn add_multiple(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<KeysText>,
) -> ApiResult<Response> {
    standard_group(&app, input.group_id).await?;
    let keys = parse_limited(&input.keys_text)?;
    // Stored hashes plus those taken from this input: a repeat in the input is ignored too.
    let mut known = app.store.key_hashes_of_group(input.group_id).await?;
    let total = keys.len();
    let fresh: Vec<NewKey> = keys
        .into_iter()
        .map(|plain| stored_key(&app.cipher, plain))
        .filter(|k| k.as_ref().map_or(true, |k| known.insert(k.hash.clone())))
        .collect::<ApiResult<_>>()?;
    let ignored = total - fresh.len();
    let inserted = app.store.insert_keys(input.group_id, fresh).await?;
    let mut model = app.model.lock().await;
    for key in &inserted {
        model.add_key(key);
    }
    app.publish(&mut model).await;
    drop(model);
    let total = app.store.count_keys(input.group_id).await?;
    Ok(ok(
        req,
        json!({"added_count": inserted.len(), "ignored_count": ignored, "total_in_group": total}),
    ))
}

#[handler]
pub async fn delete_multiple(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<KeysText>,
) -> ApiResult<Response> {
    standard_group(&app, input.group_id).await?;
    let keys = parse_limited(&input.keys_text)?;
    let hashes: Vec<String> = keys.iter().map(|k| app.cipher.hash(k)).collect();
    let deleted: HashSet<i64> = app
        .store
        .delete_keys_by_hash(input.group_id, hashes)
        .await?
        .into_iter()
        .collect();
    let mut model = app.model.lock().await;
    model.remove_keys(input.group_id, &deleted);
    app.publish(&mut model).await;
    drop(model);
    let total = app.store.count_keys(input.group_id).await?;
    let ignored = keys.len().saturating_sub(deleted.len());
    Ok(ok(
        req,
        json!({"deleted_count": deleted.len(), "ignored_count": ignored, "total_in_group": total}),
    ))
}

#[handler]
pub async fn restore_multiple(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<KeysText>,
) -> ApiResult<Response> {
    standard_group(&app, input.group_id).await?;
    let keys = parse_limited(&input.keys_text)?;
    // v1 matches by key hash; a slot holds the key itself, which is the same match.
    let wanted: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let restored = restore(&app, input.group_id, |slot| wanted.contains(slot.value())).await?;
    let total = app.store.count_keys(input.group_id).await?;
    let ignored = keys.len().saturating_sub(restored);
    Ok(ok(
        req,
        json!({"restored_count": restored, "ignored_count": ignored, "total_in_group": total}),
    ))
}

#[derive(Deserialize)]
pub struct GroupOnly {
    #[serde(default)]
    group_id: i64,
}

#[handler]
pub async fn restore_all_invalid(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<GroupOnly>,
) -> ApiResult<Response> {
    standard_group(&app, input.group_id).await?;
    let restored = restore(&app, input.group_id, |_| true).await?;
    Ok(counted(req, "success.keys_restored", restored))
}

/// Makes the group's invalid keys that `pick` selects active again with no failures, in the
/// database and in their live slots (the proxy uses them at once); returns how many.
/// "Invalid" is the live status: it leads the database by up to one log flush.
async fn restore(app: &App, group_id: i64, pick: impl Fn(&KeySlot) -> bool) -> ApiResult<usize> {
    let slots = invalid_slots(app, group_id, pick).await;
    let ids = slots.iter().map(KeySlot::id).collect();
    app.store.set_key_states(group_id, ids, "active", 0).await?;
    for slot in &slots {
        slot.reset(KeyStatus::Active, 0);
    }
    let mut model = app.model.lock().await;
    model.touch_group(group_id);
    app.publish(&mut model).await;
    Ok(slots.len())
}

/// The group's live slots that are invalid and that `pick` selects.
async fn invalid_slots(app: &App, group_id: i64, pick: impl Fn(&KeySlot) -> bool) -> Vec<KeySlot> {
    let model = app.model.lock().await;
    model
        .keys
        .get(&group_id)
        .into_iter()
        .flatten()
        .filter(|s| s.status() == KeyStatus::Invalid && pick(s))
        .cloned()
        .collect()
}

#[handler]
pub async fn clear_all_invalid(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<GroupOnly>,
) -> ApiResult<Response> {
    standard_group(&app, input.group_id).await?;
    let ids = invalid_slots(&app, input.group_id, |_| true)
        .await
        .iter()
        .map(KeySlot::id)
        .collect();
    let deleted = app.store.delete_keys_by_id(input.group_id, ids).await?;
    forget_keys(&app, input.group_id, deleted.iter().copied().collect()).await;
    Ok(counted(req, "success.invalid_keys_cleared", deleted.len()))
}

#[handler]
pub async fn clear_all(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<GroupOnly>,
) -> ApiResult<Response> {
    standard_group(&app, input.group_id).await?;
    let deleted = app.store.delete_keys_of_group(input.group_id).await?;
    forget_keys(&app, input.group_id, deleted.iter().copied().collect()).await;
    Ok(counted(req, "success.all_keys_cleared", deleted.len()))
}

/// Takes deleted keys out of the model and the proxy's rings.
pub async fn forget_keys(app: &App, group_id: i64, ids: HashSet<i64>) {
    let mut model = app.model.lock().await;
    model.remove_keys(group_id, &ids);
    app.publish(&mut model).await;
}

/// v1's answer to a bulk restore or clear: "{count} keys …" as the message, also as
/// `data.message`, which the console's clear-invalid toast shows.
fn counted(req: &Request, message_id: &str, count: usize) -> Response {
    let lang = crate::i18n::Lang::of(req);
    let message = crate::i18n::fill(
        crate::i18n::t(lang, message_id),
        &[("count", count.to_string())],
    );
    ok_message(req, &message, json!({ "message": message }))
}

#[derive(Deserialize)]
pub struct NotesInput {
    #[serde(default)]
    notes: String,
}

/// Longest note, in characters (`api_keys.notes` is varchar(255)).
const MAX_NOTES_CHARS: usize = 255;

#[handler]
pub async fn update_notes(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<NotesInput>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let notes = input.notes.trim();
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(ApiError::validation(format!(
            "notes length must be <= {MAX_NOTES_CHARS} characters"
        )));
    }
    if !app.store.update_key_notes(id, notes).await? {
        return Err(ApiError::not_found("key not found"));
    }
    Ok(ok(req, Value::Null))
}

#[derive(Deserialize)]
pub struct ListQuery {
    group_id: Option<String>,
    status: Option<String>,
    key_value: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

#[handler]
pub async fn list(
    app: Data<&Arc<App>>,
    req: &Request,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let group_id = q
        .group_id
        .as_deref()
        .and_then(|g| g.parse::<i64>().ok())
        .unwrap_or(0);
    standard_group(&app, group_id).await?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = status
        .as_ref()
        .filter(|s| *s != "active" && *s != "invalid")
    {
        return Err(ApiError::validation(format!(
            "invalid status '{s}': expected active or invalid"
        )));
    }
    let (page, page_size) = paging(q.page.as_deref(), q.page_size.as_deref());
    let key_hash = q
        .key_value
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .map(|k| app.cipher.hash(&k));
    let (rows, total) = app
        .store
        .list_keys(KeyQuery {
            group_id,
            status,
            key_hash,
            page,
            page_size,
        })
        .await?;
    let model = app.model.lock().await;
    let items: Vec<Value> = rows
        .iter()
        .map(|k| {
            // The live state leads the database by up to one log flush.
            let (status, failures) = match model.slot(k.group_id, k.id) {
                Some(slot) => (
                    slot.status().as_str().to_string(),
                    slot.failure_count() as i64,
                ),
                None => (k.status.clone(), k.failure_count),
            };
            json!({
                "id": k.id, "key_value": app.cipher.reveal(&k.key_value), "key_hash": k.key_hash,
                "group_id": k.group_id,
                "status": status, "notes": k.notes, "request_count": k.request_count,
                "failure_count": failures, "last_used_at": k.last_used_at.map(|t| t.to_rfc3339()),
                "created_at": k.created_at.to_rfc3339(), "updated_at": k.updated_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(ok(req, paginated(items, page, page_size, total)))
}

/// v1's paging: page from 1, page_size 15 by default, at most 1000.
pub fn paging(page: Option<&str>, size: Option<&str>) -> (i64, i64) {
    let page = page
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let size = size
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(15)
        .min(1000);
    (page, size)
}

pub fn paginated(items: Vec<Value>, page: i64, page_size: i64, total: i64) -> Value {
    let total_pages = (total + page_size - 1) / page_size;
    json!({
        "items": items,
        "pagination": {"page": page, "page_size": page_size, "total_items": total, "total_pages": total_pages}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_forms() {
        assert_eq!(parse_keys_text(r#"["a","b"," a "]"#), ["a", "b", "a"]);
        assert_eq!(
            parse_keys_text("a, b;c\n d\t\te ,,"),
            ["a", "b", "c", "d", "e"]
        );
        assert!(parse_keys_text(" \n ").is_empty());
    }
}
