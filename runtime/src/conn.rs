//! One channel to one peer: the call tables, the reader task that routes
//! messages, and the tasks serving the peer's calls.
//!
//! Both sides may start calls. The connecting side numbers its calls with odd
//! ids and the accepting side with even ids, so the two never collide; a `Start`
//! with the wrong parity or a reused id is a protocol error answered with an
//! `Error`, not a crash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use actor_transport::{CallId, CallKind, Channel, ErrorKind, Msg, Receiver, RemoteError, Sender, Uid};
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::local::Actor;
use crate::registry::{self, Failure};

/// Which end of the channel we are: decides the parity of our call ids.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    Connector,
    Acceptor,
}

/// Our relation to the peer, which decides what its control messages may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Our parent: it may cancel us, and losing it cancels us.
    Parent,
    /// Our child or any other actor: it may call our functions.
    Other,
}

enum Reply {
    Value(Bytes),
    Failed(Box<RemoteError>),
    CancelAcked,
    Closed(String),
}

struct Served {
    token: CancellationToken,
    canceller: Option<Uid>,
}

#[derive(Default)]
struct Tables {
    calls: HashMap<CallId, oneshot::Sender<Reply>>,
    served: HashMap<CallId, Served>,
    closed: Option<String>,
}

/// A live channel to one peer.
pub(crate) struct Conn {
    peer: Uid,
    actor: Arc<Actor>,
    relation: Peer,
    sender: Sender,
    next_cid: AtomicU64,
    tables: Mutex<Tables>,
    closed: CancellationToken,
}

impl Conn {
    /// Starts serving `channel`: spawns its reader task.
    pub(crate) fn start(
        channel: Channel,
        peer: Uid,
        role: Role,
        relation: Peer,
        actor: Arc<Actor>,
    ) -> Arc<Conn> {
        let (sender, receiver) = channel.split();
        let first = match role {
            Role::Connector => 1,
            Role::Acceptor => 2,
        };
        let conn = Arc::new(Conn {
            peer,
            actor,
            relation,
            sender,
            next_cid: AtomicU64::new(first),
            tables: Mutex::new(Tables::default()),
            closed: CancellationToken::new(),
        });
        let span = tracing::debug_span!(parent: &conn.actor.span(), "conn", peer = %conn.peer);
        // Untracked: a reader runs until its peer goes, which may outlive teardown.
        tokio::spawn(conn.clone().read_loop(receiver).instrument(span));
        conn
    }

    pub(crate) fn peer(&self) -> &Uid {
        &self.peer
    }

    pub(crate) fn sender(&self) -> &Sender {
        &self.sender
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once the reader has stopped (peer gone or channel broken).
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Calls `func` in the peer and waits for its result.
    ///
    /// Dropping the returned future cancels the remote call.
    pub(crate) async fn call(&self, func: &str, args: Bytes) -> Result<Bytes> {
        let cid = self.next_cid.fetch_add(2, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut t = self.tables();
            if let Some(reason) = &t.closed {
                return Err(Error::Disconnected { peer: self.peer.clone(), reason: reason.clone() });
            }
            t.calls.insert(cid, tx);
        }
        let mut guard = CallGuard { conn: self, cid, armed: true };
        let start = Msg::Start { cid, func: func.to_owned(), kind: CallKind::Single, args, window: 0 };
        if let Err(e) = self.sender.send(&start).await {
            guard.armed = false;
            self.tables().calls.remove(&cid);
            return Err(e.into());
        }
        let reply = rx.await;
        guard.armed = false;
        match reply {
            Ok(Reply::Value(v)) => Ok(v),
            Ok(Reply::Failed(e)) => Err(Error::Remote(e)),
            Ok(Reply::CancelAcked) => Err(Error::Cancelled {
                canceller: Some(self.actor.uid.clone()),
                reason: format!("call of `{func}` cancelled"),
            }),
            Ok(Reply::Closed(reason)) => Err(Error::Disconnected { peer: self.peer.clone(), reason }),
            Err(_) => Err(Error::Disconnected { peer: self.peer.clone(), reason: "call dropped".into() }),
        }
    }

    /// Asks the peer actor to cancel itself.
    pub(crate) fn cancel_actor(&self, reason: &str) {
        let msg = Msg::CancelActor { canceller: self.actor.uid.clone(), reason: reason.to_owned() };
        if let Err(e) = self.sender.send_now(&msg) {
            tracing::debug!(error = %e, "cannot send CancelActor");
        }
    }

    async fn read_loop(self: Arc<Self>, mut receiver: Receiver) {
        let reason = loop {
            match receiver.recv().await {
                Ok(Some(msg)) => {
                    if let Err(reason) = self.dispatch(msg) {
                        tracing::warn!(peer = %self.peer, %reason, "protocol violation, closing the channel");
                        break reason;
                    }
                }
                Ok(None) => break "the peer closed the channel".to_owned(),
                Err(e) => {
                    // A reset from a peer that died is reported by its supervisor;
                    // a malformed frame is the peer's fault and worth a warning.
                    if e.is_io() {
                        tracing::debug!(peer = %self.peer, error = %e, "channel broke");
                    } else {
                        tracing::warn!(peer = %self.peer, error = %e, "closing the channel after a bad frame");
                    }
                    break e.to_string();
                }
            }
        };
        self.shutdown(reason);
    }

    fn shutdown(&self, reason: String) {
        let (calls, served) = {
            let mut t = self.tables();
            t.closed = Some(reason.clone());
            (std::mem::take(&mut t.calls), std::mem::take(&mut t.served))
        };
        for (_, tx) in calls {
            // The caller may have gone; nothing to tell then.
            let _ = tx.send(Reply::Closed(reason.clone()));
        }
        for (_, s) in served {
            s.token.cancel();
        }
        self.closed.cancel();
        if self.relation == Peer::Parent {
            self.actor.cancel(None, format!("lost the channel to the parent: {reason}"));
        }
        let sender = self.sender.clone();
        tokio::spawn(async move { sender.close().await });
    }

    fn reply(&self, cid: CallId, reply: Reply) {
        if let Some(tx) = self.tables().calls.remove(&cid) {
            // The caller may have dropped its future after asking; that is fine.
            let _ = tx.send(reply);
        }
    }

    /// Routes one message. `Err` means the peer broke the protocol.
    fn dispatch(self: &Arc<Self>, msg: Msg) -> std::result::Result<(), String> {
        match msg {
            Msg::Start { cid, func, kind, args, .. } => self.start_served(cid, func, kind, args),
            Msg::Return { cid, value } => self.reply(cid, Reply::Value(value)),
            Msg::Error { cid, error } => self.reply(cid, Reply::Failed(error)),
            Msg::CancelAck { cid } => self.reply(cid, Reply::CancelAcked),
            Msg::StartAck { .. } => {}
            Msg::Cancel { cid, canceller } => {
                if let Some(s) = self.tables().served.get_mut(&cid) {
                    s.canceller = Some(canceller);
                    s.token.cancel();
                }
            }
            Msg::CancelActor { canceller, reason } => {
                if self.relation != Peer::Parent {
                    return Err(format!("`{}` may not cancel this actor: only its parent may", self.peer));
                }
                self.actor.cancel_by_parent(canceller, reason, self.sender.clone());
            }
            Msg::CancelActorAck => {}
            Msg::Started { .. } | Msg::Yield { .. } | Msg::Stop { .. } | Msg::Credit { .. } => {
                return Err("streams and contexts are not supported by this peer yet".into());
            }
            other @ (Msg::Hello { .. }
            | Msg::Auth { .. }
            | Msg::Welcome
            | Msg::Refused { .. }
            | Msg::Init { .. }) => return Err(format!("unexpected {} after the handshake", other.name())),
        }
        Ok(())
    }

    fn start_served(self: &Arc<Self>, cid: CallId, func: String, kind: CallKind, args: Bytes) {
        let ours = self.next_cid.load(Ordering::Relaxed) % 2;
        let me = &self.actor.uid;
        let refuse = |kind, type_name: &str, message: String| {
            let e = RemoteError::new(me.clone(), kind, type_name, message);
            let _ = self.sender.send_now(&Msg::Error { cid, error: Box::new(e) });
        };
        if cid % 2 == ours {
            return refuse(ErrorKind::Protocol, "protocol", format!("call id {cid} has this side's parity"));
        }
        if kind != CallKind::Single {
            return refuse(ErrorKind::Protocol, "protocol", format!("{kind:?} calls are not supported yet"));
        }
        let Some(invoke) = registry::lookup(&func) else {
            return refuse(
                ErrorKind::UnknownFunction,
                "actor::UnknownFunction",
                format!("no function `{func}` is registered in actor `{me}`"),
            );
        };
        if !self.actor.exposes(&func) {
            return refuse(
                ErrorKind::NotExposed,
                "actor::NotExposed",
                format!("actor `{me}` does not expose `{func}`"),
            );
        }
        let token = self.actor.token().child_token();
        {
            let mut t = self.tables();
            if t.closed.is_some() {
                return;
            }
            if t.served.contains_key(&cid) {
                drop(t);
                return refuse(ErrorKind::Protocol, "protocol", format!("call id {cid} is already in use"));
            }
            t.served.insert(cid, Served { token: token.clone(), canceller: None });
        }
        let conn = self.clone();
        let span = tracing::info_span!("call", %func, cid);
        let main = self.relation == Peer::Parent && self.actor.is_main();
        self.actor.spawn(
            async move {
                tracing::debug!("started");
                let outcome = tokio::select! {
                    biased;
                    _ = token.cancelled() => None,
                    r = invoke(args) => Some(r),
                };
                let canceller = conn.tables().served.remove(&cid).and_then(|s| s.canceller);
                let me = &conn.actor.uid;
                let msg = match outcome {
                    Some(Ok(value)) => Msg::Return { cid, value },
                    Some(Err(failure)) => Msg::Error { cid, error: Box::new(failure_to_remote(failure, me)) },
                    None if canceller.is_some() => Msg::CancelAck { cid },
                    None => {
                        let (canceller, reason) = conn.actor.cancel_reason();
                        let mut e = RemoteError::new(
                            me.clone(),
                            ErrorKind::Cancelled,
                            "actor::Error::Cancelled",
                            reason,
                        );
                        e.canceller = canceller;
                        Msg::Error { cid, error: Box::new(e) }
                    }
                };
                tracing::debug!(reply = msg.name(), "finished");
                if let Err(e) = conn.sender.send(&msg).await {
                    tracing::debug!(error = %e, "cannot send the reply");
                }
                if main {
                    conn.actor.cancel(None, "its main function returned".into());
                }
            }
            .instrument(span),
        );
    }
}

fn failure_to_remote(failure: Failure, me: &Uid) -> RemoteError {
    match failure {
        Failure::BadArguments(msg) => {
            RemoteError::new(me.clone(), ErrorKind::BadArguments, "actor::BadArguments", msg)
        }
        Failure::Panicked(msg) => RemoteError::new(me.clone(), ErrorKind::Panic, "panic", msg),
        Failure::Failed(e) => e.to_remote(me),
    }
}

/// Cancels the remote call if the caller's future is dropped before the reply.
struct CallGuard<'a> {
    conn: &'a Conn,
    cid: CallId,
    armed: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.tables().calls.remove(&self.cid);
            let _ = self
                .conn
                .sender
                .send_now(&Msg::Cancel { cid: self.cid, canceller: self.conn.actor.uid.clone() });
        }
    }
}
