//! The call protocol of one channel, as a state machine without IO.
//!
//! A [`Session`] holds the call table of one channel: which calls are open,
//! who started each, what state each is in, and its flow control. It owns no
//! socket, task or clock. Messages from the peer go in through
//! [`Session::handle`], which routes them to the call's application side (a
//! value of the driver's choosing, implementing [`CallApp`]) or rejects them
//! as a [`Violation`]; what the session must answer by itself (refusals) waits
//! in [`Session::poll_transmit`]. Operations of our own application (open a
//! call, send an item, finish a served call, cancel) return the message to
//! send, and the driver writes it. Every rule of the protocol lives here, once,
//! so the runtime's connections and the arbiter's client and server behave
//! alike and every branch can be tested in memory.
//!
//! Call ids: the side that connected numbers its calls 1, 3, 5, ..., the side
//! that accepted 2, 4, 6, ...; the parity of an id says whose call it is.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use thiserror::Error;

use crate::flow::{FlowControl, FlowError};
use crate::trace::TraceContext;
use crate::wire::{BytesItem, CallId, CallKind, ErrorKind, Msg, RemoteError, Uid};

/// Which end of the channel this session is: decides the parity of its ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We connected: our calls have odd ids.
    Connector,
    /// We accepted: our calls have even ids.
    Acceptor,
}

impl Side {
    fn first_id(self) -> CallId {
        match self {
            Side::Connector => 1,
            Side::Acceptor => 2,
        }
    }
}

/// The bounds a session enforces on its peer.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The window we announce for the calls we start (bytes each way).
    pub window: u32,
    /// The smallest window we accept in a peer's `Start` of a stream or context.
    pub min_window: u32,
    /// The largest window we accept in a peer's `Start` of a stream or context.
    pub max_window: u32,
    /// How many of the peer's calls may run here at once.
    pub max_served: usize,
    /// The sum of the windows of the peer's open contexts: what unread items
    /// the peer can make us hold at once. Contexts past it are refused.
    pub max_served_window: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: 1024 * 1024,
            min_window: 1024,
            max_window: 16 * 1024 * 1024,
            max_served: 65_536,
            max_served_window: 64 * 1024 * 1024,
        }
    }
}

/// How a call ended, handed to its application side by [`CallApp::ended`].
#[derive(Debug)]
pub enum End {
    /// Our call returned this value (empty for a stream that stopped).
    Returned(Bytes),
    /// Our call failed in the peer.
    Failed(Box<RemoteError>),
    /// Our call was cancelled on our request, and the peer confirmed it.
    CancelAcked,
    /// We gave up on our call ([`Session::abandon`]).
    Abandoned,
    /// A served call finished and its last message was produced
    /// ([`Session::complete`]).
    Completed,
    /// The channel closed with the call still open ([`Session::close`]).
    Closed(String),
}

/// The application side of one call: what the session hands it as the peer's
/// messages arrive. The driver implements it (channels to the tasks using the
/// call); tests implement it to record what happened.
pub trait CallApp {
    /// The peer sent a context's first value.
    fn started(&mut self, value: Bytes);
    /// The peer sent an item.
    fn item(&mut self, value: Bytes);
    /// The peer sent a batch of `count` items (at least one): `items` as
    /// [`batch::scan`](crate::batch::scan) accepted them, to be taken out
    /// with [`next_item`](crate::batch::next_item). By default each is
    /// handed to [`CallApp::item`] in turn.
    fn batch(&mut self, items: Bytes, count: usize) {
        let _ = count;
        let mut items = items;
        while let Some(item) = crate::batch::next_item(&mut items) {
            self.item(item);
        }
    }
    /// The peer will send no more items.
    fn stopped(&mut self);
    /// The peer granted credit: senders waiting for it may try again.
    fn credit(&mut self);
    /// The peer asked to cancel this call, which it started.
    fn cancel_requested(&mut self, canceller: &Uid);
    /// The call left the table; it is called exactly once per call.
    fn ended(self, end: End);
}

/// What arrived that is not part of an open call: the driver decides.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The peer starts a call. It passed every protocol check; the driver
    /// either [`admit`](Session::admit)s or [`refuse`](Session::refuse)s it
    /// before handling the next message.
    Call(CallStart),
    /// The peer asks this actor to cancel itself.
    CancelActor {
        /// Who asks.
        canceller: Uid,
        /// Why.
        reason: String,
    },
    /// The peer confirmed that it cancelled itself.
    CancelActorAck,
}

/// The optional fields of a call's `Start`, given to [`Session::open_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// The time the caller gives the call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The idempotency key of the durable job the call is an attempt of.
    pub key: Option<String>,
    /// The caller's trace context, parent of the callee's span.
    pub trace: Option<TraceContext>,
}

/// A call the peer starts, as [`Incoming::Call`] hands it to the driver.
#[derive(Debug, PartialEq)]
pub struct CallStart {
    /// The new call's id.
    pub cid: CallId,
    /// The function asked for.
    pub func: String,
    /// Single, stream or context.
    pub kind: CallKind,
    /// The encoded arguments.
    pub args: Bytes,
    /// The call's window.
    pub window: u32,
    /// The time the caller gives the call, in milliseconds, if any.
    pub timeout_ms: Option<u64>,
    /// The idempotency key of the durable job the call belongs to, if any.
    pub key: Option<String>,
    /// The caller's trace context, if it sent a valid one.
    pub trace: Option<TraceContext>,
}

/// The peer broke the protocol; the channel should be closed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Violation {
    /// A handshake message after the handshake.
    #[error("unexpected {msg} after the handshake")]
    AfterHandshake {
        /// The message's name.
        msg: &'static str,
    },
    /// A reply to a call that only we could have started, with the peer's id
    /// parity.
    #[error("{msg} for call {cid}, which the peer started itself")]
    WrongParity {
        /// The message's name.
        msg: &'static str,
        /// Its call id.
        cid: CallId,
    },
    /// A message for one of our call ids that we never used.
    #[error("{msg} for call {cid}, which was never started")]
    UnknownCall {
        /// The message's name.
        msg: &'static str,
        /// Its call id.
        cid: CallId,
    },
    /// A message the call's kind or state does not allow.
    #[error("{msg} for call {cid}: {why}")]
    OutOfOrder {
        /// The message's name.
        msg: &'static str,
        /// Its call id.
        cid: CallId,
        /// Which rule it broke.
        why: &'static str,
    },
    /// A batch of items that is not one.
    #[error("YieldBatch for call {cid}: {why}")]
    BadBatch {
        /// Its call id.
        cid: CallId,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Flow control was broken on a call.
    #[error("call {cid}: {error}")]
    Flow {
        /// The call.
        cid: CallId,
        /// The rule broken.
        error: FlowError,
    },
}

/// Why an operation of our own application could not proceed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The channel is closed.
    #[error("the channel is closed: {0}")]
    Closed(String),
    /// The call is not open (it ended, or never existed).
    #[error("call {0} is not open")]
    NotOpen(CallId),
    /// The call's kind or state does not allow this.
    #[error("call {cid}: {why}")]
    Invalid {
        /// The call.
        cid: CallId,
        /// What is wrong.
        why: &'static str,
    },
    /// Not enough credit to send this item now: wait for [`CallApp::credit`]
    /// and try again.
    #[error("call {0}: no credit to send now")]
    NoCredit(CallId),
}

/// How a served call's task ended, for [`Session::complete`].
#[derive(Debug)]
pub enum Completion {
    /// It returned this value.
    Returned(Bytes),
    /// It failed.
    Failed(Box<RemoteError>),
    /// It was cancelled; the error to send unless the peer asked for it (then
    /// the answer is `CancelAck`).
    Cancelled(Box<RemoteError>),
}

struct Call<A> {
    kind: CallKind,
    mine: bool,
    flow: FlowControl,
    /// Context: `Started` was sent (served) or received (ours).
    started: bool,
    /// The peer sent `Stop`.
    peer_stopped: bool,
    /// We sent `Stop`.
    we_stopped: bool,
    /// Ours: we sent `Cancel` and wait for the peer's last word.
    cancel_sent: bool,
    /// Served: who asked to cancel it.
    canceller: Option<Uid>,
    app: A,
}

impl<A> Call<A> {
    fn new(kind: CallKind, mine: bool, window: u32, app: A) -> Self {
        Call {
            kind,
            mine,
            flow: FlowControl::new(window),
            started: false,
            peer_stopped: false,
            we_stopped: false,
            cancel_sent: false,
            canceller: None,
            app,
        }
    }

    /// Whether the peer may send items on this call now.
    fn peer_may_send(&self) -> Result<(), &'static str> {
        match (self.kind, self.mine) {
            (CallKind::Single, _) => Err("a single call carries no items"),
            (CallKind::Stream, false) => Err("the caller of a stream sends no items"),
            (CallKind::Context, _) if !self.started => Err("an item before `Started`"),
            _ if self.peer_stopped => Err("an item after `Stop`"),
            _ => Ok(()),
        }
    }

    /// Whether we may send items on this call now.
    fn we_may_send(&self) -> Result<(), &'static str> {
        match (self.kind, self.mine) {
            (CallKind::Single, _) => Err("a single call carries no items"),
            (CallKind::Stream, true) => Err("the caller of a stream sends no items"),
            (CallKind::Context, _) if !self.started => Err("an item before `Started`"),
            _ if self.we_stopped => Err("an item after `Stop`"),
            _ => Ok(()),
        }
    }
}

/// The call protocol of one channel. See the [module docs](self).
pub struct Session<A> {
    side: Side,
    me: Uid,
    limits: Limits,
    next_cid: CallId,
    calls: HashMap<CallId, Call<A>>,
    /// How many of `calls` the peer started.
    served: usize,
    /// The peer's calls that ended here and whose last message the driver
    /// has not yet queued ([`Session::reply_queued`]): they still hold a
    /// place under `max_served`, or a peer that never reads could have
    /// replies pile up without bound.
    replying: usize,
    /// The sum of the windows of the peer's open contexts.
    served_window: u64,
    transmit: VecDeque<Msg>,
    closed: Option<String>,
}

impl<A: CallApp> Session<A> {
    /// A session for our end `side` of a channel, for actor `me` (named as
    /// the canceller in the `Cancel`s we send).
    pub fn new(side: Side, me: Uid, limits: Limits) -> Self {
        Session {
            side,
            me,
            limits,
            next_cid: side.first_id(),
            calls: HashMap::new(),
            served: 0,
            replying: 0,
            served_window: 0,
            transmit: VecDeque::new(),
            closed: None,
        }
    }

    /// Our side of the channel.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether `cid` has our parity (a call we start).
    pub fn is_ours(&self, cid: CallId) -> bool {
        cid % 2 == self.next_cid % 2
    }

    /// Why the session closed, once it has.
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// How many calls are open, ours and the peer's.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// The application side of open call `cid`.
    pub fn app(&mut self, cid: CallId) -> Option<&mut A> {
        self.calls.get_mut(&cid).map(|c| &mut c.app)
    }

    /// Who asked to cancel served call `cid`, if anyone did.
    pub fn canceller(&self, cid: CallId) -> Option<&Uid> {
        self.calls.get(&cid).and_then(|c| c.canceller.as_ref())
    }

    /// The next message the session itself must send (refusals of calls).
    pub fn poll_transmit(&mut self) -> Option<Msg> {
        self.transmit.pop_front()
    }

    /// Starts a call of `func`: returns its id and the `Start` to send.
    ///
    /// # Errors
    ///
    /// [`SessionError::Closed`] once the channel closed.
    pub fn open(
        &mut self,
        func: &str,
        kind: CallKind,
        args: Bytes,
        app: A,
    ) -> Result<(CallId, Msg), SessionError> {
        self.open_within(func, kind, args, app, None)
    }

    /// [`Session::open`] for a call the caller gives `timeout_ms`
    /// milliseconds (carried in its `Start`; see [`Msg::Start`]).
    ///
    /// # Errors
    ///
    /// [`SessionError::Closed`] once the channel closed.
    pub fn open_within(
        &mut self,
        func: &str,
        kind: CallKind,
        args: Bytes,
        app: A,
        timeout_ms: Option<u64>,
    ) -> Result<(CallId, Msg), SessionError> {
        self.open_with(func, kind, args, app, StartOptions { timeout_ms, ..StartOptions::default() })
    }

    /// [`Session::open`] with the optional fields of the call's `Start`: a
    /// deadline, a job key and a trace context (see [`Msg::Start`]).
    ///
    /// # Errors
    ///
    /// [`SessionError::Closed`] once the channel closed.
    pub fn open_with(
        &mut self,
        func: &str,
        kind: CallKind,
        args: Bytes,
        app: A,
        options: StartOptions,
    ) -> Result<(CallId, Msg), SessionError> {
        if let Some(reason) = &self.closed {
            return Err(SessionError::Closed(reason.clone()));
        }
        let cid = self.next_cid;
        self.next_cid += 2;
        let window = self.limits.window;
        self.calls.insert(cid, Call::new(kind, true, window, app));
        let StartOptions { timeout_ms, key, trace } = options;
        Ok((cid, Msg::Start { cid, func: func.to_owned(), kind, args, window, timeout_ms, key, trace }))
    }

    /// Gives up on our call `cid`: it leaves the table at once and the peer is
    /// asked to cancel it (late replies are then ignored). Returns the
    /// `Cancel` to send, or `None` if the call was not open.
    pub fn abandon(&mut self, cid: CallId) -> Option<Msg> {
        if !self.is_ours(cid) {
            return None;
        }
        let call = self.calls.remove(&cid)?;
        call.app.ended(End::Abandoned);
        Some(Msg::Cancel { cid, canceller: self.me.clone() })
    }

    /// Asks the peer to cancel our call `cid` and keeps it open for the
    /// peer's last word (`CancelAck`, or the result if it came first).
    /// Returns the `Cancel` to send, or `None` if the call is not open or a
    /// cancel was already sent.
    pub fn request_cancel(&mut self, cid: CallId) -> Option<Msg> {
        let call = self.calls.get_mut(&cid).filter(|c| c.mine)?;
        if std::mem::replace(&mut call.cancel_sent, true) {
            return None;
        }
        Some(Msg::Cancel { cid, canceller: self.me.clone() })
    }

    /// Admits the peer's call `cid` (from [`Incoming::Call`]).
    pub fn admit(&mut self, cid: CallId, kind: CallKind, window: u32, app: A) {
        if self.closed.is_some() {
            app.ended(End::Closed(self.closed.clone().unwrap_or_default()));
            return;
        }
        self.served += 1;
        if kind == CallKind::Context {
            self.served_window += u64::from(window);
        }
        self.calls.insert(cid, Call::new(kind, false, window, app));
    }

    /// Refuses the peer's call `cid` (from [`Incoming::Call`]) with `error`;
    /// returns the `Error` to send.
    pub fn refuse(&mut self, cid: CallId, error: RemoteError) -> Msg {
        Msg::Error { cid, error: Box::new(error) }
    }

    /// Sends a served context's first value: returns the `Started` to send.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotOpen`] if the call ended, [`SessionError::Invalid`]
    /// if it is not a served context or `Started` was already sent.
    pub fn send_started(&mut self, cid: CallId, value: Bytes) -> Result<Msg, SessionError> {
        let call = self.call_mut(cid)?;
        if call.kind != CallKind::Context || call.mine {
            return Err(SessionError::Invalid { cid, why: "only the callee of a context sends `Started`" });
        }
        if std::mem::replace(&mut call.started, true) {
            return Err(SessionError::Invalid { cid, why: "`Started` was already sent" });
        }
        Ok(Msg::Started { cid, value })
    }

    /// Spends credit for one item: returns the `Yield` to send.
    ///
    /// # Errors
    ///
    /// [`SessionError::NoCredit`] if the peer is a window behind (nothing was
    /// spent: wait for [`CallApp::credit`]); [`SessionError::NotOpen`] if the
    /// call ended; [`SessionError::Invalid`] if this side may not send items
    /// on it (now).
    pub fn send_item(&mut self, cid: CallId, value: Bytes) -> Result<Msg, SessionError> {
        let call = self.call_mut(cid)?;
        call.we_may_send().map_err(|why| SessionError::Invalid { cid, why })?;
        if !call.flow.try_send(value.len()) {
            return Err(SessionError::NoCredit(cid));
        }
        Ok(Msg::Yield { cid, value })
    }

    /// As [`Session::send_item`], but the item is taken out of `item` only
    /// when it can go: `Ok(None)` (with `item` untouched) while the peer is a
    /// window behind, so a driver keeps it for the next try without a copy.
    ///
    /// # Errors
    ///
    /// As [`Session::send_item`], but never [`SessionError::NoCredit`].
    pub fn send_item_from(
        &mut self,
        cid: CallId,
        item: &mut Option<Bytes>,
    ) -> Result<Option<Msg>, SessionError> {
        let call = self.call_mut(cid)?;
        call.we_may_send().map_err(|why| SessionError::Invalid { cid, why })?;
        let len = item.as_ref().map_or(0, Bytes::len);
        if !call.flow.try_send(len) {
            return Ok(None);
        }
        Ok(item.take().map(|value| Msg::Yield { cid, value }))
    }

    /// Takes all the credit call `cid` may still spend, for a driver that
    /// packs items into batches and spends it item by item itself: returns
    /// it (zero while the peer is a window behind; wait for
    /// [`CallApp::credit`]).
    ///
    /// # Errors
    ///
    /// As [`Session::send_item`], but never [`SessionError::NoCredit`].
    pub fn withdraw_credit(&mut self, cid: CallId) -> Result<u64, SessionError> {
        let call = self.call_mut(cid)?;
        call.we_may_send().map_err(|why| SessionError::Invalid { cid, why })?;
        Ok(call.flow.withdraw())
    }

    /// Hands on a batch of `count` items packed by a
    /// [`BatchBuilder`](crate::BatchBuilder), paid for with credit from
    /// [`Session::withdraw_credit`]: returns the message to send, a plain
    /// `Yield` for a single item.
    ///
    /// # Errors
    ///
    /// As [`Session::send_item`], but never [`SessionError::NoCredit`];
    /// [`SessionError::Invalid`] for an empty batch.
    pub fn send_batch(&mut self, cid: CallId, items: Bytes, count: usize) -> Result<Msg, SessionError> {
        let call = self.call_mut(cid)?;
        call.we_may_send().map_err(|why| SessionError::Invalid { cid, why })?;
        match count {
            0 => Err(SessionError::Invalid { cid, why: "an empty batch" }),
            1 => {
                let mut rest = items;
                let value = crate::batch::next_item(&mut rest)
                    .ok_or(SessionError::Invalid { cid, why: "a batch that is not a sequence of items" })?;
                Ok(Msg::Yield { cid, value })
            }
            _ => Ok(Msg::YieldBatch { cid, items }),
        }
    }

    /// Hands on one item whose document is a msgpack `bin` holding `data`,
    /// paid for with credit from [`Session::withdraw_credit`] (its cost is
    /// that of [`BytesItem::doc_len`]): returns it for
    /// [`Sender::send_bytes_item`](crate::Sender::send_bytes_item), which
    /// writes `data` without copying it.
    ///
    /// # Errors
    ///
    /// As [`Session::send_item`], but never [`SessionError::NoCredit`].
    pub fn send_bytes_item(&mut self, cid: CallId, data: Bytes) -> Result<BytesItem, SessionError> {
        let call = self.call_mut(cid)?;
        call.we_may_send().map_err(|why| SessionError::Invalid { cid, why })?;
        Ok(BytesItem::new(cid, data))
    }

    /// Ends our direction of items on call `cid`: returns the `Stop` to send.
    ///
    /// # Errors
    ///
    /// As [`Session::send_item`], without the credit.
    pub fn send_stop(&mut self, cid: CallId) -> Result<Msg, SessionError> {
        let call = self.call_mut(cid)?;
        call.we_may_send().map_err(|why| SessionError::Invalid { cid, why })?;
        call.we_stopped = true;
        Ok(Msg::Stop { cid })
    }

    /// Grants the peer `credit` more on call `cid` (what our application
    /// consumed); returns the `Credit` to send, or `None` if the call ended.
    pub fn grant(&mut self, cid: CallId, credit: u32) -> Option<Msg> {
        let call = self.calls.get_mut(&cid)?;
        let credit = call.flow.grant(credit);
        (credit > 0).then_some(Msg::Credit { cid, credit })
    }

    /// A served call's task ended: the call leaves the table and the last
    /// message for the peer is returned (`Return`, `Stop` for a stream,
    /// `Error`, or `CancelAck` when the peer asked for the cancel), or `None`
    /// if the call had already ended (the channel closed).
    pub fn complete(&mut self, cid: CallId, how: Completion) -> Option<Msg> {
        if self.is_ours(cid) {
            return None;
        }
        let call = self.calls.remove(&cid)?;
        self.served -= 1;
        if call.kind == CallKind::Context {
            self.served_window -= u64::from(call.flow.window());
        }
        let msg = match how {
            Completion::Returned(_) if call.kind == CallKind::Stream => Msg::Stop { cid },
            Completion::Returned(value) => Msg::Return { cid, value },
            Completion::Failed(error) => Msg::Error { cid, error },
            Completion::Cancelled(_) if call.canceller.is_some() => Msg::CancelAck { cid },
            Completion::Cancelled(error) => Msg::Error { cid, error },
        };
        call.app.ended(End::Completed);
        self.replying += 1;
        Some(msg)
    }

    /// The last message [`complete`](Session::complete) returned has been
    /// queued for the peer (or dropped): its call gives up its place under
    /// [`Limits::max_served`].
    pub fn reply_queued(&mut self) {
        self.replying = self.replying.saturating_sub(1);
    }

    /// Closes the session: every open call ends with `reason`, and later
    /// operations fail. Idempotent; the first reason is kept.
    pub fn close(&mut self, reason: &str) {
        if self.closed.is_none() {
            self.closed = Some(reason.to_owned());
        }
        self.served = 0;
        self.replying = 0;
        self.served_window = 0;
        self.transmit.clear();
        for (_, call) in self.calls.drain() {
            call.app.ended(End::Closed(reason.to_owned()));
        }
    }

    fn call_mut(&mut self, cid: CallId) -> Result<&mut Call<A>, SessionError> {
        if let Some(reason) = &self.closed {
            return Err(SessionError::Closed(reason.clone()));
        }
        self.calls.get_mut(&cid).ok_or(SessionError::NotOpen(cid))
    }

    /// Checks that a reply to one of *our* calls names one: our parity, an id
    /// we used. `Ok(None)` when the call has already ended (a late reply).
    fn ours_mut(&mut self, msg: &'static str, cid: CallId) -> Result<Option<&mut Call<A>>, Violation> {
        if !self.is_ours(cid) {
            return Err(Violation::WrongParity { msg, cid });
        }
        if cid >= self.next_cid {
            return Err(Violation::UnknownCall { msg, cid });
        }
        Ok(self.calls.get_mut(&cid))
    }

    /// Ends our call `cid` with `end` (it must be open).
    fn finish(&mut self, cid: CallId, end: End) {
        if let Some(call) = self.calls.remove(&cid) {
            call.app.ended(end);
        }
    }

    /// Takes one message from the peer.
    ///
    /// # Errors
    ///
    /// A [`Violation`] when the peer broke the protocol; the driver should
    /// then [`close`](Session::close) the session and the channel.
    pub fn handle(&mut self, msg: Msg) -> Result<Option<Incoming>, Violation> {
        if self.closed.is_some() {
            return Ok(None);
        }
        let name = msg.name();
        match msg {
            Msg::Start { cid, func, kind, args, window, timeout_ms, key, trace } => {
                return Ok(self.start(CallStart { cid, func, kind, args, window, timeout_ms, key, trace }));
            }
            Msg::StartAck { cid } => {
                self.ours_mut(name, cid)?;
            }
            Msg::Started { cid, value } => {
                if let Some(call) = self.ours_mut(name, cid)? {
                    if call.kind != CallKind::Context {
                        return Err(Violation::OutOfOrder {
                            msg: name,
                            cid,
                            why: "only a context has `Started`",
                        });
                    }
                    if std::mem::replace(&mut call.started, true) {
                        return Err(Violation::OutOfOrder { msg: name, cid, why: "a second `Started`" });
                    }
                    call.app.started(value);
                }
            }
            Msg::Yield { cid, value } => {
                if self.is_ours(cid) && cid >= self.next_cid {
                    return Err(Violation::UnknownCall { msg: name, cid });
                }
                // An item for a call that ended is a race (the caller of a
                // context may send while the callee returns): ignored.
                if let Some(call) = self.calls.get_mut(&cid) {
                    call.peer_may_send().map_err(|why| Violation::OutOfOrder { msg: name, cid, why })?;
                    call.flow.received(value.len()).map_err(|error| Violation::Flow { cid, error })?;
                    call.app.item(value);
                }
            }
            Msg::YieldBatch { cid, items } => {
                if self.is_ours(cid) && cid >= self.next_cid {
                    return Err(Violation::UnknownCall { msg: name, cid });
                }
                if let Some(call) = self.calls.get_mut(&cid) {
                    call.peer_may_send().map_err(|why| Violation::OutOfOrder { msg: name, cid, why })?;
                    let (count, cost) = crate::batch::scan(&items, call.flow.window())
                        .map_err(|bad| Violation::BadBatch { cid, why: bad.why() })?;
                    call.flow.received_cost(cost).map_err(|error| Violation::Flow { cid, error })?;
                    call.app.batch(items, count);
                }
            }
            Msg::Stop { cid } => {
                if self.is_ours(cid) && cid >= self.next_cid {
                    return Err(Violation::UnknownCall { msg: name, cid });
                }
                let Some(call) = self.calls.get_mut(&cid) else { return Ok(None) };
                call.peer_may_send().map_err(|why| Violation::OutOfOrder { msg: name, cid, why })?;
                call.peer_stopped = true;
                if call.mine && call.kind == CallKind::Stream {
                    // A stream we called ends with its Stop.
                    self.finish(cid, End::Returned(Bytes::new()));
                } else {
                    call.app.stopped();
                }
            }
            Msg::Return { cid, value } => {
                if let Some(call) = self.ours_mut(name, cid)? {
                    if call.kind == CallKind::Stream {
                        return Err(Violation::OutOfOrder {
                            msg: name,
                            cid,
                            why: "a stream ends with `Stop`",
                        });
                    }
                    self.finish(cid, End::Returned(value));
                }
            }
            Msg::Error { cid, error } => {
                if self.ours_mut(name, cid)?.is_some() {
                    self.finish(cid, End::Failed(error));
                }
            }
            Msg::CancelAck { cid } => {
                if let Some(call) = self.ours_mut(name, cid)? {
                    if !call.cancel_sent {
                        return Err(Violation::OutOfOrder {
                            msg: name,
                            cid,
                            why: "the call was not cancelled",
                        });
                    }
                    self.finish(cid, End::CancelAcked);
                }
            }
            Msg::Cancel { cid, canceller } => {
                // Cancels race the calls' ends, and cost nothing: one for a
                // call that is not the peer's or not open is ignored.
                if let Some(call) = self.calls.get_mut(&cid).filter(|c| !c.mine) {
                    if call.canceller.is_none() {
                        call.app.cancel_requested(&canceller);
                        call.canceller = Some(canceller);
                    }
                }
            }
            Msg::Credit { cid, credit } => {
                if self.is_ours(cid) && cid >= self.next_cid {
                    return Err(Violation::UnknownCall { msg: name, cid });
                }
                if let Some(call) = self.calls.get_mut(&cid) {
                    call.flow.granted(credit).map_err(|error| Violation::Flow { cid, error })?;
                    call.app.credit();
                }
            }
            Msg::CancelActor { canceller, reason } => {
                return Ok(Some(Incoming::CancelActor { canceller, reason }));
            }
            Msg::CancelActorAck => return Ok(Some(Incoming::CancelActorAck)),
            Msg::Ping { nonce } => self.transmit.push_back(Msg::Pong { nonce }),
            // Any message shows the peer is alive; the driver counts them all.
            Msg::Pong { .. } => {}
            Msg::Hello { .. } | Msg::Auth { .. } | Msg::Welcome | Msg::Refused { .. } | Msg::Init { .. } => {
                return Err(Violation::AfterHandshake { msg: name });
            }
        }
        Ok(None)
    }

    fn start(&mut self, call: CallStart) -> Option<Incoming> {
        let CallStart { cid, kind, window, .. } = call;
        let refusal = if self.is_ours(cid) {
            Some(format!("call id {cid} has the parity of this side's calls"))
        } else if self.calls.contains_key(&cid) {
            Some(format!("call id {cid} is already in use"))
        } else if self.served + self.replying >= self.limits.max_served {
            Some(format!("more than {} concurrent calls on one channel", self.limits.max_served))
        } else if kind != CallKind::Single
            && !(self.limits.min_window..=self.limits.max_window).contains(&window)
        {
            Some(format!(
                "window {window} is outside {}..={} bytes",
                self.limits.min_window, self.limits.max_window
            ))
        } else if kind == CallKind::Context
            && self.served_window + u64::from(window) > self.limits.max_served_window
        {
            Some(format!(
                "the open contexts of this channel already hold {} of {} bytes of window",
                self.served_window, self.limits.max_served_window
            ))
        } else {
            None
        };
        match refusal {
            Some(message) => {
                let error =
                    RemoteError::new(self.me.clone(), ErrorKind::Protocol, "actor::ProtocolError", message);
                self.transmit.push_back(Msg::Error { cid, error: Box::new(error) });
                None
            }
            None => Some(Incoming::Call(call)),
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
