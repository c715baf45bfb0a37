//! The children this actor spawned and is waiting to hear from: each must
//! connect back proving the one-time token it was given, and nobody else
//! may connect as it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use actor_transport::{Auth, Channel, Nonce, Secret, Uid};
use tokio::sync::oneshot;

/// A child we spawned and expect to connect back with its one-time token.
struct PendingSpawn {
    uid: Uid,
    token: Secret,
    /// The nonce we answer its handshake with, when it was handed one.
    nonce: Option<Nonce>,
    deliver: oneshot::Sender<Channel>,
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
    /// The expectation lasts as long as the returned [`Expected`]: however
    /// the spawn ends (failed, cancelled, or its future dropped by a caller
    /// that gave up), the token and nonce admit nobody after it.
    pub(crate) fn expect(
        &self,
        uid: &Uid,
        token: Secret,
        nonce: Option<Nonce>,
    ) -> (oneshot::Receiver<Channel>, Expected<'_>) {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(uid.id.clone(), PendingSpawn { uid: uid.clone(), token, nonce, deliver: tx });
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

    /// Hands an authenticated channel to the spawn waiting for `peer`;
    /// gives it back if no spawn waits for that peer.
    pub(crate) fn deliver(&self, peer: &Uid, channel: Channel) -> Option<Channel> {
        let Some(p) = self.lock().remove(&peer.id) else { return Some(channel) };
        if p.deliver.send(channel).is_err() {
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
