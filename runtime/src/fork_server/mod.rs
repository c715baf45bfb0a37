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

mod wire;
mod zygote;

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, socketpair};

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
    ready: bool,
}

/// What became of a request.
pub(crate) enum Forked {
    /// The child, its pid and its pidfd.
    Child { pid: i32, pidfd: OwnedFd },
    /// Not a request for this server (another command, or an environment
    /// too large): start the child the usual way.
    Declined,
    /// The server is gone; nothing was forked.
    Unreachable,
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
        let started = start(&server)?;
        // The server holds its own copy now.
        drop(theirs);
        let command = like.with_env(std::iter::empty())?;
        Ok((Client { sock: ours, command, ready: false }, started))
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
            Ok(got) if &word[..got.len] == wire::REFUSED => {
                Readiness::Gone("the program started a thread before actor::run".into())
            }
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
    /// The server's error of forking, or a server that took the request
    /// and did not answer: the caller drops it (a child may have been
    /// forked, which finds nobody waiting for it and exits).
    pub(crate) fn fork(&mut self, program: &Program) -> io::Result<Forked> {
        if !program.same_command(&self.command) {
            return Ok(Forked::Declined);
        }
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|d| CString::new(d.into_os_string().into_vec()).ok())
            .unwrap_or_default();
        let Some(request) = wire::encode(&cwd, program.env()) else { return Ok(Forked::Declined) };
        // One request at a time: the pair's buffer is empty, so a send
        // that would block means a broken server.
        if wire::send(self.sock.as_fd(), &request, None, MsgFlags::MSG_DONTWAIT).is_err() {
            return Ok(Forked::Unreachable);
        }
        let mut word = [0u8; 4];
        let got = match self.answer(&mut word) {
            Ok(got) => got,
            // The server closed its end with the request unread: it forked nothing.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Forked::Unreachable),
            Err(e) => return Err(io::Error::new(e.kind(), format!("the fork server did not answer: {e}"))),
        };
        let code = match got.len {
            4 => i32::from_ne_bytes(word),
            0 => return Err(io::Error::other("the fork server exited while forking")),
            _ => return Err(io::Error::other("the fork server's answer is malformed")),
        };
        match (code, got.fd) {
            (pid, Some(pidfd)) if pid > 0 => Ok(Forked::Child { pid, pidfd }),
            (errno, None) if errno < 0 => Err(io::Error::from_raw_os_error(-errno)),
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
