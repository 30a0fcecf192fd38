//! The measured part of a run: after a warm-up, for a set time or until
//! the scenario has what it came for, in [`now_ns`](crate::stamp::now_ns)
//! time so that tasks compare it with their own clock readings.

use std::time::{Duration, Instant};

use crate::stamp::to_ns;

/// When the load started and which part of it is measured.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When the load started.
    pub start: Instant,
    /// The first measured instant: the end of the warm-up.
    pub from_ns: u64,
    /// The end of the measured part, excluded; `u64::MAX` when the run
    /// ends on a count rather than a time.
    pub until_ns: u64,
}

impl Window {
    /// A load starting at `start`, measured after `warmup` for `duration`
    /// (`None`: until the run stops).
    pub fn new(start: Instant, warmup: Duration, duration: Option<Duration>) -> Window {
        let from_ns = to_ns(start + warmup);
        let until_ns = duration.map_or(u64::MAX, |duration| {
            from_ns.saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
        });
        Window {
            start,
            from_ns,
            until_ns,
        }
    }

    /// Whether `ns` falls in the measured part.
    pub fn contains(&self, ns: u64) -> bool {
        (self.from_ns..self.until_ns).contains(&ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warmup_is_left_out_and_an_open_end_never_comes() {
        let start = Instant::now();
        let timed = Window::new(start, Duration::from_secs(1), Some(Duration::from_secs(2)));
        assert!(!timed.contains(to_ns(start)));
        assert!(timed.contains(to_ns(start + Duration::from_millis(1500))));
        assert!(!timed.contains(to_ns(start + Duration::from_secs(3))));
        let open = Window::new(start, Duration::ZERO, None);
        assert!(open.contains(to_ns(start + Duration::from_secs(86_400))));
    }
}
