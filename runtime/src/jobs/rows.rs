//! The journal's rows as Rust values, read and written whole, each with a
//! checksum over all its columns.
//!
//! SQLite notices a damaged page structure, but not a changed byte inside a
//! stored value; a replayed result must be the one recorded, so every row
//! carries a SHA-256 of its other columns (`sum`), checked whenever it is
//! read.

use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

use super::error::JobState;

/// The schema, created in one transaction with a new journal. PROTOCOL.md's
/// companion for the journal is the README's "Durable jobs" section.
pub(crate) const SCHEMA: &str = "
CREATE TABLE workflows (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    runs        INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    owner       TEXT,
    result      BLOB,
    error       TEXT,
    sum         TEXT NOT NULL
);
CREATE TABLE jobs (
    key         TEXT PRIMARY KEY,
    workflow    TEXT,
    step        INTEGER,
    function    TEXT NOT NULL,
    args        BLOB NOT NULL,
    args_hash   TEXT NOT NULL,
    target      TEXT NOT NULL,
    idempotent  INTEGER NOT NULL,
    state       TEXT NOT NULL,
    result      BLOB,
    error       TEXT,
    owner       TEXT,
    epoch       INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    sum         TEXT NOT NULL,
    UNIQUE (workflow, step)
);
CREATE TABLE attempts (
    key         TEXT NOT NULL,
    number      INTEGER NOT NULL,
    actor       TEXT,
    started_ms  INTEGER NOT NULL,
    ended_ms    INTEGER,
    outcome     TEXT,
    error       TEXT,
    sum         TEXT NOT NULL,
    PRIMARY KEY (key, number)
);
";

/// A row that fails its checksum or holds a value no version wrote.
#[derive(Debug)]
pub(crate) struct Damaged(pub String);

/// Either a database error or a damaged row.
#[derive(Debug)]
pub(crate) enum RowError {
    Db(rusqlite::Error),
    Damaged(Damaged),
}

impl From<rusqlite::Error> for RowError {
    fn from(e: rusqlite::Error) -> Self {
        RowError::Db(e)
    }
}

pub(crate) type RowResult<T> = Result<T, RowError>;

/// Builds a row's checksum from its columns, each length-prefixed so that
/// no two rows share an encoding.
#[derive(Default)]
struct Sum(Sha256);

impl Sum {
    fn bytes(mut self, b: Option<&[u8]>) -> Self {
        match b {
            None => self.0.update([0u8]),
            Some(b) => {
                self.0.update([1u8]);
                self.0.update((b.len() as u64).to_be_bytes());
                self.0.update(b);
            }
        }
        self
    }
    fn text(self, s: Option<&str>) -> Self {
        self.bytes(s.map(str::as_bytes))
    }
    fn int(self, i: Option<i64>) -> Self {
        self.bytes(i.map(i64::to_be_bytes).as_ref().map(|b| &b[..]))
    }
    fn hex(self) -> String {
        hex(&self.0.finalize())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, hex.
pub(crate) fn hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// How a workflow stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WfState {
    Running,
    Finished,
    Failed,
}

impl WfState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WfState::Running => "running",
            WfState::Finished => "finished",
            WfState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<WfState> {
        Some(match s {
            "running" => WfState::Running,
            "finished" => WfState::Finished,
            "failed" => WfState::Failed,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct WorkflowRow {
    pub id: String,
    pub state: WfState,
    pub runs: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub owner: Option<String>,
    pub result: Option<Vec<u8>>,
    pub error: Option<String>,
}

impl WorkflowRow {
    fn sum(&self) -> String {
        Sum::default()
            .text(Some(&self.id))
            .text(Some(self.state.as_str()))
            .int(Some(self.runs))
            .int(Some(self.created_ms))
            .int(Some(self.updated_ms))
            .text(self.owner.as_deref())
            .bytes(self.result.as_deref())
            .text(self.error.as_deref())
            .hex()
    }

    const COLUMNS: &'static str = "id, state, runs, created_ms, updated_ms, owner, result, error, sum";

    fn from_row(r: &Row<'_>) -> RowResult<WorkflowRow> {
        let state: String = r.get(1)?;
        let id: String = r.get(0)?;
        let row = WorkflowRow {
            state: WfState::parse(&state)
                .ok_or_else(|| damaged(format!("workflow `{id}` has an unknown state {state:?}")))?,
            id,
            runs: r.get(2)?,
            created_ms: r.get(3)?,
            updated_ms: r.get(4)?,
            owner: r.get(5)?,
            result: r.get(6)?,
            error: r.get(7)?,
        };
        let sum: String = r.get(8)?;
        if sum != row.sum() {
            return Err(damaged(format!("the record of workflow `{}` fails its checksum", row.id)));
        }
        Ok(row)
    }

    pub(crate) fn load(db: &Connection, id: &str) -> RowResult<Option<WorkflowRow>> {
        let sql = format!("SELECT {} FROM workflows WHERE id = ?1", Self::COLUMNS);
        let mut stmt = db.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![id])?;
        rows.next()?.map(WorkflowRow::from_row).transpose()
    }

    pub(crate) fn all(db: &Connection) -> RowResult<Vec<WorkflowRow>> {
        let sql = format!("SELECT {} FROM workflows ORDER BY created_ms, id", Self::COLUMNS);
        collect(db, &sql, [], WorkflowRow::from_row)
    }

    pub(crate) fn store(&self, db: &Connection) -> RowResult<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO workflows ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            Self::COLUMNS
        );
        db.prepare_cached(&sql)?.execute(params![
            self.id,
            self.state.as_str(),
            self.runs,
            self.created_ms,
            self.updated_ms,
            self.owner,
            self.result,
            self.error,
            self.sum()
        ])?;
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub(crate) struct JobRow {
    pub key: String,
    pub workflow: Option<String>,
    pub step: Option<i64>,
    pub function: String,
    pub args: Vec<u8>,
    pub args_hash: String,
    pub target: String,
    pub idempotent: bool,
    pub state: JobState,
    pub result: Option<Vec<u8>>,
    pub error: Option<String>,
    pub owner: Option<String>,
    /// The first attempt that counts toward the retry policy (a job
    /// resolved to run again starts a new count).
    pub epoch: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl JobRow {
    fn sum(&self) -> String {
        Sum::default()
            .text(Some(&self.key))
            .text(self.workflow.as_deref())
            .int(self.step)
            .text(Some(&self.function))
            .bytes(Some(&self.args))
            .text(Some(&self.args_hash))
            .text(Some(&self.target))
            .int(Some(i64::from(self.idempotent)))
            .text(Some(self.state.as_str()))
            .bytes(self.result.as_deref())
            .text(self.error.as_deref())
            .text(self.owner.as_deref())
            .int(Some(self.epoch))
            .int(Some(self.created_ms))
            .int(Some(self.updated_ms))
            .hex()
    }

    const COLUMNS: &'static str = "key, workflow, step, function, args, args_hash, target, idempotent, state, \
                                   result, error, owner, epoch, created_ms, updated_ms, sum";

    fn from_row(r: &Row<'_>) -> RowResult<JobRow> {
        let key: String = r.get(0)?;
        let state: String = r.get(8)?;
        let row = JobRow {
            state: JobState::parse(&state)
                .ok_or_else(|| damaged(format!("job `{key}` has an unknown state {state:?}")))?,
            key,
            workflow: r.get(1)?,
            step: r.get(2)?,
            function: r.get(3)?,
            args: r.get(4)?,
            args_hash: r.get(5)?,
            target: r.get(6)?,
            idempotent: r.get::<_, i64>(7)? != 0,
            result: r.get(9)?,
            error: r.get(10)?,
            owner: r.get(11)?,
            epoch: r.get(12)?,
            created_ms: r.get(13)?,
            updated_ms: r.get(14)?,
        };
        let sum: String = r.get(15)?;
        if sum != row.sum() {
            return Err(damaged(format!("the record of job `{}` fails its checksum", row.key)));
        }
        Ok(row)
    }

    pub(crate) fn load(db: &Connection, key: &str) -> RowResult<Option<JobRow>> {
        let sql = format!("SELECT {} FROM jobs WHERE key = ?1", Self::COLUMNS);
        let mut stmt = db.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![key])?;
        rows.next()?.map(JobRow::from_row).transpose()
    }

    /// The key recorded at step `step` of `workflow`, if any.
    pub(crate) fn key_at(db: &Connection, workflow: &str, step: i64) -> RowResult<Option<String>> {
        let mut stmt = db.prepare_cached("SELECT key FROM jobs WHERE workflow = ?1 AND step = ?2")?;
        Ok(stmt.query_row(params![workflow, step], |r| r.get(0)).optional()?)
    }

    /// The jobs of `workflow` in step order, or the jobs of no workflow.
    pub(crate) fn of(db: &Connection, workflow: Option<&str>) -> RowResult<Vec<JobRow>> {
        match workflow {
            Some(w) => {
                let sql = format!("SELECT {} FROM jobs WHERE workflow = ?1 ORDER BY step", Self::COLUMNS);
                collect(db, &sql, params![w], JobRow::from_row)
            }
            None => {
                let sql = format!(
                    "SELECT {} FROM jobs WHERE workflow IS NULL ORDER BY created_ms, key",
                    Self::COLUMNS
                );
                collect(db, &sql, [], JobRow::from_row)
            }
        }
    }

    pub(crate) fn all(db: &Connection) -> RowResult<Vec<JobRow>> {
        let sql = format!("SELECT {} FROM jobs", Self::COLUMNS);
        collect(db, &sql, [], JobRow::from_row)
    }

    pub(crate) fn store(&self, db: &Connection) -> RowResult<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO jobs ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            Self::COLUMNS
        );
        db.prepare_cached(&sql)?.execute(params![
            self.key,
            self.workflow,
            self.step,
            self.function,
            self.args,
            self.args_hash,
            self.target,
            i64::from(self.idempotent),
            self.state.as_str(),
            self.result,
            self.error,
            self.owner,
            self.epoch,
            self.created_ms,
            self.updated_ms,
            self.sum()
        ])?;
        Ok(())
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Error,
    /// Its outcome never arrived: the process running the job ended (or
    /// dropped the job) first.
    Interrupted,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Interrupted => "interrupted",
        }
    }
    fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "ok" => Outcome::Ok,
            "error" => Outcome::Error,
            "interrupted" => Outcome::Interrupted,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct AttemptRow {
    pub key: String,
    pub number: i64,
    pub actor: Option<String>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// `None` while it runs.
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
}

impl AttemptRow {
    fn sum(&self) -> String {
        Sum::default()
            .text(Some(&self.key))
            .int(Some(self.number))
            .text(self.actor.as_deref())
            .int(Some(self.started_ms))
            .int(self.ended_ms)
            .text(self.outcome.map(Outcome::as_str))
            .text(self.error.as_deref())
            .hex()
    }

    const COLUMNS: &'static str = "key, number, actor, started_ms, ended_ms, outcome, error, sum";

    fn from_row(r: &Row<'_>) -> RowResult<AttemptRow> {
        let key: String = r.get(0)?;
        let number: i64 = r.get(1)?;
        let outcome: Option<String> = r.get(5)?;
        let outcome = match outcome {
            None => None,
            Some(o) => Some(Outcome::parse(&o).ok_or_else(|| {
                damaged(format!("attempt {number} of job `{key}` has an unknown outcome {o:?}"))
            })?),
        };
        let row = AttemptRow {
            key,
            number,
            actor: r.get(2)?,
            started_ms: r.get(3)?,
            ended_ms: r.get(4)?,
            outcome,
            error: r.get(6)?,
        };
        let sum: String = r.get(7)?;
        if sum != row.sum() {
            return Err(damaged(format!(
                "the record of attempt {} of job `{}` fails its checksum",
                row.number, row.key
            )));
        }
        Ok(row)
    }

    /// Every attempt of job `key`, in order.
    pub(crate) fn of(db: &Connection, key: &str) -> RowResult<Vec<AttemptRow>> {
        let sql = format!("SELECT {} FROM attempts WHERE key = ?1 ORDER BY number", Self::COLUMNS);
        collect(db, &sql, params![key], AttemptRow::from_row)
    }

    pub(crate) fn all(db: &Connection) -> RowResult<Vec<AttemptRow>> {
        let sql = format!("SELECT {} FROM attempts", Self::COLUMNS);
        collect(db, &sql, [], AttemptRow::from_row)
    }

    pub(crate) fn store(&self, db: &Connection) -> RowResult<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO attempts ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            Self::COLUMNS
        );
        db.prepare_cached(&sql)?.execute(params![
            self.key,
            self.number,
            self.actor,
            self.started_ms,
            self.ended_ms,
            self.outcome.map(Outcome::as_str),
            self.error,
            self.sum()
        ])?;
        Ok(())
    }
}

fn damaged(detail: String) -> RowError {
    RowError::Damaged(Damaged(detail))
}

fn collect<T, P: rusqlite::Params>(
    db: &Connection,
    sql: &str,
    params: P,
    f: fn(&Row<'_>) -> RowResult<T>,
) -> RowResult<Vec<T>> {
    let mut stmt = db.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// Milliseconds since the Unix epoch, this host's clock (for people
/// reading the journal; nothing orders by it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
