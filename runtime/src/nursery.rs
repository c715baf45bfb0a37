//! Actor nurseries: spawn actors, supervise them (one-cancels-all, or
//! restarting them; see [`Strategy`]), and never return while one of them is
//! alive.

mod launch;
mod process;
mod supervisor;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::HostSelector;
use crate::error::{Error, Result};
use crate::local::{self, Actor};
use crate::portal::{ChildControl, Portal, ResultPortal, ResultSlot};
use crate::registry::{RemoteFn, encode_args};
use crate::scope;
use crate::supervise::{Intensity, Restart, Strategy, Supervision};
use launch::{Spec, launch};
use supervisor::{RestartOrder, Supervisor};

/// Opens an actor nursery, runs `body` with it, and returns once every actor
/// spawned in it has been reaped.
///
/// Supervision is one-cancels-all: when any actor fails (its main function
/// errors, or its process dies), `body` is cancelled, every other actor is
/// cancelled, and the failures are returned: one as itself, several as
/// [`Error::Group`]. When `body` returns `Ok`, the nursery first waits for the
/// results of every [`Nursery::run_in_actor`] actor, then cancels the daemons
/// started with [`Nursery::start_actor`] (they live as long as the block).
///
/// Every failure that happens before its actor is confirmed cancelled is
/// kept, including those raised while the nursery is cancelling (an actor
/// that crashes, or relays its own child's failure, during teardown);
/// actors that were merely cancelled are not errors. A body awaiting a
/// failed actor's [`ResultPortal::result`], or a call into an actor whose
/// process died, gets that failure before the body is cancelled; an error
/// the body returns that is the same failure is reported once.
///
/// If the returned future is dropped (a timeout around it, say), every actor
/// is cancelled in the background and `actor::run` waits for them before the
/// process exits.
///
/// For nurseries that restart their actors instead, see
/// [`open_nursery_with`].
///
/// # Errors
///
/// The actors' errors as above; `body`'s own error (after cancelling every
/// actor); [`Error::Cancelled`] if this actor is cancelled meanwhile;
/// [`Error::NotRunning`] outside `actor::run`.
pub async fn open_nursery<F, Fut, R>(body: F) -> Result<R>
where
    F: FnOnce(Nursery) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    open_nursery_with(Strategy::OneCancelsAll, body).await
}

/// Opens an actor nursery supervised as `supervision` says (a [`Strategy`],
/// or a [`Supervision`] built from one), runs `body` with it, and returns once
/// every actor spawned in it has been reaped.
///
/// With [`Strategy::OneCancelsAll`] this is [`open_nursery`]. With
/// [`Strategy::OneForOne`] or [`Strategy::RestForOne`], an actor that ends is
/// started again as its [`Restart`] kind says (set per actor with
/// [`ActorBuilder::restart`]; daemons default to [`Restart::Permanent`],
/// `run_in_actor` actors to [`Restart::Transient`]), under the same name,
/// after the [`Backoff`](crate::Backoff) delay; each restart is logged at
/// INFO. Portals from this nursery follow the restarted actor: new calls go
/// to its new process, while calls in flight when a process died fail with
/// [`Error::ActorCrashed`] naming it and its exit status or signal. An actor
/// that is not restarted (temporary, or transient after a normal end) ends
/// alone: its outcome goes to its [`ResultPortal::result`], a failure is
/// logged, and its siblings are not disturbed. When `body` returns `Ok`, the
/// nursery waits for the results of its non-permanent `run_in_actor` actors,
/// then cancels the rest.
///
/// # Errors
///
/// As [`open_nursery`]; with a restarting strategy, also
/// [`Error::RestartIntensity`] once the actors need more restarts than the
/// intensity allows: the nursery then cancels its body and every actor
/// (within the usual grace periods, even while a restart's backoff is
/// pending) and returns it, holding every restart's cause in order.
pub async fn open_nursery_with<S, F, Fut, R>(supervision: S, body: F) -> Result<R>
where
    S: Into<Supervision>,
    F: FnOnce(Nursery) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    let supervision = supervision.into();
    let actor = local::current()?;
    // Inside a served call the nursery answers to that call's token (a child
    // of the actor's), and tells the call it is open, so that a cancel waits
    // for this nursery to reap its actors and report their failures.
    let _open = scope::NurseryOpen::enter();
    let cancel = scope::call_token().unwrap_or_else(|| actor.token().clone());
    let inner = Arc::new(Inner {
        kids: cancel.child_token(),
        cancel,
        failed: CancellationToken::new(),
        errors: Mutex::new(Vec::new()),
        children: Mutex::new(Vec::new()),
        supervisors: TaskTracker::new(),
        actor,
        supervision,
        intensity: Mutex::new(Intensity::default()),
        restarting: Arc::new(tokio::sync::Mutex::new(())),
    });
    let _cancel_on_drop = inner.kids.clone().drop_guard();
    let nursery = Nursery { inner: inner.clone() };
    // Biased toward the body: a failure wakes the body's waiters on that
    // child (its result, calls that lost the channel to it) before it fires
    // `failed`, so a body awaiting them returns the child's error on this very
    // poll rather than being cancelled with it pending.
    let outcome = tokio::select! {
        biased;
        r = body(nursery) => Some(r),
        _ = inner.failed.cancelled() => None,
        _ = inner.cancel.cancelled() => None,
    };
    if let Some(Ok(_)) = &outcome {
        tokio::select! {
            _ = inner.all_results() => {}
            _ = inner.failed.cancelled() => {}
            _ = inner.cancel.cancelled() => {}
        }
    }
    inner.kids.cancel();
    inner.supervisors.close();
    inner.supervisors.wait().await;

    let errors = std::mem::take(&mut *inner.errors());
    match outcome {
        Some(Ok(value)) if errors.is_empty() => Ok(value),
        Some(Err(e)) if errors.is_empty() => Err(e),
        Some(Err(e)) if !errors.iter().any(|x| same_failure(x, &e)) => {
            let mut all = vec![e];
            all.extend(errors);
            Err(Error::Group(all))
        }
        None if errors.is_empty() => {
            let (canceller, reason) = match inner.actor.token().is_cancelled() {
                true => inner.actor.cancel_reason(),
                false => (None, "the call running this nursery was cancelled".into()),
            };
            Err(Error::Cancelled { canceller, reason })
        }
        _ => Err(one_or_group(errors)),
    }
}

fn one_or_group(mut errors: Vec<Error>) -> Error {
    if errors.len() == 1 { errors.remove(0) } else { Error::Group(errors) }
}

/// Whether `a` and `b` report the same failure (a body that re-raised what
/// `result()` gave it).
fn same_failure(a: &Error, b: &Error) -> bool {
    match (a, b) {
        (Error::Remote(x), Error::Remote(y)) => x == y,
        (
            Error::ActorCrashed { actor: x, .. } | Error::ActorLost { actor: x, .. },
            Error::ActorCrashed { actor: y, .. } | Error::ActorLost { actor: y, .. },
        ) => x == y,
        // Losing the channel to an actor that crashed is the crash, seen sideways.
        (
            Error::ActorCrashed { actor, .. } | Error::ActorLost { actor, .. },
            Error::Disconnected { peer, .. },
        ) => actor == peer,
        _ => false,
    }
}

struct Inner {
    actor: Arc<Actor>,
    /// Cancels the whole nursery: the token of the served call it runs in,
    /// or the actor's.
    cancel: CancellationToken,
    /// Cancels every child; a child of `cancel`.
    kids: CancellationToken,
    /// Fired by the first failure: cancels the body.
    failed: CancellationToken,
    errors: Mutex<Vec<Error>>,
    children: Mutex<Vec<Child>>,
    supervisors: TaskTracker,
    supervision: Supervision,
    /// The restarts made within the intensity period, with their causes.
    intensity: Mutex<Intensity>,
    /// Held through each restart, so rest-for-one restarts do not interleave.
    restarting: Arc<tokio::sync::Mutex<()>>,
}

/// One actor of the nursery, in start order.
struct Child {
    name: String,
    control: ChildControl,
    result: Option<watch::Receiver<Option<Result<Bytes>>>>,
    restart: Restart,
    /// Where a rest-for-one restart of an earlier sibling reaches its supervisor.
    orders: mpsc::UnboundedSender<RestartOrder>,
}

impl Inner {
    fn errors(&self) -> MutexGuard<'_, Vec<Error>> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn children(&self) -> MutexGuard<'_, Vec<Child>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn intensity(&self) -> MutexGuard<'_, Intensity> {
        self.intensity.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, e: Error) {
        tracing::debug!(error = %e, "actor failed; cancelling the nursery");
        self.errors().push(e);
        self.failed.cancel();
        self.kids.cancel();
    }

    /// Waits for the results of the `run_in_actor` actors, except those
    /// restarted whatever they return (they run until cancelled).
    async fn all_results(&self) {
        let restarting = self.supervision.strategy != Strategy::OneCancelsAll;
        let slots: Vec<_> = self
            .children()
            .iter()
            .filter(|c| !(restarting && c.restart == Restart::Permanent))
            .filter_map(|c| c.result.clone())
            .collect();
        for mut slot in slots {
            // Err means the supervisor is gone, which also means it is done.
            let _ = slot.wait_for(Option::is_some).await;
        }
    }
}

/// A handle on an open nursery, passed to the body of [`open_nursery`].
/// Cheap to clone; usable from any task while the nursery is open.
#[derive(Clone)]
pub struct Nursery {
    inner: Arc<Inner>,
}

impl Nursery {
    /// Spawns actor `name` running `f(args)` as its main function; the actor
    /// exits when it returns. Await the result with [`ResultPortal::result`];
    /// the nursery waits for it in any case.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] if `name` is empty, longer than 64 bytes, or
    /// holds `#`, whitespace or control characters; [`Error::Spawn`] if the
    /// process cannot start or does not connect back in time (on another
    /// host: also if no agent matches, or the agent refuses);
    /// [`Error::Cancelled`] if the nursery is being cancelled; [`Error::Codec`]
    /// if `args` cannot be encoded.
    pub async fn run_in_actor<F: RemoteFn>(
        &self,
        name: impl Into<String>,
        f: F,
        args: F::Args,
    ) -> Result<ResultPortal<F::Output>> {
        self.actor(name).run(f, args).await
    }

    /// Spawns daemon actor `name`, which serves calls until it is cancelled
    /// (by [`Portal::cancel_actor`], [`Nursery::cancel`], a failure, or the end
    /// of the nursery block).
    ///
    /// # Errors
    ///
    /// As [`Nursery::run_in_actor`].
    pub async fn start_actor(&self, name: impl Into<String>) -> Result<Portal> {
        self.actor(name).start().await
    }

    /// A builder for an actor with options: exposed functions, actor-local
    /// state, environment.
    pub fn actor(&self, name: impl Into<String>) -> ActorBuilder<'_> {
        ActorBuilder {
            nursery: self,
            name: name.into(),
            expose: None,
            state: None,
            env: Vec::new(),
            restart: None,
            host: None,
            program: None,
        }
    }

    /// How many times each actor of this nursery has been restarted, by name,
    /// in start order.
    pub fn restarts(&self) -> Vec<(String, u32)> {
        self.inner
            .children()
            .iter()
            .map(|c| (c.name.clone(), c.control.restarts.load(Ordering::SeqCst)))
            .collect()
    }

    /// The nursery's supervision settings.
    pub fn supervision(&self) -> &Supervision {
        &self.inner.supervision
    }

    /// Cancels every actor in this nursery and waits until all are reaped. The
    /// nursery block goes on; actors cancelled this way are not failures.
    pub async fn cancel(&self) {
        self.inner.kids.cancel();
        let reaped: Vec<_> = self.inner.children().iter().map(|c| c.control.done.clone()).collect();
        for r in reaped {
            r.cancelled().await;
        }
    }

    async fn spawn(
        &self,
        b: ActorBuilder<'_>,
        main: Option<(&'static str, Bytes)>,
    ) -> Result<(Portal, Option<ResultSlot>)> {
        crate::spawn::validate_name(&b.name)?;
        let inner = &self.inner;
        let restart =
            b.restart.unwrap_or(if main.is_some() { Restart::Transient } else { Restart::Permanent });
        let spec = Spec {
            name: b.name,
            expose: b.expose,
            state: b.state.transpose()?,
            env: b.env,
            main,
            deadline: crate::deadline::current(),
            trace: crate::trace::current(),
            host: b.host,
            program: b.program,
        };
        let cancel = inner.kids.child_token();
        let launched = launch(&inner.actor, &spec, &cancel).await?;
        let control = ChildControl::new(cancel, launched.process.clone());
        crate::introspect::track_child(&control);
        let slot = spec.main.as_ref().map(|_| watch::channel(None).0);
        let (orders_tx, orders) = mpsc::unbounded_channel();
        let index = {
            let mut children = inner.children();
            children.push(Child {
                name: spec.name.clone(),
                control: control.clone(),
                result: slot.as_ref().map(|s| s.subscribe()),
                restart,
                orders: orders_tx,
            });
            children.len() - 1
        };
        let sup = Supervisor {
            nursery: inner.clone(),
            spec,
            restart,
            control: control.clone(),
            slot: slot.clone(),
            orders,
            index,
        };
        inner.actor.spawn(inner.supervisors.track_future(sup.run(launched)));
        Ok((Portal::child(control), slot))
    }
}

/// Options for one actor; from [`Nursery::actor`].
#[must_use = "an ActorBuilder does nothing until .start() or .run()"]
pub struct ActorBuilder<'a> {
    nursery: &'a Nursery,
    name: String,
    expose: Option<Vec<String>>,
    state: Option<Result<Vec<u8>>>,
    env: Vec<(String, String)>,
    restart: Option<Restart>,
    host: Option<HostSelector>,
    program: Option<String>,
}

impl ActorBuilder<'_> {
    /// Limits the actor to the functions exposed this way (call it once per
    /// function); calling any other function there is an error of kind
    /// `NotExposed`. Without it, every registered function may be called.
    pub fn expose<F: RemoteFn>(mut self, _f: F) -> Self {
        self.expose.get_or_insert_with(Vec::new).push(F::NAME.to_owned());
        self
    }

    /// Gives the actor an initial actor-local state, shared by every call it
    /// serves through [`actor::state`](crate::state()).
    pub fn state<S: Serialize>(mut self, initial: &S) -> Self {
        self.state = Some(rmp_serde::to_vec(initial).map_err(|e| Error::codec("the initial state", e)));
        self
    }

    /// Which ends of this actor make a restarting nursery (see
    /// [`open_nursery_with`]) start it again. Without it: daemons are
    /// [`Restart::Permanent`], `run_in_actor` actors [`Restart::Transient`].
    /// Ignored under [`Strategy::OneCancelsAll`].
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = Some(restart);
        self
    }

    /// Sets an environment variable for the actor's process. On another
    /// host ([`ActorBuilder::on_host`]) these are the only variables it gets
    /// from this process; the rest of its environment is its agent's.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Spawns the actor on another host, through the agent running there
    /// (see [`agent`](crate::agent)): by host name (a string converts to
    /// [`HostSelector::name`]), by label, or by the agent's address.
    ///
    /// The agent starts the program of its allow-list named as this
    /// program's file name (or [`ActorBuilder::program`]), with this
    /// program's arguments and the builder's environment; the new process
    /// connects back to this actor with a one-time token, and from then on
    /// the actor is supervised exactly as a local one: its portal, result,
    /// exposed functions, state, restarts and cancellation work the same.
    /// Its crash names its host ([`Error::ActorCrashed`]); the agent carries
    /// out the SIGTERM and SIGKILL of a cancel. If the channel to the agent
    /// is lost (the host is partitioned or down), the nursery reports the
    /// actor as [`Error::ActorLost`], and the agent, having lost this actor
    /// too, kills it. Each restart picks a host anew.
    ///
    /// This actor must listen where that host can reach it (`ACTOR_BIND`,
    /// with TLS between hosts), and the tree's arbiter must be reachable from
    /// there at the same address, as it is for the agent.
    pub fn on_host(mut self, host: impl Into<HostSelector>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The program a host agent starts for this actor, by its name on the
    /// agent's allow-list (default: this program's file name). Only with
    /// [`ActorBuilder::on_host`]; it must be this program, or one built
    /// from the same code, since functions are found by name.
    pub fn program(mut self, name: impl Into<String>) -> Self {
        self.program = Some(name.into());
        self
    }

    /// Starts the actor as a daemon; see [`Nursery::start_actor`].
    ///
    /// # Errors
    ///
    /// As [`Nursery::start_actor`], and [`Error::Codec`] for a state that
    /// cannot be encoded.
    pub async fn start(self) -> Result<Portal> {
        let nursery = self.nursery;
        Ok(nursery.spawn(self, None).await?.0)
    }

    /// Starts the actor running `f(args)`; see [`Nursery::run_in_actor`].
    ///
    /// # Errors
    ///
    /// As [`Nursery::run_in_actor`].
    pub async fn run<F: RemoteFn>(mut self, _f: F, args: F::Args) -> Result<ResultPortal<F::Output>> {
        if let Some(list) = self.expose.as_mut() {
            list.push(F::NAME.to_owned());
        }
        let args = encode_args(&args, || format!("arguments of `{}`", F::NAME))?;
        let nursery = self.nursery;
        let (portal, slot) = nursery.spawn(self, Some((F::NAME, args))).await?;
        let slot = slot.ok_or_else(|| Error::msg("internal: a main actor without a result slot"))?;
        Ok(ResultPortal::new(portal, &slot))
    }
}
