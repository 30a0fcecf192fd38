//! A broadcast as it travels through Redis: the payload's bytes, after a
//! mark for an expendable one.
//!
//! The mark is the byte `0xFF`, which no UTF-8 text contains, so an
//! ordinary payload goes over unchanged (and without a copy) and cannot be
//! mistaken for a marked one.

use std::borrow::Cow;

use crate::Payload;

/// Starts the message of an expendable payload.
const EXPENDABLE: u8 = 0xFF;

/// The PUBLISH argument for `payload`.
pub(super) fn encode(payload: &Payload) -> Cow<'_, [u8]> {
    if payload.is_expendable() {
        let mut marked = Vec::with_capacity(1 + payload.len());
        marked.push(EXPENDABLE);
        marked.extend_from_slice(payload.as_bytes());
        Cow::Owned(marked)
    } else {
        Cow::Borrowed(payload.as_bytes())
    }
}

/// The payload a message carries; `None` when it is not UTF-8 text.
pub(super) fn decode(message: &[u8]) -> Option<Payload> {
    let (text, expendable) = match message.split_first() {
        Some((&EXPENDABLE, rest)) => (rest, true),
        _ => (message, false),
    };
    let payload = Payload::from(std::str::from_utf8(text).ok()?.to_owned());
    Some(if expendable {
        payload.expendable()
    } else {
        payload
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_as_sent() {
        for payload in [
            Payload::from("{\"msg_type\":4}"),
            Payload::from("{\"msg_type\":4}").expendable(),
            Payload::from(""),
            Payload::from("").expendable(),
        ] {
            assert_eq!(decode(&encode(&payload)), Some(payload));
        }
    }

    #[test]
    fn an_ordinary_payload_is_sent_as_it_is() {
        let payload = Payload::from("frame");
        assert!(matches!(encode(&payload), Cow::Borrowed(b"frame")));
    }

    #[test]
    fn bytes_that_are_not_text_are_refused() {
        assert_eq!(decode(&[0xFF, 0xFF]), None);
        assert_eq!(decode(&[0xC3]), None);
    }
}
