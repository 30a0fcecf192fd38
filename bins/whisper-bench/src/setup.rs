//! What every scenario starts from: the resolved server nodes, the
//! command-line choices that shape connections, and the users and rooms a
//! run needs.

use whisper_protocol::RoomId;

use crate::cli::Common;
use crate::connection::SourceAddresses;
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

impl Setup {
    /// Checks the open-files limit, provides the rooms, signs up users (on
    /// the first node).
    pub async fn resources(
        &self,
        connections: usize,
        rooms: usize,
    ) -> Result<Resources, BenchError> {
        procfs::ensure_open_files(connections as u64 + SPARE_FILES).map_err(BenchError::Limits)?;
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
