//! The command line itself, without a tree: what `--help` offers and what
//! is refused before any arbiter is contacted. (The commands against a live
//! tree are tested in the workspace's tests/cli.rs.)

use std::process::{Command, Output};

/// Runs `actor ARGS` pointed at a port where no arbiter listens.
fn actor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actor"))
        .args(args)
        .env("ACTOR_ARBITER", "tcp://127.0.0.1:9")
        .output()
        .expect("run the actor command")
}

#[test]
fn help_lists_every_command() {
    let out = actor(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["ps", "tree", "call", "cancel", "hosts", "agent", "--json", "--arbiter"] {
        assert!(text.contains(command), "{command} missing from:\n{text}");
    }
}

#[test]
fn arguments_that_are_not_json_are_refused_before_the_tree_is_asked() {
    let out = actor(&["call", "worker", "app::f", "--args", "[1,"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--args") && text.contains("not JSON"), "{text}");
    assert!(!text.contains("arbiter"), "refused before joining the tree: {text}");
}

#[test]
fn a_missing_actor_name_is_a_usage_error() {
    let out = actor(&["cancel"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage exit code");
}

#[test]
fn an_agent_without_a_program_to_allow_is_a_usage_error() {
    let out = actor(&["agent", "--host", "h1"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage exit code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow"));
}

#[test]
fn an_agent_refuses_a_program_that_cannot_run_before_joining_the_tree() {
    let out = actor(&["agent", "--host", "h1", "--allow", "/nonexistent/program"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("host agent: cannot allow /nonexistent/program"), "{text}");
    assert!(!text.contains("arbiter"), "refused before joining the tree: {text}");
}
