//! Supervision, errors and teardown, each on a real process tree built by the
//! `scenarios` fixture (tests/fixtures/scenarios.rs).

mod common;

use std::time::Duration;

use common::Tree;
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);

fn scenario(args: &[&str]) -> common::Finished {
    Tree::start("scenarios", args, &[]).finish(BOUND)
}

#[test]
fn three_failing_children_make_one_group_error() {
    let out = scenario(&["group3"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("KINDS Application,Application,Application"), "{out:?}");
    assert!(out.stderr.contains("3 actors failed"), "{out:?}");
    for i in 0..3 {
        assert!(out.stderr.contains(&format!("failure number {i}")), "{out:?}");
    }
}

/// Three children fail at the same moment, round after round; each round's
/// nursery error must hold all three failures, each naming its actor. In the
/// nested form each child relays its own child's failure, which reaches it
/// while our cancel may be arriving: that failure must not become a mere
/// cancellation.
#[test]
fn simultaneous_failures_are_all_kept_in_the_group() {
    for (form, entries, leaves) in [
        ("group_race", "failer0,failer1,failer2", "failer0,failer1,failer2"),
        ("group_race_nested", "mid0,mid1,mid2", "leaf0,leaf1,leaf2"),
    ] {
        let out = scenario(&[form, "10"]);
        assert!(out.status.success(), "{form}: {out:?}");
        let rounds: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("ROUND ")).collect();
        assert_eq!(rounds.len(), 10, "{form}: {out:?}");
        for line in rounds {
            let expected = format!("Application,Application,Application {entries} {leaves}");
            assert!(line.ends_with(&expected), "{form}: {line}\n{}", out.stderr);
        }
    }
}

/// A child that dies while its nursery cancels it (here: exit status 3 from
/// its cancel handling) failed before it was confirmed cancelled: its crash
/// is kept beside the failure that started the teardown.
#[test]
fn a_crash_while_being_cancelled_is_kept() {
    let out = scenario(&["crash_while_cancelled"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("LEAF failer: first failure"), "{out:?}");
    assert!(out.stdout.contains("LEAF exits_when_cancelled: actor `exits_when_cancelled#"), "{out:?}");
    assert!(out.stdout.contains("crashed: exit status 3"), "{out:?}");
}

/// A call into our own daemon whose process dies mid-call names the actor
/// and how it died, as the nursery does, and the nursery reports that crash
/// once, not again beside the body's copy of it.
#[test]
fn a_call_into_a_child_that_dies_names_its_exit_status_or_signal() {
    for (how, expected) in [("exit3", "exit status 3"), ("sigkill", "killed by signal 9 (SIGKILL)")] {
        let out = scenario(&["call_crash", how]);
        assert_eq!(out.status.code(), Some(1), "{how}: {out:?}");
        let call = out.stdout.lines().find(|l| l.starts_with("CALL FAILED")).unwrap_or_default();
        assert!(call.starts_with("CALL FAILED actor `crashy#"), "{how}: {out:?}");
        assert!(call.ends_with(&format!("crashed: {expected}")), "{how}: {out:?}");
        assert!(out.stdout.contains("NURSERY LEAVES 1"), "{how}: {out:?}");
    }
}

/// The body awaiting a failing child's result gets the child's error, every
/// time, and the nursery's error holds that failure exactly once.
#[test]
fn a_body_awaiting_a_failed_result_always_sees_the_error() {
    let out = scenario(&["result_race", "20"]);
    assert!(out.status.success(), "{out:?}");
    for round in 0..20 {
        let body = format!("BODY {round} SAW round {round}\n");
        let nursery = format!("NURSERY {round} round {round}\n");
        let stdout = format!("{}\n", out.stdout);
        assert!(stdout.contains(&body), "round {round}: {out:?}");
        assert!(stdout.contains(&nursery), "round {round}: {out:?}");
    }
}

#[test]
fn an_error_three_levels_deep_reaches_the_root_with_every_source() {
    let out = scenario(&["deep_error"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = &out.stderr;
    for needle in ["top#", "middle#", "leaf#", "deep trouble", "relayed via"] {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
    // Each level finds the leaf's own error with `Error::leaves`, and its relay
    // path lists every actor that relayed it so far, nearest the leaf first.
    for level in [
        "LEAF at=middle src=leaf path=[] deep trouble",
        "LEAF at=top src=leaf path=[middle] deep trouble",
        "LEAF at=root src=leaf path=[middle>top] deep trouble",
    ] {
        assert!(out.stdout.contains(level), "stdout lacks {level:?}: {out:?}");
    }
}

#[test]
fn a_parent_side_timeout_cancels_busy_children() {
    let out = scenario(&["timeout"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("TIMED OUT true"), "{out:?}");
}

#[test]
fn a_child_ignoring_cancel_is_sigtermed_then_sigkilled() {
    let mut tree = Tree::start("scenarios", &["ignore_cancel"], &[("ACTOR_LOG", "warn")]);
    let line = tree.wait_for_line("PLAYING DEAD", BOUND);
    let pid: i32 = line.rsplit(' ').next().and_then(|p| p.parse().ok()).expect("pid");
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("STUBBORN REAPED"), "{out:?}");
    let term = out.stderr.find("sending SIGTERM").expect("SIGTERM step logged");
    let kill = out.stderr.find("sending SIGKILL").expect("SIGKILL step logged");
    assert!(term < kill, "{}", out.stderr);
    assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "the stubborn child {pid} still exists");
}

#[test]
fn sigkill_of_the_root_takes_every_descendant_down() {
    let mut tree = Tree::start("scenarios", &["tree"], &[]);
    for _ in 0..3 {
        tree.wait_for_line("SUBTREE UP", BOUND);
    }
    // Root, its watcher (which outlives it by a sweep), three branches, six
    // grandchildren, and the fork servers of the four that spawn.
    assert_eq!(common::tagged(&tree.tag).len(), 15, "{:?}", common::tagged(&tree.tag));
    tree.signal(Signal::SIGKILL);
    let tag = tree.tag.clone();
    common::assert_gone(&tag, Duration::from_secs(2));
    let out = tree.finish(BOUND);
    assert_eq!(out.status.code(), None, "killed by a signal: {out:?}");
}

#[test]
fn sigint_cancels_the_whole_tree_and_exits_non_zero() {
    let mut tree = Tree::start("scenarios", &["tree"], &[]);
    for _ in 0..3 {
        tree.wait_for_line("SUBTREE UP", BOUND);
    }
    tree.signal(Signal::SIGINT);
    let out = tree.finish(BOUND);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("interrupted by SIGINT"), "{out:?}");
}

#[test]
fn a_hundred_actors_in_one_nursery_all_deliver() {
    let out = scenario(&["hundred"]);
    assert!(out.status.success(), "{out:?}");
    let expected: u64 = (0..100u64).map(|i| i * i).sum();
    assert!(out.stdout.contains(&format!("SUM {expected}")), "{out:?}");
}

#[test]
fn crashes_name_the_exit_status_or_signal() {
    for (how, expected) in [
        ("exit3", "CRASHED crasher exit status 3"),
        ("abort", "CRASHED crasher killed by signal 6 (SIGABRT)"),
        ("sigkill", "CRASHED crasher killed by signal 9 (SIGKILL)"),
        ("panic", "PANIC deliberate panic in a remote function"),
    ] {
        let out = scenario(&["crash", how]);
        assert_eq!(out.status.code(), Some(1), "{how}: {out:?}");
        assert!(out.stdout.contains(expected), "{how}: {out:?}");
    }
}

#[test]
fn bad_calls_are_remote_errors_naming_the_problem() {
    let out = scenario(&["bad_calls"]);
    assert!(out.status.success(), "{out:?}");
    let s = &out.stdout;
    assert!(s.contains("unknown UnknownFunction no function `no::such::function` is registered"), "{s}");
    assert!(
        s.contains("bad_args BadArguments arguments of `scenarios::square` do not decode as (u64,)"),
        "{s}"
    );
    assert!(s.contains("hidden NotExposed actor `limited_daemon#"), "{s}");
    assert!(s.contains("allowed 144"), "{s}");
}

#[test]
fn many_concurrent_calls_share_one_portal() {
    let out = scenario(&["concurrent"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("CONCURRENT 200 true"), "{out:?}");
}

#[test]
fn a_blocking_function_does_not_stall_other_calls() {
    let out = scenario(&["blocking"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("FAST FIRST 81"), "{out:?}");
    assert!(out.stdout.contains("SLOW 1000"), "{out:?}");
}

#[test]
fn cancelling_a_daemon_ends_its_in_flight_calls_as_cancelled() {
    let out = scenario(&["cancel_in_flight"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("IN FLIGHT CALL ENDED cancelled=true"), "{out:?}");
}

#[test]
fn a_child_exiting_before_the_handshake_is_a_spawn_error() {
    let out = scenario(&["early_exit"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("SPAWN FAILED doomed: the process ended (exit status 3) before connecting back"),
        "{out:?}"
    );
}

#[test]
fn a_child_that_never_connects_back_is_a_spawn_error() {
    let out = scenario(&["spawn_timeout"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stdout.contains("SPAWN FAILED doomed: the process did not connect back within 2s"),
        "{out:?}"
    );
}
