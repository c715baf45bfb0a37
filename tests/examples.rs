//! Every example runs as a real process tree and shows what its doc says.

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn actor_spawning_and_causality() {
    let out = Tree::start("actor_spawning_and_causality", &[], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("poe (speaking from actor `some_linguist#"), "{out:?}");
    assert!(out.stdout.contains("the nursery is closed"), "{out:?}");
    // Printed by the child process itself.
    assert!(out.stdout.contains("[some_linguist#") && out.stdout.contains("thinking about poe"), "{out:?}");
}

#[test]
fn actor_spawning_and_causality_with_daemon() {
    let out = Tree::start("actor_spawning_and_causality_with_daemon", &[], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    // Actor-local state: the second cellar_door call is the daemon's third call.
    assert!(out.stdout.contains("frank says cellar door (call #3 in this actor)"), "{out:?}");
    assert!(out.stdout.contains("fib(90) computed remotely: 2880067194370816120"), "{out:?}");
    assert!(out.stdout.contains("cancelled and reaped"), "{out:?}");
}

#[test]
fn remote_error_propagation() {
    let out = Tree::start("remote_error_propagation", &[], &[]).finish(BOUND);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout.matches("is serving").count(), 2, "{out:?}");
    for needle in ["door_opener#", "the cellar door is locked", "DoorLocked", "caused by: no key on the ring"]
    {
        assert!(out.stderr.contains(needle), "stderr lacks {needle:?}: {out:?}");
    }
}

#[test]
fn nested_actor_tree() {
    let out = Tree::start("nested_actor_tree", &[], &[]).finish(BOUND);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("7*7+1 = 50"), "{out:?}");
    for needle in ["manager_failing#", "worker#", "leaf refuses to square 3", "relayed via"] {
        assert!(out.stderr.contains(needle), "stderr lacks {needle:?}: {out:?}");
    }
}

#[test]
fn log_level_reaches_children_with_their_identity() {
    let out = Tree::start("actor_spawning_and_causality", &[], &[("ACTOR_LOG", "actor=debug")]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    // A debug line logged inside the child carries the child's actor span.
    assert!(
        out.stderr.lines().any(|l| l.contains("actor{name=some_linguist") && l.contains("call{")),
        "{}",
        out.stderr
    );
}
