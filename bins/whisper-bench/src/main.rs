//! `whisper-bench`: a load generator that speaks Whisper's protocol the way
//! browsers do, and reports one JSON line per run.
//!
//! Map: [`cli`] parses, [`nodes`] are the server nodes connections are
//! spread over, [`setup`] provides rooms ([`rooms`]) and users
//! ([`accounts`]), [`connection`] opens and drives one WebSocket (v1 or
//! v2), [`frame`] is WebSocket framing, [`incoming`] reads server frames
//! cheaply, [`stamp`] is what every message carries, [`sequence`] checks
//! v2 seqs, [`fill`] stores messages in rooms, and the scenarios are
//! [`fanout`], [`conns`], [`recovery`] and [`history`]; `conns` runs its
//! connections as [`crowd`]s, over several processes with [`workers`].
//! [`window`] is a run's measured part, [`procfs`] reads CPU and memory,
//! [`latency`] holds histograms, [`xorshift`] draws cheap random numbers,
//! [`progress`] talks to the human on stderr.

use std::process::ExitCode;
use std::time::Duration;

mod accounts;
mod cli;
mod connection;
mod conns;
mod crowd;
mod error;
mod fanout;
mod fill;
mod frame;
mod history;
mod incoming;
mod latency;
mod nodes;
mod procfs;
mod progress;
mod recovery;
mod rooms;
mod sequence;
mod setup;
mod stamp;
mod window;
mod workers;
mod xorshift;

use cli::{Cli, Scenario};
use error::BenchError;
use nodes::Nodes;
use setup::Setup;

fn main() -> ExitCode {
    let cli = match whisper_cli::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Err(error) = cli.validate() {
        return error.report();
    }
    let threads = cli.common.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, usize::from),
        |threads| threads as usize,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return BenchError::Runtime(error).report(),
    };
    let outcome = runtime.block_on(run(cli, threads));
    // Tasks still reading are not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(Some(report)) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => error.report(),
    }
}

/// Runs the scenario; its report, or `None` for a `conns` worker, whose
/// reports went to the process that started it as the run went.
async fn run(cli: Cli, threads: usize) -> Result<Option<serde_json::Value>, BenchError> {
    let setup = Setup {
        nodes: Nodes::resolve(&cli.common.urls).await?,
        common: cli.common,
        threads,
    };
    match &cli.scenario {
        Scenario::Conns(args) if args.worker => workers::serve(&setup).await.map(|()| None),
        Scenario::Fanout(args) => fanout::run(args, &setup).await.map(Some),
        Scenario::Conns(args) => conns::run(args, &setup).await.map(Some),
        Scenario::Recovery(args) => recovery::run(args, &setup).await.map(Some),
        Scenario::History(args) => history::run(args, &setup).await.map(Some),
    }
}
