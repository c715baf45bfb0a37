//! This actor's link to the arbiter: the current client, and the task that
//! replaces it when the arbiter goes away.
//!
//! An arbiter may die (a daemon restarted, the program hosting the embedded
//! one exited) while actors live on. Each actor then reconnects with a capped,
//! jittered backoff and registers again, so its name comes back on whichever
//! arbiter answers next; a root that would host one by default hosts it
//! itself when nothing answers. Callers never hold a client across the gap:
//! they ask [`ArbiterLink::client`](crate::arbiter_slot::ArbiterLink::client)
//! for the live one each time.

use std::sync::Arc;
use std::time::Duration;

use actor_arbiter::ArbiterClient;
use actor_transport::Addr;

use crate::arbiter_slot::LinkState;
use crate::discovery;
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

/// How long a `run_in_actor` child waits for its main call to start before
/// it registers anyway.
const MAIN_FIRST: Duration = Duration::from_secs(1);

/// Registers a child with its tree's arbiter at `addr`, retrying while none
/// answers there (a child may start while the arbiter moves), then keeps it
/// registered. A child never hosts the arbiter: a root does.
pub(crate) async fn register_child(actor: Arc<Actor>, addr: Addr) {
    // The main call of a `run_in_actor` child (often its whole life) goes
    // first: it must not wait behind a connection to the arbiter, and a
    // child whose main is done by then never opens one. Its parent sends
    // that call right behind our configuration; a parent that does not is
    // waited for no longer than MAIN_FIRST.
    if actor.has_main() {
        tokio::select! {
            biased;
            _ = actor.token().cancelled() => return,
            _ = actor.main_started() => {}
            _ = tokio::time::sleep(MAIN_FIRST) => {}
        }
    }
    // One pass of this runtime's scheduler: the tasks ready now (the main
    // call's among them) run before the connection is opened.
    tokio::task::yield_now().await;
    if actor.token().is_cancelled() {
        return;
    }
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
        let Some(client) = actor.arbiter_link().live() else { return };
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

    #[test]
    fn the_backoff_doubles_from_50_ms_and_stops_at_1_s() {
        let b = Backoff::exponential(RECONNECT_INITIAL, RECONNECT_MAX).jitter(0.0);
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(50));
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(1));
    }
}
