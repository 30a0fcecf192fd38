//! A chromedriver process of the test's own, for real-browser tests.
//!
//! Each test starts its own chromedriver on a free loopback port, so tests
//! run in parallel without sharing a browser, and stops it when dropped.
//! Stopping asks chromedriver to shut down first (`GET /shutdown`), which
//! quits every Chromium it started, and only then kills it: a test that
//! panics halfway leaves no browser behind.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// Where `scripts/test` (Debian's chromium-driver package) puts chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where `scripts/test` (Debian's chromium package) puts Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Longest wait for chromedriver to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for chromedriver to exit after `/shutdown`.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The Chromium binary, or a panic naming `scripts/test` when it is missing:
/// a browser test never passes because there was no browser.
pub fn chromium_binary() -> &'static str {
    require(CHROMIUM, "chromium");
    CHROMIUM
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: run the tests through scripts/test, which installs {package}"
    );
}

/// A running chromedriver on a loopback port. Shut down (with its browsers)
/// when dropped.
pub struct ChromeDriver {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl ChromeDriver {
    /// Starts chromedriver on a free port and waits until it accepts
    /// connections. Panics, naming `scripts/test`, when chromedriver or
    /// Chromium is not installed.
    pub fn start() -> ChromeDriver {
        require(CHROMEDRIVER, "chromium-driver");
        chromium_binary();
        let dir = tempfile::tempdir().expect("temporary directory");
        // The port is free when picked but could be taken before chromedriver
        // binds it; a chromedriver that exits at once gets a new port.
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            match spawn(port, dir.path()) {
                Ok(child) => {
                    return ChromeDriver {
                        port,
                        child: Some(child),
                        dir,
                    };
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("chromedriver did not start: {last_failure}");
    }

    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A fresh, empty directory under this driver's own temporary folder,
    /// removed after chromedriver and its browsers have stopped: suits a
    /// browser profile (`--user-data-dir`).
    pub fn new_profile_dir(&self) -> std::path::PathBuf {
        let profiles = self.dir.path().join("profiles");
        std::fs::create_dir_all(&profiles).expect("profiles directory");
        tempfile::Builder::new()
            .prefix("profile-")
            .tempdir_in(&profiles)
            .expect("profile directory")
            .keep()
    }

    /// Shuts chromedriver down, closing its browsers, and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        request_shutdown(self.port);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts chromedriver on `port` and waits until it listens; on failure,
/// says why (its exit status and the end of its log).
fn spawn(port: u16, dir: &Path) -> Result<Child, String> {
    let log = dir.join(format!("chromedriver-{port}.log"));
    let mut child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("{CHROMEDRIVER}: {error}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(child);
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(format!("on port {port}: exit {exited:?}, log: {tail}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /shutdown`: chromedriver quits its sessions' browsers and exits.
fn request_shutdown(port: u16) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(STOP_TIMEOUT));
    let request =
        format!("GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_ok() {
        // The reply (or the connection closing) means it is on its way out.
        let _ = stream.read(&mut [0; 256]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromedriver_starts_answers_and_stops() {
        let mut driver = ChromeDriver::start();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, driver.port));
        let mut stream = TcpStream::connect(addr).expect("chromedriver listens");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("request");
        // chromedriver keeps the connection open: read until the body is in.
        let mut reply = Vec::new();
        let mut buffer = [0; 4096];
        while !String::from_utf8_lossy(&reply).contains("\"ready\"") {
            let n = stream.read(&mut buffer).expect("reply within 10 s");
            assert!(n > 0, "reply: {}", String::from_utf8_lossy(&reply));
            reply.extend_from_slice(&buffer[..n]);
        }
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        drop(stream);
        driver.stop();
        assert!(TcpStream::connect(addr).is_err());
    }
}
