//! Upstream keys: the live state of each key (`KeySlot`) and the per-group rotation (`KeyRing`).
//!
//! A `KeySlot` is shared by every shard and every snapshot that contains the key, so its state
//! is atomics only. The control plane carries a slot over from one snapshot to the next while the
//! key is unchanged; the shards never wait for it to learn that a key failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Key status as stored in `api_keys.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyStatus {
    Active = 0,
    Invalid = 1,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Invalid => "invalid",
        }
    }

    pub fn parse(text: &str) -> Self {
        if text == "invalid" {
            KeyStatus::Invalid
        } else {
            KeyStatus::Active
        }
    }
}

/// One upstream key and its live health.
#[derive(Debug)]
pub struct KeySlot {
    pub id: i64,
    pub group_id: i64,
    /// The decrypted key sent upstream.
    pub value: Box<str>,
    /// `api_keys.key_hash`, carried into log records so the writer can match the key.
    pub hash: Arc<str>,
    /// `KeyStatus` as u8: one byte, read on every pick.
    status: AtomicU8,
    /// Cumulative counted failures since the last reset (v1 semantics: success does not reset).
    failures: AtomicU64,
}

/// What a counted failure did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    pub failure_count: u64,
    /// True when this failure crossed the threshold and made the key invalid.
    pub blacklisted: bool,
}

impl KeySlot {
    pub fn new(
        id: i64,
        group_id: i64,
        value: &str,
        hash: &str,
        status: KeyStatus,
        failures: u64,
    ) -> Self {
        Self {
            id,
            group_id,
            value: value.into(),
            hash: hash.into(),
            status: AtomicU8::new(status as u8),
            failures: AtomicU64::new(failures),
        }
    }

    pub fn status(&self) -> KeyStatus {
        if self.status.load(Ordering::Relaxed) == KeyStatus::Active as u8 {
            KeyStatus::Active
        } else {
            KeyStatus::Invalid
        }
    }

    pub fn is_active(&self) -> bool {
        self.status() == KeyStatus::Active
    }

    pub fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Sets status and counter, e.g. after a restore or a successful validation.
    pub fn reset(&self, status: KeyStatus, failures: u64) {
        self.failures.store(failures, Ordering::Relaxed);
        self.status.store(status as u8, Ordering::Relaxed);
    }

    /// Counts one failure; at `threshold` (> 0) the key turns invalid. Exactly one caller sees
    /// `blacklisted == true`, however many shards fail the key at once.
    pub fn record_failure(&self, threshold: u64) -> FailureOutcome {
        if !self.is_active() {
            return FailureOutcome {
                failure_count: self.failure_count(),
                blacklisted: false,
            };
        }
        let failure_count = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let blacklisted = threshold > 0
            && failure_count >= threshold
            && self
                .status
                .compare_exchange(
                    KeyStatus::Active as u8,
                    KeyStatus::Invalid as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        FailureOutcome {
            failure_count,
            blacklisted,
        }
    }
}

/// Round-robin over a group's keys: one atomic add per pick, no lock, the same cost for ten
/// keys or a million. Keys that turned invalid since the ring was built are skipped until the
/// control plane builds a ring without them.
#[derive(Debug, Default)]
pub struct KeyRing {
    slots: Box<[Arc<KeySlot>]>,
    next: AtomicUsize,
}

impl KeyRing {
    /// A ring over the active keys among `slots`, in the given order.
    pub fn new(slots: impl IntoIterator<Item = Arc<KeySlot>>) -> Self {
        let slots: Box<[Arc<KeySlot>]> = slots.into_iter().filter(|s| s.is_active()).collect();
        Self {
            slots,
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The next active key, or `None` when none is active.
    pub fn pick(&self) -> Option<&Arc<KeySlot>> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|i| &self.slots[start.wrapping_add(i) % len])
            .find(|slot| slot.is_active())
    }

    /// Whether any key of the ring is still active.
    pub fn has_active(&self) -> bool {
        self.slots.iter().any(|s| s.is_active())
    }

    pub fn slots(&self) -> &[Arc<KeySlot>] {
        &self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: i64) -> Arc<KeySlot> {
        Arc::new(KeySlot::new(
            id,
            1,
            &format!("k{id}"),
            "h",
            KeyStatus::Active,
            0,
        ))
    }

    #[test]
    fn rotates_in_order_and_skips_invalid() {
        let ring = KeyRing::new([slot(1), slot(2), slot(3)]);
        let picks: Vec<i64> = (0..4).map(|_| ring.pick().unwrap().id).collect();
        assert_eq!(picks, [1, 2, 3, 1]);
        ring.slots()[1].reset(KeyStatus::Invalid, 3);
        let picks: Vec<i64> = (0..4).map(|_| ring.pick().unwrap().id).collect();
        assert!(!picks.contains(&2), "{picks:?}");
        for s in ring.slots() {
            s.reset(KeyStatus::Invalid, 3);
        }
        assert!(ring.pick().is_none());
    }

    #[test]
    fn threshold_blacklists_once_and_zero_never() {
        let s = slot(1);
        assert_eq!(
            s.record_failure(2),
            FailureOutcome {
                failure_count: 1,
                blacklisted: false
            }
        );
        assert_eq!(
            s.record_failure(2),
            FailureOutcome {
                failure_count: 2,
                blacklisted: true
            }
        );
        assert!(!s.is_active());
        assert!(!s.record_failure(2).blacklisted);
        let s = slot(2);
        for _ in 0..10 {
            assert!(!s.record_failure(0).blacklisted);
        }
        assert!(s.is_active());
        assert_eq!(s.failure_count(), 10);
    }
}
