//! Two `whisper-server` processes sharing rooms through one Redis and one
//! PostgreSQL database, as behind a load balancer.
//!
//! Each cluster has a redis-server of its own (so a test can stop it, and
//! no other test's rooms share its channels) and a fresh database on the
//! shared PostgreSQL. The binary's path is passed in: only the
//! whisper-server crate's own tests know it (`CARGO_BIN_EXE_whisper-server`).

use whisper_testkit::RedisServer;

use crate::{ServerProcess, Session, Site, TestDatabase};

/// Two nodes on one database and one Redis. Everything it started stops
/// when it is dropped.
pub struct Cluster {
    /// The first node; it migrated the database.
    pub a: ServerProcess,
    /// The second node.
    pub b: ServerProcess,
    /// The shared database, for setting up users and rooms.
    pub db: TestDatabase,
    /// The cluster's own Redis.
    pub redis: RedisServer,
    binary: String,
    /// The flags every new node gets: the database (already migrated),
    /// Redis, and a rate limit far above a person's typing, since tests
    /// send in bursts.
    args: Vec<String>,
}

impl Cluster {
    /// Starts Redis, a fresh database and two nodes of `binary` (the path
    /// of a `whisper-server` executable).
    pub async fn start(binary: &str) -> Cluster {
        let redis = RedisServer::start();
        let database = whisper_testkit::postgres_database();
        let mut args: Vec<String> = [
            "--max-messages-per-second",
            "100000",
            "--redis-url",
            &redis.url(),
            "--database-url",
            &database,
        ]
        .map(str::to_owned)
        .to_vec();
        // The first node migrates; every later one starts on the migrated
        // schema.
        let a = ServerProcess::start(binary, &as_strs(&args));
        args.push("--no-migrate".to_owned());
        let b = ServerProcess::start(binary, &as_strs(&args));
        Cluster {
            a,
            b,
            db: TestDatabase::connect(&database).await,
            redis,
            binary: binary.to_owned(),
            args,
        }
    }

    /// Starts one more node on the cluster's database and Redis, with
    /// `extra` flags. Assigning it to [`a`](Self::a) or [`b`](Self::b)
    /// restarts that node (the old process is killed when dropped); the new
    /// one listens on another port.
    pub fn node(&self, extra: &[&str]) -> ServerProcess {
        ServerProcess::start(&self.binary, &[&as_strs(&self.args)[..], extra].concat())
    }

    /// Creates a user and logs in on `site` (sessions live in the
    /// database, so the session works on every node).
    pub async fn user(&self, site: &Site, name: &str, is_staff: bool) -> Session {
        self.db.create_user(name, "correct horse", is_staff).await;
        site.login(name, "correct horse").await.expect("login")
    }
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
