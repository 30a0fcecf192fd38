use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Refusal to check a password because too many recent attempts failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("too many failed logins; try again in {retry_after_s} s")]
pub struct Throttled {
    /// Seconds until the oldest counted failure leaves the window.
    pub retry_after_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Username(String),
    Address(IpAddr),
}

/// Failures counted in a fixed window starting at the first one.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed logins per username and per client address, and refuses
/// further attempts past a limit until the window ends.
///
/// Per-username limits stop guessing one account's password from many
/// addresses; per-address limits stop one address from trying many accounts.
/// State is in memory: each node counts its own attempts, which bounds
/// guessing per node without a round trip per login.
#[derive(Debug)]
pub struct LoginThrottle {
    windows: Mutex<HashMap<Key, Window>>,
    per_username: u32,
    per_address: u32,
    window: Duration,
}

impl Default for LoginThrottle {
    /// 5 failures per username and 20 per address in 15 minutes.
    fn default() -> Self {
        LoginThrottle::new(5, 20, Duration::from_secs(15 * 60))
    }
}

impl LoginThrottle {
    /// A throttle with the given limits per `window`.
    pub fn new(per_username: u32, per_address: u32, window: Duration) -> Self {
        LoginThrottle {
            windows: Mutex::new(HashMap::new()),
            per_username,
            per_address,
            window,
        }
    }

    /// Whether an attempt for this username from this address may go ahead.
    pub fn check(&self, username: &str, address: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = [
            (Key::Username(username.to_owned()), self.per_username),
            (Key::Address(address), self.per_address),
        ];
        for (key, limit) in limits {
            if let Some(w) = windows.get(&key) {
                let age = now.duration_since(w.started);
                if age < self.window && w.failures >= limit {
                    let retry_after_s = (self.window - age).as_secs().max(1);
                    return Err(Throttled { retry_after_s });
                }
            }
        }
        Ok(())
    }

    /// Counts a failed attempt against the username and the address.
    pub fn record_failure(&self, username: &str, address: IpAddr) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget finished windows once the table grows, so an attacker
        // spraying usernames cannot grow it without bound.
        if windows.len() > 10_000 {
            windows.retain(|_, w| now.duration_since(w.started) < self.window);
        }
        for key in [Key::Username(username.to_owned()), Key::Address(address)] {
            let w = windows.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(w.started) >= self.window {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }

    /// Clears the username's count after a successful login.
    pub fn record_success(&self, username: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.remove(&Key::Username(username.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn username_limit_applies_from_any_address() {
        let throttle = LoginThrottle::new(3, 100, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.check("ann", HOME).is_ok());
            throttle.record_failure("ann", HOME);
        }
        assert!(throttle.check("ann", AWAY).is_err());
        assert!(throttle.check("bob", HOME).is_ok());
        throttle.record_success("ann");
        assert!(throttle.check("ann", AWAY).is_ok());
    }

    #[test]
    fn address_limit_applies_to_any_username() {
        let throttle = LoginThrottle::new(100, 2, Duration::from_secs(60));
        throttle.record_failure("a", HOME);
        throttle.record_failure("b", HOME);
        assert!(throttle.check("c", HOME).is_err());
        assert!(throttle.check("c", AWAY).is_ok());
    }

    #[test]
    fn windows_end() {
        let throttle = LoginThrottle::new(1, 1, Duration::from_millis(20));
        throttle.record_failure("a", HOME);
        assert!(throttle.check("a", HOME).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(throttle.check("a", HOME).is_ok());
    }
}
