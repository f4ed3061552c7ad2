//! The admin API under `/api`, compatible with GPT-Load v1: same paths, bodies, the
//! `{code, message, data}` envelope and v1's string error codes (spec §3.2).

pub mod aggregates;
pub mod groups;
pub mod integration;
pub mod keys;
pub mod settings;
pub mod system;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, delete, get, handler, post, put,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::app::App;

/// An error answered in v1's envelope: `{"code":"<CODE>","message":"…"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Authentication failed",
        )
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Duplicate(m) => {
                Self::new(StatusCode::CONFLICT, "DUPLICATE_RESOURCE", m)
            }
            store::StoreError::NotFound(m) => Self::not_found(m),
            other => {
                tracing::error!(error = %other, "database error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "DATABASE_ERROR",
                    "Database error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message });
        Response::builder()
            .status(self.status)
            .content_type("application/json; charset=utf-8")
            .body(body.to_string())
    }
}

impl From<ApiError> for poem::Error {
    fn from(e: ApiError) -> Self {
        poem::Error::from_response(e.into_response())
    }
}

/// `{"code":0,"message":…,"data":…}`.
pub fn ok(req: &Request, data: Value) -> Response {
    ok_message(req, success_message(req), data)
}

pub fn ok_message(_req: &Request, message: &str, data: Value) -> Response {
    let mut body = json!({ "code": 0, "message": message });
    if !data.is_null() {
        body["data"] = data;
    }
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

/// The localised "success" of v1's envelope (zh-CN by default, as v1).
pub fn success_message(req: &Request) -> &'static str {
    match req
        .header("accept-language")
        .unwrap_or("")
        .split([',', ';'])
        .next()
        .unwrap_or("")
        .trim()
    {
        l if l.starts_with("en") => "Operation successful",
        l if l.starts_with("ja") => "操作が成功しました",
        _ => "操作成功",
    }
}

/// Parses a JSON body; bad JSON is v1's `INVALID_JSON` 400.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("Invalid JSON: {e}"),
        )
    })
}

/// The admin API routes; everything but login and health requires AUTH_KEY.
pub fn routes(app: Arc<App>) -> impl Endpoint {
    let protected = Route::new()
        .at("/groups", get(groups::list).post(groups::create))
        .at("/groups/list", get(groups::list_light))
        .at("/groups/:id", put(groups::update).delete(groups::delete))
        .at(
            "/groups/:id/sub-groups",
            get(aggregates::list).post(aggregates::add),
        )
        .at(
            "/groups/:id/sub-groups/:sub_id/weight",
            put(aggregates::set_weight),
        )
        .at("/groups/:id/sub-groups/:sub_id", delete(aggregates::remove))
        .at(
            "/groups/:id/parent-aggregate-groups",
            get(aggregates::parents),
        )
        .at("/channel-types", get(groups::channel_types))
        .at("/keys", get(keys::list))
        .at("/keys/add-multiple", post(keys::add_multiple))
        .at("/keys/delete-multiple", post(keys::delete_multiple))
        .at("/settings", get(settings::get_all).put(settings::update))
        .at("/tasks/status", get(system::task_status))
        .at("/*", not_found)
        .around(require_auth);
    let api = Route::new()
        .at("/auth/login", post(system::login))
        .at("/integration/info", get(integration::all_groups))
        .nest("/", protected);
    Route::new()
        .at("/health", get(system::health))
        .nest("/api", api)
        .at(
            "/proxy/:group/api/integration/info",
            get(integration::one_group),
        )
        .at("/*", not_found)
        .data(app)
}

#[handler]
async fn not_found() -> Response {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .content_type("application/json; charset=utf-8")
        .body(r#"{"error":"Not Found"}"#)
}

/// AUTH_KEY in any of the four places a key may be, compared in constant time.
async fn require_auth<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let app = req.data::<Arc<App>>().cloned();
    let authorized = app.is_some_and(|app| {
        let query = req.uri().query().unwrap_or("");
        let key =
            engine::auth::extract_proxy_key(query, |name| req.header(name).map(str::as_bytes));
        key.is_some_and(|k| constant_time_eq(k.as_bytes(), app.config.auth_key.as_bytes()))
    });
    if !authorized {
        return Ok(ApiError::unauthorized().into_response());
    }
    next.call(req).await.map(IntoResponse::into_response)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Parses a path id; a non-number is a 400 as in v1.
pub fn parse_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid id '{text}'")))
}
