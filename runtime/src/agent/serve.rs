//! The agent's side: a daemon actor that starts programs of its allow-list
//! for parents of the tree and watches each as its own child.
//!
//! A parent asks with the [`SPAWN_FN`] context call. The agent starts the
//! program with the spawn spec in its environment, so the new process
//! connects back to that parent and proves its one-time token exactly as a
//! local child does; the agent only owns the process: it reaps it, reports
//! its wait status as the call's result, signals its process group when the
//! parent says so, and, if the call ends any other way (the parent's channel
//! broke or went silent past the peer timeout, the parent cancelled, the
//! agent is stopping), stops the group itself: SIGTERM, then SIGKILL after
//! the orphan grace. The child is started like any child actor, with
//! `PR_SET_PDEATHSIG`, so it also dies with the agent.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use actor_transport::{Addr, Secret};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::config::AgentConfig;
use super::host;
use super::keeper::{Kept, Place, keep};
use super::wire::{AGENT_NAME, Control, HostInfo, INFO_FN, SPAWN_FN, SpawnRequest, Spawned};
use crate::config::{Config, ENV_HOST};
use crate::conn::ServedIo;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::local::{self, Actor};
use crate::registry::{self, Failure, Handler, Served};
use crate::spawn;

/// The most arguments and environment variables one request may carry.
const MAX_ARGS: usize = 4096;
const MAX_ENV: usize = 1024;
/// The bytes of arguments and environment one spawn request may carry.
const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// The agent of this process.
struct Agent {
    config: AgentConfig,
    children: Arc<AtomicU32>,
}

static AGENT: OnceLock<Agent> = OnceLock::new();

/// Runs this process as the host agent `agent` describes, until SIGTERM or
/// Ctrl-C: it joins the tree's arbiter (it never hosts one) under the name
/// [`AGENT_NAME`](super::AGENT_NAME), and starts the programs it allows for
/// any parent that proves the tree's secret or certificate, each as its own
/// child in its own process group. `ready` is called once the agent
/// serves, with what it advertises. When the agent stops, every child it
/// runs is stopped (SIGTERM, then SIGKILL after the orphan grace).
///
/// `config` is as for [`run_with`](crate::run_with): the listening address
/// (`ACTOR_BIND`: an address of this host that parents on other hosts can
/// reach, with TLS), the arbiter, the secret or TLS files, the peer timeout
/// (`ACTOR_PEER_TIMEOUT`), which bounds how long a partitioned parent's
/// children outlive the partition. Its name is replaced by
/// [`AGENT_NAME`](super::AGENT_NAME).
///
/// # Errors
///
/// [`Error::Config`] for an invalid `agent` (an empty allow-list, a program
/// that is not an executable file, a bad host name or label), for a
/// private arbiter (an agent joins the tree's arbiter), or if an agent
/// already runs in this process; otherwise as [`run_with`](crate::run_with).
pub fn run<F: FnOnce(&HostInfo)>(config: Config, agent: AgentConfig, ready: F) -> Result<()> {
    if crate::run::is_child() {
        // An actor spawned from a program that calls this serves its
        // parent, never as an agent; `run_with` does not return there.
        return crate::run::run_with(config, async { Ok(()) });
    }
    let agent = agent.validated().map_err(|e| Error::Config(format!("host agent: {e}")))?;
    if config.private_arbiter {
        return Err(Error::Config(
            "host agent: an agent joins the tree's arbiter and cannot host a private one; set \
             ACTOR_ARBITER to the arbiter's address"
                .into(),
        ));
    }
    let mut config = config.name(AGENT_NAME);
    config.embed_arbiter = false;
    AGENT
        .set(Agent { config: agent, children: Arc::new(AtomicU32::new(0)) })
        .map_err(|_| Error::Config("host agent: an agent already runs in this process".into()))?;
    crate::run::run_with(config, async move {
        let actor = local::current()?;
        let agent = AGENT.get().ok_or(Error::NotRunning)?;
        let info = agent.describe(&actor);
        tracing::info!(host = %info.name, addr = %actor.listen, programs = ?info.programs, "host agent serving");
        ready(&info);
        crate::run::serve().await
    })
}

/// The host's name, when this process is an agent.
pub(crate) fn host_name() -> Option<String> {
    Some(AGENT.get()?.config.host.clone())
}

/// The handler of agent function `func`, when this process is an agent.
pub(crate) fn handler(func: &str) -> Option<Handler> {
    AGENT.get()?;
    match func {
        INFO_FN => Some(Handler::Single(info_call)),
        SPAWN_FN => Some(Handler::Context(spawn_call)),
        _ => None,
    }
}

impl Agent {
    fn describe(&self, actor: &Actor) -> HostInfo {
        let (memory_available, memory_total) = host::memory();
        let bind_host = match (&self.config.child_bind, &actor.listen) {
            (Some(h), _) => h.clone(),
            (None, Addr::Tcp { host, .. }) => host.clone(),
            (None, Addr::Unix(_)) => "127.0.0.1".into(),
        };
        HostInfo {
            name: self.config.host.clone(),
            labels: self.config.labels.clone(),
            cores: host::cores(),
            memory_available,
            memory_total,
            children: self.children.load(Ordering::SeqCst),
            programs: self.config.programs.keys().cloned().collect(),
            child_bind: Addr::Tcp { host: bind_host, port: 0 },
        }
    }

    /// Takes one of the `max_children` places, given back when the
    /// returned guard drops.
    fn reserve(&self) -> std::result::Result<Place, Refused> {
        let max = self.config.max_children;
        self.children
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .map_err(|_| Refused::Full { host: self.config.host.clone(), max })?;
        Ok(Place(self.children.clone()))
    }

    /// The command that starts what `req` asks for, as a child of `actor`
    /// connecting back to the requesting parent.
    fn command(
        &self,
        actor: &Actor,
        req: &SpawnRequest,
    ) -> std::result::Result<tokio::process::Command, Refused> {
        let path = self.config.programs.get(&req.program).ok_or_else(|| Refused::NotAllowed {
            program: req.program.clone(),
            host: self.config.host.clone(),
            allowed: self.config.programs.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        spawn::validate_name(&req.actor.name).map_err(|e| Refused::Invalid(e.to_string()))?;
        let id = &req.actor.id;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Refused::Invalid(format!("the uid id {id:?} is not 1 to 64 letters and digits")));
        }
        Secret::parse_hex(&req.token).map_err(|e| Refused::Invalid(format!("the spawn token: {e}")))?;
        if req.args.len() > MAX_ARGS || req.env.len() > MAX_ENV {
            return Err(Refused::Invalid(format!(
                "{} arguments and {} environment variables; at most {MAX_ARGS} and {MAX_ENV}",
                req.args.len(),
                req.env.len()
            )));
        }
        let bytes: usize = req.args.iter().map(String::len).sum::<usize>()
            + req.env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if bytes > MAX_REQUEST_BYTES {
            return Err(Refused::Invalid(format!(
                "{bytes} bytes of arguments and environment; at most {MAX_REQUEST_BYTES}"
            )));
        }
        if req.args.iter().any(|a| a.contains('\0')) {
            return Err(Refused::Invalid("an argument contains a NUL byte".into()));
        }
        for (k, v) in &req.env {
            check_env(k, v)?;
        }
        let tls = spawn::tls_env(actor.config.tls.as_ref()).map_err(Refused::Invalid)?;
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(&req.args)
            .envs(req.env.iter().map(|(k, v)| (k, v)))
            .env(spawn::ENV_PARENT, req.parent.to_string())
            .env(spawn::ENV_NAME, &req.actor.name)
            .env(spawn::ENV_ID, id)
            .env(spawn::ENV_TOKEN, &req.token)
            .env(spawn::ENV_PPID, std::process::id().to_string())
            // Arranged handshakes are for children spawned by their parent
            // itself; one this agent inherited is not for them.
            .env_remove(spawn::ENV_ARRANGED)
            .env(ENV_HOST, &self.config.host)
            .envs(tls)
            .stdin(std::process::Stdio::null());
        Ok(cmd)
    }
}

/// Prefixes of variables a parent may not set on another host: the spawn
/// spec and TLS files (the agent sets them), the dynamic loader's and the
/// shell's (they run code the allow-list does not name).
const RESERVED_PREFIXES: [&str; 4] = ["ACTOR_SPAWN_", "ACTOR_TLS_", "LD_", "BASH"];

/// Variables a parent may not set on another host: the runtime's own that
/// carry identity, trust or the tree's cleanup (the agent's host name, the
/// token, the helper watcher's tag, plaintext exposure), and those with
/// which a shell, libc or `Command::new("name")` would run something else.
const RESERVED: [&str; 17] = [
    ENV_HOST,
    crate::ENV_TREE,
    crate::tree_watch::ENV_WATCH,
    "ACTOR_TOKEN",
    "ACTOR_TOKEN_FILE",
    "ACTOR_INSECURE",
    "PATH",
    "IFS",
    "ENV",
    "SHELLOPTS",
    "PS4",
    "GCONV_PATH",
    "HOSTALIASES",
    "LOCPATH",
    "NLSPATH",
    "RES_OPTIONS",
    "LOCALDOMAIN",
];

/// Refuses environment variables a parent may not set: a name that is not
/// a plain identifier (letters, digits, `_`; so no exported shell
/// functions), or one of [`RESERVED`] and [`RESERVED_PREFIXES`].
fn check_env(key: &str, value: &str) -> std::result::Result<(), Refused> {
    let identifier = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let reserved = RESERVED.contains(&key) || RESERVED_PREFIXES.iter().any(|p| key.starts_with(p));
    if !identifier || value.contains('\0') || reserved {
        return Err(Refused::Env(key.to_owned()));
    }
    Ok(())
}

/// Why an agent refused a spawn.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("program `{program}` is not on the allow-list of host `{host}` (it allows: {allowed})")]
    NotAllowed { program: String, host: String, allowed: String },
    #[error(
        "the environment variable `{0}` may not be set on another host (names must be letters, digits \
         and `_`; the agent sets the spawn spec, TLS files, host name and tree tag itself, and refuses \
         the token's, the dynamic loader's, the shell's and PATH)"
    )]
    Env(String),
    #[error("host `{host}` already runs its maximum of {max} children")]
    Full { host: String, max: u32 },
    #[error("invalid spawn request: {0}")]
    Invalid(String),
    #[error("cannot start {path}: {source}")]
    Exec { path: String, source: std::io::Error },
}

impl From<Refused> for Failure {
    fn from(r: Refused) -> Failure {
        Failure::Failed(Error::from_boxed(Box::new(r), "actor::agent::Refused"))
    }
}

fn info_call(_args: Bytes) -> Served {
    Box::pin(async move {
        let actor = local::current().map_err(Failure::Failed)?;
        let agent = AGENT.get().ok_or(Failure::Failed(Error::NotRunning))?;
        registry::encode(&agent.describe(&actor), || format!("the result of `{INFO_FN}`"))
            .map_err(Failure::Failed)
    })
}

fn spawn_call(args: Bytes, io: ServedIo) -> Served {
    Box::pin(spawn_served(args, io))
}

/// Serves one [`SPAWN_FN`] call: starts the child, answers with its pid,
/// passes the parent's orders to its keeper, and returns how it ended.
async fn spawn_served(args: Bytes, io: ServedIo) -> std::result::Result<Bytes, Failure> {
    let (req,): (SpawnRequest,) = registry::decode_args(SPAWN_FN, &args)?;
    // Neither the request nor its encoding is kept while the child runs:
    // what a parent sends must not stay in the agent's memory for as long.
    drop(args);
    let actor = local::current().map_err(Failure::Failed)?;
    let agent = AGENT.get().ok_or(Failure::Failed(Error::NotRunning))?;
    let parent = io.conn.peer().clone();
    let place = agent.reserve()?;
    let cmd = agent.command(&actor, &req)?;
    let proc = actor.spawner.spawn(cmd).await.map_err(|source| Refused::Exec {
        path: agent.config.programs.get(&req.program).map(|p| p.display().to_string()).unwrap_or_default(),
        source,
    })?;
    let pid = u32::try_from(proc.pid()).unwrap_or_default();
    tracing::info!(child = %req.actor, %parent, pid, program = %req.program, "started a child");
    let (orders, orders_rx) = mpsc::unbounded_channel();
    let (report, exit) = oneshot::channel();
    let child = req.actor.clone();
    drop(req);
    let kept = Kept {
        child,
        parent,
        orders: orders_rx,
        report,
        grace: agent.config.orphan_grace,
        stopping: actor.token().clone(),
        _place: place,
    };
    actor.spawn(keep(proc, kept));
    // From here on, however this call ends early (an error below, or the
    // call dropped: its channel broke, the parent cancelled it, the agent
    // stops), `orders` drops and the keeper stops the child.
    let mut ctx: Context<Spawned, (), Control> = Context::new(io);
    ctx.started(Spawned { pid }).await.map_err(Failure::Failed)?;
    let (_to_parent, mut from_parent) = ctx.stream().map_err(Failure::Failed)?;
    let mut listening = true;
    tokio::pin!(exit);
    loop {
        tokio::select! {
            order = from_parent.recv(), if listening => match order {
                Some(Ok(order)) => {
                    let _ = orders.send(order);
                }
                // The parent closed its half, or the call is ending (then
                // this task is cancelled, which the keeper sees).
                _ => listening = false,
            },
            ended = &mut exit => {
                let ended = ended.map_err(|_| Failure::Failed(Error::msg("the child's keeper stopped without a report")))?;
                return registry::encode(&ended, || format!("the result of `{SPAWN_FN}`")).map_err(Failure::Failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_malformed_environment_is_refused() {
        for (k, v) in [
            ("ACTOR_SPAWN_PARENT", "x"),
            ("ACTOR_TLS_CA", "/x"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("ACTOR_HOST", "elsewhere"),
            ("", "x"),
            ("A=B", "x"),
            ("A", "nul\0"),
            ("BASH_FUNC_exec%%", "() { id; }"),
            ("BASH_ENV", "/tmp/x"),
            ("PATH", "/tmp/evil"),
            ("ACTOR_TREE", "mine"),
            ("ACTOR_TREE_WATCH", "123.abc"),
            ("ACTOR_TOKEN", "00"),
            ("ACTOR_INSECURE", "1"),
            ("9LIVES", "x"),
        ] {
            assert!(check_env(k, v).is_err(), "{k}={v}");
        }
        assert!(check_env("RUST_LOG", "debug").is_ok());
        assert!(check_env("ACTOR_LOG", "info").is_ok());
        assert!(check_env("_private_setting", "1").is_ok());
    }
}
