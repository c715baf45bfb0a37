//! One channel to one peer: the call table, the reader task that routes
//! messages, and the tasks serving the peer's calls.
//!
//! Both sides may start calls. The connecting side numbers its calls with odd
//! ids and the accepting side with even ids, so the two never collide and the
//! parity of an id says whose call it is. A `Start` with the wrong parity or a
//! reused id is answered with an `Error`; a peer that sends stream items beyond
//! the credit it was given, or handshake messages after the handshake, broke
//! the protocol and the channel is closed.
//!
//! Flow control is per call and per direction, counted in bytes of item
//! payload: `Start.window` is the receive window of both ends of that call. An
//! item costs its encoded length (at least 1, at most the whole window, so an
//! item larger than the window still passes, alone). A sender holds one
//! semaphore permit per byte it may still send; the receiver grants credit as
//! the application consumes items (half a window at a time), so memory per
//! stream stays bounded by the window and a stalled stream stalls nobody else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actor_transport::{CallId, CallKind, Channel, ErrorKind, Msg, Receiver, RemoteError, Sender, Uid};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::local::Actor;
use crate::registry::{self, Failure, Handler};

/// Bytes of items a receiver lets a sender have in flight on one call, each
/// way: 1 MiB, several round trips' worth at loopback speed.
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// How many calls one peer may have running in this actor at once; more are
/// refused, so a peer cannot grow our task count without bound.
const MAX_SERVED_CALLS: usize = 65_536;

/// What one item of `len` encoded bytes costs in credit.
pub(crate) fn item_cost(len: usize, window: u32) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX).clamp(1, window.max(1))
}

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

/// What arrives for a stream's receiving end.
pub(crate) enum Incoming {
    Item(Bytes),
    Stop,
}

/// How a call ended, for the caller.
pub(crate) enum Done {
    Return(Bytes),
    Failed(Box<RemoteError>),
    CancelAcked,
    Closed(String),
}

/// Per-call state shared by the call's stream halves and the reader task.
pub(crate) struct Shared {
    /// Permits to send items; closed when the call ends.
    pub credit: Semaphore,
    /// Why the call ended, once it has (read by halves that find it closed).
    pub ended: OnceLock<Error>,
    /// The call's window, in bytes.
    pub window: u32,
}

struct Call {
    kind: CallKind,
    shared: Arc<Shared>,
    /// Items from the peer, for the receiving half.
    items: Option<mpsc::UnboundedSender<Incoming>>,
    /// How many more items the peer may send us.
    allowance: u64,
    /// Outbound: the context's first value.
    started: Option<oneshot::Sender<Result<Bytes>>>,
    /// Outbound: the final outcome.
    done: Option<oneshot::Sender<Done>>,
    /// Inbound: cancels the serving task; and who asked.
    token: Option<CancellationToken>,
    canceller: Option<Uid>,
}

impl Call {
    fn new(kind: CallKind, window: u32) -> Call {
        Call {
            kind,
            shared: Arc::new(Shared {
                credit: Semaphore::new(window as usize),
                ended: OnceLock::new(),
                window,
            }),
            items: None,
            allowance: u64::from(window),
            started: None,
            done: None,
            token: None,
            canceller: None,
        }
    }

    /// Ends the call on our side: wakes every half with `error`.
    ///
    /// `error` is built only when something can still read it (a stream half
    /// or a pending `started`), which a finished single call never has: that
    /// keeps its allocation off the path of every ordinary call.
    fn end(mut self, error: impl FnOnce(&Done) -> Error, done: Done) {
        self.shared.credit.close();
        let started = self.started.take();
        if started.is_some() || Arc::strong_count(&self.shared) > 1 {
            let error = error(&done);
            let _ = self.shared.ended.set(error.clone());
            if let Some(tx) = started {
                let _ = tx.send(Err(error));
            }
        }
        if let Some(tx) = self.done.take() {
            let _ = tx.send(done);
        }
        if let Some(t) = &self.token {
            t.cancel();
        }
    }
}

#[derive(Default)]
struct Tables {
    calls: HashMap<CallId, Call>,
    /// How many of `calls` the peer started and we are serving.
    served: usize,
    closed: Option<String>,
}

/// A live channel to one peer.
pub(crate) struct Conn {
    peer: Uid,
    pub(crate) actor: Arc<Actor>,
    relation: Peer,
    sender: Sender,
    next_cid: AtomicU64,
    tables: Mutex<Tables>,
    closed: CancellationToken,
}

/// A call we started: its channels, and a guard that cancels it if dropped
/// before it ends.
pub(crate) struct Opened {
    pub cid: CallId,
    pub shared: Arc<Shared>,
    pub items: Option<mpsc::UnboundedReceiver<Incoming>>,
    pub started: Option<oneshot::Receiver<Result<Bytes>>>,
    pub done: oneshot::Receiver<Done>,
    pub guard: CallGuard,
}

impl Opened {
    /// Waits for a single call's result. Dropping the future cancels the call.
    pub(crate) async fn result(self, func: &str) -> Result<Bytes> {
        let Opened { done, guard, shared, .. } = self;
        // A single call has no stream halves: with this handle gone nobody can
        // read why the call ended, so the reader need not spell it out.
        drop(shared);
        let done = done.await;
        let conn = guard.conn().clone();
        drop(guard);
        conn.outcome(func, done)
    }
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

    fn ours(&self, cid: CallId) -> bool {
        cid % 2 == self.next_cid.load(Ordering::Relaxed) % 2
    }

    fn disconnected(&self, reason: String) -> Error {
        Error::Disconnected { peer: self.peer.clone(), reason }
    }

    /// Whether the reader has stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves once the reader has stopped (peer gone or channel broken).
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Starts a call of `func` in the peer.
    pub(crate) async fn open(self: &Arc<Self>, func: &str, kind: CallKind, args: Bytes) -> Result<Opened> {
        let cid = self.next_cid.fetch_add(2, Ordering::Relaxed);
        let mut call = Call::new(kind, STREAM_WINDOW);
        let (done_tx, done) = oneshot::channel();
        call.done = Some(done_tx);
        let items = (kind != CallKind::Single).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            call.items = Some(tx);
            rx
        });
        let started = (kind == CallKind::Context).then(|| {
            let (tx, rx) = oneshot::channel();
            call.started = Some(tx);
            rx
        });
        let shared = call.shared.clone();
        {
            let mut t = self.tables();
            if let Some(reason) = &t.closed {
                return Err(self.disconnected(reason.clone()));
            }
            t.calls.insert(cid, call);
        }
        let guard = CallGuard { conn: self.clone(), cid };
        let start = Msg::Start { cid, func: func.to_owned(), kind, args, window: STREAM_WINDOW };
        self.sender.send(&start).await?;
        Ok(Opened { cid, shared, items, started, done, guard })
    }

    /// Calls `func` in the peer and waits for its result. Dropping the future
    /// cancels the remote call.
    pub(crate) async fn call(self: &Arc<Self>, func: &str, args: Bytes) -> Result<Bytes> {
        self.open(func, CallKind::Single, args).await?.result(func).await
    }

    /// Turns a call's end into its result.
    pub(crate) fn outcome(
        &self,
        func: &str,
        done: std::result::Result<Done, oneshot::error::RecvError>,
    ) -> Result<Bytes> {
        match done {
            Ok(Done::Return(v)) => Ok(v),
            Ok(Done::Failed(e)) => Err(Error::Remote(e)),
            Ok(Done::CancelAcked) => Err(Error::Cancelled {
                canceller: Some(self.actor.uid.clone()),
                reason: format!("call of `{func}` cancelled"),
            }),
            Ok(Done::Closed(reason)) => Err(self.disconnected(reason)),
            Err(_) => Err(self.disconnected("the call was dropped".into())),
        }
    }

    /// Sends one item on call `cid`, waiting for credit.
    pub(crate) async fn send_item(&self, cid: CallId, shared: &Shared, value: Bytes) -> Result<()> {
        match shared.credit.acquire_many(item_cost(value.len(), shared.window)).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(self.ended(shared)),
        }
        self.sender.send(&Msg::Yield { cid, value }).await?;
        Ok(())
    }

    /// Tells the peer we send no more items on call `cid`.
    pub(crate) async fn send_stop(&self, cid: CallId) -> Result<()> {
        Ok(self.sender.send(&Msg::Stop { cid }).await?)
    }

    /// Why call items can no longer flow.
    pub(crate) fn ended(&self, shared: &Shared) -> Error {
        shared.ended.get().cloned().unwrap_or_else(|| self.disconnected("the call ended".into()))
    }

    /// Grants the peer `n` more items on call `cid`.
    pub(crate) fn grant(&self, cid: CallId, n: u32) {
        if let Some(call) = self.tables().calls.get_mut(&cid) {
            call.allowance += u64::from(n);
        } else {
            return;
        }
        let _ = self.sender.send_now(&Msg::Credit { cid, credit: n });
    }

    /// Cancels our call `cid` if it is still running.
    pub(crate) fn cancel_call(&self, cid: CallId) {
        if let Some(call) = self.tables().calls.remove(&cid) {
            let e = |_: &Done| Error::Cancelled {
                canceller: Some(self.actor.uid.clone()),
                reason: "cancelled by the caller".into(),
            };
            call.end(e, Done::CancelAcked);
            let _ = self.sender.send_now(&Msg::Cancel { cid, canceller: self.actor.uid.clone() });
        }
    }

    /// Sends `Cancel` for our call `cid` and keeps waiting for its outcome.
    pub(crate) fn request_cancel(&self, cid: CallId) {
        let _ = self.sender.send_now(&Msg::Cancel { cid, canceller: self.actor.uid.clone() });
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
        let calls = {
            let mut t = self.tables();
            t.closed = Some(reason.clone());
            std::mem::take(&mut t.calls)
        };
        for (_, call) in calls {
            call.end(|_| self.disconnected(reason.clone()), Done::Closed(reason.clone()));
        }
        self.closed.cancel();
        if self.relation == Peer::Parent {
            self.actor.cancel(None, format!("lost the channel to the parent: {reason}"));
        }
        let sender = self.sender.clone();
        tokio::spawn(async move { sender.close().await });
    }

    /// Ends our call `cid` with `done`.
    fn finish(&self, cid: CallId, done: Done) {
        let Some(mut call) = self.tables().calls.remove(&cid) else { return };
        let error = |done: &Done| match done {
            Done::Return(_) => {
                Error::Disconnected { peer: self.peer.clone(), reason: "the call returned".into() }
            }
            Done::Failed(e) => Error::Remote(e.clone()),
            Done::CancelAcked => Error::Cancelled {
                canceller: Some(self.actor.uid.clone()),
                reason: "cancelled by the caller".into(),
            },
            Done::Closed(r) => self.disconnected(r.clone()),
        };
        if let (Done::Return(_), Some(tx)) = (&done, call.started.take()) {
            let _ = tx.send(Err(Error::msg("the context returned without calling `started`")));
        }
        if let (Done::Return(_), Some(items)) = (&done, &call.items) {
            let _ = items.send(Incoming::Stop);
        }
        // `end` records the error before the item sender is dropped, so a
        // receiver that sees its channel close always finds the reason.
        call.end(error, done);
    }

    /// Routes one message. `Err` means the peer broke the protocol (or stopped
    /// reading what we must answer).
    fn dispatch(self: &Arc<Self>, msg: Msg) -> std::result::Result<(), String> {
        if self.sender.is_closed() {
            return Err("our side of the channel is closed (the peer stopped reading)".into());
        }
        match msg {
            Msg::Start { cid, func, kind, args, window } => self.start_served(cid, func, kind, args, window),
            Msg::Return { cid, value } if self.ours(cid) => self.finish(cid, Done::Return(value)),
            Msg::Error { cid, error } if self.ours(cid) => self.finish(cid, Done::Failed(error)),
            Msg::CancelAck { cid } if self.ours(cid) => self.finish(cid, Done::CancelAcked),
            Msg::Started { cid, value } if self.ours(cid) => {
                if let Some(tx) = self.tables().calls.get_mut(&cid).and_then(|c| c.started.take()) {
                    let _ = tx.send(Ok(value));
                }
            }
            Msg::Yield { cid, value } => {
                let mut t = self.tables();
                if let Some(call) = t.calls.get_mut(&cid) {
                    let cost = u64::from(item_cost(value.len(), call.shared.window));
                    if call.allowance < cost {
                        return Err(format!("the peer sent an item on call {cid} beyond its credit"));
                    }
                    call.allowance -= cost;
                    if let Some(items) = &call.items {
                        let _ = items.send(Incoming::Item(value));
                    }
                }
            }
            Msg::Stop { cid } => {
                let mut t = self.tables();
                let stream_ended = match t.calls.get_mut(&cid) {
                    Some(call) => {
                        if let Some(items) = call.items.take() {
                            let _ = items.send(Incoming::Stop);
                        }
                        call.kind == CallKind::Stream && self.ours(cid)
                    }
                    None => false,
                };
                if stream_ended {
                    // A stream call ends with its Stop.
                    if let Some(call) = t.calls.remove(&cid) {
                        drop(t);
                        call.end(
                            |_| self.disconnected("the stream ended".into()),
                            Done::Return(Bytes::new()),
                        );
                    }
                }
            }
            Msg::Credit { cid, credit } => {
                if let Some(call) = self.tables().calls.get(&cid) {
                    if call.shared.credit.available_permits() + credit as usize > Semaphore::MAX_PERMITS / 2 {
                        return Err(format!("the peer granted absurd credit on call {cid}"));
                    }
                    call.shared.credit.add_permits(credit as usize);
                }
            }
            Msg::Cancel { cid, canceller } => {
                if !self.ours(cid) {
                    if let Some(call) = self.tables().calls.get_mut(&cid) {
                        call.canceller = Some(canceller);
                        if let Some(t) = &call.token {
                            t.cancel();
                        }
                    }
                }
            }
            Msg::CancelActor { canceller, reason } => {
                if self.relation != Peer::Parent {
                    return Err(format!("`{}` may not cancel this actor: only its parent may", self.peer));
                }
                self.actor.cancel_by_parent(canceller, reason, self.sender.clone());
            }
            Msg::StartAck { .. } | Msg::CancelActorAck => {}
            // Replies for calls we did not start: a confused peer; nothing to route.
            Msg::Return { .. } | Msg::Error { .. } | Msg::CancelAck { .. } | Msg::Started { .. } => {}
            other @ (Msg::Hello { .. }
            | Msg::Auth { .. }
            | Msg::Welcome
            | Msg::Refused { .. }
            | Msg::Init { .. }) => {
                return Err(format!("unexpected {} after the handshake", other.name()));
            }
        }
        Ok(())
    }

    fn start_served(self: &Arc<Self>, cid: CallId, func: String, kind: CallKind, args: Bytes, window: u32) {
        let me = &self.actor.uid;
        let refuse = |kind, type_name: &str, message: String| {
            let e = RemoteError::new(me.clone(), kind, type_name, message);
            let _ = self.sender.send_now(&Msg::Error { cid, error: Box::new(e) });
        };
        if self.ours(cid) {
            return refuse(ErrorKind::Protocol, "protocol", format!("call id {cid} has this side's parity"));
        }
        let Some(handler) = registry::lookup(&func) else {
            return refuse(
                ErrorKind::UnknownFunction,
                "actor::UnknownFunction",
                format!("no function `{func}` is registered in actor `{me}`"),
            );
        };
        if handler.kind() != kind {
            return refuse(
                ErrorKind::Protocol,
                "actor::WrongCallKind",
                format!("`{func}` is a {:?} function but was called as {kind:?}", handler.kind()),
            );
        }
        if !self.actor.exposes(&func) {
            return refuse(
                ErrorKind::NotExposed,
                "actor::NotExposed",
                format!("actor `{me}` does not expose `{func}`"),
            );
        }
        let token = self.actor.token().child_token();
        // The caller chooses the window; keep a hostile choice within sane bounds.
        let mut call = Call::new(kind, window.clamp(1024, 16 * 1024 * 1024));
        call.token = Some(token.clone());
        let items = (kind == CallKind::Context).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            call.items = Some(tx);
            rx
        });
        let shared = call.shared.clone();
        {
            let mut t = self.tables();
            if t.closed.is_some() {
                return;
            }
            if t.calls.contains_key(&cid) {
                drop(t);
                return refuse(ErrorKind::Protocol, "protocol", format!("call id {cid} is already in use"));
            }
            if t.served >= MAX_SERVED_CALLS {
                drop(t);
                return refuse(
                    ErrorKind::Protocol,
                    "actor::TooManyCalls",
                    format!("more than {MAX_SERVED_CALLS} concurrent calls on one channel"),
                );
            }
            t.served += 1;
            t.calls.insert(cid, call);
        }
        let io = ServedIo { conn: self.clone(), cid, shared, items };
        let served = match handler {
            Handler::Single(f) => f(args),
            Handler::Stream(f) => f(args, io),
            Handler::Context(f) => f(args, io),
        };
        let conn = self.clone();
        let span = tracing::info_span!("call", %func, cid);
        let main = self.relation == Peer::Parent && self.actor.claim_main();
        self.actor.spawn(
            async move {
                tracing::debug!("started");
                let outcome = crate::scope::serve(served, &token).await;
                let call = {
                    let mut t = conn.tables();
                    t.served = t.served.saturating_sub(1);
                    t.calls.remove(&cid)
                };
                let canceller = call.as_ref().and_then(|c| c.canceller.clone());
                if let Some(call) = call {
                    let e = |_: &Done| Error::Cancelled {
                        canceller: canceller.clone(),
                        reason: "the call ended".into(),
                    };
                    call.end(e, Done::Closed(String::new()));
                }
                let me = &conn.actor.uid;
                let msg = match outcome {
                    Some(Ok(_)) if kind == CallKind::Stream => Msg::Stop { cid },
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

/// The serving side's handle on a stream or context call.
#[doc(hidden)]
pub struct ServedIo {
    pub(crate) conn: Arc<Conn>,
    pub(crate) cid: CallId,
    pub(crate) shared: Arc<Shared>,
    pub(crate) items: Option<mpsc::UnboundedReceiver<Incoming>>,
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

/// Cancels our call if dropped while the call is still running: the caller
/// lost interest (tarpc's rule), so the callee's task is cancelled.
pub(crate) struct CallGuard {
    conn: Arc<Conn>,
    cid: CallId,
}

impl CallGuard {
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // A no-op when the call has already ended.
        self.conn.cancel_call(self.cid);
    }
}
