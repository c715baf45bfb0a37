//! Portals: a caller's handle on another actor.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use actor_transport::{CallKind, Uid};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::context::ContextHandle;
use crate::error::{Error, Result};
use crate::registry::{RemoteContextFn, RemoteFn, RemoteStreamFn, decode, encode_args};
use crate::stream::StreamReceiver;

/// How a nursery controls one of its children.
#[derive(Clone)]
pub(crate) struct ChildControl {
    /// Cancel this child (and only it).
    pub cancel: CancellationToken,
    /// Cancelled once the child's process has been reaped.
    pub reaped: CancellationToken,
}

/// A handle on another actor: call its functions, or cancel it.
///
/// Cheap to clone; clones share one channel, over which any number of calls may
/// run concurrently.
#[derive(Clone)]
pub struct Portal {
    conn: Arc<Conn>,
    child: Option<ChildControl>,
}

impl Portal {
    pub(crate) fn new(conn: Arc<Conn>, child: Option<ChildControl>) -> Self {
        Portal { conn, child }
    }

    /// The actor this portal leads to.
    pub fn uid(&self) -> &Uid {
        self.conn.peer()
    }

    /// Runs `f(args)` in the remote actor and returns its result.
    ///
    /// Dropping the future before it completes cancels the remote call.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the function fails, panics, is not registered or
    /// not exposed there, or its arguments do not decode (see
    /// [`RemoteError::kind`](actor_transport::RemoteError)); [`Error::Disconnected`]
    /// if the actor goes away mid-call; [`Error::Codec`] if the result does not
    /// decode as `F::Output`.
    pub async fn run<F: RemoteFn>(&self, _f: F, args: F::Args) -> Result<F::Output> {
        self.run_by_name(F::NAME, &args).await
    }

    /// Runs the function registered as `name` with `args`, decoding its result
    /// as `T`, without compile-time checks. For calling functions this binary
    /// does not link, such as those of programs written in other languages.
    ///
    /// # Errors
    ///
    /// As [`Portal::run`]; a wrong name or argument shape comes back as
    /// [`Error::Remote`] of kind `UnknownFunction` or `BadArguments`.
    pub async fn run_by_name<A, T>(&self, name: &str, args: &A) -> Result<T>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let args = encode_args(args, || format!("arguments of `{name}`"))?;
        let value = self.conn.call(name, args).await?;
        decode(&value, || format!("result of `{name}` from `{}`", self.uid()))
    }

    /// Starts remote stream function `f(args)` and returns the stream of its
    /// items. Read it with `while let Some(item) = stream.recv().await` (or as a
    /// [`futures::Stream`]); dropping it early cancels the producer, and the
    /// actor goes on serving other calls.
    ///
    /// # Errors
    ///
    /// As [`Portal::run`] for starting the call; errors of the producer arrive
    /// on the stream, after the items it sent before failing.
    pub async fn open_stream_from<F: RemoteStreamFn>(
        &self,
        _f: F,
        args: F::Args,
    ) -> Result<StreamReceiver<F::Item>> {
        let args = encode_args(&args, || format!("arguments of `{}`", F::NAME))?;
        let opened = self.conn.open(F::NAME, CallKind::Stream, args).await?;
        let items = opened.items.ok_or_else(|| Error::msg("internal: a stream call without items"))?;
        Ok(StreamReceiver::new(self.conn.clone(), opened.cid, opened.shared, items, Some(opened.guard)))
    }

    /// Starts remote context function `f(args)` and waits until it calls
    /// `started`; returns the caller's handle and that first value.
    ///
    /// # Errors
    ///
    /// As [`Portal::run`]; also the remote task's error if it fails (or
    /// returns) before calling `started`.
    pub async fn open_context<F: RemoteContextFn>(
        &self,
        _f: F,
        args: F::Args,
    ) -> Result<(ContextHandle<F::ToCallee, F::ToCaller, F::Output>, F::Started)> {
        let args = encode_args(&args, || format!("arguments of `{}`", F::NAME))?;
        let opened = self.conn.open(F::NAME, CallKind::Context, args).await?;
        let started = opened.started.ok_or_else(|| Error::msg("internal: a context call without started"))?;
        let first = match started.await {
            Ok(Ok(bytes)) => decode(&bytes, || format!("first value of `{}`", F::NAME))?,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Error::Disconnected {
                    peer: self.uid().clone(),
                    reason: "the call was dropped".into(),
                });
            }
        };
        let handle =
            ContextHandle::new(F::NAME, opened.cid, opened.shared, opened.items, opened.done, opened.guard);
        Ok((handle, first))
    }

    /// Cancels the remote actor and waits until it is gone.
    ///
    /// For an actor spawned by one of our nurseries this is the orderly
    /// sequence: a cancel request, then after the grace period SIGTERM, then
    /// SIGKILL; it returns once the process is reaped. For any other actor it
    /// sends the cancel request and waits (up to the cancel grace period) for
    /// the channel to close.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if an actor that is not our child is still connected
    /// after the grace period.
    pub async fn cancel_actor(&self) -> Result<()> {
        match &self.child {
            Some(child) => {
                child.cancel.cancel();
                child.reaped.cancelled().await;
                Ok(())
            }
            None => {
                self.conn.cancel_actor("cancelled through a portal");
                let grace = crate::local::current()?.config.cancel_grace;
                tokio::time::timeout(grace, self.conn.closed()).await.map_err(|_| Error::Timeout {
                    what: format!("actor `{}` to cancel", self.uid()),
                    after: grace,
                })
            }
        }
    }
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal").field("actor", self.uid()).finish()
    }
}

/// Where a `run_in_actor` child's outcome lands.
pub(crate) type ResultSlot = watch::Sender<Option<Result<Bytes>>>;

/// A [`Portal`] to an actor started with
/// [`Nursery::run_in_actor`](crate::Nursery::run_in_actor), which can also wait
/// for that actor's main function's result. Dereferences to [`Portal`].
pub struct ResultPortal<T> {
    portal: Portal,
    slot: watch::Receiver<Option<Result<Bytes>>>,
    _output: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> ResultPortal<T> {
    pub(crate) fn new(portal: Portal, slot: &ResultSlot) -> Self {
        ResultPortal { portal, slot: slot.subscribe(), _output: PhantomData }
    }

    /// Waits for the actor's main function to finish and returns its result.
    /// May be called more than once.
    ///
    /// # Errors
    ///
    /// The main function's error as [`Error::Remote`]; [`Error::ActorCrashed`]
    /// if the process died first; [`Error::Cancelled`] if the actor was
    /// cancelled before it finished; [`Error::Codec`] if the value does not
    /// decode as `T`.
    pub async fn result(&self) -> Result<T> {
        let mut slot = self.slot.clone();
        let outcome = match slot.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(bytes)) => decode(&bytes, || format!("result of actor `{}`", self.portal.uid())),
            Some(Err(e)) => Err(e),
            None => Err(Error::Cancelled { canceller: None, reason: "the nursery was dropped".into() }),
        }
    }

    /// The plain portal.
    pub fn portal(&self) -> &Portal {
        &self.portal
    }
}

impl<T> Deref for ResultPortal<T> {
    type Target = Portal;
    fn deref(&self) -> &Portal {
        &self.portal
    }
}
