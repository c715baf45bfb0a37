//! Where this actor stands with the arbiter: the current client, shared by
//! every lookup, published by the task in `arbiter_link.rs` that replaces it
//! when the arbiter goes away. Callers never hold a client across a gap:
//! they ask [`ArbiterLink::client`] for the live one each time.

use std::sync::Arc;
use std::time::Duration;

use actor_arbiter::ArbiterClient;
use tokio::sync::watch;

use crate::error::{Error, Result};

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

    /// The client registered now, if the link is live (even if it has
    /// just closed: the caller watches for that).
    pub(crate) fn live(&self) -> Option<Arc<ArbiterClient>> {
        match &*self.state.borrow() {
            LinkState::Live(c) => Some(c.clone()),
            _ => None,
        }
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
}
