//! The connection handshake.
//!
//! ```text
//! connector                         acceptor
//!   Hello{version, uid, nonce_c} ->
//!                                <- Hello{version, uid, nonce_a}   (or Refused)
//!   Auth{proof_c}                ->
//!                                <- Auth{proof_a}                  (or Refused)
//!                                <- Welcome
//! ```
//!
//! When the connector knows the acceptor's uid and nonce in advance (a
//! parent hands both to the child it spawns, with the one-time token: see
//! [`Arranged`]), it sends its `Auth` right behind its `Hello` instead of
//! waiting for the acceptor's: the same messages in the same order on the
//! wire, one round trip fewer. Such a nonce is as good as a fresh one
//! because it is good for one connection only, like the token it comes with.
//!
//! Each proof is HMAC-SHA256 keyed by the shared secret over a label naming the
//! side that proves, both nonces and both uids, so the secret never crosses the
//! wire, a recorded proof is useless for another connection, and one side's
//! proof cannot be reflected back as the other's. The acceptor decides per
//! connector uid which secret (if any) it requires, which lets one listener take
//! one-time spawn tokens for its children and a cluster token for everyone else;
//! it proves the same secret it required. A connector that holds a secret
//! requires the acceptor's proof of it: whoever listens on an address without
//! the secret is not the server it wanted.
//!
//! Until the handshake completes, frames are limited to
//! [`PRE_AUTH_MAX_FRAME`], so an unauthenticated peer costs a small, fixed
//! amount of memory whatever it announces.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::addr::Addr;
use crate::channel::{Channel, ChannelConfig, ChannelError};
use crate::codec::FrameError;
use crate::escape::Escaped;
use crate::stream::Stream;
use crate::tls::TlsConfig;
use crate::wire::{Msg, PROTOCOL_VERSION, Uid};

/// Labels of the two proofs: distinct, so neither side's proof verifies as
/// the other's (a reflected proof fails).
const CONNECTOR_LABEL: &[u8] = b"actor-transport handshake v2 connector";
const ACCEPTOR_LABEL: &[u8] = b"actor-transport handshake v2 acceptor";
const NONCE_LEN: usize = 32;

/// The largest frame either side accepts before the handshake completes. The
/// handshake's messages are a few hundred bytes; anything near this size is
/// an attack on memory, refused at its length prefix.
pub const PRE_AUTH_MAX_FRAME: usize = 64 * 1024;

/// The shortest secret accepted from configuration, in bytes (32 hex digits):
/// shorter tokens can be guessed offline from one recorded handshake.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a configured token is not a usable [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The text is empty.
    #[error("the token is empty; it must be at least {MIN_SECRET_LEN} bytes ({} hex digits)", MIN_SECRET_LEN * 2)]
    Empty,
    /// The text is not an even number of hex digits.
    #[error("the token is not hex (an even number of the digits 0-9, a-f)")]
    NotHex,
    /// The token is too short to resist guessing.
    #[error(
        "the token is {bytes} bytes; it must be at least {MIN_SECRET_LEN} bytes ({} hex digits)",
        MIN_SECRET_LEN * 2
    )]
    TooShort {
        /// The token's length in bytes.
        bytes: usize,
    },
}

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
        to_hex(&self.0)
    }

    /// Parses the output of [`Secret::to_hex`]; `None` if `s` is not
    /// even-length hex or is shorter than [`MIN_SECRET_LEN`] bytes. Use
    /// [`Secret::parse_hex`] to say why.
    pub fn from_hex(s: &str) -> Option<Self> {
        Secret::parse_hex(s).ok()
    }

    /// Parses a configured token given as hex.
    ///
    /// # Errors
    ///
    /// [`SecretError`] if `s` is empty, not even-length hex, or shorter than
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn parse_hex(s: &str) -> Result<Self, SecretError> {
        if s.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = from_hex(s).ok_or(SecretError::NotHex)?;
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { bytes: bytes.len() });
        }
        Ok(Secret::new(bytes))
    }
}

/// `bytes` as lowercase hex.
fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes `s` spells in hex; `None` unless it is an even number of hex
/// digits and nothing else (`u8::from_str_radix` alone also takes a
/// leading `+`).
fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// An acceptor's handshake nonce agreed with one connector in advance (see
/// [`Arranged`]). Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    /// A fresh random nonce.
    ///
    /// # Panics
    ///
    /// Panics if the operating system's random source fails.
    pub fn random() -> Self {
        Nonce(random_bytes())
    }

    /// The nonce as lowercase hex, for passing through the environment.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses the output of [`Nonce::to_hex`]; `None` unless `s` is exactly
    /// 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        from_hex(s)?.try_into().ok().map(Nonce)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Nonce(..)")
    }
}

/// What a connector knows in advance of one acceptor, to prove `secret`
/// without waiting for the acceptor's `Hello`: the acceptor's uid and the
/// nonce it will answer with. A parent hands these to the child it spawns.
///
/// The acceptor must hold the same pair for this connector
/// ([`Auth::Arranged`]) and both must be good for one connection only: a
/// proof over a nonce that is never used again cannot be replayed.
#[derive(Clone, Debug)]
pub struct Arranged {
    /// The secret both sides prove.
    pub secret: Secret,
    /// The acceptor's uid.
    pub acceptor: Uid,
    /// The nonce the acceptor answers with.
    pub nonce: Nonce,
}

/// What an acceptor requires of a connector, decided from its uid.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Admit without a proof.
    Open,
    /// Admit only with a valid proof of this secret.
    Require(Secret),
    /// Admit only with a valid proof of `secret`, answering with `nonce`
    /// instead of a fresh one: the connector knows it in advance
    /// ([`Arranged`]) and may already have sent its proof. Use it only for
    /// a secret and nonce that admit one connection.
    Arranged {
        /// The secret both sides prove.
        secret: Secret,
        /// The acceptor nonce agreed with the connector.
        nonce: Nonce,
    },
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
    #[error("refused by the peer: {}", Escaped(reason))]
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
    /// The acceptor did not prove that it holds the secret this side proved
    /// (connector side): whoever answered is not the peer we meant to reach.
    #[error("the server {peer} did not prove it holds the token: {reason}")]
    ServerUnauthenticated {
        /// The uid the acceptor claimed.
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

impl HandshakeError {
    /// Whether the peer simply went away (closed, reset, vanished mid-frame)
    /// rather than failing or breaking the handshake: routine teardown.
    pub fn is_hangup(&self) -> bool {
        match self {
            HandshakeError::Closed => true,
            HandshakeError::Channel(ChannelError::Frame(f)) => match &**f {
                FrameError::Io(e) => crate::stream::is_hangup(e),
                FrameError::Truncated { .. } => true,
                _ => false,
            },
            _ => false,
        }
    }
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
    let proving = secret.map_or(Proving::Nothing, Proving::Secret);
    connect_with(addr, config, proving, None).await
}

/// Connects to `addr` (over mutual TLS when `tls` is given) and performs the
/// connector's side of the handshake with what was [`Arranged`] with the
/// acceptor: the proof goes out right behind the `Hello`, a round trip
/// sooner than with [`connect`]. Returns the ready channel and the
/// acceptor's uid.
///
/// # Errors
///
/// As [`connect`] and [`connect_tls`]; and
/// [`HandshakeError::ServerUnauthenticated`] if the acceptor answers with
/// another uid or nonce than the arranged ones (it then refuses our proof
/// too).
pub async fn connect_arranged(
    addr: &Addr,
    config: &HandshakeConfig,
    arranged: &Arranged,
    tls: Option<&TlsConfig>,
) -> Result<(Channel, Uid), HandshakeError> {
    connect_with(addr, config, Proving::Arranged(arranged), tls).await
}

/// What the connector proves.
#[derive(Clone, Copy)]
enum Proving<'a> {
    Nothing,
    Secret(&'a Secret),
    Arranged(&'a Arranged),
}

impl Proving<'_> {
    fn secret(&self) -> Option<&Secret> {
        match self {
            Proving::Nothing => None,
            Proving::Secret(s) => Some(s),
            Proving::Arranged(a) => Some(&a.secret),
        }
    }
}

/// The TCP (or TLS) connect and the handshake, together within
/// `config.timeout`.
async fn connect_with(
    addr: &Addr,
    config: &HandshakeConfig,
    proving: Proving<'_>,
    tls: Option<&TlsConfig>,
) -> Result<(Channel, Uid), HandshakeError> {
    let deadline = tokio::time::Instant::now() + config.timeout;
    let stream = match tls {
        Some(tls) => Stream::connect_tls(addr, config.timeout, tls).await,
        None => Stream::connect(addr, config.timeout).await,
    }
    .map_err(|source| HandshakeError::Connect { addr: addr.clone(), source })?;
    let channel = Channel::from_stream(stream, &config.channel);
    match tokio::time::timeout_at(deadline, connector(channel, config, proving)).await {
        Err(_) => Err(HandshakeError::Timeout(config.timeout)),
        Ok(Err(HandshakeError::Channel(e))) if tls.is_some() => match crate::tls::refused_by_tls(&e) {
            Some(source) => Err(HandshakeError::Connect { addr: addr.clone(), source }),
            None => Err(HandshakeError::Channel(e)),
        },
        Ok(res) => res,
    }
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
    let proving = secret.map_or(Proving::Nothing, Proving::Secret);
    tokio::time::timeout(config.timeout, connector(channel, config, proving))
        .await
        .map_err(|_| HandshakeError::Timeout(config.timeout))?
}

async fn connector(
    mut channel: Channel,
    config: &HandshakeConfig,
    proving: Proving<'_>,
) -> Result<(Channel, Uid), HandshakeError> {
    channel.set_max_frame(PRE_AUTH_MAX_FRAME.min(config.channel.max_frame));
    let secret = proving.secret();
    let nonce_c = Bytes::copy_from_slice(&random_bytes());
    channel
        .send(&Msg::Hello { version: PROTOCOL_VERSION, uid: config.uid.clone(), nonce: nonce_c.clone() })
        .await?;
    // Arranged: the proof follows the Hello at once, in the same write.
    if let Proving::Arranged(a) = proving {
        let transcript = Transcript {
            nonce_a: &a.nonce.0,
            nonce_c: &nonce_c,
            connector: &config.uid,
            acceptor: &a.acceptor,
        };
        let proof = Bytes::from(transcript.proof(&a.secret, Side::Connector));
        channel.send(&Msg::Auth { proof: Some(proof) }).await?;
    }
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
    let transcript =
        Transcript { nonce_a: &nonce_a, nonce_c: &nonce_c, connector: &config.uid, acceptor: &peer };
    match proving {
        Proving::Arranged(a) => {
            // Whoever answers otherwise did not hold our arrangement, and
            // our proof (over the arranged pair) verifies nowhere else.
            if peer != a.acceptor || nonce_a[..] != a.nonce.0[..] {
                return Err(HandshakeError::ServerUnauthenticated {
                    peer,
                    reason: "it answered with another uid or nonce than the arranged ones",
                });
            }
        }
        Proving::Nothing | Proving::Secret(_) => {
            let proof = secret.map(|s| Bytes::from(transcript.proof(s, Side::Connector)));
            channel.send(&Msg::Auth { proof }).await?;
        }
    }
    let offered = match next(&mut channel).await? {
        Msg::Auth { proof } => proof,
        Msg::Refused { reason } => return Err(HandshakeError::Refused { reason }),
        Msg::Welcome if secret.is_some() => {
            return Err(HandshakeError::ServerUnauthenticated { peer, reason: "it sent no proof" });
        }
        other => return Err(HandshakeError::Unexpected { expected: "Auth", got: other.name() }),
    };
    if let Some(secret) = secret {
        let Some(offered) = offered else {
            return Err(HandshakeError::ServerUnauthenticated { peer, reason: "it sent no proof" });
        };
        if !transcript.verify(secret, Side::Acceptor, &offered) {
            return Err(HandshakeError::ServerUnauthenticated { peer, reason: "its proof is wrong" });
        }
    }
    match next(&mut channel).await? {
        Msg::Welcome => {
            channel.set_max_frame(config.channel.max_frame);
            Ok((channel, peer))
        }
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
    channel.set_max_frame(PRE_AUTH_MAX_FRAME.min(config.channel.max_frame));
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
    let nonce_a = match &auth {
        Auth::Arranged { nonce, .. } => Bytes::copy_from_slice(&nonce.0),
        Auth::Open | Auth::Require(_) | Auth::Refuse(_) => Bytes::copy_from_slice(&random_bytes()),
    };
    channel
        .send(&Msg::Hello { version: PROTOCOL_VERSION, uid: config.uid.clone(), nonce: nonce_a.clone() })
        .await?;
    let offered = match next(&mut channel).await? {
        Msg::Auth { proof } => proof,
        other => return Err(HandshakeError::Unexpected { expected: "Auth", got: other.name() }),
    };
    let transcript =
        Transcript { nonce_a: &nonce_a, nonce_c: &nonce_c, connector: &peer, acceptor: &config.uid };
    // Prove the secret we required, and only after the connector proved it:
    // an unauthenticated peer learns nothing keyed by the secret.
    let our_proof = match &auth {
        Auth::Require(secret) | Auth::Arranged { secret, .. } => {
            let Some(offered) = offered else {
                return Err(HandshakeError::AuthFailed { peer, reason: "no token offered" });
            };
            if !transcript.verify(secret, Side::Connector, &offered) {
                return Err(HandshakeError::AuthFailed { peer, reason: "wrong token" });
            }
            Some(Bytes::from(transcript.proof(secret, Side::Acceptor)))
        }
        Auth::Open | Auth::Refuse(_) => None,
    };
    channel.send(&Msg::Auth { proof: our_proof }).await?;
    channel.send(&Msg::Welcome).await?;
    channel.set_max_frame(config.channel.max_frame);
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
            FrameError::TooLarge { len, .. } => {
                let b = (len as u32).to_be_bytes();
                matches!(b[0], 0x15 | 0x16) && b[1] == 0x03
            }
            _ => false,
        },
        _ => false,
    }
}

/// Which side of the handshake a proof speaks for.
#[derive(Clone, Copy)]
enum Side {
    Connector,
    Acceptor,
}

/// What both proofs of one handshake are bound to.
struct Transcript<'a> {
    nonce_a: &'a [u8],
    nonce_c: &'a [u8],
    connector: &'a Uid,
    acceptor: &'a Uid,
}

impl Transcript<'_> {
    fn mac(&self, secret: &Secret, side: Side) -> Hmac<Sha256> {
        let label = match side {
            Side::Connector => CONNECTOR_LABEL,
            Side::Acceptor => ACCEPTOR_LABEL,
        };
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret.0).expect("HMAC takes any key length");
        // Each part is length-prefixed, so no two transcripts concatenate alike.
        for part in [
            label,
            self.nonce_a,
            self.nonce_c,
            self.connector.name.as_bytes(),
            self.connector.id.as_bytes(),
            self.acceptor.name.as_bytes(),
            self.acceptor.id.as_bytes(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    fn proof(&self, secret: &Secret, side: Side) -> Vec<u8> {
        self.mac(secret, side).finalize().into_bytes().to_vec()
    }

    /// Constant-time check of `offered` against this side's proof.
    fn verify(&self, secret: &Secret, side: Side, offered: &[u8]) -> bool {
        self.mac(secret, side).verify_slice(offered).is_ok()
    }
}

fn random_bytes() -> [u8; NONCE_LEN] {
    let mut b = [0u8; NONCE_LEN];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b
}

/// Connects to `addr` over mutual TLS and performs the connector's side of the
/// actor handshake inside it. Returns the ready channel and the acceptor's uid.
///
/// The TCP connect, the TLS handshake and the actor handshake together are
/// bounded by `config.timeout`. The server's certificate is verified against the
/// CA of `tls` for the host of `addr`.
///
/// # Errors
///
/// [`HandshakeError::Connect`] if the TCP connect or the TLS handshake fails (an
/// untrusted server, a server that does not speak TLS, a Unix-socket address) or
/// the server refuses our certificate; otherwise as [`crate::handshake::connect`].
pub async fn connect_tls(
    addr: &Addr,
    config: &HandshakeConfig,
    secret: Option<&Secret>,
    tls: &TlsConfig,
) -> Result<(Channel, Uid), HandshakeError> {
    let proving = secret.map_or(Proving::Nothing, Proving::Secret);
    connect_with(addr, config, proving, Some(tls)).await
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

    /// The published test vector (PROTOCOL.md): a peer in another language
    /// checks its proofs against these.
    #[test]
    fn proofs_match_the_published_test_vector() {
        let secret = Secret::new(vec![0x11; 16]);
        let c = Uid { name: "child".into(), id: "00000000000000c1".into() };
        let a = Uid { name: "parent".into(), id: "00000000000000a1".into() };
        let t = Transcript { nonce_a: &[0xaa; 32], nonce_c: &[0xcc; 32], connector: &c, acceptor: &a };
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(t.proof(&secret, Side::Connector)),
            "9e5733537bddb0ab36aae15dc632370ddc226245cd96997bc688ebc94b5469d9"
        );
        assert_eq!(
            hex(t.proof(&secret, Side::Acceptor)),
            "fb863bf6810860ba777e5152b3004b82121126362f42f9a0cdf97a39967d4b24"
        );
    }

    #[test]
    fn short_and_empty_tokens_are_refused() {
        assert_eq!(Secret::parse_hex(""), Err(SecretError::Empty));
        assert_eq!(Secret::parse_hex("abcd"), Err(SecretError::TooShort { bytes: 2 }));
        assert_eq!(Secret::parse_hex(&"ab".repeat(15)), Err(SecretError::TooShort { bytes: 15 }));
        assert_eq!(Secret::parse_hex(&"zz".repeat(16)), Err(SecretError::NotHex));
        assert_eq!(Secret::parse_hex(&"+f".repeat(16)), Err(SecretError::NotHex));
        assert!(Secret::parse_hex(&"ab".repeat(16)).is_ok());
        assert!(SecretError::TooShort { bytes: 2 }.to_string().contains("16 bytes"));
    }

    #[test]
    fn proof_binds_nonces_uids_and_side() {
        let s = Secret::random();
        let (c, a) = (Uid::new("c"), Uid::new("a"));
        let t = Transcript { nonce_a: b"na", nonce_c: b"nc", connector: &c, acceptor: &a };
        let p = t.proof(&s, Side::Connector);
        assert!(t.verify(&s, Side::Connector, &p));
        // Reflected: the connector's proof is not the acceptor's.
        assert!(!t.verify(&s, Side::Acceptor, &p));
        assert!(!Transcript { nonce_a: b"nb", ..t }.verify(&s, Side::Connector, &p));
        let other = Uid::new("c");
        assert!(!Transcript { connector: &other, ..t }.verify(&s, Side::Connector, &p));
        assert!(!Transcript { acceptor: &other, ..t }.verify(&s, Side::Connector, &p));
        assert!(!t.verify(&Secret::random(), Side::Connector, &p));
    }
}
