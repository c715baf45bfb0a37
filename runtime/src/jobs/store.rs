//! The journal's connection and this process's identity: what both the
//! journal's handles and its writer thread use, and how a failure inside a
//! transaction becomes the error a user sees.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, TransactionBehavior};

use super::error::JobError;
use super::owner::Holder;
use super::rows::RowError;

/// One open journal file.
pub(crate) struct Store {
    pub path: PathBuf,
    db: Mutex<Connection>,
    pub me: Holder,
}

/// A failure inside a journal transaction: of the database, a damaged row,
/// or a decision (busy, diverged, ...).
#[derive(Debug)]
pub(crate) enum Fail {
    Row(Box<RowError>),
    Job(Box<JobError>),
}

impl From<RowError> for Fail {
    fn from(e: RowError) -> Self {
        Fail::Row(Box::new(e))
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Row(Box::new(RowError::Db(e)))
    }
}

impl From<JobError> for Fail {
    fn from(e: JobError) -> Self {
        Fail::Job(Box::new(e))
    }
}

impl Store {
    pub(crate) fn new(path: PathBuf, db: Connection) -> Store {
        Store { path, db: Mutex::new(db), me: Holder::me() }
    }

    pub(crate) fn lock_db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a transaction of its own, on this thread, and commits it:
    /// for writes that cannot wait for the writer (releasing a workflow whose
    /// run was dropped) or come from outside a runtime (resolving a job).
    pub(crate) fn write_now<R>(
        &self,
        f: impl FnOnce(&Connection, &Holder) -> Result<R, Fail>,
    ) -> crate::Result<R> {
        let mut db = self.lock_db();
        let tx =
            db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.fail(e.into()))?;
        let r = f(&tx, &self.me).map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e.into()))?;
        Ok(r)
    }

    pub(crate) fn fail(&self, e: Fail) -> JobError {
        match e {
            Fail::Job(j) => *j,
            Fail::Row(r) => row_error(&self.path, *r),
        }
    }
}

/// A database error as the user should see it: damage is [`JobError::Corrupt`].
pub(crate) fn row_error(path: &Path, e: RowError) -> JobError {
    let path = path.to_path_buf();
    match e {
        RowError::Damaged(d) => JobError::Corrupt { path, detail: d.0 },
        RowError::Db(e) => match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                JobError::Corrupt { path, detail: e.to_string() }
            }
            _ => JobError::Storage { path, detail: e.to_string() },
        },
    }
}
