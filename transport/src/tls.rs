//! Mutual TLS for TCP connections.
//!
//! A [`TlsConfig`] holds one CA certificate (or several), this node's certificate
//! chain and its private key. Every node is both a TLS server (its listener) and a
//! TLS client (its outgoing connections), and presents the same certificate in
//! both roles:
//!
//! - as a server it *requires* a client certificate that chains to the CA, so a
//!   peer without one, or with one from another CA, is refused during the TLS
//!   handshake, before any actor message is read;
//! - as a client it verifies the server's certificate against the CA and the host
//!   of the address it dialled (an IP SAN for an IP literal such as `10.0.0.5`, a
//!   DNS SAN for a name such as `node1.example`), and presents its own.
//!
//! Only TLS 1.3 is offered: both ends are this crate. The cryptography is rustls's
//! aws-lc-rs provider, chosen explicitly, so no process-wide default provider is
//! needed. The actor handshake ([`crate::handshake`]) still runs inside the TLS
//! session: TLS says who may connect at all, the token still says who is admitted.
//!
//! The configuration is read from PEM files ([`TlsConfig::from_pem_files`]), from
//! PEM bytes ([`TlsConfig::from_pem`]) or from the [`ENV_TLS_CA`],
//! [`ENV_TLS_CERT`] and [`ENV_TLS_KEY`] environment variables
//! ([`TlsConfig::from_env`]). A connector uses [`connect_tls`] (or
//! [`crate::Stream::connect_tls`] for the bare stream); a listener upgrades each
//! accepted stream with [`TlsConfig::accept`] and then runs
//! [`crate::handshake::accept`] on it.
//!
//! # Making a test CA with the `openssl` CLI
//!
//! For a cluster on a trusted network or a test, a private CA is enough. With
//! OpenSSL 1.1.1 or 3.x, in an empty directory (the node here is reachable as
//! `10.0.0.5` and `node1.example`; list every address and name peers will dial):
//!
//! ```sh
//! # 1. The CA: ca.pem goes to every node, ca.key stays with whoever signs.
//! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
//!     -days 3650 -subj "/CN=actor cluster CA" -keyout ca.key -out ca.pem
//!
//! # 2. A node's key and certificate request.
//! openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
//!     -subj "/CN=node1" -keyout node1.key -out node1.csr
//!
//! # 3. The CA signs it: the node's addresses as SANs, usable as server and client.
//! cat > node1.ext <<'EOF'
//! basicConstraints = critical, CA:FALSE
//! keyUsage = critical, digitalSignature
//! extendedKeyUsage = serverAuth, clientAuth
//! subjectAltName = IP:10.0.0.5, DNS:node1.example, IP:127.0.0.1, DNS:localhost
//! EOF
//! openssl x509 -req -in node1.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
//!     -days 825 -sha256 -extfile node1.ext -out node1.pem
//!
//! # Then, on node1:
//! export ACTOR_TLS_CA=$PWD/ca.pem ACTOR_TLS_CERT=$PWD/node1.pem ACTOR_TLS_KEY=$PWD/node1.key
//! ```
//!
//! Repeat steps 2 and 3 for every node. The crate's tests run exactly these
//! commands (when `openssl` is installed) and load the result.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::addr::Addr;
use crate::channel::ChannelError;
use crate::codec::FrameError;
use crate::stream::Stream;

/// Environment variable naming the PEM file of the CA certificate(s) to trust.
pub const ENV_TLS_CA: &str = "ACTOR_TLS_CA";
/// Environment variable naming the PEM file of this node's certificate chain.
pub const ENV_TLS_CERT: &str = "ACTOR_TLS_CERT";
/// Environment variable naming the PEM file of this node's private key.
pub const ENV_TLS_KEY: &str = "ACTOR_TLS_KEY";

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// Which file: `CA certificate`, `certificate` or `private key`.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The input is not well-formed PEM.
    #[error("the TLS {what} ({origin}) is not valid PEM: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Where it came from (a path, or `PEM data`).
        origin: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The CA or certificate input holds no `CERTIFICATE` PEM section.
    #[error("the TLS {what} ({origin}) holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` section)")]
    NoCertificate {
        /// Which input.
        what: &'static str,
        /// Where it came from.
        origin: String,
    },
    /// The key input holds no private key.
    #[error(
        "the TLS private key ({origin}) holds no unencrypted private key (expected a PEM `PRIVATE KEY`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY` section)"
    )]
    NoPrivateKey {
        /// Where it came from.
        origin: String,
    },
    /// A CA certificate cannot serve as a trust anchor (malformed DER).
    #[error("the TLS CA certificate ({origin}) is invalid: {reason}")]
    InvalidCa {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The private key is unusable or does not belong to the certificate.
    #[error("the TLS private key ({key}) cannot be used with the certificate ({cert}): {reason}")]
    InvalidKey {
        /// Where the key came from.
        key: String,
        /// Where the certificate came from.
        cert: String,
        /// What is wrong (e.g. the key does not match the certificate).
        reason: String,
    },
    /// The certificate is malformed, not signed by the CA, expired, or not usable
    /// for client authentication.
    #[error("the TLS certificate ({cert}) is not valid under the CA ({ca}): {reason}")]
    Untrusted {
        /// Where the certificate came from.
        cert: String,
        /// Where the CA came from.
        ca: String,
        /// Why it does not verify.
        reason: String,
    },
    /// Only some of the three TLS environment variables are set.
    #[error(
        "incomplete TLS configuration in the environment: {set} set but {missing} not; set all of \
         {ENV_TLS_CA}, {ENV_TLS_CERT} and {ENV_TLS_KEY}, or none of them"
    )]
    IncompleteEnv {
        /// The variables that are set.
        set: String,
        /// The variables that are missing.
        missing: String,
    },
    /// rustls refused the configuration for another reason.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// Mutual-TLS settings: the CA to trust, and this node's certificate and key.
///
/// Cheap to clone (the rustls configurations are shared).
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    paths: Option<Arc<(PathBuf, PathBuf, PathBuf)>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("paths", &self.paths()).finish_non_exhaustive()
    }
}

/// One PEM input and where it came from, for error messages.
struct Pem<'a> {
    bytes: &'a [u8],
    origin: String,
}

impl TlsConfig {
    /// Reads the CA certificate(s), this node's certificate chain (leaf first) and
    /// its private key from PEM files, and remembers the paths (see
    /// [`TlsConfig::paths`]).
    ///
    /// # Errors
    ///
    /// [`TlsError::Read`] if a file cannot be read; otherwise as
    /// [`TlsConfig::from_pem`], with the paths named in the message.
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
        };
        let (ca_pem, cert_pem, key_pem) =
            (read("CA certificate", ca)?, read("certificate", cert)?, read("private key", key)?);
        let mut config = build(
            Pem { bytes: &ca_pem, origin: ca.display().to_string() },
            Pem { bytes: &cert_pem, origin: cert.display().to_string() },
            Pem { bytes: &key_pem, origin: key.display().to_string() },
        )?;
        config.paths = Some(Arc::new((ca.to_owned(), cert.to_owned(), key.to_owned())));
        Ok(config)
    }

    /// Builds the configuration from PEM bytes: `ca` holds one or more CA
    /// certificates, `cert` this node's certificate chain (leaf first), `key` its
    /// unencrypted private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// The certificate is checked up front: it must chain to the CA, be valid now
    /// and be usable for client authentication, and the key must match it.
    ///
    /// # Errors
    ///
    /// [`TlsError::Pem`], [`TlsError::NoCertificate`] or [`TlsError::NoPrivateKey`]
    /// for unusable input, [`TlsError::InvalidCa`] for a malformed CA certificate,
    /// [`TlsError::InvalidKey`] if the key is unusable or does not match,
    /// [`TlsError::Untrusted`] if the certificate does not verify under the CA.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<TlsConfig, TlsError> {
        build(
            Pem { bytes: ca, origin: "CA PEM data".into() },
            Pem { bytes: cert, origin: "certificate PEM data".into() },
            Pem { bytes: key, origin: "private key PEM data".into() },
        )
    }

    /// Reads the configuration from the files named by [`ENV_TLS_CA`],
    /// [`ENV_TLS_CERT`] and [`ENV_TLS_KEY`]. Returns `Ok(None)` when none of the
    /// three is set (TLS is off).
    ///
    /// # Errors
    ///
    /// [`TlsError::IncompleteEnv`] when only some are set (an empty variable
    /// counts as unset), otherwise as [`TlsConfig::from_pem_files`].
    pub fn from_env() -> Result<Option<TlsConfig>, TlsError> {
        from_lookup(|var| std::env::var_os(var))
    }

    /// The CA, certificate and key paths, if this configuration was read from
    /// files (so a parent can hand them to the processes it spawns); `None` if it
    /// was built from PEM bytes.
    pub fn paths(&self) -> Option<(&Path, &Path, &Path)> {
        self.paths.as_deref().map(|(ca, cert, key)| (ca.as_path(), cert.as_path(), key.as_path()))
    }

    /// The rustls server configuration (requires a client certificate from the CA).
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// The rustls client configuration (verifies the server against the CA and
    /// presents this node's certificate).
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.client
    }

    /// Runs the server side of the TLS handshake on a freshly accepted TCP
    /// stream, within `timeout`, and returns the encrypted [`Stream::Tls`].
    ///
    /// The peer must present a certificate signed by the CA; a peer without one,
    /// with one from another CA, or speaking plaintext is refused here, before any
    /// of its data reaches the caller.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `stream` is not a plain TCP stream, `TimedOut` if the
    /// handshake does not finish in time, otherwise the TLS failure (kind
    /// `InvalidData` for a bad or missing certificate or a non-TLS peer), with a
    /// message that says what went wrong.
    pub async fn accept(&self, stream: Stream, timeout: Duration) -> io::Result<Stream> {
        let tcp = plain_tcp(stream, "accept")?;
        let handshake = TlsAcceptor::from(self.server.clone()).accept(tcp).into_fallible();
        match tokio::time::timeout(timeout, handshake).await {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the TLS handshake did not finish within {timeout:?}"),
            )),
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls.into()))),
            Ok(Err((e, tcp))) => {
                linger_close(tcp).await;
                Err(describe(e, Side::Server))
            }
        }
    }

    /// Runs the client side of the TLS handshake on a connected TCP stream,
    /// within `timeout`, verifying the server's certificate for `host` (an IP
    /// literal is matched against IP SANs, anything else against DNS SANs), and
    /// returns the encrypted [`Stream::Tls`].
    ///
    /// With TLS 1.3 the server checks *our* certificate only after this returns,
    /// so a server that refuses us shows up as an error on the first read.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `stream` is not a plain TCP stream or `host` is not a
    /// valid name or IP address, `TimedOut` if the handshake does not finish in
    /// time, otherwise the TLS failure (kind `InvalidData` for an untrusted server
    /// certificate or a peer that does not speak TLS).
    pub async fn connect(&self, stream: Stream, host: &str, timeout: Duration) -> io::Result<Stream> {
        let tcp = plain_tcp(stream, "connect")?;
        let name = server_name(host)?;
        let handshake = TlsConnector::from(self.client.clone()).connect(name, tcp);
        match tokio::time::timeout(timeout, handshake).await {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the TLS handshake did not finish within {timeout:?}"),
            )),
            Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls.into()))),
            Ok(Err(e)) => Err(describe(e, Side::Client)),
        }
    }
}

impl Stream {
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
}

/// [`TlsConfig::from_env`] over any variable lookup (for tests).
fn from_lookup(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Option<TlsConfig>, TlsError> {
    let vars = [ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY];
    let values = vars.map(|var| get(var).filter(|v| !v.is_empty()).map(PathBuf::from));
    match &values {
        [None, None, None] => Ok(None),
        [Some(ca), Some(cert), Some(key)] => TlsConfig::from_pem_files(ca, cert, key).map(Some),
        _ => {
            let names = |set: bool| {
                vars.iter()
                    .zip(&values)
                    .filter(|(_, v)| v.is_some() == set)
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(" and ")
            };
            Err(TlsError::IncompleteEnv { set: names(true), missing: names(false) })
        }
    }
}

fn build(ca: Pem<'_>, cert: Pem<'_>, key: Pem<'_>) -> Result<TlsConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ca_certs = certificates("CA certificate", &ca)?;
    let chain = certificates("certificate", &cert)?;
    let key_der = match PrivateKeyDer::from_pem_slice(key.bytes) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoPrivateKey { origin: key.origin });
        }
        Err(e) => {
            return Err(TlsError::Pem { what: "private key", origin: key.origin, reason: e.to_string() });
        }
    };

    let mut roots = RootCertStore::empty();
    for der in ca_certs {
        roots
            .add(der)
            .map_err(|e| TlsError::InvalidCa { origin: ca.origin.clone(), reason: e.to_string() })?;
    }
    let roots = Arc::new(roots);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::InvalidCa { origin: ca.origin.clone(), reason: e.to_string() })?;

    // Our own certificate must pass the check every peer will apply to it; saying
    // so now beats a refused connection later.
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| TlsError::NoCertificate { what: "certificate", origin: cert.origin.clone() })?;
    verifier.verify_client_cert(leaf, intermediates, UnixTime::now()).map_err(|e| TlsError::Untrusted {
        cert: cert.origin.clone(),
        ca: ca.origin.clone(),
        reason: e.to_string(),
    })?;

    let invalid_key = |e: rustls::Error| TlsError::InvalidKey {
        key: key.origin.clone(),
        cert: cert.origin.clone(),
        reason: e.to_string(),
    };
    let config_error = |e: rustls::Error| TlsError::Config(e.to_string());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key_der.clone_key())
        .map_err(invalid_key)?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(invalid_key)?;
    Ok(TlsConfig { server: Arc::new(server), client: Arc::new(client), paths: None })
}

fn certificates(what: &'static str, pem: &Pem<'_>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { what, origin: pem.origin.clone(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what, origin: pem.origin.clone() });
    }
    Ok(certs)
}

pub(crate) fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{host}` is neither a valid DNS name nor an IP address, so TLS cannot verify it"),
        )
    })
}

fn plain_tcp(stream: Stream, op: &str) -> io::Result<TcpStream> {
    match stream {
        Stream::Tcp(tcp) => Ok(tcp),
        Stream::Unix(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot TLS-{op} a Unix socket: TLS is for TCP connections"),
        )),
        Stream::Tls(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot TLS-{op} a stream that already is TLS"),
        )),
    }
}

/// After a failed server handshake: close our sending side (the alert, if any,
/// is already written) and read what the peer still sends for a moment, so the
/// kernel does not answer its pending data with a reset that could destroy the
/// alert before the peer reads it.
async fn linger_close(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if tcp.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut budget = 64 * 1024usize;
        while budget > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    };
    // Bounded in time and bytes: a peer cannot hold us here.
    let _ = tokio::time::timeout(Duration::from_millis(100), drain).await;
}

#[derive(Clone, Copy)]
enum Side {
    Server,
    Client,
}

/// Adds what a person needs to know to a TLS handshake failure.
fn describe(e: io::Error, side: Side) -> io::Error {
    use rustls::CertificateError as C;
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let whose = match side {
        Side::Server => "the client's",
        Side::Client => "the server's",
    };
    let hint = match (tls, side) {
        (Some(rustls::Error::InvalidMessage(_)), Side::Server) => {
            " (the peer does not speak TLS: is it a plaintext client? this listener requires mutual TLS)"
                .to_owned()
        }
        (Some(rustls::Error::InvalidMessage(_)), Side::Client) => {
            " (the server does not speak TLS: is it a plaintext listener?)".to_owned()
        }
        (Some(rustls::Error::NoCertificatesPresented), _) => {
            " (the peer presented no certificate; mutual TLS requires one signed by the CA)".to_owned()
        }
        (Some(rustls::Error::InvalidCertificate(cert)), _) => match cert {
            C::UnknownIssuer | C::BadSignature => {
                format!(" ({whose} certificate is not signed by a CA this node trusts)")
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!(" ({whose} certificate does not name the host that was dialled)")
            }
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                format!(" ({whose} certificate is expired or not yet valid: check the clocks and dates)")
            }
            _ => format!(" ({whose} certificate was rejected)"),
        },
        (Some(rustls::Error::AlertReceived(_)), Side::Client) => {
            " (the server refused the TLS handshake: does it trust our CA?)".to_owned()
        }
        (None, _) if e.kind() == io::ErrorKind::UnexpectedEof => {
            " (the peer closed the connection during the TLS handshake: does it speak TLS?)".to_owned()
        }
        _ => String::new(),
    };
    io::Error::new(e.kind(), format!("TLS handshake failed: {e}{hint}"))
}

/// The error to report when the channel of a freshly connected TLS client broke
/// because the server refused us after the handshake (TLS 1.3 checks the client
/// certificate last), or `None` if the failure is something else.
pub(crate) fn refused_by_tls(e: &ChannelError) -> Option<io::Error> {
    let ChannelError::Frame(frame) = e else { return None };
    let FrameError::Io(io_err) = &**frame else { return None };
    match io_err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(alert)) => Some(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the server refused our TLS certificate (alert: {alert:?}): is it signed by the CA the \
                 server trusts?"
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_inputs_give_clear_errors() {
        let e = TlsConfig::from_pem(b"", b"", b"").unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { what: "CA certificate", .. }), "{e}");
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");

        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = TlsConfig::from_pem(bad, bad, b"").unwrap_err();
        assert!(matches!(e, TlsError::Pem { .. }), "{e}");

        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = TlsConfig::from_pem(cert, cert, b"no key here").unwrap_err();
        assert!(matches!(e, TlsError::NoPrivateKey { .. }), "{e}");

        let e = TlsConfig::from_pem_files(Path::new("/nonexistent/ca.pem"), Path::new("/x"), Path::new("/y"))
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn environment() {
        let none = |_: &str| None;
        assert!(matches!(from_lookup(none), Ok(None)));
        let empty = |_: &str| Some(std::ffi::OsString::new());
        assert!(matches!(from_lookup(empty), Ok(None)));
        let some = |v: &str| (v != ENV_TLS_KEY).then(|| std::ffi::OsString::from("/x.pem"));
        let e = from_lookup(some).unwrap_err();
        assert!(matches!(e, TlsError::IncompleteEnv { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("ACTOR_TLS_CA and ACTOR_TLS_CERT set but ACTOR_TLS_KEY not"), "{text}");
        let all = |v: &str| Some(std::ffi::OsString::from(format!("/nonexistent/{v}")));
        let e = from_lookup(all).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/ACTOR_TLS_CA"), "{e}");
    }

    #[test]
    fn server_names() {
        assert!(matches!(server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("node1.example"), Ok(ServerName::DnsName(_))));
        assert!(server_name("not a host").is_err());
    }
}
