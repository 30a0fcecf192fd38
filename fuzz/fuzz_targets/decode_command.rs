//! Client frames: `decode_command` must never panic, and whatever it accepts
//! must survive `encode::command` and a second decode unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use whisper_protocol::{decode_command, encode};

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time they reach the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(command) = decode_command(text) {
        let encoded = encode::command(&command);
        assert_eq!(
            decode_command(&encoded),
            Ok(command),
            "{text:?} re-encoded as {encoded:?}"
        );
    }
});
