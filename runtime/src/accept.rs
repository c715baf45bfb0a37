//! Who may connect to this actor, and what becomes of those who do: each
//! admitted connection (see [`Admission`]) runs the TLS (if configured) and
//! actor handshakes in its own task; a child we spawned is handed to the
//! spawn waiting for it, anyone else gets a link of its own.

use std::sync::Arc;

use actor_transport::{Admission, Auth, Channel, Listener, Side, Uid, accept_log};
use tracing::Instrument;

use crate::link::{self, Peer};
use crate::local::Actor;

/// Starts accepting connections on `listener` for `actor`, until the process
/// ends.
pub(crate) fn serve(actor: &Arc<Actor>, listener: Listener) {
    tokio::spawn(accept_loop(actor.clone(), listener).instrument(actor.span()));
}

/// What `peer` must prove: a pending child its one-time token; anyone else
/// the tree's secret.
fn auth_for(actor: &Actor, peer: &Uid) -> Auth {
    if let Some(auth) = actor.children.auth_for(peer) {
        return auth;
    }
    match &actor.config.token {
        Some(t) => Auth::Require(t.clone()),
        None => Auth::Open,
    }
}

fn admit(actor: &Arc<Actor>, channel: Channel, peer: Uid) {
    if let Some(channel) = actor.children.deliver(&peer, channel) {
        tracing::debug!(%peer, "peer connected");
        link::start(channel, peer, Side::Acceptor, Peer::Other, actor.clone());
    }
}

async fn accept_loop(actor: Arc<Actor>, listener: Listener) {
    let admission = Admission::new(actor.config.admission);
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Typically EMFILE: back off briefly rather than spin.
                accept_log::accept_failed(&e);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let pending = match admission.try_admit() {
            Ok(p) => p,
            Err(refusal) => {
                // Dropping the stream closes it before anything is read.
                tracing::debug!(%from, "{refusal}");
                continue;
            }
        };
        let actor2 = actor.clone();
        tokio::spawn(
            async move {
                let config = actor2.handshake_config();
                let stream = match &actor2.config.tls {
                    Some(tls) => match tls.accept(stream, config.timeout).await {
                        Ok(s) => s,
                        Err(e) => return accept_log::tls_failed(&from, &e),
                    },
                    None => stream,
                };
                match actor_transport::accept(stream, &config, |uid| auth_for(&actor2, uid)).await {
                    Ok((channel, peer)) => {
                        pending.authenticated().hold_until_closed(channel.sender());
                        admit(&actor2, channel, peer)
                    }
                    Err(e) => accept_log::handshake_failed(&from, &e),
                }
            }
            .instrument(actor.span()),
        );
    }
}
