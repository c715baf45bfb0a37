//! The call protocol's edges on real process trees (tests/fixtures/edges.rs).

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(60);
const TOKEN: &str = "00112233445566778899aabbccddeeff";

fn run(name: &str, env: &[(&str, &str)]) -> common::Finished {
    Tree::start("edge_scenarios", &[name], env).finish(BOUND)
}

fn scenario(name: &str, env: &[(&str, &str)]) -> common::Finished {
    let out = run(name, env);
    assert!(out.status.success(), "{out:?}");
    out
}

#[test]
fn a_context_that_fails_before_started_gives_the_callee_error() {
    let out = scenario("context_before_started", &[]);
    assert!(out.stdout.contains("FAIL BEFORE STARTED: REMOTE Application refusing to start"), "{out:?}");
    assert!(
        out.stdout.contains("STREAM BEFORE STARTED: REMOTE Application call `started` before opening"),
        "{out:?}"
    );
}

#[test]
fn an_actor_found_by_name_can_be_cancelled_by_a_peer_of_its_tree() {
    let out = scenario("cancel_by_name", &[("ACTOR_TOKEN", TOKEN)]);
    assert!(out.stdout.contains("CANCEL: OK ()"), "{out:?}");
    assert!(out.stdout.contains("PENDING CALL cancelled true canceller named true"), "{out:?}");
    assert!(out.stdout.contains("VICTIM ALIVE false"), "{out:?}");
    // Its parent recorded a requested cancel, not a crash.
    assert!(!out.stderr.contains("crashed"), "{out:?}");
}

#[test]
fn a_peer_that_did_not_prove_it_belongs_to_the_tree_cannot_reach_it() {
    let out = scenario("cancel_refused", &[("ACTOR_TOKEN", TOKEN)]);
    assert!(out.stdout.contains("STRANGER REFUSED true"), "{out:?}");
    assert!(out.stdout.contains("STILL SERVING true"), "{out:?}");
}

#[test]
fn a_call_into_a_stopped_peer_fails_once_it_stops_answering() {
    let out = scenario("stopped_peer", &[("ACTOR_PEER_TIMEOUT", "0.6")]);
    let line = out.stdout.lines().find(|l| l.starts_with("CALL: ")).unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.contains("did not answer for"), "{line}");
}

#[test]
fn a_run_in_actor_child_can_be_found_by_name_while_its_main_runs() {
    let out = scenario("main_found_by_name", &[]);
    assert!(out.stdout.contains("FOUND: OK ()"), "{out:?}");
    assert!(out.stdout.contains("MAIN: OK \"released\""), "{out:?}");
}

#[test]
fn a_reply_over_the_frame_limit_becomes_an_error_naming_the_limit() {
    let out = run("too_large", &[]);
    // The run_in_actor child failed, so its nursery does, with that error.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("big_main#") && out.stderr.contains("FrameTooLarge"), "{out:?}");
    for line in ["RUN: REMOTE Protocol", "MAIN: REMOTE Protocol"] {
        let found = out.stdout.lines().find(|l| l.starts_with(line));
        let found = found.unwrap_or_else(|| panic!("no {line:?} in {out:?}"));
        assert!(found.contains("exceeds the maximum of 16777216 bytes"), "{found}");
    }
    assert!(out.stdout.contains("AFTER: OK \"served\""), "{out:?}");
}
