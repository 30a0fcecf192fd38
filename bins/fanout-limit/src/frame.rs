//! WebSocket text frames (RFC 6455) as the two ends of a chat socket write
//! them: the server's unmasked (a 2-byte header up to 125 bytes of
//! payload), the client's masked, as browsers must. Final text frames of
//! at most [`MAX_PAYLOAD`] bytes only: all the tool ever sends.

use crate::error::LimitError;

/// Largest payload (`--size`): the 16-bit extended length is the longest
/// this tool writes or reads.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// The sender's mask key. Any key does; a fixed one keeps runs alike.
pub const CLIENT_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The payload of every message: `size` bytes of `abc...z` repeated.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A frame as a server writes it: unmasked.
pub fn server_frame(payload: &[u8]) -> Vec<u8> {
    text_frame(payload, None)
}

/// The length of a server's frame of a `size`-byte payload.
pub fn server_frame_len(size: usize) -> usize {
    server_frame(&payload(size)).len()
}

/// A frame as a client writes it: masked with `key`.
pub fn client_frame(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    text_frame(payload, Some(key))
}

fn text_frame(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let len = u16::try_from(payload.len())
        .expect("payloads are at most MAX_PAYLOAD bytes: --size is checked against it");
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.push(0x81); // FIN, text
    match u8::try_from(len) {
        Ok(short) if short <= 125 => frame.push(mask_bit | short),
        _ => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// One whole frame read from the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The frame's length in the buffer, header included.
    pub consumed: usize,
    /// Its payload, unmasked.
    pub payload: Vec<u8>,
}

/// The frame at the start of `bytes`, or `None` until all of it is there.
pub fn parse_frame(bytes: &[u8]) -> Result<Option<Parsed>, LimitError> {
    let Some(&second) = bytes.get(1) else {
        return Ok(None);
    };
    let (len, mut header) = match second & 0x7f {
        126 => match bytes.get(2..4) {
            Some(&[high, low]) => (usize::from(u16::from_be_bytes([high, low])), 4),
            _ => return Ok(None),
        },
        127 => {
            return Err(LimitError::Frame(
                "64-bit frame lengths are never sent here",
            ));
        }
        short => (usize::from(short), 2),
    };
    let mut key = [0u8; 4];
    if second & 0x80 != 0 {
        let Some(masking) = bytes.get(header..header + 4) else {
            return Ok(None);
        };
        key.copy_from_slice(masking);
        header += 4;
    }
    let Some(body) = bytes.get(header..header + len) else {
        return Ok(None);
    };
    Ok(Some(Parsed {
        consumed: header + len,
        payload: body
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_frame_of_100_bytes_is_102() {
        let frame = server_frame(&payload(100));
        assert_eq!(frame.len(), 102);
        assert_eq!(frame[..4], [0x81, 100, b'a', b'b']);
        assert_eq!(frame[2 + 26], b'a');
    }

    #[test]
    fn past_125_bytes_the_length_takes_two_more() {
        let frame = server_frame(&payload(126));
        assert_eq!(frame[..4], [0x81, 126, 0, 126]);
        assert_eq!(frame.len(), 4 + 126);
        let largest = server_frame(&payload(MAX_PAYLOAD));
        assert_eq!(largest[..4], [0x81, 126, 0xff, 0xff]);
        assert_eq!(server_frame(&[]), [0x81, 0]);
    }

    #[test]
    fn a_client_frame_is_masked_with_its_key() {
        let key = [1, 2, 3, 4];
        let frame = client_frame(b"hello", key);
        assert_eq!(
            frame,
            [
                0x81,
                0x85,
                1,
                2,
                3,
                4,
                b'h' ^ 1,
                b'e' ^ 2,
                b'l' ^ 3,
                b'l' ^ 4,
                b'o' ^ 1
            ]
        );
    }

    #[test]
    fn frames_read_back_as_their_payload() {
        for size in [0, 1, 100, 125, 126, 1000, MAX_PAYLOAD] {
            let text = payload(size);
            for frame in [server_frame(&text), client_frame(&text, CLIENT_MASK)] {
                let parsed = parse_frame(&frame).expect("a frame of ours");
                assert_eq!(
                    parsed,
                    Some(Parsed {
                        consumed: frame.len(),
                        payload: text.clone()
                    }),
                    "size {size}"
                );
            }
        }
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        for frame in [
            client_frame(&payload(100), CLIENT_MASK),
            client_frame(&payload(300), CLIENT_MASK),
        ] {
            for cut in 0..frame.len() {
                assert_eq!(parse_frame(&frame[..cut]).ok(), Some(None), "cut at {cut}");
            }
        }
    }

    #[test]
    fn only_the_first_of_two_frames_is_consumed() {
        let first = client_frame(b"one", CLIENT_MASK);
        let mut both = first.clone();
        both.extend(client_frame(b"second", CLIENT_MASK));
        let parsed = parse_frame(&both).ok().flatten().expect("a whole frame");
        assert_eq!(parsed.consumed, first.len());
        assert_eq!(parsed.payload, b"one");
    }

    #[test]
    fn a_64_bit_length_is_refused() {
        assert!(parse_frame(&[0x81, 127, 0, 0, 0, 0, 0, 0, 0, 1, b'x']).is_err());
    }
}
