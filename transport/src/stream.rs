//! The connected byte streams channels run over: TCP, Unix sockets, TLS.

use std::io;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::addr::Addr;
use crate::liveness;

/// A connected byte stream of any supported transport.
#[derive(Debug)]
pub enum Stream {
    /// TCP, with `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A Unix domain socket.
    Unix(UnixStream),
    /// Mutual TLS over TCP, after a completed TLS handshake: the client side from
    /// [`Stream::connect_tls`], the server side from [`TlsConfig::accept`](crate::TlsConfig::accept).
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
pub(crate) fn tune_liveness(s: &TcpStream) {
    if let Err(e) = liveness::apply(s) {
        tracing::debug!(error = %e, "cannot enable TCP keepalive");
    }
}

/// Whether an I/O error means the peer went away (reset, hang-up), not that it
/// sent something wrong.
pub fn is_hangup(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(e.kind(), K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof)
}
