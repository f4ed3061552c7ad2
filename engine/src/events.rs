//! What shards tell the control plane: one record per proxy attempt and every change of a key's
//! health. A request never waits for the control plane: past `capacity` queued events a record
//! is counted as dropped instead. The queue is an unbounded channel held to that length, so its
//! memory follows what is queued (a bounded one allocates every slot up front).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;

/// One proxy attempt, the fields of v1's `request_logs` row (spec §1.5).
#[derive(Debug, Clone)]
pub struct AttemptLog {
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub group_id: i64,
    pub group_name: Arc<str>,
    pub parent_group_id: i64,
    pub parent_group_name: Option<Arc<str>>,
    /// The key the attempt used (its hash and value go into the row; the writer stores the
    /// value the way `api_keys` does). Shared, not copied.
    pub key: Option<crate::keys::KeySlot>,
    pub model: String,
    pub is_success: bool,
    pub source_ip: String,
    pub status_code: u16,
    pub request_path: String,
    pub duration_ms: u64,
    pub error_message: String,
    pub user_agent: String,
    pub is_final: bool,
    pub upstream_addr: String,
    pub is_stream: bool,
    pub request_body: String,
    pub request_id: String,
}

/// A key's health changed on the request path.
#[derive(Debug, Clone, Copy)]
pub struct KeyHealth {
    pub key_id: i64,
    pub group_id: i64,
    pub failure_count: u64,
    /// True when this change made the key invalid.
    pub blacklisted: bool,
    /// The key's status after the change.
    pub active: bool,
}

#[derive(Debug, Clone)]
pub enum Event {
    Attempt(Box<AttemptLog>),
    Key(KeyHealth),
}

/// The shards' end of the events channel.
#[derive(Clone)]
pub struct EventSink {
    tx: Sender<Event>,
    capacity: usize,
    /// Rung after a key's health changed: the writer stores that at once, while attempt
    /// records wait for its next tick (waking it per record would cost a syscall each).
    wake: Sender<()>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// `tx` should be unbounded; `capacity` is the bound this sink keeps it to. `wake` should
    /// be bounded (one pending ring is enough).
    pub fn new(tx: Sender<Event>, capacity: usize, wake: Sender<()>) -> Self {
        Self {
            tx,
            capacity,
            wake,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Never blocks; a full or closed channel counts the event as dropped.
    pub fn emit(&self, event: Event) {
        let urgent = matches!(event, Event::Key(_));
        if self.tx.len() >= self.capacity || self.tx.send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else if urgent {
            let _ = self.wake.try_send(());
        }
    }

    /// Events dropped since start because the control plane fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
