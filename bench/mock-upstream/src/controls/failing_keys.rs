//! Upstream keys that a test has declared broken: requests carrying them get a fixed error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

/// The answer for a failing key.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    pub(crate) body: String,
}

#[derive(Default)]
pub(crate) struct FailingKeys {
    by_key: RwLock<HashMap<String, Failure>>,
    /// Lets the common case (no failing keys) skip the lock on every request. Relaxed: a key
    /// registered by the test is visible to requests the test sends afterwards through the
    /// socket, which synchronizes anyway; the map itself is read under the lock.
    any: AtomicBool,
}

impl FailingKeys {
    pub(crate) fn insert(&self, key: &str, status: u16, body: &str) {
        let failure = Failure {
            status,
            body: body.to_owned(),
        };
        let mut by_key = self.by_key.write().unwrap_or_else(PoisonError::into_inner);
        by_key.insert(key.to_owned(), failure);
        self.any.store(true, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut by_key = self.by_key.write().unwrap_or_else(PoisonError::into_inner);
        by_key.remove(key);
        self.any.store(!by_key.is_empty(), Ordering::Relaxed);
    }

    /// Runs `answer` on the failure registered for `key`, if any, under the read lock.
    pub(crate) fn with_failure<R>(
        &self,
        key: &str,
        answer: impl FnOnce(&Failure) -> R,
    ) -> Option<R> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let by_key = self.by_key.read().unwrap_or_else(PoisonError::into_inner);
        by_key.get(key).map(answer)
    }
}
