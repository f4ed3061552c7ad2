//! Integration info (v1 §2.17, used by New API to import GPT-Load groups): which groups a proxy
//! key may use, at `/api/integration/info` (all groups) and `/proxy/{group}/api/integration/info`
//! (that group, paths relative to it). Public: the proxy key in `?key=` is the credential.

use std::sync::Arc;

use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use store::GroupRow;

use super::aggregates::effective_validation_endpoint;
use super::{ApiError, ApiResult, ok};
use crate::app::App;
use crate::settings::split_list;

#[derive(Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
}

#[handler]
pub async fn all_groups(
    app: Data<&Arc<App>>,
    req: &Request,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Response> {
    let key = required_key(q)?;
    let groups = app.store.list_groups().await?;
    answer(&app, req, &key, &groups, false).await
}

#[handler]
pub async fn one_group(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(name): Path<String>,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Response> {
    let key = required_key(q)?;
    let group = app
        .model
        .lock()
        .await
        .groups
        .values()
        .find(|g| g.name == name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Group not found"))?;
    answer(&app, req, &key, &[group], true).await
}

fn required_key(q: KeyQuery) -> ApiResult<String> {
    q.key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::validation("Proxy key is required"))
}

async fn answer(
    app: &App,
    req: &Request,
    key: &str,
    groups: &[GroupRow],
    relative: bool,
) -> ApiResult<Response> {
    let global = app.model.lock().await.settings.proxy_keys();
    let is_global = global.iter().any(|k| k == key);
    let items: Vec<Value> = groups
        .iter()
        .filter(|g| is_global || split_list(&g.proxy_keys).iter().any(|k| k == key))
        .map(|g| {
            let channel = effective_channel(g);
            json!({
                "name": g.name,
                "display_name": g.display_name,
                "channel_type": channel,
                "path": integration_path(relative, &g.name, channel, &g.validation_endpoint),
            })
        })
        .collect();
    if items.is_empty() {
        return Err(ApiError::validation("Invalid or unauthorized proxy key"));
    }
    Ok(ok(req, Value::Array(items)))
}

/// `custom` for an OpenAI-style group validated on a non-default path, as v1 reports it.
fn effective_channel(group: &GroupRow) -> &str {
    let default = match group.channel_type.as_str() {
        "openai" => "/v1/chat/completions",
        "openai-response" => "/v1/responses",
        other => return other,
    };
    let effective = effective_validation_endpoint(group);
    if effective.is_empty() || effective == default {
        &group.channel_type
    } else {
        "custom"
    }
}

fn integration_path(
    relative: bool,
    name: &str,
    channel: &str,
    validation_endpoint: &str,
) -> String {
    match (channel == "custom", relative) {
        (true, true) => validation_endpoint.to_string(),
        (true, false) => format!("/proxy/{name}{validation_endpoint}"),
        (false, true) => String::new(),
        (false, false) => format!("/proxy/{name}"),
    }
}
