//! whisper-chat's host scenarios, run through this service's WebSocket:
//! the example keeps the same rules as Whisper's own server, because it
//! runs the same `whisper_chat::Connection`, and its transport keeps their
//! order.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use whisper_chat::testing::{self, ScenarioClient, ScenarioHost, ScriptedLayer};
use whisper_chat::{Chat, ChatUser, Limits, MemoryLog, StaticRooms};
use whisper_example_axum_chat::{Tokens, router};

/// The service on a free loopback port, over a [`ScriptedLayer`]; the
/// server task ends with the test's runtime.
struct ServiceHost {
    address: std::net::SocketAddr,
    chat: Arc<Chat<ScriptedLayer, StaticRooms, MemoryLog>>,
}

/// Each scenario user's token is their username.
async fn start_service(limits: Limits) -> ServiceHost {
    let mut tokens = Tokens::default();
    for user in [testing::ann(), testing::bob(), testing::carol()] {
        tokens.insert(user.username.clone(), user);
    }
    let chat = Arc::new(Chat::new(
        ScriptedLayer::default(),
        testing::rooms(),
        MemoryLog::default(),
        limits,
    ));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free loopback port");
    let address = listener.local_addr().expect("bound address");
    let app = router(tokens, chat.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the service runs");
    });
    ServiceHost { address, chat }
}

struct SocketClient(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl ScenarioHost for ServiceHost {
    type Client = SocketClient;

    async fn connect(&self, user: ChatUser) -> SocketClient {
        let url = format!("ws://{}/v1/chat?token={}", self.address, user.username);
        let (socket, _) = connect_async(url).await.expect("the upgrade succeeds");
        SocketClient(socket)
    }

    fn layer(&self) -> &ScriptedLayer {
        self.chat.layer()
    }
}

impl ScenarioClient for SocketClient {
    async fn send(&mut self, text: &str) {
        self.0
            .send(Message::text(text))
            .await
            .expect("the frame is sent");
    }

    async fn recv_within(&mut self, wait: Duration) -> Option<String> {
        let next_text = async {
            while let Some(frame) = self.0.next().await {
                match frame.expect("a valid frame") {
                    Message::Text(text) => return Some(text.as_str().to_owned()),
                    Message::Ping(_) | Message::Pong(_) => {}
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
            None
        };
        tokio::time::timeout(wait, next_text).await.ok().flatten()
    }

    async fn close(mut self) {
        self.0.close(None).await.expect("the close is sent");
    }
}

whisper_chat::chat_host_test_suite!(start_service);
