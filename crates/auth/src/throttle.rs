use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Refusal of an attempt because too many recent ones came from the same
/// username or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("too many attempts; try again in {retry_after_s} s")]
pub struct Throttled {
    /// Seconds until an attempt may succeed again.
    pub retry_after_s: u64,
}

/// Attempts counted in a fixed window starting at the first one.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
    /// The earliest time the next attempt past the limit may go ahead
    /// (used by the per-address login limit, which slows down).
    next_turn: Instant,
}

/// Counts per key in fixed windows: the one counting rule that the login
/// and signup throttles share.
#[derive(Debug)]
struct Windows<K> {
    table: HashMap<K, Window>,
    length: Duration,
}

/// Past this many keys, finished windows are forgotten, so an attacker
/// spraying usernames or addresses cannot grow the table without bound.
const PURGE_ABOVE: usize = 10_000;

impl<K: Hash + Eq> Windows<K> {
    fn new(length: Duration) -> Self {
        Windows {
            table: HashMap::new(),
            length,
        }
    }

    /// The key's window, a fresh one if it had none or its window ended.
    fn current(&mut self, key: K, now: Instant) -> &mut Window {
        if self.table.len() > PURGE_ABOVE {
            let length = self.length;
            self.table
                .retain(|_, w| now.duration_since(w.started) < length);
        }
        let fresh = Window {
            started: now,
            count: 0,
            next_turn: now,
        };
        let window = self.table.entry(key).or_insert(fresh);
        if now.duration_since(window.started) >= self.length {
            *window = fresh;
        }
        window
    }

    /// Whole seconds (at least one) until `window` ends.
    fn retry_after_s(&self, window: &Window, now: Instant) -> u64 {
        let left = self
            .length
            .saturating_sub(now.duration_since(window.started));
        left.as_secs().max(1)
    }

    /// Takes back one counted attempt, if its window still runs.
    fn give_back(&mut self, key: &K) {
        if let Some(window) = self.table.get_mut(key) {
            window.count = window.count.saturating_sub(1);
        }
    }
}

/// Past the per-address limit, one login attempt per this interval from
/// that address goes ahead.
const SLOW_TURN: Duration = Duration::from_secs(1);

/// Past the per-address limit, an attempt that would wait longer than this
/// for its turn is refused instead.
const SLOW_QUEUE: Duration = Duration::from_secs(10);

/// Limits password guessing, per username and per client address.
///
/// Every attempt is counted as a failure before its password is checked
/// ([`LoginThrottle::attempt`]) and given back once it succeeds
/// ([`LoginThrottle::succeeded`]), so parallel attempts cannot all pass a
/// check made before any of them failed.
///
/// - Per username, past the limit attempts are refused until the window
///   ends: guessing one account's password from many addresses stops.
/// - Per address, past the limit attempts are slowed, not refused: one per
///   second goes ahead ([`Attempt::delay`]), and only one that would wait
///   more than ten seconds is refused. One address can then no longer try
///   many accounts quickly, but people who share it with the guesser (an
///   office behind one NAT, everyone behind a proxy not marked trusted)
///   still log in, a little later, instead of being locked out for the
///   whole window.
///
/// State is in memory: each node counts its own attempts, which bounds
/// guessing per node without a round trip per login.
#[derive(Debug)]
pub struct LoginThrottle {
    usernames: Mutex<Windows<String>>,
    addresses: Mutex<Windows<IpAddr>>,
    per_username: u32,
    per_address: u32,
}

/// A login attempt let through by [`LoginThrottle::attempt`] and counted
/// as a failure until [`LoginThrottle::succeeded`] or
/// [`LoginThrottle::not_checked`] gives it back.
#[derive(Debug)]
#[must_use = "an attempt is counted as a failure unless given back"]
pub struct Attempt {
    username: String,
    address: IpAddr,
    /// How long to wait before checking the password: zero unless the
    /// address is past its limit and must wait for its turn.
    pub delay: Duration,
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
            usernames: Mutex::new(Windows::new(window)),
            addresses: Mutex::new(Windows::new(window)),
            per_username,
            per_address,
        }
    }

    /// Counts an attempt for this username from this address as a failure,
    /// or refuses it when the username is past its limit or the address's
    /// turn is too far away.
    pub fn attempt(&self, username: &str, address: IpAddr) -> Result<Attempt, Throttled> {
        let now = Instant::now();
        let mut usernames = locked(&self.usernames);
        let mut addresses = locked(&self.addresses);
        let by_name = *usernames.current(username.to_owned(), now);
        if by_name.count >= self.per_username {
            let retry_after_s = usernames.retry_after_s(&by_name, now);
            return Err(Throttled { retry_after_s });
        }
        let by_address = addresses.current(address, now);
        let mut delay = Duration::ZERO;
        if by_address.count >= self.per_address {
            let turn = by_address.next_turn.max(now);
            delay = turn - now;
            if delay > SLOW_QUEUE {
                let retry_after_s = (delay - SLOW_QUEUE).as_secs().max(1);
                return Err(Throttled { retry_after_s });
            }
            by_address.next_turn = turn + SLOW_TURN;
        }
        by_address.count += 1;
        usernames.current(username.to_owned(), now).count += 1;
        Ok(Attempt {
            username: username.to_owned(),
            address,
            delay,
        })
    }

    /// The password was right: the username's failures are forgotten and
    /// the address's count no longer holds this attempt.
    pub fn succeeded(&self, attempt: Attempt) {
        locked(&self.usernames).table.remove(&attempt.username);
        locked(&self.addresses).give_back(&attempt.address);
    }

    /// The password was never checked (the server was too busy): the
    /// attempt is no failure.
    pub fn not_checked(&self, attempt: Attempt) {
        locked(&self.usernames).give_back(&attempt.username);
        locked(&self.addresses).give_back(&attempt.address);
    }
}

/// Limits account creation per client address: each signup attempt that
/// reaches password hashing is counted up front, and past the limit
/// attempts are refused until the window ends. Without it one client
/// could create accounts, and make the server hash passwords, as fast as
/// it can send forms.
#[derive(Debug)]
pub struct SignupThrottle {
    addresses: Mutex<Windows<IpAddr>>,
    per_address: u32,
}

impl Default for SignupThrottle {
    /// 10 signups per address per hour.
    fn default() -> Self {
        SignupThrottle::new(10, Duration::from_secs(3600))
    }
}

impl SignupThrottle {
    /// A throttle allowing `per_address` signups per `window`.
    pub fn new(per_address: u32, window: Duration) -> Self {
        SignupThrottle {
            addresses: Mutex::new(Windows::new(window)),
            per_address,
        }
    }

    /// Counts a signup from this address, or refuses it past the limit.
    pub fn attempt(&self, address: IpAddr) -> Result<(), Throttled> {
        let now = Instant::now();
        let mut addresses = locked(&self.addresses);
        let window = *addresses.current(address, now);
        if window.count >= self.per_address {
            let retry_after_s = addresses.retry_after_s(&window, now);
            return Err(Throttled { retry_after_s });
        }
        addresses.current(address, now).count += 1;
        Ok(())
    }

    /// Takes back a counted signup that created nothing and hashed
    /// nothing (a form the user must correct, or a busy server).
    pub fn give_back(&self, address: IpAddr) {
        locked(&self.addresses).give_back(&address);
    }
}

/// The table behind `mutex`: a panic elsewhere while it was held leaves
/// counts that are still good enough to limit by.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
            let _failed = throttle.attempt("ann", HOME).expect("under the limit");
        }
        assert!(throttle.attempt("ann", AWAY).is_err());
        let bob = throttle.attempt("bob", HOME).expect("another username");
        throttle.succeeded(bob);
    }

    #[test]
    fn attempts_count_before_they_are_checked() {
        let throttle = LoginThrottle::new(5, 100, Duration::from_secs(60));
        let admitted: Vec<Attempt> = (0..40)
            .filter_map(|_| throttle.attempt("ann", HOME).ok())
            .collect();
        assert_eq!(admitted.len(), 5, "five in flight, none checked yet");
    }

    #[test]
    fn a_success_or_an_unchecked_attempt_is_given_back() {
        let throttle = LoginThrottle::new(2, 100, Duration::from_secs(60));
        let first = throttle.attempt("ann", HOME).expect("first");
        let second = throttle.attempt("ann", HOME).expect("second");
        throttle.not_checked(first);
        let third = throttle
            .attempt("ann", HOME)
            .expect("the unchecked one was given back");
        assert!(throttle.attempt("ann", HOME).is_err());
        throttle.succeeded(second);
        throttle.succeeded(third);
        for _ in 0..2 {
            let _failed = throttle
                .attempt("ann", HOME)
                .expect("a success forgets the failures");
        }
    }

    #[test]
    fn past_the_address_limit_attempts_are_slowed_then_refused() {
        let throttle = LoginThrottle::new(100, 2, Duration::from_secs(60));
        for name in ["a", "b"] {
            assert_eq!(
                throttle.attempt(name, HOME).expect("free").delay,
                Duration::ZERO
            );
        }
        let delays: Vec<Duration> = (0..11)
            .map(|n| {
                throttle
                    .attempt(&format!("c{n}"), HOME)
                    .expect("slowed")
                    .delay
            })
            .collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert!(delays[1] > Duration::from_millis(900), "{delays:?}");
        assert!(delays[10] > Duration::from_millis(9900), "{delays:?}");
        assert!(throttle.attempt("d", HOME).is_err(), "more than 10 s away");
        let away = throttle.attempt("c", AWAY).expect("another address");
        assert_eq!(away.delay, Duration::ZERO);
    }

    #[test]
    fn windows_end() {
        let throttle = LoginThrottle::new(1, 100, Duration::from_millis(20));
        let _ = throttle.attempt("a", HOME).expect("first");
        assert!(throttle.attempt("a", HOME).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(throttle.attempt("a", HOME).is_ok());
    }

    #[test]
    fn signups_are_limited_per_address() {
        let throttle = SignupThrottle::new(2, Duration::from_secs(60));
        throttle.attempt(HOME).expect("first");
        throttle.attempt(HOME).expect("second");
        assert!(throttle.attempt(HOME).is_err());
        throttle.give_back(HOME);
        throttle.attempt(HOME).expect("one given back");
        throttle.attempt(AWAY).expect("another address");
    }
}
