//! Actor nurseries: spawn actors, supervise them one-cancels-all, and never
//! return while one of them is alive.

use std::future::Future;
use std::io;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actor_transport::{CallKind, Msg, Secret, Uid};
use bytes::Bytes;
use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ChildInit;
use crate::conn::{Conn, Opened};
use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::local::{self, Actor};
use crate::portal::{ChildControl, Portal, ResultPortal, ResultSlot};
use crate::registry::{RemoteFn, encode, encode_args};
use crate::scope;
use crate::spawn::{self, ChildProcess};

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
        (Error::ActorCrashed { actor: x, .. }, Error::ActorCrashed { actor: y, .. }) => x == y,
        // Losing the channel to an actor that crashed is the crash, seen sideways.
        (Error::ActorCrashed { actor, .. }, Error::Disconnected { peer, .. }) => actor == peer,
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
}

struct Child {
    control: ChildControl,
    result: Option<watch::Receiver<Option<Result<Bytes>>>>,
}

impl Inner {
    fn errors(&self) -> MutexGuard<'_, Vec<Error>> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn children(&self) -> MutexGuard<'_, Vec<Child>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, e: Error) {
        tracing::debug!(error = %e, "actor failed; cancelling the nursery");
        self.errors().push(e);
        self.failed.cancel();
        self.kids.cancel();
    }

    async fn all_results(&self) {
        let slots: Vec<_> = self.children().iter().filter_map(|c| c.result.clone()).collect();
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
    /// process cannot start or does not connect back in time;
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
        ActorBuilder { nursery: self, name: name.into(), expose: None, state: None, env: Vec::new() }
    }

    /// Cancels every actor in this nursery and waits until all are reaped. The
    /// nursery block goes on; actors cancelled this way are not failures.
    pub async fn cancel(&self) {
        self.inner.kids.cancel();
        let reaped: Vec<_> = self.inner.children().iter().map(|c| c.control.reaped.clone()).collect();
        for r in reaped {
            r.cancelled().await;
        }
    }

    async fn spawn(
        &self,
        b: ActorBuilder<'_>,
        main: Option<(&'static str, Bytes)>,
    ) -> Result<(Portal, Option<ResultSlot>)> {
        spawn::validate_name(&b.name)?;
        let inner = &self.inner;
        let actor = &inner.actor;
        let cancelled = || Error::Cancelled {
            canceller: Some(actor.uid.clone()),
            reason: "the nursery is closed or cancelled".into(),
        };

        if inner.kids.is_cancelled() {
            return Err(cancelled());
        }
        let state = b.state.transpose()?;
        let spawn_err = |reason: String| Error::Spawn { name: b.name.clone(), reason };
        let uid = Uid::new(b.name.clone());
        let token = Secret::random();
        let connected = actor.expect_child(&uid, token.clone());

        let mut cmd = tokio::process::Command::new("/proc/self/exe");
        if let Some(arg0) = std::env::args_os().next() {
            cmd.arg0(arg0);
        }
        cmd.args(spawn::child_args());

        cmd.env(spawn::ENV_PARENT, actor.listen.to_string())
            .env(spawn::ENV_NAME, &uid.name)
            .env(spawn::ENV_ID, &uid.id)
            .env(spawn::ENV_TOKEN, token.to_hex())
            .env(spawn::ENV_PPID, std::process::id().to_string())
            .envs(b.env.iter().map(|(k, v)| (k, v)))
            .envs(tls_env(actor.config.tls.as_ref()).map_err(&spawn_err)?)
            .stdin(std::process::Stdio::null());
        let mut proc = match actor.spawner.spawn(cmd).await {
            Ok(p) => p,
            Err(e) => {
                actor.forget_child(&uid);
                return Err(spawn_err(format!("cannot start the process: {e}")));
            }
        };
        let timeout = actor.config.spawn_timeout;
        let channel = tokio::select! {
            ch = connected => ch.map_err(|_| spawn_err("the spawn was abandoned".into())),
            st = proc.wait() => Err(spawn_err(match st {
                Ok(st) => format!("the process ended ({}) before connecting back", spawn::describe(st)),
                Err(e) => format!("cannot wait for the process: {e}"),
            })),
            _ = tokio::time::sleep(timeout) => Err(spawn_err(format!("the process did not connect back within {timeout:?}"))),
            _ = inner.kids.cancelled() => Err(cancelled()),
        };
        let mut channel = match channel {
            Ok(c) => c,
            Err(e) => {
                actor.forget_child(&uid);
                if let Err(io) = proc.kill().await {
                    tracing::warn!(error = %io, "cannot reap a child that failed to start");
                }
                return Err(e);
            }
        };
        let init = ChildInit::new(&actor.config, main.is_some(), b.expose, state, actor.arbiter_addr());
        let init = encode(&init, || "the child's configuration".into())?;
        if let Err(e) = channel.send(&Msg::Init { config: init }).await {
            let _ = proc.kill().await;
            return Err(spawn_err(format!("cannot send the configuration: {e}")));
        }
        let conn = link::start(channel, uid, actor_transport::Side::Acceptor, Peer::Child, actor.clone());
        tracing::debug!(child = %conn.peer(), pid = proc.pid(), "spawned");
        // The main call goes out before anyone holds the portal, so it is the
        // first call the child sees from its parent: that is how it knows it.
        let main = match main {
            Some((func, args)) => match conn.open(func, CallKind::Single, args).await {
                Ok(opened) => Some((func, opened)),
                Err(e) => {
                    let _ = proc.kill().await;
                    return Err(spawn_err(format!("cannot start the main function: {e}")));
                }
            },
            None => None,
        };
        let control = ChildControl {
            cancel: inner.kids.child_token(),
            reaped: CancellationToken::new(),
            crash: Arc::new(OnceLock::new()),
        };
        let slot = main.as_ref().map(|_| watch::channel(None).0);
        inner
            .children()
            .push(Child { control: control.clone(), result: slot.as_ref().map(|s| s.subscribe()) });
        let sup = Supervisor {
            nursery: inner.clone(),
            conn: conn.clone(),
            control: control.clone(),
            slot: slot.clone(),
        };
        actor.spawn(inner.supervisors.track_future(sup.run(proc, main)));
        Ok((Portal::new(conn, Some(control)), slot))
    }
}

/// The environment that gives a child the tree's TLS files.
fn tls_env(
    tls: Option<&actor_transport::TlsConfig>,
) -> std::result::Result<Vec<(&'static str, std::path::PathBuf)>, String> {
    let Some(tls) = tls else { return Ok(Vec::new()) };
    let (ca, cert, key) = tls
        .paths()
        .ok_or("a TLS configuration loaded from memory cannot be handed to children; load it from files")?;
    Ok(vec![
        (actor_transport::ENV_TLS_CA, ca.to_path_buf()),
        (actor_transport::ENV_TLS_CERT, cert.to_path_buf()),
        (actor_transport::ENV_TLS_KEY, key.to_path_buf()),
    ])
}

/// Options for one actor; from [`Nursery::actor`].
#[must_use = "an ActorBuilder does nothing until .start() or .run()"]
pub struct ActorBuilder<'a> {
    nursery: &'a Nursery,
    name: String,
    expose: Option<Vec<String>>,
    state: Option<Result<Vec<u8>>>,
    env: Vec<(String, String)>,
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

    /// Sets an environment variable for the actor's process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
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

/// What a `run_in_actor` child's main call delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Nothing,
    Value,
    Error,
}

/// Watches one child from spawn to reaping.
struct Supervisor {
    nursery: Arc<Inner>,
    conn: Arc<Conn>,
    control: ChildControl,
    slot: Option<ResultSlot>,
}

impl Supervisor {
    async fn run(self, mut proc: ChildProcess, main: Option<(&'static str, Opened)>) {
        let config = &self.nursery.actor.config;
        let has_main = main.is_some();
        let main_call = async move {
            match main {
                Some((func, opened)) => opened.result(func).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(main_call);
        let mut main_done = !has_main;
        let mut delivered = Delivery::Nothing;
        let mut exit_by: Option<tokio::time::Instant> = None;
        let (status, sent) = loop {
            let deadline = exit_by.unwrap_or_else(|| tokio::time::Instant::now() + config.spawn_timeout);
            tokio::select! {
                st = proc.wait() => break (st, None),
                r = &mut main_call, if !main_done => {
                    main_done = true;
                    delivered = self.deliver(r);
                    exit_by = Some(tokio::time::Instant::now() + config.cancel_grace);
                }
                _ = self.control.cancel.cancelled() => break self.stop(&mut proc).await,
                _ = tokio::time::sleep_until(deadline), if exit_by.is_some() => {
                    tracing::warn!(child = %self.conn.peer(), "did not exit after its main function returned");
                    break self.stop(&mut proc).await;
                }
            }
        };
        if !main_done {
            // The process ended first; a reply it sent may still be buffered.
            if let Ok(r) = tokio::time::timeout(config.cancel_grace, &mut main_call).await {
                delivered = self.deliver(r);
            }
        }
        // The process is gone, so its channel is ending: let the reader see
        // that first, so calls in flight to it have ended (and can report the
        // crash, see `Portal::run`) before `finish` wakes the nursery.
        let _ = tokio::time::timeout(config.kill_grace, self.conn.closed()).await;
        self.finish(status, sent, has_main, delivered);
    }

    /// Records the main function's outcome.
    ///
    /// The result slot is filled before the nursery hears of a failure, so a
    /// body awaiting this child's result is woken with it no later than the
    /// nursery's cancel of the body (see `open_nursery`).
    fn deliver(&self, r: Result<Bytes>) -> Delivery {
        let (delivery, failure) = match &r {
            // The process died: its exit status is the better report.
            Err(Error::Disconnected { .. }) => return Delivery::Nothing,
            Ok(_) => (Delivery::Value, None),
            Err(e) => {
                let merely_cancelled = e.is_cancelled() && self.control.cancel.is_cancelled();
                (Delivery::Error, (!merely_cancelled).then(|| e.clone()))
            }
        };
        if let Some(slot) = &self.slot {
            slot.send_replace(Some(r));
        }
        if let Some(e) = failure {
            self.nursery.fail(e);
        }
        delivery
    }

    /// Cancel request, grace period, SIGTERM, grace period, SIGKILL; always
    /// reaps. Returns the exit status and the last signal we sent, if any.
    async fn stop(&self, proc: &mut ChildProcess) -> (io::Result<ExitStatus>, Option<Signal>) {
        let config = &self.nursery.actor.config;
        let child = self.conn.peer();
        self.conn.cancel_actor("cancelled by its nursery");
        if let Ok(st) = tokio::time::timeout(config.cancel_grace, proc.wait()).await {
            return (st, None);
        }
        tracing::warn!(%child, grace = ?config.cancel_grace, "ignored the cancel request; sending SIGTERM");
        proc.signal_group(Signal::SIGTERM);
        if let Ok(st) = tokio::time::timeout(config.kill_grace, proc.wait()).await {
            return (st, Some(Signal::SIGTERM));
        }
        tracing::warn!(%child, grace = ?config.kill_grace, "ignored SIGTERM; sending SIGKILL");
        (proc.kill().await, Some(Signal::SIGKILL))
    }

    fn finish(
        self,
        status: io::Result<ExitStatus>,
        sent: Option<Signal>,
        has_main: bool,
        delivered: Delivery,
    ) {
        use std::os::unix::process::ExitStatusExt;
        let child = self.conn.peer().clone();
        let stopped_by_us = self.control.cancel.is_cancelled();
        // A death by a signal we did not send is a crash even while we were
        // stopping the child: someone else killed it first. So is a non-zero
        // exit before any signal of ours: a cancelled actor exits with 0, so
        // that status is a failure raised while it handled the cancel.
        let our_signal = |st: &ExitStatus| sent.is_some_and(|s| st.signal() == Some(s as i32));
        let crash = match &status {
            Err(e) => Some(format!("cannot reap the process: {e}")),
            Ok(st) if st.signal().is_some() && !our_signal(st) => Some(spawn::describe(*st)),
            Ok(st) if !st.success() && (!stopped_by_us || sent.is_none()) => Some(spawn::describe(*st)),
            // It told us it was cancelled (by a peer of the tree): not a crash.
            Ok(_) if self.conn.cancel_acked() => None,
            Ok(_) if !stopped_by_us && delivered == Delivery::Nothing => Some(if has_main {
                "exited without returning a result (exit status 0)".to_owned()
            } else {
                "exited on its own while serving (exit status 0)".to_owned()
            }),
            Ok(_) => None,
        };
        match (&status, &crash) {
            (Ok(st), None) => tracing::debug!(%child, status = %spawn::describe(*st), "reaped"),
            (_, Some(c)) => tracing::warn!(%child, status = %c, "actor crashed"),
            _ => {}
        }
        // Before anyone is woken: a call that lost its channel to this child
        // reads how it ended here once `reaped` fires.
        let _ = self.control.crash.set(crash.clone());
        let mut failure = None;
        let outcome = match crash {
            Some(status) => {
                let e = Error::ActorCrashed { actor: child, status };
                if delivered != Delivery::Error {
                    failure = Some(e.clone());
                }
                Err(e)
            }
            None => {
                let (canceller, reason) = self.nursery.actor.cancel_reason();
                Err(Error::Cancelled {
                    canceller: canceller.or_else(|| Some(self.nursery.actor.uid.clone())),
                    reason: if reason.is_empty() { "cancelled by its nursery".into() } else { reason },
                })
            }
        };
        if let Some(slot) = &self.slot {
            slot.send_if_modified(|v| {
                if v.is_none() {
                    *v = Some(outcome);
                    true
                } else {
                    false
                }
            });
        }
        // Waiters on this child (its result, calls that lost the channel) are
        // woken before the nursery cancels its body; see `deliver`.
        self.control.reaped.cancel();
        if let Some(e) = failure {
            self.nursery.fail(e);
        }
    }
}
