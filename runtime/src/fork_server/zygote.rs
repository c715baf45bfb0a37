//! The fork server's side: a re-execution of the program that stops
//! before `main`, and forks a child actor for each request of its parent.
//!
//! The server waits in a constructor (`.init_array`), which the C library
//! runs after the dynamic loader has relocated the program and before the
//! Rust runtime and `main` start. A child forked there goes on to run
//! `main` from its start, as an executed child does: the program's own
//! code before `actor::run` runs in every child, in the child's own
//! environment, and never in the server.
//!
//! Each child is forked with `CLONE_PARENT`, so it is the parent actor's own
//! child, exactly as if the parent had started it: the parent reaps it,
//! signals its group, and the child's parent-death signal fires when the
//! parent (not this server) dies. The child takes the requested working
//! directory and environment and leaves the server's process group for one
//! of its own before it returns to the start-up.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;
use nix::sys::socket::MsgFlags;

use super::wire;
use crate::parent_death;

/// `FD:PPID` in a fork server's environment: its end of the socket pair,
/// and the pid of the parent it serves.
pub(crate) const ENV_FORK_SERVER: &str = "ACTOR_FORK_SERVER";

/// Runs [`at_start`] when the program starts, before `main`.
#[used]
#[unsafe(link_section = ".init_array")]
static SERVE_AT_START: extern "C" fn() = at_start;

/// In a fork server, serves its parent until the parent closes the socket,
/// then exits; returns only in a child it forked, set up as requested.
/// Otherwise returns at once.
extern "C" fn at_start() {
    if std::env::var_os(ENV_FORK_SERVER).is_some() {
        become_child(serve(true))
    }
}

/// Called from `actor::run`: in a process started as a fork server whose
/// constructor did not run (a linker that dropped it), refuses to serve
/// and exits, so its parent executes its children. Otherwise returns at once.
pub(crate) fn serve_if_asked() {
    if std::env::var_os(ENV_FORK_SERVER).is_some() {
        serve(false);
        std::process::exit(0)
    }
}

/// Checks the hand-over, says whether it serves, and serves (returning a
/// request only in a child forked for it) when `can` and this process is
/// single-threaded.
fn serve(can: bool) -> Request {
    let value = std::env::var_os(ENV_FORK_SERVER).unwrap_or_default();
    let Some((fd, ppid)) = value.to_str().and_then(parse) else {
        eprintln!(
            "actor: {ENV_FORK_SERVER} is set, to {value:?}, but this process was not started as a fork server"
        );
        std::process::exit(2)
    };
    // As in a child actor: die with the parent, and do not serve a parent
    // that died before the signal was armed.
    if let Err(e) = parent_death::install_handler().and_then(|()| parent_death::arm()) {
        eprintln!("actor: the fork server cannot watch for its parent's death: {e}");
        std::process::exit(70)
    }
    if std::os::unix::process::parent_id() != ppid {
        std::process::exit(1)
    }
    // SAFETY: the parent handed this descriptor over at this number for us
    // alone (checked open just below).
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        std::process::exit(2)
    }
    // SAFETY: as above; nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // A fork copies only the forking thread: a lock another one held
    // (another library's constructor may have started one) would stay held.
    let thread = match MainThread::read() {
        Some(thread) if can && threads() == Some(1) => thread,
        _ => {
            let _ = wire::send(sock.as_fd(), wire::REFUSED, None, MsgFlags::empty());
            std::process::exit(0)
        }
    };
    if wire::send(sock.as_fd(), wire::READY, None, MsgFlags::empty()).is_err() {
        std::process::exit(1)
    }
    let request = fork_on_request(&sock, &thread);
    drop(sock);
    request
}

/// A child to become: where it starts, and its whole environment.
struct Request {
    cwd: OwnedFd,
    env: Vec<CString>,
}

/// What the C library keeps in the kernel for this (only) thread, which a
/// fork must set up in the child as the library's own `fork` does: where
/// the kernel writes the thread's id (the library caches it there), and
/// the list of robust mutexes it holds.
struct MainThread {
    tid_address: u64,
    robust_head: u64,
    robust_len: libc::size_t,
}

impl MainThread {
    /// `None` where the kernel does not tell (no `PR_GET_TID_ADDRESS`
    /// without checkpoint/restore support): the server then refuses.
    fn read() -> Option<MainThread> {
        let mut tid_address: *mut libc::c_int = std::ptr::null_mut();
        // SAFETY: PR_GET_TID_ADDRESS writes one pointer through the one given.
        let rc = unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_address as *mut *mut libc::c_int) };
        if rc != 0 || tid_address.is_null() {
            return None;
        }
        let mut head: *mut libc::c_void = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: get_robust_list(0, ...) writes the head pointer and length.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_get_robust_list,
                0 as libc::c_int,
                &mut head as *mut *mut libc::c_void,
                &mut len as *mut libc::size_t,
            )
        };
        (rc == 0).then_some(MainThread {
            tid_address: tid_address as u64,
            robust_head: head as u64,
            robust_len: len,
        })
    }
}

/// `struct clone_args` of `clone3(2)`, up to `tls` (version 0).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

fn parse(value: &str) -> Option<(RawFd, u32)> {
    let (fd, ppid) = value.split_once(':')?;
    let fd: RawFd = fd.parse().ok()?;
    (fd >= 0).then_some(())?;
    Some((fd, ppid.parse().ok()?))
}

/// How many threads this process has; `None` if /proc cannot tell.
fn threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// Forks a child per request; returns the request in each child, and exits
/// when the parent closes its end.
fn fork_on_request(sock: &OwnedFd, thread: &MainThread) -> Request {
    let mut buf = vec![0u8; wire::MAX_REQUEST];
    loop {
        let got = match wire::recv(sock.as_fd(), &mut buf, MsgFlags::empty()) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => std::process::exit(1),
        };
        if got.len == 0 {
            std::process::exit(0)
        }
        let request = match (got.truncated, wire::decode(&buf[..got.len]), got.fd) {
            (false, Some(env), Some(cwd)) => Request { cwd, env },
            (true, _, _) => {
                reply(sock, -libc::E2BIG, None);
                continue;
            }
            _ => {
                reply(sock, -libc::EINVAL, None);
                continue;
            }
        };
        let mut pidfd: libc::c_int = -1;
        // As the C library's fork: the kernel writes the child's thread id
        // where the library caches it, and clears it when the thread exits.
        // The exit signal is the server's own (SIGCHLD), as CLONE_PARENT wants.
        let args = CloneArgs {
            flags: (libc::CLONE_PARENT
                | libc::CLONE_PIDFD
                | libc::CLONE_CHILD_SETTID
                | libc::CLONE_CHILD_CLEARTID) as u64,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            child_tid: thread.tid_address,
            parent_tid: 0,
            exit_signal: 0,
            stack: 0,
            stack_size: 0,
            tls: 0,
        };
        // SAFETY: a fork (no CLONE_VM, no new stack) of this single-threaded
        // process: the child returns here on a copy of our memory. The pidfd
        // is written to our `pidfd`, the thread id to the child's copy of
        // the C library's cache.
        let pid = unsafe {
            libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
        };
        match pid {
            0 => {
                // SAFETY: the C library's own list head, valid in the child's
                // copy of our memory; a fork leaves the kernel without it.
                unsafe { libc::syscall(libc::SYS_set_robust_list, thread.robust_head, thread.robust_len) };
                return request;
            }
            p if p < 0 => {
                reply(sock, -std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO), None)
            }
            p => {
                // SAFETY: CLONE_PIDFD stored a new descriptor, ours alone.
                let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
                if !try_reply(sock, p as i32, Some(pidfd.as_raw_fd())) {
                    // Nobody will watch it: it must not run.
                    // SAFETY: a signal through a pidfd we own.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            pidfd.as_raw_fd(),
                            libc::SIGKILL,
                            std::ptr::null::<libc::siginfo_t>(),
                            0 as libc::c_uint,
                        )
                    };
                    std::process::exit(1)
                }
            }
        }
    }
}

/// Answers a request; a parent that is gone ends this server.
fn reply(sock: &OwnedFd, code: i32, fd: Option<RawFd>) {
    if !try_reply(sock, code, fd) {
        std::process::exit(1)
    }
}

/// Answers a request; whether the answer went out.
fn try_reply(sock: &OwnedFd, code: i32, fd: Option<RawFd>) -> bool {
    loop {
        match wire::send(sock.as_fd(), &code.to_ne_bytes(), fd, MsgFlags::empty()) {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// In a child just forked: its own process group (the parent sets it too,
/// before it lets the spawn return), the requested working directory and
/// exactly the requested environment, as `exec` would give.
fn become_child(request: Request) {
    // SAFETY: setpgid on ourselves.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        eprintln!("actor: a forked child cannot lead a process group: {}", std::io::Error::last_os_error());
        std::process::exit(70)
    }
    // SAFETY: fchdir on a descriptor we own.
    if unsafe { libc::fchdir(request.cwd.as_raw_fd()) } != 0 {
        eprintln!(
            "actor: a forked child cannot enter its parent's directory: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(70)
    }
    drop(request.cwd);
    replace_environment(request.env);
}

unsafe extern "C" {
    static mut environ: *const *const libc::c_char;
}

/// Makes `env` the whole environment. The strings and the array are leaked
/// on purpose: the environment refers to them for the life of the process.
fn replace_environment(env: Vec<CString>) {
    let mut table: Vec<*const libc::c_char> = env.into_iter().map(|v| v.into_raw().cast_const()).collect();
    table.push(std::ptr::null());
    let table = table.leak();
    // SAFETY: this process has one thread (the server checked before it
    // forked), so nothing reads the environment meanwhile; `table` is
    // NULL-terminated and lives forever. libc copies the table before it
    // changes it (setenv), as it does for the one `exec` gives.
    unsafe { environ = table.as_ptr() };
}
