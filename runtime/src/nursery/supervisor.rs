//! Watching one child from its first spawn to its last reaping, and
//! restarting it as its nursery's [`Strategy`] and its [`Restart`] kind say.

use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::launch::{Launched, Spec, launch};
use super::process::{Process, Unreaped};
use crate::error::{Error, Result};
use crate::portal::{ChildControl, Incarnation, ResultSlot};
use crate::spawn;
use crate::supervise::{Restart, Strategy, unit_random};

/// A rest-for-one restart asking a later sibling to stop, wait, and start
/// again: the sibling answers `stopped` once its process is reaped, waits for
/// `go`, and answers `up` once its new process serves (or its start failed).
pub(super) struct RestartOrder {
    stopped: oneshot::Sender<()>,
    go: oneshot::Receiver<()>,
    up: oneshot::Sender<()>,
}

/// What a `run_in_actor` child's main call delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Nothing,
    Value,
    Error,
}

/// How one process of the child ended.
struct Ending {
    process: Incarnation,
    /// Its crash or loss, if it did not end as asked.
    crash: Option<Error>,
    /// The main call's outcome, held back while the child may be restarted.
    main: Option<Result<Bytes>>,
    /// Set when a sibling's rest-for-one restart stopped it.
    order: Option<RestartOrder>,
}

/// What following a sibling's restart order came to.
enum Followed {
    Up(Box<Launched>),
    Failed(Error),
    Over,
}

/// Watches one child and, under a restarting strategy, brings it back.
pub(super) struct Supervisor {
    pub nursery: Arc<Inner>,
    pub spec: Spec,
    pub restart: Restart,
    pub control: ChildControl,
    pub slot: Option<ResultSlot>,
    pub orders: mpsc::UnboundedReceiver<RestartOrder>,
    /// Its place in the nursery's start order.
    pub index: usize,
}

impl Supervisor {
    fn restarting(&self) -> bool {
        self.nursery.supervision.strategy != Strategy::OneCancelsAll
    }

    pub(super) async fn run(mut self, first: Launched) {
        let mut launched = first;
        loop {
            let ending = self.watch(launched).await;
            if !self.restarting() {
                return;
            }
            let next = match ending.order {
                Some(order) => self.follow(order).await,
                None => match self.decide(ending.crash, ending.main, &ending.process) {
                    Some(cause) => Followed::Failed(cause),
                    None => return,
                },
            };
            launched = match next {
                Followed::Up(l) => *l,
                Followed::Failed(cause) => match self.restart(cause).await {
                    Some(l) => l,
                    None => return,
                },
                Followed::Over => return,
            };
        }
    }

    /// Watches one process until it is reaped. Under one-cancels-all this
    /// also reports its outcome (`finish`); otherwise the caller decides.
    async fn watch(&mut self, launched: Launched) -> Ending {
        let Launched { mut proc, process, main } = launched;
        let host = proc.host().map(str::to_owned);
        let conn = process.conn.clone();
        let nursery = self.nursery.clone();
        let config = &nursery.actor.config;
        let has_main = main.is_some();
        let main_call = async move {
            match main {
                Some((func, opened)) => opened.result(func).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(main_call);
        let mut main_done = !has_main;
        let mut delivered = Delivery::Nothing;
        let mut held = None;
        let mut order = None;
        let mut exit_by: Option<tokio::time::Instant> = None;
        // Once its channel to us is gone, a child cancels itself and exits
        // within its teardown bound; one that does not cannot hear us.
        let mut cut_off_by: Option<tokio::time::Instant> = None;
        let mut put_down = false;
        let restarting = self.restarting();
        let (status, sent) = loop {
            let deadline = exit_by.unwrap_or_else(|| tokio::time::Instant::now() + config.spawn_timeout);
            let cut_off = cut_off_by.unwrap_or_else(|| tokio::time::Instant::now() + config.spawn_timeout);
            tokio::select! {
                st = proc.wait() => break (st, None),
                _ = conn.closed(), if cut_off_by.is_none() => {
                    cut_off_by = Some(tokio::time::Instant::now() + config.teardown_bound());
                }
                _ = tokio::time::sleep_until(cut_off), if cut_off_by.is_some() => {
                    tracing::warn!(
                        child = %conn.peer(),
                        host = proc.host().unwrap_or("this host"),
                        bound = ?config.teardown_bound(),
                        "lost its channel to us and did not exit; sending SIGTERM"
                    );
                    put_down = true;
                    break put_to_death(&mut proc, config).await;
                }
                r = &mut main_call, if !main_done => {
                    main_done = true;
                    delivered = self.deliver(r, &mut held);
                    exit_by = Some(tokio::time::Instant::now() + config.cancel_grace);
                }
                _ = self.control.cancel.cancelled() => break stop(&process, &mut proc, config).await,
                Some(o) = self.orders.recv(), if restarting => {
                    order = Some(o);
                    break stop(&process, &mut proc, config).await;
                }
                _ = tokio::time::sleep_until(deadline), if exit_by.is_some() => {
                    tracing::warn!(child = %conn.peer(), "did not exit after its main function returned");
                    break stop(&process, &mut proc, config).await;
                }
            }
        };
        if !main_done {
            // The process ended first; a reply it sent may still be buffered.
            if let Ok(r) = tokio::time::timeout(config.cancel_grace, &mut main_call).await {
                delivered = self.deliver(r, &mut held);
            }
        }
        // The process is gone, so its channel is ending: let the reader see
        // that first, so calls in flight to it have ended (and can report the
        // crash, see `Portal::run`) before anyone is woken.
        let _ = tokio::time::timeout(config.kill_grace, conn.closed()).await;
        let stopped = self.control.cancel.is_cancelled() || order.is_some();
        let actor = conn.peer().clone();
        let crash = match &status {
            Err(Unreaped::Lost(reason)) => {
                Some(Error::ActorLost { actor, host: host.unwrap_or_default(), reason: reason.clone() })
            }
            Err(Unreaped::Io(e)) => {
                Some(Error::ActorCrashed { actor, host, status: format!("cannot reap the process: {e}") })
            }
            Ok(st) if put_down => Some(Error::ActorCrashed {
                actor,
                host,
                status: format!(
                    "it lost its channel to this actor and did not exit within {:?}, so it was stopped ({})",
                    config.teardown_bound(),
                    spawn::describe(*st)
                ),
            }),
            Ok(st) => classify(st, sent, stopped, conn.cancel_acked(), has_main, delivered)
                .map(|status| Error::ActorCrashed { actor, host, status }),
        };
        // Before anyone is woken: a call that lost its channel to this
        // process reads how it ended here once `reaped` fires.
        let _ = process.crash.set(crash.clone());
        if restarting {
            if let (Ok(st), None) = (&status, &crash) {
                tracing::debug!(child = %conn.peer(), status = %spawn::describe(*st), "reaped");
            }
            process.reaped.cancel();
        } else {
            self.finish(&process, status.as_ref().ok(), crash.clone(), delivered);
        }
        Ending { process, crash, main: held, order }
    }

    /// Records the main function's outcome.
    ///
    /// Under one-cancels-all the result slot is filled before the nursery
    /// hears of a failure, so a body awaiting this child's result is woken
    /// with it no later than the nursery's cancel of the body (see
    /// `open_nursery`). Under a restarting strategy the outcome is held in
    /// `held` until it is known whether the child comes back.
    fn deliver(&self, r: Result<Bytes>, held: &mut Option<Result<Bytes>>) -> Delivery {
        let (delivery, failure) = match &r {
            // The process died: its exit status is the better report.
            Err(Error::Disconnected { .. }) => return Delivery::Nothing,
            Ok(_) => (Delivery::Value, None),
            Err(e) => {
                let merely_cancelled = e.is_cancelled() && self.control.cancel.is_cancelled();
                (Delivery::Error, (!merely_cancelled).then(|| e.clone()))
            }
        };
        if self.restarting() {
            *held = Some(r);
            return delivery;
        }
        if let Some(slot) = &self.slot {
            slot.send_replace(Some(r));
        }
        if let Some(e) = failure {
            self.nursery.fail(e);
        }
        delivery
    }

    /// One-cancels-all: reports how the child ended, to its result slot,
    /// its portals' calls, and (a failure) the nursery.
    fn finish(
        &self,
        process: &Incarnation,
        status: Option<&ExitStatus>,
        crash: Option<Error>,
        delivered: Delivery,
    ) {
        let child = process.conn.peer().clone();
        match (status, &crash) {
            (Some(st), None) => tracing::debug!(%child, status = %spawn::describe(*st), "reaped"),
            (_, Some(e @ Error::ActorLost { .. })) => tracing::warn!(%child, error = %e, "actor lost"),
            (_, Some(e)) => tracing::warn!(%child, error = %e, "actor crashed"),
            _ => {}
        }
        let mut failure = None;
        let outcome = match crash {
            Some(e) => {
                if delivered != Delivery::Error {
                    failure = Some(e.clone());
                }
                Err(e)
            }
            None => Err(self.cancelled()),
        };
        self.fill_slot(outcome);
        // Waiters on this child (its result, calls that lost the channel) are
        // woken before the nursery cancels its body; see `deliver`.
        process.reaped.cancel();
        self.control.done.cancel();
        if let Some(e) = failure {
            self.nursery.fail(e);
        }
    }

    fn cancelled(&self) -> Error {
        let (canceller, reason) = self.nursery.actor.cancel_reason();
        Error::Cancelled {
            canceller: canceller.or_else(|| Some(self.nursery.actor.uid.clone())),
            reason: if reason.is_empty() { "cancelled by its nursery".into() } else { reason },
        }
    }

    fn fill_slot(&self, outcome: Result<Bytes>) {
        if let Some(slot) = &self.slot {
            slot.send_if_modified(|v| {
                if v.is_none() {
                    *v = Some(outcome);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// The child is over for good: delivers `outcome` and wakes whoever
    /// waits for the child's end.
    fn end(&self, outcome: Result<Bytes>) {
        self.fill_slot(outcome);
        self.control.done.cancel();
    }

    /// Under a restarting strategy: whether the process that ended comes
    /// back. `Some(cause)` to restart it; `None` once the child is over (its
    /// outcome delivered).
    fn decide(
        &self,
        crash: Option<Error>,
        main: Option<Result<Bytes>>,
        process: &Incarnation,
    ) -> Option<Error> {
        let child = process.conn.peer().clone();
        if self.control.cancel.is_cancelled() {
            self.end(main.unwrap_or_else(|| Err(self.cancelled())));
            return None;
        }
        let failure = match (crash, &main) {
            (Some(e), _) => Some(e),
            (None, Some(Err(e))) => Some(e.clone()),
            _ => None,
        };
        let again = match self.restart {
            Restart::Permanent => true,
            Restart::Transient => failure.is_some(),
            Restart::Temporary => false,
        };
        if again {
            return Some(failure.unwrap_or_else(|| Error::msg(format!("actor `{child}` ended normally"))));
        }
        if let Some(e) = &failure {
            tracing::warn!(%child, error = %e, restart = ?self.restart, "actor failed and is not restarted");
        }
        let outcome = match (main, failure) {
            (Some(r @ Ok(_)), None) => r,
            (_, Some(e)) => Err(e),
            (_, None) => Err(self.cancelled()),
        };
        self.end(outcome);
        None
    }

    /// Restarts the child after `cause`, within the nursery's intensity and
    /// after its backoff; under rest-for-one restarts the later siblings too.
    /// `None` if the child is over instead (cancelled, or past the
    /// intensity, which fails the nursery).
    async fn restart(&mut self, mut cause: Error) -> Option<Launched> {
        loop {
            // One restart at a time per nursery, so rest-for-one episodes do
            // not interleave; a sibling's order that arrives meanwhile
            // restarts this child as part of that episode.
            let lock = self.nursery.restarting.clone();
            let guard = tokio::select! {
                g = lock.lock_owned() => g,
                Some(order) = self.orders.recv() => match self.follow(order).await {
                    Followed::Up(l) => return Some(*l),
                    Followed::Failed(e) => { cause = e; continue }
                    Followed::Over => return None,
                },
                _ = self.control.cancel.cancelled() => {
                    self.end(Err(self.cancelled()));
                    return None;
                }
            };
            let supervision = &self.nursery.supervision;
            let admitted =
                self.nursery.intensity().admit(supervision, tokio::time::Instant::now(), cause.clone());
            let in_window = match admitted {
                Ok(n) => n,
                Err(causes) => {
                    let e = Error::RestartIntensity { actor: self.spec.name.clone(), causes };
                    self.end(Err(e.clone()));
                    self.nursery.fail(e);
                    return None;
                }
            };
            let attempt = self.control.restarts.load(Ordering::SeqCst) + 1;
            let delay = supervision.backoff.delay(in_window, unit_random());
            tracing::info!(actor = %self.spec.name, cause = %cause, attempt, ?delay, "restarting actor");
            // A zero delay skips the timer, whose tick (1 ms) would be most
            // of a fast restart.
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.control.cancel.cancelled() => {
                        self.end(Err(self.cancelled()));
                        return None;
                    }
                }
            }
            let later = match supervision.strategy {
                Strategy::RestForOne => self.stop_later_siblings().await,
                _ => Vec::new(),
            };
            let launched = launch(&self.nursery.actor, &self.spec, &self.control.cancel).await;
            if let Ok(l) = &launched {
                self.control.replace(l.process.clone());
                self.control.restarts.fetch_add(1, Ordering::SeqCst);
            }
            // The later siblings come back in start order, each once the one
            // before it serves, whether or not this child's start worked.
            for (go, up) in later {
                let _ = go.send(());
                tokio::select! {
                    _ = up => {}
                    _ = self.control.cancel.cancelled() => break,
                }
            }
            drop(guard);
            match launched {
                Ok(l) => return Some(l),
                Err(_) if self.control.cancel.is_cancelled() => {
                    self.end(Err(self.cancelled()));
                    return None;
                }
                Err(e) => cause = e,
            }
        }
    }

    /// Rest-for-one: stops every sibling started after this child, the
    /// latest first, and returns the handles that start them again, in
    /// start order.
    async fn stop_later_siblings(&self) -> Vec<(oneshot::Sender<()>, oneshot::Receiver<()>)> {
        let orders: Vec<_> =
            self.nursery.children().iter().skip(self.index + 1).map(|c| c.orders.clone()).collect();
        let mut held = Vec::new();
        for to in orders.iter().rev() {
            let (stopped, stopped_rx) = oneshot::channel();
            let (go_tx, go) = oneshot::channel();
            let (up, up_rx) = oneshot::channel();
            // A sibling whose supervisor is gone has ended for good.
            if to.send(RestartOrder { stopped, go, up }).is_err() {
                continue;
            }
            tokio::select! {
                r = stopped_rx => if r.is_err() { continue },
                _ = self.control.cancel.cancelled() => break,
            }
            held.push((go_tx, up_rx));
        }
        held.reverse();
        held
    }

    /// Follows a sibling's rest-for-one order: (already stopped) wait for
    /// its go, then start again. A temporary child is stopped for good
    /// instead, as in Erlang.
    async fn follow(&mut self, order: RestartOrder) -> Followed {
        let RestartOrder { stopped, go, up } = order;
        let _ = stopped.send(());
        if self.restart == Restart::Temporary {
            let _ = up.send(());
            self.end(Err(self.cancelled()));
            return Followed::Over;
        }
        tokio::select! {
            // A dropped `go` means the restarter is gone: start anyway.
            _ = go => {}
            _ = self.control.cancel.cancelled() => {
                self.end(Err(self.cancelled()));
                return Followed::Over;
            }
        }
        let attempt = self.control.restarts.load(Ordering::SeqCst) + 1;
        tracing::info!(actor = %self.spec.name, cause = "an earlier sibling restarted (rest-for-one)", attempt, "restarting actor");
        let launched = launch(&self.nursery.actor, &self.spec, &self.control.cancel).await;
        let _ = up.send(());
        match launched {
            Ok(l) => {
                self.control.replace(l.process.clone());
                self.control.restarts.fetch_add(1, Ordering::SeqCst);
                Followed::Up(Box::new(l))
            }
            Err(_) if self.control.cancel.is_cancelled() => {
                self.end(Err(self.cancelled()));
                Followed::Over
            }
            Err(e) => Followed::Failed(e),
        }
    }
}

/// Cancel request, grace period, SIGTERM, grace period, SIGKILL (through
/// its agent, for a child on another host); always reaps. Returns the exit
/// status and the last signal we sent, if any.
async fn stop(
    process: &Incarnation,
    proc: &mut Process,
    config: &crate::config::Config,
) -> (std::result::Result<ExitStatus, Unreaped>, Option<Signal>) {
    let child = process.conn.peer();
    // A child on another host gets its signals from the agent there.
    let host = proc.host().unwrap_or("this host").to_owned();
    process.conn.cancel_actor("cancelled by its nursery");
    if let Ok(st) = tokio::time::timeout(config.cancel_grace, proc.wait()).await {
        return (st, None);
    }
    tracing::warn!(%child, %host, grace = ?config.cancel_grace, "ignored the cancel request; sending SIGTERM");
    proc.terminate().await;
    if let Ok(st) = tokio::time::timeout(config.kill_grace, proc.wait()).await {
        return (st, Some(Signal::SIGTERM));
    }
    tracing::warn!(%child, %host, grace = ?config.kill_grace, "ignored SIGTERM; sending SIGKILL");
    (proc.kill(config.kill_grace + config.handshake_timeout).await, Some(Signal::SIGKILL))
}

/// Stops a child that can no longer be asked: SIGTERM, then SIGKILL after
/// the kill grace (through its agent, for a child on another host); always
/// reaps. Returns the exit status and the last signal sent.
async fn put_to_death(
    proc: &mut Process,
    config: &crate::config::Config,
) -> (std::result::Result<ExitStatus, Unreaped>, Option<Signal>) {
    proc.terminate().await;
    if let Ok(st) = tokio::time::timeout(config.kill_grace, proc.wait()).await {
        return (st, Some(Signal::SIGTERM));
    }
    (proc.kill(config.kill_grace + config.handshake_timeout).await, Some(Signal::SIGKILL))
}

/// How a process ended, as a crash to report, or `None` if it ended as asked.
///
/// A death by a signal we did not send is a crash even while we were
/// stopping the child: someone else killed it first. So is a non-zero exit
/// before any signal of ours: a cancelled actor exits with 0, so that status
/// is a failure raised while it handled the cancel.
fn classify(
    st: &ExitStatus,
    sent: Option<Signal>,
    stopped_by_us: bool,
    cancel_acked: bool,
    has_main: bool,
    delivered: Delivery,
) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let our_signal = |st: &ExitStatus| sent.is_some_and(|s| st.signal() == Some(s as i32));
    match st {
        st if st.signal().is_some() && !our_signal(st) => Some(spawn::describe(*st)),
        st if !st.success() && (!stopped_by_us || sent.is_none()) => Some(spawn::describe(*st)),
        // It told us it was cancelled (by a peer of the tree): not a crash.
        _ if cancel_acked => None,
        _ if !stopped_by_us && delivered == Delivery::Nothing => Some(if has_main {
            "exited without returning a result (exit status 0)".to_owned()
        } else {
            "exited on its own while serving (exit status 0)".to_owned()
        }),
        _ => None,
    }
}
