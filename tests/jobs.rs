//! Durable jobs on real process trees (tests/fixtures/jobs.rs and
//! examples/durable_workflow.rs): roots SIGKILLed at random points and run
//! again, a worker SIGKILLed mid-step, a step that must not run twice, two
//! roots on one workflow, damaged journals, and `actor jobs`.

mod common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actor::jobs::{AttemptOutcome, JobState, Journal};
use common::{Finished, Tree};
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);
const FIXTURE: &str = "jobs_scenarios";

/// A directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("procactor-jobs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Finished {
    Tree::start(FIXTURE, args, &[]).finish(BOUND)
}

fn killed(out: &Finished) -> bool {
    out.status.signal() == Some(Signal::SIGKILL as i32)
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// A small xorshift generator: the kill points need no cryptography.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The value `mix` gives after `steps` steps (examples/durable_workflow.rs).
fn mixed(steps: u64) -> u64 {
    (1..=steps).fold(1, |acc, step| (acc * 31 + step * step) % 1_000_003)
}

#[test]
fn the_example_resumes_after_its_crash() {
    let dir = TempDir::new("example");
    let journal = dir.path("demo.db");
    let first =
        Tree::start("durable_workflow", &["--journal", &journal, "--crash-after", "7"], &[]).finish(BOUND);
    assert!(killed(&first), "{first:?}");
    first.assert_no_warnings();
    assert!(first.stdout.contains(&format!("step  7: {:7}  (ran on left)", mixed(7))), "{first:?}");
    assert!(first.stdout.contains("crashing after step 7: SIGKILL"), "{first:?}");
    assert!(!first.stdout.contains("step  8"), "{first:?}");

    let second = Tree::start("durable_workflow", &["--journal", &journal], &[]).finish(BOUND);
    second.assert_no_warnings();
    assert!(second.status.success(), "{second:?}");
    for step in 1..=7 {
        let line = format!("step {step:2}: {:7}  (replayed from the journal)", mixed(step));
        assert!(second.stdout.contains(&line), "{line:?} in {second:?}");
    }
    assert!(second.stdout.contains(&format!("step  8: {:7}  (ran on right)", mixed(8))), "{second:?}");
    let result = format!("result: {}; 7 of 20 steps replayed from the journal, 13 run now", mixed(20));
    assert!(second.stdout.contains(&result), "{second:?}");

    // `actor jobs` shows the finished workflow and its steps.
    let listed = Tree::start_program(&common::binary("actor"), &["jobs", &journal], &[]).finish(BOUND);
    assert!(listed.status.success(), "{listed:?}");
    assert!(listed.stdout.contains("durable-demo") && listed.stdout.contains("finished"), "{listed:?}");
    let steps =
        Tree::start_program(&common::binary("actor"), &["jobs", &journal, "durable-demo", "--json"], &[])
            .finish(BOUND);
    assert!(steps.status.success(), "{steps:?}");
    let v: serde_json::Value = serde_json::from_str(&steps.stdout).expect("json");
    let jobs = v["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 20, "{v}");
    assert_eq!(jobs[7]["key"], "durable-demo/7", "{v}");
    assert_eq!(jobs[7]["state"], "succeeded", "{v}");
    assert_eq!(jobs[19]["result"], serde_json::json!(mixed(20)), "{v}");
}

/// Five roots SIGKILLed at random points of a 100-step workflow, each run
/// again to its end: the result is right and every step's effect happened
/// exactly once. `JOBS_SEED` replays a run's kill points.
#[test]
fn roots_killed_at_random_resume_and_every_effect_happens_once() {
    let seed = std::env::var("JOBS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        u64::from(std::process::id()) << 20 ^ Instant::now().elapsed().as_nanos() as u64 | 1
    });
    println!("JOBS_SEED={seed}");
    let mut rng = seed;
    let dir = TempDir::new("kills");
    let journal = dir.path("kills.db");
    let expected: u64 = (0..100).map(|i| 3 * i + 1).sum();
    for round in 0..5 {
        let id = format!("round{round}");
        let effects = dir.path(&format!("effects-{round}"));
        let at = next_random(&mut rng) % 95 + 1;
        let pause = Duration::from_micros(next_random(&mut rng) % 15_000);
        let mut tree =
            Tree::start(FIXTURE, &["steps", "100", &effects, "--journal", &journal, "--id", &id], &[]);
        tree.wait_for_line(&format!("step {at} done"), BOUND);
        std::thread::sleep(pause);
        tree.signal(Signal::SIGKILL);
        let cut = tree.finish(BOUND);
        assert!(killed(&cut), "round {round} (seed {seed}): {cut:?}");

        let rerun = run(&["steps", "100", &effects, "--journal", &journal, "--id", &id]);
        rerun.assert_no_warnings();
        assert!(rerun.status.success(), "round {round} (seed {seed}): {rerun:?}");
        let result = rerun.stdout.lines().find(|l| l.starts_with("result ")).expect("a result line");
        let mut words = result.split_whitespace().skip(1);
        let sum: u64 = words.next().and_then(|w| w.parse().ok()).expect("sum");
        let replayed: u64 = words.nth(1).and_then(|w| w.parse().ok()).expect("replayed");
        assert_eq!(sum, expected, "round {round} (seed {seed})");
        assert!(replayed > at, "round {round} (seed {seed}): killed after step {at}, {replayed} replayed");
        let mut done = lines(&effects);
        assert_eq!(done.len(), 100, "round {round} (seed {seed}): effects {done:?}");
        done.sort();
        done.dedup();
        assert_eq!(done.len(), 100, "round {round} (seed {seed}): an effect happened twice");
        let j = Journal::open_read_only(&journal).expect("journal");
        let steps = j.jobs(Some(&id)).expect("jobs");
        assert_eq!(steps.len(), 100);
        assert!(steps.iter().all(|s| s.state == JobState::Succeeded), "round {round}");
    }
}

/// A worker SIGKILLed in the middle of a step: the attempt fails, and after
/// the backoff the step runs on another process (the other worker of that
/// name, or the killed one restarted).
#[test]
fn a_step_whose_worker_is_killed_is_retried_after_a_backoff() {
    let dir = TempDir::new("worker");
    let journal = dir.path("worker.db");
    let marker = dir.path("first");
    let mut tree = Tree::start(FIXTURE, &["kill-worker", &dir.path(""), "--journal", &journal], &[]);
    let deadline = Instant::now() + BOUND;
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&marker).ok().and_then(|s| s.parse().ok()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the first attempt never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).expect("kill the worker");
    let line = tree.wait_for_line("answered by pid", BOUND);
    let out = tree.finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    let answered: i32 =
        line.strip_prefix("answered by pid ").and_then(|p| p.trim().parse().ok()).expect("a pid");
    assert_ne!(answered, pid, "{out:?}");

    let job = Journal::open_read_only(&journal).expect("journal").job("wf/0").expect("the step");
    assert_eq!(job.state, JobState::Succeeded);
    let a = &job.attempts;
    assert!(a.len() >= 2, "{a:?}");
    assert_eq!(a[0].outcome, AttemptOutcome::Failed, "{a:?}");
    assert_eq!(a.last().map(|x| x.outcome), Some(AttemptOutcome::Succeeded), "{a:?}");
    let error = a[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("pool#"), "the error names the worker: {error}");
    // The backoff (200 ms, no jitter) lies between the failure and the retry.
    let gap = a[1].started_ms - a[0].ended_ms.expect("ended");
    assert!(gap >= 200, "retried {gap} ms after the failure: {a:?}");
}

/// A step that must not run twice, cut short by a SIGKILL of the root: the
/// next run refuses to dispatch it again and says how to resolve it; once
/// resolved, the workflow finishes without the step running again.
#[test]
fn a_step_that_must_not_run_twice_waits_for_a_person() {
    let dir = TempDir::new("charge");
    let journal = dir.path("charge.db");
    let effects = dir.path("charges");
    let mut tree = Tree::start(FIXTURE, &["charge", &effects, "--journal", &journal], &[]);
    tree.wait_for_line("charging", BOUND);
    tree.signal(Signal::SIGKILL);
    assert!(killed(&tree.finish(BOUND)));
    assert_eq!(lines(&effects), ["wf/1"]);
    // Its process is gone: the listing shows the attempt as interrupted.
    let cut = Journal::open_read_only(&journal).expect("journal").job("wf/1").expect("job");
    assert_eq!(cut.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(), [AttemptOutcome::Interrupted]);

    let rerun = run(&["charge", &effects, "--journal", &journal]);
    rerun.assert_no_warnings();
    assert_eq!(rerun.status.code(), Some(1), "{rerun:?}");
    assert!(!rerun.stdout.contains("charging"), "dispatched again: {rerun:?}");
    for needle in [
        "job `wf/1`",
        "jobs_scenarios::charge_card",
        "not idempotent",
        "outcome is unknown",
        "Journal::resolve",
    ] {
        assert!(rerun.stderr.contains(needle), "stderr lacks {needle:?}: {rerun:?}");
    }
    assert_eq!(lines(&effects), ["wf/1"]);
    let j = Journal::open_read_only(&journal).expect("journal");
    assert_eq!(j.job("wf/1").expect("job").state, JobState::Unresolved);
    drop(j);

    let resolved = run(&["resolve", "wf/1", "--journal", &journal]);
    assert!(resolved.status.success() && resolved.stdout.contains("resolved"), "{resolved:?}");
    let done = run(&["charge", &effects, "--journal", &journal]);
    done.assert_no_warnings();
    assert!(done.status.success(), "{done:?}");
    assert!(done.stdout.contains("charged 500") && !done.stdout.contains("charging"), "{done:?}");
    assert_eq!(lines(&effects), ["wf/1"]);
}

/// Two roots on one workflow at once: the second is refused, naming the
/// first; a root that was SIGKILLed is recognised as gone and taken over.
#[test]
fn two_roots_cannot_run_one_workflow_at_once() {
    let dir = TempDir::new("two");
    let journal = dir.path("two.db");
    let release = dir.path("release");
    let mut first = Tree::start(FIXTURE, &["hold", &release, "--journal", &journal, "--id", "shared"], &[]);
    first.wait_for_line("holding", BOUND);
    let second = run(&["hold", &release, "--journal", &journal, "--id", "shared"]);
    second.assert_no_warnings();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let owner = format!("workflow `shared` is being run by another process (pid {} on ", first.pid());
    assert!(second.stderr.contains(&owner), "{second:?}");
    assert!(!second.stdout.contains("holding"), "{second:?}");
    std::fs::write(&release, "go").expect("release");
    first.wait_for_line("released", BOUND);
    let first = first.finish(BOUND);
    assert!(first.status.success(), "{first:?}");

    // A dead owner does not block the next run.
    let release = dir.path("release-2");
    let mut gone = Tree::start(FIXTURE, &["hold", &release, "--journal", &journal, "--id", "stale"], &[]);
    gone.wait_for_line("holding", BOUND);
    gone.signal(Signal::SIGKILL);
    assert!(killed(&gone.finish(BOUND)));
    std::fs::write(&release, "go").expect("release");
    let next = run(&["hold", &release, "--journal", &journal, "--id", "stale"]);
    next.assert_no_warnings();
    assert!(next.status.success() && next.stdout.contains("released"), "{next:?}");
}

/// A journal truncated or overwritten on disk: the run stops with an error
/// naming the file and the damage, the file is left as it was, and `actor
/// jobs` says the same. The intact journal still holds every result.
#[test]
fn a_damaged_journal_stops_the_run_and_is_left_untouched() {
    let dir = TempDir::new("damage");
    let journal = dir.path("damage.db");
    let effects = dir.path("effects");
    let args = ["steps", "30", &effects, "--journal", &journal];
    let made = run(&args);
    assert!(made.status.success(), "{made:?}");
    let good = std::fs::read(&journal).expect("journal");
    assert!(!Path::new(&format!("{journal}-wal")).exists(), "a clean exit leaves no WAL");

    let page = 4096;
    let mut overwritten = good.clone();
    overwritten[2 * page..3 * page].fill(0xff);
    // A key rewritten wherever it is stored (its row and its index entry).
    let mut rekeyed = good.clone();
    let mut found = 0;
    for i in 0..rekeyed.len() - 5 {
        if &rekeyed[i..i + 5] == b"wf/17" {
            rekeyed[i..i + 5].copy_from_slice(b"wf/71");
            found += 1;
        }
    }
    assert!(found >= 2, "the key is stored in its row and its index");
    let damages = [
        ("truncated", &good[..good.len() / 2]),
        ("cut inside a page", &good[..good.len() - 10]),
        ("a page overwritten", &overwritten[..]),
        ("a key rewritten", &rekeyed[..]),
    ];
    for (what, bytes) in damages {
        std::fs::write(&journal, bytes).expect("damage");
        let out = run(&args);
        out.assert_no_warnings();
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        assert!(out.stderr.contains(&format!("the job journal {journal} is damaged")), "{what}: {out:?}");
        assert!(!out.stdout.contains("step 0 done"), "{what}: ran on a damaged journal: {out:?}");
        assert!(std::fs::read(&journal).expect("journal") == bytes, "{what}: the file was changed");
        let listed = Tree::start_program(&common::binary("actor"), &["jobs", &journal], &[]).finish(BOUND);
        assert_eq!(listed.status.code(), Some(1), "{what}: {listed:?}");
        assert!(listed.stderr.contains("is damaged"), "{what}: {listed:?}");
    }
    std::fs::write(&journal, &good).expect("restore");
    let again = run(&args);
    assert!(again.status.success() && again.stdout.contains("replayed 30"), "{again:?}");
    assert_eq!(lines(&effects).len(), 30);
}

/// Jobs on their own, on an actor spawned for the attempt and through a
/// portal: each runs once, and the same key submitted again returns the
/// recorded result; the spawned actor is reaped.
#[test]
fn jobs_on_their_own_run_on_every_kind_of_target_once() {
    let dir = TempDir::new("targets");
    let journal = dir.path("targets.db");
    let effects = dir.path("effects");
    let out = run(&["targets", &effects, "--journal", &journal]);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    for round in 0..2 {
        assert!(out.stdout.contains(&format!("round {round}: spawned 22, portal 25")), "{out:?}");
    }
    assert_eq!(lines(&effects), ["spawned-7", "portal-8"]);
    let j = Journal::open_read_only(&journal).expect("journal");
    let jobs = j.jobs(None).expect("jobs");
    let mut targets: Vec<_> =
        jobs.iter().map(|j| (j.key.as_str(), j.target.as_str(), j.attempts.len())).collect();
    targets.sort();
    assert_eq!(targets, [("portal-8", "portal helper", 1), ("spawned-7", "spawn one_off", 1)]);
}
