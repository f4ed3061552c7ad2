//! Upstream keys: the live state of each key (`KeySlot`) and the per-group rotation (`KeyRing`).
//!
//! A `KeySlot` is shared by every shard and every snapshot that contains the key, so its state
//! is atomics only. The control plane carries a slot over from one snapshot to the next while the
//! key is unchanged; the shards never wait for it to learn that a key failed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use triomphe::ThinArc;

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

/// One upstream key and its live health: a shared handle, cloned by reference count.
///
/// A million keys are a million slots, so a slot is one allocation of ~90 bytes for a
/// 51-byte key: the count, the id, the state word and the key itself behind a thin pointer.
/// The key's hash is not kept (the log writer derives it, as every lookup by key does), nor its
/// group (whoever holds a slot knows it).
#[derive(Clone)]
pub struct KeySlot(ThinArc<SlotHeader, u8>);

struct SlotHeader {
    id: i64,
    /// The cumulative counted failures since the last reset (v1 semantics: success does not
    /// reset) in the low bits, [`INVALID`] when the key is invalid: one word, so a failure
    /// and the blacklisting it causes are one atomic step.
    state: AtomicU64,
}

const INVALID: u64 = 1 << 63;

/// What a counted failure did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    pub failure_count: u64,
    /// True when this failure crossed the threshold and made the key invalid.
    pub blacklisted: bool,
}

impl KeySlot {
    /// `value` is the decrypted key sent upstream.
    pub fn new(id: i64, value: &str, status: KeyStatus, failures: u64) -> Self {
        let header = SlotHeader {
            id,
            state: AtomicU64::new(state_word(status, failures)),
        };
        Self(ThinArc::from_header_and_slice(header, value.as_bytes()))
    }

    pub fn id(&self) -> i64 {
        self.0.header.header.id
    }

    /// The decrypted key sent upstream.
    pub fn value(&self) -> &str {
        // SAFETY: the bytes were copied from a `&str` in `new` and are never written since.
        unsafe { std::str::from_utf8_unchecked(&self.0.slice) }
    }

    fn state(&self) -> &AtomicU64 {
        &self.0.header.header.state
    }

    pub fn status(&self) -> KeyStatus {
        if self.state().load(Ordering::Relaxed) & INVALID == 0 {
            KeyStatus::Active
        } else {
            KeyStatus::Invalid
        }
    }

    pub fn is_active(&self) -> bool {
        self.status() == KeyStatus::Active
    }

    pub fn failure_count(&self) -> u64 {
        self.state().load(Ordering::Relaxed) & !INVALID
    }

    /// Sets status and counter, e.g. after a restore or a successful validation.
    pub fn reset(&self, status: KeyStatus, failures: u64) {
        self.state()
            .store(state_word(status, failures), Ordering::Relaxed);
    }

    /// Counts one failure; at `threshold` (> 0) the key turns invalid. Exactly one caller sees
    /// `blacklisted == true`, however many shards fail the key at once.
    pub fn record_failure(&self, threshold: u64) -> FailureOutcome {
        let mut current = self.state().load(Ordering::Relaxed);
        loop {
            if current & INVALID != 0 {
                return FailureOutcome {
                    failure_count: current & !INVALID,
                    blacklisted: false,
                };
            }
            let failure_count = (current + 1).min(!INVALID);
            let blacklisted = threshold > 0 && failure_count >= threshold;
            let next = failure_count | if blacklisted { INVALID } else { 0 };
            match self.state().compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return FailureOutcome {
                        failure_count,
                        blacklisted,
                    };
                }
                Err(now) => current = now,
            }
        }
    }
}

fn state_word(status: KeyStatus, failures: u64) -> u64 {
    let flag = match status {
        KeyStatus::Active => 0,
        KeyStatus::Invalid => INVALID,
    };
    failures.min(!INVALID) | flag
}

impl std::fmt::Debug for KeySlot {
    /// The key masked, never in full.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySlot")
            .field("id", &self.id())
            .field("value", &crate::forward::mask_key(self.value()))
            .field("status", &self.status())
            .field("failures", &self.failure_count())
            .finish()
    }
}

/// Round-robin over a group's keys: one atomic add per pick, no lock, the same cost for ten
/// keys or a million. Keys that turned invalid since the ring was built are skipped until the
/// control plane builds a ring without them.
#[derive(Debug, Default)]
pub struct KeyRing {
    slots: Box<[KeySlot]>,
    next: AtomicUsize,
}

impl KeyRing {
    /// A ring over the active keys among `slots`, in the given order.
    pub fn new(slots: impl IntoIterator<Item = KeySlot>) -> Self {
        let slots: Box<[KeySlot]> = slots.into_iter().filter(|s| s.is_active()).collect();
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
    pub fn pick(&self) -> Option<&KeySlot> {
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

    pub fn slots(&self) -> &[KeySlot] {
        &self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: i64) -> KeySlot {
        KeySlot::new(id, &format!("k{id}"), KeyStatus::Active, 0)
    }

    #[test]
    fn a_slot_keeps_its_key_and_state_and_never_shows_the_key() {
        let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH";
        let s = KeySlot::new(42, key, KeyStatus::Invalid, 7);
        assert_eq!((s.id(), s.value()), (42, key));
        assert_eq!((s.status(), s.failure_count()), (KeyStatus::Invalid, 7));
        let shared = s.clone();
        shared.reset(KeyStatus::Active, 0);
        assert_eq!((s.status(), s.failure_count()), (KeyStatus::Active, 0));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains(key) && shown.contains("sk-p****EFGH"),
            "{shown}"
        );
    }

    #[test]
    fn rotates_in_order_and_skips_invalid() {
        let ring = KeyRing::new([slot(1), slot(2), slot(3)]);
        let picks: Vec<i64> = (0..4).map(|_| ring.pick().unwrap().id()).collect();
        assert_eq!(picks, [1, 2, 3, 1]);
        ring.slots()[1].reset(KeyStatus::Invalid, 3);
        let picks: Vec<i64> = (0..4).map(|_| ring.pick().unwrap().id()).collect();
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
