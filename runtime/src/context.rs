//! Contexts: a long-lived remote task with a first value, a bidirectional
//! stream, and a final result (tractor's `open_context`).

use std::marker::PhantomData;
use std::sync::Arc;

use actor_transport::CallId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::conn::{CallGuard, Conn, Done, Incoming, ServedIo, Shared};
use crate::error::{Error, Result};
use crate::registry::{decode, encode};
use crate::stream::{StreamReceiver, StreamSender, halves};

/// The remote task's side of a context: its last parameter.
///
/// `S` is the first value, `Out` what it sends to the caller, `In` what it
/// receives from the caller. Call [`Context::started`] first; then
/// [`Context::stream`] gives the two halves of the bidirectional stream.
pub struct Context<S, Out, In> {
    conn: Arc<Conn>,
    cid: CallId,
    shared: Arc<Shared>,
    items: Option<mpsc::UnboundedReceiver<Incoming>>,
    started: bool,
    _types: PhantomData<fn(S, Out) -> In>,
}

impl<S: Serialize, Out: Serialize + 'static, In: DeserializeOwned + 'static> Context<S, Out, In> {
    pub(crate) fn new(io: ServedIo) -> Self {
        Context {
            conn: io.conn,
            cid: io.cid,
            shared: io.shared,
            items: io.items,
            started: false,
            _types: PhantomData,
        }
    }

    /// Hands the caller its first value; `open_context` returns with it.
    ///
    /// # Errors
    ///
    /// [`Error::msg`]-style error if called twice; a channel error if the
    /// caller is gone.
    pub async fn started(&mut self, first: S) -> Result<()> {
        if self.started {
            return Err(Error::msg("`started` was already called on this context"));
        }
        let value = encode(&first, || "the context's first value".into())?;
        self.conn.send_started(self.cid, &self.shared, value).await?;
        self.started = true;
        Ok(())
    }

    /// The bidirectional stream: a sender to the caller and a receiver of what
    /// the caller sends. Use them from different tasks if you like.
    ///
    /// # Errors
    ///
    /// An error if `started` was not called yet, or the stream was already
    /// taken.
    pub fn stream(&mut self) -> Result<(StreamSender<Out>, StreamReceiver<In>)> {
        if !self.started {
            return Err(Error::msg("call `started` before opening the context's stream"));
        }
        let items = self.items.take().ok_or_else(|| Error::msg("the context's stream was already taken"))?;
        Ok(halves(&self.conn, self.cid, &self.shared, items))
    }
}

/// The caller's side of a context opened with
/// [`Portal::open_context`](crate::Portal::open_context).
///
/// `Tx` is what the caller sends, `Rx` what it receives, `R` the remote task's
/// result. Dropping the handle before the task ends cancels it.
pub struct ContextHandle<Tx, Rx, R> {
    func: &'static str,
    cid: CallId,
    shared: Arc<Shared>,
    items: Option<mpsc::UnboundedReceiver<Incoming>>,
    done: Ending,
    guard: CallGuard,
    _types: PhantomData<fn(Tx) -> (Rx, R)>,
}

/// How the remote task ended: still to be heard, or heard by `cancel`.
enum Ending {
    Pending(oneshot::Receiver<Done>),
    Heard(std::result::Result<Done, oneshot::error::RecvError>),
}

impl Ending {
    async fn wait(&mut self) -> &std::result::Result<Done, oneshot::error::RecvError> {
        if let Ending::Pending(rx) = self {
            *self = Ending::Heard(rx.await);
        }
        match self {
            Ending::Heard(done) => done,
            Ending::Pending(_) => unreachable!("set just above"),
        }
    }
}

impl<Tx: Serialize + 'static, Rx: DeserializeOwned + 'static, R: DeserializeOwned> ContextHandle<Tx, Rx, R> {
    pub(crate) fn new(
        func: &'static str,
        cid: CallId,
        shared: Arc<Shared>,
        items: Option<mpsc::UnboundedReceiver<Incoming>>,
        done: oneshot::Receiver<Done>,
        guard: CallGuard,
    ) -> Self {
        ContextHandle { func, cid, shared, items, done: Ending::Pending(done), guard, _types: PhantomData }
    }

    fn conn(&self) -> &Arc<Conn> {
        self.guard.conn()
    }

    /// The bidirectional stream: a sender to the remote task and a receiver of
    /// what it sends. An error on either side ends both halves with that error.
    ///
    /// # Errors
    ///
    /// An error if the stream was already taken.
    pub fn stream(&mut self) -> Result<(StreamSender<Tx>, StreamReceiver<Rx>)> {
        let items = self.items.take().ok_or_else(|| Error::msg("the context's stream was already taken"))?;
        Ok(halves(self.guard.conn(), self.cid, &self.shared, items))
    }

    /// Waits for the remote task to finish and returns its result. After
    /// [`ContextHandle::cancel`] it tells how the task ended: its value if it
    /// returned before the cancel took effect, or the cancellation.
    ///
    /// # Errors
    ///
    /// The remote task's error ([`Error::Remote`]); its cancellation (an
    /// error for which `is_cancelled()` is true, naming the canceller: this
    /// actor after [`ContextHandle::cancel`], or whoever cancelled the remote
    /// actor); or a broken channel.
    pub async fn result(mut self) -> Result<R> {
        let done = std::mem::replace(&mut self.done, Ending::Heard(Ok(Done::CancelAcked)));
        let done = match done {
            Ending::Pending(rx) => rx.await,
            Ending::Heard(done) => done,
        };
        let bytes = self.conn().outcome(self.func, done)?;
        decode(&bytes, || format!("result of `{}`", self.func))
    }

    /// Cancels the remote task and waits until it has stopped; then
    /// [`ContextHandle::result`] tells how it ended. A cancellation the caller
    /// asked for is not an error.
    ///
    /// # Errors
    ///
    /// The remote task's own error if it failed before the cancellation took
    /// effect; [`Error::Timeout`] if it did not stop within the cancel grace
    /// period (the call is then abandoned).
    pub async fn cancel(&mut self) -> Result<()> {
        self.conn().request_cancel(self.cid);
        let grace = crate::local::current().map(|a| a.config.cancel_grace)?;
        match tokio::time::timeout(grace, self.done.wait()).await {
            Ok(Ok(Done::Failed(e))) if e.kind != actor_transport::ErrorKind::Cancelled => {
                Err(Error::Remote(e.clone()))
            }
            Ok(_) => Ok(()),
            Err(_) => {
                self.conn().abandon(self.cid);
                Err(Error::Timeout { what: format!("context `{}` to cancel", self.func), after: grace })
            }
        }
    }
}
