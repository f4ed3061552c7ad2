//! Key validation (v1 §2.15): the synchronous test of chosen keys (`test-multiple`), the manual
//! validation task (`validate-group`), and the periodic re-check that restores invalid keys.
//!
//! Every validation request goes out through the engine (`bridge`), so it uses the same
//! upstream client, proxy and timeouts as proxied traffic. Each verdict is then applied to the
//! key as v1's `UpdateStatus` does: a valid key becomes active with no failures (back in the
//! ring at once); a counted failure of an active key adds one, blacklisting it at the
//! threshold; a failing invalid key stays as it is. Live slots change at once; the database and
//! the rings follow in batches.
//!
//! What it is not: the failure accounting of proxied requests (the shards and the log writer
//! do that), nor the HTTP handlers (`api::validation`).

mod bridge;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use engine::keys::{KeySlot, KeyStatus};
use engine::validation::ValidateRequest;
use serde_json::{Value, json};
use store::KeyStateUpdate;

pub use bridge::{Bridge, EngineConn, new_secret};

use crate::app::App;
use crate::state::{Model, parse_object};
use crate::tasks::TaskHandle;

/// Validation workers of one job at most, whatever `key_validation_concurrency` says: each is
/// a task with one loopback connection and, through the engine, one upstream connection.
const MAX_CONCURRENCY: i64 = 1000;
/// Key states are written and rings rebuilt once this many verdicts changed keys…
const FLUSH_BATCH: usize = 500;
/// …or this long after the previous write, whichever comes first.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How one group's keys are validated: its effective settings (system values overlaid with
/// the group's `config`).
#[derive(Debug, Clone)]
pub struct Plan {
    pub group_id: i64,
    pub group_name: String,
    pub threshold: u64,
    pub concurrency: usize,
    pub timeout: Duration,
    /// `key_validation_interval_minutes`: how stale `last_validated_at` may get.
    pub interval: Duration,
    /// Replaces the group's `test_model` when set.
    pub test_model: Option<String>,
}

impl Plan {
    pub fn of(model: &Model, group_id: i64) -> Option<Plan> {
        let row = model.groups.get(&group_id)?;
        let config = parse_object(&row.config);
        let int = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_i64)
                .unwrap_or_else(|| model.settings.int(key))
        };
        Some(Plan {
            group_id,
            group_name: row.name.clone(),
            threshold: int("blacklist_threshold").max(0) as u64,
            concurrency: int("key_validation_concurrency").clamp(1, MAX_CONCURRENCY) as usize,
            timeout: Duration::from_secs(int("key_validation_timeout_seconds").max(1) as u64),
            interval: Duration::from_secs(
                int("key_validation_interval_minutes").max(1) as u64 * 60,
            ),
            test_model: None,
        })
    }
}

/// The result of validating one key.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub valid: bool,
    /// v1's reason: `[status N] message`, a transport error, or why no verdict was reached.
    pub error: String,
    /// Whether a failure counts against the key: not when no verdict was reached, nor for
    /// the errors v1 never counts (quota, context length).
    counted: bool,
}

impl Outcome {
    fn from_bridge(verdict: Result<engine::validation::Verdict, String>) -> Self {
        match verdict {
            Ok(v) => Outcome {
                counted: !v.valid && !engine::forward::is_uncounted_error(&v.error),
                valid: v.valid,
                error: v.error,
            },
            Err(error) => Outcome {
                valid: false,
                error: format!("validation could not run: {error}"),
                counted: false,
            },
        }
    }
}

/// Validates `keys` with the plan's concurrency and applies each verdict; `progress(done)`
/// runs after each one. Returns the outcomes in the order of `keys`, once every change is
/// written and published.
pub async fn run(
    app: &Arc<App>,
    plan: &Plan,
    keys: Vec<KeySlot>,
    mut progress: impl FnMut(usize),
) -> Vec<Outcome> {
    let keys: Arc<[KeySlot]> = keys.into();
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..plan.concurrency.min(keys.len()) {
        let (app, plan, keys, next, tx) = (
            app.clone(),
            plan.clone(),
            keys.clone(),
            next.clone(),
            tx.clone(),
        );
        tokio::spawn(async move {
            let mut conn = EngineConn::default();
            while let Some(slot) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                let outcome = check(&app, &plan, &mut conn, slot).await;
                if tx.send((slot.clone(), outcome)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut outcomes = std::collections::HashMap::with_capacity(keys.len());
    let mut applier = Applier::new(plan);
    while let Some((slot, outcome)) = rx.recv().await {
        applier.apply(&slot, &outcome);
        if applier.due() {
            applier.flush(app).await;
        }
        outcomes.insert(slot.id(), outcome);
        progress(outcomes.len());
    }
    applier.flush(app).await;
    keys.iter()
        .map(|slot| {
            outcomes.remove(&slot.id()).unwrap_or_else(|| Outcome {
                valid: false,
                error: "validation did not finish".into(),
                counted: false,
            })
        })
        .collect()
}

/// One key through the engine.
async fn check(app: &App, plan: &Plan, conn: &mut EngineConn, slot: &KeySlot) -> Outcome {
    let request = ValidateRequest {
        group_id: plan.group_id,
        key: slot.value().to_string(),
        test_model: plan.test_model.clone(),
        timeout_ms: plan.timeout.as_millis() as u64,
    };
    Outcome::from_bridge(app.validation.validate(conn, &request).await)
}

/// Applies verdicts to live slots at once and to the database and the rings in batches.
struct Applier {
    group_id: i64,
    threshold: u64,
    states: Vec<KeyStateUpdate>,
    /// A key entered or left the active set: the group's ring must be rebuilt.
    ring_changed: bool,
    last_flush: Instant,
}

impl Applier {
    fn new(plan: &Plan) -> Self {
        Self {
            group_id: plan.group_id,
            threshold: plan.threshold,
            states: Vec::new(),
            ring_changed: false,
            last_flush: Instant::now(),
        }
    }

    /// v1's `UpdateStatus`: success resets the key; a counted failure of an active key adds one.
    fn apply(&mut self, slot: &KeySlot, outcome: &Outcome) {
        if outcome.valid {
            if slot.is_active() && slot.failure_count() == 0 {
                return;
            }
            self.ring_changed |= !slot.is_active();
            slot.reset(KeyStatus::Active, 0);
        } else if outcome.counted && slot.is_active() {
            self.ring_changed |= slot.record_failure(self.threshold).blacklisted;
        } else {
            return;
        }
        self.states.push(KeyStateUpdate {
            key_id: slot.id(),
            failure_count: slot.failure_count() as i64,
            status: slot.status().as_str().into(),
        });
    }

    fn due(&self) -> bool {
        self.states.len() >= FLUSH_BATCH
            || (!self.states.is_empty() && self.last_flush.elapsed() >= FLUSH_EVERY)
    }

    async fn flush(&mut self, app: &App) {
        self.last_flush = Instant::now();
        let states = std::mem::take(&mut self.states);
        if !states.is_empty()
            && let Err(e) = app.store.update_key_states(states).await
        {
            tracing::error!(group_id = self.group_id, error = %e, "saving validation results failed");
        }
        if std::mem::take(&mut self.ring_changed) {
            let mut model = app.model.lock().await;
            model.touch_group(self.group_id);
            app.publish(&mut model).await;
        }
    }
}

/// The manual validation task: validates `keys`, reporting progress, and finishes with v1's
/// `{total_keys, valid_keys, invalid_keys}`.
pub async fn run_task(app: Arc<App>, plan: Plan, keys: Vec<KeySlot>, task: TaskHandle) {
    let total = keys.len();
    let outcomes = run(&app, &plan, keys, |done| task.progress(done as u64)).await;
    let valid = outcomes.iter().filter(|o| o.valid).count();
    tracing::info!(group = %plan.group_name, total, valid, "manual key validation finished");
    task.finish(json!({"total_keys": total, "valid_keys": valid, "invalid_keys": total - valid}));
}

/// The periodic re-check (v1's CronChecker): at start and every `KEY_VALIDATION_TICK_SECONDS`
/// (300 by default, v1's 5 minutes), for every standard group whose `last_validated_at` is
/// unset or older than its `key_validation_interval_minutes`, validates its invalid keys. A
/// cluster slave leaves this to the master.
pub async fn recheck_loop(app: Arc<App>) {
    if app.config.is_slave {
        return;
    }
    let mut tick = tokio::time::interval(app.config.key_validation_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        recheck_due_groups(&app).await;
    }
}

/// One pass: every due group at once, each with its own workers.
async fn recheck_due_groups(app: &Arc<App>) {
    let groups = match app.store.list_groups().await {
        Ok(groups) => groups,
        Err(e) => {
            tracing::error!(error = %e, "key re-check: cannot list groups");
            return;
        }
    };
    let now = Utc::now();
    let mut jobs = Vec::new();
    {
        let model = app.model.lock().await;
        for row in groups.iter().filter(|g| g.group_type != "aggregate") {
            let Some(plan) = Plan::of(&model, row.id) else {
                continue;
            };
            let age = row
                .last_validated_at
                .map(|at| (now - at).to_std().unwrap_or_default());
            if age.is_some_and(|age| age <= plan.interval) {
                continue;
            }
            let invalid: Vec<KeySlot> = model
                .keys
                .get(&row.id)
                .into_iter()
                .flatten()
                .filter(|slot| !slot.is_active())
                .cloned()
                .collect();
            jobs.push((plan, invalid));
        }
    }
    let running: Vec<_> = jobs
        .into_iter()
        .map(|(plan, keys)| tokio::spawn(recheck_group(app.clone(), plan, keys)))
        .collect();
    for job in running {
        let _ = job.await;
    }
}

/// Re-checks one group's invalid keys, then stamps `last_validated_at`.
async fn recheck_group(app: Arc<App>, plan: Plan, invalid: Vec<KeySlot>) {
    let checked = invalid.len();
    let restored = if invalid.is_empty() {
        0
    } else {
        let outcomes = run(&app, &plan, invalid, |_| {}).await;
        outcomes.iter().filter(|o| o.valid).count()
    };
    let now = Utc::now();
    if let Err(e) = app.store.set_group_last_validated(plan.group_id, now).await {
        tracing::error!(group = %plan.group_name, error = %e, "key re-check: cannot save last_validated_at");
    }
    if let Some(row) = app.model.lock().await.groups.get_mut(&plan.group_id) {
        row.last_validated_at = Some(now);
    }
    if checked > 0 {
        tracing::info!(group = %plan.group_name, checked, restored, "invalid keys re-checked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(threshold: u64) -> Plan {
        Plan {
            group_id: 1,
            group_name: "g".into(),
            threshold,
            concurrency: 1,
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(60),
            test_model: None,
        }
    }

    fn outcome(valid: bool, counted: bool) -> Outcome {
        Outcome {
            valid,
            error: String::new(),
            counted,
        }
    }

    fn slot(status: KeyStatus, failures: u64) -> KeySlot {
        KeySlot::new(7, "sk-x", status, failures)
    }

    #[test]
    fn success_restores_and_resets() {
        let mut applier = Applier::new(&plan(3));
        let key = slot(KeyStatus::Invalid, 3);
        applier.apply(&key, &outcome(true, false));
        assert!(key.is_active() && key.failure_count() == 0);
        assert!(applier.ring_changed);
        assert_eq!(applier.states[0].status, "active");
        let mut applier = Applier::new(&plan(3));
        applier.apply(&slot(KeyStatus::Active, 0), &outcome(true, false));
        assert!(applier.states.is_empty(), "a healthy key is not rewritten");
    }

    #[test]
    fn counted_failure_of_an_active_key_adds_one_and_blacklists_at_the_threshold() {
        let mut applier = Applier::new(&plan(2));
        let key = slot(KeyStatus::Active, 0);
        applier.apply(&key, &outcome(false, true));
        assert_eq!((key.failure_count(), key.is_active()), (1, true));
        assert!(!applier.ring_changed);
        applier.apply(&key, &outcome(false, true));
        assert_eq!((key.failure_count(), key.is_active()), (2, false));
        assert!(applier.ring_changed);
        assert_eq!(applier.states[1].status, "invalid");
        applier.apply(&key, &outcome(false, true));
        assert_eq!(
            key.failure_count(),
            2,
            "an invalid key's failure is not counted"
        );
        let key = slot(KeyStatus::Active, 0);
        applier.apply(&key, &outcome(false, false));
        assert_eq!(
            key.failure_count(),
            0,
            "uncounted errors leave the key alone"
        );
    }

    #[test]
    fn uncounted_upstream_errors_and_missing_verdicts() {
        let quota = engine::validation::Verdict {
            valid: false,
            status: 429,
            error: "[status 429] Resource has been exhausted".into(),
        };
        assert!(!Outcome::from_bridge(Ok(quota)).counted);
        let bad = engine::validation::Verdict {
            valid: false,
            status: 401,
            error: "[status 401] bad key".into(),
        };
        assert!(Outcome::from_bridge(Ok(bad)).counted);
        let none = Outcome::from_bridge(Err("refused".into()));
        assert!(!none.counted && none.error.contains("refused"));
    }
}
