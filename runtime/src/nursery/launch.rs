//! Starting one process of a child actor: fork it, wait for it to connect
//! back, hand it its configuration, and start its main call. A child that its
//! nursery restarts goes through this once per process.

use actor_transport::{CallKind, Msg, Secret, Uid};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::config::ChildInit;
use crate::conn::Opened;
use crate::error::{Error, Result};
use crate::link::{self, Peer};
use crate::local::Actor;
use crate::portal::Incarnation;
use crate::registry::encode;
use crate::spawn::{self, ChildProcess};

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
}

/// A process that connected back and got its configuration.
pub(super) struct Launched {
    pub proc: ChildProcess,
    pub process: Incarnation,
    /// The main call, already sent.
    pub main: Option<(&'static str, Opened)>,
}

/// Starts one process for `spec`, under a fresh uid with `spec.name`.
///
/// # Errors
///
/// [`Error::Spawn`] if the process cannot start, ends or does not connect back
/// within the spawn timeout, or cannot be configured; [`Error::Cancelled`]
/// when `cancel` fires first. A process that started is killed and reaped
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
    let connected = actor.children.expect(&uid, token.clone());

    let mut cmd = tokio::process::Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    // The parent's arguments, so a program that parses them before
    // `actor::run` parses them alike in every actor.
    cmd.args(spawn::child_args());
    cmd.env(spawn::ENV_PARENT, actor.listen.to_string())
        .env(spawn::ENV_NAME, &uid.name)
        .env(spawn::ENV_ID, &uid.id)
        .env(spawn::ENV_TOKEN, token.to_hex())
        .env(spawn::ENV_PPID, std::process::id().to_string())
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .envs(tls_env(actor.config.tls.as_ref()).map_err(&spawn_err)?)
        .stdin(std::process::Stdio::null());
    let mut proc = match actor.spawner.spawn(cmd).await {
        Ok(p) => p,
        Err(e) => {
            actor.children.forget(&uid);
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
        _ = cancel.cancelled() => Err(cancelled()),
    };
    let mut channel = match channel {
        Ok(c) => c,
        Err(e) => {
            actor.children.forget(&uid);
            if let Err(io) = proc.kill().await {
                tracing::warn!(error = %io, "cannot reap a child that failed to start");
            }
            return Err(e);
        }
    };
    let init = ChildInit::new(
        &actor.config,
        spec.main.is_some(),
        spec.expose.clone(),
        spec.state.clone(),
        actor.arbiter_addr(),
    );
    let init = encode(&init, || "the child's configuration".into())?;
    if let Err(e) = channel.send(&Msg::Init { config: init }).await {
        let _ = proc.kill().await;
        return Err(spawn_err(format!("cannot send the configuration: {e}")));
    }
    let conn = link::start(channel, uid, actor_transport::Side::Acceptor, Peer::Child, actor.clone());
    tracing::debug!(child = %conn.peer(), pid = proc.pid(), "spawned");
    // The main call goes out before anyone holds the portal, so it is the
    // first call the child sees from its parent: that is how it knows it.
    let open = |func: &'static str, args: Bytes| {
        let conn = conn.clone();
        async move {
            match spec.deadline {
                Some(at) => crate::deadline::within(at, conn.open(func, CallKind::Single, args)).await,
                None => conn.open(func, CallKind::Single, args).await,
            }
        }
    };
    let main = match &spec.main {
        Some((func, args)) => match open(func, args.clone()).await {
            Ok(opened) => Some((*func, opened)),
            Err(e) => {
                let _ = proc.kill().await;
                return Err(spawn_err(format!("cannot start the main function: {e}")));
            }
        },
        None => None,
    };
    Ok(Launched { proc, process: Incarnation::new(conn), main })
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
