//! The journal's writer: one thread that commits what this process's jobs
//! record. Records that queue up while a commit waits for the disk go into
//! the next commit together (group commit), each in a savepoint of its own,
//! so jobs running at once share the syncs instead of queueing for one each.
//! A record's caller hears back only once its commit is durable.

use std::sync::Weak;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::error::JobError;
use super::owner::Holder;
use super::store::{Fail, Store};

/// The most records one commit takes.
const MAX_BATCH: usize = 256;

/// One change to the journal, queued for the writer.
pub(crate) trait Record: Send {
    /// Makes the change inside the writer's transaction; returns whether it
    /// succeeded (a failed one is rolled back alone).
    fn apply(&mut self, db: &Connection, store: &Store) -> bool;
    /// Tells the caller how it ended, once the commit's fate is known.
    fn finish(self: Box<Self>, commit: &crate::Result<()>);
}

/// A change made by a closure, whose result goes back through a channel.
pub(crate) struct Pending<R, F> {
    f: Option<F>,
    result: Option<Result<R, JobError>>,
    reply: oneshot::Sender<crate::Result<R>>,
}

impl<R, F> Pending<R, F> {
    pub(crate) fn new(f: F) -> (Self, oneshot::Receiver<crate::Result<R>>) {
        let (reply, rx) = oneshot::channel();
        (Pending { f: Some(f), result: None, reply }, rx)
    }
}

impl<R, F> Record for Pending<R, F>
where
    R: Send,
    F: FnOnce(&Connection, &Holder) -> Result<R, Fail> + Send,
{
    fn apply(&mut self, db: &Connection, store: &Store) -> bool {
        let Some(f) = self.f.take() else { return false };
        let r = f(db, &store.me).map_err(|e| store.fail(e));
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: &crate::Result<()>) {
        let outcome = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e.into()),
            (Some(Ok(r)), Ok(())) => Ok(r),
            (_, Err(e)) => Err(e.clone()),
            (None, Ok(())) => {
                Err(crate::Error::msg("internal: a journal record was committed without being applied"))
            }
        };
        let _ = self.reply.send(outcome);
    }
}

/// The sending end, held by the journal; the thread ends when it is dropped.
pub(crate) type Queue = mpsc::Sender<Box<dyn Record>>;

/// Starts the writer of the journal file `store` (held weakly, so the
/// journal closes when its last handle goes), taking records from `queue`.
pub(crate) fn start(store: Weak<Store>, queue: mpsc::Receiver<Box<dyn Record>>) -> std::io::Result<()> {
    std::thread::Builder::new().name("actor-journal".into()).spawn(move || {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            // The journal is gone only once nobody can be waiting.
            let Some(strong) = store.upgrade() else { return };
            let outcome = commit(&strong, &mut batch);
            // Let go before anyone hears back, so that the handle a caller
            // drops next is the journal's last and closes it at once.
            drop(strong);
            for record in batch {
                record.finish(&outcome);
            }
        }
    })?;
    Ok(())
}

/// Applies `batch` in one transaction; returns how the commit went.
fn commit(store: &Store, batch: &mut [Box<dyn Record>]) -> crate::Result<()> {
    let db = store.lock_db();
    {
        let mut run = |db: &Connection| -> rusqlite::Result<()> {
            db.execute_batch("BEGIN IMMEDIATE")?;
            for record in batch.iter_mut() {
                db.execute_batch("SAVEPOINT record")?;
                if record.apply(db, store) {
                    db.execute_batch("RELEASE record")?;
                } else {
                    db.execute_batch("ROLLBACK TO record; RELEASE record")?;
                }
            }
            db.execute_batch("COMMIT")
        };
        run(&db).map_err(|e| {
            let _ = db.execute_batch("ROLLBACK");
            crate::Error::from(store.fail(e.into()))
        })
    }
}
