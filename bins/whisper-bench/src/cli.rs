//! The command line: options every scenario shares, and one subcommand per
//! scenario. Parsing only; checks that span several flags live in
//! [`Cli::validate`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use reqwest::Url;
use whisper_protocol::v2;

use crate::connection::Protocol;
use crate::error::BenchError;

/// What every run needs to be told, whatever the scenario.
const AFTER_HELP: &str = "\
The server must let one WebSocket send far more than a browser does, and one
user open many sockets. Start it for benchmarking with:

  whisper-server --max-messages-per-second 1000000 --max-connections-per-user 100000

(otherwise frames past 20/s per socket come back RATE_LIMITED, counted in the
report, and sockets past 20 per user are refused; --connections-per-user must
not exceed the server's --max-connections-per-user).

Rooms: pass ids created beforehand with --room-ids, or let the bench create
them with `whisper-manage --database-url URL createroom` by giving
--database-url (and --manage-bin when whisper-manage is not on PATH).

Several nodes sharing rooms through Redis (each started with the same
--redis-url and --database-url): give every URL, comma-separated or with
--url repeated, and --server-pid one pid per URL in the same order. Member i
of each room connects to node i mod N; the report sums the nodes' CPU and
memory.

More connections than one process may hold open files for (conns
--connections 50000): `conns --processes K` splits them over this process
and K - 1 workers it starts (the same binary), sharing one clock
(CLOCK_MONOTONIC) to time the broadcasts.

Users are signed up through /accounts/signup/ (signup must be open), one per
--connections-per-user sockets, with fresh names each run.

Protocol v2 (Sec-WebSocket-Protocol: whisper.v2): `fanout --protocol v2`
also reports the send -> result latency and each member's seq checks (gaps,
duplicates, out of order); `recovery` always speaks v2 and times N sockets
rejoining with `since` after missing M messages each; `history` (v2) fills
a room up to --messages stored messages and times pages read from it (start
the server with a --history-max-per-room at least that large).

Output: one JSON line on stdout per run; progress on stderr. Exit codes: 0 the
run completed (read its numbers), 1 the run could not be carried out, 2 bad
command line.";

/// Load generator for Whisper: speaks the chat protocol like a browser
/// (signs up over HTTP, opens WebSockets with the session cookie and an
/// Origin header) and reports throughput, latency and per-connection costs.
#[derive(Debug, Parser)]
#[command(name = "whisper-bench", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Options shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Options shared by every scenario; they may be given before or after the
/// scenario name.
#[derive(Debug, Args)]
pub struct Common {
    /// The server's base URL (http only). Several nodes sharing rooms
    /// through Redis: comma-separated and/or repeated (all on the same side
    /// of the scenario name); each room's members are spread over them in
    /// turn, and users sign up on the first.
    #[arg(long = "url", value_name = "URL", global = true, env = "WHISPER_BENCH_URL",
          default_value = "http://127.0.0.1:8000", value_delimiter = ',',
          value_parser = parse_url)]
    pub urls: Vec<Url>,
    /// The server's process id, to report its CPU time and memory (from
    /// /proc); with several nodes, one pid per --url in the same order
    /// (comma-separated and/or repeated), and the report sums them.
    #[arg(
        long = "server-pid",
        value_name = "PID",
        global = true,
        value_delimiter = ','
    )]
    pub server_pids: Vec<u32>,
    /// Rooms created beforehand, comma-separated; the scenario uses the first
    /// ones it needs.
    #[arg(long, global = true, value_delimiter = ',', value_parser = clap::value_parser!(i64).range(1..))]
    pub room_ids: Vec<i64>,
    /// Create the rooms with `whisper-manage --database-url URL createroom`
    /// (used when --room-ids is not given).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// The whisper-manage binary used with --database-url.
    #[arg(long, global = true, default_value = "whisper-manage")]
    pub manage_bin: PathBuf,
    /// WebSockets opened per signed-up user; at most the server's
    /// --max-connections-per-user.
    #[arg(long, global = true, default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connections_per_user: u32,
    /// Connection attempts (TCP + upgrade + join) in flight at once.
    #[arg(long, global = true, default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,
    /// Local addresses 127.0.0.2, 127.0.0.3, ... that client sockets bind to
    /// (round robin), so ephemeral ports do not run out; 0 lets the kernel
    /// choose. Default: one per 10,000 connections. Only used when the
    /// server is on a loopback address.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    pub source_ips: Option<u32>,
    /// Worker threads of the bench's runtime (default: one per core).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Throughput and latency: R rooms x M members, S of them sending.
    Fanout(FanoutArgs),
    /// Many connections joined to rooms: connect rate, server memory per
    /// connection, and the time one broadcast takes to reach all of them.
    Conns(ConnsArgs),
    /// Protocol v2 recovery: sockets drop, messages are stored meanwhile,
    /// then all rejoin with `since` at once; time until all have caught up.
    Recovery(RecoveryArgs),
    /// Protocol v2 history: fill one room up to N stored messages, then
    /// time pages read from random places in it, checking each page.
    History(HistoryArgs),
}

/// `fanout`: every member checks per-sender order and counts; senders send
/// either in a closed loop (at most --window messages not yet echoed back)
/// or an open loop (--rate messages per second each).
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Rooms.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rooms: u32,
    /// Members (WebSockets) per room, senders included.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub members: u32,
    /// Senders per room (each is also a member).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub senders: u32,
    /// Closed loop: most messages a sender has sent but not yet received back.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub window: u32,
    /// Open loop instead: messages per second each sender sends, whatever
    /// the echoes (latency is measured from the scheduled send time).
    #[arg(long, conflicts_with = "window", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Length of each message text in bytes (at least the ~30-byte stamp
    /// that carries sender, sequence number and send time).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub message_bytes: u32,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Seconds of load before measuring (excluded from rates and latency).
    #[arg(long, default_value = "1", value_parser = parse_seconds_or_zero)]
    pub warmup: Duration,
    /// Longest wait, after the senders stop, for messages still in flight;
    /// what has not arrived by then counts as lost.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub drain: Duration,
    /// The protocol every socket speaks. v2 sockets offer `whisper.v2`,
    /// send with request ids, and also report the send -> result
    /// (acknowledgement) latency and each member's seq checks (gaps,
    /// duplicates, out of order).
    #[arg(long, value_enum, default_value_t = Protocol::V1)]
    pub protocol: Protocol,
}

/// `conns`: N connections spread over rooms, then a few broadcasts.
#[derive(Debug, Args)]
pub struct ConnsArgs {
    /// Connections to open (each joins one room).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,
    /// Rooms the connections are spread over (round robin); each broadcast
    /// goes to every room. One room measures a broadcast to all N. The
    /// announcer joins every room: past 100, start the server with a
    /// --max-rooms-per-connection at least this.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rooms: u32,
    /// Broadcasts timed once every connection is in (the report gives their
    /// median).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub broadcasts: u32,
    /// Length of each broadcast's text in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub message_bytes: u32,
    /// Seconds to hold every connection idle (answering pings, sending
    /// nothing) once the joins have settled, before the broadcasts: the
    /// server's CPU over that time is reported as `cpu.idle`, which is what
    /// open connections cost by themselves. 0 skips it.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub idle_s: u32,
    /// Bench processes the connections are split over (contiguous shares
    /// of the connection indices, placed in rooms and on nodes as in one
    /// process): this one and K - 1 workers it starts, since one process
    /// may hold only so many open files. --connect-concurrency is split
    /// over them too; --threads is per process. At most --connections.
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub processes: u32,
    /// Run as a worker of the bench process that started this one: orders
    /// on stdin, reports on stdout (see the `workers` module).
    #[arg(long = "worker", hide = true)]
    pub worker: bool,
}

/// `recovery`: v2 sockets drop, miss messages, and rejoin with `since`.
#[derive(Debug, Args)]
pub struct RecoveryArgs {
    /// Sockets that drop and recover, spread over the rooms (round robin).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sockets: u32,
    /// Messages sent to each room while the sockets are away (the server
    /// recovers at most 1000 behind).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub messages: u32,
    /// Rooms. The sender joins every room: past 100, start the server with
    /// a --max-rooms-per-connection at least this.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rooms: u32,
    /// Length of each message text in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub message_bytes: u32,
    /// Longest wait, from the start of the reconnect, for every socket to
    /// catch up; what has not arrived by then counts as missing.
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// `history`: one room filled up to --messages, then pages read from it.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Stored messages the room must hold; the bench sends what is missing
    /// first. The server keeps at most its --history-max-per-room per room:
    /// start it with one at least this large.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub messages: u64,
    /// Messages per page (`limit` of each `history` request).
    #[arg(long, default_value_t = v2::DEFAULT_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(v2::MAX_LIMIT)))]
    pub limit: u32,
    /// Reading sockets, each with one request in flight (closed loop).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub readers: u32,
    /// Measured seconds of reading, after the warm-up.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Measure this many pages (over all readers) instead of --duration.
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub pages: Option<u64>,
    /// Seconds of reading before measuring (pages checked, not timed).
    #[arg(long, default_value = "1", value_parser = parse_seconds_or_zero)]
    pub warmup: Duration,
    /// Sockets sending the missing messages, each with 64 sends unanswered;
    /// more make larger group commits, but each also receives every message.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub fill_sockets: u32,
    /// Length of each sent message's text in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub message_bytes: u32,
}

impl Cli {
    /// Checks that span several flags, so the run fails before any setup.
    pub fn validate(&self) -> Result<(), BenchError> {
        if let Scenario::Fanout(fanout) = &self.scenario
            && fanout.senders > fanout.members
        {
            return Err(BenchError::Usage(format!(
                "--senders ({}) cannot exceed --members ({})",
                fanout.senders, fanout.members
            )));
        }
        if let Scenario::Conns(conns) = &self.scenario
            && conns.processes > conns.connections
        {
            return Err(BenchError::Usage(format!(
                "--processes ({}) cannot exceed --connections ({})",
                conns.processes, conns.connections
            )));
        }
        if let Scenario::Recovery(recovery) = &self.scenario
            && recovery.rooms > recovery.sockets
        {
            return Err(BenchError::Usage(format!(
                "--rooms ({}) cannot exceed --sockets ({})",
                recovery.rooms, recovery.sockets
            )));
        }
        let rooms = match &self.scenario {
            Scenario::Fanout(fanout) => fanout.rooms,
            Scenario::Conns(conns) => conns.rooms,
            Scenario::Recovery(recovery) => recovery.rooms,
            Scenario::History(_) => 1,
        } as usize;
        let common = &self.common;
        if !common.server_pids.is_empty() && common.server_pids.len() != common.urls.len() {
            return Err(BenchError::Usage(format!(
                "{} --server-pid for {} --url nodes: give one pid per URL, in the same order",
                common.server_pids.len(),
                common.urls.len()
            )));
        }
        if common.room_ids.is_empty() && common.database_url.is_none() {
            return Err(BenchError::Usage(
                "give the rooms to use with --room-ids, or --database-url to create them".into(),
            ));
        }
        if !common.room_ids.is_empty() && common.room_ids.len() < rooms {
            return Err(BenchError::Usage(format!(
                "--room-ids lists {} rooms but the scenario needs {rooms}",
                common.room_ids.len()
            )));
        }
        Ok(())
    }
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    if url.scheme() != "http" {
        return Err("only http:// URLs are supported".into());
    }
    if url.host_str().is_none() {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

fn parse_seconds_or_zero(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err("must be between 0 and 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let duration = parse_seconds_or_zero(text)?;
    if duration.is_zero() {
        return Err("must be more than 0 seconds".into());
    }
    Ok(duration)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of messages per second"))?;
    if !(rate > 0.0 && rate <= 10_000_000.0) {
        return Err("must be more than 0 and at most 10000000 messages per second".into());
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("whisper-bench").chain(args.iter().copied()))
    }

    #[test]
    fn global_options_go_before_or_after_the_scenario() {
        let cli = parse(&[
            "--room-ids",
            "3,4",
            "fanout",
            "--rooms",
            "2",
            "--server-pid",
            "9",
        ])
        .expect("parses");
        assert_eq!(cli.common.room_ids, vec![3, 4]);
        assert_eq!(cli.common.server_pids, vec![9]);
        cli.validate().expect("valid");
    }

    #[test]
    fn several_nodes_are_comma_separated_or_repeated() {
        let cli = parse(&[
            "fanout",
            "--url",
            "http://127.0.0.1:8001,http://127.0.0.1:8002",
            "--server-pid",
            "11,12",
            "--url",
            "http://localhost:8003/",
            "--server-pid",
            "13",
            "--room-ids",
            "1",
        ])
        .expect("parses");
        let urls: Vec<&str> = cli.common.urls.iter().map(Url::as_str).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:8001/",
                "http://127.0.0.1:8002/",
                "http://localhost:8003/"
            ]
        );
        assert_eq!(cli.common.server_pids, vec![11, 12, 13]);
        cli.validate().expect("one pid per node");
    }

    #[test]
    fn server_pids_must_match_the_nodes_one_to_one() {
        let two_nodes = ["--url", "http://127.0.0.1:8001,http://127.0.0.1:8002"];
        let cli = parse(&[&two_nodes[..], &["--room-ids", "1", "conns"]].concat()).expect("parses");
        cli.validate().expect("pids are optional");
        for pids in ["7", "7,8,9"] {
            let cli = parse(
                &[
                    &two_nodes[..],
                    &["--server-pid", pids, "--room-ids", "1", "conns"],
                ]
                .concat(),
            )
            .expect("parses");
            assert!(
                matches!(cli.validate(), Err(BenchError::Usage(_))),
                "{pids}"
            );
        }
        assert!(parse(&["--url", "http://127.0.0.1:8001,,http://b", "conns"]).is_err());
        assert!(parse(&["--server-pid", "7,x", "conns"]).is_err());
    }

    #[test]
    fn rate_and_window_exclude_each_other() {
        assert!(parse(&["fanout", "--rate", "10", "--window", "4"]).is_err());
        let cli = parse(&["fanout", "--rate", "200", "--room-ids", "1"]).expect("parses");
        let Scenario::Fanout(fanout) = cli.scenario else {
            panic!("fanout expected");
        };
        assert_eq!(fanout.rate, Some(200.0));
    }

    #[test]
    fn the_protocol_is_v1_unless_asked() {
        let protocol = |args: &[&str]| match parse(args).expect("parses").scenario {
            Scenario::Fanout(fanout) => fanout.protocol,
            _ => panic!("fanout expected"),
        };
        assert_eq!(protocol(&["fanout"]), Protocol::V1);
        assert_eq!(protocol(&["fanout", "--protocol", "v2"]), Protocol::V2);
        assert!(parse(&["fanout", "--protocol", "v3"]).is_err());
    }

    #[test]
    fn recovery_defaults_to_a_thousand_sockets_a_hundred_behind() {
        let cli = parse(&["recovery", "--room-ids", "1"]).expect("parses");
        cli.validate().expect("valid");
        let Scenario::Recovery(recovery) = cli.scenario else {
            panic!("recovery expected");
        };
        assert_eq!((recovery.sockets, recovery.messages), (1000, 100));
        assert_eq!(recovery.rooms, 1);
    }

    #[test]
    fn history_reads_pages_of_fifty_from_a_million() {
        let cli = parse(&["history", "--room-ids", "1"]).expect("parses");
        cli.validate().expect("valid");
        let Scenario::History(history) = cli.scenario else {
            panic!("history expected");
        };
        assert_eq!((history.messages, history.limit), (1_000_000, 50));
        assert_eq!(history.pages, None);
        assert!(parse(&["history", "--limit", "101"]).is_err());
        assert!(parse(&["history", "--limit", "0"]).is_err());
        assert!(parse(&["history", "--pages", "10", "--duration", "3"]).is_err());
    }

    #[test]
    fn cross_flag_mistakes_are_usage_errors() {
        for line in [
            "recovery --sockets 2 --rooms 3 --room-ids 1,2,3",
            "recovery --rooms 2 --room-ids 1",
            "fanout --members 2 --senders 3 --room-ids 1",
            "conns --rooms 3 --room-ids 1,2",
            "conns --connections 2 --processes 3 --room-ids 1",
            "conns",
        ] {
            let args: Vec<&str> = line.split(' ').collect();
            let cli = parse(&args).expect("parses");
            assert!(
                matches!(cli.validate(), Err(BenchError::Usage(_))),
                "{line}"
            );
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["fanout", "--duration", "0"]).is_err());
        assert!(parse(&["fanout", "--rate", "-1"]).is_err());
        assert!(parse(&["--url", "https://x", "conns"]).is_err());
        assert!(parse(&["conns", "--rooms", "0"]).is_err());
        assert!(parse(&["conns", "--processes", "0"]).is_err());
    }

    #[test]
    fn one_process_unless_asked_and_workers_are_told_by_a_hidden_flag() {
        let conns = |args: &[&str]| match parse(args).expect("parses").scenario {
            Scenario::Conns(conns) => conns,
            _ => panic!("conns expected"),
        };
        let one = conns(&["conns", "--room-ids", "1"]);
        assert_eq!((one.processes, one.worker), (1, false));
        let three = conns(&[
            "conns",
            "--connections",
            "300",
            "--processes",
            "3",
            "--room-ids",
            "1",
            crate::workers::WORKER_FLAG,
        ]);
        assert_eq!((three.processes, three.worker), (3, true));
        let cli = parse(&[
            "conns",
            "--connections",
            "3",
            "--processes",
            "3",
            "--room-ids",
            "1",
        ])
        .expect("parses");
        cli.validate().expect("one connection each");
        let mut command = Cli::command();
        let conns_help = command
            .find_subcommand_mut("conns")
            .expect("conns")
            .render_long_help()
            .to_string();
        assert!(conns_help.contains("--processes <K>"), "{conns_help}");
        assert!(!conns_help.contains("--worker"), "{conns_help}");
    }
}
