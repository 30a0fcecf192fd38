//! Where a scenario's clients connect: one server, or two nodes of a
//! [`Cluster`], so a scenario written once runs on both.

use crate::{Cluster, Site, TestDatabase, TestServer};

/// Where a scenario's clients connect, and the database behind.
#[derive(Clone, Copy)]
pub struct Nodes<'a> {
    /// Where the scenario's first clients connect.
    pub a: Site,
    /// Where the others connect: another node of a cluster, or `a` again.
    pub b: Site,
    /// The database every node uses.
    pub db: &'a TestDatabase,
}

impl<'a> Nodes<'a> {
    /// One server: `a` and `b` are the same.
    pub fn one(server: &'a TestServer) -> Nodes<'a> {
        Nodes {
            a: **server,
            b: **server,
            db: &server.db,
        }
    }

    /// A cluster's two nodes.
    pub fn two(cluster: &'a Cluster) -> Nodes<'a> {
        Nodes {
            a: *cluster.a,
            b: *cluster.b,
            db: &cluster.db,
        }
    }
}
