//! Many live actors under one root, and the limit on open files
//! (tests/fixtures/scale.rs). The 1,000-actor figures come from
//! `cargo bench --bench scale`; this stays small enough for two cores.

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(90);

fn run(scenario: &str) -> common::Finished {
    Tree::start("scale_scenarios", &[scenario], &[]).finish(BOUND)
}

#[test]
fn a_root_holds_150_daemons_calls_each_and_tears_them_all_down() {
    let out = run("many");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("SPAWNED 150"), "{out:?}");
    assert!(out.stdout.contains("DISTINCT PIDS 150"), "{out:?}");
    assert!(out.stdout.contains("FDS PER ACTOR AT MOST 3: true"), "{out:?}");
    assert!(out.stdout.contains("FDS RELEASED: true"), "{out:?}");
    out.assert_no_warnings();
}

#[test]
fn the_root_raises_its_soft_fd_limit_to_the_hard_one_for_the_whole_tree() {
    let out = run("raised");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("ROOT SOFT IS HARD: true"), "{out:?}");
    assert!(out.stdout.contains("CHILD SOFT IS HARD: true"), "{out:?}");
    assert!(out.stdout.contains("CHILD PARENT-DEATH SIGNAL IS SIGRTMAX-1: true"), "{out:?}");
    out.assert_no_warnings();
}

#[test]
fn running_out_of_descriptors_is_a_spawn_error_naming_the_limit() {
    let out = run("exhaust");
    assert!(out.status.success(), "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("SPAWNED "))
        .unwrap_or_else(|| panic!("no spawn failed: {out:?}"));
    assert!(line.contains("RLIMIT_NOFILE"), "{line}");
    assert!(line.contains("soft 64, hard 64"), "{line}");
    assert!(line.contains("raise the hard limit"), "{line}");
}
