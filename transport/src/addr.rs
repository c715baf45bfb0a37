//! Transport addresses: `tcp://host:port` and `unix:///path`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a listener is bound or a peer can be reached.
///
/// Parsed from and displayed as `tcp://host:port` or `unix:///absolute/path`;
/// serialized as that string, so it can travel in messages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Addr {
    /// A TCP endpoint; `host` is a name or an IP literal (IPv6 without brackets).
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port number; 0 asks the OS for a free port when binding.
        port: u16,
    },
    /// A Unix domain socket on this host.
    Unix(PathBuf),
}

/// Why a string is not a valid [`Addr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address `{input}`: {reason} (expected tcp://host:port or unix:///path)")]
pub struct AddrParseError {
    input: String,
    reason: &'static str,
}

impl Addr {
    /// A TCP address on the IPv4 loopback interface.
    pub fn loopback(port: u16) -> Self {
        Addr::Tcp { host: "127.0.0.1".into(), port }
    }

    /// Whether connections to this address stay on this host: a Unix socket, or a
    /// TCP host that is `localhost` or a loopback IP.
    pub fn is_local(&self) -> bool {
        match self {
            Addr::Unix(_) => true,
            Addr::Tcp { host, .. } => {
                host == "localhost"
                    || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
            }
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Addr::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Addr::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

impl FromStr for Addr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrParseError { input: s.to_owned(), reason };
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(err("a unix socket path must be absolute"));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("tcp://").ok_or_else(|| err("unknown scheme"))?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("missing port"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() {
            return Err(err("missing host"));
        }
        let port = port.parse().map_err(|_| err("port is not a number from 0 to 65535"))?;
        Ok(Addr::Tcp { host: host.to_owned(), port })
    }
}

impl TryFrom<String> for Addr {
    type Error = AddrParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Addr> for String {
    fn from(a: Addr) -> String {
        a.to_string()
    }
}

impl From<std::net::SocketAddr> for Addr {
    fn from(sa: std::net::SocketAddr) -> Self {
        Addr::Tcp { host: sa.ip().to_string(), port: sa.port() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for s in ["tcp://127.0.0.1:1616", "tcp://localhost:0", "unix:///tmp/a.sock", "tcp://[::1]:80"] {
            let a: Addr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert!(matches!("tcp://[::1]:80".parse::<Addr>(), Ok(Addr::Tcp { host, .. }) if host == "::1"));
    }

    #[test]
    fn rejects_bad_input() {
        for s in ["", "http://x:1", "tcp://x", "tcp://:1", "tcp://x:99999", "unix://rel/path"] {
            assert!(s.parse::<Addr>().is_err(), "{s} should not parse");
        }
    }

    #[test]
    fn locality() {
        assert!("tcp://127.0.0.1:1".parse::<Addr>().unwrap().is_local());
        assert!("tcp://localhost:1".parse::<Addr>().unwrap().is_local());
        assert!(!"tcp://10.0.0.1:1".parse::<Addr>().unwrap().is_local());
        assert!(!"tcp://0.0.0.0:1".parse::<Addr>().unwrap().is_local());
    }
}
