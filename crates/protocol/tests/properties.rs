//! Properties of the v1 and v2 wire formats, checked on generated input:
//! commands survive an encode/decode round trip, decoding never panics
//! whatever it is given, and every encoder writes JSON with exactly the
//! protocol's keys in the protocol's order, carrying user text unchanged.

use std::fmt;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::Value;
use whisper_protocol::v2::{self, DecodeError, Epoch, Request, Seq, Since, UserRef};
use whisper_protocol::{Command, ErrorCode, PresenceEntry, RoomId, decode_command, encode};

/// A parsed JSON text that keeps the order in which object members were
/// written.
///
/// `serde_json::Map` sorts its keys unless the `preserve_order` feature is
/// on, so objects are read with a visitor of their own; anything else is kept
/// as the `Value` serde_json reads (a float stays a float, `12` an integer).
#[derive(Debug)]
enum Json {
    Object(Vec<(String, Json)>),
    Scalar(Value),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;

        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or a scalar (the encoders write no arrays)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Json::Object(members))
            }

            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Null))
            }

            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }

            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }

            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }
        }

        deserializer.deserialize_any(JsonVisitor)
    }
}

impl Json {
    fn parse(text: &str) -> Json {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
    }

    fn members(&self) -> &[(String, Json)] {
        match self {
            Json::Object(members) => members,
            Json::Scalar(value) => panic!("{value} is not an object"),
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.members().iter().map(|(key, _)| key.as_str()).collect()
    }

    fn get(&self, key: &str) -> &Json {
        match self.members().iter().find(|(k, _)| k == key) {
            Some((_, value)) => value,
            None => panic!("no member {key:?}"),
        }
    }

    /// The scalar at `key`.
    fn at(&self, key: &str) -> &Value {
        match self.get(key) {
            Json::Scalar(value) => value,
            Json::Object(_) => panic!("{key} is an object"),
        }
    }
}

/// Text as users type it and worse: any scalar value (control characters,
/// surrogate-adjacent planes, combining marks), plus a mix weighted towards
/// what JSON has to escape.
fn user_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 0..48).prop_map(String::from_iter),
        "[\"\\\\/\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{2028}\\u{2029}\\u{feff}aé漢😀 {}:,]{0,32}",
    ]
}

fn room_id() -> impl Strategy<Value = RoomId> {
    prop_oneof![
        (0..=i64::MAX).prop_map(RoomId),
        any::<i64>().prop_map(RoomId),
        Just(RoomId(i64::MIN)),
        Just(RoomId(i64::MAX)),
        Just(RoomId(0)),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        room_id().prop_map(|room| Command::Join { room }),
        room_id().prop_map(|room| Command::Leave { room }),
        room_id().prop_map(|room| Command::RoomUsers { room }),
        (room_id(), user_text()).prop_map(|(room, message)| Command::Send { room, message }),
    ]
}

/// Arbitrary JSON trees, with objects biased towards the keys the decoder
/// looks at so that the deeper branches are reached too.
fn json_value() -> impl Strategy<Value = Value> {
    json_tree(
        vec!["join", "leave", "send", "room_users", "shout", ""],
        vec!["command", "room", "message"],
    )
}

/// Arbitrary JSON trees whose strings and keys lean towards the given
/// command names and field names.
fn json_tree(names: Vec<&'static str>, keys: Vec<&'static str>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        user_text().prop_map(Value::String),
        "[0-9]{1,25}".prop_map(Value::String),
        prop::sample::select(names).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        let key = prop_oneof![
            prop::sample::select(keys.clone()).prop_map(String::from),
            user_text(),
        ];
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key, inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn presence_entries() -> impl Strategy<Value = Vec<PresenceEntry>> {
    btree_map(
        any::<i64>(),
        (
            user_text(),
            user_text(),
            any::<bool>(),
            prop_oneof![0.0..2e9f64, any::<f64>()],
        ),
        0..6,
    )
    .prop_map(|users| {
        users
            .into_iter()
            .map(
                |(user_id, (username, name, left, last_update))| PresenceEntry {
                    user_id,
                    username,
                    name,
                    left,
                    last_update,
                },
            )
            .collect()
    })
}

/// What the decoder must answer for a JSON value, from the rules in
/// `decode_command`'s documentation alone.
fn expected_decoding(value: &Value) -> Option<Result<Command, ErrorCode>> {
    let Value::Object(object) = value else {
        return Some(Err(ErrorCode::BadRequest));
    };
    let Some(Value::String(name)) = object.get("command") else {
        return Some(Err(ErrorCode::BadRequest));
    };
    if !["join", "leave", "send", "room_users"].contains(&name.as_str()) {
        return Some(Err(ErrorCode::UnknownCommand));
    }
    // A known command: the outcome depends on the fields, checked elsewhere.
    None
}

/// The room a JSON value names, as the protocol reads it.
fn room_of(value: Option<&Value>) -> Option<RoomId> {
    match value? {
        Value::Number(n) => n.as_i64().map(RoomId),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok().map(RoomId)
        }
        _ => None,
    }
}

const V2_COMMANDS: [&str; 7] = [
    "join",
    "leave",
    "send",
    "history",
    "room_users",
    "typing",
    "delete",
];

/// Arbitrary JSON trees for the v2 decoder, leaning towards its commands,
/// its fields and the nested `since` object.
fn v2_json_value() -> impl Strategy<Value = Value> {
    let mut names = V2_COMMANDS.to_vec();
    names.extend(["shout", ""]);
    json_tree(
        names,
        vec![
            "command", "id", "room", "since", "seq", "epoch", "limit", "text", "nonce", "before",
        ],
    )
}

/// Objects shaped like v2 frames, each field absent, well-typed or not, so
/// that the decoder's field checks are reached as often as its envelope.
fn v2_frame() -> impl Strategy<Value = Value> {
    let field = |valid: BoxedStrategy<Value>| {
        prop::option::of(prop_oneof![3 => valid, 1 => v2_json_value().boxed()])
    };
    let unsigned = || any::<u64>().prop_map(Value::from).boxed();
    let since = (any::<u64>(), user_text())
        .prop_map(|(seq, epoch)| serde_json::json!({"seq": seq, "epoch": epoch}))
        .boxed();
    let room = prop_oneof![
        any::<i64>().prop_map(Value::from),
        "[0-9]{1,19}".prop_map(Value::from),
    ]
    .boxed();
    let mut names = V2_COMMANDS.to_vec();
    names.push("shout");
    (
        field(prop::sample::select(names).prop_map(Value::from).boxed()),
        field(unsigned()),
        field(room),
        field(since),
        field(unsigned()),
        field(user_text().prop_map(Value::from).boxed()),
        field(user_text().prop_map(Value::from).boxed()),
        field(unsigned()),
        field(unsigned()),
    )
        .prop_map(
            |(command, id, room, since, limit, text, nonce, before, seq)| {
                let fields = [
                    ("command", command),
                    ("id", id),
                    ("room", room),
                    ("since", since),
                    ("limit", limit),
                    ("text", text),
                    ("nonce", nonce),
                    ("before", before),
                    ("seq", seq),
                ];
                Value::Object(
                    fields
                        .into_iter()
                        .filter_map(|(key, value)| Some((key.to_owned(), value?)))
                        .collect(),
                )
            },
        )
}

/// The longest prefix of `text` that fits in a nonce.
fn nonce_sized(mut text: String) -> String {
    while text.len() > v2::MAX_NONCE_BYTES {
        text.pop();
    }
    text
}

fn v2_request() -> impl Strategy<Value = Request> {
    let limit = 0..=v2::MAX_LIMIT;
    let since = (any::<u64>(), user_text()).prop_map(|(seq, epoch)| Since {
        seq: Seq(seq),
        epoch: Epoch(epoch),
    });
    let command = prop_oneof![
        (room_id(), prop::option::of(since), limit.clone())
            .prop_map(|(room, since, limit)| v2::Command::Join { room, since, limit }),
        room_id().prop_map(|room| v2::Command::Leave { room }),
        (
            room_id(),
            user_text(),
            prop::option::of(user_text().prop_map(nonce_sized))
        )
            .prop_map(|(room, text, nonce)| v2::Command::Send { room, text, nonce }),
        (
            room_id(),
            prop::option::of(any::<u64>().prop_map(Seq)),
            limit
        )
            .prop_map(|(room, before, limit)| v2::Command::History {
                room,
                before,
                limit
            }),
        room_id().prop_map(|room| v2::Command::RoomUsers { room }),
        room_id().prop_map(|room| v2::Command::Typing { room }),
        (room_id(), any::<u64>().prop_map(Seq))
            .prop_map(|(room, seq)| v2::Command::Delete { room, seq }),
        (room_id(), any::<i64>(), 1..=v2::MAX_MUTE_SECONDS).prop_map(|(room, user, seconds)| {
            v2::Command::Mute {
                room,
                user,
                seconds,
            }
        }),
        (room_id(), any::<i64>()).prop_map(|(room, user)| v2::Command::Unmute { room, user }),
    ];
    (prop::option::of(any::<u64>()), command).prop_map(|(id, command)| Request { id, command })
}

fn user_ref() -> impl Strategy<Value = UserRef> {
    (any::<i64>(), user_text(), user_text()).prop_map(|(id, username, name)| UserRef {
        id,
        username,
        name,
    })
}

/// What the v2 decoder must answer for a JSON value as far as the frame's
/// envelope decides it, from `v2::decode_command`'s documentation alone:
/// the error of a frame refused before its fields are read, or else the id,
/// room and command name that any answer to it carries.
fn v2_envelope(value: &Value) -> Result<(Option<u64>, Option<RoomId>, &str), DecodeError> {
    let refused = |code, id, room| DecodeError { code, id, room };
    let Value::Object(object) = value else {
        return Err(refused(ErrorCode::BadRequest, None, None));
    };
    let room = room_of(object.get("room"));
    let id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(id) => match id.as_u64() {
            Some(id) => Some(id),
            None => return Err(refused(ErrorCode::BadRequest, None, room)),
        },
    };
    match object.get("command") {
        Some(Value::String(name)) if V2_COMMANDS.contains(&name.as_str()) => Ok((id, room, name)),
        Some(Value::String(_)) => Err(refused(ErrorCode::UnknownCommand, id, room)),
        _ => Err(refused(ErrorCode::BadRequest, id, room)),
    }
}

proptest! {
    #[test]
    fn every_command_survives_encoding(command in command()) {
        let text = encode::command(&command);
        prop_assert_eq!(decode_command(&text), Ok(command));
    }

    #[test]
    fn digit_strings_and_numbers_name_the_same_room(
        room in 0..=i64::MAX,
        zeros in 0usize..4,
        name in prop::sample::select(vec!["join", "leave", "room_users"]),
    ) {
        let as_number = decode_command(&format!(r#"{{"command":"{name}","room":{room}}}"#));
        let as_string = decode_command(&format!(r#"{{"command":"{name}","room":"{room}"}}"#));
        let padded = decode_command(&format!(
            r#"{{"command":"{name}","room":"{}{room}"}}"#,
            "0".repeat(zeros)
        ));
        prop_assert!(as_number.is_ok());
        prop_assert_eq!(&as_number, &as_string);
        prop_assert_eq!(&as_number, &padded);
    }

    #[test]
    fn room_ids_beyond_i64_are_refused_as_numbers_and_strings(room in (i64::MAX as u64 + 1)..=u64::MAX) {
        for frame in [
            format!(r#"{{"command":"join","room":{room}}}"#),
            format!(r#"{{"command":"join","room":"{room}"}}"#),
        ] {
            prop_assert_eq!(decode_command(&frame), Err(ErrorCode::BadRequest), "{}", frame);
        }
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,0-9a-z\\\\ .eE+-]{0,64}",
    ]) {
        let _ = decode_command(&text);
    }

    #[test]
    fn decoding_arbitrary_json_follows_the_documented_rules(value in json_value()) {
        let text = value.to_string();
        let decoded = decode_command(&text);
        match expected_decoding(&value) {
            Some(expected) => prop_assert_eq!(decoded, expected),
            None => {
                let object = value.as_object().unwrap();
                let room = room_of(object.get("room"));
                let expected = match (object["command"].as_str().unwrap(), room) {
                    (_, None) => Err(ErrorCode::BadRequest),
                    ("join", Some(room)) => Ok(Command::Join { room }),
                    ("leave", Some(room)) => Ok(Command::Leave { room }),
                    ("room_users", Some(room)) => Ok(Command::RoomUsers { room }),
                    (_, Some(room)) => match object.get("message") {
                        Some(Value::String(message)) => Ok(Command::Send {
                            room,
                            message: message.clone(),
                        }),
                        _ => Err(ErrorCode::BadRequest),
                    },
                };
                prop_assert_eq!(decoded, expected, "{}", text);
            }
        }
    }

    #[test]
    fn message_events_carry_text_unchanged(
        room in room_id(),
        username in user_text(),
        message in user_text(),
    ) {
        let text = encode::message(room, &username, &message);
        let prefix = format!(r#"{{"msg_type":0,"room":{room},"username":"#);
        prop_assert!(text.starts_with(&prefix), "{}", text);
        let members = Json::parse(&text);
        prop_assert_eq!(members.keys(), ["msg_type", "room", "username", "message"]);
        prop_assert_eq!(members.at("msg_type"), &Value::from(0));
        prop_assert_eq!(members.at("room"), &Value::from(room.0));
        prop_assert_eq!(members.at("username"), &Value::from(username));
        prop_assert_eq!(members.at("message"), &Value::from(message));
    }

    #[test]
    fn enter_and_leave_events_carry_the_username_unchanged(
        room in room_id(),
        username in user_text(),
    ) {
        for (kind, text) in [
            (4, encode::enter(room, &username)),
            (5, encode::leave(room, &username)),
        ] {
            let prefix = format!(r#"{{"msg_type":{kind},"room":{room},"username":"#);
            prop_assert!(text.starts_with(&prefix), "{}", text);
            let members = Json::parse(&text);
            prop_assert_eq!(members.keys(), ["msg_type", "room", "username"]);
            prop_assert_eq!(members.at("msg_type"), &Value::from(kind));
            prop_assert_eq!(members.at("room"), &Value::from(room.0));
            prop_assert_eq!(members.at("username"), &Value::from(username.as_str()));
        }
    }

    #[test]
    fn replies_carry_the_room_as_a_string(room in room_id(), title in user_text()) {
        let join = encode::join_reply(room, &title);
        prop_assert!(join.starts_with(&format!(r#"{{"join":"{room}","title":"#)), "{}", join);
        let members = Json::parse(&join);
        prop_assert_eq!(members.keys(), ["join", "title"]);
        prop_assert_eq!(members.at("join"), &Value::from(room.to_string()));
        prop_assert_eq!(members.at("title"), &Value::from(title));

        prop_assert_eq!(encode::leave_reply(room), format!(r#"{{"leave":"{room}"}}"#));
    }

    #[test]
    fn room_users_lists_every_entry_in_key_order(
        room in room_id(),
        entries in presence_entries(),
    ) {
        let text = encode::room_users(room, &entries);
        prop_assert!(text.starts_with(&format!(r#"{{"type":6,"room":{room},"data":{{"users":{{"#)), "{}", text);
        let members = Json::parse(&text);
        prop_assert_eq!(members.keys(), ["type", "room", "data"]);

        let data = members.get("data");
        prop_assert_eq!(data.keys(), ["users"]);
        let users = data.get("users");
        let mut expected_ids: Vec<String> = entries.iter().map(|e| e.user_id.to_string()).collect();
        expected_ids.sort();
        prop_assert_eq!(users.keys(), expected_ids.iter().map(String::as_str).collect::<Vec<_>>());

        for entry in &entries {
            let user = users.get(&entry.user_id.to_string());
            prop_assert_eq!(user.keys(), ["username", "name", "left", "last_update"]);
            prop_assert_eq!(user.at("username"), &Value::from(entry.username.as_str()));
            prop_assert_eq!(user.at("name"), &Value::from(entry.name.as_str()));
            prop_assert_eq!(user.at("left"), &Value::from(entry.left));
            let last_update = user.at("last_update");
            if entry.last_update.is_finite() {
                // Always a float on the wire, never an integer literal.
                prop_assert!(last_update.is_f64(), "{}", last_update);
                let read = last_update.as_f64().unwrap();
                // serde_json parses floats to within an ulp or so without its
                // `float_roundtrip` feature.
                let tolerance = (entry.last_update.abs() * 4.0 * f64::EPSILON).max(f64::MIN_POSITIVE);
                prop_assert!((read - entry.last_update).abs() <= tolerance, "{} != {}", read, entry.last_update);
            } else {
                prop_assert_eq!(last_update, &Value::Null);
            }
        }
    }
}

#[test]
fn every_error_code_is_written_as_its_name() {
    for code in ErrorCode::ALL {
        let text = encode::error(code);
        assert_eq!(text, format!(r#"{{"error":"{code}"}}"#));
        assert_eq!(Json::parse(&text).keys(), ["error"]);
    }
}

proptest! {
    #[test]
    fn every_v2_request_survives_encoding(request in v2_request()) {
        let text = v2::encode::command(&request);
        prop_assert_eq!(v2::decode_command(&text), Ok(request), "{}", text);
    }

    #[test]
    fn v2_decoding_arbitrary_text_never_panics(text in prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,0-9a-z\\\\ .eE+-]{0,64}",
    ]) {
        let _ = v2::decode_command(&text);
    }

    #[test]
    fn v2_decoding_arbitrary_json_follows_the_documented_rules(
        value in prop_oneof![v2_json_value(), v2_frame()],
    ) {
        let text = value.to_string();
        let decoded = v2::decode_command(&text);
        match v2_envelope(&value) {
            Err(expected) => prop_assert_eq!(decoded, Err(expected), "{}", text),
            Ok((id, room, name)) => {
                let bad = DecodeError { code: ErrorCode::BadRequest, id, room };
                let room_only = |command: fn(RoomId) -> v2::Command| {
                    room.map(|room| Request { id, command: command(room) }).ok_or(bad.clone())
                };
                match name {
                    "leave" => prop_assert_eq!(decoded, room_only(|room| v2::Command::Leave { room })),
                    "room_users" => prop_assert_eq!(decoded, room_only(|room| v2::Command::RoomUsers { room })),
                    "typing" => prop_assert_eq!(decoded, room_only(|room| v2::Command::Typing { room })),
                    _ => match decoded {
                        Ok(request) => {
                            prop_assert_eq!(request.id, id);
                            match request.command {
                                v2::Command::Join { room: got, limit, .. }
                                | v2::Command::History { room: got, limit, .. } => {
                                    prop_assert_eq!(Some(got), room);
                                    prop_assert!(limit <= v2::MAX_LIMIT);
                                }
                                v2::Command::Send { room: got, nonce, .. } => {
                                    prop_assert_eq!(Some(got), room);
                                    prop_assert!(nonce.is_none_or(|n| n.len() <= v2::MAX_NONCE_BYTES));
                                }
                                v2::Command::Delete { room: got, .. } => {
                                    prop_assert_eq!(Some(got), room);
                                    prop_assert_eq!(name, "delete");
                                }
                                other => prop_assert!(false, "{} decoded as {:?}", text, other),
                            }
                        }
                        Err(error) => prop_assert_eq!(error, bad, "{}", text),
                    },
                }
            }
        }
    }

    #[test]
    fn v2_limits_are_clamped_never_refused(limit in any::<u64>(), room in room_id()) {
        let frame = format!(r#"{{"command":"history","room":{room},"limit":{limit}}}"#);
        let expected = u32::try_from(limit.min(100)).unwrap();
        prop_assert_eq!(
            v2::decode_command(&frame),
            Ok(Request {
                id: None,
                command: v2::Command::History { room, before: None, limit: expected },
            })
        );
    }

    #[test]
    fn v2_message_events_carry_text_and_nonce_unchanged(
        room in room_id(),
        seq in any::<u64>(),
        ts in any::<i64>(),
        user in user_ref(),
        text in prop::option::of(user_text()),
        nonce in prop::option::of(user_text()),
    ) {
        let message = v2::Message { room, seq: Seq(seq), ts, user: user.clone(), text: text.clone() };
        let frame = v2::encode::message(&message, nonce.as_deref());
        let members = Json::parse(&frame);
        let mut keys = vec!["event", "room", "seq", "ts", "user"];
        if text.is_some() {
            keys.push("text");
        }
        if nonce.is_some() {
            keys.push("nonce");
        }
        if text.is_none() {
            keys.push("deleted");
        }
        prop_assert_eq!(members.keys(), keys);
        prop_assert_eq!(members.at("event"), &Value::from("message"));
        prop_assert_eq!(members.at("room"), &Value::from(room.0));
        prop_assert_eq!(members.at("seq"), &Value::from(seq));
        prop_assert_eq!(members.at("ts"), &Value::from(ts));
        let author = members.get("user");
        prop_assert_eq!(author.keys(), ["id", "username", "name"]);
        prop_assert_eq!(author.at("id"), &Value::from(user.id));
        prop_assert_eq!(author.at("username"), &Value::from(user.username));
        prop_assert_eq!(author.at("name"), &Value::from(user.name));
        match text {
            Some(text) => prop_assert_eq!(members.at("text"), &Value::from(text)),
            None => prop_assert_eq!(members.at("deleted"), &Value::from(true)),
        }
        if let Some(nonce) = nonce {
            prop_assert_eq!(members.at("nonce"), &Value::from(nonce));
        }
    }

    #[test]
    fn v2_errors_carry_id_and_room_only_when_known(
        id in prop::option::of(any::<u64>()),
        room in prop::option::of(room_id()),
        code in prop::sample::select(ErrorCode::ALL.to_vec()),
    ) {
        let members = Json::parse(&v2::encode::error(id, code, room));
        let keys = if id.is_some() { vec!["id", "error"] } else { vec!["error"] };
        prop_assert_eq!(members.keys(), keys);
        let error = members.get("error");
        let keys = if room.is_some() { vec!["code", "room"] } else { vec!["code"] };
        prop_assert_eq!(error.keys(), keys);
        prop_assert_eq!(error.at("code"), &Value::from(code.as_str()));
    }
}
