//! The stamp every bench message carries in its text: who sent it, its
//! sequence number, and when it was sent.
//!
//! The server relays the text untouched, so receivers learn per-sender
//! order and latency from the text alone, without trusting usernames
//! (several connections may share one user). Times are nanoseconds on one
//! monotonic clock shared by every task of this process ([`now_ns`]), so
//! sender and receivers need no clock agreement.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Instant;

/// The zero of [`now_ns`]: the first time anything asked for the time.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since this process's [`EPOCH`], on a monotonic clock.
pub fn now_ns() -> u64 {
    to_ns(Instant::now())
}

/// Nanoseconds from [`EPOCH`] to `instant` (0 for instants before it).
pub fn to_ns(instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX)
}

/// Fixes the epoch now, so that later readings are small and positive.
pub fn start_clock() {
    LazyLock::force(&EPOCH);
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
