//! Whisper's server: HTTP pages and API and the WebSocket chat consumer,
//! over any [`whisper_rooms::ChannelLayer`] and the rooms of
//! [`whisper_store`].
//!
//! The code map (see ARCHITECTURE.md for the whole workspace):
//! - `server`: the accept loop, one task per HTTP connection, graceful
//!   shutdown (stop accepting, close WebSockets with 1001, drain);
//! - `http`: the axum router (each route declared once), its handlers
//!   and extractors, one error type mapped to responses in one place,
//!   CSRF, cookies and the page templates;
//! - `client_addr`: the client's address, from forwarding headers only
//!   when the peer is a trusted proxy;
//! - `websocket`: the upgrade handshake (session and Origin checks);
//! - `consumer`: one WebSocket's life: the transport around the chat
//!   rules of `whisper-chat` (frames in, their answers and room events out);
//! - `frames`: room events written as text frames, one vectored write per
//!   batch, without copying.
//!
//! Starting a server on a free port, as the tests do:
//!
//! ```no_run
//! # async fn run() -> Result<(), whisper_server::ServerError> {
//! use whisper_rooms::MemoryLayer;
//! use whisper_server::{Config, Server};
//!
//! let config = Config { bind: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
//! let server = Server::bind(config, MemoryLayer::default()).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

mod client_addr;
mod config;
mod connections;
mod consumer;
mod frames;
pub(crate) mod http;
mod metrics;
mod moderation;
mod open_sockets;
mod ping_wheel;
mod server;
mod state;
mod websocket;

/// The room catalog, kept at the crate root where the server's handlers and
/// its users have always found it; it lives in `whisper-store` so that tools
/// without HTTP (`whisper-manage`) can use it.
pub use whisper_store::{CatalogError, Room, RoomCatalog};

/// The parsers that read untrusted HTTP input, public so the fuzz targets
/// and property tests can drive them directly.
#[doc(hidden)]
pub mod parsing {
    pub use crate::client_addr::client_address;
    pub use crate::http::{cookie, parse_form};
}
pub use client_addr::{InvalidProxy, TrustedProxy};
pub use config::Config;
pub use server::{Server, ServerError};
