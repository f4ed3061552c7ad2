//! Public endpoints: health and login.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Body, Response, handler};
use serde::Deserialize;
use serde_json::json;

use super::constant_time_eq;
use crate::app::App;

#[handler]
pub async fn health(app: Data<&Arc<App>>) -> Response {
    let uptime = app.started.elapsed();
    let body = json!({
        "status": "healthy",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "uptime": format_uptime(uptime),
    });
    json_response(StatusCode::OK, body)
}

/// Go's `time.Duration.String()` shape, as v1 prints uptime: `1h2m3.5s`.
fn format_uptime(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    let h = (secs / 3600.0).floor();
    let m = ((secs - h * 3600.0) / 60.0).floor();
    let s = secs - h * 3600.0 - m * 60.0;
    match (h as u64, m as u64) {
        (0, 0) => format!("{s:.3}s"),
        (0, m) => format!("{m}m{s:.3}s"),
        (h, m) => format!("{h}h{m}m{s:.3}s"),
    }
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    auth_key: String,
}

/// v1's login: `{success, message}` (message localised); nothing is issued, the console keeps
/// the key.
#[handler]
pub async fn login(app: Data<&Arc<App>>, req: &poem::Request, body: Body) -> Response {
    let text = |id| crate::i18n::t(crate::i18n::Lang::of(req), id);
    let bytes = body.into_vec().await.unwrap_or_default();
    let Ok(login) = serde_json::from_slice::<Login>(&bytes) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "message": text("auth.invalid_request")}),
        );
    };
    if login.auth_key.is_empty()
        || !constant_time_eq(login.auth_key.as_bytes(), app.config.auth_key.as_bytes())
    {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"success": false, "message": text("auth.authentication_failed")}),
        );
    }
    json_response(
        StatusCode::OK,
        json!({"success": true, "message": text("auth.authentication_successful")}),
    )
}

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

/// The single background task's status (v1's TaskStatus).
#[handler]
pub async fn task_status(app: Data<&Arc<App>>, req: &poem::Request) -> Response {
    super::ok(req, app.tasks.status())
}
