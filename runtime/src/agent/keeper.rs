//! Keeping one child an agent started: carrying out its parent's orders,
//! stopping it when the parent is lost, reaping it and reporting how it
//! ended.

use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use actor_transport::Uid;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::wire::{Control, Exit};
use crate::spawn::{self, ChildProcess};

/// One of the agent's places for a child, held while the child runs.
pub(super) struct Place(pub(super) Arc<AtomicU32>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the keeper of one child needs.
pub(super) struct Kept {
    pub(super) child: Uid,
    pub(super) parent: Uid,
    /// The parent's orders; closed when the call that carries them ends.
    pub(super) orders: mpsc::UnboundedReceiver<Control>,
    pub(super) report: oneshot::Sender<Exit>,
    pub(super) grace: Duration,
    /// The agent's own cancellation: it is stopping.
    pub(super) stopping: CancellationToken,
    pub(super) _place: Place,
}

/// Owns one child from its start to its reaping: carries out the parent's
/// orders, stops it when the parent is lost, reports how it ended.
pub(super) async fn keep(mut proc: ChildProcess, mut kept: Kept) {
    let status = loop {
        tokio::select! {
            st = proc.wait() => break st,
            order = kept.orders.recv() => match order {
                Some(Control::Terminate) => proc.signal_group(Signal::SIGTERM),
                Some(Control::Kill) => proc.signal_group(Signal::SIGKILL),
                None => break orphaned(&mut proc, &kept).await,
            },
        }
    };
    match status {
        Ok(st) => {
            tracing::debug!(child = %kept.child, status = %spawn::describe(st), "reaped");
            use std::os::unix::process::ExitStatusExt;
            let _ = kept.report.send(Exit { wait_status: st.into_raw(), description: spawn::describe(st) });
        }
        Err(e) => tracing::warn!(child = %kept.child, error = %e, "cannot reap a child"),
    }
}

/// Stops a child whose parent no longer watches it: SIGTERM to its group,
/// then SIGKILL after the grace; reaps it.
async fn orphaned(proc: &mut ChildProcess, kept: &Kept) -> io::Result<ExitStatus> {
    if kept.stopping.is_cancelled() {
        tracing::info!(child = %kept.child, "the agent is stopping: stopping its child");
    } else {
        tracing::warn!(
            child = %kept.child,
            parent = %kept.parent,
            "lost the parent (its channel broke, went silent, or it gave up on the child): killing the child's process group"
        );
    }
    proc.signal_group(Signal::SIGTERM);
    match tokio::time::timeout(kept.grace, proc.wait()).await {
        Ok(st) => st,
        Err(_) => proc.kill().await,
    }
}
