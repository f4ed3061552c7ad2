//! System settings: the metadata-rich list the console renders, validated updates, and the
//! group-overridable subset the group form offers (`/api/groups/config-options`). Names,
//! descriptions and categories are in the caller's language (spec §3.1).

use std::sync::Arc;

use poem::web::Data;
use poem::{Request, Response, handler};
use serde_json::{Map, Value, json};
use store::SettingRow;

use super::{ApiError, ApiResult, JsonBody, ok};
use crate::app::App;
use crate::i18n::{self, Lang};
use crate::settings::{Category, Kind, SETTINGS, find, typed_value, validate_value};

#[handler]
pub async fn get_all(app: Data<&Arc<App>>, req: &Request) -> Response {
    let lang = Lang::of(req);
    let model = app.model.lock().await;
    let categories: Vec<Value> = Category::ALL
        .iter()
        .map(|category| {
            let settings: Vec<Value> = SETTINGS
                .iter()
                .filter(|d| d.category == *category)
                .map(|d| {
                    let (kind, min, required) = match d.kind {
                        Kind::Int { min } => ("int", Some(min), true),
                        Kind::Bool => ("bool", None, false),
                        Kind::Text { required } => ("string", None, required),
                        Kind::FailoverCodes => ("string", None, true),
                    };
                    let mut item = json!({
                        "key": d.key, "name": i18n::setting_name(lang, d),
                        "value": model.settings.typed(d), "type": kind,
                        "default_value": typed_value(d, d.default),
                        "description": i18n::setting_description(lang, d),
                        "category": i18n::category_name(lang, *category), "required": required,
                    });
                    if let Some(min) = min {
                        item["min_value"] = json!(min);
                    }
                    item
                })
                .collect();
            json!({"category_name": i18n::category_name(lang, *category), "settings": settings})
        })
        .collect();
    ok(req, Value::Array(categories))
}

/// v1's `GET /api/groups/config-options`: the settings a group may override, each with the
/// current system value as `default_value` (typed, so the console picks the right input).
#[handler]
pub async fn group_config_options(app: Data<&Arc<App>>, req: &Request) -> Response {
    let lang = Lang::of(req);
    let model = app.model.lock().await;
    let options: Vec<Value> = SETTINGS
        .iter()
        .filter(|d| d.group_override)
        .map(|d| {
            json!({
                "key": d.key,
                "name": i18n::setting_name(lang, d),
                "description": i18n::setting_description(lang, d),
                "default_value": model.settings.typed(d),
            })
        })
        .collect();
    ok(req, Value::Array(options))
}

#[handler]
pub async fn update(
    app: Data<&Arc<App>>,
    req: &Request,
    JsonBody(input): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let mut rows = Vec::with_capacity(input.len());
    for (key, value) in &input {
        let def =
            find(key).ok_or_else(|| ApiError::validation(format!("unknown setting '{key}'")))?;
        let stored = validate_value(def, value).map_err(ApiError::validation)?;
        rows.push((def, stored));
    }
    let store_rows = rows
        .iter()
        .map(|(d, v)| SettingRow {
            key: d.key.into(),
            value: v.clone(),
            description: d.description.into(),
        })
        .collect();
    app.store.upsert_settings(store_rows).await?;
    let mut model = app.model.lock().await;
    for (def, value) in rows {
        model.settings.set(def.key, value);
    }
    model.touch_all();
    app.apply_settings(&model.settings);
    app.publish(&mut model).await;
    Ok(ok(req, Value::Null))
}
