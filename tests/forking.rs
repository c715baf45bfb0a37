//! The fork server (tests/fixtures/forking.rs): a child forked from it
//! starts as an executed child does, and spawns go on when the server is
//! killed or stopped. Every tree is checked gone by `Tree::finish`.

mod common;

use std::time::Duration;

use common::Tree;

const BOUND: Duration = Duration::from_secs(60);

fn run(scenario: &str, env: &[(&str, &str)]) -> common::Finished {
    let out = finish(scenario, env);
    out.assert_no_warnings();
    out
}

fn finish(scenario: &str, env: &[(&str, &str)]) -> common::Finished {
    let out = Tree::start("forking_scenarios", &[scenario], env).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out
}

fn facts(out: &common::Finished, prefix: &str) -> serde_json::Value {
    let line =
        out.stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix}: {out:?}"));
    serde_json::from_str(&line[prefix.len()..]).expect("facts as JSON")
}

/// The first child is executed (the server starts after it); the next ones
/// are forked from one image, yet each ran `main` from its start in its own
/// environment: the spawn's variables, the parent's environment and working
/// directory at the time of the spawn, only the executed child's open files
/// (none of the server's), a process group of its own, and the parent as
/// its parent.
#[test]
fn a_forked_child_starts_as_an_executed_one_does() {
    let out = run("facts", &[]);
    let root = out.stdout.lines().find_map(|l| l.strip_prefix("ROOT ")).expect("ROOT line");
    let (root_pid, dir) = root.split_once(' ').expect("pid and dir");
    let first = facts(&out, "FIRST ");
    let later: Vec<serde_json::Value> =
        ["second", "third", "fourth"].iter().map(|n| facts(&out, &format!("CHILD {n} "))).collect();
    assert_eq!(first["before_run"], "first");
    assert_eq!(first["set_after"], serde_json::Value::Null);
    for (child, name) in later.iter().zip(["second", "third", "fourth"]) {
        assert_eq!(child["image"], later[0]["image"], "forked from one image: {out:?}");
        assert_ne!(child["image"], first["image"], "{out:?}");
        assert_eq!(child["before_run"], name, "main ran in the child, with its spawn spec");
        assert_eq!(child["given"], format!("for {name}"));
        assert_eq!(child["set_after"], "yes", "the parent's environment at the spawn");
        assert_eq!(child["cwd"], dir, "the parent's directory at the spawn");
        assert_eq!(child["files"], first["files"], "the executed child's files, no others");
        assert_eq!(child["seqpacket"], 0, "the server's socket stays out: {out:?}");
        assert_eq!(child["leads_group"], true);
        assert_eq!(child["ppid"].to_string(), root_pid, "the parent's own child");
        assert_eq!(child["libc_tid_right"], true, "the C library knows its thread id: {out:?}");
    }
    assert_eq!(first["libc_tid_right"], true);
}

/// `IMAGE name image open-files-limit big-bytes` lines, by name: the
/// fields after the name.
fn images(out: &common::Finished) -> std::collections::HashMap<String, Vec<String>> {
    out.stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("IMAGE ")?.split_whitespace().map(str::to_owned);
            Some((w.next()?, w.collect()))
        })
        .collect()
}

/// A child that sets a variable only `exec` applies (`MALLOC_*`, `LD_*`,
/// `GLIBC_TUNABLES`) is executed; the server goes on forking the others.
#[test]
fn a_child_with_loader_variables_of_its_own_is_executed() {
    let out = run("loader", &[]);
    let i = images(&out);
    assert_eq!(i.len(), 4, "{out:?}");
    assert_eq!(i["b"][0], i["d"][0], "b and d forked from one server: {out:?}");
    assert_ne!(i["c"][0], i["b"][0], "c executed: {out:?}");
}

/// A parent whose process state changed after its server started (here its
/// limit on open files) executes the next child with the new state, then
/// forks from a new server that has it.
#[test]
fn a_changed_parent_gets_a_new_fork_server() {
    let out = run("stale", &[]);
    let i = images(&out);
    assert_eq!(i.len(), 5, "{out:?}");
    assert_ne!(i["c"][0], i["b"][0], "c executed: {out:?}");
    assert_eq!(i["d"][0], i["e"][0], "d and e forked from the new server: {out:?}");
    assert_ne!(i["d"][0], i["b"][0], "{out:?}");
    let lowered = out.stdout.lines().find_map(|l| l.strip_prefix("LOWERED ")).expect("lowered");
    assert_ne!(i["b"][1], lowered, "{out:?}");
    for name in ["c", "d", "e"] {
        assert_eq!(i[name][1], lowered, "{name} has the parent's new limit: {out:?}");
    }
}

/// With ACTOR_NO_FORK_SERVER=1 every child is executed: no two share an image.
#[test]
fn the_fork_server_can_be_turned_off() {
    let out = run("images", &[("ACTOR_NO_FORK_SERVER", "1")]);
    let i = images(&out);
    assert_eq!(i.len(), 4, "{out:?}");
    let mut distinct: Vec<&str> = i.values().map(|f| f[0].as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{out:?}");
}

/// An environment just under the largest request is forked; one well over
/// it is executed; each child gets every byte.
#[test]
fn a_child_with_an_environment_over_the_request_limit_is_executed() {
    let out = run("big_env", &[]);
    let i = images(&out);
    assert_eq!(i.len(), 4, "{out:?}");
    assert_eq!(i["b"][0], i["d"][0], "b forked like d: {out:?}");
    assert_ne!(i["c"][0], i["b"][0], "c executed: {out:?}");
    assert_eq!(i["b"][2], (100 * 1024).to_string());
    assert_eq!(i["c"][2], (140 * 1024).to_string());
}

/// A fork server killed between spawns: the spawn it was asked for may fail
/// with a clear error (it may have read the request before it died); every
/// later one is executed.
#[test]
fn spawns_go_on_when_the_fork_server_is_killed() {
    let out = run("killed", &[]);
    assert!(out.stdout.contains("BEFORE b "), "{out:?}");
    let c = out.stdout.lines().find(|l| l.contains(" c ")).expect("a line for c");
    assert!(c.starts_with("AFTER c ") || c.contains("the fork server"), "{out:?}");
    let d = out.stdout.lines().find_map(|l| l.strip_prefix("AFTER d ")).expect("d spawned");
    let b = out.stdout.lines().find_map(|l| l.strip_prefix("BEFORE b ")).expect("b spawned");
    assert_ne!(d, b, "d was executed, not forked: {out:?}");
}

/// A stopped fork server fails the spawn asked of it within the bound, with
/// a clear error; it is then killed, and later spawns are executed. (The
/// parent's thread waits for the answer meanwhile, so its other tasks may
/// log that they were held up: not asserted clean.)
#[test]
fn a_stopped_fork_server_fails_one_spawn_within_its_bound() {
    let out = finish("stopped", &[]);
    let c = out.stdout.lines().find(|l| l.starts_with("FAILED c ")).expect("c failed");
    assert!(c.contains("the fork server did not answer"), "{c}");
    let ms: u64 = c.split_whitespace().nth(3).and_then(|m| m.parse().ok()).expect("milliseconds");
    assert!(ms < 30_000, "{c}");
    assert!(out.stdout.contains("AFTER d "), "{out:?}");
}
