//! Request log retention (spec §2.14): at start and every 2 hours, delete the request logs
//! older than `request_log_retention_days` (0 keeps them forever). Hourly stats stay, so the
//! dashboard and group statistics keep their history.
//!
//! The setting is re-read on every pass, so a change applies at the next one. The delete runs
//! in small chunks in the store, so the log writer is never held up for long.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::app::App;

/// v1's interval between passes.
const EVERY: Duration = Duration::from_secs(2 * 60 * 60);

/// Runs forever: one pass now, then one every [`EVERY`].
pub async fn run(app: Arc<App>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        pass(&app).await;
    }
}

async fn pass(app: &App) {
    let days = app
        .model
        .lock()
        .await
        .settings
        .int("request_log_retention_days");
    if days <= 0 {
        tracing::debug!("request log retention is off (request_log_retention_days = 0)");
        return;
    }
    let cutoff = Utc::now() - TimeDelta::days(days);
    match app.store.delete_logs_before(cutoff).await {
        Ok(0) => tracing::debug!(days, "no expired request logs"),
        Ok(deleted) => tracing::info!(
            deleted,
            days,
            cutoff = %cutoff.to_rfc3339(),
            "deleted {deleted} expired request logs"
        ),
        Err(e) => {
            tracing::error!(error = %e, "deleting expired request logs failed; will retry in 2 h")
        }
    }
}
