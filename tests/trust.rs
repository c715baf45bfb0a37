//! Trust: helpers an actor starts die with the tree, zero-argument calls
//! accept the protocol's `[]`, and a tree with no configured token still
//! refuses strangers. Real process trees built by tests/fixtures/trust.rs.

mod common;

use std::time::{Duration, Instant};

use common::Tree;
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);

/// Whether `pid` is a live process (a zombie is dead: it only awaits reaping).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// Fails unless every pid in `pids` is dead within `within`.
fn assert_dead(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in &left {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p as i32), Signal::SIGKILL);
            }
            panic!("helpers {left:?} outlived their actors by {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn helper_pid(line: &str) -> u32 {
    line.rsplit(' ').next().and_then(|p| p.parse().ok()).expect("a pid after HELPER")
}

#[test]
fn a_helper_dies_when_its_actor_returns() {
    let mut tree = Tree::start("trust_scenarios", &["helper_then", "return"], &[]);
    let pid = helper_pid(&tree.wait_for_line("HELPER", BOUND));
    assert_dead(&[pid], Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("CHILD ENDED true"), "{out:?}");
}

#[test]
fn a_helper_dies_when_its_actor_crashes() {
    let mut tree = Tree::start("trust_scenarios", &["helper_then", "exit3"], &[]);
    let pid = helper_pid(&tree.wait_for_line("HELPER", BOUND));
    assert_dead(&[pid], Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert!(out.stdout.contains("CHILD ENDED false"), "{out:?}");
}

#[test]
fn helpers_die_when_their_actors_are_cancelled() {
    let mut tree = Tree::start("trust_scenarios", &["helpers_held", "cancel"], &[]);
    let pids: Vec<u32> = tree.wait_for_lines("HELPER", 2, BOUND).iter().map(|l| helper_pid(l)).collect();
    tree.wait_for_line("CANCELLED", BOUND);
    assert_dead(&pids, Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn helpers_die_when_the_root_is_sigkilled() {
    let mut tree = Tree::start("trust_scenarios", &["helpers_held", "hold"], &[]);
    let pids: Vec<u32> = tree.wait_for_lines("HELPER", 2, BOUND).iter().map(|l| helper_pid(l)).collect();
    tree.wait_for_line("HELD", BOUND);
    tree.signal(Signal::SIGKILL);
    assert_dead(&pids, Duration::from_secs(10));
    let out = tree.finish(BOUND);
    assert_eq!(out.status.code(), None, "killed by a signal: {out:?}");
}

#[test]
fn a_zero_argument_function_accepts_an_empty_array_and_nil() {
    let out = Tree::start("trust_scenarios", &["empty_args"], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("EMPTY ARRAY 42 NIL 42"), "{out:?}");
}
