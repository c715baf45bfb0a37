//! Durable workflows: an async function whose steps are jobs, replayed
//! from the journal when it runs again under the same id.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use serde::Serialize;

use crate::error::Result;
use crate::registry::{RemoteFn, encode};

use super::dispatch;
use super::error::{JobError, StepSig};
use super::job::{Job, decode_result};
use super::journal::Journal;
use super::owner::Holder;
use super::rows::{JobRow, WfState, WorkflowRow, now_ms};
use super::store::Fail;

/// A workflow about to run: from [`Journal::workflow`].
#[must_use = "a workflow does nothing until it is run"]
pub struct WorkflowRun {
    journal: Journal,
    id: String,
}

/// The handle a workflow's body uses to run its steps. Cheap to clone;
/// clones share the step counter, so steps may be started from several
/// tasks (in an order that must not change between runs).
#[derive(Clone)]
pub struct Workflow {
    inner: Arc<Shared>,
}

struct Shared {
    journal: Journal,
    id: String,
    next: AtomicI64,
    replayed: AtomicUsize,
    dispatched: AtomicUsize,
}

impl Journal {
    /// The workflow `id` of this journal, to [`run`](WorkflowRun::run).
    pub fn workflow(&self, id: impl Into<String>) -> WorkflowRun {
        WorkflowRun { journal: self.clone(), id: id.into() }
    }
}

impl WorkflowRun {
    /// Runs `body` as workflow `id`: it must call its steps through the
    /// [`Workflow`] it is given. Steps the journal holds a result for return
    /// it without running; the first unfinished one is dispatched (again,
    /// with the same key, if an earlier run was cut short while it ran).
    /// While it runs this process owns the workflow: another process that
    /// runs it at the same time is refused. The outcome (the value, encoded,
    /// or the error's text) is recorded.
    ///
    /// # Errors
    ///
    /// `body`'s error; [`Error::Job`](crate::Error::Job) with
    /// [`JobError::Busy`] if a live process (this one included) runs the
    /// workflow already, [`JobError::Diverged`] if the steps asked for
    /// differ from the recorded ones (checked at each step and, when the
    /// body returns, for recorded steps it no longer reached), or a journal
    /// failure; [`Error::Codec`](crate::Error::Codec) if the value cannot
    /// be encoded.
    pub async fn run<T, F, Fut>(self, body: F) -> Result<T>
    where
        T: Serialize,
        F: FnOnce(Workflow) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let WorkflowRun { journal, id } = self;
        let mut lease = Lease::take(&journal, &id).await?;
        let wf = Workflow {
            inner: Arc::new(Shared {
                journal: journal.clone(),
                id: id.clone(),
                next: AtomicI64::new(0),
                replayed: AtomicUsize::new(0),
                dispatched: AtomicUsize::new(0),
            }),
        };
        let outcome = body(wf.clone()).await;
        let outcome = match outcome {
            Ok(value) => {
                let issued = wf.inner.next.load(Ordering::SeqCst);
                match leftover(&journal, &id, issued) {
                    Ok(()) => {
                        encode(&value, || format!("result of workflow `{id}`")).map(|bytes| (value, bytes))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok((value, bytes)) => {
                lease.close(Ok(bytes.to_vec())).await?;
                Ok(value)
            }
            Err(e) => {
                lease.close(Err(e.to_string())).await?;
                Err(e)
            }
        }
    }
}

impl Workflow {
    /// Runs `job` as the workflow's next step and returns its result: the
    /// recorded one if an earlier run finished this step, else the job's
    /// (see [`Journal::submit`]). The step's position is taken when this is
    /// called, not when the future is first polled, so steps started
    /// together (joined) keep their order. Its key is `ID/POSITION` unless
    /// the job has one.
    ///
    /// # Errors
    ///
    /// As [`Journal::submit`]; [`Error::Job`](crate::Error::Job) with
    /// [`JobError::Diverged`] if the journal holds another step at this
    /// position.
    pub fn step<F: RemoteFn>(&self, job: Job<F>) -> impl Future<Output = Result<F::Output>> + Send + 'static {
        let position = self.inner.next.fetch_add(1, Ordering::SeqCst);
        let shared = self.inner.clone();
        let prepared = job.prepare(format!("{}/{position}", shared.id), Some((shared.id.clone(), position)));
        async move {
            let dispatch = prepared?;
            let key = dispatch.spec.key.clone();
            let sig = dispatch.spec.sig();
            same_step(&shared.journal, &shared.id, position, &key, &sig)?;
            let (bytes, replayed) = dispatch::run(&shared.journal, dispatch).await?;
            let counter = if replayed { &shared.replayed } else { &shared.dispatched };
            counter.fetch_add(1, Ordering::SeqCst);
            decode_result::<F::Output>(&bytes, F::NAME, &key)
        }
    }

    /// The workflow's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The journal it runs on.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// How many steps of this run returned a result recorded by an earlier
    /// run, without running.
    pub fn replayed(&self) -> usize {
        self.inner.replayed.load(Ordering::SeqCst)
    }

    /// How many steps of this run were dispatched and finished in it.
    pub fn dispatched(&self) -> usize {
        self.inner.dispatched.load(Ordering::SeqCst)
    }
}

/// Checks that the journal holds nothing else at `position`.
fn same_step(journal: &Journal, id: &str, position: i64, key: &str, sig: &StepSig) -> Result<()> {
    let recorded = journal.read(|db| {
        let Some(there) = JobRow::key_at(db, id, position)? else { return Ok(None) };
        if there == key {
            let row = JobRow::load(db, &there)?;
            return Ok(row
                .map(|r| StepSig { function: r.function, args_hash: r.args_hash })
                .filter(|r| r != sig));
        }
        let row = JobRow::load(db, &there)?;
        Ok(row.map(|r| StepSig { function: r.function, args_hash: r.args_hash }))
    })?;
    match recorded {
        None => Ok(()),
        Some(recorded) => Err(JobError::Diverged {
            workflow: id.to_owned(),
            step: position as u64,
            recorded: Some(recorded),
            now: Some(sig.clone()),
        }
        .into()),
    }
}

/// Checks, once the body has returned, that no recorded step lies beyond
/// the last one it asked for.
fn leftover(journal: &Journal, id: &str, issued: i64) -> Result<()> {
    let beyond = journal.read(|db| {
        let rows = JobRow::of(db, Some(id))?;
        Ok(rows.into_iter().find(|r| r.step.is_some_and(|s| s >= issued)))
    })?;
    match beyond {
        None => Ok(()),
        Some(r) => Err(JobError::Diverged {
            workflow: id.to_owned(),
            step: r.step.map_or(0, |s| s as u64),
            recorded: Some(StepSig { function: r.function, args_hash: r.args_hash }),
            now: None,
        }
        .into()),
    }
}

/// This process's ownership of a running workflow. Dropped without
/// [`Lease::close`] (the run's future was dropped), it gives the workflow
/// up at once, recording nothing else.
struct Lease {
    journal: Journal,
    id: String,
    open: bool,
}

impl Lease {
    async fn take(journal: &Journal, id: &str) -> Result<Lease> {
        let me = journal.inner.store.me.clone();
        if !journal.inner.workflows.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned()) {
            return Err(JobError::Busy { what: format!("workflow `{id}`"), owner: me.owner() }.into());
        }
        // Not yet open: dropped on the way (an error, or the future dropped),
        // it only leaves the in-process set.
        let mut lease = Lease { journal: journal.clone(), id: id.to_owned(), open: false };
        let owned = id.to_owned();
        journal.write(move |db, me| take(db, me, &owned)).await?;
        lease.open = true;
        Ok(lease)
    }

    async fn close(&mut self, outcome: std::result::Result<Vec<u8>, String>) -> Result<()> {
        let id = self.id.clone();
        self.journal
            .write(move |db, _| {
                let Some(mut row) = WorkflowRow::load(db, &id)? else { return Ok(()) };
                match outcome {
                    Ok(bytes) => {
                        row.state = WfState::Finished;
                        row.result = Some(bytes);
                        row.error = None;
                    }
                    Err(e) => {
                        row.state = WfState::Failed;
                        row.error = Some(e);
                    }
                }
                row.owner = None;
                row.updated_ms = now_ms();
                Ok(row.store(db)?)
            })
            .await?;
        self.open = false;
        self.release();
        Ok(())
    }

    fn release(&self) {
        self.journal.inner.workflows.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.open {
            let id = self.id.clone();
            let released = self.journal.inner.store.write_now(move |db, _| {
                let Some(mut row) = WorkflowRow::load(db, &id)? else { return Ok(()) };
                row.owner = None;
                row.updated_ms = now_ms();
                Ok(row.store(db)?)
            });
            if let Err(e) = released {
                tracing::debug!(workflow = %self.id, error = %e, "cannot release the workflow");
            }
        }
        self.release();
    }
}

fn take(db: &rusqlite::Connection, me: &Holder, id: &str) -> std::result::Result<(), Fail> {
    let now = now_ms();
    let row = match WorkflowRow::load(db, id)? {
        Some(mut row) => {
            if let Some(holder) = row.owner.as_deref().and_then(Holder::decode) {
                if holder != *me && holder.alive() {
                    return Err(
                        JobError::Busy { what: format!("workflow `{id}`"), owner: holder.owner() }.into()
                    );
                }
            }
            row.runs += 1;
            row.state = WfState::Running;
            row.owner = Some(me.encode());
            row.updated_ms = now;
            row
        }
        None => WorkflowRow {
            id: id.to_owned(),
            state: WfState::Running,
            runs: 1,
            created_ms: now,
            updated_ms: now,
            owner: Some(me.encode()),
            result: None,
            error: None,
        },
    };
    Ok(row.store(db)?)
}
