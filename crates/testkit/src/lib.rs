//! Real services for tests, and nothing else: no mocks.
//!
//! `scripts/test` starts one redis-server and one PostgreSQL on loopback
//! ports and exports their URLs as `WHISPER_TEST_REDIS_URL` and
//! `WHISPER_TEST_POSTGRES_URL`. Tests that need them call [`redis_url`] or
//! [`postgres_database`], which fail loudly, naming `scripts/test`, when the
//! variables are missing: a test never passes because its service was absent.
//!
//! Tests that stop and restart Redis get a private server of their own
//! ([`RedisServer`]) so they disturb no other test.
//!
//! Browser tests start a chromedriver of their own ([`ChromeDriver`]), which
//! drives the Chromium that `scripts/test` installs; a missing browser or
//! driver fails the test, naming `scripts/test`.
//!
//! Only std and tempfile: the crate adds nothing to the dependency tree of
//! the crates that use it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

pub mod chromedriver;
pub use chromedriver::ChromeDriver;
mod postgres;
pub use postgres::PostgresServer;

/// The variable naming the shared Redis.
pub const REDIS_URL_VAR: &str = "WHISPER_TEST_REDIS_URL";
/// The variable naming the shared PostgreSQL (a superuser's URL).
pub const POSTGRES_URL_VAR: &str = "WHISPER_TEST_POSTGRES_URL";

fn required_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts the service")
    })
}

/// The shared Redis's URL. Tests sharing it must use their own key prefix.
pub fn redis_url() -> String {
    required_var(REDIS_URL_VAR)
}

/// A name no other test in this run uses: process id, a counter, and time.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Creates a fresh, empty database on the shared PostgreSQL and returns its
/// URL, so each test has a schema of its own.
pub fn postgres_database() -> String {
    let admin = required_var(POSTGRES_URL_VAR);
    let name = unique_name("whisper_test");
    let status = Command::new("psql")
        .args([admin.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .stdout(Stdio::null())
        .status()
        .expect("psql runs (scripts/test installs PostgreSQL)");
    assert!(status.success(), "CREATE DATABASE {name} failed");
    let (base, _) = admin.rsplit_once('/').expect("URL ends with /database");
    format!("{base}/{name}")
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// A redis-server process of the test's own, on a loopback port, with no
/// persistence. Stopped when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a redis-server on a free port and waits until it accepts
    /// connections.
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on (the same after [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (as a crash would); clients see their connections
    /// drop and new ones refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("x"), unique_name("x"));
    }

    #[test]
    fn a_private_redis_server_starts_stops_and_restarts_on_its_port() {
        let mut redis = RedisServer::start();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, redis.port()));
        assert!(TcpStream::connect(addr).is_ok());
        redis.stop();
        assert!(TcpStream::connect(addr).is_err());
        redis.restart();
        assert!(TcpStream::connect(addr).is_ok());
    }
}
