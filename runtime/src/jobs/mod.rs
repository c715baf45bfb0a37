//! Durable jobs and workflows: work that survives Ctrl-C, a killed root and
//! crashed workers.
//!
//! A [`Job`] is a call of a remote function, recorded in a [`Journal`] (an
//! SQLite file) before it is dispatched, with an idempotency key, a retry
//! policy and a deadline; its outcome is recorded when it ends. A
//! [`Workflow`] is an ordinary async function whose steps are jobs: run it
//! again under the same id after a crash and every step the journal holds a
//! result for returns that result without running, while the first
//! unfinished step is dispatched (again, with the same key: at least once).
//!
//! ```no_run
//! use actor::jobs::{Job, Journal};
//!
//! #[actor::remote(idempotent)]
//! async fn add(a: u64, b: u64) -> actor::Result<u64> {
//!     Ok(a + b)
//! }
//!
//! async fn sum(journal: &Journal) -> actor::Result<u64> {
//!     journal
//!         .workflow("sum-1")
//!         .run(|wf| async move {
//!             let mut total = 0;
//!             for i in 0..10 {
//!                 total = wf.step(Job::new(add, (total, i)).on("adder")).await?;
//!             }
//!             Ok(total)
//!         })
//!         .await
//! }
//! ```
//!
//! # Keys and side effects
//!
//! Each job has a key (a workflow step's is `WORKFLOW/POSITION` unless
//! given). It travels with every attempt's call, and the remote function
//! reads it with [`current_key`]: a function with side effects records the
//! keys it has acted on and skips one it has seen, which makes "at least
//! once" into "exactly once" for that effect. Jobs built with [`Job::new`]
//! (functions declared `#[actor::remote(idempotent)]`) are retried and
//! dispatched again after a crash; jobs built with [`Job::once`] are
//! dispatched at most once, and one whose outcome was lost stops the run
//! with [`JobError::Unresolved`] until a person settles it with
//! [`Journal::resolve`].
//!
//! # What a workflow must not do
//!
//! Replay hands each step the result recorded at its position, so a rerun
//! must ask for the same steps in the same order with the same arguments.
//! A workflow body must therefore not decide anything from what is not
//! recorded:
//!
//! - no randomness, clock readings, environment or files read in the body
//!   itself: do such things in a step (a job), whose result is recorded;
//! - no IO with effects (writes, messages, calls made with a plain
//!   [`Portal`](crate::Portal)) outside steps: they run again on every
//!   rerun;
//! - no steps started in an order that depends on timing (which of two
//!   racing futures finished first): positions are taken when
//!   [`Workflow::step`] is called.
//!
//! A rerun whose steps differ from the recorded ones fails with
//! [`JobError::Diverged`], naming the position and both steps (function
//! and a hash of the arguments). To run changed code, use a new workflow id.
//!
//! # Ownership and damage
//!
//! A process running a workflow owns it in the journal (its pid, with its
//! start time and the boot id, so a reused pid is told apart); another
//! process that runs it at the same time gets [`JobError::Busy`]. An owner
//! that died is detected and its workflow taken over by the next run. A
//! damaged journal (truncated, overwritten, a record failing its checksum)
//! is refused with [`JobError::Corrupt`] when opened and left untouched.
//!
//! # Testing
//!
//! [`Journal::local`] runs every job in this process, through the same
//! recording, retries and replay, without spawning: workflows can be
//! unit-tested under `#[tokio::test]` with [`Journal::in_memory`].
//!
//! The journal part needs the `jobs` feature (on by default);
//! [`current_key`] is always there, so workers built without it still read
//! the keys of jobs sent to them.

mod error;
pub(crate) mod key;

#[cfg(feature = "jobs")]
mod dispatch;
#[cfg(feature = "jobs")]
mod inspect;
#[cfg(feature = "jobs")]
mod job;
#[cfg(feature = "jobs")]
mod journal;
#[cfg(feature = "jobs")]
mod owner;
#[cfg(feature = "jobs")]
mod record;
#[cfg(feature = "jobs")]
mod rows;
#[cfg(feature = "jobs")]
mod store;
#[cfg(feature = "jobs")]
mod target;
#[cfg(all(test, feature = "jobs"))]
mod tests;
#[cfg(feature = "jobs")]
mod workflow;
#[cfg(feature = "jobs")]
mod writer;

pub use error::{AttemptError, JobError, JobState, Owner, StepSig};
#[cfg(feature = "jobs")]
pub use inspect::{AttemptInfo, AttemptOutcome, JobInfo, Resolution, WorkflowInfo, WorkflowState};
#[cfg(feature = "jobs")]
pub use job::Job;
#[cfg(feature = "jobs")]
pub use journal::{Durability, Journal};
pub use key::current_key;
#[cfg(feature = "jobs")]
pub use target::Target;
#[cfg(feature = "jobs")]
pub use workflow::{Workflow, WorkflowRun};
