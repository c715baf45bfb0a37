//! The journal's state changes for one job: claim it (record it before its
//! first dispatch, or pick up what an earlier run left), record each
//! attempt's start and end, and the job's outcome.

use rusqlite::Connection;

use super::error::{AttemptError, JobError, JobState, StepSig};
use super::journal::Journal;
use super::owner::Holder;
use super::rows::{AttemptRow, JobRow, Outcome, now_ms};
use super::store::Fail;

/// A job as submitted: what is recorded before its first dispatch.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub key: String,
    pub workflow: Option<String>,
    pub step: Option<i64>,
    pub function: &'static str,
    pub args: Vec<u8>,
    pub args_hash: String,
    pub target: String,
    pub idempotent: bool,
}

impl Spec {
    pub(crate) fn sig(&self) -> StepSig {
        StepSig { function: self.function.to_owned(), args_hash: self.args_hash.clone() }
    }
}

/// What to do with a claimed job.
pub(crate) enum Claim {
    /// Dispatch it: attempt `next` is recorded as started (in the same
    /// commit as the claim, which saves a sync per job); `failures` attempts
    /// that count toward its retry policy have failed already.
    Dispatch { next: i64, failures: u32 },
    /// It succeeded in an earlier run: its recorded result.
    Done(Vec<u8>),
    /// It cannot run: an error to return once what was found is committed.
    Refused(Box<JobError>),
}

/// How a failed attempt leaves its job.
pub(crate) enum Then {
    /// Another attempt follows.
    Retry,
    /// The job failed for good.
    Fail,
    /// The job may not run again and its outcome is unknown.
    Unresolve,
}

/// Removes a claimed job's key from this process's set of jobs in flight
/// when its dispatch ends, however it ends.
pub(crate) struct Claimed {
    journal: Journal,
    key: String,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        self.journal.inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

impl Journal {
    /// Claims job `spec` for this process: records it if it is new (before
    /// any dispatch), or decides from what earlier runs recorded.
    ///
    /// # Errors
    ///
    /// [`JobError::Busy`] if another live process (or another task of this
    /// one) is dispatching it; [`JobError::KeyConflict`] if the key names
    /// another job; the recorded failure of a job that failed;
    /// [`JobError::Unresolved`] for a job that may not run twice and whose
    /// outcome is unknown; a journal error.
    pub(crate) async fn claim(&self, spec: Spec) -> crate::Result<(Claim, Option<Claimed>)> {
        let key = spec.key.clone();
        // Taken before the journal is asked, so that two tasks of this
        // process never both claim the job (the second would take the
        // first's attempt for an interrupted one).
        if !self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
            let owner = self.inner.store.me.owner();
            return Err(JobError::Busy { what: format!("job `{key}`"), owner }.into());
        }
        let claimed = Claimed { journal: self.clone(), key };
        match self.write(move |db, me| claim(db, me, &spec)).await? {
            Claim::Refused(e) => Err(crate::Error::Job(e)),
            done @ Claim::Done(_) => Ok((done, None)),
            dispatch => Ok((dispatch, Some(claimed))),
        }
    }

    /// Records that attempt `number` of job `key` is about to be dispatched.
    pub(crate) async fn start_attempt(&self, key: &str, number: i64) -> crate::Result<()> {
        let key = key.to_owned();
        self.write(move |db, _| started(db, &key, number, now_ms())).await
    }

    /// Records that attempt `number` of job `key` succeeded on `actor`, with
    /// `result`: the job's outcome.
    pub(crate) async fn succeed(
        &self,
        key: &str,
        number: i64,
        actor: String,
        result: Vec<u8>,
    ) -> crate::Result<()> {
        let key = key.to_owned();
        self.write(move |db, _| {
            let mut job = load(db, &key)?;
            end_attempt(db, &key, number, Some(actor), Outcome::Ok, None)?;
            job.state = JobState::Succeeded;
            job.result = Some(result);
            job.owner = None;
            job.updated_ms = now_ms();
            Ok(job.store(db)?)
        })
        .await
    }

    /// Records that attempt `number` of job `key` failed with `error`, and
    /// what that makes of the job.
    pub(crate) async fn fail_attempt(
        &self,
        key: &str,
        number: i64,
        actor: Option<String>,
        error: String,
        then: Then,
    ) -> crate::Result<()> {
        let key = key.to_owned();
        self.write(move |db, _| {
            end_attempt(db, &key, number, actor, Outcome::Error, Some(error.clone()))?;
            let mut job = load(db, &key)?;
            match then {
                Then::Retry => return Ok(()),
                Then::Fail => job.state = JobState::Failed,
                Then::Unresolve => job.state = JobState::Unresolved,
            }
            job.error = Some(error);
            job.owner = None;
            job.updated_ms = now_ms();
            Ok(job.store(db)?)
        })
        .await
    }

    /// The failure recorded for job `key`: every attempt of its current
    /// count, in order.
    pub(crate) fn failure(&self, key: &str) -> crate::Result<JobError> {
        self.read(|db| {
            let job = load(db, key)?;
            failure_of(db, &job)
        })
    }
}

fn load(db: &Connection, key: &str) -> Result<JobRow, Fail> {
    JobRow::load(db, key)?.ok_or_else(|| JobError::NotFound { what: key.to_owned() }.into())
}

fn end_attempt(
    db: &Connection,
    key: &str,
    number: i64,
    actor: Option<String>,
    outcome: Outcome,
    error: Option<String>,
) -> Result<(), Fail> {
    let started_ms = AttemptRow::of(db, key)?
        .into_iter()
        .find(|a| a.number == number)
        .map_or_else(now_ms, |a| a.started_ms);
    let row = AttemptRow {
        key: key.to_owned(),
        number,
        actor,
        started_ms,
        ended_ms: Some(now_ms()),
        outcome: Some(outcome),
        error,
    };
    Ok(row.store(db)?)
}

fn claim(db: &Connection, me: &Holder, spec: &Spec) -> Result<Claim, Fail> {
    let now = now_ms();
    let Some(mut job) = JobRow::load(db, &spec.key)? else {
        let row = JobRow {
            key: spec.key.clone(),
            workflow: spec.workflow.clone(),
            step: spec.step,
            function: spec.function.to_owned(),
            args: spec.args.clone(),
            args_hash: spec.args_hash.clone(),
            target: spec.target.clone(),
            idempotent: spec.idempotent,
            state: JobState::Running,
            result: None,
            error: None,
            owner: Some(me.encode()),
            epoch: 1,
            created_ms: now,
            updated_ms: now,
        };
        row.store(db)?;
        started(db, &spec.key, 1, now)?;
        return Ok(Claim::Dispatch { next: 1, failures: 0 });
    };
    let recorded = StepSig { function: job.function.clone(), args_hash: job.args_hash.clone() };
    if recorded != spec.sig() || job.workflow != spec.workflow || job.step != spec.step {
        return Err(JobError::KeyConflict { key: spec.key.clone(), recorded, now: spec.sig() }.into());
    }
    match job.state {
        JobState::Succeeded => {
            let result = job.result.clone().unwrap_or_default();
            return Ok(Claim::Done(result));
        }
        JobState::Failed => return Err(failure_of(db, &job)?.into()),
        JobState::Unresolved => return Err(unresolved(&job).into()),
        JobState::Running => {}
    }
    if let Some(holder) = job.owner.as_deref().and_then(Holder::decode) {
        // Held by this process: no task of it holds the job now (the claim
        // above is the only one), so an earlier one dropped it.
        if holder != *me && holder.alive() {
            return Err(JobError::Busy { what: format!("job `{}`", job.key), owner: holder.owner() }.into());
        }
    }
    // An earlier run ended (or dropped the job) while attempts were out:
    // their outcome never arrived.
    let attempts = AttemptRow::of(db, &job.key)?;
    let mut interrupted = false;
    for mut a in attempts.iter().filter(|a| a.outcome.is_none()).cloned() {
        a.outcome = Some(Outcome::Interrupted);
        a.ended_ms = Some(now);
        a.error = Some("its outcome never arrived: the process running the job ended or dropped it".into());
        a.store(db)?;
        interrupted |= a.number >= job.epoch;
    }
    job.updated_ms = now;
    if interrupted && !job.idempotent {
        job.state = JobState::Unresolved;
        job.error = Some("dispatched by a run that ended before its outcome arrived".into());
        job.owner = None;
        job.store(db)?;
        return Ok(Claim::Refused(Box::new(unresolved(&job))));
    }
    job.owner = Some(me.encode());
    job.store(db)?;
    let next = attempts.last().map_or(1, |a| a.number + 1);
    let failures =
        attempts.iter().filter(|a| a.number >= job.epoch && a.outcome == Some(Outcome::Error)).count();
    started(db, &job.key, next, now)?;
    Ok(Claim::Dispatch { next, failures: u32::try_from(failures).unwrap_or(u32::MAX) })
}

/// Records attempt `number` of job `key` as dispatched at `now`.
fn started(db: &Connection, key: &str, number: i64, now: i64) -> Result<(), Fail> {
    let row = AttemptRow {
        key: key.to_owned(),
        number,
        actor: None,
        started_ms: now,
        ended_ms: None,
        outcome: None,
        error: None,
    };
    Ok(row.store(db)?)
}

pub(crate) fn unresolved(job: &JobRow) -> JobError {
    JobError::Unresolved {
        key: job.key.clone(),
        function: job.function.clone(),
        reason: job.error.clone().unwrap_or_else(|| "its outcome was not recorded".into()),
    }
}

/// A failed job's error: the failed attempts of its current count.
pub(crate) fn failure_of(db: &Connection, job: &JobRow) -> Result<JobError, Fail> {
    let attempts = AttemptRow::of(db, &job.key)?
        .into_iter()
        .filter(|a| a.number >= job.epoch && a.outcome != Some(Outcome::Ok))
        .map(|a| AttemptError {
            attempt: u32::try_from(a.number).unwrap_or(u32::MAX),
            actor: a.actor,
            error: a.error.unwrap_or_default(),
        })
        .collect();
    Ok(JobError::Failed { key: job.key.clone(), function: job.function.clone(), attempts })
}
