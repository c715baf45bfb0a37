//! TLS when the crate is built without its `tls` feature: the same API, but no
//! [`TlsConfig`] can be made, so nothing reaches rustls (or compiles it, and
//! its C crypto library). Every way to ask for TLS says how to get it back.

use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::addr::Addr;
use crate::channel::ChannelError;
use crate::stream::Stream;

/// The environment variable naming the CA certificate PEM file.
pub const ENV_TLS_CA: &str = "ACTOR_TLS_CA";
/// The environment variable naming this node's certificate chain PEM file.
pub const ENV_TLS_CERT: &str = "ACTOR_TLS_CERT";
/// The environment variable naming this node's private key PEM file.
pub const ENV_TLS_KEY: &str = "ACTOR_TLS_KEY";

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// TLS was asked for, but this build has no TLS support.
    #[error("TLS was asked for ({0}) but this program was built without TLS: enable the `tls` feature")]
    Disabled(&'static str),
}

/// Mutual-TLS settings. Without the `tls` feature none can exist: every
/// constructor returns [`TlsError::Disabled`].
#[derive(Clone, Debug)]
pub struct TlsConfig {
    never: Infallible,
}

impl TlsConfig {
    /// Always [`TlsError::Disabled`] in this build.
    ///
    /// # Errors
    ///
    /// Always.
    pub fn from_pem_files(_ca: &Path, _cert: &Path, _key: &Path) -> Result<TlsConfig, TlsError> {
        Err(TlsError::Disabled("PEM files"))
    }

    /// Always [`TlsError::Disabled`] in this build.
    ///
    /// # Errors
    ///
    /// Always.
    pub fn from_pem(_ca: &[u8], _cert: &[u8], _key: &[u8]) -> Result<TlsConfig, TlsError> {
        Err(TlsError::Disabled("PEM data"))
    }

    /// `Ok(None)` when none of the TLS environment variables is set.
    ///
    /// # Errors
    ///
    /// [`TlsError::Disabled`] when any is: the user asked for TLS, and running
    /// in plaintext instead would be wrong.
    pub fn from_env() -> Result<Option<TlsConfig>, TlsError> {
        match [ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY].into_iter().find(|k| std::env::var_os(k).is_some()) {
            Some(k) => Err(TlsError::Disabled(k)),
            None => Ok(None),
        }
    }

    /// The CA, certificate and key paths.
    pub fn paths(&self) -> Option<(&Path, &Path, &Path)> {
        match self.never {}
    }

    /// The server side of the TLS handshake.
    ///
    /// # Errors
    ///
    /// None: no `TlsConfig` exists in this build.
    pub async fn accept(&self, _stream: Stream, _timeout: Duration) -> io::Result<Stream> {
        match self.never {}
    }

    /// The client side of the TLS handshake.
    ///
    /// # Errors
    ///
    /// None: no `TlsConfig` exists in this build.
    pub async fn connect(&self, _stream: Stream, _host: &str, _timeout: Duration) -> io::Result<Stream> {
        match self.never {}
    }
}

impl Stream {
    /// Connects over TLS; unreachable in this build, as no [`TlsConfig`] can
    /// be made.
    ///
    /// # Errors
    ///
    /// None: no `TlsConfig` exists in this build.
    pub async fn connect_tls(_addr: &Addr, _timeout: Duration, tls: &TlsConfig) -> io::Result<Stream> {
        match tls.never {}
    }
}

/// Without TLS no server can refuse our certificate.
pub(crate) fn refused_by_tls(_e: &ChannelError) -> Option<io::Error> {
    None
}
