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
    /// `api_keys.key_hash`, carried into log records.
    pub hash: KeyHash,
    /// `KeyStatus` as u8: one byte, read on every pick.
    status: AtomicU8,
    /// Cumulative counted failures since the last reset (v1 semantics: success does not reset).
    failures: AtomicU64,
}

/// A key's `key_hash` as stored. v1 writes 64 lowercase hex digits (SHA-256, or HMAC-SHA256
/// with `ENCRYPTION_KEY`); those are kept as their 32 bytes inline, which with a million keys
/// is ~80 MB less than a string each. Anything else is kept as given.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum KeyHash {
    Sha256([u8; 32]),
    Text(Box<str>),
}

impl KeyHash {
    pub fn new(text: &str) -> Self {
        // Lowercase only: an uppercase hash kept as bytes would be written back changed.
        let mut bytes = [0u8; 32];
        let lowercase = !text.bytes().any(|b| b.is_ascii_uppercase());
        if lowercase && hex::decode_to_slice(text, &mut bytes).is_ok() {
            KeyHash::Sha256(bytes)
        } else {
            KeyHash::Text(text.into())
        }
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyHash::Sha256(bytes) => {
                // Every log row writes one: into a buffer, not 32 formatter calls.
                let mut text = [0u8; 64];
                let text = hex::encode_to_slice(bytes, &mut text)
                    .ok()
                    .and_then(|()| std::str::from_utf8(&text).ok())
                    .unwrap_or_default();
                f.write_str(text)
            }
            KeyHash::Text(text) => f.write_str(text),
        }
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({self})")
    }
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
            hash: KeyHash::new(hash),
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

    #[test]
    fn v1_hashes_are_kept_as_bytes_and_written_back_the_same() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let hash = KeyHash::new(hex);
        assert!(matches!(hash, KeyHash::Sha256(_)));
        assert_eq!(hash.to_string(), hex);
        assert_eq!(hash, KeyHash::new(hex));
        for other in [
            "h",
            "",
            &hex.to_uppercase(),
            &hex[..63],
            &format!("{}g", &hex[..63]),
        ] {
            let kept = KeyHash::new(other);
            assert!(matches!(kept, KeyHash::Text(_)), "{other}");
            assert_eq!(kept.to_string(), other);
        }
    }

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
