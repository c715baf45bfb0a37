//! Helpers the root starts die with the root, however it ends.
//!
//! A child actor takes its process group (its helpers) down when its parent
//! dies ([`parent_death`](crate::parent_death)), and the parent kills what is
//! left of a child's group when it reaps the child. The root has no parent
//! of ours to do that for it: when it is killed with SIGKILL, the processes
//! it started with `std::process::Command` are re-parented and live on.
//!
//! So the root marks its environment with a tag for this tree
//! ([`ENV_TREE`]), which every process it starts inherits, and starts a
//! watcher: a re-execution of the program, in a process group of its own (a
//! terminal's Ctrl-C does not reach it), that waits for the end of a pipe
//! only the root holds. The kernel closes that pipe when the root ends, by a
//! return or by SIGKILL; the watcher then kills every process of this user
//! that carries the tag, and exits. On a clean exit the root waits for it
//! (bounded), so no helper is left when the root's exit status is known.
//!
//! A process that must outlive the tree opts out by not inheriting the tag:
//! `Command::env_remove(actor::ENV_TREE)`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The environment variable that marks every process of one tree: set by the
/// root for itself, inherited by its actors and by every helper they start.
/// When the root ends, whatever still carries its value is killed. Remove it
/// from a command (`Command::env_remove`) to let that process outlive the tree.
pub const ENV_TREE: &str = "ACTOR_TREE";

/// Present only in a watcher's environment: the tag it sweeps for.
pub(crate) const ENV_WATCH: &str = "ACTOR_TREE_WATCH";

/// How long a root that returns waits for its watcher's sweep.
const SWEEP_BOUND: Duration = Duration::from_secs(2);

/// The root's end of its watcher: the pipe whose closing starts the sweep.
pub(crate) struct Watcher {
    child: Child,
    pipe: OwnedFd,
}

/// In a watcher process, does its work and exits; otherwise returns at once.
/// Called first thing in `actor::run`, before anything else of the program's
/// tree starts.
pub(crate) fn run_if_watcher() {
    if let Some(tag) = std::env::var_os(ENV_WATCH) {
        watch(&tag.to_string_lossy())
    }
}

/// Whether this process is a watcher (which, like a child actor, must skip
/// what only the root does).
pub(crate) fn is_watcher() -> bool {
    std::env::var_os(ENV_WATCH).is_some()
}

/// Tags this root's environment and starts its watcher. `None`, logged at
/// debug level, if the watcher cannot start: the tree still runs, only its
/// root's helpers could outlive a SIGKILL of the root.
///
/// Must run before the program starts other threads (it changes the
/// environment), which `actor::run` documents for its caller.
pub(crate) fn start() -> Option<Watcher> {
    let tag = format!("{}.{:016x}", std::process::id(), random());
    // SAFETY: `actor::run` is the program's entry point, called from `main`
    // before its runtime (or any thread of ours) starts; its documentation
    // asks the caller not to have started threads that read the environment.
    unsafe { std::env::set_var(ENV_TREE, &tag) };
    match spawn(&tag) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::debug!(error = %e, "cannot start the watcher that takes the root's helpers down with it");
            None
        }
    }
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    // Only uniqueness among this user's trees matters; the pid prefix
    // already gives most of it.
    let _ = getrandom::fill(&mut b);
    u64::from_ne_bytes(b)
}

fn spawn(tag: &str) -> std::io::Result<Watcher> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let child = Command::new("/proc/self/exe")
        .args(crate::spawn::child_args())
        .env(ENV_WATCH, tag)
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(Watcher { child, pipe: write })
}

impl Watcher {
    /// The root is done: closes the pipe and waits (at most two seconds) for
    /// the watcher to kill what is left of the tree and exit.
    pub(crate) fn finish(mut self) {
        drop(self.pipe);
        if !exits_within(&self.child, SWEEP_BOUND) {
            tracing::debug!("the watcher did not finish its sweep in time");
            let _ = self.child.kill();
        }
        // The orphan reaper may have reaped it already; that is no error here.
        let _ = self.child.wait();
    }
}

/// Whether `child` exits within `bound`, waited for on a pidfd (readable
/// once the process has exited). A process already reaped has no pidfd:
/// it has exited.
fn exits_within(child: &Child, bound: Duration) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd};
    let Ok(pid) = nix::libc::pid_t::try_from(child.id()) else { return false };
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    let Ok(fd) = i32::try_from(fd) else { return false };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(nix::libc::ESRCH);
    }
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut pfd = nix::libc::pollfd { fd: pidfd.as_raw_fd(), events: nix::libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        match unsafe { nix::libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return true,
            0 => return false,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return false,
        }
    }
}

/// The watcher: waits for the root's end, kills every process carrying
/// `tag`, exits.
fn watch(tag: &str) -> ! {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    // The root never writes: any read that returns is the pipe's end (or a
    // broken stdin, which leaves nothing better to wait for).
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    let needle = format!("{ENV_TREE}={tag}");
    // A helper may be forking while we sweep: sweep until a pass finds none.
    for _ in 0..10 {
        if sweep(needle.as_bytes()) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::process::exit(0)
}

/// Kills every process but this one whose environment holds `needle` as an
/// entry; returns how many it signalled.
fn sweep(needle: &[u8]) -> usize {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        // Another user's environment is unreadable, a zombie's empty.
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        if env.split(|b| *b == 0).any(|e| e == needle) {
            if let Ok(pid) = i32::try_from(pid) {
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        }
    }
    killed
}
