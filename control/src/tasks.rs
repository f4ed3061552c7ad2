//! Background tasks (v1 §3.3): key import, key delete and key validation run off the request,
//! one at a time system-wide, with `processed/total` progress the console polls at
//! `/api/tasks/status`. Starting is check-and-set under one lock, so two requests can never
//! both start a task (v1's check-then-set could).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// How long a finished task's record is still reported (v1: the record's TTL).
const RECORD_TTL: Duration = Duration::from_secs(60 * 60);

// The variants spell v1's task types (KEY_VALIDATION, KEY_IMPORT, KEY_DELETE).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    KeyValidation,
    KeyImport,
    KeyDelete,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::KeyValidation => "KEY_VALIDATION",
            TaskKind::KeyImport => "KEY_IMPORT",
            TaskKind::KeyDelete => "KEY_DELETE",
        }
    }
}

#[derive(Debug, Clone)]
struct TaskRecord {
    kind: TaskKind,
    group_name: String,
    processed: u64,
    total: u64,
    running: bool,
    result: Option<Value>,
    error: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

/// The one task slot.
#[derive(Default)]
pub struct Tasks {
    current: Mutex<Option<TaskRecord>>,
}

/// Why a task could not start: another one runs (v1: 409 `TASK_IN_PROGRESS`).
#[derive(Debug)]
pub struct TaskBusy {
    pub running: &'static str,
}

impl std::fmt::Display for TaskBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {} task is already running", self.running)
    }
}

/// The running task's handle: report progress, then finish or fail. Dropping it without
/// finishing marks the task failed, so a panicking or cancelled task never blocks the slot.
pub struct TaskHandle {
    tasks: Arc<Tasks>,
    done: bool,
}

impl Tasks {
    /// Starts a task if none is running.
    pub fn try_start(
        self: &Arc<Self>,
        kind: TaskKind,
        group_name: &str,
        total: u64,
    ) -> Result<TaskHandle, TaskBusy> {
        let mut current = lock(&self.current);
        if let Some(task) = current.as_ref().filter(|t| t.running) {
            return Err(TaskBusy {
                running: task.kind.name(),
            });
        }
        *current = Some(TaskRecord {
            kind,
            group_name: group_name.to_string(),
            processed: 0,
            total,
            running: true,
            result: None,
            error: None,
            started_at: Utc::now(),
            finished_at: None,
        });
        Ok(TaskHandle {
            tasks: self.clone(),
            done: false,
        })
    }

    pub fn is_running(&self) -> bool {
        lock(&self.current).as_ref().is_some_and(|t| t.running)
    }

    /// v1's TaskStatus JSON.
    pub fn status(&self) -> Value {
        let current = lock(&self.current);
        let Some(task) = current.as_ref().filter(|t| {
            t.running
                || t.finished_at
                    .is_some_and(|f| (Utc::now() - f).to_std().unwrap_or_default() < RECORD_TTL)
        }) else {
            return json!({"is_running": false});
        };
        let end = task.finished_at.unwrap_or_else(Utc::now);
        let duration = (end - task.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        let mut status = json!({
            "task_type": task.kind.name(),
            "is_running": task.running,
            "group_name": task.group_name,
            "processed": task.processed,
            "total": task.total,
            "started_at": task.started_at.to_rfc3339(),
            "duration_seconds": duration,
        });
        if let Some(result) = &task.result {
            status["result"] = result.clone();
        }
        if let Some(error) = &task.error {
            status["error"] = json!(error);
        }
        if let Some(finished) = task.finished_at {
            status["finished_at"] = json!(finished.to_rfc3339());
        }
        status
    }
}

impl TaskHandle {
    pub fn progress(&self, processed: u64) {
        if let Some(t) = lock(&self.tasks.current).as_mut() {
            t.processed = processed;
        }
    }

    pub fn finish(mut self, result: Value) {
        self.end(Some(result), None);
    }

    pub fn fail(mut self, error: String) {
        self.end(None, Some(error));
    }

    fn end(&mut self, result: Option<Value>, error: Option<String>) {
        self.done = true;
        if let Some(t) = lock(&self.tasks.current).as_mut() {
            t.running = false;
            t.result = result;
            t.error = error;
            t.finished_at = Some(Utc::now());
        }
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if !self.done {
            self.end(None, Some("task stopped before it finished".into()));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_task_at_a_time_with_progress_and_result() {
        let tasks = Arc::new(Tasks::default());
        assert_eq!(tasks.status(), json!({"is_running": false}));
        let handle = tasks.try_start(TaskKind::KeyImport, "g", 10).expect("free");
        assert_eq!(
            tasks
                .try_start(TaskKind::KeyDelete, "g", 1)
                .err()
                .map(|b| b.running),
            Some("KEY_IMPORT")
        );
        handle.progress(4);
        let status = tasks.status();
        assert_eq!(
            (status["is_running"].clone(), status["processed"].clone()),
            (json!(true), json!(4))
        );
        handle.finish(json!({"added_count": 9, "ignored_count": 1}));
        let status = tasks.status();
        assert_eq!(status["is_running"], false);
        assert_eq!(status["result"]["added_count"], 9);
        assert!(status["finished_at"].is_string());
        assert!(
            tasks.try_start(TaskKind::KeyValidation, "h", 1).is_ok(),
            "free again"
        );
    }

    #[test]
    fn a_dropped_handle_frees_the_slot_as_failed() {
        let tasks = Arc::new(Tasks::default());
        drop(tasks.try_start(TaskKind::KeyImport, "g", 1).expect("free"));
        assert_eq!(tasks.status()["is_running"], false);
        assert!(tasks.status()["error"].is_string());
    }
}
