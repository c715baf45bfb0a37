//! Portals: a caller's handle on another actor.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

/// One process of a child actor: its channel, and how the process ended.
/// A child that its nursery restarts has one per process it ran.
#[derive(Clone)]
pub(crate) struct Incarnation {
    pub conn: Arc<Conn>,
    /// The host it runs on, when an agent started it there.
    pub host: Option<String>,
    /// Cancelled once this process has been reaped.
    pub reaped: CancellationToken,
    /// Set just before `reaped`: how the process crashed or was lost
    /// ([`Error::ActorCrashed`], [`Error::ActorLost`]), or `None` if it ended
    /// as asked.
    pub crash: Arc<OnceLock<Option<Error>>>,
}

impl Incarnation {
    pub(crate) fn new(conn: Arc<Conn>, host: Option<String>) -> Self {
        Incarnation { conn, host, reaped: CancellationToken::new(), crash: Arc::new(OnceLock::new()) }
    }

    /// What to report for a call that lost its channel to this process:
    /// once it is reaped (waiting at most `bound`), its crash, named as the
    /// nursery names it; otherwise the disconnection itself.
    async fn explain(&self, lost: Error, bound: Duration) -> Error {
        if tokio::time::timeout(bound, self.reaped.cancelled()).await.is_err() {
            return lost;
        }
        match self.crash.get() {
            Some(Some(e)) => e.clone(),
            _ => lost,
        }
    }
}

/// How a nursery controls one of its children, across its restarts.
#[derive(Clone)]
pub(crate) struct ChildControl {
    /// Cancel this child (and only it), for good: no restart follows.
    pub cancel: CancellationToken,
    /// Cancelled once the child's last process has been reaped and no
    /// restart will follow.
    pub done: CancellationToken,
    /// The process serving now; its supervisor swaps in each restart, so
    /// portals reach the new one for new calls (and retries can wait for it).
    pub current: Arc<watch::Sender<Incarnation>>,
    /// How many times the nursery restarted it.
    pub restarts: Arc<AtomicU32>,
}

impl ChildControl {
    pub(crate) fn new(cancel: CancellationToken, first: Incarnation) -> Self {
        ChildControl {
            cancel,
            done: CancellationToken::new(),
            current: Arc::new(watch::Sender::new(first)),
            restarts: Arc::new(AtomicU32::new(0)),
        }
    }

    pub(crate) fn current(&self) -> Incarnation {
        self.current.borrow().clone()
    }

    pub(crate) fn replace(&self, next: Incarnation) {
        self.current.send_replace(next);
    }

    /// Waits until a process other than `dead` serves the child, or the
    /// child is over; returns whether a new one serves.
    pub(crate) async fn next_after(&self, dead: &Incarnation) -> bool {
        let mut rx = self.current.subscribe();
        tokio::select! {
            r = rx.wait_for(|now| !Arc::ptr_eq(&now.conn, &dead.conn)) => r.is_ok(),
            _ = self.done.cancelled() => false,
        }
    }
}

/// Where a portal's calls go.
#[derive(Clone)]
enum Target {
    /// A peer found by name, or the arbiter: one channel for good.
    Peer(Arc<Conn>),
    /// A child of one of our nurseries: whichever process serves it now.
    Child(ChildControl),
}

/// A handle on another actor: call its functions, or cancel it.
///
/// Cheap to clone; clones share one channel, over which any number of calls may
/// run concurrently. A portal to a child that its nursery restarts (see
/// [`Strategy`](crate::Strategy)) follows the child: each new call goes to the
/// process serving it at that moment.
#[derive(Clone)]
pub struct Portal {
    target: Target,
}

impl Portal {
    pub(crate) fn peer(conn: Arc<Conn>) -> Self {
        Portal { target: Target::Peer(conn) }
    }

    pub(crate) fn child(control: ChildControl) -> Self {
        Portal { target: Target::Child(control) }
    }

    /// The channel calls go to now, and the child process behind it if any.
    fn now(&self) -> (Arc<Conn>, Option<Incarnation>) {
        match &self.target {
            Target::Peer(conn) => (conn.clone(), None),
            Target::Child(c) => {
                let inc = c.current();
                (inc.conn.clone(), Some(inc))
            }
        }
    }

    fn conn(&self) -> Arc<Conn> {
        self.now().0
    }

    /// The actor this portal leads to now. A restarted child keeps its name
    /// but each of its processes has a uid of its own.
    pub fn uid(&self) -> Uid {
        self.conn().peer().clone()
    }

    /// The host this actor runs on, for a child of one of our nurseries
    /// spawned on another host through its agent
    /// ([`ActorBuilder::on_host`](crate::ActorBuilder::on_host)): the host's
    /// name as its agent gives it. `None` for a child on this host and for
    /// actors found by name.
    pub fn host(&self) -> Option<String> {
        match &self.target {
            Target::Peer(_) => None,
            Target::Child(c) => c.current().host,
        }
    }

    /// How many times this actor's nursery has restarted it (0 for actors
    /// not spawned by one of our nurseries).
    pub fn restarts(&self) -> u32 {
        match &self.target {
            Target::Peer(_) => 0,
            Target::Child(c) => c.restarts.load(Ordering::SeqCst),
        }
    }

    /// Runs `f(args)` in the remote actor and returns its result.
    ///
    /// Dropping the future before it completes cancels the remote call.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the function fails, panics, is not registered or
    /// not exposed there, or its arguments do not decode (see
    /// [`RemoteError::kind`](actor_transport::RemoteError)); if the actor goes
    /// away mid-call and is a child of one of our nurseries that crashed, how
    /// it ended (waiting, at most the kill grace period, for its nursery to
    /// reap it): [`Error::ActorCrashed`] naming its exit status or signal (and
    /// its host, for a child on another host), or [`Error::ActorLost`] when
    /// its host's agent can no longer be reached; else
    /// [`Error::Disconnected`]; [`Error::Codec`] if the result does not decode
    /// as `F::Output`.
    pub async fn run<F: RemoteFn>(&self, _f: F, args: F::Args) -> Result<F::Output> {
        self.run_by_name(F::NAME, &args).await
    }

    /// Runs `f(args)` in the remote actor like [`Portal::run`], giving it
    /// `timeout`. The deadline travels with the call: the callee cancels the
    /// function when it passes, and calls the function makes meanwhile
    /// inherit the time left (see [`remaining_time`](crate::remaining_time)).
    /// Inside a call that has a deadline already, the earlier one applies.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the function and the actor once the
    /// deadline has passed (the remote call is cancelled); otherwise as
    /// [`Portal::run`].
    pub async fn run_with_timeout<F: RemoteFn>(
        &self,
        f: F,
        args: F::Args,
        timeout: Duration,
    ) -> Result<F::Output> {
        let at = tokio::time::Instant::now() + timeout;
        let call = crate::deadline::within(at, self.run(f, args));
        // The effective deadline may be an outer, earlier one.
        let at = crate::deadline::current().map_or(at, |outer| outer.min(at));
        match tokio::time::timeout_at(at, call).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: format!("`{}` in actor `{}`", F::NAME, self.uid()),
                after: timeout,
            }),
        }
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
        let (value, from) = self.call_encoded(name, args).await?;
        decode(&value, || format!("result of `{name}` from `{}`", from.peer()))
    }

    /// Calls `name` with encoded `args` in the process serving now; returns
    /// the encoded result and the connection that answered (whose peer names
    /// who answered, when a result does not decode).
    pub(crate) async fn call_encoded(&self, name: &str, args: Bytes) -> Result<(Bytes, Arc<Conn>)> {
        self.call_keyed(name, args, None).await
    }

    /// [`Portal::call_encoded`] for an attempt of the durable job `key`,
    /// which travels with the call.
    pub(crate) async fn call_keyed(
        &self,
        name: &str,
        args: Bytes,
        key: Option<String>,
    ) -> Result<(Bytes, Arc<Conn>)> {
        // The process the call goes to: if it dies, the call reports how,
        // even when a restart has already swapped in the next one.
        let (conn, process) = self.now();
        let outcome = match conn.open_keyed(name, CallKind::Single, args, key).await {
            Ok(opened) => opened.result(name).await,
            Err(e) => Err(e),
        };
        match outcome {
            Err(lost @ Error::Disconnected { .. }) => Err(explain(process, lost).await),
            r => Ok((r?, conn)),
        }
    }

    /// For a child whose process has died: waits (at most `bound`) until its
    /// nursery has started the next one, or the child is over.
    pub(crate) async fn await_restart(&self, bound: Duration) {
        let Target::Child(c) = &self.target else { return };
        let now = c.current();
        if !now.conn.is_closed() {
            return;
        }
        let _ = tokio::time::timeout(bound, c.next_after(&now)).await;
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
        let conn = self.conn();
        let opened = conn.open(F::NAME, CallKind::Stream, args).await?;
        let items = opened.items.ok_or_else(|| Error::msg("internal: a stream call without items"))?;
        Ok(StreamReceiver::new(conn, opened.cid, opened.shared, items, Some(opened.guard)))
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
        let opened = self.conn().open(F::NAME, CallKind::Context, args).await?;
        let started = opened.started.ok_or_else(|| Error::msg("internal: a context call without started"))?;
        let first = match started.await {
            Ok(Ok(bytes)) => decode(&bytes, || format!("first value of `{}`", F::NAME))?,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Error::Disconnected { peer: self.uid(), reason: "the call was dropped".into() });
            }
        };
        let handle =
            ContextHandle::new(F::NAME, opened.cid, opened.shared, opened.items, opened.done, opened.guard);
        Ok((handle, first))
    }

    /// Opens remote stream `f(args)` like [`Portal::open_stream_from`], giving
    /// the stream `timeout`: the deadline travels with the call, so the
    /// producer is cancelled when it passes (calls it makes inherit the time
    /// left), and the stream then ends with that cancellation.
    ///
    /// # Errors
    ///
    /// As [`Portal::open_stream_from`]; the producer's cancellation arrives on
    /// the stream, after the items it sent in time.
    pub async fn open_stream_from_within<F: RemoteStreamFn>(
        &self,
        f: F,
        args: F::Args,
        timeout: Duration,
    ) -> Result<StreamReceiver<F::Item>> {
        let at = tokio::time::Instant::now() + timeout;
        crate::deadline::within(at, self.open_stream_from(f, args)).await
    }

    /// Opens remote context `f(args)` like [`Portal::open_context`], waiting
    /// at most `timeout` for it to call `started`. The deadline travels with
    /// the call and bounds the remote task's whole run (its calls inherit
    /// the time left); a context that has not started in time is cancelled.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the function and the actor if it did not
    /// start in time; otherwise as [`Portal::open_context`].
    pub async fn open_context_within<F: RemoteContextFn>(
        &self,
        f: F,
        args: F::Args,
        timeout: Duration,
    ) -> Result<(ContextHandle<F::ToCallee, F::ToCaller, F::Output>, F::Started)> {
        let at = tokio::time::Instant::now() + timeout;
        let open = crate::deadline::within(at, self.open_context(f, args));
        // The effective deadline may be an outer, earlier one.
        let at = crate::deadline::current().map_or(at, |outer| outer.min(at));
        // On expiry the dropped call is abandoned: its guard cancels it remotely.
        tokio::time::timeout_at(at, open).await.unwrap_or_else(|_| {
            Err(Error::Timeout {
                what: format!("`{}` in actor `{}` to start", F::NAME, self.uid()),
                after: timeout,
            })
        })
    }

    /// Asks the remote actor to describe itself: pid, host, parent, start
    /// time, calls in flight, children (the built-in
    /// [`INTROSPECT_FN`](crate::INTROSPECT_FN), which every actor serves to
    /// any peer of its tree, whatever it exposes).
    ///
    /// # Errors
    ///
    /// As [`Portal::run`].
    pub async fn introspect(&self) -> Result<crate::Introspection> {
        self.run_by_name(crate::INTROSPECT_FN, &()).await
    }

    /// Cancels the remote actor and waits until it is gone.
    ///
    /// For an actor spawned by one of our nurseries this is the orderly
    /// sequence: a cancel request, then after the grace period SIGTERM, then
    /// SIGKILL; it returns once the process is reaped. Any other actor of the
    /// tree (found by name, say) is asked to cancel itself: it cancels its
    /// calls and its children in order, answers once it has wound down, and
    /// exits; its parent records a requested cancel, not a crash. This
    /// returns once its channel has closed.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if it has not gone within the grace
    /// periods; [`Error::Disconnected`] if the channel broke before it
    /// answered.
    pub async fn cancel_actor(&self) -> Result<()> {
        if let Target::Child(child) = &self.target {
            child.cancel.cancel();
            child.done.cancelled().await;
            return Ok(());
        }
        let conn = self.conn();
        let config = &crate::local::current()?.config;
        // Its own children may need their whole teardown before it can answer.
        let bound = config.teardown_bound() * 2;
        let timeout = || Error::Timeout { what: format!("actor `{}` to cancel", self.uid()), after: bound };
        let args = encode_args(&("cancelled through a portal",), || "the cancel request".into())?;
        let answered = tokio::time::timeout(bound, conn.call(crate::builtin::CANCEL_FN, args));
        match answered.await {
            Ok(Ok(_)) => {}
            // It may close the channel as it exits, before its answer is read.
            Ok(Err(Error::Disconnected { .. })) if conn.is_closed() => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(timeout()),
        }
        tokio::time::timeout(config.kill_grace, conn.closed()).await.map_err(|_| timeout())
    }
}

/// Turns a lost channel to one of our child processes into its crash, when it
/// crashed. The supervisor reaps a dead child at once; the bound only matters
/// for a channel that broke under a live process.
async fn explain(process: Option<Incarnation>, lost: Error) -> Error {
    match (process, crate::local::current()) {
        (Some(p), Ok(actor)) => p.explain(lost, actor.config.kill_grace).await,
        _ => lost,
    }
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal").field("actor", &self.uid()).finish()
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
    /// In the nursery's body this is deterministic even when the actor fails:
    /// the body awaiting it gets the actor's error (the nursery fills the
    /// result before it cancels the body), and when the body returns that
    /// error, the nursery's error holds it once, not twice.
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
