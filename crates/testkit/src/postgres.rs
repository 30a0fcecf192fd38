//! A private PostgreSQL server, for tests that stop and restart it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::free_port;

/// A PostgreSQL server of the test's own on a loopback port, with trust
/// authentication for the superuser `whisper`. Stopped when dropped.
///
/// PostgreSQL refuses to run as root, so as root its commands run as the
/// `postgres` user (which Debian's package creates).
pub struct PostgresServer {
    port: u16,
    dir: TempDir,
    running: bool,
}

impl PostgresServer {
    /// Creates a cluster in a temporary folder and starts it.
    pub fn start() -> PostgresServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        if is_root() {
            run("chmod", &["755".into(), dir.path().display().to_string()]);
            run(
                "chown",
                &["postgres".into(), dir.path().display().to_string()],
            );
        }
        let server = PostgresServer {
            port: free_port(),
            dir,
            running: false,
        };
        let data = server.data().display().to_string();
        server.pg(
            "initdb",
            &["-D", &data, "-U", "whisper", "-A", "trust", "--no-sync"],
        );
        let mut server = server;
        server.restart();
        server
    }

    /// `postgres://whisper@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://whisper@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server at once (as a crash or an outage would).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data().display().to_string();
            self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
            self.running = false;
        }
    }

    /// Starts it (again) on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        let data = self.data().display().to_string();
        let log = self.dir.path().join("log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.pg(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        );
        self.running = true;
    }

    /// Runs one of PostgreSQL's programs and insists that it succeeds.
    fn pg(&self, program: &str, args: &[&str]) {
        assert!(self.pg_succeeds(program, args), "{program} {args:?} failed");
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when we are root.
    fn pg_succeeds(&self, program: &str, args: &[&str]) -> bool {
        let path = pg_bin().join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        command
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{program} runs (scripts/test installs PostgreSQL): {e}"))
            .success()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            let data = self.data().display().to_string();
            let _ = self.pg_succeeds("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// The newest installed PostgreSQL's programs.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test installs it)")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect("a PostgreSQL with pg_ctl")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn run(program: &str, args: &[String]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?}");
}
