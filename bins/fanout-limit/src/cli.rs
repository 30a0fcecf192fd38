//! The command line: one subcommand per mode, each flag defaulting to the
//! setting the reference figures were measured with. Parsing only.

use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};

use crate::frame::MAX_PAYLOAD;

const AFTER_HELP: &str = "\
Everything runs on 127.0.0.1 with exactly two busy threads, a server and a
client (the load generator), as on a 2-core machine shared by a server and
its load; `broadcast --servers K` runs K of each instead, as a chat server
of K nodes and a load generator of K processes. Every wait is bounded: a
stuck peer ends the run within 10-40 s.

Output: one JSON line on stdout per run (its fields are explained in
bins/fanout-limit/README.md). Exit codes: 0 the run completed, 1 it could
not be carried out, 2 bad command line.";

/// The kernel-bound ceiling of chat fan-out on this machine: raw epoll and
/// write()/writev() on loopback TCP, with no server logic at all.
#[derive(Debug, Parser)]
#[command(name = "fanout-limit", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to measure.
    #[command(subcommand)]
    pub mode: Mode,
}

impl Cli {
    /// The checks clap cannot make (see [`BroadcastArgs::check`]).
    pub fn check(&self) -> Result<(), String> {
        match &self.mode {
            Mode::Broadcast(args) => args.check(),
            Mode::Fanout(_) => Ok(()),
        }
    }
}

/// The two measurements.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Latency of one broadcast to N sockets, one write() per socket.
    Broadcast(BroadcastArgs),
    /// Closed-loop chat room: every message fanned out to every member.
    Fanout(FanoutArgs),
}

/// Flags of `broadcast`.
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    /// Sockets to broadcast to; cut to what RLIMIT_NOFILE allows (the
    /// report's `conns` against `conns_requested`).
    #[arg(long, default_value_t = 1000, value_parser = at_least_one())]
    pub conns: usize,
    /// Broadcasts measured.
    #[arg(long, default_value_t = 100, value_parser = at_least_one())]
    pub samples: usize,
    /// Broadcasts before those, left out of the percentiles: fresh
    /// connections are quick-ACKed for their first 16 segments.
    #[arg(long, default_value_t = 20)]
    pub warmup_samples: usize,
    /// Pause before each broadcast, in ms.
    #[arg(long, default_value_t = 10)]
    pub gap_ms: u64,
    /// Server and client in two processes even when one would hold all
    /// the sockets (as it must from about 10,000), to compare like with
    /// like. Implied by `--servers` above 1.
    #[arg(long)]
    pub procs: bool,
    /// Server processes the connections are split over, each with its own
    /// client process, all starting every broadcast at the same instant:
    /// to compare with a server of that many nodes (and to go past the
    /// ~20,000 connections one pair of processes can hold). At most
    /// `--conns`.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub servers: usize,
    /// Flags both modes take.
    #[command(flatten)]
    pub common: CommonArgs,
}

impl BroadcastArgs {
    /// What clap cannot check flag by flag: a server process needs a
    /// connection of its own. The message to end with, exit code 2.
    pub fn check(&self) -> Result<(), String> {
        if self.servers > self.conns {
            return Err(format!(
                "--servers {} is more than --conns {}: every server needs a connection",
                self.servers, self.conns
            ));
        }
        Ok(())
    }
}

/// Flags of `fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Member sockets of the room; the last one is also the sender.
    #[arg(long, default_value_t = 100, value_parser = at_least_one())]
    pub members: usize,
    /// Messages the sender keeps outstanding (not yet echoed back to it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
    /// Seconds measured (fractions allowed).
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub duration: Duration,
    /// Seconds run first and left out.
    #[arg(long, default_value = "1", value_parser = seconds)]
    pub warmup: Duration,
    /// All the messages read in one wake-up go to each member in one
    /// writev(), instead of one write() per member per message.
    #[arg(long)]
    pub writev: bool,
    /// Flags both modes take.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Flags both modes take.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Payload bytes of each message.
    #[arg(long, default_value_t = 100, value_parser = payload_size())]
    pub size: usize,
    /// Server thread on CPU 0, client thread on CPU 1 (with `--servers`,
    /// every server's and every client's); otherwise the scheduler places
    /// them.
    #[arg(long)]
    pub pin: bool,
}

fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

fn payload_size() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(0..=MAX_PAYLOAD as u64)
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds, 0 or more"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fanout-limit").chain(args.iter().copied()))
    }

    fn broadcast(args: &[&str]) -> BroadcastArgs {
        match parse(args).expect("a broadcast command").mode {
            Mode::Broadcast(args) => args,
            other => panic!("not broadcast: {other:?}"),
        }
    }

    fn fanout(args: &[&str]) -> FanoutArgs {
        match parse(args).expect("a fanout command").mode {
            Mode::Fanout(args) => args,
            other => panic!("not fanout: {other:?}"),
        }
    }

    #[test]
    fn broadcast_defaults_are_the_reference_settings() {
        let args = broadcast(&["broadcast"]);
        assert_eq!(
            (args.conns, args.samples, args.warmup_samples, args.gap_ms),
            (1000, 100, 20, 10)
        );
        assert_eq!(
            (args.common.size, args.common.pin, args.procs, args.servers),
            (100, false, false, 1)
        );
    }

    #[test]
    fn fanout_defaults_are_the_reference_settings() {
        let args = fanout(&["fanout"]);
        assert_eq!((args.members, args.window, args.writev), (100, 64, false));
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.warmup, Duration::from_secs(1));
        assert_eq!((args.common.size, args.common.pin), (100, false));
    }

    #[test]
    fn every_flag_is_read() {
        let args = broadcast(&[
            "broadcast",
            "--conns",
            "10000",
            "--samples",
            "5",
            "--warmup-samples",
            "0",
            "--size",
            "126",
            "--gap-ms",
            "300",
            "--procs",
            "--servers",
            "3",
            "--pin",
        ]);
        assert_eq!(
            (args.conns, args.samples, args.warmup_samples, args.gap_ms),
            (10000, 5, 0, 300)
        );
        assert_eq!(
            (args.common.size, args.common.pin, args.procs, args.servers),
            (126, true, true, 3)
        );

        let args = fanout(&[
            "fanout",
            "--members",
            "10",
            "--window",
            "1",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--size",
            "0",
            "--writev",
            "--pin",
        ]);
        assert_eq!((args.members, args.window, args.writev), (10, 1, true));
        assert_eq!(args.duration, Duration::from_millis(500));
        assert_eq!(args.warmup, Duration::ZERO);
        assert_eq!((args.common.size, args.common.pin), (0, true));
    }

    #[test]
    fn impossible_runs_are_refused() {
        for bad in [
            &["broadcast", "--conns", "0"][..],
            &["broadcast", "--samples", "0"],
            &["broadcast", "--size", "65536"],
            &["broadcast", "--conns", "many"],
            &["broadcast", "--writev"],
            &["broadcast", "--servers", "0"],
            &["fanout", "--servers", "2"],
            &["fanout", "--members", "0"],
            &["fanout", "--window", "0"],
            &["fanout", "--duration", "-1"],
            &["fanout", "--warmup", "soon"],
            &["fanout", "--procs"],
            &["latency"],
            &[],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_server_needs_a_connection() {
        let check = |args: &[&str]| parse(args).expect("parses").check();
        assert_eq!(
            check(&["broadcast", "--conns", "3", "--servers", "3"]),
            Ok(())
        );
        assert_eq!(check(&["broadcast", "--servers", "1000"]), Ok(()));
        assert!(check(&["broadcast", "--conns", "2", "--servers", "3"]).is_err());
        assert_eq!(check(&["fanout"]), Ok(()));
    }
}
