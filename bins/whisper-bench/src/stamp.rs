//! The stamp every bench message carries in its text: who sent it, its
//! sequence number, and when it was sent.
//!
//! The server relays the text untouched, so receivers learn per-sender
//! order and latency from the text alone, without trusting usernames
//! (several connections may share one user). Times are nanoseconds of
//! `CLOCK_MONOTONIC` ([`now_ns`]): one clock for every task of this process
//! and for every process on the machine, so a sender and receivers need no
//! clock agreement even when `conns --processes` puts them in different
//! processes.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

/// An [`Instant`] and the [`now_ns`] reading taken with it, to place other
/// instants on the same scale ([`to_ns`]).
struct Anchor {
    instant: Instant,
    ns: u64,
}

/// Taken the first time an instant is converted.
static ANCHOR: LazyLock<Anchor> = LazyLock::new(|| Anchor {
    instant: Instant::now(),
    ns: now_ns(),
});

/// Nanoseconds of `CLOCK_MONOTONIC` (since boot, suspends excluded): the
/// same reading in every process, so times taken by different processes
/// can be subtracted.
pub fn now_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// `instant` on the [`now_ns`] scale (for timers and deadlines, which tokio
/// gives as instants). Exact up to the few nanoseconds between the two
/// readings of [`ANCHOR`]: on Linux, `Instant` reads `CLOCK_MONOTONIC` too.
pub fn to_ns(instant: Instant) -> u64 {
    let anchor = &*ANCHOR;
    match instant.checked_duration_since(anchor.instant) {
        Some(after) => anchor.ns.saturating_add(nanos(after)),
        None => anchor.ns.saturating_sub(nanos(anchor.instant - instant)),
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What a bench message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's number, unique in the run.
    pub sender: u32,
    /// 0, 1, 2, ... per sender, in sending order.
    pub seq: u64,
    /// When it was sent (or, in an open loop, scheduled), per [`now_ns`].
    pub sent_ns: u64,
}

impl Stamp {
    /// The message text: `"<sender> <seq> <sent_ns> "` padded with `x` to
    /// `bytes` (longer when `bytes` is smaller than the stamp itself).
    pub fn to_text(self, bytes: usize) -> String {
        let mut text = String::with_capacity(bytes.max(48));
        // Writing to a String cannot fail.
        let _ = write!(text, "{} {} {} ", self.sender, self.seq, self.sent_ns);
        let pad = bytes.saturating_sub(text.len());
        text.extend(std::iter::repeat_n('x', pad));
        text
    }

    /// Reads the stamp at the start of a message text; `None` for text that
    /// no bench wrote. Only the leading digits are looked at, so the text
    /// may still be JSON-escaped after them.
    pub fn parse(text: &[u8]) -> Option<Stamp> {
        let (sender, rest) = leading_number(text)?;
        let (seq, rest) = leading_number(rest)?;
        let (sent_ns, _) = leading_number(rest)?;
        Some(Stamp {
            sender: u32::try_from(sender).ok()?,
            seq,
            sent_ns,
        })
    }
}

/// The decimal number at the start of `bytes` and what follows its
/// separating space; without the generality of `str::parse`, since this
/// runs for every delivered message. At most 19 digits, so it cannot
/// overflow.
fn leading_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes
        .iter()
        .take(20)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |value, &digit| value * 10 + u64::from(digit - b'0'));
    match bytes.get(digits) {
        None => Some((value, &[])),
        Some(b' ') => Some((value, &bytes[digits + 1..])),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_from_its_padded_text() {
        let stamp = Stamp {
            sender: 7,
            seq: 123,
            sent_ns: 98_765_432_100,
        };
        let text = stamp.to_text(100);
        assert_eq!(text.len(), 100);
        assert!(text.starts_with("7 123 98765432100 xx"));
        assert_eq!(Stamp::parse(text.as_bytes()), Some(stamp));
    }

    #[test]
    fn short_lengths_keep_the_whole_stamp() {
        let stamp = Stamp {
            sender: 1,
            seq: 2,
            sent_ns: 3,
        };
        assert_eq!(stamp.to_text(1), "1 2 3 ");
        assert_eq!(Stamp::parse(b"1 2 3 "), Some(stamp));
    }

    #[test]
    fn instants_and_readings_share_one_scale() {
        let before = now_ns();
        let converted = to_ns(Instant::now());
        let after = now_ns();
        // The anchor's two readings may be a few microseconds apart on a
        // busy machine; nothing near a millisecond.
        assert!(converted + 1_000_000 >= before, "{before} {converted}");
        assert!(converted <= after + 1_000_000, "{converted} {after}");
        let later = Instant::now() + Duration::from_secs(2);
        assert_eq!(
            to_ns(later) - to_ns(later - Duration::from_secs(1)),
            1_000_000_000
        );
    }

    #[test]
    fn foreign_text_has_no_stamp() {
        for text in [
            "",
            "hello",
            "1 2",
            "1 x 3 ",
            "-1 2 3 ",
            "99999999999 1 1 ",
            "1 2 3x",
            "1 2 99999999999999999999",
        ] {
            assert_eq!(Stamp::parse(text.as_bytes()), None, "{text:?}");
        }
    }
}
