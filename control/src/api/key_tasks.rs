//! The key calls that run as the background task (spec §3.3): `add-async` imports any number of
//! keys (JSON `keys_text` or a `.txt` upload), `delete-async` deletes them. Both answer v1's
//! TaskStatus at once and report `processed/total` at `/api/tasks/status` as they go.
//!
//! A million-key import has to finish in well under a minute without the proxy noticing, so:
//! the text is decoded, split and hashed on the blocking pool, not on the control plane's one
//! async thread; the group's stored hashes are loaded once; rows go to the database in chunks of
//! 500, one transaction each, so a log flush never waits long for the writer; the model lock is
//! held per chunk, never across the import; and the shards get a new snapshot at most once per
//! [`PUBLISH_EVERY`] (rebuilding a ring of a million keys costs milliseconds, so every chunk
//! would be too often) and once at the end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::web::Data;
use poem::{Body, Request, Response, handler};
use serde_json::{Value, json};
use store::{GroupRow, NewKey};

use super::groups::read_body;
use super::keys::{KeysText, forget_keys, parse_keys_text, standard_group, stored_key};
use super::{ApiError, ApiResult, multipart, ok, parse_json};
use crate::app::App;
use crate::encryption::KeyCipher;
use crate::tasks::{TaskHandle, TaskKind};

/// Keys per database call of an import: one transaction, one model update.
const IMPORT_CHUNK: usize = 500;
/// Keys per database call of a delete (v1's chunk).
const DELETE_CHUNK: usize = 1000;
/// Least time between two snapshots published while a task runs.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

#[handler]
pub async fn add_async(app: Data<&Arc<App>>, req: &Request, body: Body) -> ApiResult<Response> {
    let content_type = req.content_type().unwrap_or("").to_string();
    let body = read_body(body).await?;
    let input = off_thread(move || decode_import(&content_type, &body)).await?;
    let group = standard_group(&app, input.group_id).await?;
    if input.keys.is_empty() {
        return Err(ApiError::validation("no valid keys found in the input"));
    }
    Ok(ok(req, start_import(app.0.clone(), &group, input.keys)?))
}

#[handler]
pub async fn delete_async(app: Data<&Arc<App>>, req: &Request, body: Body) -> ApiResult<Response> {
    let body = read_body(body).await?;
    let input: KeysText = off_thread(move || parse_json(&body)).await?;
    let group = standard_group(&app, input.group_id).await?;
    let keys = off_thread(move || Ok(parse_keys_text(&input.keys_text))).await?;
    if keys.is_empty() {
        return Err(ApiError::validation("no valid keys found in the input"));
    }
    let handle = app
        .tasks
        .try_start(TaskKind::KeyDelete, &group.name, keys.len() as u64)
        .map_err(|_| ApiError::task_in_progress())?;
    let status = app.tasks.status();
    tokio::spawn(run_delete(app.0.clone(), group.id, keys, handle));
    Ok(ok(req, status))
}

/// Starts importing `keys` into `group` as the background task and returns its first status;
/// 409 `TASK_IN_PROGRESS` when a task runs. Also what a group copy uses to bring its keys.
pub fn start_import(app: Arc<App>, group: &GroupRow, keys: Vec<String>) -> ApiResult<Value> {
    let handle = app
        .tasks
        .try_start(TaskKind::KeyImport, &group.name, keys.len() as u64)
        .map_err(|_| ApiError::task_in_progress())?;
    let status = app.tasks.status();
    tokio::spawn(run_import(app, group.id, keys, handle));
    Ok(status)
}

/// What `add-async` was sent: the group and the keys, in input order, repeats included.
struct ImportInput {
    group_id: i64,
    keys: Vec<String>,
}

/// Reads a JSON `{group_id, keys_text}` or a multipart form with `group_id` and a `.txt`
/// `file`, as v1 tells them apart: by the content type.
fn decode_import(content_type: &str, body: &[u8]) -> ApiResult<ImportInput> {
    let Some(boundary) = multipart::boundary(content_type) else {
        let input: KeysText = parse_json(body)?;
        return Ok(ImportInput {
            group_id: input.group_id,
            keys: parse_keys_text(&input.keys_text),
        });
    };
    let form = multipart::parse(body, boundary)
        .map_err(|e| ApiError::bad_request(format!("malformed multipart form: {e}")))?;
    let group_id = form
        .iter()
        .find(|p| p.name == "group_id" && p.filename.is_none())
        .ok_or_else(|| ApiError::bad_request("group_id is required"))?;
    let group_id = std::str::from_utf8(group_id.data)
        .ok()
        .and_then(|g| g.trim().parse::<i64>().ok())
        .filter(|g| *g > 0)
        .ok_or_else(|| ApiError::bad_request("invalid group_id format"))?;
    let file = form
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
        .ok_or_else(|| ApiError::bad_request("file is required"))?;
    if !file.filename.as_deref().is_some_and(is_txt) {
        return Err(ApiError::validation("only .txt files are supported"));
    }
    let text = std::str::from_utf8(file.data)
        .map_err(|_| ApiError::validation("the file is not UTF-8 text"))?;
    Ok(ImportInput {
        group_id,
        keys: parse_keys_text(text),
    })
}

/// Whether the file name's extension is `.txt` in any case (Go's `filepath.Ext`, as v1 checks).
fn is_txt(filename: &str) -> bool {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    base.rsplit_once('.')
        .is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("txt"))
}

/// Runs CPU-heavy decoding on the blocking pool: the control plane has one async thread.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            poem::http::StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            format!("decoding the request failed: {e}"),
        )
    })?
}

async fn run_import(app: Arc<App>, group_id: i64, keys: Vec<String>, task: TaskHandle) {
    let total = keys.len();
    let mut progress = Progress::new(&task);
    let result = import_keys(&app, group_id, keys, &mut progress).await;
    let added = progress.done;
    // Whatever was added is in the model: publish it, also after an error.
    let mut model = app.model.lock().await;
    app.publish(&mut model).await;
    drop(model);
    match result {
        Ok(()) => task.finish(json!({"added_count": added, "ignored_count": total - added})),
        Err(e) => {
            tracing::error!(group_id, added, error = %e.message, "key import failed");
            task.fail(e.message);
        }
    }
}

/// Counts what a task did and when it last published.
struct Progress<'a> {
    task: &'a TaskHandle,
    /// Keys added (import) or deleted (delete).
    done: usize,
    published: Instant,
}

impl<'a> Progress<'a> {
    fn new(task: &'a TaskHandle) -> Self {
        Self {
            task,
            done: 0,
            published: Instant::now(),
        }
    }

    /// Whether a snapshot is due, and if so, counts it as published.
    fn publish_due(&mut self) -> bool {
        let due = self.published.elapsed() >= PUBLISH_EVERY;
        if due {
            self.published = Instant::now();
        }
        due
    }
}

async fn import_keys(
    app: &App,
    group_id: i64,
    keys: Vec<String>,
    progress: &mut Progress<'_>,
) -> ApiResult<()> {
    let total = keys.len();
    let known = app.store.key_hashes_of_group(group_id).await?;
    let cipher = app.cipher.clone();
    let fresh = off_thread(move || fresh_keys(&cipher, keys, known)).await?;
    // Repeats are done as soon as they are known: the bar moves past them at once.
    let ignored = total - fresh.len();
    progress.task.progress(ignored as u64);
    let mut rest = fresh.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<NewKey> = rest.by_ref().take(IMPORT_CHUNK).collect();
        let rows = app.store.insert_keys(group_id, chunk).await?;
        let mut model = app.model.lock().await;
        if !model.groups.contains_key(&group_id) {
            drop(model);
            let ids = rows.iter().map(|r| r.id).collect();
            app.store.delete_keys_by_id(group_id, ids).await?;
            return Err(ApiError::not_found(
                "the group was deleted during the import",
            ));
        }
        for row in &rows {
            model.add_key(row);
        }
        progress.done += rows.len();
        if progress.publish_due() {
            app.publish(&mut model).await;
        }
        drop(model);
        progress.task.progress((ignored + progress.done) as u64);
    }
    Ok(())
}

/// The keys to insert: each hashed (and encrypted) once, skipping those the group has and
/// repeats in the input, in hash order.
///
/// Hash order, not input order, because `idx_api_keys_key_hash` is the index every insert
/// updates at a random place: in input order each 500-row transaction dirties ~500 scattered
/// index pages, and SQLite writes them all to the WAL again at every commit (gigabytes for a
/// million keys, ~40 s); in hash order a transaction touches a dozen neighbouring pages (~6 s).
/// The visible cost: the keys of one import get their ids, hence their export and list order,
/// in hash order rather than file order.
fn fresh_keys(
    cipher: &KeyCipher,
    keys: Vec<String>,
    mut known: HashSet<String>,
) -> ApiResult<Vec<NewKey>> {
    let mut fresh = Vec::with_capacity(keys.len());
    for key in keys {
        let new = stored_key(cipher, key)?;
        if !known.contains(&new.hash) {
            known.insert(new.hash.clone());
            fresh.push(new);
        }
    }
    fresh.sort_unstable_by(|a, b| a.hash.cmp(&b.hash));
    Ok(fresh)
}

async fn run_delete(app: Arc<App>, group_id: i64, keys: Vec<String>, task: TaskHandle) {
    let total = keys.len();
    let mut progress = Progress::new(&task);
    let mut pending = HashSet::new();
    let result = delete_keys(&app, group_id, &keys, &mut progress, &mut pending).await;
    let deleted = progress.done;
    forget_keys(&app, group_id, pending).await;
    match result {
        Ok(()) => task.finish(json!({
            "deleted_count": deleted,
            "ignored_count": total.saturating_sub(deleted),
        })),
        Err(e) => {
            tracing::error!(group_id, deleted, error = %e.message, "key delete failed");
            task.fail(e.message);
        }
    }
}

/// Deletes in chunks; deleted ids collect in `pending` and leave the model at most once per
/// [`PUBLISH_EVERY`] (taking ids out of a large group's key list is a pass over all of it).
async fn delete_keys(
    app: &App,
    group_id: i64,
    keys: &[String],
    progress: &mut Progress<'_>,
    pending: &mut HashSet<i64>,
) -> ApiResult<()> {
    for (n, chunk) in keys.chunks(DELETE_CHUNK).enumerate() {
        let hashes = chunk.iter().map(|k| app.cipher.hash(k)).collect();
        let deleted = app.store.delete_keys_by_hash(group_id, hashes).await?;
        progress.done += deleted.len();
        pending.extend(deleted);
        if progress.publish_due() && !pending.is_empty() {
            forget_keys(app, group_id, std::mem::take(pending)).await;
        }
        let processed = (n * DELETE_CHUNK + chunk.len()) as u64;
        progress.task.progress(processed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_txt_files_are_taken() {
        assert!(is_txt("keys.txt"));
        assert!(is_txt("KEYS.TXT"));
        assert!(is_txt("C:\\Users\\me\\keys.v2.Txt"));
        assert!(!is_txt("keys.csv"));
        assert!(!is_txt("keys.txt.csv"));
        assert!(!is_txt("txt"));
        assert!(!is_txt("dir.txt/keys"));
    }

    #[test]
    fn fresh_keys_skip_stored_and_repeated_keys() {
        let cipher = KeyCipher::plain();
        let known: HashSet<String> = [cipher.hash("stored")].into();
        let keys = ["a", "stored", "b", "a"].map(String::from).to_vec();
        let fresh = fresh_keys(&cipher, keys, known).expect("plain keys");
        let mut values: Vec<&str> = fresh.iter().map(|k| k.value.as_str()).collect();
        assert!(
            fresh.windows(2).all(|w| w[0].hash < w[1].hash),
            "in hash order"
        );
        values.sort();
        assert_eq!(values, ["a", "b"]);
        assert!(fresh.iter().all(|k| k.hash == cipher.hash(&k.value)));
    }

    #[test]
    fn a_form_upload_gives_its_group_and_keys() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"group_id\"\r\n\r\n7\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"k.txt\"\r\n\
                    Content-Type: text/plain\r\n\r\nsk-1\nsk-2, sk-3\r\n--XyZ--\r\n";
        let input =
            decode_import("multipart/form-data; boundary=XyZ", body.as_bytes()).expect("decoded");
        assert_eq!(input.group_id, 7);
        assert_eq!(input.keys, ["sk-1", "sk-2", "sk-3"]);
        let csv = body.replace("k.txt", "k.csv");
        let err = decode_import("multipart/form-data; boundary=XyZ", csv.as_bytes())
            .err()
            .expect("refused");
        assert_eq!(err.code, "VALIDATION_FAILED");
    }
}
