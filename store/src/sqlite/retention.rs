//! Request log retention (spec §2.14): deleting rows older than a cutoff without holding the
//! database for the seconds a large delete takes.
//!
//! Rows go in chunks of [`CHUNK`], each its own short transaction on the writer connection,
//! with a pause in between so that a log flush waiting for the writer gets it. Hourly stats are
//! never deleted, as in v1.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Context, SqliteStore, datetime, lock, run_blocking};
use crate::error::StoreResult;

/// Rows per delete: a chunk takes a few milliseconds (nine indexes per row), which is the
/// longest a log flush ever waits behind the retention pass.
const CHUNK: i64 = 1000;

/// Pause between chunks, long enough for a waiting writer to take the connection.
const PAUSE: Duration = Duration::from_millis(5);

impl SqliteStore {
    pub(crate) async fn delete_logs_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let writer = Arc::clone(&self.writer);
        run_blocking("delete expired request logs", move || {
            // Text comparison, as v1 does it: exact for our UTC rows (see queries.rs).
            let cutoff = datetime::format(cutoff);
            let mut deleted = 0u64;
            loop {
                let n = lock(&writer)
                    .prepare_cached(
                        "DELETE FROM request_logs WHERE rowid IN \
                         (SELECT rowid FROM request_logs WHERE timestamp < ?1 LIMIT ?2)",
                    )
                    .and_then(|mut stmt| stmt.execute(params![cutoff, CHUNK]))
                    .context("delete expired request logs")?;
                deleted += n as u64;
                if (n as i64) < CHUNK {
                    return Ok(deleted);
                }
                std::thread::sleep(PAUSE);
            }
        })
        .await
    }
}
