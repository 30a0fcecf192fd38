//! Changes of access read by every connection from payloads other nodes
//! published: `AccessChange::from_payload` must never panic, must take
//! nothing for a change that does not start with the change mark (every
//! frame starts with `{`), and must read back every change it writes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use whisper_chat::AccessChange;
use whisper_protocol::RoomId;
use whisper_rooms::Payload;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let marked = text.starts_with('\u{1}');
    let read = AccessChange::from_payload(&Payload::from(text));
    assert!(marked || read.is_none(), "{read:?}");
    if let Some(change) = read {
        assert_eq!(AccessChange::from_payload(&change.to_payload()), Some(change));
    }
    if data.len() >= 9 {
        let id = i64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
        let change = match data[0] % 4 {
            0 => AccessChange::RoomDeleted(RoomId(id)),
            1 => AccessChange::RoomStaffOnly(RoomId(id)),
            2 => AccessChange::RoomOpened(RoomId(id)),
            _ => AccessChange::User(id),
        };
        assert_eq!(AccessChange::from_payload(&change.to_payload()), Some(change));
    }
});
