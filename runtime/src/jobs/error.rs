//! What can go wrong with a durable job or workflow: [`JobError`], which
//! reaches callers inside [`Error::Job`](crate::Error::Job).

use std::fmt;
use std::path::PathBuf;

/// A failure of the jobs machinery or of a job: a damaged journal, a
/// workflow in use elsewhere, a workflow whose steps changed, a job whose
/// outcome is unknown, a job that used up its attempts.
///
/// Carried by [`Error::Job`](crate::Error::Job); the methods of
/// [`Journal`](crate::jobs::Journal) and
/// [`Workflow`](crate::jobs::Workflow) return it that way, so `?` works in
/// any function returning [`actor::Result`](crate::Result).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum JobError {
    /// The journal file is damaged (truncated, overwritten, not a journal).
    /// Nothing was written to it: it is left exactly as found.
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// What is wrong, as found.
        detail: String,
    },
    /// The journal could not be opened, read or written (permissions, a
    /// full disk, a journal from a newer version of this library).
    Storage {
        /// The journal file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The workflow (or a job with the same key) is being run by another
    /// live process. Two runs at once would dispatch the same steps twice.
    Busy {
        /// The workflow id, or the job key.
        what: String,
        /// The process running it.
        owner: Owner,
    },
    /// The workflow asked for a different step than the journal recorded at
    /// that position: its code, its inputs or its decisions changed between
    /// runs (see the rules in [`jobs`](crate::jobs)). Replaying on would
    /// hand results to the wrong steps, so the run stops.
    Diverged {
        /// The workflow id.
        workflow: String,
        /// The step's position (0 for the first).
        step: u64,
        /// What the journal holds there, if anything.
        recorded: Option<StepSig>,
        /// What this run asked for there, if anything.
        now: Option<StepSig>,
    },
    /// The same key was given to a job with another function or arguments.
    KeyConflict {
        /// The key.
        key: String,
        /// The job recorded under it.
        recorded: StepSig,
        /// The job submitted now.
        now: StepSig,
    },
    /// A job that may not run twice (built with
    /// [`Job::once`](crate::jobs::Job::once)) was dispatched and its outcome
    /// never arrived: its process, its worker or the channel died, or it
    /// ran out of time. It may or may not have run, so it is not dispatched
    /// again until someone who knows decides, with
    /// [`Journal::resolve`](crate::jobs::Journal::resolve).
    Unresolved {
        /// The job's key.
        key: String,
        /// The function.
        function: String,
        /// Why its outcome is unknown.
        reason: String,
    },
    /// Every attempt the job's retry policy allowed failed (or one failed in
    /// a way another attempt could not change).
    Failed {
        /// The job's key.
        key: String,
        /// The function.
        function: String,
        /// Each attempt's error, in order.
        attempts: Vec<AttemptError>,
    },
    /// There is no job with this key, or no workflow with this id.
    NotFound {
        /// The key or workflow id.
        what: String,
    },
    /// A job or workflow in this state cannot be resolved this way.
    NotResolvable {
        /// The job's key.
        key: String,
        /// Its state.
        state: JobState,
    },
}

/// One failed attempt of a job, as recorded in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptError {
    /// The attempt's number, 1 for the first.
    pub attempt: u32,
    /// The actor that ran it (`name#id`), if it reached one.
    pub actor: Option<String>,
    /// The error, as displayed.
    pub error: String,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Recorded, and being dispatched (or interrupted while it was).
    Running,
    /// Finished with a result, recorded.
    Succeeded,
    /// Used up its attempts; every attempt's error is recorded.
    Failed,
    /// A job that may not run twice whose outcome is unknown; see
    /// [`JobError::Unresolved`].
    Unresolved,
}

impl JobState {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Unresolved => "unresolved",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "unresolved" => JobState::Unresolved,
            _ => return None,
        })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies a step: the function it calls and a hash of its encoded
/// arguments. A rerun must ask for the same at each position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSig {
    /// The function's registered name.
    pub function: String,
    /// SHA-256 of the msgpack-encoded arguments, hex (the first 16 digits
    /// are shown).
    pub args_hash: String,
}

impl fmt::Display for StepSig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.args_hash.get(..16).unwrap_or(&self.args_hash);
        write!(f, "`{}` with arguments {short}", self.function)
    }
}

/// The process that holds a workflow or a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// The host it runs on.
    pub host: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Corrupt { path, detail } => write!(
                f,
                "the job journal {} is damaged: {detail}; it was left untouched (keep a copy; \
                 `sqlite3 FILE .recover` salvages what is readable)",
                path.display()
            ),
            JobError::Storage { path, detail } => {
                write!(f, "the job journal {}: {detail}", path.display())
            }
            JobError::Busy { what, owner } if owner.pid == std::process::id() => {
                write!(f, "{what} is being run already, by another task of this process ({owner})")
            }
            JobError::Busy { what, owner } => write!(
                f,
                "{what} is being run by another process ({owner}); wait for it to end, or stop it \
                 (a process that died is detected and taken over)"
            ),
            JobError::Diverged { workflow, step, recorded, now } => {
                write!(f, "workflow `{workflow}` changed at step {step}: ")?;
                match (recorded, now) {
                    (Some(r), Some(n)) => write!(f, "the journal recorded {r}, this run asked for {n}")?,
                    (Some(r), None) => write!(f, "the journal recorded {r}, this run ended before it")?,
                    (None, Some(n)) => write!(f, "this run asked for {n}, the journal holds nothing there")?,
                    (None, None) => f.write_str("the steps differ")?,
                }
                f.write_str(
                    "; a workflow must ask for the same steps, in the same order, with the same \
                     arguments on every run (use a new workflow id for new code)",
                )
            }
            JobError::KeyConflict { key, recorded, now } => write!(
                f,
                "job key `{key}` was used for {recorded}, and is now given to {now}; a key names \
                 one job"
            ),
            JobError::Unresolved { key, function, reason } => write!(
                f,
                "job `{key}` (`{function}`, not idempotent) was dispatched and its outcome is \
                 unknown ({reason}); it is not dispatched again until resolved as succeeded, \
                 failed, or to run again (Journal::resolve, or `actor jobs JOURNAL --resolve {key}`)"
            ),
            JobError::Failed { key, function, attempts } => {
                write!(f, "job `{key}` (`{function}`) failed after {} attempt(s):", attempts.len())?;
                for a in attempts {
                    let by = a.actor.as_deref().map(|u| format!(" on `{u}`")).unwrap_or_default();
                    let text = a.error.replace('\n', "\n   ");
                    write!(f, "\n{}){by} {text}", a.attempt)?;
                }
                Ok(())
            }
            JobError::NotFound { what } => write!(f, "no job or workflow `{what}` in the journal"),
            JobError::NotResolvable { key, state } => {
                write!(f, "job `{key}` is {state}; only an unresolved or failed job can be resolved")
            }
        }
    }
}

impl std::error::Error for JobError {}

impl From<JobError> for crate::Error {
    fn from(e: JobError) -> Self {
        crate::Error::Job(Box::new(e))
    }
}
