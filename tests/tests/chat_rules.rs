//! whisper-chat's host scenarios, run through the real server: its
//! WebSocket, its consumer transport, its rooms table. The axum example
//! runs the same list through its own transport, so both hosts are held
//! to the same rules.

use std::collections::HashMap;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use whisper_chat::testing::{self, ScenarioClient, ScenarioHost, ScenarioRooms, ScriptedLayer};
use whisper_chat::{ChatUser, Limits};
use whisper_protocol::RoomId;
use whisper_tests::{Session, TestServer, WsClient};

/// A server over a [`ScriptedLayer`] whose database holds the scenario
/// users (ann, bob, carol: ids 1 to 3) and rooms (Lobby and Staff room,
/// with whatever ids the rooms table gave them: a fresh database already
/// holds General).
struct ServerHost {
    server: TestServer,
    layer: ScriptedLayer,
    sessions: HashMap<String, Session>,
    rooms: ScenarioRooms,
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
    let rooms = ScenarioRooms {
        lobby: RoomId(server.create_room("Lobby", false).await),
        staff_room: RoomId(server.create_room("Staff room", true).await),
    };
    ServerHost {
        server,
        layer,
        sessions,
        rooms,
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

    fn rooms(&self) -> ScenarioRooms {
        self.rooms
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
