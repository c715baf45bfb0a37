//! A fork server: a copy of the program, stopped before `main`, that forks
//! child actors for its parent.
//!
//! Starting a child the usual way executes the program anew: the kernel
//! maps it and the dynamic loader relocates it, about 1.3 ms of CPU here
//! for a program that then only says hello and exits. A fork of a process
//! that has done that, and nothing else, costs a fraction of it, and the
//! child still runs the program from `main` on (see [`zygote`]). The parent
//! starts the server (one execution) after its first spawn and from then
//! on asks it for each child; until it says it is ready, and if it ever
//! fails, children are executed.

mod state;
mod wire;
mod zygote;

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};
use nix::sys::stat::Mode;

use crate::clone_spawn::Program;

pub(crate) use zygote::serve_if_asked;

/// How long the parent waits for the server to take a request or answer
/// it. A fork takes well under a millisecond; a server stopped or stuck is
/// given up.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// The parent's end of a fork server, before and after it is ready.
pub(crate) struct Client {
    sock: OwnedFd,
    /// The command the server was started as: requests must be for it.
    command: Program,
    /// The server's variables that only take effect when a program is
    /// executed: a child that asks for others is executed.
    loader_env: Vec<CString>,
    /// This process's state when it started the server, which the server
    /// and so every forked child inherited.
    state: state::Fingerprint,
    ready: bool,
}

/// What became of a request.
pub(crate) enum Forked {
    /// The child, its pid and its pidfd.
    Child { pid: i32, pidfd: OwnedFd },
    /// Not a request for this server (another command, an environment too
    /// large, loader variables of its own): execute the child.
    Declined,
    /// This process's credentials, limits, control group or standard
    /// output changed since the server started: execute the child, and
    /// start a new server.
    Stale,
    /// Nothing was forked, and the server is of no more use (gone, or
    /// failing to fork): execute the child.
    Useless(String),
}

/// Whether a server can take requests yet.
pub(crate) enum Readiness {
    Ready,
    /// Still starting.
    Starting,
    /// It refused or failed: drop it.
    Gone(String),
}

impl Client {
    /// Starts a server with `start`, for children run as `like`: the same
    /// program and arguments, in the environment `env` (the server's own:
    /// each child gets the one of its request).
    ///
    /// # Errors
    ///
    /// The error of creating the socket pair, of a variable of `env` that
    /// cannot be passed on, or of `start`.
    pub(crate) fn start<T>(
        like: &Program,
        env: impl IntoIterator<Item = (OsString, OsString)>,
        start: impl FnOnce(&Program) -> io::Result<T>,
    ) -> io::Result<(Client, T)> {
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
                .map_err(io::Error::from)?;
        let marker = format!("{}:{}", theirs.as_raw_fd(), std::process::id());
        let env = env.into_iter().chain(std::iter::once((zygote::ENV_FORK_SERVER.into(), marker.into())));
        let server = like.with_env(env)?.keeping(theirs.as_raw_fd());
        let state = state::Fingerprint::now();
        let started = start(&server)?;
        // The server holds its own copy now.
        drop(theirs);
        let command = like.with_env(std::iter::empty())?;
        let loader_env = loader_variables(server.env());
        Ok((Client { sock: ours, command, loader_env, state, ready: false }, started))
    }

    /// Whether the server said it is ready, without waiting.
    pub(crate) fn readiness(&mut self) -> Readiness {
        if self.ready {
            return Readiness::Ready;
        }
        let mut word = [0u8; 16];
        match wire::recv(self.sock.as_fd(), &mut word, MsgFlags::MSG_DONTWAIT) {
            Ok(got) if &word[..got.len] == wire::READY => {
                self.ready = true;
                Readiness::Ready
            }
            Ok(got) if &word[..got.len] == wire::REFUSED => Readiness::Gone(
                "it cannot fork safely here (a thread started before main, no PR_GET_TID_ADDRESS, \
                     or its constructor was not linked in)"
                    .into(),
            ),
            Ok(got) if got.len == 0 => Readiness::Gone("it exited".into()),
            Ok(_) => Readiness::Gone("it said something unexpected".into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Readiness::Starting,
            Err(e) => Readiness::Gone(e.to_string()),
        }
    }

    /// Asks the ready server to fork `program`, blocking (bounded) until
    /// it answers.
    ///
    /// # Errors
    ///
    /// A server that took the request and did not answer, or exited: the
    /// caller drops it. A child it forked meanwhile is killed by the server
    /// when its answer cannot go out, or finds nobody waiting for it and
    /// exits. [`EMFILE`](nix::libc::EMFILE) if the child's pidfd could not be
    /// received (the child is then killed and reaped here).
    pub(crate) fn fork(&mut self, program: &Program) -> io::Result<Forked> {
        if !program.same_command(&self.command) || loader_variables(program.env()) != self.loader_env {
            return Ok(Forked::Declined);
        }
        if state::Fingerprint::now() != self.state {
            return Ok(Forked::Stale);
        }
        // The directory itself, not its path: the child starts where an
        // executed one would, even if the path was renamed or removed.
        let Ok(cwd) =
            nix::fcntl::open(".", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        else {
            return Ok(Forked::Declined);
        };
        let Some(request) = wire::encode(program.env()) else { return Ok(Forked::Declined) };
        // One request at a time: the pair's buffer is empty, so a send
        // that would block means a broken server.
        match wire::send(self.sock.as_fd(), &request, Some(cwd.as_raw_fd()), MsgFlags::MSG_DONTWAIT) {
            Ok(()) => {}
            // Larger than this socket's buffer allows.
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => return Ok(Forked::Declined),
            Err(e) => return Ok(Forked::Useless(format!("it takes no request: {e}"))),
        }
        drop(cwd);
        let mut word = [0u8; 4];
        let got = match self.answer(&mut word) {
            Ok(got) => got,
            // The server closed its end with the request unread: it forked nothing.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(Forked::Useless("it exited".into()));
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("the fork server did not answer: {e}"))),
        };
        let code = match (got.len, got.truncated) {
            (4, false) => i32::from_ne_bytes(word),
            (0, _) => return Err(io::Error::other("the fork server exited while forking")),
            _ => return Err(io::Error::other("the fork server's answer is malformed")),
        };
        match got.fd {
            Some(pidfd) if code > 0 => Ok(Forked::Child { pid: code, pidfd }),
            None if code > 0 => {
                // Our own child, unwatched: it must not run on.
                let pid = nix::unistd::Pid::from_raw(code);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                Err(if got.fd_lost {
                    io::Error::from_raw_os_error(nix::libc::EMFILE)
                } else {
                    io::Error::other("the fork server's answer carried no pidfd")
                })
            }
            _ if code < 0 => {
                Ok(Forked::Useless(format!("it could not fork: {}", io::Error::from_raw_os_error(-code))))
            }
            _ => Err(io::Error::other("the fork server's answer is malformed")),
        }
    }

    /// Receives the server's answer to a request, within [`ANSWER_BOUND`]
    /// whatever signals interrupt the wait.
    fn answer(&self, word: &mut [u8]) -> io::Result<wire::Received> {
        let deadline = Instant::now() + ANSWER_BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {ANSWER_BOUND:?}"),
                ));
            }
            let wait = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, wait) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            match wire::recv(self.sock.as_fd(), word, MsgFlags::MSG_DONTWAIT) {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    continue;
                }
                got => return got,
            }
        }
    }
}

/// The variables of `env` that the dynamic loader or the C library read
/// when a program is executed, which a fork cannot apply.
fn loader_variables(env: &[CString]) -> Vec<CString> {
    let mut found: Vec<CString> = env
        .iter()
        .filter(|v| {
            ["LD_", "GLIBC_TUNABLES=", "MALLOC_"].iter().any(|p| v.as_bytes().starts_with(p.as_bytes()))
        })
        .cloned()
        .collect();
    found.sort();
    found
}
