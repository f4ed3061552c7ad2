//! Aggregate groups' members (v1 §2.16, §3.3): list, add, weight, remove, and the reverse
//! lookup of the aggregates a standard group belongs to. v1's constraints: members exist, are
//! standard, share the aggregate's channel and one effective validation endpoint; weights 0..1000.

use std::sync::Arc;

use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{GroupRow, SubGroupRow};

use super::groups::group_json;
use super::{ApiError, ApiResult, JsonBody, ok, parse_id};
use crate::app::App;
use crate::state::Model;

const MAX_WEIGHT: i64 = 1000;

#[derive(Deserialize)]
struct Member {
    group_id: i64,
    #[serde(default)]
    weight: i64,
}

#[derive(Deserialize)]
struct AddMembers {
    #[serde(default)]
    sub_groups: Vec<Member>,
}

#[derive(Deserialize)]
struct Weight {
    weight: i64,
}

/// The validation path a group's keys are checked on (v1's `GetValidationEndpoint`).
pub fn effective_validation_endpoint(group: &GroupRow) -> &str {
    if !group.validation_endpoint.is_empty() {
        return &group.validation_endpoint;
    }
    match group.channel_type.as_str() {
        "openai" => "/v1/chat/completions",
        "openai-response" => "/v1/responses",
        "anthropic" => "/v1/messages",
        _ => "",
    }
}

fn aggregate(model: &Model, id: i64) -> ApiResult<&GroupRow> {
    let group = model
        .groups
        .get(&id)
        .ok_or_else(|| ApiError::not_found("group not found"))?;
    if group.group_type != "aggregate" {
        return Err(ApiError::bad_request(
            "only aggregate groups have sub-groups",
        ));
    }
    Ok(group)
}

fn valid_weight(weight: i64) -> ApiResult<i64> {
    if (0..=MAX_WEIGHT).contains(&weight) {
        Ok(weight)
    } else {
        Err(ApiError::validation(format!(
            "weight must be between 0 and {MAX_WEIGHT}"
        )))
    }
}

#[handler]
pub async fn list(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let model = app.model.lock().await;
    aggregate(&model, id)?;
    let app_url = model.settings.get("app_url").to_string();
    let mut items: Vec<(i64, Value)> = model
        .sub_groups
        .iter()
        .filter(|l| l.group_id == id)
        .filter_map(|l| {
            let member = model.groups.get(&l.sub_group_id)?;
            let slots = model
                .keys
                .get(&member.id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let active = slots.iter().filter(|s| s.is_active()).count();
            let item = json!({
                "group": group_json(member, &app_url),
                "weight": l.weight,
                "total_keys": slots.len(),
                "active_keys": active,
                "invalid_keys": slots.len() - active,
            });
            Some((l.weight, item))
        })
        .collect();
    items.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    Ok(ok(
        req,
        Value::Array(items.into_iter().map(|(_, v)| v).collect()),
    ))
}

#[handler]
pub async fn add(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AddMembers>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    if input.sub_groups.is_empty() {
        return Err(ApiError::validation(
            "sub_groups must list at least one group",
        ));
    }
    let mut model = app.model.lock().await;
    let links = check_new_members(&model, id, &input.sub_groups)?;
    app.store.add_sub_groups(links.clone()).await?;
    model.sub_groups.extend(links);
    app.publish(&mut model).await;
    Ok(ok(req, Value::Null))
}

/// v1's constraints on new members, checked against the current members too.
fn check_new_members(model: &Model, id: i64, members: &[Member]) -> ApiResult<Vec<SubGroupRow>> {
    let parent = aggregate(model, id)?;
    let existing: Vec<&GroupRow> = model
        .sub_groups
        .iter()
        .filter(|l| l.group_id == id)
        .filter_map(|l| model.groups.get(&l.sub_group_id))
        .collect();
    let mut endpoint = existing
        .first()
        .map(|g| effective_validation_endpoint(g).to_string());
    let mut links = Vec::with_capacity(members.len());
    for m in members {
        let group = model.groups.get(&m.group_id).ok_or_else(|| {
            ApiError::validation(format!("sub-group {} does not exist", m.group_id))
        })?;
        if group.group_type == "aggregate" {
            return Err(ApiError::validation(format!(
                "'{}' is an aggregate group; members must be standard groups",
                group.name
            )));
        }
        if group.channel_type != parent.channel_type {
            return Err(ApiError::validation(format!(
                "'{}' uses channel {}, the aggregate uses {}",
                group.name, group.channel_type, parent.channel_type
            )));
        }
        let own = effective_validation_endpoint(group).to_string();
        if endpoint.get_or_insert_with(|| own.clone()) != &own {
            return Err(ApiError::validation(format!(
                "'{}' validates keys on {own}; every member of an aggregate must share one validation endpoint",
                group.name
            )));
        }
        let duplicate = existing.iter().any(|g| g.id == group.id)
            || links
                .iter()
                .any(|l: &SubGroupRow| l.sub_group_id == group.id);
        if duplicate {
            return Err(ApiError::new(
                poem::http::StatusCode::CONFLICT,
                "DUPLICATE_RESOURCE",
                format!("'{}' is already a sub-group", group.name),
            ));
        }
        links.push(SubGroupRow {
            group_id: id,
            sub_group_id: group.id,
            weight: valid_weight(m.weight)?,
        });
    }
    Ok(links)
}

#[handler]
pub async fn set_weight(
    app: Data<&Arc<App>>,
    req: &Request,
    Path((id, sub_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<Weight>,
) -> ApiResult<Response> {
    let (id, sub_id) = (parse_id(&id)?, parse_id(&sub_id)?);
    let weight = valid_weight(input.weight)?;
    let mut model = app.model.lock().await;
    aggregate(&model, id)?;
    let link = SubGroupRow {
        group_id: id,
        sub_group_id: sub_id,
        weight,
    };
    if !app.store.set_sub_group_weight(link).await? {
        return Err(ApiError::not_found("sub-group not found in this aggregate"));
    }
    for l in model
        .sub_groups
        .iter_mut()
        .filter(|l| l.group_id == id && l.sub_group_id == sub_id)
    {
        l.weight = weight;
    }
    app.publish(&mut model).await;
    Ok(ok(req, Value::Null))
}

#[handler]
pub async fn remove(
    app: Data<&Arc<App>>,
    req: &Request,
    Path((id, sub_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (id, sub_id) = (parse_id(&id)?, parse_id(&sub_id)?);
    let mut model = app.model.lock().await;
    aggregate(&model, id)?;
    if !app.store.delete_sub_group(id, sub_id).await? {
        return Err(ApiError::not_found("sub-group not found in this aggregate"));
    }
    model
        .sub_groups
        .retain(|l| !(l.group_id == id && l.sub_group_id == sub_id));
    app.publish(&mut model).await;
    Ok(ok(req, Value::Null))
}

#[handler]
pub async fn parents(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let model = app.model.lock().await;
    if !model.groups.contains_key(&id) {
        return Err(ApiError::not_found("group not found"));
    }
    let items: Vec<Value> = model
        .sub_groups
        .iter()
        .filter(|l| l.sub_group_id == id)
        .filter_map(|l| {
            let parent = model.groups.get(&l.group_id)?;
            Some(json!({"group_id": parent.id, "name": parent.name, "display_name": parent.display_name, "weight": l.weight}))
        })
        .collect();
    Ok(ok(req, Value::Array(items)))
}

/// Whether `group` is a member of any aggregate (then its channel and validation endpoint are
/// frozen, as in v1).
pub fn is_member(model: &Model, group_id: i64) -> bool {
    model.sub_groups.iter().any(|l| l.sub_group_id == group_id)
}
