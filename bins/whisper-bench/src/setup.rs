//! What every scenario starts from: the resolved server nodes, the
//! command-line choices that shape connections, and the users and rooms a
//! run needs.

use std::fmt::Display;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use whisper_protocol::RoomId;

use crate::cli::Common;
use crate::connection::{ConnectError, Connection, Protocol, SourceAddresses, Target};
use crate::error::BenchError;
use crate::nodes::Nodes;
use crate::{accounts, procfs, rooms};

/// Connections per source address when `--source-ips` is not given: well
/// under the ~28,000 ephemeral ports each address has.
const CONNECTIONS_PER_SOURCE_IP: usize = 10_000;
/// Descriptors the bench needs besides its sockets (stdio, runtime, HTTP
/// client, slack).
const SPARE_FILES: u64 = 64;

/// A scenario's starting point.
pub struct Setup {
    /// The server nodes connections are spread over.
    pub nodes: Nodes,
    /// The command line's shared options.
    pub common: Common,
    /// Worker threads of the runtime, for the report.
    pub threads: usize,
}

/// What a scenario gets for `connections` sockets in `rooms` rooms.
pub struct Resources {
    /// The rooms, in order.
    pub rooms: Vec<RoomId>,
    /// One `Cookie` header per signed-up user; connection `i` uses
    /// `cookies[i % cookies.len()]`.
    pub cookies: Vec<String>,
    /// Source addresses to bind to.
    pub sources: SourceAddresses,
}

/// What opening one client socket takes: the node it connects to, the user
/// it is (by session cookie) and the local address it binds.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// The node it connects to.
    pub target: Arc<Target>,
    /// Its `Cookie` header.
    pub cookie: String,
    /// The local address it binds to (`None`: the kernel's choice).
    pub source: Option<IpAddr>,
}

impl ClientSpec {
    /// Opens the socket ([`Connection::open`]).
    pub async fn open(
        &self,
        read_buffer: usize,
        protocol: Protocol,
    ) -> Result<Connection, ConnectError> {
        Connection::open(
            &self.target,
            &self.cookie,
            self.source,
            read_buffer,
            protocol,
        )
        .await
    }
}

impl Resources {
    /// Connection `index` of a run, on node `index mod N` (its place in a
    /// room, when all are in one), as the user and from the source address
    /// the fields above give it.
    pub fn client(&self, nodes: &Nodes, index: usize) -> ClientSpec {
        ClientSpec {
            target: nodes.for_member(index).clone(),
            cookie: self.cookies[index % self.cookies.len()].clone(),
            source: self.sources.nth(index),
        }
    }
}

impl Setup {
    /// Checks the open-files limit, provides the rooms, signs up users (on
    /// the first node).
    pub async fn resources(
        &self,
        connections: usize,
        rooms: usize,
    ) -> Result<Resources, BenchError> {
        self.resources_opening(connections, rooms, connections)
            .await
    }

    /// [`Setup::resources`] for a run that spreads its `connections` over
    /// several processes: this one opens only `here` files (sockets and
    /// pipes), so only those are checked against its open-files limit;
    /// users and source addresses are still provided for all.
    pub async fn resources_opening(
        &self,
        connections: usize,
        rooms: usize,
        here: usize,
    ) -> Result<Resources, BenchError> {
        ensure_sockets(here)?;
        let room_ids = rooms::provide(&self.common, rooms).await?;
        let per_user = self.common.connections_per_user as usize;
        let users = connections.div_ceil(per_user).max(1);
        let cookies = accounts::sign_up(self.nodes.first(), users).await?;
        let source_ips = self.common.source_ips.unwrap_or_else(|| {
            u32::try_from(connections.div_ceil(CONNECTIONS_PER_SOURCE_IP).max(1)).unwrap_or(1)
        });
        Ok(Resources {
            rooms: room_ids,
            cookies,
            sources: SourceAddresses::new(source_ips, self.nodes.addrs()),
        })
    }
}

/// Raises the open-files limit for `sockets` sockets and the few files
/// every run needs besides, or says why it cannot.
pub fn ensure_sockets(sockets: usize) -> Result<(), BenchError> {
    procfs::ensure_open_files(sockets as u64 + SPARE_FILES)
        .map(drop)
        .map_err(BenchError::Limits)
}

/// How the sockets' joins went, shared by the tasks that make them: the
/// controller waits until all have joined, and gives up at the first
/// failure, naming it.
#[derive(Debug, Default)]
pub(crate) struct JoinTally {
    /// Sockets joined so far.
    pub(crate) joined: AtomicUsize,
    /// Sockets that could not join.
    pub(crate) failed: AtomicUsize,
    first_failure: Mutex<Option<String>>,
}

impl JoinTally {
    /// Counts a socket that joined.
    pub(crate) fn join(&self) {
        self.joined.fetch_add(1, Ordering::Release);
    }

    /// Counts a socket that could not join; the first reason is kept.
    pub(crate) fn fail(&self, error: &impl Display) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| error.to_string());
    }

    /// Why the first socket could not join, if one could not.
    pub(crate) fn first_failure(&self) -> Option<String> {
        self.first_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}
