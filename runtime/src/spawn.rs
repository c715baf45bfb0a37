//! Child processes: starting them from a long-lived thread, signalling their
//! process groups, and reaping whatever is re-parented to us.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, so
//! spawns happen on a thread that lives as long as the process: the main
//! thread, where an actor's tasks run unless `ACTOR_THREADS` asks for more,
//! or else one dedicated thread (started on the first spawn from another
//! thread). Each child leads
//! its own process group, so a terminal's Ctrl-C reaches only the root (which
//! then cancels the tree in order) and signals sent to a child's group also
//! reach helpers it forgot.
//!
//! The child arms its parent-death signal itself, first thing in
//! `actor::run` ([`parent_death::arm`]), rather than in a `pre_exec` hook:
//! a `pre_exec` closure makes the standard library fork (copying the page
//! tables of a parent that grows with every actor it holds). A nursery's
//! children are started by [`clone_spawn`], a vfork that also leaves the
//! parent's descriptor table uncopied, so a spawn costs the same whatever
//! the parent holds. A host agent's children still go through tokio's
//! `Command` (`posix_spawn`).

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::{clone_spawn, fork_server};

/// Environment variables of the spawn spec a parent hands its child.
pub(crate) const ENV_PARENT: &str = "ACTOR_SPAWN_PARENT";
pub(crate) const ENV_NAME: &str = "ACTOR_SPAWN_NAME";
pub(crate) const ENV_ID: &str = "ACTOR_SPAWN_ID";
pub(crate) const ENV_TOKEN: &str = "ACTOR_SPAWN_TOKEN";
pub(crate) const ENV_PPID: &str = "ACTOR_SPAWN_PPID";
/// `NONCE:PARENT_ID:PARENT_NAME`: the parent's uid and the nonce its
/// handshake answers with, so the child sends its proof without waiting
/// (see [`actor_transport::Arranged`]). Set for children spawned here, not
/// through an agent; a child without it handshakes the long way.
pub(crate) const ENV_ARRANGED: &str = "ACTOR_SPAWN_ARRANGED";
/// What the names of the spawn spec's variables begin with.
const SPEC_PREFIX: &str = "ACTOR_SPAWN_";

/// The value of [`ENV_ARRANGED`].
pub(crate) fn arranged_env(nonce: &actor_transport::Nonce, parent: &actor_transport::Uid) -> String {
    format!("{}:{}:{}", nonce.to_hex(), parent.id, parent.name)
}

/// Whether [`arranged_env`] can carry `parent`: an environment variable
/// holds no NUL byte, and the id ends at the first `:`. A root's name is
/// the user's, unchecked.
pub(crate) fn arrangeable(parent: &actor_transport::Uid) -> bool {
    !parent.name.contains('\0') && !parent.id.contains(['\0', ':'])
}

/// Reads a value of [`ENV_ARRANGED`]: the nonce and the parent's uid.
pub(crate) fn parse_arranged(v: &str) -> Option<(actor_transport::Nonce, actor_transport::Uid)> {
    let mut parts = v.splitn(3, ':');
    let nonce = actor_transport::Nonce::from_hex(parts.next()?)?;
    let id = parts.next()?.to_owned();
    let name = parts.next()?.to_owned();
    Some((nonce, actor_transport::Uid { name, id }))
}

/// The longest actor name accepted, in bytes. Names travel in every uid,
/// log line and registry entry; longer ones are almost surely a mistake.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Checks a name asked for at spawn. A uid prints as `name#id`, so `#` would
/// make uids ambiguous; whitespace and control characters would make logs,
/// `ps` output and registry listings misleading.
pub(crate) fn validate_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty".to_owned()
    } else if name.len() > MAX_NAME_LEN {
        format!("it is {} bytes long, more than {MAX_NAME_LEN}", name.len())
    } else if name.contains('#') {
        "it contains `#`, which separates a name from its id in a uid".to_owned()
    } else if name.chars().any(char::is_whitespace) {
        "it contains whitespace".to_owned()
    } else if name.chars().any(char::is_control) {
        "it contains a control character".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { name: name.to_owned(), reason })
}

/// Names this process `actor:NAME` (cut to the kernel's 15 bytes), which is
/// what `ps`, `top` and /proc/PID/comm show, so each actor of a tree can be
/// told apart. Best effort: a failure only costs the nicer name.
pub(crate) fn set_process_name(name: &str) {
    let full = format!("actor:{name}");
    let mut end = full.len().min(15);
    while !full.is_char_boundary(end) {
        end -= 1;
    }
    // Validated names hold no NUL; should one slip through, keep the old name.
    if let Ok(c) = std::ffi::CString::new(&full[..end]) {
        let _ = nix::sys::prctl::set_name(&c);
    }
}

/// The arguments a child is started with: the parent's own (after argv[0]),
/// so a program that parses its arguments before `actor::run` parses them the
/// same way in every actor instead of exiting on a missing one.
pub(crate) fn child_args() -> impl Iterator<Item = std::ffi::OsString> {
    std::env::args_os().skip(1)
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs process spawns on one thread that never exits before the process,
/// started on the first spawn.
pub(crate) struct Spawner {
    runtime: tokio::runtime::Handle,
    jobs: OnceLock<Mutex<mpsc::Sender<Job>>>,
    forks: Arc<Mutex<Forks>>,
}

/// This process's fork server (see [`fork_server`]).
enum Forks {
    /// None started yet: the first spawn starts one.
    Unstarted,
    Running(Box<ForkServer>),
    /// Stopped, refused or failed: children are executed.
    Off,
}

/// A fork server and its process.
struct ForkServer {
    client: fork_server::Client,
    process: ChildProcess,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pids we spawned and have not reaped yet; the orphan reaper leaves them alone.
static OWN_CHILDREN: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn own_children() -> std::sync::MutexGuard<'static, Option<HashSet<i32>>> {
    lock(&OWN_CHILDREN)
}

impl Spawner {
    /// A spawner whose thread, once started, enters `runtime` so tokio can
    /// register the children for reaping.
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Spawner {
        let forks = match std::env::var_os(crate::config::ENV_NO_FORK_SERVER) {
            Some(v) if v == "1" => Forks::Off,
            _ => Forks::Unstarted,
        };
        Spawner { runtime, jobs: OnceLock::new(), forks: Arc::new(Mutex::new(forks)) }
    }

    /// The spawner thread's queue, starting the thread on first use.
    fn jobs(&self) -> io::Result<&Mutex<mpsc::Sender<Job>>> {
        if let Some(jobs) = self.jobs.get() {
            return Ok(jobs);
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = self.runtime.clone();
        // Two spawns racing here may both start a thread; the loser's queue
        // is dropped unused, which ends its thread at once.
        std::thread::Builder::new().name("actor-spawner".into()).spawn(move || {
            let _guard = handle.enter();
            for job in rx {
                job();
            }
        })?;
        Ok(self.jobs.get_or_init(|| Mutex::new(tx)))
    }

    /// Spawns `cmd` in a process group of its own: at once when called on
    /// the process's main thread (which lives as long as the process, so
    /// the child's parent-death signal fires only when the process dies),
    /// else on the spawner thread. The child arms its parent-death signal
    /// itself (see the module doc).
    pub(crate) async fn spawn(&self, mut cmd: tokio::process::Command) -> io::Result<ChildProcess> {
        cmd.process_group(0);
        self.on_long_lived_thread(move || spawn_now(cmd)).await
    }

    /// Starts `program` as [`spawn`](Self::spawn) does a command, without
    /// copying this process's descriptors into the child
    /// ([`clone_spawn`]): a root holding many actors spawns as fast as one
    /// holding none.
    ///
    /// Once this process's fork server is ready, the child is forked
    /// from it instead ([`fork_server`]).
    pub(crate) async fn start(&self, program: clone_spawn::Program) -> io::Result<ChildProcess> {
        let forks = self.forks.clone();
        self.on_long_lived_thread(move || fork_or_start(&forks, &program)).await
    }

    /// Stops the fork server, if one runs, and reaps it (bounded). For the
    /// end of the actor: a spawn after this executes its child.
    pub(crate) async fn stop_fork_server(&self) {
        let stopped = std::mem::replace(&mut *lock(&self.forks), Forks::Off);
        if let Forks::Running(server) = stopped {
            let ForkServer { client, mut process } = *server;
            // Its end of the pair reads end-of-file: it exits on its own.
            drop(client);
            if tokio::time::timeout(FORK_SERVER_EXIT_BOUND, process.wait()).await.is_err() {
                let _ = process.kill().await;
            }
        }
    }

    async fn on_long_lived_thread(
        &self,
        spawn: impl FnOnce() -> io::Result<ChildProcess> + Send + 'static,
    ) -> io::Result<ChildProcess> {
        // An actor's tasks run on the main thread unless ACTOR_THREADS asks
        // for more. Spawning right here saves the two thread wake-ups of a
        // trip to the spawner thread and back (each, at worst, the wake-up
        // of a halted vCPU).
        if nix::unistd::gettid() == nix::unistd::getpid() {
            return spawn();
        }
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The requester may have given up; the child is then killed on drop.
            let _ = tx.send(spawn());
        });
        lock(self.jobs()?).send(job).map_err(|_| io::Error::other("the spawner thread is gone"))?;
        rx.await.map_err(|_| io::Error::other("the spawner thread dropped the request"))?
    }
}

/// Spawns `cmd` from this thread and records the child as ours.
fn spawn_now(mut cmd: tokio::process::Command) -> io::Result<ChildProcess> {
    // Held across the spawn: the orphan reaper, finding a child that
    // died at once, waits to learn it is ours before reaping it.
    let mut own = own_children();
    cmd.spawn().and_then(|child| {
        let pid = child.id().ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
        own.get_or_insert_with(HashSet::new).insert(pid as i32);
        Ok(ChildProcess { pid: pid as i32, exit: Exit::Tokio(child), swept: false })
    })
}

/// How long a fork server told to stop has to exit before it is killed.
const FORK_SERVER_EXIT_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// Forks `program` from the fork server if it is ready, else starts it
/// from this thread (and starts the fork server after the first such
/// child, so that child is not delayed by it).
fn fork_or_start(forks: &Mutex<Forks>, program: &clone_spawn::Program) -> io::Result<ChildProcess> {
    let mut forks = lock(forks);
    if let Forks::Running(server) = &mut *forks {
        match try_fork(&mut server.client, program) {
            Ok(Some(child)) => return Ok(child),
            Ok(None) => {}
            Err(Gone::Stale) => *forks = Forks::Unstarted,
            Err(Gone::Unused(why)) => {
                tracing::debug!(%why, "the fork server is gone; children are executed");
                *forks = Forks::Off;
            }
            Err(Gone::Failed(e)) => {
                *forks = Forks::Off;
                return Err(e);
            }
        }
    }
    let started = start_now(program);
    if started.is_ok() && matches!(*forks, Forks::Unstarted) {
        *forks = start_fork_server(program);
    }
    started
}

/// Why a fork server is dropped.
enum Gone {
    /// Its children would no longer start as executed ones: replace it.
    Stale,
    /// It never took the request, or forked nothing: the child can be
    /// executed instead.
    Unused(String),
    /// It took the request and failed it.
    Failed(io::Error),
}

/// The child forked by a ready server; `None` if the server is not ready
/// yet or declines this request.
fn try_fork(
    client: &mut fork_server::Client,
    program: &clone_spawn::Program,
) -> Result<Option<ChildProcess>, Gone> {
    match client.readiness() {
        fork_server::Readiness::Ready => {}
        fork_server::Readiness::Starting => return Ok(None),
        fork_server::Readiness::Gone(why) => return Err(Gone::Unused(why)),
    }
    // Held across the request, as in `spawn_now`: the child is our own.
    let mut own = own_children();
    match client.fork(program) {
        Ok(fork_server::Forked::Child { pid, pidfd }) => {
            // The child puts itself in a group of its own too; doing it here
            // as well means the group exists before the spawn returns, for
            // a kill that follows at once (a child never executes, so this
            // cannot fail with EACCES).
            let _ = nix::unistd::setpgid(Pid::from_raw(pid), Pid::from_raw(pid));
            watch(pid, pidfd, &mut own).map(Some).map_err(Gone::Failed)
        }
        Ok(fork_server::Forked::Declined) => Ok(None),
        Ok(fork_server::Forked::Stale) => Err(Gone::Stale),
        Ok(fork_server::Forked::Useless(why)) => Err(Gone::Unused(why)),
        Err(e) => Err(Gone::Failed(e)),
    }
}

/// Starts a fork server for children run as `like`, in this process's
/// environment without its own spawn spec.
fn start_fork_server(like: &clone_spawn::Program) -> Forks {
    let env = std::env::vars_os().filter(|(name, _)| !name.as_bytes().starts_with(SPEC_PREFIX.as_bytes()));
    let started = fork_server::Client::start(like, env, |server| {
        let started = clone_spawn::start(server)?;
        watch(started.pid, started.pidfd, &mut own_children())
    });
    match started {
        Ok((client, process)) => Forks::Running(Box::new(ForkServer { client, process })),
        Err(e) => {
            tracing::debug!(error = %e, "cannot start a fork server; children are executed");
            Forks::Off
        }
    }
}

/// Starts `program` from this thread and records the child as ours.
/// Where this system cannot (an old kernel, a seccomp filter), the
/// standard library's way.
fn start_now(program: &clone_spawn::Program) -> io::Result<ChildProcess> {
    match start_watched(program) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            tracing::debug!(error = %e, "starting the child through posix_spawn");
            spawn_now(program.command())
        }
        started => started,
    }
}

fn start_watched(program: &clone_spawn::Program) -> io::Result<ChildProcess> {
    // Held across the spawn, as in `spawn_now`.
    let mut own = own_children();
    let started = clone_spawn::start(program)?;
    watch(started.pid, started.pidfd, &mut own)
}

/// Our child `pid`, watched through its pidfd, and recorded as ours in
/// `own` (held since before it was started).
fn watch(pid: i32, pidfd: OwnedFd, own: &mut Option<HashSet<i32>>) -> io::Result<ChildProcess> {
    // SAFETY: the `OwnedFd` stays open, and the same descriptor, for as long
    // as the `AsyncFd` that owns it.
    match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
        Ok(fd) => {
            own.get_or_insert_with(HashSet::new).insert(pid);
            Ok(ChildProcess { pid, exit: Exit::Pidfd { fd, status: None }, swept: false })
        }
        Err(e) => {
            // Linux 5.2 gives pidfds that cannot be polled. A forked child
            // may not lead its group yet.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("cannot watch the child's pidfd: {}", e.into_parts().1),
            ))
        }
    }
}

/// A spawned child process. Dropping it unreaped kills its process group.
pub(crate) struct ChildProcess {
    pid: i32,
    exit: Exit,
    /// Whether the group was killed after the child was reaped.
    swept: bool,
}

/// How a child's exit is learnt and its status collected.
enum Exit {
    /// Spawned through tokio, which reaps it.
    Tokio(tokio::process::Child),
    /// Started by [`clone_spawn`]: its pidfd turns readable when it exits,
    /// and it is reaped here.
    Pidfd { fd: AsyncFd<OwnedFd>, status: Option<ExitStatus> },
}

/// Reaps `pid` if it has exited.
fn try_reap(pid: i32) -> io::Result<Option<ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG writes only `status`.
    match unsafe { nix::libc::waitpid(pid, &mut status, nix::libc::WNOHANG) } {
        0 => Ok(None),
        p if p == pid => Ok(Some(ExitStatus::from_raw(status))),
        _ => Err(io::Error::last_os_error()),
    }
}

impl ChildProcess {
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` to the child's process group. A group that is already gone
    /// is not an error.
    pub(crate) fn signal_group(&self, sig: Signal) {
        match killpg(Pid::from_raw(self.pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid = self.pid, signal = ?sig, error = %e, "cannot signal child group"),
        }
    }

    /// Waits for the child to exit, reaps it, then kills what is left of its
    /// process group: helpers the child started and left behind must not
    /// outlive it, however it ended (returned, crashed, cancelled, killed).
    ///
    /// # Errors
    ///
    /// The error of waiting for the child.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = match &mut self.exit {
            Exit::Tokio(child) => child.wait().await?,
            Exit::Pidfd { fd, status } => match status {
                Some(done) => *done,
                None => {
                    let done = wait_pidfd(self.pid, fd).await?;
                    *status = Some(done);
                    done
                }
            },
        };
        forget(self.pid);
        if !self.swept {
            self.swept = true;
            // The group id stays allocated while any member lives, so this
            // reaches the child's helpers; an empty group answers ESRCH (its
            // id would have to be handed to a new group leader in between,
            // which pid allocation makes practically impossible).
            self.signal_group(Signal::SIGKILL);
        }
        Ok(status)
    }

    /// Kills the group and reaps the child.
    pub(crate) async fn kill(&mut self) -> io::Result<ExitStatus> {
        self.signal_group(Signal::SIGKILL);
        self.wait().await
    }
}

/// Waits for `pid`, whose pidfd is `fd`, to exit, and reaps it.
async fn wait_pidfd(pid: i32, fd: &AsyncFd<OwnedFd>) -> io::Result<ExitStatus> {
    loop {
        if let Some(status) = try_reap(pid)? {
            return Ok(status);
        }
        fd.readable().await?.clear_ready();
    }
}

/// Forgets `pid`: reaped, or to be reaped by the orphan reaper.
fn forget(pid: i32) {
    if let Some(set) = own_children().as_mut() {
        set.remove(&pid);
    }
}

/// Reaps `pid`, just killed, on a thread of its own that lives as long as
/// the process: a task could be dropped unpolled by a runtime shutting down.
fn reap_later(pid: i32) {
    static REAPER: OnceLock<Option<Mutex<mpsc::Sender<i32>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<i32>();
        let thread = std::thread::Builder::new().name("actor-reaper".into()).spawn(move || {
            for pid in rx {
                // A killed child exits at once; blocking here holds up only
                // the next of these.
                let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
                forget(pid);
            }
        });
        thread.ok().map(|_| Mutex::new(tx))
    });
    let sent = reaper.as_ref().is_some_and(|tx| lock(tx).send(pid).is_ok());
    if !sent {
        // The SIGCHLD reaper takes it once it no longer counts as ours.
        forget(pid);
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        match &mut self.exit {
            Exit::Tokio(child) => {
                if let Ok(None) = child.try_wait() {
                    self.signal_group(Signal::SIGKILL);
                }
            }
            Exit::Pidfd { status: Some(_), .. } => {}
            Exit::Pidfd { status: None, .. } => match try_reap(self.pid) {
                Ok(None) => {
                    self.signal_group(Signal::SIGKILL);
                    reap_later(self.pid);
                }
                // Reaped now, or by someone else already (whose pid may
                // since name another process: no signal).
                Ok(Some(_)) | Err(_) => forget(self.pid),
            },
        }
    }
}

/// The environment that gives a child the tree's TLS files.
pub(crate) fn tls_env(
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

/// Describes how a process ended, for error messages.
pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({})", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => format!("{status}"),
    }
}

/// Makes this process a subreaper, so descendants orphaned by a crashed child
/// are re-parented here rather than to init, and reaps them as they exit.
pub(crate) fn reap_orphans() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!(error = %e, "cannot become a subreaper");
        return;
    }
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot watch SIGCHLD");
            return;
        }
    };
    tokio::spawn(async move {
        while sigchld.recv().await.is_some() {
            reap_foreign_zombies();
        }
    });
}

/// Reaps zombie children of this process that were re-parented to it.
///
/// Our own children are left to whoever waits for them: the actors we
/// spawned (tokio reaps those), and processes the program started itself
/// (`std::process::Command`, `tokio::process::Command`), whose `wait` would
/// fail with ECHILD if we took their status first. Those share our process
/// group; orphans re-parented here come from our actors' groups (each actor
/// leads its own), so only zombies in another group are reaped. A process
/// this program started in a group of its own (`process_group(0)`, `setsid`)
/// looks like an orphan: wait for it before it can become a zombie here, or
/// expect it reaped.
///
/// This runs on every SIGCHLD, so once per exit of a child: it reads the
/// kernel's list of our children and looks closer only at those we did not
/// spawn, so a root tearing down a thousand actors does not read a thousand
/// /proc entries per exit.
fn reap_foreign_zombies() {
    let our_group = nix::unistd::getpgrp().as_raw();
    let candidates = match children() {
        Some(mut pids) => {
            if let Some(own) = own_children().as_ref() {
                pids.retain(|pid| !own.contains(pid));
            }
            pids
        }
        // Without the lists, every process is a candidate.
        None => all_pids(),
    };
    let me = std::process::id() as i32;
    for pid in candidates {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may contain spaces; the fields we need follow its ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let mut fields = rest.split_whitespace();
        let (Some(state), Some(ppid), Some(group)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if state != "Z" || ppid.parse::<i32>() != Ok(me) || group.parse::<i32>() == Ok(our_group) {
            continue;
        }
        // Checked again after the zombie was seen: a child spawned since the
        // candidates were listed is recorded before the spawner lets go.
        if own_children().as_ref().is_some_and(|s| s.contains(&pid)) {
            continue;
        }
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
}

/// This process's children, from the `children` list of each of its threads
/// (a child belongs to the thread that started it; an orphan is re-parented
/// to one of them). `None` if the kernel keeps no such lists
/// (`CONFIG_PROC_CHILDREN`).
fn children() -> Option<Vec<i32>> {
    let me = std::process::id();
    // The main thread's list exists whenever the kernel keeps them.
    std::fs::metadata(format!("/proc/self/task/{me}/children")).ok()?;
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread that exited meanwhile handed its children to another.
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else { continue };
        pids.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    Some(pids)
}

/// Every process id in /proc.
fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arranged_parent_name_may_hold_colons_but_not_nul() {
        let nonce = actor_transport::Nonce::random();
        let parent = actor_transport::Uid { name: "a:b:".into(), id: "00000000000000a1".into() };
        assert!(arrangeable(&parent));
        assert_eq!(parse_arranged(&arranged_env(&nonce, &parent)), Some((nonce, parent)));
        let nul = actor_transport::Uid { name: "a\0b".into(), id: "00000000000000a1".into() };
        let colon_id = actor_transport::Uid { name: "a".into(), id: "00:a1".into() };
        assert!(!arrangeable(&nul) && !arrangeable(&colon_id));
    }

    fn state(pid: i32) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(stat.rsplit_once(')')?.1.split_whitespace().next()?.to_owned())
    }

    /// A child dropped while its runtime shuts down (the task holding it is
    /// dropped unpolled) is still killed, reaped and forgotten. From the
    /// review of the clone spawn.
    #[test]
    fn a_child_dropped_by_a_runtime_shutting_down_is_reaped() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let pid = rt.block_on(async {
            let args = ["sleep", "30"].map(std::ffi::OsString::from);
            let sleeper =
                clone_spawn::Program::new(std::ffi::OsStr::new("/bin/sleep"), args, std::env::vars_os())
                    .expect("valid");
            let child = start_now(&sleeper).expect("started");
            let pid = child.pid();
            tokio::spawn(async move {
                let _child = child;
                std::future::pending::<()>().await
            });
            tokio::task::yield_now().await;
            pid
        });
        drop(rt);
        let tracked = || own_children().as_ref().is_some_and(|s| s.contains(&pid));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while (state(pid).is_some() || tracked()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let left = state(pid);
        if left.is_some() {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        assert!(left.is_none() && !tracked(), "pid {pid} left in state {left:?}, still ours: {}", tracked());
    }

    #[test]
    fn names_are_validated() {
        for good in ["worker", "worker-1", "producer_2", "naïve", &"x".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "two words", "a#b", "tab\there", "bell\u{7}", "\n", &long] {
            match validate_name(bad) {
                Err(Error::InvalidName { name, .. }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
