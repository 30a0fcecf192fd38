//! Loopback TCP as both modes use it: a listener that cannot leave a run
//! blocked for ever, and connections as a chat server and its clients keep
//! them (non-blocking, `TCP_NODELAY`).

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::error::LimitError;
use crate::sys::{self, Epoll};

/// Connections waiting to be accepted: all of a run's at once.
const BACKLOG: i32 = 4096;
/// Longest wait for the next connection.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Raises the soft open-files limit to the hard one: the number of
/// descriptors this process may now hold.
pub fn raise_nofile() -> Result<usize, LimitError> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|error| LimitError::sys("setrlimit RLIMIT_NOFILE", error))?;
    Ok(usize::try_from(limit).unwrap_or(usize::MAX))
}

/// A listener on a free port of 127.0.0.1.
pub fn listen() -> Result<TcpListener, LimitError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| LimitError::sys("bind 127.0.0.1:0", error))?;
    sys::prepare_listener(&listener, BACKLOG, ACCEPT_TIMEOUT)?;
    Ok(listener)
}

/// The address `listener` is bound to.
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr, LimitError> {
    listener
        .local_addr()
        .map_err(|error| LimitError::sys("getsockname", error))
}

/// Accepts `n` connections.
pub fn accept_n(listener: &TcpListener, n: usize) -> Result<Vec<TcpStream>, LimitError> {
    (0..n)
        .map(|i| {
            let (socket, _) = listener
                .accept()
                .map_err(|error| LimitError::sys(format!("accept #{i}"), error))?;
            tune(socket)
        })
        .collect()
}

/// Opens `n` connections to `addr` and watches them for reading with a new
/// epoll, each with its index as token.
pub fn connect_n(addr: SocketAddr, n: usize) -> Result<(Vec<TcpStream>, Epoll), LimitError> {
    let sockets = (0..n)
        .map(|i| {
            let socket = TcpStream::connect(addr)
                .map_err(|error| LimitError::sys(format!("connect #{i}"), error))?;
            tune(socket)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let epoll = Epoll::new()?;
    for (i, socket) in sockets.iter().enumerate() {
        epoll.add(socket.as_raw_fd(), libc::EPOLLIN, i)?;
    }
    Ok((sockets, epoll))
}

fn tune(socket: TcpStream) -> Result<TcpStream, LimitError> {
    socket
        .set_nodelay(true)
        .map_err(|error| LimitError::sys("TCP_NODELAY", error))?;
    socket
        .set_nonblocking(true)
        .map_err(|error| LimitError::sys("O_NONBLOCK", error))?;
    Ok(socket)
}

/// One `read()` from a non-blocking socket: `None` when there was nothing
/// to read. End of stream is an error: no peer closes during a run.
pub fn read_ready(
    fd: RawFd,
    buf: &mut [u8],
    who: &'static str,
) -> Result<Option<usize>, LimitError> {
    match sys::read(fd, buf) {
        Ok(0) => Err(LimitError::PeerClosed(who)),
        Ok(n) => Ok(Some(n)),
        Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(None),
        Err(error) => Err(LimitError::sys(format!("{who} read"), error)),
    }
}
