//! `actor::run`: the entry point of every process in the tree.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actor_transport::{Addr, Arranged, HandshakeConfig, Listener, Msg, Nonce, Secret, TlsConfig, Uid};
use bytes::Bytes;
use tracing::Instrument;

use crate::config::{ChildInit, Config};
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::local::{Actor, ChildRole};
use crate::{
    accept, arbiter_link, discovery, fork_server, introspect, logging, parent_death, spawn, tree_watch,
};

/// Runs `main` as the root actor of a new tree, with [`Config::from_env`].
///
/// In a process spawned by a parent actor this never returns and never runs
/// `main`: it serves the parent's calls and exits the process when cancelled.
/// Put nothing before `actor::run` in `fn main` that must not run in children.
///
/// Before `main` runs, the root connects to the arbiter at `ACTOR_ARBITER`
/// (default `tcp://127.0.0.1:1616`), hosting one there itself if nothing
/// listens, and registers under its name.
///
/// On the way out every actor of the tree is cancelled and reaped. Ctrl-C
/// (SIGINT) cancels the whole tree and makes `run` return
/// [`Error::Cancelled`]; SIGTERM cancels it too, and `run` then returns what
/// `main` returned.
///
/// `run` builds and owns the process's tokio runtime, so call it from a plain
/// `fn main`, not from inside `#[tokio::main]` or any other runtime: there it
/// returns [`Error::Config`] (tokio cannot start a runtime inside another).
/// Call it before starting threads of your own: the root marks its
/// environment with [`ENV_TREE`](crate::ENV_TREE) so that the processes it
/// starts (helpers run with `std::process::Command` included) are killed when
/// it ends, even by SIGKILL; a process that must outlive the tree is started
/// without that variable.
///
/// The root raises its soft limit on open files (`RLIMIT_NOFILE`) to the
/// hard limit, at most 65,536, before anything else opens, and every actor of the tree
/// inherits it: a parent holds about three descriptors per live child. When
/// descriptors run out anyway, spawn errors and accept warnings name the
/// limit and how to raise it.
///
/// Children are started with the parent's command-line arguments, so a
/// program that parses its arguments before calling `run` (with clap, say)
/// parses them the same way in every actor; [`is_child`] tells a spawned actor
/// apart before that, if it must skip work only the root should do.
/// Of the parent's open files a child receives only stdout and stderr (its
/// stdin is `/dev/null`); before Linux 5.9, also those not marked
/// close-on-exec.
///
/// # Errors
///
/// `main`'s error; [`Error::Config`] when called inside a tokio runtime;
/// [`Error::Cancelled`] after SIGINT; [`Error::Io`] if the
/// runtime or the listener cannot be set up; [`Error::Arbiter`] if something
/// that is not an arbiter holds the arbiter's address; [`Error::Codec`] for a
/// bad `ACTOR_TOKEN` or `ACTOR_ARBITER`; [`Error::Config`] if no token
/// and no TLS is configured and the per-user secret file cannot be used.
pub fn run<F, T>(main: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    outside_runtime()?;
    tree_watch::run_if_watcher();
    fork_server::serve_if_asked();
    if let Some(spec) = SpawnSpec::from_env() {
        run_child(spec)
    }
    run_with(Config::from_env()?, main)
}

/// As [`run`], with an explicit configuration.
///
/// # Errors
///
/// As [`run`].
pub fn run_with<F, T>(config: Config, main: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    outside_runtime()?;
    tree_watch::run_if_watcher();
    fork_server::serve_if_asked();
    if let Some(spec) = SpawnSpec::from_env() {
        run_child(spec)
    }
    logging::init(config.log.as_deref());
    raise_fd_limit();
    let watcher = tree_watch::start();
    // One thread per actor, like the children: ACTOR_THREADS opts in to more.
    let rt = crate::low_latency::runtime(config.threads, config.low_latency)?;
    let result = rt.block_on(run_root(config, main));
    drop(rt);
    if let Some(w) = watcher {
        w.finish();
    }
    result
}

/// Raises the root's soft limit on open files to the hard one: a parent
/// holds three descriptors per live child, and the usual soft limit of 1024
/// would stop a tree near 300 actors. The tree inherits the raised limit.
fn raise_fd_limit() {
    match actor_transport::fd_limit::raise() {
        Ok(limits) => tracing::debug!(soft = limits.soft, hard = limits.hard, "limit on open files"),
        Err(e) => tracing::debug!(error = %e, "cannot raise the limit on open files"),
    }
}

/// Whether this process is an actor spawned by a parent, or the root's
/// watcher (see [`ENV_TREE`](crate::ENV_TREE)), rather than the root a user
/// started. It reads the spawn spec in the environment, so it works
/// before [`run`], for instance to skip work only the root should do:
///
/// ```no_run
/// fn main() -> actor::Result<()> {
///     if !actor::is_child() {
///         println!("starting the tree");
///     }
///     actor::run(async { Ok(()) })
/// }
/// ```
pub fn is_child() -> bool {
    std::env::var_os(spawn::ENV_PARENT).is_some() || tree_watch::is_watcher()
}

/// `Err` inside a tokio runtime, where building ours would panic.
fn outside_runtime() -> Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::Config(
            "actor::run was called inside a tokio runtime (is `main` marked #[tokio::main]?); \
             actor::run builds the runtime itself: call it from a plain `fn main`"
                .into(),
        )),
        Err(_) => Ok(()),
    }
}

async fn run_root<F, T>(config: Config, main: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    config.check()?;
    let config = config.with_default_token()?;
    let listener = Listener::bind(&config.bind).await?;
    let actor = Actor::install(Uid::new(config.name.clone()), config, &listener, None)?;
    introspect::mark_started();
    accept::serve(&actor, listener);
    spawn::reap_orphans();
    join_registry(&actor).await?;
    let interrupted = Arc::new(AtomicBool::new(false));
    // The handlers are installed here, before `main` first runs: a SIGTERM
    // right after main's first output must cancel the tree, not kill the
    // process with the default action.
    let unix_signal = |kind| tokio::signal::unix::signal(kind);
    let signals = unix_signal(tokio::signal::unix::SignalKind::interrupt())
        .and_then(|int| Ok((int, unix_signal(tokio::signal::unix::SignalKind::terminate())?)));
    let on_signal = {
        let actor = actor.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            let (mut int, mut term) = match signals {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGINT and SIGTERM");
                    return;
                }
            };
            tokio::select! {
                Some(()) = int.recv() => {
                    tracing::warn!("SIGINT: cancelling the actor tree");
                    interrupted.store(true, Ordering::SeqCst);
                    actor.cancel(None, "interrupted by SIGINT".into());
                },
                _ = term.recv() => {
                    tracing::info!("SIGTERM: cancelling the actor tree");
                    actor.cancel(None, "terminated by SIGTERM".into());
                }
            }
        })
    };
    let main = main.instrument(actor.span());
    tokio::pin!(main);
    let bound = actor.config.teardown_bound();
    let result = tokio::select! {
        r = &mut main => r,
        _ = actor.token().cancelled() => match tokio::time::timeout(bound, &mut main).await {
            Ok(r) => r,
            Err(_) => {
                let (canceller, reason) = actor.cancel_reason();
                Err(Error::Cancelled { canceller, reason })
            }
        },
    };
    actor.cancel(None, "the root's main function returned".into());
    if tokio::time::timeout(bound, actor.wait_tasks()).await.is_err() {
        tracing::warn!("some actors were still being torn down at exit");
    }
    actor.spawner.stop_fork_server().await;
    #[cfg(feature = "otel")]
    crate::otel::flush(crate::otel::FLUSH_BOUND).await;
    let _ = bounded(actor.config.cancel_grace, actor.answer_cancel_requests()).await;
    actor.stop_embedded_arbiter().await;
    on_signal.abort();
    match result {
        // Ctrl-C always ends the program with an error, whatever main returned.
        Ok(_) if interrupted.load(Ordering::SeqCst) => {
            let (canceller, reason) = actor.cancel_reason();
            Err(Error::Cancelled { canceller, reason })
        }
        r => r,
    }
}

/// Registers the root with the tree's registry: in etcd if it is kept
/// there, else with the arbiter (hosting one if need be); then keeps it
/// registered for the root's lifetime.
async fn join_registry(actor: &Arc<Actor>) -> Result<()> {
    #[cfg(feature = "etcd")]
    if let Some(etcd) = actor.config.etcd.clone() {
        return crate::etcd_link::register_root(actor, &etcd).await;
    }
    let (client, embedded) = discovery::connect_or_host(actor).await?;
    client.register(&actor.listen).await.map_err(|e| Error::Arbiter(e.to_string()))?;
    actor.set_arbiter_addr(client.addr().clone());
    actor.set_arbiter(Ok(client), embedded);
    // A root that would host the arbiter by default takes the address over
    // when its host exits; a private arbiter lives and dies with this root.
    let host = actor.config.embed_arbiter && !actor.config.private_arbiter;
    actor.spawn(arbiter_link::keep_registered(actor.clone(), host));
    Ok(())
}

/// What a parent tells its child through the environment.
struct SpawnSpec {
    parent: Addr,
    uid: Uid,
    token: Secret,
    ppid: u32,
    /// The parent's uid and handshake nonce, when it handed them over.
    arranged: Option<(Nonce, Uid)>,
}

impl SpawnSpec {
    /// The spec if this process was spawned by a parent actor. A malformed spec
    /// is fatal: the process cannot be a root either, its parent is waiting.
    fn from_env() -> Option<SpawnSpec> {
        let parent = std::env::var(spawn::ENV_PARENT).ok()?;
        let get = |k: &str| std::env::var(k).map_err(|_| format!("{k} is missing"));
        let parse = || -> std::result::Result<SpawnSpec, String> {
            Ok(SpawnSpec {
                parent: parent.parse().map_err(|e| format!("{e}"))?,
                uid: Uid { name: get(spawn::ENV_NAME)?, id: get(spawn::ENV_ID)? },
                token: Secret::from_hex(&get(spawn::ENV_TOKEN)?).ok_or("the token is not hex")?,
                ppid: get(spawn::ENV_PPID)?.parse().map_err(|_| "the parent pid is not a number")?,
                // Not UTF-8 is malformed too, not absent.
                arranged: match std::env::var_os(spawn::ENV_ARRANGED) {
                    Some(v) => Some(
                        v.to_str()
                            .and_then(spawn::parse_arranged)
                            .ok_or_else(|| format!("{} is malformed", spawn::ENV_ARRANGED))?,
                    ),
                    None => None,
                },
            })
        };
        match parse() {
            Ok(spec) => Some(spec),
            Err(e) => {
                eprintln!("actor: invalid spawn environment: {e}");
                std::process::exit(2)
            }
        }
    }
}

fn run_child(spec: SpawnSpec) -> ! {
    // On the main thread, before any other starts: /proc/PID/comm (what `ps`
    // and `top` show) is the main thread's name.
    spawn::set_process_name(&spec.uid.name);

    // Before anything can start a helper: if the parent dies, this process
    // takes its group (and so its helpers) down with it. The handler goes in
    // before the signal is armed, so the signal never finds the default action.
    if let Err(e) = parent_death::install_handler().and_then(|()| parent_death::arm()) {
        eprintln!("actor `{}`: cannot watch for the parent's death: {e}", spec.uid.name);
        std::process::exit(70)
    }
    // A parent that died before the signal was armed left this process
    // re-parented: there is nobody to serve.
    if std::os::unix::process::parent_id() != spec.ppid {
        std::process::exit(1)
    }
    let runtime = crate::low_latency::from_env().and_then(|spin| crate::low_latency::runtime(1, spin));
    let code = match runtime {
        Ok(rt) => rt.block_on(child_main(spec)),
        Err(e) => {
            eprintln!("actor `{}`: cannot start a runtime: {e}", spec.uid.name);
            70
        }
    };
    std::process::exit(code)
}

async fn child_main(spec: SpawnSpec) -> i32 {
    let name = spec.uid.name.clone();
    match child_setup(spec).await {
        Ok((actor, conn)) => {
            serve_until_cancelled(&actor, &conn).instrument(actor.span()).await;
            0
        }
        Err(e) => {
            eprintln!("actor `{name}`: cannot start: {e}");
            2
        }
    }
}

async fn child_setup(spec: SpawnSpec) -> Result<(std::sync::Arc<Actor>, std::sync::Arc<Conn>)> {
    // TLS comes through the environment: the parent channel needs it before Init.
    let tls = TlsConfig::from_env().map_err(|e| Error::Config(e.to_string()))?;
    let hs = HandshakeConfig {
        uid: spec.uid.clone(),
        timeout: Duration::from_secs(10),
        channel: Default::default(),
    };
    let (mut channel, parent) = match (spec.arranged, &tls) {
        (Some((nonce, acceptor)), tls) => {
            let arranged = Arranged { secret: spec.token, acceptor, nonce };
            actor_transport::connect_arranged(&spec.parent, &hs, &arranged, tls.as_ref()).await?
        }
        (None, Some(tls)) => actor_transport::connect_tls(&spec.parent, &hs, Some(&spec.token), tls).await?,
        (None, None) => actor_transport::connect(&spec.parent, &hs, Some(&spec.token)).await?,
    };
    let init = match tokio::time::timeout(hs.timeout, channel.recv()).await {
        Ok(Ok(Some(Msg::Init { config }))) => config,
        Ok(Ok(other)) => {
            return Err(Error::codec(
                "the parent's Init message",
                format!("got {:?}", other.map(|m| m.name())),
            ));
        }
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            return Err(Error::Timeout { what: "the parent's configuration".into(), after: hs.timeout });
        }
    };
    let init: ChildInit = crate::registry::decode(&init, || "the parent's Init message".into())?;
    logging::init(init.log.as_deref());
    let config = init.config(&spec.uid.name, tls);
    config.check()?;
    let listener = Listener::bind(&config.bind).await?;
    let role = ChildRole {
        main: init.main,
        expose: init.expose.map(|v| v.into_iter().collect::<HashSet<_>>()),
        state: init.state.map(|b| Bytes::from(b.into_vec())),
    };
    let actor = Actor::install(spec.uid, config, &listener, Some(role))?;
    introspect::mark_started();
    accept::serve(&actor, listener);
    spawn::reap_orphans();
    #[cfg(feature = "etcd")]
    let in_etcd = match &init.etcd {
        Some(etcd) => {
            crate::etcd_link::register_child(&actor, etcd).await?;
            true
        }
        None => false,
    };
    #[cfg(not(feature = "etcd"))]
    let in_etcd = false;
    match init.arbiter {
        _ if in_etcd => {}
        Some(addr) => {
            actor.set_arbiter_addr(addr.clone());
            // In the background: being found by name must not delay serving the parent.
            actor.spawn(arbiter_link::register_child(actor.clone(), addr));
        }
        None => actor.set_arbiter(Err("the tree runs without an arbiter".into()), None),
    }
    let conn = link::start(channel, parent, actor_transport::Side::Connector, Peer::Parent, actor.clone());
    Ok((actor, conn))
}

async fn serve_until_cancelled(actor: &Actor, parent: &Conn) {
    actor.token().cancelled().await;
    #[cfg(feature = "otel")]
    let cancelled_at = tokio::time::Instant::now();
    let (canceller, reason) = actor.cancel_reason();
    tracing::debug!(?canceller, %reason, "winding down");
    if tokio::time::timeout(actor.config.teardown_bound(), actor.wait_tasks()).await.is_err() {
        tracing::warn!("some tasks did not finish in time");
    }
    actor.spawner.stop_fork_server().await;
    // Before the parent hears this actor is done: its last spans, within
    // the time its parent leaves it before SIGTERM.
    #[cfg(feature = "otel")]
    crate::otel::flush(crate::otel::exit_flush_bound(cancelled_at, actor.config.cancel_grace)).await;
    // A peer that asked for the cancel hears it is done; the parent hears
    // it too, so its supervisor records a requested cancel, not a crash.
    let by_peer = bounded(actor.config.cancel_grace, actor.answer_cancel_requests()).await.unwrap_or(true);
    match actor.take_ack() {
        Some(ack) => {
            let _ = ack.send_now(&Msg::CancelActorAck);
        }
        None if by_peer => {
            let _ = parent.sender().send_now(&Msg::CancelActorAck);
        }
        None => {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), parent.sender().close()).await;
}

/// Serves calls from other actors until this actor is cancelled (by SIGTERM,
/// SIGINT, or its parent); the `main` of a standalone actor.
///
/// # Errors
///
/// [`Error::NotRunning`] outside `actor::run`.
pub async fn serve() -> Result<()> {
    crate::local::current()?.token().cancelled().await;
    Ok(())
}

/// `fut`, or `None` if it takes longer than `limit`.
async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}
