//! Retrying calls of idempotent functions: a failed attempt is made again,
//! after a backoff, on whichever process serves the actor by then.

use std::time::Duration;

use actor_transport::ErrorKind;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::portal::Portal;
use crate::registry::{RemoteFn, decode, encode_args};
use crate::supervise::{Backoff, unit_random};

/// A remote function that may run more than once with the effect of running
/// once, so a call whose outcome is unknown (its actor died mid-call) may be
/// made again. Implemented by `#[actor::remote(idempotent)]`; required by
/// [`Portal::run_with_retry`], so only such functions can be retried:
///
/// ```no_run
/// #[actor::remote(idempotent)]
/// async fn lookup(key: String) -> actor::Result<u64> {
///     Ok(key.len() as u64)
/// }
///
/// async fn ask(p: &actor::Portal) -> actor::Result<u64> {
///     p.run_with_retry(lookup, ("k".into(),), &actor::RetryPolicy::attempts(3)).await
/// }
/// ```
///
/// A function not declared idempotent is refused at compile time:
///
/// ```compile_fail
/// #[actor::remote]
/// async fn transfer(amount: u64) -> actor::Result<()> {
///     Ok(())
/// }
///
/// async fn pay(p: &actor::Portal) -> actor::Result<()> {
///     p.run_with_retry(transfer, (10,), &actor::RetryPolicy::attempts(3)).await
/// }
/// ```
pub trait Idempotent: RemoteFn {}

/// How to retry a call: at most `attempts` attempts, a [`Backoff`] between
/// them, and optionally an overall deadline for all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) deadline: Option<Duration>,
}

impl RetryPolicy {
    /// At most `attempts` attempts (at least 1), with the default backoff
    /// (10 ms doubling to 1 s, 20% jitter) and no overall deadline.
    pub fn attempts(attempts: u32) -> Self {
        RetryPolicy { attempts: attempts.max(1), backoff: Backoff::default(), deadline: None }
    }

    /// The delay before each further attempt.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up once `deadline` has passed since the first attempt began,
    /// cutting short the attempt then running.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// Whether another attempt might succeed: failures of the process or the
/// channel, and errors the function raised; not cancellations, nor errors
/// that would repeat (an unknown or unexposed function, bad arguments, a
/// result that does not decode).
pub(crate) fn retryable(e: &Error) -> bool {
    match e {
        Error::ActorCrashed { .. }
        | Error::ActorLost { .. }
        | Error::Disconnected { .. }
        | Error::Channel(_)
        | Error::Timeout { .. } => true,
        Error::Remote(r) => matches!(
            r.kind,
            ErrorKind::Application
                | ErrorKind::Panic
                | ErrorKind::Crashed
                | ErrorKind::Relayed
                | ErrorKind::Group
        ),
        _ => false,
    }
}

impl Portal {
    /// Runs idempotent `f(args)` in the remote actor like [`Portal::run`],
    /// making the call again, as `policy` says, when an attempt fails in a
    /// way another attempt might not: the actor died mid-call or the channel
    /// broke, or the function returned an error or panicked. Before each
    /// further attempt it waits out the backoff and, for a child of a
    /// restarting nursery whose process died, for the restarted process
    /// (each attempt goes to the process serving the actor then).
    ///
    /// # Errors
    ///
    /// [`Error::Retries`] listing every attempt's error in order, once the
    /// attempts or the deadline are used up; a cancellation, or an error no
    /// attempt could change (unknown function, bad arguments, a result that
    /// does not decode), as itself, at once.
    pub async fn run_with_retry<F: Idempotent>(
        &self,
        _f: F,
        args: F::Args,
        policy: &RetryPolicy,
    ) -> Result<F::Output> {
        let args = encode_args(&args, || format!("arguments of `{}`", F::NAME))?;
        let until = policy.deadline.map(|d| (Instant::now() + d, d));
        let mut failures = Vec::new();
        for attempt in 1..=policy.attempts {
            let call = self.call_encoded(F::NAME, args.clone());
            let outcome = match until {
                // The callee learns the deadline too (see deadline.rs).
                Some((at, d)) => match tokio::time::timeout_at(at, crate::deadline::within(at, call)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Timeout {
                        what: format!("`{}` on actor `{}`", F::NAME, self.uid()),
                        after: d,
                    }),
                },
                None => call.await,
            };
            let e = match outcome {
                Ok((value, from)) => {
                    return decode(&value, || format!("result of `{}` from `{}`", F::NAME, from.peer()));
                }
                Err(e) => e,
            };
            let again = retryable(&e);
            if !again && failures.is_empty() {
                return Err(e);
            }
            failures.push(e);
            let out_of_time = until.is_some_and(|(at, _)| Instant::now() >= at);
            if !again || out_of_time || attempt == policy.attempts {
                break;
            }
            let delay = policy.backoff.delay(attempt, unit_random());
            let pause = async {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                // A restart may never come (the child is temporary, or its
                // backoff is long): wait for one at most until the deadline,
                // or without one for a spawn's worth of time.
                let spawn =
                    crate::local::current().map_or(Duration::from_secs(10), |a| a.config.spawn_timeout);
                let bound = until.map_or(spawn, |(at, _)| at.saturating_duration_since(Instant::now()));
                self.await_restart(bound).await;
            };
            match until {
                Some((at, _)) => {
                    let _ = tokio::time::timeout_at(at, pause).await;
                }
                None => pause.await,
            }
        }
        Err(Error::Retries { function: F::NAME.to_owned(), actor: self.uid().name, attempts: failures })
    }
}
