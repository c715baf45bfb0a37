//! One process of a child actor, wherever it runs: a process of ours on this
//! host, or one a host agent runs for us on another. The supervisor waits
//! for it, escalates a cancel, and kills it through the same four calls.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::agent::RemoteChild;
use crate::spawn::ChildProcess;

/// A child's process.
pub(super) enum Process {
    Local(ChildProcess),
    Remote(RemoteChild),
}

/// Why a process's end is not known.
pub(super) enum Unreaped {
    /// Waiting for a local process failed.
    Io(io::Error),
    /// A remote process's agent can no longer tell: the reason.
    Lost(String),
}

impl Process {
    /// Its process id on its host.
    pub(super) fn pid(&self) -> u32 {
        match self {
            Process::Local(p) => u32::try_from(p.pid()).unwrap_or_default(),
            Process::Remote(r) => r.pid(),
        }
    }

    /// The host it runs on, for a remote one.
    pub(super) fn host(&self) -> Option<&str> {
        match self {
            Process::Local(_) => None,
            Process::Remote(r) => Some(r.host()),
        }
    }

    /// Waits until it has ended and been reaped (and its process group
    /// swept).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub(super) async fn wait(&mut self) -> Result<ExitStatus, Unreaped> {
        match self {
            Process::Local(p) => p.wait().await.map_err(Unreaped::Io),
            Process::Remote(r) => r.wait().await.map_err(Unreaped::Lost),
        }
    }

    /// Sends SIGTERM to its process group.
    pub(super) async fn terminate(&self) {
        match self {
            Process::Local(p) => p.signal_group(Signal::SIGTERM),
            Process::Remote(r) => r.terminate().await,
        }
    }

    /// SIGKILLs its process group and reaps it; a remote agent gets
    /// `remote_bound` to report.
    pub(super) async fn kill(&mut self, remote_bound: Duration) -> Result<ExitStatus, Unreaped> {
        match self {
            Process::Local(p) => p.kill().await.map_err(Unreaped::Io),
            Process::Remote(r) => r.kill(remote_bound).await.map_err(Unreaped::Lost),
        }
    }
}
