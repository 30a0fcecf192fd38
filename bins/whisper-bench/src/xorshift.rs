//! A fast, non-cryptographic random number generator (xorshift64), for what
//! a load generator needs to vary but nobody needs to be unable to predict:
//! WebSocket masking keys and which page of history to ask for.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stamp::now_ns;

/// One xorshift64 stream; each owner has its own, so drawing a number takes
/// no lock and no atomic.
#[derive(Debug, Clone)]
pub struct Xorshift {
    state: u64,
}

impl Xorshift {
    /// A stream unlike any other this process made: the clock mixed with a
    /// process-wide counter (never zero, which xorshift cannot leave).
    pub fn new() -> Xorshift {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let count = NEXT.fetch_add(1, Ordering::Relaxed);
        Xorshift {
            state: (now_ns() ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut state = self.state;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        self.state = state;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_streams_differ() {
        let (mut a, mut b) = (Xorshift::new(), Xorshift::new());
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
