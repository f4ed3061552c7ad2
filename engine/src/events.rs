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
    pub is_success: bool,
    pub status_code: u16,
    pub duration_ms: u64,
    pub is_final: bool,
    pub is_stream: bool,
    /// The text columns: model, source IP, request path, error message, user agent, upstream
    /// address, request body and request id.
    pub text: AttemptText,
}

/// The text columns of an attempt's row, in [`TextField`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Model,
    SourceIp,
    RequestPath,
    ErrorMessage,
    UserAgent,
    UpstreamAddr,
    RequestBody,
    RequestId,
}

const TEXT_FIELDS: usize = TextField::RequestId as usize + 1;

/// An attempt's text columns end to end in one allocation. A record is made on a shard and
/// freed on the log writer's thread: as eight strings it was eight allocations on the request
/// path and eight frees across threads (each handed back to the shard's allocator to collect).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptText {
    text: String,
    /// Where each field ends in `text`.
    ends: [u32; TEXT_FIELDS],
}

/// One field's text for [`AttemptText::new`]: the concatenation of the parts, cut to at most
/// the limit (bytes, on a character boundary).
pub type FieldText<'a> = (&'a [&'a str], usize);

impl AttemptText {
    /// The eight fields, in [`TextField`] order, in one allocation of the size they take.
    pub fn new(fields: [FieldText<'_>; TEXT_FIELDS]) -> AttemptText {
        let length = |&(parts, limit): &FieldText<'_>| {
            parts.iter().map(|p| p.len()).sum::<usize>().min(limit)
        };
        let mut text = String::with_capacity(fields.iter().map(length).sum());
        let mut ends = [0u32; TEXT_FIELDS];
        for ((parts, limit), end) in fields.into_iter().zip(&mut ends) {
            let start = text.len();
            for part in parts {
                text.push_str(part);
            }
            if text.len() - start > limit {
                let cut = text.floor_char_boundary(start + limit);
                text.truncate(cut);
            }
            // Fields are bounded far below 4 GiB (the longest is a 65,000-byte body).
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        AttemptText { text, ends }
    }

    /// The text of `field`.
    pub fn get(&self, field: TextField) -> &str {
        let i = field as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text
            .get(start..self.ends[i] as usize)
            .unwrap_or_default()
    }
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

#[cfg(test)]
mod tests {
    use super::{AttemptText, TextField};

    #[test]
    fn text_fields_come_back_as_given_and_cut_on_character_boundaries() {
        let text = AttemptText::new([
            (&["gpt-4o"], 255),
            (&[], 64),
            (&["/v1/chat", "?", "a=1"], 500),
            (&["héllo"], 2),
            (&["ua"], 10),
            (&[], 500),
            (&[], 65_000),
            (&[], 64),
        ]);
        assert_eq!(text.get(TextField::Model), "gpt-4o");
        assert_eq!(text.get(TextField::SourceIp), "");
        assert_eq!(text.get(TextField::RequestPath), "/v1/chat?a=1");
        assert_eq!(text.get(TextField::ErrorMessage), "h");
        assert_eq!(text.get(TextField::RequestId), "", "empty");
        assert_eq!(text.get(TextField::UserAgent), "ua");
        assert_eq!(text.get(TextField::RequestPath), "/v1/chat?a=1");
        assert_eq!(AttemptText::default().get(TextField::RequestBody), "");
    }
}
