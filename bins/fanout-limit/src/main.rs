//! `fanout-limit`: the kernel-bound ceiling of WebSocket-style chat
//! fan-out over loopback TCP on this machine, measured with exactly two
//! busy threads, a server and a client (or K of each, in processes of
//! their own, with `broadcast --servers K`), and no server logic at all (no
//! HTTP upgrade, no JSON, no database, no async runtime). What it reports
//! is roughly the best any chat server can do here, so Whisper's figures
//! are read against it. `README.md` says what each mode measures and how
//! to read the output.
//!
//! Map: [`cli`] parses, [`broadcast`] and [`fanout`] are the two modes,
//! [`net`] opens the loopback sockets, [`frame`] is WebSocket framing,
//! [`cpu`] reads where CPU time went, [`report`] writes the JSON line,
//! [`error`] says why a run failed, and [`sys`] holds every system call
//! (and every `unsafe` block).

use std::process::ExitCode;

mod broadcast;
mod cli;
mod cpu;
mod error;
mod fanout;
mod frame;
mod net;
mod report;
#[expect(
    unsafe_code,
    reason = "the raw system calls are what this tool measures; each block says why it is sound"
)]
mod sys;

use cli::{Cli, Mode};

fn main() -> ExitCode {
    let cli = match whisper_cli::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Err(message) = cli.check() {
        return whisper_cli::report(&message, whisper_cli::BAD_INPUT);
    }
    let outcome = match &cli.mode {
        Mode::Broadcast(args) => broadcast::run(args),
        Mode::Fanout(args) => fanout::run(args),
    };
    match outcome {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => error.report(),
    }
}
