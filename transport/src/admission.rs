//! How many connections a listener takes on at once.
//!
//! Before a peer authenticates it can cost us only what we agree to give it;
//! [`Admission`] bounds that per listener: at most `max_handshakes`
//! connections in the handshake (TLS and ours) at once, and at most
//! `max_connections` open in all. A connection over either cap is closed as
//! soon as it is accepted, before anything is read from it. Both accept loops
//! (an actor's and the arbiter's) use this one limiter.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::channel::Sender;

/// Environment variable: the most connections one listener keeps open (default
/// [`DEFAULT_MAX_CONNECTIONS`]).
pub const ENV_MAX_CONNECTIONS: &str = "ACTOR_MAX_CONNECTIONS";

/// Default cap on connections in the handshake at once, per listener. Each
/// costs at most a few hundred KiB (buffers plus a 64 KiB frame), so this bounds
/// unauthenticated memory near 64 MiB, while leaving room for hundreds of
/// children connecting back at once.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// Default cap on open connections per listener, authenticated or not.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The caps of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Connections in the handshake at once (default [`DEFAULT_MAX_HANDSHAKES`]).
    pub max_handshakes: usize,
    /// Open connections in all (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig { max_handshakes: DEFAULT_MAX_HANDSHAKES, max_connections: DEFAULT_MAX_CONNECTIONS }
    }
}

impl AdmissionConfig {
    /// The defaults, with `max_connections` from `ACTOR_MAX_CONNECTIONS` when set.
    ///
    /// # Errors
    ///
    /// A message naming the variable if it is set but not a positive number.
    pub fn from_env() -> Result<Self, String> {
        let mut c = AdmissionConfig::default();
        if let Ok(v) = std::env::var(ENV_MAX_CONNECTIONS) {
            c.max_connections = match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("{ENV_MAX_CONNECTIONS} must be a positive number, not {v:?}")),
            };
        }
        Ok(c)
    }
}

/// The limiter of one listener; cheap to clone (clones share the counts).
#[derive(Clone, Debug)]
pub struct Admission {
    handshakes: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    config: AdmissionConfig,
}

/// Why a connection was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Too many connections are in the handshake.
    #[error("closed a new connection: {0} connections are already in the handshake")]
    TooManyHandshakes(usize),
    /// Too many connections are open.
    #[error("closed a new connection: {0} connections are already open")]
    TooManyConnections(usize),
}

/// A connection admitted to the handshake: holds a handshake slot and a
/// connection slot until dropped or [`authenticated`](Pending::authenticated).
#[derive(Debug)]
pub struct Pending {
    _handshake: OwnedSemaphorePermit,
    connection: OwnedSemaphorePermit,
}

/// An authenticated connection's slot, held until [`hold_until_closed`]'s
/// channel closes or this is dropped.
///
/// [`hold_until_closed`]: Admitted::hold_until_closed
#[derive(Debug)]
pub struct Admitted {
    connection: OwnedSemaphorePermit,
}

impl Admission {
    /// A limiter with `config`'s caps (a cap of 0 is taken as 1).
    pub fn new(config: AdmissionConfig) -> Self {
        Admission {
            handshakes: Arc::new(Semaphore::new(config.max_handshakes.max(1))),
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            config,
        }
    }

    /// Takes a handshake slot and a connection slot for a just-accepted
    /// connection, without waiting.
    ///
    /// # Errors
    ///
    /// [`Refusal`] if either cap is reached: close the connection.
    pub fn try_admit(&self) -> Result<Pending, Refusal> {
        let connection = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::TooManyConnections(self.config.max_connections))?;
        let handshake = self
            .handshakes
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::TooManyHandshakes(self.config.max_handshakes))?;
        Ok(Pending { _handshake: handshake, connection })
    }

    /// Connections open now (in the handshake or after it).
    pub fn open(&self) -> usize {
        self.config.max_connections.max(1) - self.connections.available_permits()
    }
}

impl Pending {
    /// The handshake succeeded: frees the handshake slot, keeps the connection's.
    pub fn authenticated(self) -> Admitted {
        Admitted { connection: self.connection }
    }
}

impl Admitted {
    /// Keeps the connection's slot until the channel of `sender` closes (its
    /// writer stops: closed by either side, or broken), without keeping the
    /// channel open itself. Spawns a small task on the current runtime.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime.
    pub fn hold_until_closed(self, sender: &Sender) {
        let closed = sender.closed_owned();
        let slot = self.connection;
        tokio::spawn(async move {
            closed.await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_handshakes_and_connections() {
        let a = Admission::new(AdmissionConfig { max_handshakes: 2, max_connections: 3 });
        let p1 = a.try_admit().expect("first");
        let p2 = a.try_admit().expect("second");
        assert_eq!(a.try_admit().unwrap_err(), Refusal::TooManyHandshakes(2));
        // A refused attempt holds nothing.
        assert_eq!(a.open(), 2);
        let done1 = p1.authenticated();
        let p3 = a.try_admit().expect("a handshake slot was freed");
        assert_eq!(a.try_admit().unwrap_err(), Refusal::TooManyConnections(3));
        drop(done1);
        drop(p2);
        drop(p3);
        assert_eq!(a.open(), 0);
    }
}
