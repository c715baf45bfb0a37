//! The connection handshake.
//!
//! ```text
//! connector                         acceptor
//!   Hello{version, uid, nonce_c} ->
//!                                <- Hello{version, uid, nonce_a}   (or Refused)
//!   Auth{proof}                  ->
//!                                <- Welcome                        (or Refused)
//! ```
//!
//! `proof` is HMAC-SHA256 keyed by the shared secret over a context string, both
//! nonces and the connector's uid, so the secret never crosses the wire and a
//! recorded proof is useless for another connection. The acceptor decides per
//! connector uid which secret (if any) it requires, which lets one listener take
//! one-time spawn tokens for its children and a cluster token for everyone else.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::addr::Addr;
use crate::channel::{Channel, ChannelConfig, ChannelError};
use crate::listener::Stream;
use crate::wire::{Msg, PROTOCOL_VERSION, Uid};

const CONTEXT: &[u8] = b"actor-transport handshake v1";
const NONCE_LEN: usize = 32;

/// A shared secret (token). Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// A secret from raw bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into().into())
    }

    /// A fresh random 32-byte secret.
    ///
    /// # Panics
    ///
    /// Panics if the operating system's random source fails.
    pub fn random() -> Self {
        Secret(random_bytes().to_vec().into())
    }

    /// The secret as lowercase hex, for passing through the environment.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the output of [`Secret::to_hex`]; `None` if `s` is not even-length hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() % 2 != 0 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        bytes.map(Secret::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What an acceptor requires of a connector, decided from its uid.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Admit without a proof.
    Open,
    /// Admit only with a valid proof of this secret.
    Require(Secret),
    /// Refuse, with this reason.
    Refuse(String),
}

/// Settings for either side of a handshake.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// This side's identity.
    pub uid: Uid,
    /// The whole handshake (and the TCP connect, for [`connect`]) must finish in
    /// this time.
    pub timeout: Duration,
    /// Limits for the resulting channel.
    pub channel: ChannelConfig,
}

/// Why a handshake failed. The channel is closed in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The TCP or Unix connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: Addr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The peer did not complete the handshake in time.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The acceptor refused us.
    #[error("refused by the peer: {reason}")]
    Refused {
        /// The acceptor's reason.
        reason: String,
    },
    /// The connector's proof was missing or wrong (acceptor side).
    #[error("peer {peer} failed authentication: {reason}")]
    AuthFailed {
        /// The uid the peer claimed.
        peer: Uid,
        /// What was wrong.
        reason: &'static str,
    },
    /// The connector was refused by the acceptor's policy (acceptor side).
    #[error("peer {peer} refused: {reason}")]
    PolicyRefused {
        /// The uid the peer claimed.
        peer: Uid,
        /// The policy's reason.
        reason: String,
    },
    /// The peer sent something other than the expected handshake message.
    #[error("protocol violation in handshake: expected {expected}, got {got}")]
    Unexpected {
        /// What we waited for.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// The peer closed the connection during the handshake.
    #[error("peer closed the connection during the handshake")]
    Closed,
    /// The peer answered with TLS records: it is a TLS listener and we spoke
    /// plaintext (configure TLS on this side too).
    #[error(
        "the peer speaks TLS but this side does not: configure TLS (ACTOR_TLS_CA, ACTOR_TLS_CERT, ACTOR_TLS_KEY)"
    )]
    PeerSpeaksTls,
    /// The channel failed (bad frame, write error).
    #[error("{0}")]
    Channel(#[from] ChannelError),
}

/// Connects to `addr` and performs the connector's side of the handshake.
/// Returns the ready channel and the acceptor's uid.
///
/// # Errors
///
/// [`HandshakeError`]: connect failures, timeout, version mismatch, refusal.
pub async fn connect(
    addr: &Addr,
    config: &HandshakeConfig,
    secret: Option<&Secret>,
) -> Result<(Channel, Uid), HandshakeError> {
    let deadline = tokio::time::Instant::now() + config.timeout;
    let stream = Stream::connect(addr, config.timeout)
        .await
        .map_err(|source| HandshakeError::Connect { addr: addr.clone(), source })?;
    let channel = Channel::from_stream(stream, &config.channel);
    tokio::time::timeout_at(deadline, connector(channel, config, secret))
        .await
        .map_err(|_| HandshakeError::Timeout(config.timeout))?
}

/// Performs the connector's side of the handshake on an already framed channel
/// (for transports set up elsewhere, such as TLS).
///
/// # Errors
///
/// As [`connect`], except connect failures.
pub async fn connect_on(
    channel: Channel,
    config: &HandshakeConfig,
    secret: Option<&Secret>,
) -> Result<(Channel, Uid), HandshakeError> {
    tokio::time::timeout(config.timeout, connector(channel, config, secret))
        .await
        .map_err(|_| HandshakeError::Timeout(config.timeout))?
}

async fn connector(
    mut channel: Channel,
    config: &HandshakeConfig,
    secret: Option<&Secret>,
) -> Result<(Channel, Uid), HandshakeError> {
    let nonce_c = Bytes::copy_from_slice(&random_bytes());
    channel
        .send(&Msg::Hello { version: PROTOCOL_VERSION, uid: config.uid.clone(), nonce: nonce_c.clone() })
        .await?;
    let (peer, nonce_a) = match next(&mut channel).await? {
        Msg::Hello { version, uid, nonce } => {
            if version != PROTOCOL_VERSION {
                return Err(HandshakeError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: version });
            }
            (uid, nonce)
        }
        Msg::Refused { reason } => return Err(HandshakeError::Refused { reason }),
        other => return Err(HandshakeError::Unexpected { expected: "Hello", got: other.name() }),
    };
    let proof = secret.map(|s| Bytes::from(proof(s, &nonce_a, &nonce_c, &config.uid)));
    channel.send(&Msg::Auth { proof }).await?;
    match next(&mut channel).await? {
        Msg::Welcome => Ok((channel, peer)),
        Msg::Refused { reason } => Err(HandshakeError::Refused { reason }),
        other => Err(HandshakeError::Unexpected { expected: "Welcome", got: other.name() }),
    }
}

/// Performs the acceptor's side of the handshake on a freshly accepted stream.
/// `policy` sees the connector's claimed uid and says what it must prove.
/// Returns the ready channel and the connector's uid.
///
/// A refused or failed connector is sent a `Refused` message (where the
/// connection still works) and the connection is closed.
///
/// # Errors
///
/// [`HandshakeError`]: timeout, version mismatch, failed authentication, refusal
/// by the policy, malformed messages.
pub async fn accept(
    stream: Stream,
    config: &HandshakeConfig,
    policy: impl FnOnce(&Uid) -> Auth,
) -> Result<(Channel, Uid), HandshakeError> {
    accept_on(Channel::from_stream(stream, &config.channel), config, policy).await
}

/// As [`accept`], on an already framed channel (for transports such as TLS).
///
/// # Errors
///
/// As [`accept`].
pub async fn accept_on(
    channel: Channel,
    config: &HandshakeConfig,
    policy: impl FnOnce(&Uid) -> Auth,
) -> Result<(Channel, Uid), HandshakeError> {
    let sender = channel.sender().clone();
    let res = tokio::time::timeout(config.timeout, acceptor(channel, config, policy))
        .await
        .map_err(|_| HandshakeError::Timeout(config.timeout))
        .and_then(|r| r);
    if let Err(e) = &res {
        let reason = match e {
            HandshakeError::VersionMismatch { .. } | HandshakeError::PolicyRefused { .. } => e.to_string(),
            HandshakeError::AuthFailed { .. } => "authentication failed".to_owned(),
            _ => format!("handshake failed: {e}"),
        };
        // Best effort: the peer may already be gone, and we close either way.
        let _ = sender.send_now(&Msg::Refused { reason });
        sender.close().await;
    }
    res
}

async fn acceptor(
    mut channel: Channel,
    config: &HandshakeConfig,
    policy: impl FnOnce(&Uid) -> Auth,
) -> Result<(Channel, Uid), HandshakeError> {
    let (peer, nonce_c) = match next(&mut channel).await? {
        Msg::Hello { version, uid, nonce } => {
            if version != PROTOCOL_VERSION {
                return Err(HandshakeError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: version });
            }
            (uid, nonce)
        }
        other => return Err(HandshakeError::Unexpected { expected: "Hello", got: other.name() }),
    };
    let auth = policy(&peer);
    if let Auth::Refuse(reason) = auth {
        return Err(HandshakeError::PolicyRefused { peer, reason });
    }
    let nonce_a = Bytes::copy_from_slice(&random_bytes());
    channel
        .send(&Msg::Hello { version: PROTOCOL_VERSION, uid: config.uid.clone(), nonce: nonce_a.clone() })
        .await?;
    let offered = match next(&mut channel).await? {
        Msg::Auth { proof } => proof,
        other => return Err(HandshakeError::Unexpected { expected: "Auth", got: other.name() }),
    };
    if let Auth::Require(secret) = &auth {
        let Some(offered) = offered else {
            return Err(HandshakeError::AuthFailed { peer, reason: "no token offered" });
        };
        if !verify(secret, &nonce_a, &nonce_c, &peer, &offered) {
            return Err(HandshakeError::AuthFailed { peer, reason: "wrong token" });
        }
    }
    channel.send(&Msg::Welcome).await?;
    Ok((channel, peer))
}

async fn next(channel: &mut Channel) -> Result<Msg, HandshakeError> {
    match channel.recv().await {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(HandshakeError::Closed),
        Err(e) if looks_like_tls(&e) => Err(HandshakeError::PeerSpeaksTls),
        Err(e) => Err(e.into()),
    }
}

/// Whether a frame error is a TLS record read as a length prefix: a content
/// type of handshake (0x16) or alert (0x15) followed by version 3.x.
fn looks_like_tls(e: &ChannelError) -> bool {
    match e {
        ChannelError::Frame(f) => match **f {
            crate::codec::FrameError::TooLarge { len, .. } => {
                let b = (len as u32).to_be_bytes();
                matches!(b[0], 0x15 | 0x16) && b[1] == 0x03
            }
            _ => false,
        },
        _ => false,
    }
}

fn mac(secret: &Secret, nonce_a: &[u8], nonce_c: &[u8], connector: &Uid) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret.0).expect("HMAC takes any key length");
    for part in [CONTEXT, nonce_a, nonce_c, connector.name.as_bytes(), b"\0", connector.id.as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

fn proof(secret: &Secret, nonce_a: &[u8], nonce_c: &[u8], connector: &Uid) -> Vec<u8> {
    mac(secret, nonce_a, nonce_c, connector).finalize().into_bytes().to_vec()
}

fn verify(secret: &Secret, nonce_a: &[u8], nonce_c: &[u8], connector: &Uid, offered: &[u8]) -> bool {
    mac(secret, nonce_a, nonce_c, connector).verify_slice(offered).is_ok()
}

fn random_bytes() -> [u8; NONCE_LEN] {
    let mut b = [0u8; NONCE_LEN];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_read_as_frames_are_recognised() {
        let tls_alert = ChannelError::from(crate::codec::FrameError::TooLarge { len: 0x1503_0300, max: 16 });
        let random = ChannelError::from(crate::codec::FrameError::TooLarge { len: 0xffff_ffff, max: 16 });
        assert!(looks_like_tls(&tls_alert));
        assert!(!looks_like_tls(&random));
    }

    #[test]
    fn secret_hex_round_trip_and_redaction() {
        let s = Secret::random();
        assert_eq!(Secret::from_hex(&s.to_hex()), Some(s.clone()));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(Secret::from_hex("abc").is_none());
        assert!(Secret::from_hex("zz").is_none());
    }

    #[test]
    fn proof_binds_nonces_and_uid() {
        let s = Secret::random();
        let u = Uid::new("a");
        let p = proof(&s, b"na", b"nc", &u);
        assert!(verify(&s, b"na", b"nc", &u, &p));
        assert!(!verify(&s, b"nb", b"nc", &u, &p));
        assert!(!verify(&s, b"na", b"nc", &Uid::new("a"), &p));
        assert!(!verify(&Secret::random(), b"na", b"nc", &u, &p));
    }
}
