//! What the parts of a broadcast run tell each other over Unix sockets:
//! the client its server, and with `--servers` each server and the
//! coordinator. Messages are a fixed number of little-endian `u64` words,
//! so a reader knows how much to read, and the parts (threads, or forked
//! copies of this one binary) need nothing more to agree on them.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::cpu::ThreadCpu;
use crate::error::LimitError;

/// A message of a fixed number of words.
pub trait Message: Sized {
    /// Its size in words.
    const WORDS: usize;
    /// Appends its words to `out`, in order.
    fn put(&self, out: &mut Vec<u64>);
    /// Reads it back from the front of `words`.
    fn take(words: &mut Words<'_>) -> Self;
}

/// The words of a received message, read from the front.
pub struct Words<'a>(std::slice::Iter<'a, u64>);

impl Words<'_> {
    /// The next word; 0 past the end, which a message of the size it
    /// declares never reaches.
    pub fn word(&mut self) -> u64 {
        self.0.next().copied().unwrap_or(0)
    }
}

/// A connected pair of Unix sockets.
pub fn pair() -> Result<(UnixStream, UnixStream), LimitError> {
    UnixStream::pair().map_err(|error| LimitError::sys("socketpair", error))
}

/// Makes reads from `socket` fail after `after`, so that a peer that
/// stopped cannot leave the run waiting for ever.
pub fn time_out(socket: &UnixStream, after: Duration) -> Result<(), LimitError> {
    socket
        .set_read_timeout(Some(after))
        .map_err(|error| LimitError::sys("SO_RCVTIMEO on a control socket", error))
}

/// Sends `message` to the peer named `to`.
pub fn send<M: Message>(socket: &mut UnixStream, message: &M, to: &str) -> Result<(), LimitError> {
    let mut words = Vec::with_capacity(M::WORDS);
    message.put(&mut words);
    let bytes: Vec<u8> = words.into_iter().flat_map(u64::to_le_bytes).collect();
    socket
        .write_all(&bytes)
        .map_err(|error| match error.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => gone(to),
            _ => LimitError::sys(format!("sending to the {to}"), error),
        })
}

/// Receives one message from the peer named `from`.
pub fn receive<M: Message>(socket: &mut UnixStream, from: &str) -> Result<M, LimitError> {
    let mut bytes = vec![0; 8 * M::WORDS];
    socket
        .read_exact(&mut bytes)
        .map_err(|error| match error.kind() {
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => gone(from),
            _ => LimitError::sys(format!("reading from the {from}"), error),
        })?;
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(std::array::from_fn(|i| chunk[i])))
        .collect();
    Ok(M::take(&mut Words(words.iter())))
}

fn gone(peer: &str) -> LimitError {
    LimitError::PartnerGone(format!("{peer} ended without reporting"))
}

impl Message for ThreadCpu {
    const WORDS: usize = 4;

    fn put(&self, out: &mut Vec<u64>) {
        out.extend([self.user_us, self.sys_us, self.on_cpu_ns, self.runq_wait_ns]);
    }

    fn take(words: &mut Words<'_>) -> ThreadCpu {
        ThreadCpu {
            user_us: words.word(),
            sys_us: words.word(),
            on_cpu_ns: words.word(),
            runq_wait_ns: words.word(),
        }
    }
}

/// What a client tells its server once connected and after each round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientReport {
    /// When it read the round's last frame (0 for the first report).
    pub last_read_ns: u64,
    /// Its CPU time so far.
    pub cpu: ThreadCpu,
}

impl Message for ClientReport {
    const WORDS: usize = 1 + ThreadCpu::WORDS;

    fn put(&self, out: &mut Vec<u64>) {
        out.push(self.last_read_ns);
        self.cpu.put(out);
    }

    fn take(words: &mut Words<'_>) -> ClientReport {
        ClientReport {
            last_read_ns: words.word(),
            cpu: ThreadCpu::take(words),
        }
    }
}

/// The CPU time one server and its client have used so far: what the
/// report's CPU figures are differences of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// The server thread's.
    pub server: ThreadCpu,
    /// The client thread's, as of its last report.
    pub client: ThreadCpu,
}

impl Totals {
    /// The time spent between `earlier` and `self`, both of one pair.
    pub fn since(self, earlier: Totals) -> Totals {
        Totals {
            server: self.server.since(earlier.server),
            client: self.client.since(earlier.client),
        }
    }
}

impl Message for Totals {
    const WORDS: usize = 2 * ThreadCpu::WORDS;

    fn put(&self, out: &mut Vec<u64>) {
        self.server.put(out);
        self.client.put(out);
    }

    fn take(words: &mut Words<'_>) -> Totals {
        Totals {
            server: ThreadCpu::take(words),
            client: ThreadCpu::take(words),
        }
    }
}

/// One broadcast as one server saw it, in raw `CLOCK_MONOTONIC` readings
/// so that a coordinator can put several servers' rounds together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerRound {
    /// Just before its first write.
    pub started_ns: u64,
    /// Just after its last write.
    pub written_ns: u64,
    /// When its client read the last frame.
    pub last_read_ns: u64,
    /// The server thread's CPU over the write loop.
    pub write_cpu: ThreadCpu,
    /// Both sides' CPU so far, after the round.
    pub totals: Totals,
}

impl ServerRound {
    /// How long the write loop took, ms.
    pub fn write_loop_ms(&self) -> f64 {
        self.written_ns.saturating_sub(self.started_ns) as f64 / 1e6
    }
}

impl Message for ServerRound {
    const WORDS: usize = 3 + ThreadCpu::WORDS + Totals::WORDS;

    fn put(&self, out: &mut Vec<u64>) {
        out.extend([self.started_ns, self.written_ns, self.last_read_ns]);
        self.write_cpu.put(out);
        self.totals.put(out);
    }

    fn take(words: &mut Words<'_>) -> ServerRound {
        ServerRound {
            started_ns: words.word(),
            written_ns: words.word(),
            last_read_ns: words.word(),
            write_cpu: ThreadCpu::take(words),
            totals: Totals::take(words),
        }
    }
}

/// The coordinator's word to every server: start the next broadcast when
/// `CLOCK_MONOTONIC` reads `at_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// The instant, in ns.
    pub at_ns: u64,
}

impl Message for Start {
    const WORDS: usize = 1;

    fn put(&self, out: &mut Vec<u64>) {
        out.push(self.at_ns);
    }

    fn take(words: &mut Words<'_>) -> Start {
        Start {
            at_ns: words.word(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(seed: u64) -> ThreadCpu {
        ThreadCpu {
            user_us: seed,
            sys_us: u64::MAX - seed,
            on_cpu_ns: 3 << 40,
            runq_wait_ns: 0,
        }
    }

    /// `message` sent on one end of a pair, as the other end reads it.
    fn across<M: Message>(message: &M) -> M {
        let (mut from, mut to) = pair().expect("a socket pair");
        send(&mut from, message, "reader").expect("sent");
        receive(&mut to, "writer").expect("received")
    }

    #[test]
    fn every_message_reads_back_as_sent() {
        let report = ClientReport {
            last_read_ns: 1_234_567_890_123,
            cpu: cpu(1),
        };
        assert_eq!(across(&report), report);
        let totals = Totals {
            server: cpu(2),
            client: cpu(3),
        };
        assert_eq!(across(&totals), totals);
        let round = ServerRound {
            started_ns: 10,
            written_ns: 20,
            last_read_ns: 30,
            write_cpu: cpu(4),
            totals,
        };
        assert_eq!(across(&round), round);
        let start = Start { at_ns: u64::MAX };
        assert_eq!(across(&start), start);
    }

    #[test]
    fn a_message_is_its_declared_words_little_endian() {
        let report = ClientReport {
            last_read_ns: 1_234_567_890_123,
            cpu: cpu(1),
        };
        let mut words = Vec::new();
        report.put(&mut words);
        assert_eq!(words.len(), ClientReport::WORDS);
        let (mut from, mut to) = pair().expect("a socket pair");
        send(&mut from, &report, "reader").expect("sent");
        let mut first = [0; 8];
        to.read_exact(&mut first).expect("the first word");
        assert_eq!(first, 1_234_567_890_123u64.to_le_bytes());
    }

    #[test]
    fn a_peer_that_ends_is_gone_not_an_io_error() {
        let (from, mut to) = pair().expect("a socket pair");
        drop(from);
        let error = receive::<Start>(&mut to, "coordinator").expect_err("end of stream");
        assert!(error.follows_partner_failure(), "{error}");
        assert_eq!(error.to_string(), "the coordinator ended without reporting");
        let error = send(&mut to, &Start { at_ns: 1 }, "coordinator").expect_err("closed");
        assert!(error.follows_partner_failure(), "{error}");
    }
}
