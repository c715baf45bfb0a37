//! Every example runs as a real process tree and shows what its doc says.
//! Each run is meant to be clean at the default log level (`warn`): even
//! those that end in an error on purpose must log no WARN or ERROR line, since
//! a false alarm teaches users to ignore the real ones.

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn actor_spawning_and_causality() {
    let out = Tree::start("actor_spawning_and_causality", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("poe (speaking from actor `some_linguist#"), "{out:?}");
    assert!(out.stdout.contains("the nursery is closed"), "{out:?}");
    // Printed by the child process itself.
    assert!(out.stdout.contains("[some_linguist#") && out.stdout.contains("thinking about poe"), "{out:?}");
}

#[test]
fn actor_spawning_and_causality_with_daemon() {
    let out = Tree::start("actor_spawning_and_causality_with_daemon", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    // Actor-local state: the second cellar_door call is the daemon's third call.
    assert!(out.stdout.contains("frank says cellar door (call #3 in this actor)"), "{out:?}");
    assert!(out.stdout.contains("fib(90) computed remotely: 2880067194370816120"), "{out:?}");
    assert!(out.stdout.contains("cancelled and reaped"), "{out:?}");
}

#[test]
fn remote_error_propagation() {
    let out = Tree::start("remote_error_propagation", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
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
    out.assert_no_warnings();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("7*7+1 = 50"), "{out:?}");
    for needle in ["manager_failing#", "worker#", "leaf refuses to square 3", "relayed via"] {
        assert!(out.stderr.contains(needle), "stderr lacks {needle:?}: {out:?}");
    }
}

#[test]
fn log_level_reaches_children_with_their_identity() {
    let out = Tree::start("actor_spawning_and_causality", &[], &[("ACTOR_LOG", "actor=debug")]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    // A debug line logged inside the child carries the child's actor span.
    assert!(
        out.stderr.lines().any(|l| l.contains("actor{name=some_linguist") && l.contains("call{")),
        "{}",
        out.stderr
    );
}

#[test]
fn asynchronous_generators() {
    let out = Tree::start("asynchronous_generators", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("received 9"), "{out:?}");
    assert!(!out.stdout.contains("received 10"), "{out:?}");
    assert!(out.stdout.contains("says: still serving"), "{out:?}");
}

#[test]
fn full_fledged_streaming_service() {
    let out = Tree::start("full_fledged_streaming_service", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("40 distinct values from 2 producers through 1 aggregator; complete: true"),
        "{out:?}"
    );
}

#[test]
fn rpc_bidir_streaming() {
    let out = Tree::start("rpc_bidir_streaming", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    for i in 0..5 {
        assert!(out.stdout.contains(&format!("received: pong {i}")), "{out:?}");
    }
    assert!(out.stdout.contains("the remote task answered 5 pings"), "{out:?}");
}

#[test]
fn multiple_streams_one_portal() {
    let out = Tree::start("multiple_streams_one_portal", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("stream 1 spelled: structured"), "{out:?}");
    assert!(out.stdout.contains("stream 2 spelled: concurrency"), "{out:?}");
}

#[test]
fn a_trynamic_first_scene() {
    let out = Tree::start("a_trynamic_first_scene", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("donny asked gretchen and heard: hi, this is gretchen"), "{out:?}");
    assert!(out.stdout.contains("gretchen asked donny and heard: hi, this is donny"), "{out:?}");
}

#[test]
fn service_discovery() {
    let out = Tree::start("service_discovery", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    let s = &out.stdout;
    assert!(s.contains("wait_for_actor(logger) -> logger#"), "{s}");
    assert_eq!(s.matches("registered: worker#").count(), 2, "{s}");
    assert!(s.contains("registered: root#"), "{s}");
    assert!(s.contains("find_actor(nobody) -> none"), "{s}");
    assert!(s.contains("wait_for_actor(latecomer) resolved -> latecomer#"), "{s}");
    assert!(s.contains("wait_for_actor(never) -> timed out after 300ms"), "{s}");
}

/// Workers killed at random (SIGKILL and exit(3)) come back; every job gets
/// its answer through retries of an idempotent call; the restarts log at INFO
/// only, so the run is clean, and no process is left.
#[test]
fn supervised_workers() {
    let out = Tree::start("supervised_workers", &[], &[]).finish(BOUND);
    out.assert_no_warnings();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("400 of 400 jobs answered correctly"), "{out:?}");
    let kills = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("chaos: SIGKILL") || l.starts_with("chaos: exit(3)"))
        .count();
    assert!(kills > 0, "{out:?}");
    assert!(out.stdout.contains(&format!("{kills} restarts in all")), "{out:?}");
}

/// Two host agents on loopback ports, an actor spawned through each (a call,
/// a stream), a crash on one that names its host; the agents are stopped
/// and nothing is left.
#[test]
fn spawn_across_hosts() {
    let out = Tree::start("spawn_across_hosts", &[], &[]).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    let s = &out.stdout;
    assert!(s.contains("agent for host alpha ready") && s.contains("agent for host beta ready"), "{s}");
    assert!(s.contains("counter runs on host alpha (pid "), "{s}");
    assert!(s.contains("squares from beta: [0, 1, 4, 9, 16, 25]"), "{s}");
    assert!(
        s.contains("as expected: actor `doomed#") && s.contains("on host `beta` crashed: exit status 3"),
        "{s}"
    );
    // The crash is logged (WARN) where it is supervised; nothing else is.
    let warnings = out.warnings();
    assert!(warnings.len() == 1 && warnings[0].contains("doomed#"), "{warnings:?}");
}
