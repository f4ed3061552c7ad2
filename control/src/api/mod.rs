//! The admin API under `/api`, compatible with GPT-Load v1: same paths, bodies, the
//! `{code, message, data}` envelope and v1's string error codes (spec §3.2).

pub mod aggregates;
pub mod dashboard;
pub mod encryption;
pub mod group_copy;
pub mod groups;
pub mod integration;
pub mod key_export;
pub mod key_tasks;
pub mod keys;
pub mod logs;
pub mod multipart;
pub mod openapi;
pub mod settings;
pub mod system;
pub mod validation;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route, delete, get, handler, post, put,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::app::App;
use crate::i18n::{self, Lang};

/// An error answered in v1's envelope: `{"code":"<CODE>","message":"…"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    /// The English text; what other languages show is decided when the error is answered
    /// (see `localised_message`).
    pub message: String,
    /// An `i18n` message id and its arguments, when the error has a translated text.
    message_id: Option<(&'static str, Vec<(&'static str, String)>)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            message_id: None,
        }
    }
    /// An error whose message is `i18n` message `id` with `args`, in the caller's language.
    pub fn localised(
        status: StatusCode,
        code: &'static str,
        id: &'static str,
        args: Vec<(&'static str, String)>,
    ) -> Self {
        let message = i18n::fill(i18n::t(Lang::EnUs, id), &args);
        Self {
            message_id: Some((id, args)),
            ..Self::new(status, code, message)
        }
    }
    /// v1's 409 when the one background task slot is taken.
    pub fn task_in_progress() -> Self {
        Self::localised(
            StatusCode::CONFLICT,
            "TASK_IN_PROGRESS",
            "task.already_running",
            Vec::new(),
        )
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

impl ApiError {
    /// The message in `lang`: its own translation if it has an id, else the translation of its
    /// fixed English text, else (zh-CN, ja-JP) the English detail after the code's localised
    /// title, as v1 does for details it has no text for (`upstreams配置错误: …`).
    fn localised_message(&self, lang: Lang) -> String {
        if let Some((id, args)) = &self.message_id {
            return i18n::fill(i18n::t(lang, id), args);
        }
        if let Some(text) = i18n::translate_english(lang, &self.message) {
            return text.to_string();
        }
        match lang {
            Lang::EnUs => self.message.clone(),
            _ => format!(
                "{}: {}",
                i18n::t(lang, i18n::code_title(self.code)),
                self.message
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match i18n::current() {
            Some(lang) => self.localised_message(lang),
            None => self.message,
        };
        let body = json!({ "code": self.code, "message": message });
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
    i18n::t(Lang::of(req), "success")
}

/// A JSON request body, parsed by [`parse_json`]: handlers take `JsonBody(input): JsonBody<T>`
/// and get v1's `INVALID_JSON` answer for free.
pub struct JsonBody<T>(pub T);

impl<'a, T: DeserializeOwned + Send> poem::FromRequest<'a> for JsonBody<T> {
    async fn from_request(_req: &'a Request, body: &mut poem::RequestBody) -> poem::Result<Self> {
        let bytes =
            body.take()?.into_vec().await.map_err(|e| {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            })?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

/// Parses a JSON body; bad JSON is v1's `INVALID_JSON` 400. Every body of the API is an
/// object: an array is refused too (serde would read `[…]` into a struct field by field).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            "Invalid JSON: expected an object",
        ));
    }
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
        .at(
            "/groups/config-options",
            get(settings::group_config_options),
        )
        .at("/groups/reorder", put(groups::reorder))
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
        .at("/groups/:id/copy", post(group_copy::copy))
        .at("/groups/:id/stats", get(dashboard::group_stats))
        .at("/channel-types", get(groups::channel_types))
        .at("/keys", get(keys::list))
        .at("/keys/add-multiple", post(keys::add_multiple))
        .at("/keys/delete-multiple", post(keys::delete_multiple))
        .at("/keys/export", get(key_export::export))
        .at("/keys/add-async", post(key_tasks::add_async))
        .at("/keys/delete-async", post(key_tasks::delete_async))
        .at("/keys/restore-multiple", post(keys::restore_multiple))
        .at("/keys/restore-all-invalid", post(keys::restore_all_invalid))
        .at("/keys/clear-all-invalid", post(keys::clear_all_invalid))
        .at("/keys/clear-all", post(keys::clear_all))
        .at("/keys/:id/notes", put(keys::update_notes))
        .at("/keys/test-multiple", post(validation::test_multiple))
        .at("/keys/validate-group", post(validation::validate_group))
        .at("/settings", get(settings::get_all).put(settings::update))
        .at("/tasks/status", get(system::task_status))
        .at("/logs", get(logs::list))
        .at("/logs/export", get(logs::export))
        .at("/dashboard/stats", get(dashboard::stats))
        .at("/dashboard/chart", get(dashboard::chart))
        .at("/dashboard/encryption-status", get(encryption::status))
        .at("/openapi.json", get(openapi::document))
        .at("/*", not_found)
        .around(require_auth);
    let api = Route::new()
        .at("/auth/login", post(system::login))
        .at("/integration/info", get(integration::all_groups))
        .nest("/", protected);
    Route::new()
        .at("/health", get(system::health))
        .nest("/api", api.around(localise))
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

/// Renders everything under `/api` in the language `Accept-Language` asks for (spec §3.1),
/// and in v1's shapes even when poem itself refuses a request before any handler runs.
async fn localise<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let lang = Lang::of(&req);
    i18n::scope(lang, async move {
        match next.call(req).await {
            Ok(resp) => Ok(resp.into_response()),
            Err(e) => Ok(v1_error(e).await),
        }
    })
    .await
}

/// An error poem answered in plain text, in v1's shape: a 405 as `{"error":"Method not
/// allowed"}` (spec §3.2), a refused query string (e.g. a parameter given twice) as
/// `BAD_REQUEST`. Errors already in JSON (every `ApiError`) pass unchanged.
async fn v1_error(error: poem::Error) -> Response {
    let resp = error.into_response();
    if resp
        .content_type()
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return resp;
    }
    match resp.status() {
        StatusCode::METHOD_NOT_ALLOWED => Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .content_type("application/json; charset=utf-8")
            .body(r#"{"error":"Method not allowed"}"#),
        StatusCode::BAD_REQUEST => {
            let text = resp.into_body().into_string().await.unwrap_or_default();
            ApiError::bad_request(text).into_response()
        }
        _ => resp,
    }
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
