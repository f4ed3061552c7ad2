//! Traffic statistics (spec §3.3): the dashboard's cards (`GET /api/dashboard/stats`) and hourly
//! chart (`GET /api/dashboard/chart`), and a group's info card (`GET /api/groups/{id}/stats`).
//!
//! Request counts come from `group_hourly_stats` (final attempts, per group and hour), RPM from
//! the final rows of `request_logs` (so both lag behind by the log write interval, as in v1),
//! key counts from the live key slots (ahead of the database by up to one flush).
//!
//! Deliberate difference: v1 sums every `group_hourly_stats` row for the cards and the "all
//! groups" chart, and a request through an aggregate has a row for its member *and* one for
//! the aggregate, so v1 counts it twice. Here the all-groups totals leave aggregate groups out;
//! an aggregate's own chart and stats still show its rows.

mod warnings;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;
use serde_json::{Value, json};
use store::HourlyStat;

use super::{ApiError, ApiResult, ok, parse_id};
use crate::app::App;
use crate::i18n::{Lang, t};
use crate::state::Model;

/// v1's chart colours.
const SUCCESS_COLOR: &str = "rgba(10, 200, 110, 1)";
const FAILURE_COLOR: &str = "rgba(255, 70, 70, 1)";

/// Final requests and failures in a window.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    requests: i64,
    failures: i64,
}

impl Totals {
    fn add(&mut self, stat: &HourlyStat) {
        self.requests += stat.success_count + stat.failure_count;
        self.failures += stat.failure_count;
    }

    /// Failures as a percentage of requests; 0 without requests.
    fn error_percent(self) -> f64 {
        if self.requests > 0 {
            self.failures as f64 / self.requests as f64 * 100.0
        } else {
            0.0
        }
    }
}

fn hour_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp().div_euclid(3600) * 3600;
    // A whole hour at or before a valid time is always in chrono's range.
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

fn aggregate_ids(model: &Model) -> HashSet<i64> {
    model
        .groups
        .values()
        .filter(|g| g.group_type == "aggregate")
        .map(|g| g.id)
        .collect()
}

/// `(active, invalid)` key counts of one group, or of all with `None`, from the live slots.
fn key_counts(model: &Model, group_id: Option<i64>) -> (i64, i64) {
    let groups: Box<dyn Iterator<Item = _>> = match group_id {
        Some(id) => Box::new(model.keys.get(&id).into_iter()),
        None => Box::new(model.keys.values()),
    };
    let (mut active, mut invalid) = (0, 0);
    for slot in groups.flatten() {
        if slot.is_active() {
            active += 1;
        } else {
            invalid += 1;
        }
    }
    (active, invalid)
}

// ---- GET /api/dashboard/stats ----------------------------------------------------------------

#[handler]
pub async fn stats(app: Data<&Arc<App>>, req: &Request) -> ApiResult<Response> {
    let lang = Lang::of(req);
    let now = Utc::now();
    let rpm = rpm_card(&app, now).await?;
    let hourly = app
        .store
        .hourly_stats(None, now - TimeDelta::hours(48), now)
        .await?;
    let model = app.model.lock().await;
    let aggregates = aggregate_ids(&model);
    let (mut current, mut previous) = (Totals::default(), Totals::default());
    let day_ago = now - TimeDelta::hours(24);
    for stat in hourly.iter().filter(|s| !aggregates.contains(&s.group_id)) {
        if stat.time >= day_ago {
            current.add(stat);
        } else {
            previous.add(stat);
        }
    }
    let (active, invalid) = key_counts(&model, None);
    let warnings = warnings::security_warnings(&app.config, &model, lang);
    drop(model);
    Ok(ok(
        req,
        json!({
            "key_count": {
                "value": active as f64, "sub_value": invalid,
                "sub_value_tip": t(lang, "dashboard.invalid_keys"),
                "trend": 0.0, "trend_is_growth": false,
            },
            "rpm": rpm,
            "request_count": request_card(current, previous),
            "error_rate": error_rate_card(current, previous),
            "security_warnings": warnings,
        }),
    ))
}

/// Final requests per minute over the last 10 minutes, against the 10 before.
async fn rpm_card(app: &App, now: DateTime<Utc>) -> ApiResult<Value> {
    let ten_ago = now - TimeDelta::minutes(10);
    let current = app.store.count_final_logs(ten_ago, None).await? as f64 / 10.0;
    let previous = app
        .store
        .count_final_logs(now - TimeDelta::minutes(20), Some(ten_ago))
        .await? as f64
        / 10.0;
    let (trend, growth) = if previous > 0.0 {
        let trend = (current - previous) / previous * 100.0;
        (trend, trend >= 0.0)
    } else if current > 0.0 {
        (100.0, true)
    } else {
        (0.0, true)
    };
    Ok(json!({"value": current, "trend": trend, "trend_is_growth": growth}))
}

/// Requests in the last 24 h; the trend is the change in percent (100 when the previous day
/// had none).
fn request_card(current: Totals, previous: Totals) -> Value {
    let (trend, growth) = if previous.requests > 0 {
        let trend =
            (current.requests - previous.requests) as f64 / previous.requests as f64 * 100.0;
        (trend, trend >= 0.0)
    } else if current.requests > 0 {
        (100.0, true)
    } else {
        (0.0, true)
    };
    json!({"value": current.requests as f64, "trend": trend, "trend_is_growth": growth})
}

/// The 24 h error rate in percent; the trend is the change in percentage points, and "growth"
/// (shown in green) means the rate went down.
fn error_rate_card(current: Totals, previous: Totals) -> Value {
    let rate = current.error_percent();
    let (trend, growth) = if previous.requests > 0 {
        let trend = rate - previous.error_percent();
        (trend, trend < 0.0)
    } else if current.requests > 0 {
        (rate, rate == 0.0)
    } else {
        (0.0, true)
    };
    json!({"value": rate, "trend": trend, "trend_is_growth": growth})
}

// ---- GET /api/dashboard/chart ----------------------------------------------------------------

#[derive(Deserialize)]
pub struct ChartQuery {
    /// camelCase, as the console sends it.
    #[serde(rename = "groupId")]
    group_id: Option<String>,
}

/// Success and failure counts for each of the last 24 hours, the current one included.
#[handler]
pub async fn chart(
    app: Data<&Arc<App>>,
    req: &Request,
    Query(q): Query<ChartQuery>,
) -> ApiResult<Response> {
    let lang = Lang::of(req);
    let group_id = match q.group_id.as_deref().filter(|g| !g.is_empty()) {
        Some(text) => Some(parse_id(text)?),
        None => None,
    };
    let first = hour_start(Utc::now()) - TimeDelta::hours(23);
    let hours: Vec<DateTime<Utc>> = (0..24).map(|i| first + TimeDelta::hours(i)).collect();
    let hourly = app
        .store
        .hourly_stats(group_id, first, first + TimeDelta::hours(24))
        .await?;
    let skip = match group_id {
        Some(_) => HashSet::new(),
        None => aggregate_ids(&*app.model.lock().await),
    };
    let (mut success, mut failure) = (vec![0i64; 24], vec![0i64; 24]);
    for stat in hourly.iter().filter(|s| !skip.contains(&s.group_id)) {
        // Bucketed by the row's own hour, whatever minute a hand-edited row may carry.
        let slot = (hour_start(stat.time) - first).num_hours();
        if let Ok(i) = usize::try_from(slot)
            && i < 24
        {
            success[i] += stat.success_count;
            failure[i] += stat.failure_count;
        }
    }
    let labels: Vec<String> = hours
        .iter()
        .map(|h| h.to_rfc3339_opts(SecondsFormat::Secs, true))
        .collect();
    Ok(ok(
        req,
        json!({
            "labels": labels,
            "datasets": [
                {"label": t(lang, "dashboard.success_requests"), "data": success, "color": SUCCESS_COLOR},
                {"label": t(lang, "dashboard.failed_requests"), "data": failure, "color": FAILURE_COLOR},
            ],
        }),
    ))
}

// ---- GET /api/groups/{id}/stats --------------------------------------------------------------

/// The group info card's windows, in hours.
const WINDOWS: [(&str, i64); 3] = [
    ("stats_24_hour", 24),
    ("stats_7_day", 7 * 24),
    ("stats_30_day", 30 * 24),
];

/// Key counts (standard groups; zeros for an aggregate, which has no keys) and request
/// counts over 24 h, 7 days and 30 days, each window ending with the current hour.
#[handler]
pub async fn group_stats(
    app: Data<&Arc<App>>,
    req: &Request,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let (is_aggregate, (active, invalid)) = {
        let model = app.model.lock().await;
        let group = model
            .groups
            .get(&id)
            .ok_or_else(|| ApiError::not_found("group not found"))?;
        (
            group.group_type == "aggregate",
            key_counts(&model, Some(id)),
        )
    };
    let end = hour_start(Utc::now()) + TimeDelta::hours(1);
    let longest = WINDOWS.iter().map(|(_, h)| *h).max().unwrap_or(0);
    let hourly = app
        .store
        .hourly_stats(Some(id), end - TimeDelta::hours(longest), end)
        .await?;
    let mut body = json!({
        "key_stats": if is_aggregate {
            json!({"total_keys": 0, "active_keys": 0, "invalid_keys": 0})
        } else {
            json!({"total_keys": active + invalid, "active_keys": active, "invalid_keys": invalid})
        },
    });
    for (name, hours) in WINDOWS {
        let start = end - TimeDelta::hours(hours);
        let mut totals = Totals::default();
        hourly
            .iter()
            .filter(|s| s.time >= start)
            .for_each(|s| totals.add(s));
        body[name] = window_json(totals);
    }
    Ok(ok(req, body))
}

/// `{total_requests, failed_requests, failure_rate}`, the rate a fraction rounded to 4 places.
fn window_json(totals: Totals) -> Value {
    let rate = if totals.requests > 0 {
        (totals.failures as f64 / totals.requests as f64 * 10_000.0).round() / 10_000.0
    } else {
        0.0
    };
    json!({
        "total_requests": totals.requests, "failed_requests": totals.failures,
        "failure_rate": rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: i64, failures: i64) -> Totals {
        Totals { requests, failures }
    }

    #[test]
    fn request_trend_is_percent_change() {
        let card = request_card(totals(150, 0), totals(100, 0));
        assert_eq!(
            card,
            json!({"value": 150.0, "trend": 50.0, "trend_is_growth": true})
        );
        let card = request_card(totals(50, 0), totals(100, 0));
        assert_eq!(card["trend"], -50.0);
        assert_eq!(card["trend_is_growth"], false);
        assert_eq!(request_card(totals(5, 0), totals(0, 0))["trend"], 100.0);
        assert_eq!(request_card(totals(0, 0), totals(0, 0))["trend"], 0.0);
    }

    #[test]
    fn error_rate_trend_is_in_points_and_falling_is_good() {
        let card = error_rate_card(totals(100, 10), totals(100, 25));
        assert_eq!(
            card,
            json!({"value": 10.0, "trend": -15.0, "trend_is_growth": true})
        );
        let card = error_rate_card(totals(100, 30), totals(0, 0));
        assert_eq!(
            card,
            json!({"value": 30.0, "trend": 30.0, "trend_is_growth": false})
        );
        let card = error_rate_card(totals(100, 0), totals(0, 0));
        assert_eq!(card["trend_is_growth"], true);
    }

    #[test]
    fn failure_rate_rounds_to_four_places() {
        assert_eq!(window_json(totals(3, 1))["failure_rate"], 0.3333);
        assert_eq!(window_json(totals(3, 2))["failure_rate"], 0.6667);
        assert_eq!(window_json(totals(0, 0))["failure_rate"], 0.0);
    }
}
