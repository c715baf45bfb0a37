//! The jobs machinery through the local executor: recording, replay,
//! retries, divergence, unresolved jobs, ownership and damage, in memory
//! and on files, without processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::jobs::{Job, JobError, JobState, Journal, Resolution, WorkflowState};
use crate::{Backoff, Error, RetryPolicy};

/// How often each key ran a function with effects.
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn ran(key: &str) -> u32 {
    RUNS.lock().unwrap().as_ref().and_then(|m| m.get(key).copied()).unwrap_or(0)
}

fn count(key: &str) -> u32 {
    let mut runs = RUNS.lock().unwrap();
    let n = runs.get_or_insert_with(HashMap::new).entry(key.to_owned()).or_insert(0);
    *n += 1;
    *n
}

#[crate::remote(idempotent)]
async fn double(x: u64) -> crate::Result<u64> {
    count(&super::current_key().unwrap_or_default());
    Ok(x * 2)
}

/// Fails until its key has run `fails` times.
#[crate::remote(idempotent)]
async fn flaky(fails: u32) -> crate::Result<u32> {
    let n = count(&super::current_key().unwrap_or_default());
    if n <= fails { Err(Error::msg(format!("flaky failure {n}"))) } else { Ok(n) }
}

#[crate::remote]
async fn charge(cents: u64) -> crate::Result<u64> {
    count(&super::current_key().unwrap_or_default());
    std::future::pending::<()>().await;
    Ok(cents)
}

#[crate::remote(idempotent)]
fn blocking_key() -> crate::Result<String> {
    Ok(super::current_key().unwrap_or_default())
}

fn journal() -> Journal {
    Journal::in_memory().unwrap().local()
}

fn fast() -> RetryPolicy {
    RetryPolicy::attempts(3).backoff(Backoff::none())
}

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("procactor-jobs-test-{}-{n}-{name}.db", std::process::id()))
}

fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn job_error(e: &Error) -> &JobError {
    match e {
        Error::Job(j) => j,
        other => panic!("expected a job error, got {other}"),
    }
}

#[tokio::test]
async fn a_rerun_replays_finished_steps_without_running_them() {
    let j = journal();
    let run = |upto: u64| {
        j.workflow("wf-replay").run(move |wf| async move {
            let mut total = 0;
            for i in 0..upto {
                total += wf.step(Job::new(double, (i,))).await?;
            }
            if upto < 6 {
                return Err(Error::msg("stopped early"));
            }
            Ok((total, wf.replayed(), wf.dispatched()))
        })
    };
    assert!(run(3).await.is_err());
    let (total, replayed, dispatched) = run(6).await.unwrap();
    assert_eq!((total, replayed, dispatched), (30, 3, 3));
    for i in 0..6 {
        assert_eq!(ran(&format!("wf-replay/{i}")), 1, "step {i}");
    }
    let wfs = j.workflows().unwrap();
    assert_eq!(wfs[0].state, WorkflowState::Finished);
    assert_eq!((wfs[0].runs, wfs[0].steps, wfs[0].succeeded), (2, 6, 6));
}

#[tokio::test]
async fn a_changed_step_sequence_is_refused() {
    let j = journal();
    j.workflow("wf-div").run(|wf| async move { wf.step(Job::new(double, (1,))).await }).await.unwrap();
    let e = j
        .workflow("wf-div")
        .run(|wf| async move { wf.step(Job::new(double, (2,))).await })
        .await
        .unwrap_err();
    match job_error(&e) {
        JobError::Diverged { step: 0, recorded: Some(r), now: Some(n), .. } => {
            assert_eq!(r.function, n.function);
            assert_ne!(r.args_hash, n.args_hash);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("changed at step 0"), "{e}");
    // Fewer steps than recorded: found when the body returns.
    let e = j.workflow("wf-div").run(|_wf| async move { Ok(0u64) }).await.unwrap_err();
    assert!(matches!(job_error(&e), JobError::Diverged { step: 0, now: None, .. }), "{e}");
}

#[tokio::test]
async fn failed_attempts_are_retried_and_each_is_recorded() {
    let j = journal();
    let n = j.submit(Job::new(flaky, (2,)).key("flaky-ok").retry(fast())).await.unwrap();
    assert_eq!(n, 3);
    let info = j.job("flaky-ok").unwrap();
    assert_eq!(info.state, JobState::Succeeded);
    assert_eq!(info.attempts.len(), 3);
    assert!(info.attempts[0].error.as_deref().unwrap().contains("flaky failure 1"));
    // Submitted again: the recorded result, without running.
    let again = j.submit(Job::new(flaky, (2,)).key("flaky-ok").retry(fast())).await.unwrap();
    assert_eq!((again, ran("flaky-ok")), (3, 3));
}

#[tokio::test]
async fn exhausted_attempts_fail_with_every_error_and_can_be_retried_by_hand() {
    let j = journal();
    let e = j.submit(Job::new(flaky, (5,)).key("flaky-bad").retry(fast())).await.unwrap_err();
    match job_error(&e) {
        JobError::Failed { attempts, .. } => {
            let errors: Vec<_> = attempts.iter().map(|a| a.error.clone()).collect();
            assert_eq!(attempts.len(), 3, "{errors:?}");
            assert!(errors[2].contains("flaky failure 3"), "{errors:?}");
        }
        other => panic!("{other}"),
    }
    // The failure is replayed, not run again.
    assert!(j.submit(Job::new(flaky, (5,)).key("flaky-bad").retry(fast())).await.is_err());
    assert_eq!(ran("flaky-bad"), 3);
    j.resolve("flaky-bad", Resolution::Retry).unwrap();
    let n = j.submit(Job::new(flaky, (5,)).key("flaky-bad").retry(fast())).await.unwrap();
    assert_eq!(n, 6);
}

#[tokio::test]
async fn a_job_that_must_not_run_twice_is_never_dispatched_again_silently() {
    let j = journal();
    let first = j.workflow("wf-pay").run(|wf| async move { wf.step(Job::once(charge, (500,))).await });
    // The run is cut short while the charge is under way (its future dropped).
    assert!(tokio::time::timeout(Duration::from_millis(200), first).await.is_err());
    assert_eq!(ran("wf-pay/0"), 1);
    let rerun = || j.workflow("wf-pay").run(|wf| async move { wf.step(Job::once(charge, (500,))).await });
    let e = rerun().await.unwrap_err();
    assert!(matches!(job_error(&e), JobError::Unresolved { key, .. } if key == "wf-pay/0"), "{e}");
    assert!(e.to_string().contains("Journal::resolve"), "{e}");
    assert_eq!(j.job("wf-pay/0").unwrap().state, JobState::Unresolved);
    // Still unresolved on the next run; the function ran once.
    assert!(rerun().await.is_err());
    assert_eq!(ran("wf-pay/0"), 1);
    j.resolve("wf-pay/0", Resolution::succeeded(&500u64).unwrap()).unwrap();
    assert_eq!(rerun().await.unwrap(), 500);
    assert_eq!(ran("wf-pay/0"), 1);
}

#[tokio::test]
async fn one_workflow_runs_once_at_a_time() {
    let j = journal();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let held = j.workflow("wf-busy").run(|_wf| async move {
        let _ = rx.await;
        Ok(())
    });
    let second = async {
        tokio::task::yield_now().await;
        let e = j.workflow("wf-busy").run(|_wf| async move { Ok(()) }).await.unwrap_err();
        assert!(matches!(job_error(&e), JobError::Busy { .. }), "{e}");
        let _ = tx.send(());
    };
    let (held, ()) = tokio::join!(held, second);
    held.unwrap();
    j.workflow("wf-busy").run(|_wf| async move { Ok(()) }).await.unwrap();
}

#[tokio::test]
async fn the_key_reaches_plain_functions_too() {
    let j = journal();
    let key = j.submit(Job::new(blocking_key, ()).key("k-blocking")).await.unwrap();
    assert_eq!(key, "k-blocking");
}

#[tokio::test]
async fn a_file_journal_survives_reopening() {
    let path = temp_path("reopen");
    {
        let j = Journal::open(&path).unwrap().local();
        j.workflow("wf-file").run(|wf| async move { wf.step(Job::new(double, (21,))).await }).await.unwrap();
    }
    let j = Journal::open(&path).unwrap().local();
    let v =
        j.workflow("wf-file").run(|wf| async move { wf.step(Job::new(double, (21,))).await }).await.unwrap();
    assert_eq!((v, ran("wf-file/0")), (42, 1));
    let ro = Journal::open_read_only(&path).unwrap();
    assert_eq!(ro.jobs(Some("wf-file")).unwrap().len(), 1);
    remove(&path);
}

#[tokio::test]
async fn a_damaged_journal_is_refused_and_left_untouched() {
    let path = temp_path("damage");
    {
        let j = Journal::open(&path).unwrap().local();
        for i in 0..40u64 {
            j.submit(Job::new(double, (i,)).key(format!("d{i}"))).await.unwrap();
        }
    }
    let good = std::fs::read(&path).unwrap();
    let corrupt = |bytes: &[u8], what: &str| {
        std::fs::write(&path, bytes).unwrap();
        let e = Journal::open(&path).unwrap_err();
        assert!(matches!(job_error(&e), JobError::Corrupt { .. }), "{what}: {e}");
        assert!(e.to_string().contains("damaged"), "{what}: {e}");
        assert!(std::fs::read(&path).unwrap() == bytes, "{what}: the file was changed");
        e
    };
    corrupt(&good[..good.len() - 100], "cut inside a page");
    corrupt(&good[..good.len() / 2], "cut in half");
    corrupt(&[], "emptied");
    let mut header = good.clone();
    header[..16].copy_from_slice(&[0u8; 16]);
    corrupt(&header, "header overwritten");
    // A changed value inside a row, which SQLite itself does not notice.
    std::fs::write(&path, &good).unwrap();
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute("UPDATE jobs SET result = x'2a' WHERE key = 'd7'", []).unwrap();
    }
    let changed = std::fs::read(&path).unwrap();
    let e = corrupt(&changed, "a result changed");
    assert!(e.to_string().contains("job `d7` fails its checksum"), "{e}");
    // The original reads back whole.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(Journal::open(&path).unwrap().jobs(None).unwrap().len(), 40);
    remove(&path);
}

#[tokio::test]
async fn a_file_that_is_not_a_journal_is_refused() {
    let path = temp_path("other");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch("CREATE TABLE t (x)").unwrap();
    }
    let e = Journal::open(&path).unwrap_err();
    assert!(e.to_string().contains("not a job journal"), "{e}");
    remove(&path);
}

/// Jobs submitted at once share commits; one refused in the middle of a
/// commit (its key names another job) spoils none of the others.
#[tokio::test]
async fn jobs_at_once_share_commits_and_a_refused_one_spoils_none() {
    let path = temp_path("group");
    let j = Journal::open(&path).unwrap().local();
    j.submit(Job::new(double, (1,)).key("taken")).await.unwrap();
    let mut all: Vec<_> =
        (0..100u64).map(|i| j.submit(Job::new(double, (i,)).key(format!("g{i}")))).collect();
    all.insert(50, j.submit(Job::new(double, (2,)).key("taken")));
    let outcomes = futures::future::join_all(all).await;
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(matches!(job_error(refused[0]), JobError::KeyConflict { .. }), "{}", refused[0]);
    let done = j.jobs(None).unwrap();
    assert_eq!(done.len(), 101);
    assert!(done.iter().all(|d| d.state == JobState::Succeeded && d.attempts.len() == 1));
    drop(j);
    remove(&path);
}
