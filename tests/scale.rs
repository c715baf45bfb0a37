//! Many live actors under one root, and the limit on open files
//! (tests/fixtures/scale.rs). The 1,000-actor figures come from
//! `cargo bench --bench scale`; this stays small enough for two cores.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::Tree;
use nix::sys::signal::Signal;

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
fn the_root_raises_its_soft_fd_limit_to_the_hard_one_capped_for_the_whole_tree() {
    let out = run("raised");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("ROOT SOFT RAISED: true"), "{out:?}");
    assert!(out.stdout.contains("CHILD SOFT RAISED: true"), "{out:?}");
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

/// How many children `pid` has now, from every one of its threads.
fn children_of(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .map(|c| c.split_whitespace().count())
        .sum()
}

/// A root SIGKILLed while it is spawning leaves no process behind: children
/// killed before they armed their parent-death signal find they were
/// re-parented and exit, the others get the signal. Each round kills the
/// root at another point of its first batch of spawns.
#[test]
fn a_root_killed_while_spawning_leaves_no_process_behind() {
    for round in 0..6 {
        let tree = Tree::start("scale_scenarios", &["many"], &[]);
        let root = tree.pid();
        let deadline = Instant::now() + BOUND;
        // The private arbiter is a child of the root too.
        while children_of(root) < 2 + round * 4 {
            assert!(Instant::now() < deadline, "round {round}: the root spawned nothing");
            std::thread::sleep(Duration::from_micros(100));
        }
        tree.signal(Signal::SIGKILL);
        println!(
            "round {round}: killed the root with {} children, {} processes of the tree",
            children_of(root),
            common::tagged(&tree.tag).len()
        );
        // `finish` fails if any process of the tree outlives the root.
        let out = tree.finish(BOUND);
        assert_eq!(out.status.signal(), Some(Signal::SIGKILL as i32), "round {round}: {out:?}");
    }
}
