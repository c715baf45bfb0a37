//! Dispatching a job: claim it in the journal, make attempts (in an actor,
//! or in this process for the local executor), record each, back off
//! between them, and decide when the job has failed or become unresolved.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actor_transport::{ErrorKind, Uid};
use bytes::Bytes;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::registry::{Failure, Handler};
use crate::retry::{RetryPolicy, retryable};
use crate::supervise::unit_random;

use super::error::JobError;
use super::journal::Journal;
use super::record::{Claim, Spec, Then};
use super::target::Target;

/// A job ready to dispatch: its record, encoded arguments, target, policy.
pub(crate) struct Dispatch {
    pub spec: Spec,
    pub args: Bytes,
    pub target: Option<Target>,
    pub policy: RetryPolicy,
}

/// A failed attempt: its error, whether the call may have reached the
/// function, and the actor it went to.
struct AttemptFail {
    error: Error,
    sent: bool,
    actor: Option<String>,
}

/// Runs job `d` to its outcome; returns its encoded result and whether it
/// came from the journal (an earlier run finished it) rather than an attempt.
pub(crate) async fn run(journal: &Journal, d: Dispatch) -> Result<(Vec<u8>, bool)> {
    let Dispatch { spec, args, target, policy } = d;
    let key = spec.key.clone();
    let function = spec.function;
    let idempotent = spec.idempotent;
    if target.is_none() && !journal.is_local() {
        return Err(Error::Config(format!(
            "job `{key}` (`{function}`) has no target: give it .on(name), .on_portal(portal) or .spawned(name)"
        )));
    }
    let (claim, _claimed) = journal.claim(spec).await?;
    let (mut next, mut failures) = match claim {
        Claim::Done(result) => return Ok((result, true)),
        Claim::Dispatch { next, failures } => (next, failures),
        Claim::Refused(e) => return Err(Error::Job(e)),
    };
    let until = policy.deadline.map(|d| (Instant::now() + d, d));
    // The claim recorded the first attempt; each later one is recorded here.
    // Either way before the call goes out: a crash from then on leaves an
    // attempt without an outcome, which the next run sees.
    let mut recorded = true;
    loop {
        if !std::mem::replace(&mut recorded, false) {
            journal.start_attempt(&key, next).await?;
        }
        let outcome = attempt(journal.is_local(), target.as_ref(), function, args.clone(), &key, until).await;
        let failed = match outcome {
            Ok((result, actor)) => {
                let result = result.to_vec();
                journal.succeed(&key, next, actor, result.clone()).await?;
                return Ok((result, false));
            }
            Err(f) => f,
        };
        failures = failures.saturating_add(1);
        let then = decide(idempotent, &failed, failures, policy.attempts, until);
        let text = failed.error.to_string();
        tracing::debug!(job = %key, attempt = next, error = %text, "job attempt failed");
        let unresolved = matches!(then, Then::Unresolve);
        let again = matches!(then, Then::Retry);
        journal.fail_attempt(&key, next, failed.actor, text.clone(), then).await?;
        if unresolved {
            return Err(JobError::Unresolved { key, function: function.to_owned(), reason: text }.into());
        }
        if !again {
            return Err(journal.failure(&key)?.into());
        }
        let delay = policy.backoff.delay(failures, unit_random());
        let delay = until.map_or(delay, |(at, _)| delay.min(at.saturating_duration_since(Instant::now())));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        next += 1;
    }
}

/// What a failed attempt makes of its job.
fn decide(
    idempotent: bool,
    f: &AttemptFail,
    failures: u32,
    attempts: u32,
    until: Option<(Instant, Duration)>,
) -> Then {
    let out_of_time = until.is_some_and(|(at, _)| Instant::now() >= at);
    let spent = failures >= attempts || out_of_time;
    if !f.sent {
        // Nothing went out: safe to try again, idempotent or not.
        return if spent { Then::Fail } else { Then::Retry };
    }
    if !idempotent {
        return if outcome_unknown(&f.error) { Then::Unresolve } else { Then::Fail };
    }
    if spent || !retryable(&f.error) { Then::Fail } else { Then::Retry }
}

/// Whether a call that failed this way may or may not have run its
/// function: the process, the channel or the time ran out under it.
fn outcome_unknown(e: &Error) -> bool {
    match e {
        Error::ActorCrashed { .. }
        | Error::Disconnected { .. }
        | Error::Channel(_)
        | Error::Timeout { .. }
        | Error::Cancelled { .. } => true,
        Error::Remote(r) => matches!(r.kind, ErrorKind::Crashed | ErrorKind::Cancelled | ErrorKind::Protocol),
        _ => false,
    }
}

/// Makes one attempt, within the job's deadline; returns the encoded result
/// and the actor that answered.
async fn attempt(
    local: bool,
    target: Option<&Target>,
    function: &'static str,
    args: Bytes,
    key: &str,
    until: Option<(Instant, Duration)>,
) -> std::result::Result<(Bytes, String), AttemptFail> {
    let sent = Arc::new(AtomicBool::new(false));
    let work = async {
        match (local, target) {
            (false, Some(target)) => remote(target, function, args, key, &sent, until).await,
            _ => {
                sent.store(true, Ordering::SeqCst);
                in_process(function, args, key).await
            }
        }
    };
    let Some((at, d)) = until else { return work.await };
    match tokio::time::timeout_at(at, crate::deadline::within(at, work)).await {
        Ok(r) => r,
        Err(_) => Err(AttemptFail {
            error: Error::Timeout { what: format!("job `{key}` (`{function}`)"), after: d },
            sent: sent.load(Ordering::SeqCst),
            actor: None,
        }),
    }
}

/// One attempt in an actor.
async fn remote(
    target: &Target,
    function: &'static str,
    args: Bytes,
    key: &str,
    sent: &AtomicBool,
    until: Option<(Instant, Duration)>,
) -> std::result::Result<(Bytes, String), AttemptFail> {
    let unsent = |error| AttemptFail { error, sent: false, actor: None };
    let call = |portal: crate::Portal| async move {
        sent.store(true, Ordering::SeqCst);
        match portal.call_keyed(function, args, Some(key.to_owned())).await {
            Ok((value, conn)) => Ok((value, conn.peer().to_string())),
            Err(error) => Err(AttemptFail { error, sent: true, actor: Some(portal.uid().to_string()) }),
        }
    };
    match target {
        Target::ViaPortal(p) => call(p.clone()).await,
        Target::Named(name) => {
            // Wait for an actor of that name at most until the deadline, or
            // for a spawn's worth of time (a restart may be under way).
            let spawn = crate::local::current().map_or(Duration::from_secs(10), |a| a.config.spawn_timeout);
            let bound = until.map_or(spawn, |(at, _)| at.saturating_duration_since(Instant::now()));
            let portal = crate::discovery::wait_for_actor_within(name, bound).await.map_err(unsent)?;
            call(portal).await
        }
        Target::Spawned(name) => {
            let name = name.clone();
            let outcome = crate::open_nursery(|n| async move {
                let portal = n.start_actor(name).await?;
                Ok(call(portal).await)
            })
            .await;
            match outcome {
                Ok(r) => r,
                Err(error) => Err(AttemptFail { error, sent: sent.load(Ordering::SeqCst), actor: None }),
            }
        }
    }
}

/// One attempt in this process (the local executor): the function's
/// registered handler, with the job's key, as a served call would run it.
async fn in_process(
    function: &'static str,
    args: Bytes,
    key: &str,
) -> std::result::Result<(Bytes, String), AttemptFail> {
    let here = Uid { name: "local".into(), id: format!("{:016x}", std::process::id()) };
    let fail = |error: Error| AttemptFail { error, sent: true, actor: Some(here.to_string()) };
    let Some(Handler::Single(handler)) = crate::registry::lookup(function) else {
        return Err(fail(Error::msg(format!(
            "`{function}` is not a plain remote function registered in this binary"
        ))));
    };
    let served = super::key::scope(Some(Arc::from(key)), handler(args)).await;
    match served {
        Ok(value) => Ok((value, here.to_string())),
        // As a remote caller would see it, so retries judge it the same way.
        Err(Failure::Failed(e)) => Err(fail(Error::Remote(Box::new(e.to_remote(&here))))),
        Err(Failure::Panicked(message)) => Err(fail(Error::Remote(Box::new(
            actor_transport::RemoteError::new(here.clone(), ErrorKind::Panic, "panic", message),
        )))),
        Err(Failure::BadArguments(message)) => {
            Err(fail(Error::Remote(Box::new(actor_transport::RemoteError::new(
                here.clone(),
                ErrorKind::BadArguments,
                "actor::BadArguments",
                message,
            )))))
        }
    }
}
