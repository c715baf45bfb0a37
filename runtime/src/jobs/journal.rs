//! The journal: one SQLite file holding every workflow, job and attempt,
//! opened, checked and written here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::JobError;
use super::owner::Holder;
use super::rows::{AttemptRow, JobRow, RowError, SCHEMA, WorkflowRow};
use super::store::{Fail, Store, row_error};
use super::writer::{self, Pending, Queue};

/// Marks a SQLite file as a journal of this library (`PRAGMA
/// application_id`, the bytes "PAJN").
const APPLICATION_ID: i64 = 0x5041_4a4e;
/// The schema's version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;
/// How long a write waits for another process's write to the same journal.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How hard each commit to the journal is pushed to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: every commit (the record of a dispatch, of an
    /// outcome) is on disk, WAL synced, before the job goes on. Survives a
    /// crash of the process and of the machine (power loss, kernel panic).
    /// The default: a lost record of a dispatch would let a job that must
    /// not run twice run again.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits survive a crash of the process
    /// (SIGKILL included) but the last ones may be lost with the machine;
    /// fewer syncs, so more jobs per second.
    Normal,
}

/// A journal of durable jobs and workflows: an SQLite database file in WAL
/// mode that records each job before it is dispatched, each attempt, and
/// each outcome. Open it in every run of a program; reruns find what
/// earlier runs recorded.
///
/// Cheap to clone (clones share one connection). The file can be read with
/// `sqlite3` or `actor jobs FILE` at any time; its schema is in the README.
#[derive(Clone)]
pub struct Journal {
    pub(crate) inner: Arc<Inner>,
    local: bool,
}

pub(crate) struct Inner {
    /// The connection and this process's identity, which the writer
    /// thread shares (weakly).
    pub store: Arc<Store>,
    /// Workflows this process is running now.
    pub workflows: Mutex<HashSet<String>>,
    /// Job keys this process is dispatching now.
    pub jobs: Mutex<HashSet<String>>,
    /// The writer thread's queue (writer.rs).
    queue: Queue,
}

impl Journal {
    /// Opens the journal at `path`, creating it if there is no file there,
    /// with [`Durability::Full`].
    ///
    /// An existing file is checked before anything is written to it: its
    /// header, its size, SQLite's structural check, and the checksum every
    /// row carries.
    ///
    /// # Errors
    ///
    /// [`Error::Job`](crate::Error::Job) with [`JobError::Corrupt`] if the
    /// file is damaged, truncated, empty or not a journal (it is left as it
    /// was); [`JobError::Storage`] if it cannot be opened or created.
    pub fn open(path: impl AsRef<Path>) -> crate::Result<Journal> {
        Journal::open_with(path, Durability::Full)
    }

    /// Opens (or creates) the journal at `path` like [`Journal::open`],
    /// with the given [`Durability`].
    ///
    /// # Errors
    ///
    /// As [`Journal::open`].
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> crate::Result<Journal> {
        let path = path.as_ref().to_path_buf();
        let existed = precheck(&path)?;
        let db = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| storage(&path, e))?;
        Journal::set_up(path, db, existed, Some(durability))
    }

    /// Opens the journal at `path` to read it only (for inspection): it is
    /// checked like [`Journal::open`] but never created or written.
    ///
    /// # Errors
    ///
    /// As [`Journal::open`]; [`JobError::Storage`] if there is no file.
    pub fn open_read_only(path: impl AsRef<Path>) -> crate::Result<Journal> {
        let path = path.as_ref().to_path_buf();
        if !precheck(&path)? {
            return Err(JobError::Storage { path, detail: "no such file".into() }.into());
        }
        let db = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| storage(&path, e))?;
        Journal::set_up(path, db, true, None)
    }

    /// A journal in memory, gone with the last clone: for tests of
    /// workflows, usually with [`Journal::local`].
    ///
    /// # Errors
    ///
    /// [`JobError::Storage`] if SQLite cannot allocate it.
    pub fn in_memory() -> crate::Result<Journal> {
        let path = PathBuf::from(":memory:");
        let db = Connection::open_in_memory().map_err(|e| storage(&path, e))?;
        Journal::set_up(path, db, false, Some(Durability::Normal))
    }

    /// This journal with the *local executor*: every job runs its function
    /// in this process (on this task, or on the blocking pool for a plain
    /// `fn`), with its key, instead of in an actor; targets are ignored and
    /// nothing is spawned. Everything else (recording, retries, replay,
    /// the checks) is the same, so a workflow can be unit-tested without
    /// processes, even outside [`run`](crate::run) under `#[tokio::test]`.
    pub fn local(&self) -> Journal {
        Journal { inner: self.inner.clone(), local: true }
    }

    /// Whether jobs run in this process ([`Journal::local`]).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The journal's file (`:memory:` for [`Journal::in_memory`]).
    pub fn path(&self) -> &Path {
        &self.inner.store.path
    }

    fn set_up(
        path: PathBuf,
        db: Connection,
        existed: bool,
        durability: Option<Durability>,
    ) -> crate::Result<Journal> {
        db.busy_timeout(BUSY_TIMEOUT).map_err(|e| storage(&path, e))?;
        if existed {
            check_structure(&path, &db)?;
        }
        if let Some(durability) = durability {
            configure(&path, &db, durability)?;
            create_schema(&path, &db)?;
        }
        check_identity(&path, &db)?;
        check_rows(&db).map_err(|e| row_error(&path, e))?;
        let store = Arc::new(Store::new(path, db));
        let (queue, queued) = std::sync::mpsc::channel();
        writer::start(Arc::downgrade(&store), queued).map_err(|e| JobError::Storage {
            path: store.path.clone(),
            detail: format!("cannot start the journal's writer thread: {e}"),
        })?;
        let inner =
            Inner { store, workflows: Mutex::new(HashSet::new()), jobs: Mutex::new(HashSet::new()), queue };
        Ok(Journal { inner: Arc::new(inner), local: false })
    }

    /// Runs `f` on the connection, on this thread (reads are short: the
    /// rows of one job or one listing).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R, Fail>) -> crate::Result<R> {
        let db = self.inner.store.lock_db();
        f(&db).map_err(|e| self.inner.store.fail(e).into())
    }

    /// Has the writer thread apply `f` (undone alone if it fails) and
    /// returns its result once the commit that holds it is durable.
    pub(crate) async fn write<R, F>(&self, f: F) -> crate::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &Holder) -> Result<R, Fail> + Send + 'static,
    {
        let stopped = || -> crate::Error {
            JobError::Storage {
                path: self.inner.store.path.clone(),
                detail: "the journal's writer thread stopped".into(),
            }
            .into()
        };
        let (record, done) = Pending::new(f);
        self.inner.queue.send(Box::new(record)).map_err(|_| stopped())?;
        done.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Checks what can be checked before SQLite reads the file; returns whether
/// there is one. Catches what SQLite would take for a new database (an
/// empty file) or read past without noticing (a cut-off last page).
fn precheck(path: &Path) -> crate::Result<bool> {
    let corrupt = |detail: String| JobError::Corrupt { path: path.to_path_buf(), detail };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(JobError::Storage { path: path.to_path_buf(), detail: e.to_string() }.into()),
    };
    let len = meta.len();
    if len == 0 {
        return Err(corrupt("the file is empty (remove it to start a new journal)".into()).into());
    }
    let mut header = [0u8; 100];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        f.read(&mut header)
    });
    let n = read.map_err(|e| JobError::Storage { path: path.to_path_buf(), detail: e.to_string() })?;
    if n < 100 || &header[..16] != b"SQLite format 3\0" {
        return Err(
            corrupt("it is not an SQLite database (its header is missing or overwritten)".into()).into()
        );
    }
    let page = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        p => u64::from(p),
    };
    if page < 512 || !page.is_power_of_two() {
        return Err(corrupt(format!("its header names an impossible page size ({page})")).into());
    }
    if len % page != 0 {
        return Err(corrupt(format!(
            "it ends inside a page: {len} bytes is not a whole number of {page}-byte pages (truncated?)"
        ))
        .into());
    }
    Ok(true)
}

/// SQLite's own check of the file's structure (every page, and every index
/// against its table: an index entry that lost its row would make a
/// recorded job look new), before anything is written.
fn check_structure(path: &Path, db: &Connection) -> crate::Result<()> {
    let mut problems = Vec::new();
    let mut run = || -> rusqlite::Result<()> {
        let mut stmt = db.prepare("PRAGMA integrity_check")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let line: String = r.get(0)?;
            if line != "ok" {
                problems.push(line);
            }
        }
        Ok(())
    };
    run().map_err(|e| row_error(path, RowError::Db(e)))?;
    if problems.is_empty() {
        return Ok(());
    }
    let first: Vec<&str> = problems.iter().flat_map(|p| p.lines()).take(3).collect();
    Err(JobError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("SQLite's structural check failed: {}", first.join("; ")),
    }
    .into())
}

fn configure(path: &Path, db: &Connection, durability: Durability) -> crate::Result<()> {
    let mode: String =
        db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| storage(path, e))?;
    if mode != "wal" && path != Path::new(":memory:") {
        return Err(JobError::Storage {
            path: path.to_path_buf(),
            detail: format!("cannot use WAL mode (got {mode})"),
        }
        .into());
    }
    let sync = match durability {
        Durability::Full => "PRAGMA synchronous = FULL",
        Durability::Normal => "PRAGMA synchronous = NORMAL",
    };
    db.execute_batch(sync).map_err(|e| storage(path, e))
}

/// Creates the tables in a new journal; another process may be creating
/// them at the same moment, so the check is made inside the transaction.
fn create_schema(path: &Path, db: &Connection) -> crate::Result<()> {
    let run = || -> rusqlite::Result<()> {
        db.execute_batch("BEGIN IMMEDIATE")?;
        let tables: i64 = db.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables == 0 {
            db.execute_batch(SCHEMA)?;
            db.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
            ))?;
        }
        db.execute_batch("COMMIT")
    };
    run().map_err(|e| {
        let _ = db.execute_batch("ROLLBACK");
        row_error(path, RowError::Db(e)).into()
    })
}

fn check_identity(path: &Path, db: &Connection) -> crate::Result<()> {
    let read = |pragma: &str| -> crate::Result<i64> {
        db.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .map_err(|e| row_error(path, RowError::Db(e)).into())
    };
    let (app, version) = (read("application_id")?, read("user_version")?);
    if app != APPLICATION_ID {
        return Err(JobError::Corrupt {
            path: path.to_path_buf(),
            detail: "it is an SQLite database, but not a job journal (wrong application id)".into(),
        }
        .into());
    }
    if version > SCHEMA_VERSION {
        return Err(JobError::Storage {
            path: path.to_path_buf(),
            detail: format!("it was written by a newer version of this library (schema {version}, this one reads {SCHEMA_VERSION})"),
        }
        .into());
    }
    Ok(())
}

/// Reads every row, checking its checksum.
fn check_rows(db: &Connection) -> Result<(), RowError> {
    WorkflowRow::all(db)?;
    JobRow::all(db)?;
    AttemptRow::all(db)?;
    Ok(())
}

fn storage(path: &Path, e: rusqlite::Error) -> crate::Error {
    row_error(path, RowError::Db(e)).into()
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.inner.store.path).field("local", &self.local).finish()
    }
}
