//! Upstream keys of a group: list, add, delete (spec §3.3), with v1's key-text parsing.

use std::collections::HashSet;
use std::sync::Arc;

use poem::web::{Data, Query};
use poem::{Body, Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{KeyQuery, NewKey};

use super::groups::read_body;
use super::{ApiError, ApiResult, ok, parse_json};
use crate::app::App;

/// Most keys one synchronous call takes (v1).
const SYNC_KEY_LIMIT: usize = 5000;

#[derive(Deserialize)]
pub struct KeysText {
    #[serde(default)]
    group_id: i64,
    #[serde(default)]
    keys_text: String,
}

/// v1's parsing: a JSON array of strings, else tokens split on whitespace, commas and
/// semicolons; trimmed, empties dropped. Repeats are kept: v1 counts them as ignored and
/// against the 5000-key limit.
pub fn parse_keys_text(text: &str) -> Vec<String> {
    let tokens: Vec<String> = match serde_json::from_str::<Vec<String>>(text.trim()) {
        Ok(parsed) => parsed,
        Err(_) => text
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .map(String::from)
            .collect(),
    };
    tokens
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `api_keys.key_hash` without ENCRYPTION_KEY: SHA-256, hex.
pub fn key_hash(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}

async fn standard_group(app: &App, group_id: i64) -> ApiResult<store::GroupRow> {
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
pub async fn add_multiple(app: Data<&Arc<App>>, req: &Request, body: Body) -> ApiResult<Response> {
    let input: KeysText = parse_json(&read_body(body).await?)?;
    standard_group(&app, input.group_id).await?;
    let keys = parse_limited(&input.keys_text)?;
    // Stored hashes plus those taken from this input: a repeat in the input is ignored too.
    let mut known = app.store.key_hashes_of_group(input.group_id).await?;
    let fresh: Vec<NewKey> = keys
        .iter()
        .map(|k| NewKey {
            value: k.clone(),
            hash: key_hash(k),
        })
        .filter(|k| known.insert(k.hash.clone()))
        .collect();
    let ignored = keys.len() - fresh.len();
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
    body: Body,
) -> ApiResult<Response> {
    let input: KeysText = parse_json(&read_body(body).await?)?;
    standard_group(&app, input.group_id).await?;
    let keys = parse_limited(&input.keys_text)?;
    let hashes: Vec<String> = keys.iter().map(|k| key_hash(k)).collect();
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
        .map(|k| key_hash(&k));
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
                Some(slot) => (slot.status().as_str().to_string(), slot.failure_count() as i64),
                None => (k.status.clone(), k.failure_count),
            };
            json!({
                "id": k.id, "key_value": k.key_value, "key_hash": k.key_hash, "group_id": k.group_id,
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
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
