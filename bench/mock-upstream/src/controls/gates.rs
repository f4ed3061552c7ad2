//! Named gates that hold responses (`x-mock-gate`) until the test opens them.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// Gates stay open once opened, so opening before the request arrives lets it straight through.
#[derive(Default)]
pub(crate) struct Gates {
    open: Mutex<HashSet<String>>,
    opened: Notify,
}

impl Gates {
    pub(crate) fn open(&self, name: &str) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned());
        self.opened.notify_waiters();
    }

    fn is_open(&self, name: &str) -> bool {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }

    pub(crate) async fn wait(&self, name: &str) {
        loop {
            // Registered before the check, so an open_gate in between still wakes us.
            let mut opened = pin!(self.opened.notified());
            opened.as_mut().enable();
            if self.is_open(name) {
                return;
            }
            opened.await;
        }
    }
}
