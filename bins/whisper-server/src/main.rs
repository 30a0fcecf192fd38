//! `whisper-server`: flags and environment to [`Config`], then serve until
//! SIGINT or SIGTERM.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use whisper_rooms::{ChannelLayer, LayerConfig, MemoryLayer, RedisConfig, RedisLayer};
use whisper_server::{Config, Server, TrustedProxy};

/// Whisper: multi-room real-time chat.
///
/// Serves the chat page, the account pages and the WebSocket at
/// /chat/stream/. Every flag can also be set through the environment
/// variable named in its help.
// Defaults are read from `Config::default()` and `LayerConfig::default()`,
// never written here a second time: the libraries own their settings, and
// the test below fails if a flag's default drifts from them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "WHISPER_BIND", default_value_t = Config::default().bind)]
    bind: SocketAddr,
    /// Database URL (SQLite file by default).
    #[arg(long, env = "DATABASE_URL", default_value_t = Config::default().database_url)]
    database_url: String,
    /// Redis URL for a channel layer shared by several nodes; unset means
    /// the in-memory layer (one node).
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Origins allowed to open the WebSocket (comma-separated
    /// `scheme://host[:port]`); unset means the request's own host.
    #[arg(long, env = "WHISPER_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origin: Vec<String>,
    /// Whether anyone may sign up.
    #[arg(long, env = "WHISPER_OPEN_SIGNUP", default_value_t = Config::default().open_signup,
          action = clap::ArgAction::Set)]
    open_signup: bool,
    /// Mark cookies Secure (serve over HTTPS).
    #[arg(long, env = "WHISPER_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Longest chat message, in bytes.
    #[arg(long, env = "WHISPER_MAX_MESSAGE_BYTES",
          default_value_t = Config::default().max_message_bytes,
          value_parser = RangedU64ValueParser::<usize>::from(1..=1_048_576))]
    max_message_bytes: usize,
    /// Most rooms one connection may be in at once.
    #[arg(long, env = "WHISPER_MAX_ROOMS_PER_CONNECTION",
          default_value_t = Config::default().max_rooms_per_connection,
          value_parser = RangedU64ValueParser::<usize>::from(1..))]
    max_rooms_per_connection: usize,
    /// Bytes of events that may wait for one slow connection: past half,
    /// its presence and typing notices are dropped; past all, it is closed
    /// (1013).
    #[arg(long, env = "WHISPER_MAX_QUEUED_BYTES",
          default_value_t = LayerConfig::default().max_queued_bytes,
          value_parser = RangedU64ValueParser::<usize>::from(1024..=1 << 30))]
    max_queued_bytes: usize,
    /// Milliseconds presence and typing notices may wait for a
    /// connection's next write while nothing else is queued for it: in a
    /// burst of joins, each member gets one write per wait, not one per
    /// notice. 0 writes every notice at once.
    #[arg(long, env = "WHISPER_NOTICE_DELAY_MS",
          default_value_t = millis(LayerConfig::default().expendable_delay),
          value_parser = clap::value_parser!(u64).range(0..=5000))]
    notice_delay_ms: u64,
    /// Seconds a room's presence lives without updates.
    #[arg(long, env = "WHISPER_PRESENCE_TTL_S",
          default_value_t = LayerConfig::default().presence_ttl.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    presence_ttl_s: u64,
    /// Frames per second one WebSocket may send on average (bursts of twice
    /// as many pass; joins count apart, in bursts of the rooms per
    /// connection); past it frames are answered RATE_LIMITED.
    #[arg(long, env = "WHISPER_MAX_MESSAGES_PER_SECOND",
          default_value_t = Config::default().max_messages_per_second,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_messages_per_second: u32,
    /// Most WebSockets one user may have open on this node.
    #[arg(long, env = "WHISPER_MAX_CONNECTIONS_PER_USER",
          default_value_t = Config::default().max_connections_per_user,
          value_parser = RangedU64ValueParser::<usize>::from(1..))]
    max_connections_per_user: usize,
    /// Most TCP connections open at once, WebSockets included; one more is
    /// answered 503. Default: the open-file limit less 128.
    #[arg(long, env = "WHISPER_MAX_CONNECTIONS",
          default_value_t = Config::default().max_connections,
          value_parser = RangedU64ValueParser::<usize>::from(1..))]
    max_connections: usize,
    /// Most messages kept per room; older ones are removed. 0 keeps all.
    #[arg(long, env = "WHISPER_HISTORY_MAX_PER_ROOM",
          default_value_t = Config::default().history_max_per_room)]
    history_max_per_room: u64,
    /// Oldest message kept, as 30d, 12h, 90m or 45s; older ones are
    /// removed. 0 keeps all.
    #[arg(long, env = "WHISPER_HISTORY_MAX_AGE",
          default_value = "30d", value_parser = whisper_cli::parse_span)]
    history_max_age: Duration,
    /// Reverse proxies whose X-Forwarded-For / X-Real-IP names the client
    /// (comma-separated addresses or networks, e.g. 127.0.0.1,10.0.0.0/8);
    /// unset means none, and the client is the TCP peer. Login and signup
    /// limits count per client.
    #[arg(long, env = "WHISPER_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<TrustedProxy>,
    /// Do not apply pending database migrations at start.
    #[arg(long, env = "WHISPER_NO_MIGRATE")]
    no_migrate: bool,
    /// How log lines are written on stderr: `text` for people, `json` (one
    /// object per line) for log collectors.
    #[arg(long, env = "WHISPER_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
}

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// tracing's human-readable lines, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for collectors that parse fields.
    Json,
}

impl Args {
    fn into_config(self) -> (Config, LayerConfig, Option<String>) {
        let config = Config {
            bind: self.bind,
            database_url: self.database_url,
            allowed_origins: self.allowed_origin,
            open_signup: self.open_signup,
            secure_cookies: self.secure_cookies,
            max_message_bytes: self.max_message_bytes,
            max_rooms_per_connection: self.max_rooms_per_connection,
            max_messages_per_second: self.max_messages_per_second,
            max_connections_per_user: self.max_connections_per_user,
            max_connections: self.max_connections,
            trusted_proxies: self.trusted_proxies,
            migrate: !self.no_migrate,
            history_max_per_room: self.history_max_per_room,
            history_max_age: self.history_max_age,
            ..Config::default()
        };
        let layer = LayerConfig {
            max_queued_bytes: self.max_queued_bytes,
            expendable_delay: Duration::from_millis(self.notice_delay_ms),
            presence_ttl: Duration::from_secs(self.presence_ttl_s),
        };
        (config, layer, self.redis_url)
    }
}

/// A default delay as the flag shows it.
fn millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), in `format`.
/// Colour codes only reach a terminal: in a file or a collector they are
/// noise that every reader has to strip.
fn init_logging(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match whisper_cli::parse::<Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    init_logging(args.log_format);
    let (config, layer_config, redis_url) = args.into_config();
    // The URLs whose passwords the error line must not show: the server's
    // own message names the database URL, and drivers may quote either.
    let urls_with_secrets: Vec<String> = std::iter::once(config.database_url.clone())
        .chain(redis_url.clone())
        .collect();
    let served = match redis_url {
        None => serve(config, MemoryLayer::new(layer_config)).await,
        Some(url) => {
            let redis = RedisConfig {
                layer: layer_config,
                ..RedisConfig::new(url)
            };
            match RedisLayer::connect(redis).await {
                Ok(layer) => serve(config, layer).await,
                Err(error) => Err(format!("cannot use Redis: {error}")),
            }
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let masked = urls_with_secrets.iter().fold(message, |message, url| {
                whisper_cli::mask_password(&message, url)
            });
            whisper_cli::report(&masked, whisper_cli::FAILED)
        }
    }
}

/// Binds, announces the URL on stdout, and serves until a signal.
async fn serve<L: ChannelLayer>(config: Config, layer: L) -> Result<(), String> {
    let server = Server::bind(config, layer)
        .await
        .map_err(|error| error.to_string())?;
    println!("Whisper is listening on http://{}/", server.local_addr());
    server
        .run(shutdown_signal())
        .await
        .map_err(|error| error.to_string())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    /// The flags as parsed from an empty command line, with the
    /// environment ignored (a developer's `DATABASE_URL` must not fail it).
    fn parsed_without_arguments() -> Args {
        let command = Args::command().mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["whisper-server"])
            .expect("no arguments are valid");
        Args::from_arg_matches(&matches).expect("matches of Args")
    }

    #[test]
    fn every_flag_defaults_to_the_library_default() {
        let args = parsed_without_arguments();
        assert_eq!(args.log_format, LogFormat::Text);
        let (config, layer, redis_url) = args.into_config();
        assert_eq!(redis_url, None);

        // Whole structs compared, so a new field is compared too.
        assert_eq!(config, Config::default());
        assert_eq!(layer, LayerConfig::default());
    }
}
