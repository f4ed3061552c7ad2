//! The logs page (spec §3.3, console-api §6): `GET /api/logs`, a filtered page of request logs,
//! and `GET /api/logs/export`, a CSV of the keys behind the filtered logs (one row per key, its
//! latest log) — v1's "dump every key that got a 429" tool.
//!
//! Filters are v1's, by the same query names; unlike v1, a value that does not parse (a status
//! code that is not a number, a time that is not RFC 3339) is a 400 rather than silently no
//! filter, so a script never mistakes "everything" for "what I asked for".

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::{Data, Query};
use poem::{Body, Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{LogFilter, LogKey, LogRow};
use tokio::io::AsyncWriteExt;

use super::keys::{paginated, paging};
use super::{ApiError, ApiResult, ok};
use crate::app::App;
use crate::encryption::KeyCipher;

/// Keys per export chunk: one short read each, so a slow download never holds the database.
const EXPORT_CHUNK: usize = 500;
/// Bytes buffered between the export task and the client; the task waits when it is full.
const EXPORT_BUFFER: usize = 64 * 1024;

/// The query string of both endpoints, every field as sent (parsed in [`LogQuery::filter`]).
#[derive(Deserialize, Default)]
pub struct LogQuery {
    parent_group_name: Option<String>,
    group_name: Option<String>,
    key_value: Option<String>,
    model: Option<String>,
    is_success: Option<String>,
    request_type: Option<String>,
    status_code: Option<String>,
    source_ip: Option<String>,
    error_contains: Option<String>,
    request_id: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
}

impl LogQuery {
    /// The store filter; empty values mean "no filter", as the console leaves fields out.
    fn filter(&self, cipher: &KeyCipher) -> ApiResult<LogFilter> {
        Ok(LogFilter {
            parent_group_name: given(&self.parent_group_name),
            group_name: given(&self.group_name),
            key_hash: given(&self.key_value).map(|k| cipher.hash(k.trim())),
            model: given(&self.model),
            is_success: given(&self.is_success)
                .map(|v| parse_bool(&v))
                .transpose()?,
            request_type: given(&self.request_type).map(request_type).transpose()?,
            status_code: given(&self.status_code)
                .map(|v| {
                    v.trim().parse::<i64>().map_err(|_| {
                        ApiError::bad_request(format!("status_code '{v}': expected an integer"))
                    })
                })
                .transpose()?,
            source_ip: given(&self.source_ip),
            error_contains: given(&self.error_contains),
            request_id: given(&self.request_id),
            start: given(&self.start_time)
                .map(|v| parse_time("start_time", &v))
                .transpose()?,
            end: given(&self.end_time)
                .map(|v| parse_time("end_time", &v))
                .transpose()?,
        })
    }
}

fn given(value: &Option<String>) -> Option<String> {
    value.as_ref().filter(|v| !v.is_empty()).cloned()
}

/// Go's `strconv.ParseBool`, which v1 uses: 1/t/T/TRUE/true/True and their false forms.
fn parse_bool(value: &str) -> ApiResult<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "is_success '{value}': expected true or false"
        ))),
    }
}

fn request_type(value: String) -> ApiResult<String> {
    match value.as_str() {
        "retry" | "final" => Ok(value),
        _ => Err(ApiError::bad_request(format!(
            "request_type '{value}': expected retry or final"
        ))),
    }
}

/// RFC 3339, as the console sends it (`2026-11-26T04:58:12.000Z`). A `+` of an offset that a
/// hand-written URL left unencoded arrives as a space; it is read back as the `+` it was.
fn parse_time(name: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&value.trim().replace(' ', "+"))
        .map(|t| t.to_utc())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} '{value}': expected an RFC 3339 time such as 2026-11-26T04:58:12.000Z"
            ))
        })
}

/// The one place a stored log key becomes what an admin sees: decrypted, or v1's
/// `failed-to-decrypt` (e.g. logs written before `migrate-keys` changed the key).
fn decrypt_key(app: &App, stored: &str) -> String {
    app.cipher.reveal(stored)
}

/// A log row in v1's JSON field names, plus our `request_id`.
fn log_json(app: &App, log: LogRow) -> Value {
    let key_value = if log.key_value.is_empty() {
        String::new()
    } else {
        decrypt_key(app, &log.key_value)
    };
    json!({
        "id": log.id, "timestamp": log.timestamp.to_rfc3339(),
        "group_id": log.group_id, "group_name": log.group_name,
        "parent_group_id": log.parent_group_id, "parent_group_name": log.parent_group_name,
        "key_value": key_value, "key_hash": log.key_hash, "model": log.model,
        "is_success": log.is_success, "source_ip": log.source_ip,
        "status_code": log.status_code, "request_path": log.request_path,
        "duration_ms": log.duration_ms, "error_message": log.error_message,
        "user_agent": log.user_agent, "request_type": log.request_type,
        "upstream_addr": log.upstream_addr, "is_stream": log.is_stream,
        "request_body": log.request_body, "request_id": log.request_id,
    })
}

#[handler]
pub async fn list(
    app: Data<&Arc<App>>,
    req: &Request,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let filter = q.filter(&app.cipher)?;
    let (page, page_size) = paging(q.page.as_deref(), q.page_size.as_deref());
    let (rows, total) = app.store.list_logs(filter, page, page_size).await?;
    let items = rows.into_iter().map(|log| log_json(&app, log)).collect();
    Ok(ok(req, paginated(items, page, page_size, total)))
}

/// Streams `log_keys_export_{YYYYmmddHHMMSS}.csv` with the keys of the matching logs, in key
/// hash order as v1 writes them. Filters are checked before the first byte, so a bad one is
/// still an ordinary 400.
#[handler]
pub async fn export(app: Data<&Arc<App>>, Query(q): Query<LogQuery>) -> ApiResult<Response> {
    let filter = q.filter(&app.cipher)?;
    let (mut writer, reader) = tokio::io::duplex(EXPORT_BUFFER);
    let app = Arc::clone(&app);
    tokio::spawn(async move {
        if let Err(e) = write_export(&app, filter, &mut writer).await {
            // Headers are gone by now: a cut-short file is all the client can be told.
            tracing::warn!(error = %e, "log key export stopped early");
        }
    });
    let name = format!("log_keys_export_{}.csv", Utc::now().format("%Y%m%d%H%M%S"));
    Ok(Response::builder()
        .content_type("text/csv; charset=utf-8")
        .header(
            "Content-Disposition",
            format!("attachment; filename={name}"),
        )
        .body(Body::from_async_read(reader)))
}

async fn write_export(
    app: &App,
    filter: LogFilter,
    out: &mut tokio::io::DuplexStream,
) -> Result<(), String> {
    out.write_all(b"key_value,group_name,status_code\n")
        .await
        .map_err(|e| format!("client went away: {e}"))?;
    let mut after = String::new();
    loop {
        let chunk = app
            .store
            .latest_log_keys(filter.clone(), after.clone(), EXPORT_CHUNK)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = chunk.last() else {
            return Ok(());
        };
        after = last.key_hash.clone();
        let text: String = chunk.iter().map(|key| csv_line(app, key)).collect();
        out.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("client went away: {e}"))?;
        if chunk.len() < EXPORT_CHUNK {
            return Ok(());
        }
    }
}

fn csv_line(app: &App, key: &LogKey) -> String {
    format!(
        "{},{},{}\n",
        csv_field(&decrypt_key(app, &key.key_value)),
        csv_field(&key.group_name),
        key.status_code
    )
}

/// Go's `encoding/csv` quoting, which v1's export uses: quoted when the field has a comma,
/// quote, CR or LF or starts with a space; quotes doubled.
fn csv_field(field: &str) -> std::borrow::Cow<'_, str> {
    let needs_quotes = field.starts_with(' ')
        || field
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if needs_quotes {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_like_go() {
        assert_eq!(csv_field("sk-plain"), "sk-plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(" lead"), "\" lead\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn filters_parse_like_v1_and_reject_garbage() {
        let q = LogQuery {
            is_success: Some("True".into()),
            status_code: Some("429".into()),
            start_time: Some("2026-11-26T04:58:12.000Z".into()),
            end_time: Some("2026-11-26T12:58:12 08:00".into()),
            model: Some(String::new()),
            ..LogQuery::default()
        };
        let f = q.filter(&KeyCipher::plain()).expect("valid");
        assert_eq!((f.is_success, f.status_code), (Some(true), Some(429)));
        assert_eq!(f.start, f.end, "the unencoded + of +08:00 is read back");
        assert_eq!(f.model, None, "an empty field is no filter");

        for bad in [
            LogQuery {
                status_code: Some("4xx".into()),
                ..LogQuery::default()
            },
            LogQuery {
                start_time: Some("yesterday".into()),
                ..LogQuery::default()
            },
            LogQuery {
                is_success: Some("yes".into()),
                ..LogQuery::default()
            },
            LogQuery {
                request_type: Some("first".into()),
                ..LogQuery::default()
            },
        ] {
            let e = bad.filter(&KeyCipher::plain()).expect_err("rejected");
            assert_eq!((e.status.as_u16(), e.code), (400, "BAD_REQUEST"));
        }
    }
}
