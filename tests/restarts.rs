//! Restarting nurseries (one-for-one, rest-for-one, restart kinds, intensity,
//! backoff), each on a real process tree built by the `restart_scenarios`
//! fixture (tests/fixtures/restarts.rs).

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(60);

fn scenario(args: &[&str], env: &[(&str, &str)]) -> common::Finished {
    let out = Tree::start("restart_scenarios", args, env).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out
}

fn temp_path(what: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!("actor-restarts-{}-{n}-{what}", std::process::id()))
        .display()
        .to_string()
}

/// A one-for-one child SIGKILLed three times is restarted three times, keeps
/// its name, and the portal from the nursery reaches each new process. The
/// restarts log at INFO: a run with restarts only is clean.
#[test]
fn a_one_for_one_child_killed_three_times_is_restarted_three_times() {
    let out = scenario(&["kill3"], &[("ACTOR_LOG", "actor=info")]);
    assert_eq!(out.stdout.lines().filter(|l| l.starts_with("NEW worker ")).count(), 3, "{out:?}");
    assert!(out.stdout.contains("PORTAL RESTARTS 3"), "{out:?}");
    assert!(out.stdout.contains("RESTARTS worker=3"), "{out:?}");
    assert!(out.stdout.contains("REGISTERED THE NEW PROCESS ONLY"), "{out:?}");
    let events =
        out.stderr.lines().filter(|l| l.contains(" INFO ") && l.contains("restarting actor")).count();
    assert_eq!(events, 3, "{}", out.stderr);
    for field in ["actor=worker", "cause=", "SIGKILL", "attempt=3", "delay="] {
        assert!(out.stderr.contains(field), "no {field} in the restart events:\n{}", out.stderr);
    }
    out.assert_no_warnings();
}

/// With an intensity of 3 restarts in 10 s, the fourth kill is not
/// restarted: the nursery fails with all four causes, in order.
#[test]
fn the_kill_past_the_intensity_fails_the_nursery_with_every_cause() {
    let out = scenario(&["intensity"], &[]);
    assert!(out.stdout.contains("INTENSITY worker 4"), "{out:?}");
    let causes: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("CAUSE ")).collect();
    assert_eq!(causes.len(), 4, "{out:?}");
    for c in &causes {
        assert!(c.contains("actor `worker#") && c.contains("killed by signal 9 (SIGKILL)"), "{c}");
    }
    // Four distinct processes, one per cause.
    let mut uids: Vec<&str> = causes.iter().filter_map(|c| c.split('`').nth(1)).collect();
    uids.dedup();
    assert_eq!(uids.len(), 4, "{causes:?}");
}

/// Rest-for-one: killing the second of four restarts it and exactly the two
/// started after it, in start order; the first keeps its process, and a
/// temporary actor started last is stopped but not started again.
#[test]
fn rest_for_one_restarts_exactly_the_later_siblings_in_start_order() {
    let log = temp_path("starts");
    let out = scenario(&["rest_for_one"], &[("START_LOG", &log)]);
    assert!(out.stdout.contains("A SAME true"), "{out:?}");
    assert!(out.stdout.contains("RESTARTS a=0,b=1,c=1,d=1,e=0"), "{out:?}");
    assert!(out.stdout.contains("E ANSWERS false"), "{out:?}");
    let starts = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let starts: Vec<&str> = starts.lines().collect();
    assert_eq!(starts, ["a", "b", "c", "d", "e", "b", "c", "d"], "{out:?}");
}

/// Transient: a child whose main function returns is not restarted; one
/// that fails is, and its result is the restarted run's.
#[test]
fn a_transient_child_is_restarted_after_a_failure_only() {
    let marker = temp_path("marker");
    let out = scenario(&["transient", &marker], &[]);
    let _ = std::fs::remove_file(&marker);
    assert!(out.stdout.contains("FINE 5"), "{out:?}");
    assert!(out.stdout.contains("FLAKY 7"), "{out:?}");
    assert!(out.stdout.contains("RESTARTS fine=0,flaky=1"), "{out:?}");
}

/// Temporary: never restarted, neither after an error nor after SIGKILL;
/// callers see the failure, the siblings go on, the nursery ends normally.
#[test]
fn a_temporary_child_is_never_restarted() {
    let out = scenario(&["temporary"], &[]);
    assert!(out.stdout.contains("FAILING true"), "{out:?}");
    assert!(out.stdout.contains("DAEMON AFTER KILL actor `daemon#"), "{out:?}");
    assert!(out.stdout.contains("crashed: killed by signal 9 (SIGKILL)"), "{out:?}");
    assert!(out.stdout.contains("SIBLING 1"), "{out:?}");
    assert!(out.stdout.contains("RESTARTS failing=0,daemon=0,sibling=0"), "{out:?}");
}

/// A call in flight when its actor is killed fails naming the actor and the
/// signal; the next call reaches the restarted process.
#[test]
fn a_call_in_flight_names_the_dead_process_and_the_next_reaches_the_new_one() {
    let out = scenario(&["in_flight"], &[]);
    let line = out.stdout.lines().find(|l| l.starts_with("IN FLIGHT")).unwrap_or_default();
    assert!(line.starts_with("IN FLIGHT actor `worker#"), "{out:?}");
    assert!(line.ends_with("crashed: killed by signal 9 (SIGKILL)"), "{out:?}");
    assert!(out.stdout.contains("RETRIED ON NEW true"), "{out:?}");
}

/// A nursery whose child waits out a 600 s restart backoff still tears down
/// at once when its body ends (the tree must finish within BOUND, 60 s).
#[test]
fn teardown_while_a_restart_backoff_is_pending_stays_bounded() {
    let out = scenario(&["backoff_teardown"], &[("ACTOR_LOG", "actor=info")]);
    assert!(out.stdout.contains("DEAD true"), "{out:?}");
    assert!(out.stdout.contains("TORN DOWN"), "{out:?}");
    assert!(out.stderr.contains("restarting actor"), "{}", out.stderr);
}

/// A retried idempotent call whose worker is SIGKILLed meanwhile gets its
/// answer from the restarted process; a call that fails every time returns
/// every attempt's error.
#[test]
fn a_retried_idempotent_call_succeeds_on_the_restarted_actor() {
    let out = scenario(&["retry"], &[]);
    assert!(out.stdout.contains("RETRY ANSWERED BY a new process"), "{out:?}");
    assert!(out.stdout.contains("ATTEMPTS 3"), "{out:?}");
}

/// The default strategy is unchanged: a killed child, even one marked
/// permanent, fails its one-cancels-all nursery and is not restarted.
#[test]
fn one_cancels_all_ignores_restart_kinds() {
    let out = scenario(&["one_cancels_all"], &[]);
    let line = out.stdout.lines().find(|l| l.starts_with("NURSERY FAILED")).unwrap_or_default();
    assert!(line.contains("actor `worker#") && line.ends_with("killed by signal 9 (SIGKILL)"), "{out:?}");
    let starts = out.stderr.matches("restarting actor").count();
    assert_eq!(starts, 0, "{out:?}");
}
