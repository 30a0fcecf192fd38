//! `broadcast --servers K`: the connections split over K server
//! processes, as over the K nodes of a chat server, with the load
//! generator split the same way.
//!
//! This process only coordinates. For each server it forks a server
//! process (single-threaded, accepting its share of the connections, the
//! same [`Server`] an unsplit run has) and a client process (the same
//! [`ClientJob`], owning the peers of that server's sockets and reporting
//! to it), as `--procs` runs one pair. For every broadcast it picks an
//! instant on `CLOCK_MONOTONIC` a little ahead and sends it to every
//! server; each sleeps until then, writes the frame to its sockets,
//! waits for its client's report and passes it on. The broadcast's
//! latency runs from that instant to the last read of any client, so a
//! server that woke late counts against it, as a late node would.
//!
//! Every part ends with the run: a server or client that fails says why
//! on stderr and exits, which its partner and then this process see; this
//! process kills and reaps every child it has not waited for, and a child
//! whose parent ends is killed by the kernel.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::control::{self, Message, ServerRound, Start, Totals};
use super::{Broadcasts, CONTROL_TIMEOUT, ClientJob, Measured, Sample, Server, measure, spawn};
use crate::cli::BroadcastArgs;
use crate::error::LimitError;
use crate::net;
use crate::sys::{self, ChildProcess};

/// Longest wait for a server to report a round: longer than the server's
/// own wait for its client, so that a stuck client is reported by its
/// server, which can say what happened.
const ROUND_TIMEOUT: Duration = Duration::from_secs(40);
/// Longest wait for a server to say that its client has connected: each
/// of its connections may take up to 30 s on its own, but all of them
/// normally take a few seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The least time between choosing a start and the start, so that every
/// server has been told by then.
const START_LEAD: Duration = Duration::from_millis(2);

/// Runs the broadcasts over `shares.len()` servers, `shares[i]`
/// connections for server `i`.
pub fn measure_servers(
    shares: &[usize],
    frame: &[u8],
    args: &BroadcastArgs,
) -> Result<Measured, LimitError> {
    let mut coordinator = Coordinator {
        nodes: Vec::with_capacity(shares.len()),
        lead: Duration::from_millis(args.gap_ms).max(START_LEAD),
    };
    for (index, &conns) in shares.iter().enumerate() {
        coordinator
            .nodes
            .push(Node::start(index, conns, frame, args)?);
    }
    // On an error the nodes are dropped: every child is killed and reaped.
    let measured = measure(&mut coordinator, args)?;
    for node in &mut coordinator.nodes {
        node.finish()?;
    }
    Ok(measured)
}

/// One server process, its client process, and the socket between this
/// process and the server.
struct Node {
    index: usize,
    channel: UnixStream,
    server: ChildProcess,
    client: ChildProcess,
}

impl Node {
    /// Forks server `index` and its client, for `conns` connections.
    fn start(
        index: usize,
        conns: usize,
        frame: &[u8],
        args: &BroadcastArgs,
    ) -> Result<Node, LimitError> {
        let listener = net::listen()?;
        let job = ClientJob::new(&listener, conns, frame.len(), args)?;
        let (control, client_control) = control::pair()?;
        control::time_out(&control, CONTROL_TIMEOUT)?;
        // Each closure owns what its child needs and, dropped here once
        // the child is forked, closes this process's copies. The client
        // goes first, and the server's socket to this process is made
        // after it: a process forked later holds no copy of the ends it
        // watches, so each sees its peer go (end of stream) at once.
        let client = spawn(&client_name(index), move || job.run(client_control))?;
        let (channel, server_channel) = control::pair()?;
        control::time_out(&channel, READY_TIMEOUT)?;
        control::time_out(&server_channel, start_timeout(args.servers))?;
        let rounds = args.warmup_samples + args.samples;
        let server = spawn(&server_name(index), move || {
            let server = Server::accept(listener, conns, frame.to_vec(), control, args.common.pin)?;
            follow(server, server_channel, rounds)
        })?;
        Ok(Node {
            index,
            channel,
            server,
            client,
        })
    }

    fn send(&mut self, message: &impl Message) -> Result<(), LimitError> {
        let name = server_name(self.index);
        control::send(&mut self.channel, message, &name).map_err(|error| self.failed(error))
    }

    fn receive<M: Message>(&mut self) -> Result<M, LimitError> {
        let name = server_name(self.index);
        control::receive(&mut self.channel, &name).map_err(|error| self.failed(error))
    }

    /// The error to end the run with after `error` on the server's socket:
    /// if the server has ended, its exit status (its own line on stderr
    /// says why).
    fn failed(&mut self, error: LimitError) -> LimitError {
        if error.follows_partner_failure() {
            self.server
                .wait(&server_name(self.index))
                .err()
                .unwrap_or(error)
        } else {
            error
        }
    }

    /// Waits for both processes to end; an error unless both succeeded.
    fn finish(&mut self) -> Result<(), LimitError> {
        self.server.wait(&server_name(self.index))?;
        self.client.wait(&client_name(self.index))
    }
}

fn server_name(index: usize) -> String {
    format!("server process {index}")
}

fn client_name(index: usize) -> String {
    format!("client process {index}")
}

/// Longest wait of a server for its next start: longer than the
/// coordinator may take to hear from all `servers` servers, so that a
/// stuck server is reported by the coordinator, not by the others.
fn start_timeout(servers: usize) -> Duration {
    READY_TIMEOUT.saturating_mul(u32::try_from(servers + 1).unwrap_or(u32::MAX))
}

/// A server process's life: reports when its client is ready, then starts
/// every round at the instant the coordinator gives and reports it.
fn follow(
    mut server: Server,
    mut coordinator: UnixStream,
    rounds: usize,
) -> Result<(), LimitError> {
    control::send(&mut coordinator, &server.ready()?, "coordinator")?;
    for _ in 0..rounds {
        let start: Start = control::receive(&mut coordinator, "coordinator")?;
        sys::sleep_until(start.at_ns);
        control::send(&mut coordinator, &server.round()?, "coordinator")?;
    }
    Ok(())
}

/// This process, driving the servers.
struct Coordinator {
    nodes: Vec<Node>,
    /// From choosing a start to the start: the pause between broadcasts.
    lead: Duration,
}

impl Broadcasts for Coordinator {
    fn ready(&mut self) -> Result<Vec<Totals>, LimitError> {
        let ready = self
            .nodes
            .iter_mut()
            .map(Node::receive)
            .collect::<Result<Vec<Totals>, _>>()?;
        for node in &self.nodes {
            control::time_out(&node.channel, ROUND_TIMEOUT)?;
        }
        Ok(ready)
    }

    fn broadcast(&mut self) -> Result<Sample, LimitError> {
        let start = Start {
            at_ns: sys::monotonic_ns() + self.lead.as_nanos() as u64,
        };
        for node in &mut self.nodes {
            node.send(&start)?;
        }
        let servers = self
            .nodes
            .iter_mut()
            .map(Node::receive)
            .collect::<Result<Vec<ServerRound>, _>>()?;
        Ok(Sample {
            start_ns: start.at_ns,
            servers,
        })
    }
}
