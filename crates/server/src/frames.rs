//! Writing room events to a socket as WebSocket text frames, straight from
//! their shared payloads, and keep-alive pings.
//!
//! tungstenite copies every frame into its own write buffer before writing
//! it; that buffer then stays as large as the largest batch for the rest of
//! the connection. Room events are the bulk of what a server writes, and
//! their bytes are already encoded and shared by every member, so they skip
//! it: each frame is a 2 to 10-byte header plus the payload's own bytes,
//! and a batch of frames is one vectored write. Pings skip it too: an idle
//! node sends hundreds a second, each two bytes. Replies, pongs and close
//! frames still go through tungstenite, which is flushed first so frames
//! never interleave.

use std::io::{self, IoSlice};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use whisper_rooms::Payload;

/// FIN set, opcode 1 (text): a whole text message in one frame.
const FIN_TEXT: u8 = 0x81;
/// The longest frame header a server sends (no mask): 1 + 1 + 8 bytes.
const MAX_HEADER: usize = 10;

/// A ping with no payload: FIN set, opcode 9, length 0.
const PING: [u8; 2] = [0x89, 0x00];

/// The header of an unmasked, unfragmented text frame of `len` bytes
/// (RFC 6455 §5.2), and how many of its bytes are used.
fn text_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0u8; MAX_HEADER];
    header[0] = FIN_TEXT;
    if len < 126 {
        // Cannot truncate: checked just above.
        header[1] = len as u8;
        (header, 2)
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

/// Writes each payload as one text frame, in order, with as few vectored
/// writes as the socket allows (one, unless its buffer fills). Does not
/// return until everything is written or the socket fails.
pub(crate) async fn write_text_frames<W>(socket: &mut W, payloads: &[Payload]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let headers: Vec<([u8; MAX_HEADER], usize)> = payloads
        .iter()
        .map(|payload| text_header(payload.len()))
        .collect();
    let mut slices: Vec<IoSlice<'_>> = headers
        .iter()
        .zip(payloads)
        .flat_map(|((header, used), payload)| {
            [
                IoSlice::new(&header[..*used]),
                IoSlice::new(payload.as_bytes()),
            ]
        })
        .collect();
    let mut unwritten = &mut slices[..];
    while !unwritten.is_empty() {
        let written = socket.write_vectored(unwritten).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut unwritten, written);
    }
    socket.flush().await
}

/// Writes a ping with no payload: two bytes and one `send`.
pub(crate) async fn write_ping<W>(socket: &mut W) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    socket.write_all(&PING).await?;
    socket.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

    /// A socket that takes at most `step` bytes per write, to exercise
    /// partial writes.
    struct Trickle {
        written: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Every header length boundary, read back by a real WebSocket client.
    #[tokio::test]
    async fn frames_of_every_length_class_read_back_as_sent() {
        let texts: Vec<String> = [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]
            .iter()
            .map(|&len| "é".repeat(len / 2) + &"x".repeat(len % 2))
            .collect();
        let payloads: Vec<Payload> = texts.iter().cloned().map(Payload::from).collect();
        for step in [1, 7, usize::MAX] {
            let mut socket = Trickle {
                written: Vec::new(),
                step,
            };
            write_text_frames(&mut socket, &payloads)
                .await
                .expect("written");
            let mut client =
                WebSocket::from_raw_socket(io::Cursor::new(socket.written), Role::Client, None);
            for text in &texts {
                let message = client.read().expect("a frame");
                assert_eq!(message, Message::Text(Utf8Bytes::from(text.as_str())));
            }
        }
    }

    #[tokio::test]
    async fn a_ping_reads_back_as_an_empty_ping() {
        let mut socket = Trickle {
            written: Vec::new(),
            step: 1,
        };
        write_ping(&mut socket).await.expect("written");
        let mut client =
            WebSocket::from_raw_socket(io::Cursor::new(socket.written), Role::Client, None);
        assert_eq!(
            client.read().expect("a frame"),
            Message::Ping(Vec::new().into())
        );
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(text_header(125).1, 2);
        assert_eq!(text_header(126).1, 4);
        assert_eq!(text_header(65_535).1, 4);
        assert_eq!(text_header(65_536).1, 10);
        assert_eq!(&text_header(300).0[..4], &[0x81, 126, 1, 44]);
    }
}
