//! Counting open WebSockets per user, to cap them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use whisper_auth::UserId;

/// Open WebSockets per user on this node.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts {
    open: Mutex<HashMap<UserId, usize>>,
}

/// One counted connection; dropping it (however the connection task ends,
/// panics included) gives the slot back.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    user: UserId,
}

impl ConnectionCounts {
    /// A slot for `user`, or `None` when the user already has `limit`.
    pub fn acquire(self: &Arc<Self>, user: UserId, limit: usize) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(user).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counts: self.clone(),
            user,
        })
    }

    /// Every open connection on this node.
    pub fn total(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_returned() {
        let counts = Arc::new(ConnectionCounts::default());
        let ann = UserId(1);
        let first = counts.acquire(ann, 2).expect("first");
        let second = counts.acquire(ann, 2).expect("second");
        assert!(counts.acquire(ann, 2).is_none());
        assert!(counts.acquire(UserId(2), 2).is_some());
        drop(first);
        assert!(counts.acquire(ann, 2).is_some());
        drop(second);
        assert!(counts.open.lock().expect("lock").is_empty());
    }
}
