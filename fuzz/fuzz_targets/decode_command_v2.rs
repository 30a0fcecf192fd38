//! v2 client frames: `v2::decode_command` must never panic, a decoding error
//! names only codes a decoder may give, and whatever it accepts must survive
//! `v2::encode::command` and a second decode unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use whisper_protocol::ErrorCode;
use whisper_protocol::v2::{decode_command, encode};

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time they reach the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode_command(text) {
        Ok(request) => {
            let encoded = encode::command(&request);
            assert_eq!(
                decode_command(&encoded),
                Ok(request),
                "{text:?} re-encoded as {encoded:?}"
            );
        }
        Err(error) => assert!(
            matches!(error.code, ErrorCode::BadRequest | ErrorCode::UnknownCommand),
            "{text:?} refused with {error:?}"
        ),
    }
});
