//! A link to one peer: the task that reads the channel, feeds the
//! connection's session, and acts on what is not part of an open call (a
//! call to serve, a request to cancel this actor).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actor_transport::session::Incoming as Arrival;
use actor_transport::{Channel, Receiver, Side, Uid};
use tracing::Instrument;

use crate::conn::Conn;
use crate::heartbeat;
use crate::local::Actor;
pub(crate) use crate::relation::Peer;
use crate::serve;

/// Starts serving `channel` to `peer`, our end being `side`: spawns its
/// reader task and has the heartbeat thread ping a silent peer and drop it
/// after `Config::peer_timeout`; returns the connection.
pub(crate) fn start(channel: Channel, peer: Uid, side: Side, relation: Peer, actor: Arc<Actor>) -> Arc<Conn> {
    let (sender, receiver) = channel.split();
    let conn = Arc::new(Conn::new(sender, actor.uid.clone(), peer, side));
    crate::introspect::track_link(&conn, relation);
    let span = tracing::debug_span!(parent: &actor.span(), "conn", peer = %conn.peer());
    let heard = Arc::new(AtomicU64::new(0));
    // Untracked: a reader runs until its peer goes, which may outlive teardown.
    let reader = tokio::spawn(
        read_loop(conn.clone(), receiver, relation, actor.clone(), heard.clone()).instrument(span),
    );
    let timeout = actor.config.peer_timeout;
    let on_silence: heartbeat::OnSilence =
        Box::new(move |conn, reason| finish(conn, relation, &actor, reason, Ending::Abort));
    heartbeat::watch(&conn, heard, reader.abort_handle(), timeout, on_silence);
    conn
}

/// How a link ends: politely, writing what is queued; or at once, for a
/// peer that will not read it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Flush,
    Abort,
}

/// Ends the link: every call on it fails with `reason`; losing the parent
/// cancels this actor. Idempotent.
fn finish(conn: &Conn, relation: Peer, actor: &Actor, reason: &str, ending: Ending) {
    match ending {
        Ending::Flush => conn.close(reason),
        Ending::Abort => conn.abort(reason),
    }
    if relation == Peer::Parent {
        actor.cancel(None, format!("lost the channel to the parent: {reason}"));
    }
}

async fn read_loop(
    conn: Arc<Conn>,
    mut receiver: Receiver,
    relation: Peer,
    actor: Arc<Actor>,
    heard: Arc<AtomicU64>,
) {
    // What the heartbeat reads: messages heard so far. Only this task
    // writes it, so a store does what an atomic increment would, cheaper.
    let mut count = 0u64;
    let (reason, ending) = loop {
        // The flag first: the reason takes the channel's lock, and this runs
        // for every message.
        if let Some(reason) = conn.sender().is_closed().then(|| conn.sender().close_reason()).flatten() {
            // Our side closed the channel: during teardown that is routine; a
            // peer that stopped reading what we had to send is worth a warning.
            if reason == actor_transport::channel::STOPPED_READING {
                tracing::warn!(peer = %conn.peer(), "closing the channel: the peer stopped reading");
                break (reason, Ending::Abort);
            }
            break (reason, Ending::Flush);
        }
        let next = receiver.recv().await;
        count += 1;
        heard.store(count, Ordering::Relaxed);
        match next {
            Ok(Some(msg)) => match conn.handle(msg) {
                Ok(None) => {}
                Ok(Some(Arrival::Call(call))) => {
                    serve::start(&conn, &actor, relation == Peer::Parent, call);
                }
                Ok(Some(Arrival::CancelActor { canceller, reason })) => {
                    if relation == Peer::Parent {
                        actor.cancel_by_parent(canceller, reason, conn.sender().clone());
                    } else {
                        // Others cancel an actor with the `actor::cancel` call, which
                        // can be answered; this message is for the parent alone.
                        tracing::debug!(peer = %conn.peer(), "ignoring CancelActor from a peer that is not the parent");
                    }
                }
                Ok(Some(Arrival::CancelActorAck)) => {}
                Err(violation) => {
                    tracing::warn!(peer = %conn.peer(), %violation, "protocol violation, closing the channel");
                    break (violation.to_string(), Ending::Flush);
                }
            },
            Ok(None) => break ("the peer closed the channel".to_owned(), Ending::Flush),
            Err(e) => {
                // A reset from a peer that died is reported by its supervisor;
                // a malformed frame is the peer's fault and worth a warning.
                if e.is_io() {
                    tracing::debug!(peer = %conn.peer(), error = %e, "channel broke");
                } else {
                    tracing::warn!(peer = %conn.peer(), error = %e, "closing the channel after a bad frame");
                }
                break (e.to_string(), Ending::Flush);
            }
        }
    };
    finish(&conn, relation, &actor, &reason, ending);
}
