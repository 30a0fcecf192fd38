//! RFC 6455 framing for the client side, without I/O: reading the frames a
//! server sends out of a byte buffer in place, and writing masked client
//! frames into one.
//!
//! tungstenite does the opening handshake; after it the bench reads frames
//! itself, because a load generator's receive path must cost far less than
//! the server's send path. Here a frame is a header check and a slice of
//! the read buffer: no allocation, no copy, no per-frame waker or
//! zero-filled buffer.

/// Opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text frame.
    pub const TEXT: u8 = 0x1;
    /// A binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Largest frame payload accepted; a server frame past it is a protocol
/// error (Whisper's own cap is far below).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Where a complete frame lies in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpan {
    /// Whether this is the last fragment of its message.
    pub fin: bool,
    /// One of [`opcode`].
    pub opcode: u8,
    /// The payload's range in the buffer.
    pub payload: std::ops::Range<usize>,
    /// The masking key, if the frame was masked (servers must not mask).
    pub mask: Option<[u8; 4]>,
}

impl FrameSpan {
    /// Bytes the whole frame takes (header and payload).
    pub fn end(&self) -> usize {
        self.payload.end
    }
}

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame.
    Frame(FrameSpan),
    /// Not enough bytes yet; the frame (when its length is known) needs
    /// this many in all.
    Incomplete(Option<usize>),
    /// Not a valid frame.
    Invalid(&'static str),
}

/// Reads the frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let [b0, b1, ..] = *buf else {
        return Parsed::Incomplete(None);
    };
    if b0 & 0x70 != 0 {
        return Parsed::Invalid("reserved bits set");
    }
    let (length, mut at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
            None => return Parsed::Incomplete(None),
        },
        127 => match buf
            .get(2..10)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        {
            Some(bytes) => (u64::from_be_bytes(bytes), 10),
            None => return Parsed::Incomplete(None),
        },
        short => (u64::from(short), 2),
    };
    let Ok(length) = usize::try_from(length) else {
        return Parsed::Invalid("frame too large");
    };
    if length > MAX_PAYLOAD {
        return Parsed::Invalid("frame too large");
    }
    let mask = if b1 & 0x80 != 0 {
        let Some(key) = buf.get(at..at + 4) else {
            return Parsed::Incomplete(None);
        };
        at += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let end = at + length;
    if buf.len() < end {
        return Parsed::Incomplete(Some(end));
    }
    Parsed::Frame(FrameSpan {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload: at..end,
        mask,
    })
}

/// XORs `payload` with a masking key (masking and unmasking are the same).
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (index, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[index & 3];
    }
}

/// Appends one whole, masked client frame to `out`.
pub fn write(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        short @ 0..=125 => out.push(0x80 | short as u8),
        medium @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// The code and reason of a close frame's payload, for reports.
pub fn close_reason(payload: &[u8]) -> String {
    match payload {
        [high, low, reason @ ..] => format!(
            "closed {} {}",
            u16::from_be_bytes([*high, *low]),
            String::from_utf8_lossy(reason)
        ),
        _ => "closed without a code".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked frame as a server writes it.
    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            short @ 0..=125 => out.push(short as u8),
            medium @ 126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(medium as u16).to_be_bytes());
            }
            long => {
                out.push(127);
                out.extend_from_slice(&(long as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn server_frames_of_every_length_class_parse_in_place() {
        for length in [0, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload = vec![b'a'; length];
            let mut bytes = server_frame(opcode::TEXT, true, &payload);
            bytes.extend_from_slice(b"next");
            let Parsed::Frame(span) = parse(&bytes) else {
                panic!("length {length}: {:?}", parse(&bytes));
            };
            assert!(span.fin && span.opcode == opcode::TEXT && span.mask.is_none());
            assert_eq!(&bytes[span.payload.clone()], &payload[..]);
            assert_eq!(&bytes[span.end()..], b"next");
            for cut in [1, 2, span.end() - 1]
                .into_iter()
                .filter(|&cut| cut < span.end())
            {
                assert!(
                    matches!(parse(&bytes[..cut]), Parsed::Incomplete(_)),
                    "length {length} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn client_frames_are_masked_and_read_back() {
        let mut out = Vec::new();
        let payload = br#"{"command":"send","room":1,"message":"hi"}"#;
        write(&mut out, opcode::TEXT, payload, [1, 2, 3, 4]);
        assert_ne!(&out[6..], &payload[..], "masked on the wire");
        let Parsed::Frame(span) = parse(&out) else {
            panic!("{:?}", parse(&out));
        };
        assert_eq!(span.mask, Some([1, 2, 3, 4]));
        let mut body = out[span.payload.clone()].to_vec();
        apply_mask(&mut body, [1, 2, 3, 4]);
        assert_eq!(&body[..], &payload[..]);
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(parse(&[0xC1, 0]), Parsed::Invalid("reserved bits set"));
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(parse(&huge), Parsed::Invalid("frame too large"));
    }

    #[test]
    fn close_payloads_name_their_code() {
        assert_eq!(close_reason(&[0x03, 0xF5, b'b', b'y']), "closed 1013 by");
        assert_eq!(close_reason(&[]), "closed without a code");
    }
}
