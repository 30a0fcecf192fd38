//! Caps on open connections: every TCP connection to the server
//! ([`OpenConnections`]), and each user's WebSockets ([`ConnectionCounts`]).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use whisper_auth::UserId;

/// The server-wide cap on open TCP connections (`Config::max_connections`):
/// page and API requests, WebSocket handshakes and the chat sockets they
/// become. Without it, clients that open connections and send nothing
/// useful (headers or a body that never finish) take file descriptors
/// until `accept` fails, and then no one, not even a database connection,
/// gets another. A connection past the cap is answered 503 at once
/// ([`refuse`]) and never read as a request, so it costs no task for
/// longer than a second; the connections already open, chat sockets
/// included, carry on.
#[derive(Debug)]
pub(crate) struct OpenConnections {
    places: Arc<Semaphore>,
}

impl OpenConnections {
    /// Room for `max` open connections.
    pub fn new(max: usize) -> Self {
        OpenConnections {
            places: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// `stream`, counted, when there is room for it; otherwise `stream`
    /// back, to be refused.
    pub fn admit(&self, stream: TcpStream) -> Result<AdmittedStream, TcpStream> {
        match self.places.clone().try_acquire_owned() {
            Ok(place) => Ok(AdmittedStream {
                stream,
                _place: place,
            }),
            Err(_) => Err(stream),
        }
    }
}

/// A client's TCP stream holding its place under [`OpenConnections`] for as
/// long as the socket is open: through hyper, and after an upgrade inside
/// the WebSocket, since the upgraded stream owns this one. Reads and writes
/// go straight to the socket (vectored writes included, which the chat's
/// frame batches rely on).
#[derive(Debug)]
pub(crate) struct AdmittedStream {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl AsyncRead for AdmittedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AdmittedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The body of the 503 a connection past the cap gets.
const OVER_CAPACITY: &str = "Server busy: too many open connections\n";

/// Longest a refused connection is kept: time to write the 503 and to read
/// (and drop) what the client sent meanwhile, so that closing the socket
/// with its request unread does not reset the connection before the client
/// has read the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Answers a connection past the cap with 503 and `Retry-After`, without
/// reading its request (reading it is what the cap saves), then closes it
/// within [`REFUSAL_LINGER`].
pub(crate) async fn refuse(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         x-content-type-options: nosniff\r\n\
         retry-after: 1\r\n\
         connection: close\r\n\
         content-length: {}\r\n\r\n{OVER_CAPACITY}",
        OVER_CAPACITY.len()
    );
    let answer_and_drain = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    // Whatever happens, the socket closes: an error or the deadline only
    // means the client is gone or slow.
    let _ = tokio::time::timeout(REFUSAL_LINGER, answer_and_drain).await;
}

/// Open WebSockets per user on this node.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts {
    open: Mutex<HashMap<UserId, usize>>,
}

/// One counted connection; dropping it (however the connection task ends,
/// panics included) gives the slot back.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    user: UserId,
}

impl ConnectionCounts {
    /// A slot for `user`, or `None` when the user already has `limit`.
    pub fn acquire(self: &Arc<Self>, user: UserId, limit: usize) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(user).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counts: self.clone(),
            user,
        })
    }

    /// Every open connection on this node.
    pub fn total(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_returned() {
        let counts = Arc::new(ConnectionCounts::default());
        let ann = UserId(1);
        let first = counts.acquire(ann, 2).expect("first");
        let second = counts.acquire(ann, 2).expect("second");
        assert!(counts.acquire(ann, 2).is_none());
        assert!(counts.acquire(UserId(2), 2).is_some());
        drop(first);
        assert!(counts.acquire(ann, 2).is_some());
        drop(second);
        assert!(counts.open.lock().expect("lock").is_empty());
    }
}
