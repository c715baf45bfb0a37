//! One channel to one peer, as the application sees it: start calls, send
//! and grant stream items, cancel. The protocol itself (call ids, call
//! states, flow control, limits) is the transport's [`Session`]; this is its
//! thin driver: it holds the session behind a lock, hands each call's events
//! to the tasks using the call ([`CallIo`]), and writes what the session says
//! to send. The task reading the channel lives in [`link`](crate::link).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actor_transport::batch::FRAME_OVERHEAD;
use actor_transport::item_cost;
use actor_transport::session::Incoming as Arrival;
use actor_transport::{
    BytesItem, CallApp, CallId, CallKind, ChannelError, Completion, End, Limits, Msg, RemoteError, Sender,
    Session, SessionError, Side, StartOptions, Uid, Violation,
};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::outbox::{After, Outbox};

/// Bytes of items a receiver lets a sender have in flight on one call, each
/// way: 1 MiB, several round trips' worth at loopback speed.
pub const STREAM_WINDOW: u32 = 1024 * 1024;

/// Bytes of finished calls' results (and errors) that may wait, per
/// connection, for the peer to read what is already queued for it: 64 MiB.
/// A result that would go past it is dropped and its caller gets an error
/// naming this limit, so a peer that calls and never reads cannot make an
/// actor hold its results without bound.
pub const RESULT_BUDGET: usize = 64 * 1024 * 1024;

/// What a reply counts against [`RESULT_BUDGET`] besides its bytes: a
/// waiting reply also holds its task, its message and their allocations.
const REPLY_OVERHEAD: usize = 2048;

/// Tells the session that a served call's last message left our hands.
struct ReplyQueued<'a>(&'a Conn);

impl Drop for ReplyQueued<'_> {
    fn drop(&mut self) {
        self.0.session().reply_queued();
    }
}

/// The bytes a call's last message carries.
fn reply_size(msg: &Msg) -> usize {
    match msg {
        Msg::Return { value, .. } => value.len(),
        Msg::Error { error, .. } => error_size(error),
        _ => 0,
    }
}

/// Roughly the bytes of an error's text, its nested errors' included.
fn error_size(e: &RemoteError) -> usize {
    e.message.len()
        + e.type_name.len()
        + e.causes.iter().map(String::len).sum::<usize>()
        + e.nested.iter().map(error_size).sum::<usize>()
}

/// The results of served calls waiting to be queued for one peer.
#[derive(Default)]
struct ResultBudget {
    waiting: AtomicUsize,
}

/// A reply's place in its connection's [`ResultBudget`], given back on drop.
struct Reserved<'a> {
    budget: &'a ResultBudget,
    size: usize,
}

impl ResultBudget {
    /// Counts `size` bytes and [`REPLY_OVERHEAD`] as waiting, unless that
    /// would pass [`RESULT_BUDGET`].
    fn reserve(&self, size: usize) -> Option<Reserved<'_>> {
        let size = size.saturating_add(REPLY_OVERHEAD);
        let mut now = self.waiting.load(Ordering::Relaxed);
        loop {
            let next = now.checked_add(size).filter(|n| *n <= RESULT_BUDGET)?;
            match self.waiting.compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Reserved { budget: self, size }),
                Err(actual) => now = actual,
            }
        }
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.budget.waiting.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// The bounds every channel of this runtime enforces on its peer.
pub(crate) fn limits() -> Limits {
    Limits { window: STREAM_WINDOW, ..Limits::default() }
}

/// What arrives for a stream's receiving end.
pub(crate) enum Incoming {
    Item(Bytes),
    /// The items of a `YieldBatch`, checked by the session: taken out with
    /// [`actor_transport::next_item`].
    Batch(Bytes),
    Stop,
}

/// How one of our calls ended, for the caller.
pub(crate) enum Done {
    Return(Bytes),
    Failed(Box<RemoteError>),
    CancelAcked,
    Closed(String),
}

/// The error for a stream item of `len` bytes that no frame of `max` bytes
/// holds.
fn too_large(what: String, len: usize, max: usize) -> Error {
    Error::codec(what, format!("an item of {len} bytes does not fit in a frame of {max} bytes"))
}

/// Credit paid for an item not queued yet; dropped, it goes back to the
/// call's allowance.
struct Refund<'a> {
    shared: &'a Shared,
    cost: u64,
}

impl Refund<'_> {
    /// The item was queued, or the channel refused it for good: the credit
    /// stays spent.
    fn spent(self) {
        std::mem::forget(self);
    }
}

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        self.shared.outbox.lock().allowance += self.cost;
        // A clone of the sender may be waiting for credit meanwhile.
        self.shared.credit.notify_waiters();
    }
}

/// Per-call state shared by the call's stream halves.
pub(crate) struct Shared {
    /// Why the call ended, once it has (read by halves that find it closed).
    pub ended: OnceLock<Error>,
    /// Woken when the peer grants credit, or the call ends.
    pub credit: Notify,
    /// The call's window, in bytes.
    pub window: u32,
    /// Items our side packed and has not yet handed to the channel.
    pub outbox: Outbox,
}

/// The two ends of a channel, for the errors a call reports.
struct Ends {
    me: Uid,
    peer: Uid,
}

impl Ends {
    fn disconnected(&self, reason: impl Into<String>) -> Error {
        Error::Disconnected { peer: self.peer.clone(), reason: reason.into() }
    }

    fn cancelled_by_us(&self) -> Error {
        Error::Cancelled { canceller: Some(self.me.clone()), reason: "cancelled by the caller".into() }
    }
}

/// The application side of one call: where the session delivers its events.
pub(crate) struct CallIo {
    ends: Arc<Ends>,
    shared: Arc<Shared>,
    items: Option<mpsc::UnboundedSender<Incoming>>,
    /// Our context call: its first value.
    started: Option<oneshot::Sender<Result<Bytes>>>,
    /// Our call: how it ended.
    done: Option<oneshot::Sender<Done>>,
    /// A served call: cancels its task.
    token: Option<CancellationToken>,
}

impl CallApp for CallIo {
    fn started(&mut self, value: Bytes) {
        if let Some(tx) = self.started.take() {
            let _ = tx.send(Ok(value));
        }
    }

    fn item(&mut self, value: Bytes) {
        if let Some(items) = &self.items {
            let _ = items.send(Incoming::Item(value));
        }
    }

    fn batch(&mut self, items: Bytes, _count: usize) {
        if let Some(tx) = &self.items {
            let _ = tx.send(Incoming::Batch(items));
        }
    }

    fn stopped(&mut self) {
        if let Some(items) = self.items.take() {
            let _ = items.send(Incoming::Stop);
        }
    }

    fn credit(&mut self) {
        self.shared.credit.notify_waiters();
    }

    fn cancel_requested(&mut self, _canceller: &Uid) {
        if let Some(t) = &self.token {
            t.cancel();
        }
    }

    fn ended(mut self, end: End) {
        // The reason is spelled out only when something can still read it (a
        // stream half or a pending `started`), which a finished single call
        // never has: that keeps an allocation off every ordinary call.
        if self.started.is_some() || Arc::strong_count(&self.shared) > 1 {
            let error = match &end {
                End::Returned(_) => self.ends.disconnected("the call returned"),
                End::Failed(e) => Error::Remote(e.clone()),
                End::CancelAcked | End::Abandoned => self.ends.cancelled_by_us(),
                End::Completed => self.ends.disconnected("the call ended"),
                End::Closed(r) => self.ends.disconnected(r.clone()),
            };
            let _ = self.shared.ended.set(error.clone());
            if let Some(tx) = self.started.take() {
                let error = match end {
                    End::Returned(_) => Error::msg("the context returned without calling `started`"),
                    _ => error,
                };
                let _ = tx.send(Err(error));
            }
        }
        if let (End::Returned(_), Some(items)) = (&end, self.items.take()) {
            let _ = items.send(Incoming::Stop);
        }
        self.shared.credit.notify_waiters();
        if let Some(t) = &self.token {
            t.cancel();
        }
        if let Some(tx) = self.done.take() {
            let done = match end {
                End::Returned(v) => Done::Return(v),
                End::Failed(e) => Done::Failed(e),
                End::CancelAcked | End::Abandoned | End::Completed => Done::CancelAcked,
                End::Closed(r) => Done::Closed(r),
            };
            let _ = tx.send(done);
        }
    }
}

/// A live channel to one peer.
pub(crate) struct Conn {
    ends: Arc<Ends>,
    sender: Sender,
    session: Mutex<Session<CallIo>>,
    closed: CancellationToken,
    /// The peer said it cancelled itself (`CancelActorAck`).
    cancel_acked: AtomicBool,
    /// Results of served calls waiting for room to be sent.
    results: ResultBudget,
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
        // read why the call ended, so the session need not spell it out.
        drop(shared);
        let done = done.await;
        let conn = guard.conn().clone();
        drop(guard);
        conn.outcome(func, done)
    }
}

impl Conn {
    /// A connection over `sender`, for actor `me` talking to `peer`, on our
    /// end `side`. The caller reads the channel and feeds [`Conn::handle`].
    pub(crate) fn new(sender: Sender, me: Uid, peer: Uid, side: Side) -> Conn {
        let session = Session::new(side, me.clone(), limits());
        Conn {
            ends: Arc::new(Ends { me, peer }),
            sender,
            session: Mutex::new(session),
            closed: CancellationToken::new(),
            cancel_acked: AtomicBool::new(false),
            results: ResultBudget::default(),
        }
    }

    pub(crate) fn peer(&self) -> &Uid {
        &self.ends.peer
    }

    pub(crate) fn sender(&self) -> &Sender {
        &self.sender
    }

    /// Whether the peer announced that it cancelled itself.
    pub(crate) fn cancel_acked(&self) -> bool {
        self.cancel_acked.load(Ordering::SeqCst)
    }

    fn session(&self) -> MutexGuard<'_, Session<CallIo>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many calls are open on this channel, ours and the peer's.
    pub(crate) fn open_calls(&self) -> usize {
        self.session().open_calls()
    }

    /// Whether the channel has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves once the channel has closed (peer gone or channel broken).
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    fn new_shared(window: u32) -> Arc<Shared> {
        Arc::new(Shared { ended: OnceLock::new(), credit: Notify::new(), window, outbox: Outbox::default() })
    }

    /// Starts a call of `func` in the peer.
    pub(crate) async fn open(self: &Arc<Self>, func: &str, kind: CallKind, args: Bytes) -> Result<Opened> {
        self.open_keyed(func, kind, args, None).await
    }

    /// Starts a call of `func` in the peer that carries the durable job
    /// `key` (jobs/key.rs), so the function can deduplicate its effects.
    pub(crate) async fn open_keyed(
        self: &Arc<Self>,
        func: &str,
        kind: CallKind,
        args: Bytes,
        key: Option<String>,
    ) -> Result<Opened> {
        let shared = Conn::new_shared(STREAM_WINDOW);
        let (done_tx, done) = oneshot::channel();
        let (items_tx, items) =
            split(matches!(kind, CallKind::Stream | CallKind::Context).then(mpsc::unbounded_channel));
        let (started_tx, started) = split((kind == CallKind::Context).then(oneshot::channel));
        let io = CallIo {
            ends: self.ends.clone(),
            shared: shared.clone(),
            items: items_tx,
            started: started_tx,
            done: Some(done_tx),
            token: None,
        };
        // A call made under a deadline carries the time left (deadline.rs),
        // and every call its trace context (trace.rs).
        let (trace, _new_trace) = crate::trace::outgoing();
        let options = StartOptions { timeout_ms: crate::deadline::timeout_ms(), key, trace: Some(trace) };
        let (cid, start) =
            self.session().open_with(func, kind, args, io, options).map_err(|e| self.session_error(e))?;
        let guard = CallGuard {
            conn: self.clone(),
            cid,
            // A call that starts a trace is its root span: exported, so the
            // callee's span has its parent in the trace.
            #[cfg(feature = "otel")]
            _client: if _new_trace { crate::otel::ClientSpan::start(trace, func) } else { None },
        };
        if let Err(e) = self.sender.send(&start).await {
            // The guard takes the call out of the table; the peer ignores the
            // Cancel for a call it never saw.
            drop(guard);
            return Err(self.send_error(&format!("the call of `{func}`"), e));
        }
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
                canceller: Some(self.ends.me.clone()),
                reason: format!("call of `{func}` cancelled"),
            }),
            Ok(Done::Closed(reason)) => Err(self.ends.disconnected(reason)),
            Err(_) => Err(self.ends.disconnected("the call was dropped")),
        }
    }

    fn session_error(&self, e: SessionError) -> Error {
        match e {
            SessionError::Closed(reason) => self.ends.disconnected(reason),
            other => Error::msg(other),
        }
    }

    /// An error from writing `what`: a message too large for a frame says
    /// so, naming the limit.
    fn send_error(&self, what: &str, e: ChannelError) -> Error {
        match e {
            ChannelError::Closed { reason } => self.ends.disconnected(reason),
            ChannelError::Frame(f) => Error::Codec { what: what.to_owned(), reason: f.to_string() },
            other => Error::Channel(other),
        }
    }

    /// Sends one item on call `cid`: packs it into the call's batch (see
    /// [`outbox`](crate::outbox)), waiting for credit when the peer is a
    /// window behind. `what` names the item in an encoding error.
    pub(crate) async fn send_item<T: Serialize + ?Sized>(
        self: &Arc<Self>,
        cid: CallId,
        shared: &Arc<Shared>,
        item: &T,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let mut credit = None;
        loop {
            if shared.ended.get().is_some() {
                return Err(self.ended(shared));
            }
            let after = {
                let mut packed = shared.outbox.lock();
                let len = packed.batch.push(item).map_err(|e| Error::codec(what(), e))?;
                let max = self.sender.max_frame();
                if packed.batch.len() + FRAME_OVERHEAD > max {
                    // Past what one frame holds: the item must not take the
                    // items packed before it down with it.
                    packed.batch.pop();
                    if packed.batch.is_empty() {
                        return Err(too_large(what(), len, max));
                    }
                    None
                } else {
                    Some(packed.pay(u64::from(item_cost(len, shared.window)), || self.sender.is_idle()))
                }
            };
            let Some(after) = after else {
                // The items packed before go first; then this one, alone.
                self.flush(cid, shared).await?;
                continue;
            };
            match after {
                Some(After::Keep) => return Ok(()),
                Some(After::Flush) => return self.flush(cid, shared).await,
                Some(After::Watch) => {
                    self.spawn_flusher(cid, shared);
                    return Ok(());
                }
                None => {}
            }
            // Short of credit: take what the session has, registered for
            // the next grant first so one in between is not missed.
            let notified = match credit.take() {
                Some(notified) => notified,
                None => {
                    let mut notified = Box::pin(shared.credit.notified());
                    notified.as_mut().enable();
                    notified
                }
            };
            if self.withdraw_credit(cid, shared)? {
                continue;
            }
            // The peer is a window behind: it gets what is packed, so that
            // it can consume and grant, and the item waits for the grant.
            self.flush(cid, shared).await?;
            notified.await;
        }
    }

    /// Sends one item on call `cid` that is a [`Bytes`] of at least
    /// [`WRITE_SHARED_AT`](actor_transport::WRITE_SHARED_AT) bytes: as [`Conn::send_item`], but `data` is
    /// written from where it is, never copied into a batch. The items packed
    /// before it go first.
    pub(crate) async fn send_bytes_item(
        self: &Arc<Self>,
        cid: CallId,
        shared: &Arc<Shared>,
        data: Bytes,
        what: impl Fn() -> String,
    ) -> Result<()> {
        let doc = BytesItem::doc_len(data.len());
        let max = self.sender.max_frame();
        if doc + FRAME_OVERHEAD > max {
            return Err(too_large(what(), doc, max));
        }
        let cost = u64::from(item_cost(doc, shared.window));
        // Held until the item is queued: items packed meanwhile (by clones
        // of this sender) wait for it, as they would behind a batch.
        let _gate = shared.outbox.gate.lock().await;
        self.flush_gated(cid, shared).await?;
        loop {
            if shared.ended.get().is_some() {
                return Err(self.ended(shared));
            }
            {
                let mut packed = shared.outbox.lock();
                if packed.allowance >= cost {
                    packed.allowance -= cost;
                    break;
                }
            }
            // Registered for the next grant before taking what the session
            // has, so one in between is not missed.
            let notified = shared.credit.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.withdraw_credit(cid, shared)? {
                continue;
            }
            // The peer is a window behind. What clones packed since the
            // flush above is paid for: it must reach the peer, which grants
            // only for what it consumes.
            self.flush_gated(cid, shared).await?;
            notified.await;
        }
        // Paid for: if this send is cancelled before the item is queued,
        // the credit goes back, or each cancelled send would shrink the
        // window for good.
        let refund = Refund { shared, cost };
        let item = match self.session().send_bytes_item(cid, data) {
            Ok(item) => item,
            Err(e) => return Err(self.item_refused(shared, e)),
        };
        let queued = self.sender.send_bytes_item(&item).await;
        refund.spent();
        queued.map_err(|e| self.send_error("a stream item", e))
    }

    /// Moves the credit the session holds for call `cid` into its
    /// allowance; whether there was any.
    fn withdraw_credit(&self, cid: CallId, shared: &Shared) -> Result<bool> {
        let got = self.session().withdraw_credit(cid).map_err(|e| self.item_refused(shared, e))?;
        if got > 0 {
            shared.outbox.lock().allowance += got;
        }
        Ok(got > 0)
    }

    /// Hands call `cid`'s packed items to the channel, waiting for room.
    pub(crate) async fn flush(&self, cid: CallId, shared: &Shared) -> Result<()> {
        let _gate = shared.outbox.gate.lock().await;
        self.flush_gated(cid, shared).await
    }

    /// [`Conn::flush`] with the call's gate held by the caller.
    async fn flush_gated(&self, cid: CallId, shared: &Shared) -> Result<()> {
        let Some(unsent) = shared.outbox.take() else { return Ok(()) };
        let (items, count) = unsent.items();
        let batch = self.session().send_batch(cid, items, count);
        let msg = match batch {
            Ok(msg) => msg,
            Err(e) => {
                // The call ended: its items can no longer go.
                unsent.sent();
                return Err(self.item_refused(shared, e));
            }
        };
        let queued = self.sender.send(&msg).await;
        unsent.sent();
        queued.map_err(|e| self.send_error("stream items", e))
    }

    /// Hands call `cid`'s packed items on once the producer yields.
    fn spawn_flusher(self: &Arc<Self>, cid: CallId, shared: &Arc<Shared>) {
        let (conn, shared) = (self.clone(), shared.clone());
        tokio::spawn(async move {
            if let Err(e) = conn.flush(cid, &shared).await {
                tracing::debug!(cid, error = %e, "cannot hand stream items on");
            }
        });
    }

    fn item_refused(&self, shared: &Shared, e: SessionError) -> Error {
        match e {
            SessionError::NotOpen(_) | SessionError::Closed(_) => self.ended(shared),
            other => Error::msg(other),
        }
    }

    /// Tells the peer we send no more items on call `cid`.
    pub(crate) async fn send_stop(&self, cid: CallId, shared: &Shared) -> Result<()> {
        // Every item packed before the end goes before it.
        let _gate = shared.outbox.gate.lock().await;
        self.flush_gated(cid, shared).await?;
        let stop = self.session().send_stop(cid);
        let msg = match stop {
            Ok(msg) => msg,
            Err(SessionError::NotOpen(_) | SessionError::Closed(_)) => return Err(self.ended(shared)),
            Err(e) => return Err(Error::msg(e)),
        };
        self.sender.send(&msg).await.map_err(|e| self.send_error("the end of a stream", e))
    }

    /// Sends a served context's first value.
    pub(crate) async fn send_started(&self, cid: CallId, shared: &Shared, value: Bytes) -> Result<()> {
        let started = self.session().send_started(cid, value);
        let msg = match started {
            Ok(msg) => msg,
            Err(SessionError::NotOpen(_) | SessionError::Closed(_)) => return Err(self.ended(shared)),
            Err(e) => return Err(Error::msg(e)),
        };
        self.sender.send(&msg).await.map_err(|e| self.send_error("the context's first value", e))
    }

    /// Why call items can no longer flow.
    pub(crate) fn ended(&self, shared: &Shared) -> Error {
        shared.ended.get().cloned().unwrap_or_else(|| self.ends.disconnected("the call ended"))
    }

    /// Grants the peer `n` more bytes of items on call `cid`.
    pub(crate) fn grant(&self, cid: CallId, n: u32) {
        let credit = self.session().grant(cid, n);
        if let Some(msg) = credit {
            self.send_control(&msg);
        }
    }

    /// Gives up on our call `cid` if it is still running; the peer is asked
    /// to cancel it.
    pub(crate) fn abandon(&self, cid: CallId) {
        let cancel = self.session().abandon(cid);
        if let Some(msg) = cancel {
            self.send_control(&msg);
        }
    }

    /// Asks the peer to cancel our call `cid` and keeps waiting for its outcome.
    pub(crate) fn request_cancel(&self, cid: CallId) {
        let cancel = self.session().request_cancel(cid);
        if let Some(msg) = cancel {
            self.send_control(&msg);
        }
    }

    /// Asks the peer actor, our child, to cancel itself.
    pub(crate) fn cancel_actor(&self, reason: &str) {
        self.send_control(&Msg::CancelActor { canceller: self.ends.me.clone(), reason: reason.to_owned() });
    }

    /// Asks the peer to show it is alive (it answers `Pong`).
    pub(crate) fn ping(&self, nonce: u64) {
        self.send_control(&Msg::Ping { nonce });
    }

    /// Queues a small control message that must not wait for the peer.
    fn send_control(&self, msg: &Msg) {
        if let Err(e) = self.sender.send_now(msg) {
            tracing::debug!(peer = %self.ends.peer, error = %e, msg = msg.name(), "cannot send");
        }
    }

    /// Takes one message from the peer; what is not part of an open call is
    /// returned for the reader to act on.
    ///
    /// # Errors
    ///
    /// The peer's [`Violation`] of the protocol.
    pub(crate) fn handle(&self, msg: Msg) -> std::result::Result<Option<Arrival>, Violation> {
        let (arrival, replies) = {
            let mut session = self.session();
            let arrival = session.handle(msg)?;
            let mut replies = Vec::new();
            while let Some(m) = session.poll_transmit() {
                replies.push(m);
            }
            (arrival, replies)
        };
        for m in &replies {
            self.send_control(m);
        }
        if matches!(arrival, Some(Arrival::CancelActorAck)) {
            self.cancel_acked.store(true, Ordering::SeqCst);
        }
        Ok(arrival)
    }

    /// Admits the peer's call `cid`: returns the handles its serving task
    /// uses, and the token that cancels that task.
    pub(crate) fn admit(
        &self,
        cid: CallId,
        kind: CallKind,
        window: u32,
        token: CancellationToken,
    ) -> (Arc<Shared>, Option<mpsc::UnboundedReceiver<Incoming>>) {
        let shared = Conn::new_shared(window);
        // Only a context's callee receives items.
        let (tx, rx) = split((kind == CallKind::Context).then(mpsc::unbounded_channel));
        let io = CallIo {
            ends: self.ends.clone(),
            shared: shared.clone(),
            items: tx,
            started: None,
            done: None,
            token: Some(token),
        };
        self.session().admit(cid, kind, window, io);
        (shared, rx)
    }

    /// Refuses the peer's call `cid` with `error`.
    pub(crate) fn refuse(&self, cid: CallId, error: RemoteError) {
        let msg = self.session().refuse(cid, error);
        self.send_control(&msg);
    }

    /// Who asked to cancel served call `cid`, if the peer did.
    pub(crate) fn canceller(&self, cid: CallId) -> Option<Uid> {
        self.session().canceller(cid).cloned()
    }

    /// A served call ended as `how`: sends the peer its last message. A reply
    /// too large for a frame becomes an error naming the limit, so the caller
    /// is never left waiting.
    pub(crate) async fn complete(&self, cid: CallId, func: &str, how: Completion) {
        let last = self.session().complete(cid, how);
        let Some(msg) = last else { return };
        // However this ends (sent, refused, or this task dropped), the call
        // then gives up its place under the session's call cap.
        let _queued = ReplyQueued(self);
        let size = reply_size(&msg);
        let Some(reserved) = self.results.reserve(size) else {
            // Dropped here, before waiting to send the error: the point is
            // not to hold it.
            drop(msg);
            self.refuse_result(cid, func, size).await;
            return;
        };
        let what = msg.name();
        let sent = self.sender.send(&msg).await;
        // Queued (or failed): its bytes no longer wait on this call.
        drop(msg);
        drop(reserved);
        match sent {
            Ok(()) => {}
            Err(ChannelError::Frame(e)) => {
                let mut error = RemoteError::new(
                    self.ends.me.clone(),
                    actor_transport::ErrorKind::Protocol,
                    "actor::FrameTooLarge",
                    format!("cannot send the {what} of `{func}`: {e}"),
                );
                error.causes.push(e.to_string());
                if let Err(e) = self.sender.send(&Msg::Error { cid, error: Box::new(error) }).await {
                    tracing::debug!(error = %e, "cannot send the reply");
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot send the reply"),
        }
    }

    /// Fails the caller's call `cid` in place of a result of `size` bytes
    /// that would have taken the results waiting for this peer past
    /// [`RESULT_BUDGET`]: the result is gone, the error names the limit.
    /// The error waits for room like any reply, holding its call's place
    /// under the session's call cap, so such errors cannot pile up either.
    async fn refuse_result(&self, cid: CallId, func: &str, size: usize) {
        let mib = |n: usize| n as f64 / (1024.0 * 1024.0);
        let error = RemoteError::new(
            self.ends.me.clone(),
            actor_transport::ErrorKind::Protocol,
            "actor::ResultsUnread",
            format!(
                "the result of `{func}` ({:.1} MiB) was dropped: {:.1} MiB of results already wait for the \
                 caller to read them, and at most {} MiB may (the per-connection result budget)",
                mib(size),
                mib(self.results.waiting()),
                RESULT_BUDGET / (1024 * 1024),
            ),
        );
        if let Err(e) = self.sender.send(&Msg::Error { cid, error: Box::new(error) }).await {
            tracing::debug!(error = %e, "cannot send the reply");
        }
    }

    /// Closes the connection to a peer that is gone or stopped reading:
    /// every open call ends with `reason` and what is queued for it is
    /// dropped at once rather than held until a write gives up.
    pub(crate) fn abort(&self, reason: &str) {
        self.session().close(reason);
        self.closed.cancel();
        self.sender.abort(reason);
    }

    /// Closes the connection: every open call ends with `reason`, and the
    /// channel is shut once what is queued is written.
    pub(crate) fn close(&self, reason: &str) {
        self.session().close(reason);
        self.closed.cancel();
        let sender = self.sender.clone();
        tokio::spawn(async move { sender.close().await });
    }
}

/// The two ends of a channel that only some calls need.
fn split<T, R>(pair: Option<(T, R)>) -> (Option<T>, Option<R>) {
    pair.map_or((None, None), |(t, r)| (Some(t), Some(r)))
}

/// The serving side's handle on a stream or context call.
#[doc(hidden)]
pub struct ServedIo {
    pub(crate) conn: Arc<Conn>,
    pub(crate) cid: CallId,
    pub(crate) shared: Arc<Shared>,
    pub(crate) items: Option<mpsc::UnboundedReceiver<Incoming>>,
}

/// Cancels our call if dropped while the call is still running: the caller
/// lost interest (tarpc's rule), so the callee's task is cancelled.
pub(crate) struct CallGuard {
    conn: Arc<Conn>,
    cid: CallId,
    #[cfg(feature = "otel")]
    _client: Option<crate::otel::ClientSpan>,
}

impl CallGuard {
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        // A no-op when the call has already ended.
        self.conn.abandon(self.cid);
    }
}
