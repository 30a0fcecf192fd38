//! Event heads read by every v2 socket from payloads that other nodes
//! published: `v2::peek_event` must never panic on any bytes, and must read
//! back the room, seq and user of any message, typing, enter or leave frame
//! the encoders write, whatever the text and names hold.

#![no_main]

use libfuzzer_sys::fuzz_target;
use whisper_protocol::RoomId;
use whisper_protocol::v2::{EventHead, Message, Seq, UserRef, encode, peek_event};

fuzz_target!(|data: &[u8]| {
    let _ = peek_event(data);
    if data.len() < 16 {
        return;
    }
    let (numbers, rest) = data.split_at(16);
    let room = i64::from_le_bytes(numbers[..8].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(numbers[8..].try_into().expect("8 bytes")) >> 1;
    let text = String::from_utf8_lossy(rest).into_owned();
    let user = UserRef {
        id: room.wrapping_mul(31),
        username: text.clone(),
        name: text.clone(),
    };
    let message = Message {
        room: RoomId(room),
        seq: Seq(seq),
        ts: room,
        user: user.clone(),
        text: Some(text.clone()),
    };
    let expected = EventHead::Message {
        room: RoomId(room),
        seq: Seq(seq),
    };
    assert_eq!(peek_event(encode::message(&message, None)), expected);
    assert_eq!(peek_event(encode::message(&message, Some(&text))), expected);
    assert_eq!(
        peek_event(encode::typing(RoomId(room), &user)),
        EventHead::Typing {
            room: RoomId(room),
            user_id: user.id
        }
    );
    let presence = EventHead::Presence { room: RoomId(room) };
    assert_eq!(peek_event(encode::enter(RoomId(room), &user, room)), presence);
    assert_eq!(peek_event(encode::leave(RoomId(room), &user, room)), presence);
});
