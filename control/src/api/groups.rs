//! Groups: create, list, update (partial), delete, reorder (spec §3.3), with v1's validation
//! (§1.2).

use std::collections::HashSet;
use std::sync::Arc;

use poem::web::{Data, Path};
use poem::{Body, Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use store::GroupRow;

use super::{ApiError, ApiResult, JsonBody, ok, ok_message, parse_id};
use crate::app::App;
use crate::i18n::{self, Lang};
use crate::settings::validate_group_config;
use crate::state::{UpstreamSpec, parse_object, parse_upstreams};

/// A create or update body; on update only the fields present change.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GroupInput {
    name: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    group_type: Option<String>,
    upstreams: Option<Vec<UpstreamSpec>>,
    channel_type: Option<String>,
    sort: Option<i64>,
    test_model: Option<String>,
    validation_endpoint: Option<String>,
    param_overrides: Option<Value>,
    model_redirect_rules: Option<Value>,
    model_redirect_strict: Option<bool>,
    config: Option<Value>,
    header_rules: Option<Value>,
    proxy_keys: Option<String>,
}

#[handler]
pub async fn list(app: Data<&Arc<App>>, req: &Request) -> ApiResult<Response> {
    let groups = app.store.list_groups().await?;
    let app_url = app.model.lock().await.settings.get("app_url").to_string();
    let items: Vec<Value> = groups.iter().map(|g| group_json(g, &app_url)).collect();
    Ok(ok(req, Value::Array(items)))
}

#[handler]
pub async fn list_light(app: Data<&Arc<App>>, req: &Request) -> ApiResult<Response> {
    let groups = app.store.list_groups().await?;
    let items: Vec<Value> = groups
        .iter()
        .map(|g| json!({"id": g.id, "name": g.name, "display_name": g.display_name}))
        .collect();
    Ok(ok(req, Value::Array(items)))
}

#[handler]
pub async fn channel_types(req: &Request) -> Response {
    let names: Vec<&str> = engine::channel::Channel::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    ok(req, json!(names))
}

#[handler]
pub async fn create(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<GroupInput>,
) -> ApiResult<Response> {
    let mut row = GroupRow {
        group_type: "standard".into(),
        ..GroupRow::default()
    };
    apply(&mut row, input, true)?;
    let row = app.store.insert_group(row).await?;
    Ok(ok(req, publish_group(&app, row).await))
}

#[handler]
pub async fn update(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<GroupInput>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let mut row = app
        .store
        .get_group(id)
        .await?
        .ok_or_else(|| ApiError::not_found("group not found"))?;
    let before = row.clone();
    apply(&mut row, input, false)?;
    check_membership_frozen(&app, &before, &row).await?;
    let row = app.store.update_group(row).await?;
    Ok(ok(req, publish_group(&app, row).await))
}

/// A member of an aggregate keeps its channel and validation endpoint (v1 §2.16): the
/// aggregate's other members were accepted against them.
async fn check_membership_frozen(app: &App, before: &GroupRow, after: &GroupRow) -> ApiResult<()> {
    use super::aggregates::{effective_validation_endpoint, is_member};
    let changed = before.channel_type != after.channel_type
        || effective_validation_endpoint(before) != effective_validation_endpoint(after);
    if changed && is_member(&*app.model.lock().await, before.id) {
        return Err(ApiError::validation(
            "this group is a sub-group of an aggregate: its channel type and validation endpoint cannot change",
        ));
    }
    Ok(())
}

/// Puts a stored group into the model, publishes, and returns it as v1's GroupResponse.
pub(super) async fn publish_group(app: &App, row: GroupRow) -> Value {
    let mut model = app.model.lock().await;
    let app_url = model.settings.get("app_url").to_string();
    let json = group_json(&row, &app_url);
    model.upsert_group(row);
    app.publish(&mut model).await;
    json
}

#[handler]
pub async fn delete(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    if !app.store.delete_group(id).await? {
        return Err(ApiError::not_found("group not found"));
    }
    let mut model = app.model.lock().await;
    model.remove_group(id);
    app.publish(&mut model).await;
    Ok(ok(req, Value::Null))
}

#[derive(Deserialize)]
struct ReorderInput {
    #[serde(default)]
    items: Vec<ReorderItem>,
}

#[derive(Deserialize)]
struct ReorderItem {
    #[serde(default)]
    id: i64,
    #[serde(default)]
    sort: i64,
}

/// The console's drag-and-drop save: `{items:[{id, sort}]}` (only the moved groups), checked as
/// v1 checks it, then every sort in one transaction.
#[handler]
pub async fn reorder(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<ReorderInput>,
) -> ApiResult<Response> {
    let items = valid_reorder(&input.items)?;
    if !app.store.reorder_groups(items.clone()).await? {
        return Err(reorder_error(
            "validation.reorder_group_not_found",
            Vec::new(),
        ));
    }
    let mut model = app.model.lock().await;
    for (id, sort) in items {
        if let Some(group) = model.groups.get_mut(&id) {
            group.sort = sort;
        }
    }
    app.publish(&mut model).await;
    let message = i18n::t(Lang::of(req), "success.groups_reordered");
    Ok(ok_message(req, message, Value::Null))
}

/// v1's rules, in v1's order: not empty, ids above 0, sorts 0 or more, no id twice.
fn valid_reorder(items: &[ReorderItem]) -> ApiResult<Vec<(i64, i64)>> {
    if items.is_empty() {
        return Err(reorder_error(
            "validation.reorder_items_required",
            Vec::new(),
        ));
    }
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        if item.id <= 0 {
            return Err(reorder_error("validation.reorder_group_id", Vec::new()));
        }
        if item.sort < 0 {
            return Err(reorder_error(
                "validation.reorder_sort_negative",
                Vec::new(),
            ));
        }
        if !seen.insert(item.id) {
            let args = vec![("id", item.id.to_string())];
            return Err(reorder_error("validation.reorder_duplicate_group", args));
        }
    }
    Ok(items.iter().map(|i| (i.id, i.sort)).collect())
}

fn reorder_error(id: &'static str, args: Vec<(&'static str, String)>) -> ApiError {
    ApiError::localised(
        poem::http::StatusCode::BAD_REQUEST,
        "VALIDATION_FAILED",
        id,
        args,
    )
}

pub async fn read_body(body: Body) -> ApiResult<Vec<u8>> {
    body.into_vec()
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))
}

/// Validates `input` and writes it onto `row`. `creating` makes the required fields required.
fn apply(row: &mut GroupRow, input: GroupInput, creating: bool) -> ApiResult<()> {
    if let Some(kind) = input.group_type {
        if kind != "standard" && kind != "aggregate" {
            return Err(ApiError::validation(format!(
                "invalid group_type '{kind}': expected standard or aggregate"
            )));
        }
        if !creating && kind != row.group_type {
            return Err(ApiError::validation("group_type cannot be changed"));
        }
        row.group_type = kind;
    }
    let aggregate = row.group_type == "aggregate";
    match input.name {
        Some(name) => row.name = valid_name(name.trim())?,
        None if creating => return Err(ApiError::validation("name is required")),
        None => {}
    }
    match input.channel_type {
        Some(c) if engine::channel::Channel::parse(&c).is_some() => row.channel_type = c,
        Some(c) => return Err(ApiError::validation(format!("invalid channel_type '{c}'"))),
        None if creating => return Err(ApiError::validation("channel_type is required")),
        None => {}
    }
    if let Some(v) = input.display_name {
        row.display_name = v.trim().to_string();
    }
    if let Some(v) = input.description {
        row.description = v;
    }
    if let Some(v) = input.sort {
        row.sort = v;
    }
    if let Some(v) = input.proxy_keys {
        row.proxy_keys = crate::settings::split_list(&v).join(",");
    }
    if aggregate {
        row.upstreams = "[]".into();
        row.test_model = "-".into();
        if row.param_overrides.is_empty() {
            row.param_overrides = "{}".into();
        }
        fill_empty_json(row);
        return Ok(());
    }
    apply_standard(
        row,
        input.upstreams,
        input.test_model,
        input.validation_endpoint,
        creating,
    )?;
    apply_json_fields(
        row,
        input.param_overrides,
        input.model_redirect_rules,
        input.config,
        input.header_rules,
    )?;
    if let Some(v) = input.model_redirect_strict {
        row.model_redirect_strict = v;
    }
    fill_empty_json(row);
    Ok(())
}

fn apply_standard(
    row: &mut GroupRow,
    upstreams: Option<Vec<UpstreamSpec>>,
    test_model: Option<String>,
    validation_endpoint: Option<String>,
    creating: bool,
) -> ApiResult<()> {
    match upstreams {
        Some(specs) => row.upstreams = valid_upstreams(specs)?,
        None if creating => {
            return Err(ApiError::validation(
                "upstreams: at least one upstream is required",
            ));
        }
        None => {}
    }
    match test_model {
        Some(m) if !m.trim().is_empty() => row.test_model = m.trim().to_string(),
        // v1 ignores an empty test_model on update, but refuses a blank one.
        Some(m) if !creating && m.is_empty() => {}
        None if !creating => {}
        _ => return Err(ApiError::validation("test_model is required")),
    }
    if let Some(endpoint) = validation_endpoint {
        let endpoint = endpoint.trim().to_string();
        if !endpoint.is_empty() && (!endpoint.starts_with('/') || endpoint.contains("://")) {
            return Err(ApiError::validation(
                "validation_endpoint must be a path starting with /",
            ));
        }
        row.validation_endpoint = endpoint;
    }
    Ok(())
}

fn apply_json_fields(
    row: &mut GroupRow,
    param_overrides: Option<Value>,
    redirect_rules: Option<Value>,
    config: Option<Value>,
    header_rules: Option<Value>,
) -> ApiResult<()> {
    if let Some(v) = param_overrides {
        row.param_overrides = object_or_empty(v, "param_overrides")?.to_string();
    }
    if let Some(v) = redirect_rules {
        let rules = object_or_empty(v, "model_redirect_rules")?;
        if rules.as_object().is_some_and(|m| {
            m.values()
                .any(|v| v.as_str().is_none_or(|s| s.trim().is_empty()))
        }) {
            return Err(ApiError::validation(
                "model_redirect_rules: every target must be a non-empty model name",
            ));
        }
        row.model_redirect_rules = rules.to_string();
    }
    if let Some(v) = config {
        let config = object_or_empty(v, "config")?;
        if let Some(map) = config.as_object() {
            validate_group_config(map).map_err(ApiError::validation)?;
        }
        row.config = config.to_string();
    }
    if let Some(v) = header_rules {
        row.header_rules = valid_header_rules(v)?.to_string();
    }
    Ok(())
}

fn fill_empty_json(row: &mut GroupRow) {
    for field in [
        &mut row.param_overrides,
        &mut row.config,
        &mut row.model_redirect_rules,
    ] {
        if field.is_empty() {
            *field = "{}".into();
        }
    }
    if row.header_rules.is_empty() {
        row.header_rules = "[]".into();
    }
}

fn valid_name(name: &str) -> ApiResult<String> {
    let ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(name.to_string())
    } else {
        Err(ApiError::validation(format!(
            "invalid group name '{name}': use 1-100 lowercase letters, digits, '_' or '-'"
        )))
    }
}

fn valid_upstreams(specs: Vec<UpstreamSpec>) -> ApiResult<String> {
    if specs.is_empty() {
        return Err(ApiError::validation(
            "upstreams: at least one upstream is required",
        ));
    }
    for u in &specs {
        if u.weight < 0 {
            return Err(ApiError::validation(format!(
                "upstream '{}': weight must be 0 or more",
                u.url
            )));
        }
        engine::upstream::Upstream::parse(u.url.trim(), 1).map_err(ApiError::validation)?;
    }
    if specs.iter().all(|u| u.weight == 0) {
        return Err(ApiError::validation(
            "upstreams: at least one upstream needs a weight above 0",
        ));
    }
    let json: Vec<Value> = specs
        .iter()
        .map(|u| json!({"url": u.url.trim(), "weight": u.weight}))
        .collect();
    Ok(Value::Array(json).to_string())
}

fn object_or_empty(value: Value, field: &str) -> ApiResult<Value> {
    match value {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(value),
        _ => Err(ApiError::validation(format!(
            "{field} must be a JSON object"
        ))),
    }
}

fn valid_header_rules(value: Value) -> ApiResult<Value> {
    let rules = match value {
        Value::Null => return Ok(json!([])),
        Value::Array(rules) => rules,
        _ => return Err(ApiError::validation("header_rules must be an array")),
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let key = rule
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        let action = rule.get("action").and_then(Value::as_str).unwrap_or("");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(ApiError::validation(format!(
                "header rule: invalid header name '{key}'"
            )));
        }
        if action != "set" && action != "remove" {
            return Err(ApiError::validation(format!(
                "header rule '{key}': action must be set or remove"
            )));
        }
        let canonical = canonical_header(&key);
        if !seen.insert(canonical.clone()) {
            return Err(ApiError::validation(format!(
                "header rule '{canonical}' is duplicated"
            )));
        }
        let value = rule.get("value").and_then(Value::as_str).unwrap_or("");
        out.push(json!({"key": canonical, "value": value, "action": action}));
    }
    Ok(Value::Array(out))
}

/// HTTP canonical case, as Go's `CanonicalHeaderKey`: `x-api-key` → `X-Api-Key`.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// v1's GroupResponse.
pub fn group_json(g: &GroupRow, app_url: &str) -> Value {
    let upstreams: Vec<Value> = parse_upstreams(&g.upstreams)
        .iter()
        .map(|u| json!({"url": u.url, "weight": u.weight}))
        .collect();
    let header_rules: Value = serde_json::from_str(&g.header_rules).unwrap_or_else(|_| json!([]));
    json!({
        "id": g.id,
        "name": g.name,
        "endpoint": format!("{}/proxy/{}", app_url.trim_end_matches('/'), g.name),
        "display_name": g.display_name,
        "description": g.description,
        "group_type": if g.group_type.is_empty() { "standard" } else { g.group_type.as_str() },
        "upstreams": upstreams,
        "channel_type": g.channel_type,
        "sort": g.sort,
        "test_model": g.test_model,
        "validation_endpoint": g.validation_endpoint,
        "param_overrides": Value::Object(parse_object(&g.param_overrides)),
        "config": Value::Object(parse_object(&g.config)),
        "header_rules": header_rules,
        "model_redirect_rules": Value::Object(parse_object(&g.model_redirect_rules)),
        "model_redirect_strict": g.model_redirect_strict,
        "proxy_keys": g.proxy_keys,
        "last_validated_at": g.last_validated_at.map(|t| t.to_rfc3339()),
        "created_at": g.created_at.to_rfc3339(),
        "updated_at": g.updated_at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers() {
        assert!(valid_name("my-group_1").is_ok());
        assert!(
            valid_name("My").is_err()
                && valid_name("").is_err()
                && valid_name(&"a".repeat(101)).is_err()
        );
        assert_eq!(canonical_header("x-api-KEY"), "X-Api-Key");
        assert!(
            valid_header_rules(json!([{"key":"a","action":"set"},{"key":"A","action":"remove"}]))
                .is_err()
        );
    }
}
