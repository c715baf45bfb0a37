//! Starting one process of a child actor: fork it (or have the agent of the
//! host it is meant for start it), wait for it to connect back, hand it its
//! configuration, and start its main call. A child that its nursery
//! restarts goes through this once per process.

use actor_transport::{CallKind, Nonce, Secret, Uid, fd_limit};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::process::{Process, Unreaped};
use crate::agent::{self, HostSelector, Placement, SpawnRequest};
use crate::config::ChildInit;
use crate::conn::Opened;
use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::local::Actor;
use crate::portal::Incarnation;
use crate::registry::encode;
use crate::spawn;

/// Everything needed to start a child again: what its builder said.
pub(super) struct Spec {
    pub name: String,
    pub expose: Option<Vec<String>>,
    pub state: Option<Vec<u8>>,
    pub env: Vec<(String, String)>,
    /// The main function and its encoded arguments, for `run_in_actor`.
    pub main: Option<(&'static str, Bytes)>,
    /// The deadline of the call that spawned the actor, if any: its main
    /// call inherits it, in every process a restart starts too, not only in
    /// the first (restarts run in the supervisor's task, which has none).
    pub deadline: Option<tokio::time::Instant>,
    /// The trace context of the task that spawned it, for its main call.
    pub trace: Option<crate::trace::TraceContext>,
    /// The host to start it on, through its agent; `None` for this host.
    /// Each process (restarts too) is placed anew.
    pub host: Option<HostSelector>,
    /// The program a host agent starts, by its allow-list name; `None` for
    /// this binary's file name.
    pub program: Option<String>,
}

/// A process that connected back and got its configuration.
pub(super) struct Launched {
    pub proc: Process,
    pub process: Incarnation,
    /// The main call, already sent.
    pub main: Option<(&'static str, Opened)>,
}

/// Starts one process for `spec`, under a fresh uid with `spec.name`.
///
/// # Errors
///
/// [`Error::Spawn`] if the process cannot start (here, or on its host: no
/// agent matches, the agent refuses), ends or does not connect back within
/// the spawn timeout, or cannot be configured; [`Error::Cancelled`] when
/// `cancel` fires first. A process that started is killed and reaped
/// before an error is returned.
pub(super) async fn launch(
    actor: &std::sync::Arc<Actor>,
    spec: &Spec,
    cancel: &CancellationToken,
) -> Result<Launched> {
    let cancelled = || Error::Cancelled {
        canceller: Some(actor.uid.clone()),
        reason: "the nursery is closed or cancelled".into(),
    };
    if cancel.is_cancelled() {
        return Err(cancelled());
    }
    let spawn_err = |reason: String| Error::Spawn { name: spec.name.clone(), reason };
    let uid = Uid::new(spec.name.clone());
    let token = Secret::random();
    // Placed before the child is expected: a host that cannot be found
    // costs nothing to undo.
    let placement = match &spec.host {
        Some(selector) => {
            let placed = tokio::select! {
                p = agent::place(actor, selector) => p.map_err(&spawn_err)?,
                _ = cancel.cancelled() => return Err(cancelled()),
            };
            check_reachable(actor, &placed).map_err(&spawn_err)?;
            Some(placed)
        }
        None => None,
    };
    // A child spawned here learns our handshake nonce with its token and
    // proves it without waiting for our Hello: a round trip less. A child
    // on another host is started by its agent, which hands it no nonce.
    // A parent uid the environment cannot carry is not arranged: that
    // child handshakes the classic way.
    let nonce = (placement.is_none() && spawn::arrangeable(&actor.uid)).then(Nonce::random);
    let mut init = ChildInit::new(
        &actor.config,
        spec.main.is_some(),
        spec.expose.clone(),
        spec.state.clone(),
        actor.arbiter_addr(),
    );
    if let Some(p) = &placement {
        // It listens on its own host, where its agent says.
        init.bind = p.info.child_bind.clone();
    }
    let init = encode(&init, || "the child's configuration".into())?;
    let (connected, _expected) = actor.children.expect(&uid, token.clone(), nonce.clone(), init);
    let started = tokio::select! {
        p = start(actor, spec, &uid, &token, placement.as_ref(), nonce.as_ref()) => p,
        _ = cancel.cancelled() => Err(cancelled()),
    };
    let mut proc = started?;
    let timeout = actor.config.spawn_timeout;
    let here = proc.host().is_none();
    let channel = tokio::select! {
        ch = connected => ch.map_err(|_| spawn_err("the spawn was abandoned".into())),
        st = proc.wait() => Err(spawn_err(match (st, proc.host()) {
            (Ok(st), None) => format!("the process ended ({}) before connecting back", spawn::describe(st)),
            (Ok(st), Some(host)) => format!("the process on host `{host}` ended ({}) before connecting back", spawn::describe(st)),
            (Err(Unreaped::Io(e)), _) => format!("cannot wait for the process: {e}"),
            (Err(Unreaped::Lost(reason)), _) => reason,
        })),
        _ = tokio::time::sleep(timeout) => Err(spawn_err(match proc.host() {
            // Its connection may be waiting in the backlog of a listener
            // that cannot accept it.
            None => match fd_limit::exhausted_within(timeout) {
                Some(limit) => format!(
                    "the process did not connect back within {timeout:?}; file descriptors ran out \
                     meanwhile: {limit}"
                ),
                None => format!("the process did not connect back within {timeout:?}"),
            },
            Some(host) => format!(
                "the process on host `{host}` did not connect back within {timeout:?} (can that host reach {}?)",
                actor.listen
            ),
        })),
        // At the limit, its connection may never be accepted: say so now.
        limit = fd_limit::next_exhaustion(), if here => Err(spawn_err(format!(
            "file descriptors ran out while waiting for the process to connect back: {limit}"
        ))),
        _ = cancel.cancelled() => Err(cancelled()),
    };
    let kill_bound = actor.config.kill_grace + actor.config.handshake_timeout;
    let (channel, init_queued) = match channel {
        Ok(c) => c,
        Err(e) => {
            if let Err(Unreaped::Io(io)) = proc.kill(kill_bound).await {
                tracing::warn!(error = %io, "cannot reap a child that failed to start");
            }
            return Err(e);
        }
    };
    if let Err(e) = init_queued {
        let _ = proc.kill(kill_bound).await;
        return Err(spawn_err(format!("cannot send the configuration: {e}")));
    }
    let conn = link::start(channel, uid, actor_transport::Side::Acceptor, Peer::Child, actor.clone());
    tracing::debug!(child = %conn.peer(), pid = proc.pid(), host = ?proc.host(), "spawned");
    // The main call goes out before anyone holds the portal, so it is the
    // first call the child sees from its parent: that is how it knows it.
    let open = |func: &'static str, args: Bytes| {
        let conn = conn.clone();
        let call = async move {
            match spec.deadline {
                Some(at) => crate::deadline::within(at, conn.open(func, CallKind::Single, args)).await,
                None => conn.open(func, CallKind::Single, args).await,
            }
        };
        async move {
            match spec.trace {
                Some(ctx) => crate::trace::in_context(ctx, call).await,
                None => call.await,
            }
        }
    };
    let main = match &spec.main {
        Some((func, args)) => match open(func, args.clone()).await {
            Ok(opened) => Some((*func, opened)),
            Err(e) => {
                let _ = proc.kill(kill_bound).await;
                return Err(spawn_err(format!("cannot start the main function: {e}")));
            }
        },
        None => None,
    };
    let host = proc.host().map(str::to_owned);
    Ok(Launched { proc, process: Incarnation::new(conn, host), main })
}

/// Starts the process: here, or through the agent of `placement`.
async fn start(
    actor: &Actor,
    spec: &Spec,
    uid: &Uid,
    token: &Secret,
    placement: Option<&Placement>,
    nonce: Option<&Nonce>,
) -> Result<Process> {
    let spawn_err = |reason: String| Error::Spawn { name: spec.name.clone(), reason };
    if let Some(placement) = placement {
        let args = spawn::child_args()
            .map(|a| a.into_string())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|a| {
            spawn_err(format!("the argument {a:?} is not UTF-8, so it cannot go to another host"))
        })?;
        let req = SpawnRequest {
            actor: uid.clone(),
            program: match &spec.program {
                Some(p) => p.clone(),
                None => own_program().map_err(&spawn_err)?,
            },
            args,
            env: crate::low_latency::child_env(actor.config.low_latency)
                .map(|(k, v)| (k.to_owned(), v))
                .into_iter()
                .chain(spec.env.iter().cloned())
                .collect(),
            parent: actor.listen.clone(),
            token: token.to_hex(),
        };
        let child = agent::spawn(placement, req, actor.config.spawn_timeout).await.map_err(&spawn_err)?;
        return Ok(Process::Remote(child));
    }
    // The environment the child starts with: ours, then the builder's
    // variables, then the spawn spec and the tree's TLS files, which are
    // this parent's to set whatever the builder was handed (say, an
    // environment copied from an actor).
    let mut env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os().collect();
    let mut set = |name: &str, value: std::ffi::OsString| {
        env.insert(name.into(), value);
    };
    if let Some((name, value)) = crate::low_latency::child_env(actor.config.low_latency) {
        set(name, value.into());
    }
    for (name, value) in &spec.env {
        set(name, value.into());
    }
    set(spawn::ENV_PARENT, actor.listen.to_string().into());
    set(spawn::ENV_NAME, uid.name.clone().into());
    set(spawn::ENV_ID, uid.id.clone().into());
    set(spawn::ENV_TOKEN, token.to_hex().into());
    set(spawn::ENV_PPID, std::process::id().to_string().into());
    for (name, path) in spawn::tls_env(actor.config.tls.as_ref()).map_err(&spawn_err)? {
        set(name, path.into_os_string());
    }
    // Without an arrangement, none this process inherited or was handed
    // may reach the child: it would prove over a nonce we do not use.
    match nonce {
        Some(n) => set(spawn::ENV_ARRANGED, spawn::arranged_env(n, &actor.uid).into()),
        None => {
            env.remove(std::ffi::OsStr::new(spawn::ENV_ARRANGED));
        }
    }
    // Named as this program was; given the parent's arguments, so a program
    // that parses them before `actor::run` parses them alike in every actor.
    let arg0 = std::env::args_os().next().unwrap_or_else(|| "/proc/self/exe".into());
    let program = crate::clone_spawn::Program::new(
        std::ffi::OsStr::new("/proc/self/exe"),
        std::iter::once(arg0).chain(spawn::child_args()),
        env,
    )
    .map_err(|e| spawn_err(format!("cannot start the process: {e}")))?;
    match actor.spawner.start(program).await {
        Ok(p) => Ok(Process::Local(p)),
        Err(e) => Err(spawn_err(match fd_limit::note_exhausted(&e) {
            Some(limit) => format!("cannot start the process: {e}: {limit}"),
            None => format!("cannot start the process: {e}"),
        })),
    }
}

/// The allow-list name a host agent knows this program by, unless the
/// builder names another: its file name.
fn own_program() -> std::result::Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    exe.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("this program's path {} has no file name", exe.display()))
}

/// Refuses a spawn whose child could not connect back: this actor listens
/// on loopback (or a Unix socket) and the agent is on another host.
fn check_reachable(actor: &Actor, placed: &Placement) -> std::result::Result<(), String> {
    let agent_local = placed.addr.is_local();
    if actor.listen.is_local() && !agent_local {
        return Err(format!(
            "this actor listens on {}, which host `{}` (agent at {}) cannot reach: set {} to an address of \
             this host that it can reach (with TLS)",
            actor.listen,
            placed.info.name,
            placed.addr,
            crate::config::ENV_BIND
        ));
    }
    Ok(())
}
