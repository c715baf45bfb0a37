//! Listening sockets and the connected streams they yield.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

use crate::addr::Addr;

/// The accept backlog. tokio's default (128) drops SYNs when hundreds of children
/// connect back at once, costing a one-second retransmit.
const BACKLOG: u32 = 1024;

/// A connected byte stream of any supported transport.
#[derive(Debug)]
pub enum Stream {
    /// TCP, with `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A Unix domain socket.
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `addr`, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// The connect error, or `io::ErrorKind::TimedOut`.
    pub async fn connect(addr: &Addr, timeout: Duration) -> io::Result<Stream> {
        let fut = async {
            match addr {
                Addr::Tcp { host, port } => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Stream::Tcp(s))
                }
                Addr::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            }
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out after {timeout:?}"),
            )
        })?
    }
}

/// A bound listener for TCP or Unix-socket connections.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    local: Addr,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr` (TCP port 0 picks a free port) with a deep accept backlog.
    ///
    /// # Errors
    ///
    /// The bind error, e.g. `AddrInUse`, or a resolution failure.
    pub async fn bind(addr: &Addr) -> io::Result<Listener> {
        match addr {
            Addr::Tcp { host, port } => {
                let sa = tokio::net::lookup_host((host.as_str(), *port)).await?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
                })?;
                let socket = if sa.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.set_reuseaddr(true)?;
                socket.bind(sa)?;
                let l = socket.listen(BACKLOG)?;
                let local = l.local_addr()?.into();
                Ok(Listener { inner: Inner::Tcp(l), local })
            }
            Addr::Unix(path) => {
                let l = UnixListener::bind(path)?;
                Ok(Listener { inner: Inner::Unix(l, path.clone()), local: addr.clone() })
            }
        }
    }

    /// The bound address, with the real port when port 0 was asked for.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// Accepts the next connection; returns it with a printable peer address.
    ///
    /// # Errors
    ///
    /// The accept error (e.g. too many open files); the listener stays usable.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn accept(&self) -> io::Result<(Stream, String)> {
        match &self.inner {
            Inner::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            Inner::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("unix peer on {}", path.display())))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Inner::Unix(_, path) = &self.inner {
            // The socket file is ours; if it is already gone there is nothing to do.
            let _ = std::fs::remove_file(path);
        }
    }
}
