//! Looking at a journal (workflows, jobs, attempts, with their states) and
//! settling by hand a job only a person can settle.

use serde::Serialize;

use crate::error::Result;
use crate::registry::encode;

use super::error::{JobError, JobState, Owner};
use super::journal::Journal;
use super::owner::Holder;
use super::rows::{AttemptRow, JobRow, Outcome, WfState, WorkflowRow, now_ms};
use super::store::Fail;

/// Where a workflow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkflowState {
    /// A live process is running it.
    Running,
    /// A run began and its process ended (or dropped it) before the
    /// workflow did: run it again to resume.
    Interrupted,
    /// Its last run returned a value.
    Finished,
    /// Its last run returned an error.
    Failed,
}

impl WorkflowState {
    /// Its name, as `actor jobs` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Interrupted => "interrupted",
            WorkflowState::Finished => "finished",
            WorkflowState::Failed => "failed",
        }
    }
}

/// A workflow as the journal records it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WorkflowInfo {
    /// Its id.
    pub id: String,
    /// Where it stands.
    pub state: WorkflowState,
    /// How many times it was run (started).
    pub runs: u64,
    /// How many steps are recorded.
    pub steps: u64,
    /// How many of them succeeded.
    pub succeeded: u64,
    /// The process running it, while one does.
    pub owner: Option<Owner>,
    /// The last run's value (msgpack), once finished.
    pub result: Option<Vec<u8>>,
    /// The last run's error, if it failed.
    pub error: Option<String>,
    /// When it was first run, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When its record last changed.
    pub updated_ms: i64,
}

/// How one attempt of a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// It is under way (its process lives).
    Running,
    /// It returned the job's result.
    Succeeded,
    /// It failed; its error is recorded.
    Failed,
    /// Its outcome never arrived (its process ended or dropped the job).
    Interrupted,
}

impl AttemptOutcome {
    /// Its name, as `actor jobs` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Interrupted => "interrupted",
        }
    }
}

/// One attempt of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptInfo {
    /// 1 for the first.
    pub number: u32,
    /// The actor that answered or failed (`name#id`), when known.
    pub actor: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Its error, if it failed or was interrupted.
    pub error: Option<String>,
    /// When it was dispatched, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// When it ended.
    pub ended_ms: Option<i64>,
}

/// A job as the journal records it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JobInfo {
    /// Its idempotency key.
    pub key: String,
    /// The workflow it is a step of, and its position there.
    pub workflow: Option<(String, u64)>,
    /// The function's registered name.
    pub function: String,
    /// Where it runs (`actor NAME`, `spawn NAME`, `portal NAME`).
    pub target: String,
    /// Whether it may be dispatched more than once.
    pub idempotent: bool,
    /// Where it stands.
    pub state: JobState,
    /// Its arguments (msgpack).
    pub args: Vec<u8>,
    /// Its result (msgpack), once it succeeded.
    pub result: Option<Vec<u8>>,
    /// Why it failed or is unresolved.
    pub error: Option<String>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptInfo>,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When its record last changed.
    pub updated_ms: i64,
}

/// How a person settles a job that is [unresolved](JobError::Unresolved)
/// (or failed), with [`Journal::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// It did run, with this result (msgpack; see
    /// [`Resolution::succeeded`]): the next run replays it.
    Succeeded(Vec<u8>),
    /// It failed (or did not run and must not), for this reason: the next
    /// run replays the failure.
    Failed(String),
    /// It did not run: the next run dispatches it again, with a fresh count
    /// of attempts.
    Retry,
}

impl Resolution {
    /// [`Resolution::Succeeded`] with `value` encoded as the job's result.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) if `value` cannot be encoded.
    pub fn succeeded<T: Serialize>(value: &T) -> Result<Resolution> {
        Ok(Resolution::Succeeded(encode(value, || "the resolved result".into())?.to_vec()))
    }
}

impl Journal {
    /// Every workflow in the journal, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Job`](crate::Error::Job) if the journal cannot be read or a
    /// record is damaged.
    pub fn workflows(&self) -> Result<Vec<WorkflowInfo>> {
        self.read(|db| {
            let mut out = Vec::new();
            for w in WorkflowRow::all(db)? {
                let jobs = JobRow::of(db, Some(&w.id))?;
                out.push(workflow_info(w, &jobs));
            }
            Ok(out)
        })
    }

    /// The jobs of workflow `workflow` in step order, or with `None` the
    /// jobs submitted on their own, oldest first.
    ///
    /// # Errors
    ///
    /// As [`Journal::workflows`].
    pub fn jobs(&self, workflow: Option<&str>) -> Result<Vec<JobInfo>> {
        self.read(|db| {
            let mut out = Vec::new();
            for j in JobRow::of(db, workflow)? {
                let attempts = AttemptRow::of(db, &j.key)?;
                out.push(job_info(j, attempts));
            }
            Ok(out)
        })
    }

    /// The job recorded under `key`.
    ///
    /// # Errors
    ///
    /// [`JobError::NotFound`] if there is none; otherwise as
    /// [`Journal::workflows`].
    pub fn job(&self, key: &str) -> Result<JobInfo> {
        self.read(|db| {
            let j = JobRow::load(db, key)?
                .ok_or_else(|| Fail::from(JobError::NotFound { what: key.to_owned() }))?;
            let attempts = AttemptRow::of(db, key)?;
            Ok(job_info(j, attempts))
        })
    }

    /// Settles job `key`, which is [unresolved](JobError::Unresolved) or
    /// failed, as `resolution` says; the settlement is recorded as an
    /// attempt of its own (actor `resolved by pid N`), except a retry, whose
    /// next dispatch is one. The next run of its
    /// workflow (or submission of the job) goes on from there.
    ///
    /// # Errors
    ///
    /// [`JobError::NotFound`] if there is no such job;
    /// [`JobError::NotResolvable`] if it is running or succeeded; a journal
    /// failure.
    pub fn resolve(&self, key: &str, resolution: Resolution) -> Result<()> {
        let key = key.to_owned();
        self.inner.store.write_now(move |db, me| resolve(db, me, &key, resolution))
    }
}

fn resolve(
    db: &rusqlite::Connection,
    me: &Holder,
    key: &str,
    resolution: Resolution,
) -> std::result::Result<(), Fail> {
    let mut job =
        JobRow::load(db, key)?.ok_or_else(|| Fail::from(JobError::NotFound { what: key.to_owned() }))?;
    if !matches!(job.state, JobState::Unresolved | JobState::Failed) {
        return Err(JobError::NotResolvable { key: key.to_owned(), state: job.state }.into());
    }
    let now = now_ms();
    let number = AttemptRow::of(db, key)?.last().map_or(1, |a| a.number + 1);
    let by = Some(format!("resolved by pid {}", me.pid));
    let mut record = AttemptRow {
        key: key.to_owned(),
        number,
        actor: by,
        started_ms: now,
        ended_ms: Some(now),
        outcome: None,
        error: None,
    };
    match resolution {
        Resolution::Succeeded(value) => {
            record.outcome = Some(Outcome::Ok);
            job.state = JobState::Succeeded;
            job.result = Some(value);
            job.error = None;
        }
        Resolution::Failed(reason) => {
            let reason = format!("resolved as failed: {reason}");
            record.outcome = Some(Outcome::Error);
            record.error = Some(reason.clone());
            job.state = JobState::Failed;
            job.error = Some(reason);
        }
        Resolution::Retry => {
            // Nothing to record as an attempt: the next dispatch is one.
            job.state = JobState::Running;
            job.error = None;
            job.epoch = number;
        }
    }
    if record.outcome.is_some() {
        record.store(db)?;
    }
    job.owner = None;
    job.updated_ms = now;
    Ok(job.store(db)?)
}

fn workflow_info(w: WorkflowRow, jobs: &[JobRow]) -> WorkflowInfo {
    let holder = w.owner.as_deref().and_then(Holder::decode).filter(Holder::alive);
    let state = match (w.state, &holder) {
        (WfState::Running, Some(_)) => WorkflowState::Running,
        (WfState::Running, None) => WorkflowState::Interrupted,
        (WfState::Finished, _) => WorkflowState::Finished,
        (WfState::Failed, _) => WorkflowState::Failed,
    };
    WorkflowInfo {
        id: w.id,
        state,
        runs: u64::try_from(w.runs).unwrap_or(0),
        steps: jobs.len() as u64,
        succeeded: jobs.iter().filter(|j| j.state == JobState::Succeeded).count() as u64,
        owner: holder.map(|h| h.owner()),
        result: w.result,
        error: w.error,
        created_ms: w.created_ms,
        updated_ms: w.updated_ms,
    }
}

fn job_info(j: JobRow, attempts: Vec<AttemptRow>) -> JobInfo {
    // An attempt without an outcome is under way only while the process
    // that dispatched it lives; the next claim records it as interrupted.
    let live = j.owner.as_deref().and_then(Holder::decode).is_some_and(|h| h.alive());
    let attempts = attempts
        .into_iter()
        .map(|a| AttemptInfo {
            number: u32::try_from(a.number).unwrap_or(u32::MAX),
            actor: a.actor,
            outcome: match a.outcome {
                None if live => AttemptOutcome::Running,
                None => AttemptOutcome::Interrupted,
                Some(Outcome::Ok) => AttemptOutcome::Succeeded,
                Some(Outcome::Error) => AttemptOutcome::Failed,
                Some(Outcome::Interrupted) => AttemptOutcome::Interrupted,
            },
            error: a.error,
            started_ms: a.started_ms,
            ended_ms: a.ended_ms,
        })
        .collect();
    JobInfo {
        workflow: j.workflow.zip(j.step.map(|s| u64::try_from(s).unwrap_or(0))),
        key: j.key,
        function: j.function,
        target: j.target,
        idempotent: j.idempotent,
        state: j.state,
        args: j.args,
        result: j.result,
        error: j.error,
        attempts,
        created_ms: j.created_ms,
        updated_ms: j.updated_ms,
    }
}
