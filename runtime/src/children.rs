//! The children this actor spawned and is waiting to hear from: each must
//! connect back proving the one-time token it was given, and nobody else
//! may connect as it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use actor_transport::{Auth, Channel, ChannelError, Msg, Nonce, Secret, Uid};
use bytes::Bytes;
use tokio::sync::oneshot;

/// A child's authenticated channel, with its `Init` already queued on it
/// (or why that failed).
pub(crate) type Delivered = (Channel, Result<(), ChannelError>);

/// A child we spawned and expect to connect back with its one-time token.
struct PendingSpawn {
    uid: Uid,
    token: Secret,
    /// The nonce we answer its handshake with, when it was handed one.
    nonce: Option<Nonce>,
    /// Its encoded configuration, sent the moment it is admitted.
    init: Bytes,
    deliver: oneshot::Sender<Delivered>,
}

/// The children expected to connect back, by uid id.
#[derive(Default)]
pub(crate) struct PendingChildren(Mutex<HashMap<String, PendingSpawn>>);

impl PendingChildren {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, PendingSpawn>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expects child `uid` to connect back proving `token` (and, when it was
    /// handed `nonce`, answers its handshake with that nonce: see
    /// [`actor_transport::Arranged`]); the returned receiver gets its channel.
    /// `init` is its encoded [`Msg::Init`] configuration, queued on the channel
    /// as the handshake ends, so it leaves in the same write as our last
    /// handshake message.
    /// The expectation lasts as long as the returned [`Expected`]: however
    /// the spawn ends (failed, cancelled, or its future dropped by a caller
    /// that gave up), the token and nonce admit nobody after it.
    pub(crate) fn expect(
        &self,
        uid: &Uid,
        token: Secret,
        nonce: Option<Nonce>,
        init: Bytes,
    ) -> (oneshot::Receiver<Delivered>, Expected<'_>) {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .insert(uid.id.clone(), PendingSpawn { uid: uid.clone(), token, nonce, init, deliver: tx });
        (rx, Expected { children: self, id: uid.id.clone() })
    }

    /// What a connecting `peer` that claims a pending child's id must prove:
    /// that child's token, or nothing if it is not the uid we spawned.
    /// `None` when no child of that id is expected.
    pub(crate) fn auth_for(&self, peer: &Uid) -> Option<Auth> {
        let pending = self.lock();
        let p = pending.get(&peer.id)?;
        Some(if p.uid != *peer {
            Auth::Refuse("unknown child".into())
        } else if let Some(nonce) = &p.nonce {
            Auth::Arranged { secret: p.token.clone(), nonce: nonce.clone() }
        } else {
            Auth::Require(p.token.clone())
        })
    }

    /// Queues the configuration of the child `peer` on its authenticated
    /// channel and hands the channel to the spawn waiting for it; gives the
    /// channel back if no spawn waits for that peer.
    pub(crate) fn deliver(&self, peer: &Uid, channel: Channel) -> Option<Channel> {
        let Some(p) = self.lock().remove(&peer.id) else { return Some(channel) };
        // Queued before the channel's writer first runs, the configuration
        // joins the handshake's reply in one write: the child reads both at
        // once and starts up while the spawn's task gets going here.
        let queued = channel.sender().send_now(&Msg::Init { config: p.init });
        if p.deliver.send((channel, queued)).is_err() {
            tracing::debug!(%peer, "child connected after its spawn was abandoned");
        }
        None
    }
}

/// Keeps one child expected; dropping it stops expecting that child (a
/// child that connected was already handed over, and is not affected).
pub(crate) struct Expected<'a> {
    children: &'a PendingChildren,
    id: String,
}

impl Drop for Expected<'_> {
    fn drop(&mut self) {
        self.children.lock().remove(&self.id);
    }
}
