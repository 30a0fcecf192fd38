//! When each WebSocket is pinged: one wheel for the node, not a timer per
//! socket.
//!
//! Every socket is pinged once per [`Config::ping_interval`]. The interval
//! is cut into steps of at most a second; each socket is given one step at
//! random when it opens (sockets opened together, a reconnect storm after
//! a restart, then ping at different moments, forever), and one task
//! wakes, step after step, the sockets of that step. With a tokio interval
//! per socket, 10,000 idle sockets were 10,000 timers, each carried down
//! the runtime's timer wheel and re-armed at every ping; here a due socket
//! costs one flag and one wake-up, and the runtime one timer.
//!
//! [`Config::ping_interval`]: crate::Config::ping_interval

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

/// Longest step of the wheel: the pings of all the sockets given one step
/// go out in one wake-up of the runtime.
const MAX_STEP: Duration = Duration::from_secs(1);

/// The node's ping schedule: for each step of the interval, the sockets
/// pinged at it. A socket that closed is dropped from its step the next
/// time the wheel reaches it.
#[derive(Debug)]
pub(crate) struct PingWheel {
    step: Duration,
    steps: Box<[Mutex<Vec<Weak<PingTurn>>>]>,
}

/// One socket's place on the wheel: set, and the socket woken, when its
/// ping is due. The socket holds the only strong reference.
#[derive(Debug, Default)]
pub(crate) struct PingTurn {
    due: AtomicBool,
    waker: AtomicWaker,
}

impl PingWheel {
    /// A wheel that pings every socket once per `interval`, in whole steps
    /// of at most [`MAX_STEP`] (an interval that is not a whole number of
    /// seconds has shorter steps, so the interval is kept).
    pub fn new(interval: Duration) -> Self {
        let count = interval
            .as_nanos()
            .div_ceil(MAX_STEP.as_nanos())
            .clamp(1, u128::from(u32::MAX));
        // Cannot truncate: clamped just above.
        let count = count as u32;
        PingWheel {
            step: interval / count,
            steps: (0..count).map(|_| Mutex::default()).collect(),
        }
    }

    /// Puts a new socket on a step drawn at random: its first ping comes
    /// within one interval, then every interval.
    pub fn join(&self) -> Arc<PingTurn> {
        let mut bytes = [0u8; 4];
        // Without randomness every socket still gets its ping, on step 0.
        let _ = getrandom::fill(&mut bytes);
        self.join_step(u32::from_le_bytes(bytes) as usize % self.steps.len())
    }

    fn join_step(&self, step: usize) -> Arc<PingTurn> {
        let turn = Arc::new(PingTurn::default());
        lock(&self.steps[step]).push(Arc::downgrade(&turn));
        turn
    }

    /// Marks the sockets of `step` due and wakes them; forgets the closed
    /// ones. Returns how many were woken.
    fn ring(&self, step: usize) -> usize {
        let mut sockets = lock(&self.steps[step]);
        sockets.retain(|socket| match socket.upgrade() {
            Some(turn) => {
                turn.due.store(true, Ordering::Release);
                turn.waker.wake();
                true
            }
            None => false,
        });
        sockets.len()
    }

    /// Steps round the wheel until `shutdown`. A late step is rung late,
    /// not skipped, so no socket misses a ping.
    pub async fn run(&self, shutdown: &CancellationToken) {
        let mut ticks = tokio::time::interval(self.step);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for step in (0..self.steps.len()).cycle() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.ring(step);
        }
    }
}

impl PingTurn {
    /// Completes when this socket's ping is due. Cancel-safe: a turn that
    /// came while nobody waited is kept for the next wait.
    pub async fn due(&self) {
        poll_fn(|cx| {
            if self.due.swap(false, Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // The wheel may have rung between the check and the register.
            if self.due.swap(false, Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn steps_are_at_most_a_second_and_add_up_to_the_interval() {
        for (interval, steps) in [
            (Duration::from_secs(30), 30),
            (Duration::from_millis(2400), 3),
            (Duration::from_millis(200), 1),
        ] {
            let wheel = PingWheel::new(interval);
            assert_eq!(wheel.steps.len(), steps, "{interval:?}");
            assert!(wheel.step <= MAX_STEP);
            assert_eq!(wheel.step * steps as u32, interval);
        }
    }

    #[test]
    fn a_socket_is_due_when_its_step_rings_and_forgotten_once_closed() {
        let wheel = PingWheel::new(Duration::from_secs(3));
        let first = wheel.join_step(1);
        let second = wheel.join_step(1);
        let other = wheel.join_step(2);
        assert!(first.due().now_or_never().is_none(), "not due before");
        assert_eq!(wheel.ring(0), 0);
        assert_eq!(wheel.ring(1), 2);
        assert!(first.due().now_or_never().is_some());
        assert!(first.due().now_or_never().is_none(), "once per ring");
        assert!(other.due().now_or_never().is_none(), "another step");
        drop(second);
        assert_eq!(wheel.ring(1), 1, "the closed socket is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn every_socket_is_pinged_once_per_interval() {
        let interval = Duration::from_secs(3);
        let wheel = Arc::new(PingWheel::new(interval));
        let shutdown = CancellationToken::new();
        let running = tokio::spawn({
            let wheel = wheel.clone();
            let shutdown = shutdown.clone();
            async move { wheel.run(&shutdown).await }
        });
        let start = tokio::time::Instant::now();
        let sockets: Vec<_> = (0..20)
            .map(|_| {
                let turn = wheel.join();
                tokio::spawn(async move {
                    let mut pinged = Vec::new();
                    for _ in 0..3 {
                        turn.due().await;
                        pinged.push(start.elapsed());
                    }
                    pinged
                })
            })
            .collect();
        for socket in sockets {
            let pinged = socket.await.expect("pinged");
            assert!(pinged[0] < interval, "{pinged:?}");
            assert_eq!(pinged[1] - pinged[0], interval, "{pinged:?}");
            assert_eq!(pinged[2] - pinged[1], interval, "{pinged:?}");
        }
        shutdown.cancel();
        running.await.expect("the wheel stops");
    }
}
