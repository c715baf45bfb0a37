//! Listening sockets, yielding connected [`Stream`]s.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, UnixListener};

use crate::addr::Addr;
use crate::stream::{Stream, tune_liveness};

/// The accept backlog. tokio's default (128) drops SYNs when hundreds of children
/// connect back at once, costing a one-second retransmit.
const BACKLOG: u32 = 1024;

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
