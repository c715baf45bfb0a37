//! The one rule for where a listener may accept plaintext: only on this host.
//!
//! Every listener of the system (an actor's, an embedded arbiter's, the
//! `arbiter` daemon's) asks [`check_exposure`] before binding, so the rule and
//! its wording cannot drift apart; each caller adds how *its* user enables TLS
//! or opts out.

use crate::addr::Addr;

/// A listener would accept unencrypted, certificate-less connections from
/// beyond this host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to listen on {addr} without TLS: it is not a loopback address or a Unix socket, so \
     plaintext traffic would leave this host unencrypted and peers would not be authenticated by \
     certificate"
)]
pub struct ExposureError {
    /// The address that was to be bound.
    pub addr: Addr,
}

/// Checks that listening on `addr` keeps plaintext on this host: passes for a
/// loopback address or a Unix socket, with TLS (`tls`), or when the user
/// explicitly accepted plaintext beyond this host (`insecure`).
///
/// # Errors
///
/// [`ExposureError`] naming `addr` otherwise.
pub fn check_exposure(addr: &Addr, tls: bool, insecure: bool) -> Result<(), ExposureError> {
    if addr.is_local() || tls || insecure {
        return Ok(());
    }
    Err(ExposureError { addr: addr.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plaintext_beyond_this_host_is_refused() {
        let any: Addr = "tcp://0.0.0.0:1616".parse().unwrap();
        let local: Addr = "tcp://127.0.0.1:1616".parse().unwrap();
        let unix: Addr = "unix:///tmp/a.sock".parse().unwrap();
        assert_eq!(check_exposure(&any, false, false), Err(ExposureError { addr: any.clone() }));
        assert!(check_exposure(&any, true, false).is_ok());
        assert!(check_exposure(&any, false, true).is_ok());
        assert!(check_exposure(&local, false, false).is_ok());
        assert!(check_exposure(&unix, false, false).is_ok());
        let msg = check_exposure(&any, false, false).unwrap_err().to_string();
        assert!(msg.contains("tcp://0.0.0.0:1616") && msg.contains("TLS"), "{msg}");
    }
}
