//! Listening sockets and the connected streams they yield.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

use crate::addr::Addr;
use crate::liveness;
use crate::tls::{TlsConfig, server_name};

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
    /// Mutual TLS over TCP, after a completed TLS handshake: the client side from
    /// [`Stream::connect_tls`], the server side from [`TlsConfig::accept`].
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
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
                    tune_liveness(&s);
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

    /// Connects to the TCP address `addr` and runs the client side of the TLS
    /// handshake with `tls`, verifying the server's certificate for the host of
    /// `addr`; the whole is bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a Unix-socket address (TLS is for TCP) or a host that is
    /// neither a DNS name nor an IP address; the connect error; `TimedOut`; or the
    /// TLS failure, as [`TlsConfig::connect`].
    pub async fn connect_tls(addr: &Addr, timeout: Duration, tls: &TlsConfig) -> io::Result<Stream> {
        let Addr::Tcp { host, .. } = addr else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot use TLS with {addr}: TLS is for TCP addresses; a Unix socket stays on this host"
                ),
            ));
        };
        // Check the name first, so a bad one fails without any traffic.
        server_name(host)?;
        let start = tokio::time::Instant::now();
        let stream = Stream::connect(addr, timeout).await?;
        tls.connect(stream, host, timeout.saturating_sub(start.elapsed())).await
    }

    /// Whether this is a TLS stream.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return matches!(self, Stream::Tls(_));
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// Applies [`liveness::apply`]; a failure leaves a working connection that
/// just detects a dead peer later, so it is logged, not returned.
fn tune_liveness(s: &TcpStream) {
    if let Err(e) = liveness::apply(s) {
        tracing::debug!(error = %e, "cannot enable TCP keepalive");
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
    /// A Unix socket file is created with mode 0600 whatever the umask, and a
    /// stale one (left by a killed process: nobody accepts on it) is replaced.
    ///
    /// # Errors
    ///
    /// The bind error, e.g. `AddrInUse` (for a Unix socket: another process is
    /// listening there, or the path is not a socket), or a resolution failure.
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
                let l = bind_unix(path)?;
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
                tune_liveness(&s);
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            Inner::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("unix peer on {}", path.display())))
            }
        }
    }
}

/// Binds a Unix socket at `path`, private to this user, replacing a stale
/// socket file but never a live listener's or a file that is not a socket.
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    let _dir = lock_dir_of(path);
    match bind_unix_private(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            if !is_socket {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} exists and is not a socket; not replacing it", path.display()),
                ));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another process is listening on {}", path.display()),
                )),
                // Nobody accepts there: a file left behind by a killed listener.
                Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::debug!(path = %path.display(), "replacing a stale socket file");
                    std::fs::remove_file(path)?;
                    bind_unix_private(path)
                }
                Err(_) => Err(e),
            }
        }
        other => other,
    }
}

/// Locks the directory of `path` (an advisory lock only our binders take)
/// until the guard drops. Without it, a binder could find another's fresh
/// socket between that one's bind and listen, be refused, and delete it as
/// stale. If the directory cannot be locked, binding goes ahead unlocked: the
/// race is rare and its loser fails later with a clear error.
fn lock_dir_of(path: &Path) -> Option<Flock<std::fs::File>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file = std::fs::File::open(dir).ok()?;
    match Flock::lock(file, FlockArg::LockExclusive) {
        Ok(lock) => Some(lock),
        Err((_, e)) => {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot lock the socket's directory");
            None
        }
    }
}

/// Creates, binds and listens on a Unix socket with mode 0600. The mode is set
/// between `bind` and `listen`: until `listen`, connects are refused, so no
/// peer can connect while the file still has the umask's permissions.
fn bind_unix_private(path: &Path) -> io::Result<UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let listening = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| socket.listen(BACKLOG as i32))
        .and_then(|()| socket.set_nonblocking(true));
    if let Err(e) = listening {
        // The file is ours (we just bound it); do not leave it behind.
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    UnixListener::from_std(std::os::unix::net::UnixListener::from(OwnedFd::from(socket)))
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Inner::Unix(_, path) = &self.inner {
            // The socket file is ours; if it is already gone there is nothing to do.
            let _ = std::fs::remove_file(path);
        }
    }
}
