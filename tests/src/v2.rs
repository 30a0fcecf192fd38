//! Protocol v2 as tests speak it: reading message lists out of results and
//! events, sending with an acknowledgement, reading a room's whole history.
//! [`guarantees`] holds the scenarios run on one server and on a cluster,
//! [`deletion`] those of deleting messages.

use std::time::Duration;

use serde_json::{Value, json};

use crate::WsClient;

pub mod deletion;
pub mod guarantees;

/// Longest wait for background work (retention) to show in what the
/// server answers.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The seqs of a JSON array of messages (a result's `messages`, or
/// [`WsClient::next_messages`]), in its order.
pub fn seqs(messages: &Value) -> Vec<u64> {
    message_list(messages)
        .iter()
        .map(|message| message["seq"].as_u64().expect("seq"))
        .collect()
}

/// The texts of a JSON array of messages, in its order.
pub fn texts(messages: &Value) -> Vec<String> {
    message_list(messages)
        .iter()
        .map(|message| message["text"].as_str().expect("text").to_owned())
        .collect()
}

/// The messages of a JSON array of them; panics on anything else.
pub(crate) fn message_list(messages: &Value) -> &Vec<Value> {
    messages
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of messages, got {messages}"))
}

impl WsClient {
    /// Sends `text` to `room` on a v2 socket and waits for its
    /// acknowledgement, passing over events; returns the result (`room`,
    /// `seq`, `ts`). Panics unless the send was acknowledged.
    pub async fn say(&mut self, room: i64, text: &str) -> Value {
        let reply = self
            .request(json!({"command": "send", "room": room, "text": text}))
            .await;
        assert!(reply["result"]["seq"].is_u64(), "{reply}");
        reply["result"].clone()
    }

    /// The next `count` message events on a v2 socket, as a JSON array,
    /// passing over other events and replies.
    pub async fn next_messages(&mut self, count: usize) -> Value {
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            let frame = self.recv_json().await;
            if frame["event"] == "message" {
                messages.push(frame);
            }
        }
        Value::Array(messages)
    }

    /// Every message `room` keeps, oldest first, as a JSON array: pages of
    /// `history` read back from the latest until `has_more` is false.
    pub async fn whole_history(&mut self, room: i64) -> Value {
        let mut messages = Vec::new();
        let mut before = None;
        loop {
            let mut command = json!({"command": "history", "room": room, "limit": 100});
            if let Some(before) = before {
                command["before"] = before;
            }
            let page = self.request(command).await;
            let result = &page["result"];
            let mut older = message_list(&result["messages"]).clone();
            before = older.first().map(|first| first["seq"].clone());
            older.append(&mut messages);
            messages = older;
            if result["has_more"] != true {
                return Value::Array(messages);
            }
        }
    }

    /// Asks for `room`'s latest page until its seqs are `expected`, for at
    /// most ten seconds: for what the server does in the background, as
    /// retention. Returns that `history` result.
    pub async fn history_until(&mut self, room: i64, expected: &[u64]) -> Value {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let page = self
                .request(json!({"command": "history", "room": room}))
                .await;
            if seqs(&page["result"]["messages"]) == expected {
                return page["result"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "history never became {expected:?}: {page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
