//! whisper-chat's host scenarios, run through the real server: its
//! WebSocket, its consumer transport, its rooms table. The axum example
//! runs the same list through its own transport, so both hosts are held
//! to the same rules.

use std::collections::HashMap;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use whisper_chat::testing::{self, ScenarioClient, ScenarioHost, ScriptedLayer};
use whisper_chat::{ChatUser, Limits};
use whisper_tests::{Session, TestServer, WsClient};

/// A server over a [`ScriptedLayer`] whose database holds the scenario
/// users (ann, bob, carol: ids 1 to 3) and rooms (Lobby 1, Staff room 2).
struct ServerHost {
    server: TestServer,
    layer: ScriptedLayer,
    sessions: HashMap<String, Session>,
}

async fn start_server(limits: Limits) -> ServerHost {
    let layer = ScriptedLayer::default();
    let given = layer.clone();
    let server = TestServer::start_with_layer(
        |config| {
            config.max_message_bytes = limits.max_message_bytes;
            config.max_rooms_per_connection = limits.max_rooms_per_connection;
            config.max_messages_per_second = limits.max_messages_per_second;
        },
        move |_| given.clone(),
    )
    .await;
    let mut sessions = HashMap::new();
    for user in [testing::ann(), testing::bob(), testing::carol()] {
        let session = server.user(&user.username, user.is_staff).await;
        sessions.insert(user.username, session);
    }
    assert_eq!(server.create_room("Lobby", false).await, testing::LOBBY.0);
    let staff_room = server.create_room("Staff room", true).await;
    assert_eq!(staff_room, testing::STAFF_ROOM.0);
    ServerHost {
        server,
        layer,
        sessions,
    }
}

struct ServerClient(WsClient);

impl ScenarioHost for ServerHost {
    type Client = ServerClient;

    async fn connect(&self, user: ChatUser) -> ServerClient {
        ServerClient(self.server.connect(&self.sessions[&user.username]).await)
    }

    fn layer(&self) -> &ScriptedLayer {
        &self.layer
    }
}

impl ScenarioClient for ServerClient {
    async fn send(&mut self, text: &str) {
        self.0.send_text(text).await;
    }

    async fn recv_within(&mut self, wait: Duration) -> Option<String> {
        match tokio::time::timeout(wait, self.0.recv()).await {
            Ok(Some(Message::Text(text))) => Some(text.to_string()),
            Ok(Some(other)) => panic!("expected a text frame, got {other:?}"),
            Ok(None) | Err(_) => None,
        }
    }

    async fn close(self) {
        self.0.close().await;
    }
}

whisper_chat::chat_host_test_suite!(start_server);
