//! Key validation endpoints (spec §3.3): `POST /api/keys/test-multiple` (synchronous, chosen
//! keys) and `POST /api/keys/validate-group` (a background task over a group's keys). The work
//! itself is in `crate::validation`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use engine::keys::{KeySlot, KeyStatus};
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};

use super::keys::parse_keys_text;
use super::{ApiError, ApiResult, JsonBody, ok};
use crate::app::App;
use crate::tasks::TaskKind;
use crate::validation::{self, Plan};

/// Most keys one synchronous test takes (v1).
const TEST_KEY_LIMIT: usize = 5000;
/// v1's answer for a tested key that is not in the group.
const NOT_IN_GROUP: &str = "Key does not exist in this group or has been removed.";

#[derive(Deserialize)]
pub struct TestInput {
    #[serde(default)]
    group_id: i64,
    #[serde(default)]
    keys_text: String,
    /// Validates with this model instead of the group's `test_model` (as later GPT-Load
    /// versions allow).
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
pub struct ValidateGroupInput {
    #[serde(default)]
    group_id: i64,
    /// `active`, `invalid`, or empty / `all` for every key.
    #[serde(default)]
    status: Option<String>,
}

/// Validates the given keys of a group now and updates their status; keys that are not in
/// the group are reported, not validated.
#[handler]
pub async fn test_multiple(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<TestInput>,
) -> ApiResult<Response> {
    let started = Instant::now();
    let group_id = existing_group(&app, input.group_id).await?;
    let tokens = parse_keys_text(&input.keys_text);
    if tokens.len() > TEST_KEY_LIMIT {
        return Err(ApiError::validation(format!(
            "batch size exceeds the limit of {TEST_KEY_LIMIT} keys, got {}",
            tokens.len()
        )));
    }
    if tokens.is_empty() {
        return Err(ApiError::validation(
            "no valid keys found in the input text",
        ));
    }
    let (mut plan, found) = {
        let model = app.model.lock().await;
        let plan = Plan::of(&model, group_id).ok_or_else(group_not_found)?;
        (plan, keys_named(model.keys.get(&group_id), &tokens))
    };
    plan.test_model = input.model.filter(|m| !m.trim().is_empty());
    let position: HashMap<Box<str>, usize> = found
        .iter()
        .enumerate()
        .map(|(i, slot)| (Box::from(slot.value()), i))
        .collect();
    let outcomes = validation::run(&app, &plan, found, |_| {}).await;
    let results: Vec<Value> = tokens
        .iter()
        .map(
            |token| match position.get(token.as_str()).map(|&i| &outcomes[i]) {
                Some(outcome) => result(token, outcome.valid, &outcome.error),
                None => result(token, false, NOT_IN_GROUP),
            },
        )
        .collect();
    let total_duration = started.elapsed().as_millis() as u64;
    Ok(ok(
        req,
        json!({"results": results, "total_duration": total_duration}),
    ))
}

/// Starts the validation task over a group's keys (all, or those with `status`) and answers
/// with the task's status; 409 while another task runs or when there is nothing to validate.
#[handler]
pub async fn validate_group(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<ValidateGroupInput>,
) -> ApiResult<Response> {
    let status = match input.status.as_deref().map(str::trim) {
        None | Some("") | Some("all") => None,
        Some("active") => Some(KeyStatus::Active),
        Some("invalid") => Some(KeyStatus::Invalid),
        Some(_) => return Err(ApiError::validation("Invalid status value")),
    };
    let group_id = existing_group(&app, input.group_id).await?;
    let (plan, keys) = {
        let model = app.model.lock().await;
        let plan = Plan::of(&model, group_id).ok_or_else(group_not_found)?;
        let keys: Vec<KeySlot> = model
            .keys
            .get(&group_id)
            .into_iter()
            .flatten()
            .filter(|slot| status.is_none_or(|s| slot.status() == s))
            .cloned()
            .collect();
        (plan, keys)
    };
    if keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TASK_IN_PROGRESS",
            format!("no keys to validate in group {}", plan.group_name),
        ));
    }
    let task = app
        .tasks
        .try_start(TaskKind::KeyValidation, &plan.group_name, keys.len() as u64)
        .map_err(|_| ApiError::task_in_progress())?;
    tokio::spawn(validation::run_task(app.clone(), plan, keys, task));
    Ok(ok(req, app.tasks.status()))
}

/// The id of an existing group (standard or aggregate; an aggregate simply has no keys).
async fn existing_group(app: &App, group_id: i64) -> ApiResult<i64> {
    if group_id <= 0 {
        return Err(ApiError::validation("group_id is required"));
    }
    match app.store.get_group(group_id).await? {
        Some(group) => Ok(group.id),
        None => Err(group_not_found()),
    }
}

fn group_not_found() -> ApiError {
    ApiError::not_found("group not found")
}

/// The group's slots whose key is among `tokens`, each once, in the group's order.
fn keys_named(slots: Option<&Vec<KeySlot>>, tokens: &[String]) -> Vec<KeySlot> {
    let wanted: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    slots
        .into_iter()
        .flatten()
        .filter(|slot| wanted.contains(slot.value()) && seen.insert(slot.value()))
        .cloned()
        .collect()
}

/// v1's `KeyTestResult`: `error` is left out when empty.
fn result(key: &str, valid: bool, error: &str) -> Value {
    let mut result = json!({"key_value": key, "is_valid": valid});
    if !error.is_empty() {
        result["error"] = json!(error);
    }
    result
}
