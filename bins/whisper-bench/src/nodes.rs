//! The server nodes a run spreads its connections over: one server, or
//! several sharing rooms through Redis (every node started with the same
//! `--redis-url` and `--database-url`), as behind a load balancer.
//!
//! Every room's members are dealt to the nodes in turn (member `i` of a
//! room connects to node `i mod N`), so a room of 100 over two nodes has
//! 50 on each, and the senders, being a room's first members, are spread
//! the same way: every broadcast crosses Redis to the other nodes.
//!
//! Accounts are signed up on the first node only: sessions live in the
//! shared database, so the session cookie is good on every node. The
//! Origin header, however, is per node: each socket sends the Origin of the
//! node it connects to, since a server checks Origin against its own host.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::Url;

use crate::connection::Target;
use crate::error::BenchError;

/// The resolved nodes, in `--url` order; never empty.
#[derive(Debug, Clone)]
pub struct Nodes {
    targets: Vec<Arc<Target>>,
}

impl Nodes {
    /// Resolves every node's base URL.
    pub async fn resolve(urls: &[Url]) -> Result<Nodes, BenchError> {
        if urls.is_empty() {
            return Err(BenchError::Usage("give the server's URL with --url".into()));
        }
        let mut targets = Vec::with_capacity(urls.len());
        for url in urls {
            targets.push(Arc::new(Target::resolve(url).await?));
        }
        Ok(Nodes { targets })
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// The node users sign up on (their sessions work on every node).
    pub fn first(&self) -> &Arc<Target> {
        &self.targets[0]
    }

    /// The node the `position`th member of a room (counting from 0)
    /// connects to: round robin, so each room spans every node.
    pub fn for_member(&self, position: usize) -> &Arc<Target> {
        &self.targets[position % self.targets.len()]
    }

    /// The nodes' socket addresses.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.targets.iter().map(|target| target.addr)
    }

    /// The nodes' base URLs, for the report's `params.url`.
    pub fn urls(&self) -> Vec<&str> {
        self.targets
            .iter()
            .map(|target| target.base.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn nodes(urls: &[&str]) -> Nodes {
        let urls: Vec<Url> = urls
            .iter()
            .map(|url| Url::parse(url).expect("url"))
            .collect();
        Nodes::resolve(&urls).await.expect("resolves")
    }

    #[tokio::test]
    async fn members_of_a_room_alternate_between_nodes() {
        let nodes = nodes(&["http://127.0.0.1:8001", "http://127.0.0.1:8002"]).await;
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes.urls(),
            ["http://127.0.0.1:8001/", "http://127.0.0.1:8002/"]
        );
        assert_eq!(nodes.first().addr.port(), 8001);
        let ports: Vec<u16> = (0..5)
            .map(|position| nodes.for_member(position).addr.port())
            .collect();
        assert_eq!(ports, [8001, 8002, 8001, 8002, 8001]);
        // A room of 100: 50 on each node.
        let on_first = (0..100)
            .filter(|&position| nodes.for_member(position).addr.port() == 8001)
            .count();
        assert_eq!(on_first, 50);
    }

    #[tokio::test]
    async fn one_node_takes_everyone() {
        let nodes = nodes(&["http://127.0.0.1:8001"]).await;
        assert!((0..10).all(|position| nodes.for_member(position).addr.port() == 8001));
        assert_eq!(nodes.addrs().count(), 1);
    }

    #[tokio::test]
    async fn no_node_is_a_usage_error() {
        assert!(matches!(
            Nodes::resolve(&[]).await,
            Err(BenchError::Usage(_))
        ));
    }
}
