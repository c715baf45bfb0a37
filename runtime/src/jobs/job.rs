//! A job as the user describes it: which function with which arguments,
//! where it runs, under which key, with which retries and deadline.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::portal::Portal;
use crate::registry::{RemoteFn, decode, encode_args};
use crate::retry::{Idempotent, RetryPolicy};

use super::dispatch::{self, Dispatch};
use super::journal::Journal;
use super::record::Spec;
use super::rows::hash;
use super::target::Target;

/// A durable job: a call of remote function `F` that is recorded in a
/// [`Journal`] before it is dispatched, retried as its policy says, and
/// whose outcome is recorded, so that a rerun after a crash gets the
/// recorded result instead of running it again.
///
/// Build it with [`Job::new`] (a function declared
/// `#[actor::remote(idempotent)]`: retried, and dispatched again after a
/// crash) or [`Job::once`] (any remote function: never dispatched twice),
/// give it a target, then run it with [`Journal::submit`] or as a step of a
/// [`Workflow`](crate::jobs::Workflow):
///
/// ```no_run
/// use std::time::Duration;
/// use actor::jobs::{Job, Journal};
/// use actor::RetryPolicy;
///
/// #[actor::remote(idempotent)]
/// async fn resize(image: String) -> actor::Result<u64> {
///     // dedupe on actor::jobs::current_key() if this has side effects
///     Ok(image.len() as u64)
/// }
///
/// async fn go(journal: &Journal) -> actor::Result<u64> {
///     let job = Job::new(resize, ("cat.png".into(),))
///         .on("resizer")
///         .key("resize-cat")
///         .retry(RetryPolicy::attempts(5))
///         .deadline(Duration::from_secs(30));
///     journal.submit(job).await
/// }
/// ```
#[must_use = "a job does nothing until it is submitted or run as a step"]
pub struct Job<F: RemoteFn> {
    args: F::Args,
    target: Option<Target>,
    key: Option<String>,
    policy: RetryPolicy,
    idempotent: bool,
}

impl<F: Idempotent> Job<F> {
    /// A job of idempotent `f(args)`: its attempts are retried as its
    /// [`RetryPolicy`] says (by default 3 attempts, 10 ms backoff doubling,
    /// 20% jitter), and a run that finds it dispatched but unfinished after
    /// a crash dispatches it again, with the same key (at least once).
    pub fn new(_f: F, args: F::Args) -> Self {
        Job { args, target: None, key: None, policy: RetryPolicy::attempts(3), idempotent: true }
    }
}

impl<F: RemoteFn> Job<F> {
    /// A job of `f(args)` that must not run twice: it is dispatched at most
    /// once. If its outcome is lost (its worker or the channel died, it ran
    /// out of time, this process crashed) it ends
    /// [`Unresolved`](super::JobError::Unresolved) until resolved with
    /// [`Journal::resolve`]. Its retry policy applies only to failures
    /// before the call went out (no actor of its target's name).
    pub fn once(_f: F, args: F::Args) -> Self {
        Job { args, target: None, key: None, policy: RetryPolicy::attempts(3), idempotent: false }
    }

    /// Runs it on the actor registered as `name` (found through the
    /// arbiter for each attempt, waiting for one to appear).
    pub fn on(mut self, name: impl Into<String>) -> Self {
        self.target = Some(Target::Named(name.into()));
        self
    }

    /// Runs it on the actor behind `portal`.
    pub fn on_portal(mut self, portal: &Portal) -> Self {
        self.target = Some(Target::ViaPortal(portal.clone()));
        self
    }

    /// Runs each attempt on an actor named `name` that the job spawns and
    /// reaps once the attempt ends.
    pub fn spawned(mut self, name: impl Into<String>) -> Self {
        self.target = Some(Target::Spawned(name.into()));
        self
    }

    /// Its idempotency key: what names the job in the journal, and what the
    /// remote function reads with [`current_key`](super::current_key). A job
    /// submitted again with a recorded key gets the recorded outcome. In a
    /// workflow, a step's key is `WORKFLOW/STEP` unless given.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// How many attempts, the backoff between them, and an overall deadline.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Gives the job (all its attempts and backoffs, in this run) at most
    /// `deadline`; the time left travels with each attempt's call, so the
    /// callee is cancelled when it passes. Shorthand for the retry policy's
    /// deadline.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policy = self.policy.deadline(deadline);
        self
    }

    /// Encodes the job for dispatch under `key` (its own key if it has one).
    pub(crate) fn prepare(self, key: String, workflow: Option<(String, i64)>) -> Result<Dispatch> {
        let args = encode_args(&self.args, || format!("arguments of `{}`", F::NAME))?;
        let key = self.key.unwrap_or(key);
        let (workflow, step) = workflow.map_or((None, None), |(w, s)| (Some(w), Some(s)));
        let spec = Spec {
            key,
            workflow,
            step,
            function: F::NAME,
            args_hash: hash(&args),
            args: args.to_vec(),
            target: self.target.as_ref().map_or_else(|| "none".into(), Target::describe),
            idempotent: self.idempotent,
        };
        Ok(Dispatch { spec, args, target: self.target, policy: self.policy })
    }
}

impl Journal {
    /// Runs `job`: records it, dispatches it (retrying as its policy says)
    /// and records its outcome; returns its result. A job whose key has a
    /// recorded success returns that result without running; without a
    /// key, a random one is made (so a resubmission is a new job).
    ///
    /// # Errors
    ///
    /// [`Error::Job`](crate::Error::Job): [`JobError::Failed`] with every
    /// attempt's error, [`JobError::Unresolved`], [`JobError::Busy`],
    /// [`JobError::KeyConflict`], or a journal failure;
    /// [`Error::Config`](crate::Error::Config) for a job without a target
    /// outside the local executor; [`Error::Codec`](crate::Error::Codec) if
    /// the result does not decode as `F::Output`.
    ///
    /// [`JobError::Failed`]: super::JobError::Failed
    /// [`JobError::Unresolved`]: super::JobError::Unresolved
    /// [`JobError::Busy`]: super::JobError::Busy
    /// [`JobError::KeyConflict`]: super::JobError::KeyConflict
    pub async fn submit<F: RemoteFn>(&self, job: Job<F>) -> Result<F::Output> {
        let dispatch = job.prepare(random_key(), None)?;
        let key = dispatch.spec.key.clone();
        let (bytes, _) = dispatch::run(self, dispatch).await?;
        decode_result::<F::Output>(&bytes, F::NAME, &key)
    }
}

pub(crate) fn decode_result<T: DeserializeOwned>(bytes: &[u8], function: &str, key: &str) -> Result<T> {
    decode(bytes, || format!("recorded result of job `{key}` (`{function}`)"))
}

fn random_key() -> String {
    let mut raw = [0u8; 8];
    let n = getrandom::fill(&mut raw)
        .map_or_else(|_| u64::from(std::process::id()), |()| u64::from_le_bytes(raw));
    format!("job-{n:016x}")
}
