//! Call deadlines on real process trees, built by the `deadline_scenarios`
//! fixture (tests/fixtures/deadlines.rs).

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(60);

fn marker(what: &str) -> String {
    std::env::temp_dir().join(format!("actor-deadline-{}-{what}", std::process::id())).display().to_string()
}

/// A call given 300 ms fails with a timeout naming the function and the
/// actor; the callee's task is cancelled (it writes the marker as it is
/// dropped), and the actor serves the next call.
#[test]
fn a_deadline_cancels_the_callee_and_names_function_and_actor() {
    let m = marker("cancel");
    let out = Tree::start("deadline_scenarios", &["cancel", &m], &[]).finish(BOUND);
    let _ = std::fs::remove_file(&m);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("NO DEADLINE None"), "{out:?}");
    let line = out.stdout.lines().find(|l| l.starts_with("TIMEOUT")).unwrap_or_default();
    assert!(line.contains("hang_until_cancelled") && line.contains("actor `sleeper#"), "{out:?}");
    assert!(line.contains("300ms"), "{out:?}");
    assert!(out.stdout.contains("CALLEE cancelled"), "{out:?}");
    assert!(out.stdout.contains("AGAIN WITHIN 5S true"), "{out:?}");
}

/// root gives mid 2 s; mid's call into its own child inherits what is left
/// (no more than mid had), and when the 2 s pass the grandchild's call is
/// cancelled too.
#[test]
fn nested_calls_inherit_the_remaining_time() {
    let m = marker("nested");
    let out = Tree::start("deadline_scenarios", &["nested", &m], &[]).finish(BOUND);
    let _ = std::fs::remove_file(&m);
    assert!(out.status.success(), "{out:?}");
    let line = out.stdout.lines().find(|l| l.starts_with("MID REMAINING")).unwrap_or_default();
    let nums: Vec<u128> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "both must have a deadline: {out:?}");
    assert!(nums[0] <= 2000 && nums[1] <= nums[0], "{out:?}");
    assert!(out.stdout.contains("TIMEOUT") && out.stdout.contains("relay_deadline"), "{out:?}");
    assert!(out.stdout.contains("LEAF cancelled"), "{out:?}");
}

/// A context that does not start within its opening deadline is cancelled
/// (the callee sees it) and the caller gets a timeout naming it; a stream
/// opened with a deadline delivers items until then, and its producer is
/// cancelled when it passes.
#[test]
fn contexts_and_streams_accept_a_deadline_for_opening() {
    let m = marker("open");
    let out = Tree::start("deadline_scenarios", &["open", &m], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    let line = out.stdout.lines().find(|l| l.starts_with("CONTEXT TIMEOUT")).unwrap_or_default();
    assert!(line.contains("never_starts") && line.contains("to start"), "{out:?}");
    assert!(out.stdout.contains("CONTEXT CALLEE cancelled"), "{out:?}");
    assert!(out.stdout.contains("STREAM ITEMS true END cancelled true"), "{out:?}");
    assert!(out.stdout.contains("STREAM CALLEE cancelled"), "{out:?}");
}
