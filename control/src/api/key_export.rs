//! `GET /api/keys/export` (spec §3.3): a group's keys as a `text/plain` attachment, one per
//! line. The console downloads it through a plain link, so AUTH_KEY comes as `?key=`.
//!
//! The file is streamed: keys are read [`EXPORT_BATCH`] at a time in id order and each batch is
//! sent before the next is read, so a million-key group costs one batch of memory, the reader
//! connection is free between batches, and a client that goes away stops the walk.

use std::sync::Arc;

use futures_util::stream;
use poem::web::{Data, Query};
use poem::{Body, Response, handler};
use serde::Deserialize;

use super::keys::standard_group;
use super::{ApiError, ApiResult};
use crate::app::App;

/// Keys per database read (v1's batch).
const EXPORT_BATCH: usize = 500;

#[derive(Deserialize)]
pub struct ExportQuery {
    group_id: Option<String>,
    status: Option<String>,
}

#[handler]
pub async fn export(app: Data<&Arc<App>>, Query(q): Query<ExportQuery>) -> ApiResult<Response> {
    let group_id = q
        .group_id
        .filter(|g| !g.is_empty())
        .ok_or_else(|| ApiError::bad_request("group_id is required"))?;
    let group_id = group_id
        .parse::<i64>()
        .ok()
        .filter(|g| *g > 0)
        .ok_or_else(|| ApiError::bad_request("invalid group_id format"))?;
    let status = q.status.filter(|s| !s.is_empty());
    let status = status.as_deref().unwrap_or("all");
    if !["all", "active", "invalid"].contains(&status) {
        return Err(ApiError::validation(format!(
            "invalid status '{status}': expected all, active or invalid"
        )));
    }
    let group = standard_group(&app, group_id).await?;
    let filter = (status != "all").then(|| status.to_string());
    Ok(Response::builder()
        .content_type("text/plain; charset=utf-8")
        .header(
            "Content-Disposition",
            format!("attachment; filename=keys-{}-{status}.txt", group.name),
        )
        .body(key_lines(app.0.clone(), group_id, filter)))
}

/// Where the walk over the group's keys is.
struct Walk {
    app: Arc<App>,
    group_id: i64,
    status: Option<String>,
    after_id: i64,
}

/// The group's keys, one per line, a batch per body chunk. A database error ends the body with
/// an error, so the client sees a broken download rather than a short file.
fn key_lines(app: Arc<App>, group_id: i64, status: Option<String>) -> Body {
    let walk = Walk {
        app,
        group_id,
        status,
        after_id: 0,
    };
    Body::from_bytes_stream(stream::unfold(Some(walk), |walk| async move {
        let mut walk = walk?;
        let batch = walk
            .app
            .store
            .keys_of_group_after(
                walk.group_id,
                walk.status.clone(),
                walk.after_id,
                EXPORT_BATCH,
            )
            .await;
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(group_id = walk.group_id, error = %e, "key export failed");
                return Some((Err(std::io::Error::other(e.to_string())), None));
            }
        };
        walk.after_id = batch.last()?.id;
        let mut lines = Vec::with_capacity(batch.iter().map(|k| k.key_value.len() + 1).sum());
        for key in &batch {
            // As v1: a key that does not decrypt is left out (and logged), not exported broken.
            match walk.app.cipher.decrypt(&key.key_value) {
                Ok(plain) => {
                    lines.extend_from_slice(plain.as_bytes());
                    lines.push(b'\n');
                }
                Err(e) => {
                    tracing::error!(key_id = key.id, error = %e, "key export: cannot decrypt")
                }
            }
        }
        Some((Ok(lines), Some(walk)))
    }))
}
