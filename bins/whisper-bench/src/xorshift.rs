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

    /// A number in `0..bound` (0 when `bound` is 0), by multiplying rather
    /// than by `%`, so no value is favoured by more than 2^-64.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_below_the_bound_and_cover_it() {
        let mut random = Xorshift::new();
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            let drawn = random.below(7);
            seen[drawn as usize] += 1;
        }
        assert!(seen.iter().all(|&count| count > 700), "{seen:?}");
        assert_eq!(random.below(0), 0);
        assert_eq!(random.below(1), 0);
    }

    #[test]
    fn two_streams_differ() {
        let (mut a, mut b) = (Xorshift::new(), Xorshift::new());
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
