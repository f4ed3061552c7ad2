//! `POST /api/groups/{id}/copy` (spec §3.3): a new group with every field of the source, named
//! `{name}_copy` (then `_copy_2` … `_copy_1000`), display name + " Copy", and the source's keys
//! (`copy_keys`: `all`, the default, `valid_only` or `none`) imported by the background import
//! task (`key_tasks::start_import`, as `add-async`), as v1 does: the console polls
//! `/api/tasks/status` for the new group's name.
//!
//! Like v1, a copy is a new group, not a clone of its state: keys arrive `active` with no
//! failures or usage, `last_validated_at` is cleared, a key that does not decrypt is skipped,
//! and an aggregate is copied without members (memberships are links, not fields of the group;
//! an aggregate has no keys, so no task). Unlike v1, which logs and drops the keys when the task
//! slot is taken, we answer 409 `TASK_IN_PROGRESS` and leave no copy behind.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Body, Request, Response, handler};
use serde::Deserialize;
use serde_json::json;
use store::GroupRow;

use super::groups::{publish_group, read_body};
use super::key_tasks::start_import;
use super::{ApiError, ApiResult, ok, parse_id, parse_json};
use crate::app::App;

/// The highest `_copy_N` tried (v1); past it the plain `_copy` name is used and, being taken,
/// refused as a duplicate.
const MAX_COPY_NUMBER: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
struct CopyInput {
    #[serde(default)]
    copy_keys: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeysToCopy {
    None,
    ValidOnly,
    All,
}

impl KeysToCopy {
    fn parse(text: &str) -> ApiResult<Self> {
        match text.trim() {
            "" | "all" => Ok(Self::All),
            "valid_only" => Ok(Self::ValidOnly),
            "none" => Ok(Self::None),
            _ => Err(ApiError::localised(
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
                "validation.invalid_copy_keys_value",
                Vec::new(),
            )),
        }
    }
}

#[handler]
pub async fn copy(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let bytes = read_body(body).await?;
    // The console always sends a body; a bare POST means the default.
    let input: CopyInput = if bytes.iter().all(u8::is_ascii_whitespace) {
        CopyInput::default()
    } else {
        parse_json(&bytes)?
    };
    let mode = KeysToCopy::parse(&input.copy_keys)?;
    let source = app
        .store
        .get_group(id)
        .await?
        .ok_or_else(|| ApiError::not_found("group not found"))?;
    let keys = keys_to_copy(&app, &source, mode).await?;
    // Checked first so a busy slot usually leaves nothing behind; the race is undone below.
    if !keys.is_empty() && app.tasks.is_running() {
        return Err(ApiError::task_in_progress());
    }
    let name = unique_copy_name(&app, &source.name).await?;
    let row = app.store.insert_group(copy_of(source, name)).await?;
    let group = publish_group(&app, row.clone()).await;
    if !keys.is_empty()
        && let Err(e) = start_import(app.0.clone(), &row, keys)
    {
        undo_copy(&app, row.id).await;
        return Err(e);
    }
    Ok(ok(req, json!({ "group": group })))
}

/// Removes a copy whose keys could not be imported (another task took the slot meanwhile).
async fn undo_copy(app: &App, id: i64) {
    if let Err(e) = app.store.delete_group(id).await {
        tracing::error!(group_id = id, error = %e, "group copy: could not remove the copy");
    }
    let mut model = app.model.lock().await;
    model.remove_group(id);
    app.publish(&mut model).await;
}

/// The source's row under its new name, every other field as it is.
fn copy_of(source: GroupRow, name: String) -> GroupRow {
    let display_name = if source.display_name.is_empty() {
        String::new()
    } else {
        format!("{} Copy", source.display_name)
    };
    GroupRow {
        id: 0,
        name,
        display_name,
        last_validated_at: None,
        ..source
    }
}

/// `{name}_copy`, else the first free `{name}_copy_N` for N in 2..=1000 (v1).
async fn unique_copy_name(app: &App, base: &str) -> ApiResult<String> {
    let taken: std::collections::HashSet<String> = app
        .store
        .list_groups()
        .await?
        .into_iter()
        .map(|g| g.name)
        .collect();
    let first = format!("{base}_copy");
    if !taken.contains(&first) {
        return Ok(first);
    }
    let numbered = (2..=MAX_COPY_NUMBER)
        .map(|n| format!("{base}_copy_{n}"))
        .find(|candidate| !taken.contains(candidate));
    Ok(numbered.unwrap_or(first))
}

/// The source's keys to import, in plain text. `valid_only` reads each key's live status,
/// which leads the database by up to one log flush.
async fn keys_to_copy(app: &App, source: &GroupRow, mode: KeysToCopy) -> ApiResult<Vec<String>> {
    if mode == KeysToCopy::None || source.group_type == "aggregate" {
        return Ok(Vec::new());
    }
    let rows = app.store.keys_of_group(source.id).await?;
    let model = app.model.lock().await;
    let keys = rows
        .into_iter()
        .filter(|k| {
            mode == KeysToCopy::All
                || match model.slot(k.group_id, k.id) {
                    Some(slot) => slot.is_active(),
                    None => k.status == "active",
                }
        })
        .filter_map(|k| match app.cipher.decrypt(&k.key_value) {
            Ok(plain) => Some(plain),
            Err(e) => {
                tracing::warn!(key_id = k.id, error = %e, "group copy: skipping a key that does not decrypt");
                None
            }
        })
        .collect();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_keys_values() {
        assert_eq!(KeysToCopy::parse("").unwrap(), KeysToCopy::All);
        assert_eq!(
            KeysToCopy::parse(" valid_only ").unwrap(),
            KeysToCopy::ValidOnly
        );
        assert_eq!(KeysToCopy::parse("none").unwrap(), KeysToCopy::None);
        assert_eq!(
            KeysToCopy::parse("some").unwrap_err().code,
            "VALIDATION_FAILED"
        );
    }

    #[test]
    fn a_copy_keeps_fields_and_renames() {
        let source = GroupRow {
            id: 7,
            name: "g".into(),
            display_name: "G".into(),
            config: r#"{"max_retries":1}"#.into(),
            last_validated_at: Some(chrono::Utc::now()),
            ..GroupRow::default()
        };
        let copied = copy_of(source, "g_copy".into());
        assert_eq!((copied.id, copied.name.as_str()), (0, "g_copy"));
        assert_eq!(copied.display_name, "G Copy");
        assert_eq!(copied.config, r#"{"max_retries":1}"#);
        assert!(copied.last_validated_at.is_none());
        let unnamed = copy_of(GroupRow::default(), "x".into());
        assert_eq!(
            unnamed.display_name, "",
            "v1 adds ' Copy' only to a display name"
        );
    }
}
