//! The parent's side, second step: starting a child through the agent
//! chosen, and [`RemoteChild`], the parent's handle on that process.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use actor_transport::CallKind;
use tokio::sync::oneshot;

use super::place::Placement;
use super::wire::{Control, Exit, SPAWN_FN, SpawnRequest, Spawned};
use crate::conn::{CallGuard, Done};
use crate::error::Error;
use crate::registry::{decode, encode_args};
use crate::stream::{StreamSender, halves};

/// A child process on another host, as its parent sees it: the call to its
/// agent that started it, carries orders to it, and returns how it ended.
/// Dropping it before it ended cancels that call, and the agent stops the
/// child.
pub(crate) struct RemoteChild {
    host: String,
    pid: u32,
    orders: StreamSender<Control>,
    done: oneshot::Receiver<Done>,
    ended: Option<std::result::Result<ExitStatus, String>>,
    _call: CallGuard,
}

/// Asks the agent of `placement` to start what `req` says; returns once it
/// runs (within `bound`).
///
/// # Errors
///
/// The agent's refusal (a program not on its allow-list, too many children,
/// an environment variable it does not pass on), a failure to start the
/// program, a broken channel, or no answer within `bound`, as a message.
pub(crate) async fn spawn(
    placement: &Placement,
    req: SpawnRequest,
    bound: Duration,
) -> std::result::Result<RemoteChild, String> {
    let host = &placement.info.name;
    let conn = &placement.conn;
    let refused = |e: Error| match e {
        Error::Remote(r) => format!("host `{host}` refused: {}", r.message),
        other => format!("asking the agent on host `{host}`: {other}"),
    };
    let args = encode_args(&(req,), || format!("arguments of `{SPAWN_FN}`")).map_err(refused)?;
    let opened = conn.open(SPAWN_FN, CallKind::Context, args).await.map_err(refused)?;
    let (Some(started), Some(items)) = (opened.started, opened.items) else {
        return Err("internal: a context call without its first value or stream".into());
    };
    let pid = match tokio::time::timeout(bound, started).await {
        Ok(Ok(Ok(first))) => decode::<Spawned>(&first, || "the agent's answer".into()).map_err(refused)?.pid,
        Ok(Ok(Err(e))) => return Err(refused(e)),
        Ok(Err(_)) => return Err(format!("the agent on host `{host}` dropped the request")),
        Err(_) => {
            return Err(format!("the agent on host `{host}` did not start the process within {bound:?}"));
        }
    };
    let (orders, _unused) = halves::<Control, ()>(conn, opened.cid, &opened.shared, items);
    Ok(RemoteChild { host: host.clone(), pid, orders, done: opened.done, ended: None, _call: opened.guard })
}

impl RemoteChild {
    /// The host it runs on, as its agent names it.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Its process id on that host.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until the agent reports how the process ended.
    ///
    /// # Errors
    ///
    /// Why no report will come: the channel to the agent broke or went
    /// silent, or the agent stopped watching the child (it is stopping).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub(crate) async fn wait(&mut self) -> std::result::Result<ExitStatus, String> {
        if let Some(ended) = &self.ended {
            return ended.clone();
        }
        let done = (&mut self.done).await;
        let ended = self.read(done);
        self.ended = Some(ended.clone());
        ended
    }

    fn read(
        &self,
        done: std::result::Result<Done, oneshot::error::RecvError>,
    ) -> std::result::Result<ExitStatus, String> {
        let host = &self.host;
        match done {
            Ok(Done::Return(bytes)) => {
                decode::<Exit>(&bytes, || format!("the exit report of the agent on host `{host}`"))
                    .map(|exit| ExitStatus::from_raw(exit.wait_status))
                    .map_err(|e| e.to_string())
            }
            Ok(Done::Failed(e)) => {
                Err(format!("the agent on host `{host}` stopped watching it: {}", e.message))
            }
            Ok(Done::Closed(reason)) => {
                Err(format!("lost the channel to the agent on host `{host}`: {reason}"))
            }
            Ok(Done::CancelAcked) | Err(_) => {
                Err(format!("the call to the agent on host `{host}` ended without a report"))
            }
        }
    }

    /// Tells the agent to send SIGTERM to the process group.
    pub(crate) async fn terminate(&self) {
        self.order(Control::Terminate).await;
    }

    /// Tells the agent to SIGKILL the process group, and waits (at most
    /// `bound`) for its report.
    ///
    /// # Errors
    ///
    /// As [`RemoteChild::wait`], and no report within `bound`.
    pub(crate) async fn kill(&mut self, bound: Duration) -> std::result::Result<ExitStatus, String> {
        self.order(Control::Kill).await;
        match tokio::time::timeout(bound, self.wait()).await {
            Ok(ended) => ended,
            Err(_) => {
                let lost = format!(
                    "the agent on host `{}` did not report the end of the process within {bound:?} of SIGKILL",
                    self.host
                );
                self.ended = Some(Err(lost.clone()));
                Err(lost)
            }
        }
    }

    async fn order(&self, order: Control) {
        if self.ended.is_some() {
            return;
        }
        // An order is a few bytes in a 1 MiB window: it waits for credit only
        // if the agent stopped reading, and then it is as good as lost.
        match tokio::time::timeout(Duration::from_secs(1), self.orders.send(order)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(host = %self.host, error = %e, ?order, "cannot send an order to the agent")
            }
            Err(_) => tracing::debug!(host = %self.host, ?order, "the agent does not read orders"),
        }
    }
}
