//! This actor's link to the arbiter: the current client, and the task that
//! replaces it when the arbiter goes away.
//!
//! An arbiter may die (a daemon restarted, the program hosting the embedded
//! one exited) while actors live on. Each actor then reconnects with a capped,
//! jittered backoff and registers again, so its name comes back on whichever
//! arbiter answers next; a root that would host one by default hosts it
//! itself when nothing answers. Callers never hold a client across the gap:
//! they ask [`ArbiterLink::client`] for the live one each time.

use std::sync::Arc;
use std::time::Duration;

use actor_arbiter::ArbiterClient;
use actor_transport::Addr;
use tokio::sync::watch;

use crate::discovery;
use crate::error::{Error, Result};
use crate::local::Actor;
use crate::supervise::{Backoff, unit_random};

/// The first delay before reconnecting to a lost arbiter, doubling up to
/// [`RECONNECT_MAX`]: short, since the next host usually binds within
/// milliseconds, and capped so a long outage costs one attempt a second.
const RECONNECT_INITIAL: Duration = Duration::from_millis(50);
/// The longest delay between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(1);

/// After how many failed attempts (some 3.5 s at the backoff above) a lost
/// arbiter is logged at WARN rather than DEBUG.
const WARN_AFTER_ATTEMPTS: u32 = 8;

/// Where this actor stands with the arbiter.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Connecting or registering, at start-up or after losing the arbiter;
    /// why the last attempt failed, if one did.
    Connecting(Option<String>),
    /// Registered over this client.
    Live(Arc<ArbiterClient>),
    /// No arbiter, for good (the tree runs without one, or the first
    /// registration failed in a child); the reason.
    Absent(String),
}

/// The current arbiter client, shared by every lookup of this actor.
pub(crate) struct ArbiterLink {
    state: watch::Sender<LinkState>,
}

impl Default for ArbiterLink {
    fn default() -> Self {
        ArbiterLink { state: watch::Sender::new(LinkState::Connecting(None)) }
    }
}

impl ArbiterLink {
    /// Publishes a new state to every waiting caller.
    pub(crate) fn set(&self, state: LinkState) {
        self.state.send_replace(state);
    }

    /// Whether a live client is registered right now (for error messages).
    pub(crate) fn is_live(&self) -> bool {
        matches!(&*self.state.borrow(), LinkState::Live(c) if !c.is_closed())
    }

    /// The live client, waiting for one while the link reconnects: at most
    /// `bound`, or without limit when `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Arbiter`] if there is no arbiter for good, or none answered
    /// within `bound` (the message says the arbiter was unreachable).
    pub(crate) async fn client(&self, bound: Option<Duration>) -> Result<Arc<ArbiterClient>> {
        let mut rx = self.state.subscribe();
        let ready = rx.wait_for(|s| match s {
            LinkState::Live(c) => !c.is_closed(),
            LinkState::Absent(_) => true,
            LinkState::Connecting(_) => false,
        });
        let state = match bound {
            Some(bound) => match tokio::time::timeout(bound, ready).await {
                Ok(r) => r.map(|s| s.clone()),
                Err(_) => {
                    let last = match &*self.state.borrow() {
                        LinkState::Connecting(Some(e)) => format!(" (last attempt: {e})"),
                        _ => String::new(),
                    };
                    return Err(Error::Arbiter(format!(
                        "no arbiter answered within {bound:?}: it is unreachable, and this actor keeps \
                         trying to reconnect{last}"
                    )));
                }
            },
            None => ready.await.map(|s| s.clone()),
        };
        match state {
            Ok(LinkState::Live(c)) => Ok(c),
            Ok(LinkState::Absent(reason)) => Err(Error::Arbiter(reason)),
            // The sender lives as long as the actor: unreachable, but no panic.
            Ok(LinkState::Connecting(_)) | Err(_) => Err(Error::Arbiter("the arbiter link is gone".into())),
        }
    }
}

/// Registers a child with its tree's arbiter at `addr`, retrying while none
/// answers there (a child may start while the arbiter moves), then keeps it
/// registered. A child never hosts the arbiter: a root does.
pub(crate) async fn register_child(actor: Arc<Actor>, addr: Addr) {
    if let Some(client) = connect_until_registered(&actor, &addr, false).await {
        actor.arbiter_link().set(LinkState::Live(Arc::new(client)));
        keep_registered(actor, false).await;
    }
}

/// Keeps `actor` registered for its lifetime: whenever the live client's
/// connection ends, reconnects (hosting the arbiter if `host`, the lost one
/// was embedded in a program, and nothing answers) and registers again,
/// until the actor is cancelled.
pub(crate) async fn keep_registered(actor: Arc<Actor>, host: bool) {
    loop {
        let client = match &*actor.arbiter_link().state.borrow() {
            LinkState::Live(c) => c.clone(),
            _ => return,
        };
        tokio::select! {
            biased;
            _ = actor.token().cancelled() => return,
            _ = client.closed() => {}
        }
        // An actor winding down may lose the arbiter as its host exits too:
        // it must not take the address over on its way out.
        if actor.token().is_cancelled() {
            return;
        }
        let addr = client.addr().clone();
        // Take over an embedded arbiter's address, never a daemon's: the
        // daemon, restarted, must find its address free.
        let take_over = host && discovery::is_embedded(client.arbiter_uid());
        drop(client);
        // At INFO: with the embedded default, the host exiting is routine.
        tracing::info!(%addr, "lost the arbiter; reconnecting to register again");
        actor.arbiter_link().set(LinkState::Connecting(None));
        let Some(client) = connect_until_registered(&actor, &addr, take_over).await else { return };
        tracing::info!(%addr, "registered again with the arbiter");
        actor.arbiter_link().set(LinkState::Live(Arc::new(client)));
    }
}

/// Connects to the arbiter at `addr` (hosting it if `take_over` and nothing
/// answers) and registers, retrying with the capped backoff until that
/// works; `None` once the actor is cancelled. Each failure is published, so
/// a lookup that gives up meanwhile can say why.
async fn connect_until_registered(actor: &Arc<Actor>, addr: &Addr, take_over: bool) -> Option<ArbiterClient> {
    let backoff = Backoff::exponential(RECONNECT_INITIAL, RECONNECT_MAX).jitter(0.2);
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let reconnected = tokio::select! {
            r = discovery::reconnect(actor, addr, take_over) => r,
            _ = actor.token().cancelled() => return None,
        };
        match reconnected {
            Ok(client) => return Some(client),
            Err(e) => {
                // Past a few seconds it is an outage worth a warning, once.
                if attempt == WARN_AFTER_ATTEMPTS {
                    tracing::warn!(%addr, attempt, error = %e, "the arbiter is still unreachable; retrying every second");
                } else {
                    tracing::debug!(%addr, attempt, error = %e, "the arbiter is still unreachable");
                }
                actor.arbiter_link().set(LinkState::Connecting(Some(e.to_string())));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.delay(attempt, unit_random())) => {}
            _ = actor.token().cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lookup_while_reconnecting_gives_up_within_its_bound_and_says_why() {
        let link = ArbiterLink::default();
        let err = link.client(Some(Duration::from_millis(20))).await.err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("unreachable")), "{err:?}");
        assert!(!link.is_live());
    }

    #[tokio::test]
    async fn no_arbiter_for_good_is_an_error_at_once_even_unbounded() {
        let link = ArbiterLink::default();
        link.set(LinkState::Absent("the tree runs without an arbiter".into()));
        let err = link.client(None).await.err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("without an arbiter")), "{err:?}");
    }

    #[test]
    fn the_backoff_doubles_from_50_ms_and_stops_at_1_s() {
        let b = Backoff::exponential(RECONNECT_INITIAL, RECONNECT_MAX).jitter(0.0);
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(50));
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(1));
    }
}
