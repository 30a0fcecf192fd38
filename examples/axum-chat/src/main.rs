//! An existing axum service with Whisper's chat mounted at `/v1/chat`.
//!
//! `cargo run -p whisper-example-axum-chat [-- ADDRESS]` (default
//! `127.0.0.1:3000`), then connect a WebSocket client with a token:
//!
//! ```text
//! websocat -H 'Authorization: Bearer ann-token' ws://127.0.0.1:3000/v1/chat
//! {"command":"join","room":1}
//! {"command":"send","room":1,"message":"hello"}
//! ```

use whisper_example_axum_chat::{demo, router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());

    let (tokens, chat) = demo();

    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!(
        "listening on http://{}/ (chat: ws://{}/v1/chat, tokens ann-token, bob-token)",
        listener.local_addr()?,
        listener.local_addr()?
    );
    axum::serve(listener, router(tokens, chat)).await
}
