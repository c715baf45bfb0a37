//! Connections this actor made to peers it found by name, kept for reuse so
//! repeated lookups of one actor share one channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actor_transport::Uid;

use crate::conn::Conn;

/// The live connections to peers, by uid.
#[derive(Default)]
pub(crate) struct Peers(Mutex<HashMap<Uid, Arc<Conn>>>);

impl Peers {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uid, Arc<Conn>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live connection to `uid` made earlier, if any.
    pub(crate) fn get(&self, uid: &Uid) -> Option<Arc<Conn>> {
        let mut peers = self.lock();
        match peers.get(uid) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                peers.remove(uid);
                None
            }
            None => None,
        }
    }

    /// Keeps `conn` for reuse by later lookups of its peer.
    pub(crate) fn remember(&self, conn: Arc<Conn>) {
        self.lock().insert(conn.peer().clone(), conn);
    }
}
