//! The `actor` command against a live three-level tree
//! (tests/fixtures/cli.rs): `ps`, `tree`, `call` and `cancel`, each run as a
//! real process through the tree's arbiter.

mod common;

use std::time::{Duration, Instant};

use common::Tree;
use nix::sys::signal::Signal;
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(30);

/// What one run of the command gave.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `actor ARGS` against the arbiter at `arbiter` as a process tree of
/// its own, so the harness reaps it and a leftover process fails the test.
fn actor_cmd(arbiter: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut all_env = vec![("ACTOR_ARBITER", arbiter)];
    all_env.extend_from_slice(env);
    let done = Tree::start_program(&common::binary("actor"), args, &all_env).finish(BOUND);
    Ran { ok: done.status.success(), stdout: done.stdout, stderr: done.stderr }
}

/// The value after `prefix` on a line such as `PID cli_child 1234`.
fn after<'a>(line: &'a str, prefix: &str) -> &'a str {
    line.split_once(prefix).map(|(_, rest)| rest.trim()).expect("a tagged line")
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// The live three-level tree, its arbiter's address and each actor's pid.
struct Live {
    tree: Tree,
    arbiter: String,
    root: u64,
    child: u64,
    grandchild: u64,
}

impl Live {
    fn start() -> Live {
        Live::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Live {
        let mut tree = Tree::start("cli_tree", args, &[]);
        let child =
            after(&tree.wait_for_line("PID cli_child ", BOUND), "PID cli_child ").parse().expect("pid");
        let root = after(&tree.wait_for_line("PID root ", BOUND), "PID root ").parse().expect("pid");
        let arbiter = after(&tree.wait_for_line("ARBITER ", BOUND), "ARBITER ").to_owned();
        let line = tree.wait_for_line("PID cli_grandchild ", BOUND);
        let grandchild = after(&line, "PID cli_grandchild ").parse().expect("pid");
        Live { tree, arbiter, root, child, grandchild }
    }

    fn run(&self, args: &[&str]) -> Ran {
        actor_cmd(&self.arbiter, args, &[])
    }

    /// `ARGS --json`, parsed; fails the test if the command failed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let ran = self.run(&all);
        assert!(ran.ok, "`actor {}` failed: {}", all.join(" "), ran.stderr);
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", ran.stdout))
    }

    /// `ps --json` once it satisfies `done` (actors register in the
    /// background, and leave the registry once their channel has closed).
    fn ps_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + BOUND;
        loop {
            let ps = self.json(&["ps"]);
            let all = ps.as_array().expect("ps --json is an array").clone();
            if done(&all) {
                return all;
            }
            assert!(Instant::now() < deadline, "ps never showed {what}: {all:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn named<'a>(all: &'a [Value], name: &str) -> Option<&'a Value> {
    all.iter().find(|a| a["name"] == name)
}

#[test]
fn ps_tree_call_and_cancel_on_a_live_tree() {
    let live = Live::start();
    let names = ["cli_child", "cli_grandchild", "root"];
    let all = live.ps_until("all three actors", |all| names.iter().all(|n| named(all, n).is_some()));
    assert_eq!(all.len(), 3, "{all:?}");

    // ps: pids alive and as the actors printed them, parents right.
    let (root, child, grandchild) = (&all[2], &all[0], &all[1]);
    for (actor, pid) in [(root, live.root), (child, live.child), (grandchild, live.grandchild)] {
        assert_eq!(actor["pid"], pid, "{actor}");
        assert!(alive(pid), "{actor}");
        assert_eq!(actor["restarts"], 0, "{actor}");
        assert!(actor["uptime_ms"].is_u64() && actor["host"].is_string(), "{actor}");
    }
    assert_eq!(root["parent"], Value::Null);
    assert_eq!(child["parent"], root["uid"]);
    assert_eq!(grandchild["parent"], child["uid"]);
    assert_eq!(root["children"], serde_json::json!([child["uid"]]));
    assert_eq!(child["children"], serde_json::json!([grandchild["uid"]]));
    // The root's call to `grow` is open in the child for as long as the grandchild lives.
    assert!(child["calls_in_flight"].as_u64().is_some_and(|n| n >= 1), "{child}");

    let text = live.run(&["ps"]);
    assert!(text.ok, "{}", text.stderr);
    assert!(text.stdout.starts_with("NAME"), "{}", text.stdout);
    for n in names {
        assert!(text.stdout.contains(n), "{}", text.stdout);
    }

    // tree: root -> child -> grandchild, nested.
    let tree = live.json(&["tree"]);
    assert_eq!(tree.as_array().map(Vec::len), Some(1), "{tree}");
    assert_eq!(tree[0]["uid"], root["uid"]);
    assert_eq!(tree[0]["children"][0]["uid"], child["uid"], "{tree}");
    assert_eq!(tree[0]["children"][0]["children"][0]["uid"], grandchild["uid"], "{tree}");
    assert_eq!(tree[0]["children"][0]["children"][0]["children"], serde_json::json!([]), "{tree}");
    let drawn = live.run(&["tree"]);
    assert!(
        drawn.stdout.contains("└── cli_child#") && drawn.stdout.contains("    └── cli_grandchild#"),
        "{}",
        drawn.stdout
    );

    // call: JSON arguments in, the result as JSON out.
    let sum = live.run(&["call", "cli_child", "cli_tree::add", "--args", "[2, 40]"]);
    assert!(sum.ok, "{}", sum.stderr);
    assert_eq!(sum.stdout.trim(), "42");
    let by_uid = child["uid"].as_str().expect("a uid");
    let greeting = live.run(&["call", by_uid, "cli_tree::greet", "--args", "\"poe\""]);
    assert!(greeting.ok, "{}", greeting.stderr);
    let greeting: Value = serde_json::from_str(&greeting.stdout).expect("JSON");
    assert_eq!(greeting, serde_json::json!(["hello, poe", 3]), "a struct travels as its fields in order");
    let unknown = live.run(&["call", "root", "cli_tree::nope"]);
    assert!(!unknown.ok && unknown.stderr.contains("cli_tree::nope"), "{}", unknown.stderr);
    let nobody = live.run(&["call", "nobody", "cli_tree::add"]);
    assert!(!nobody.ok && nobody.stderr.contains("nobody"), "{}", nobody.stderr);

    // cancel: the grandchild goes; its parent stays, with no crash recorded.
    let cancelled = live.json(&["cancel", "cli_grandchild"]);
    assert_eq!(cancelled["cancelled"], grandchild["uid"]);
    let after_cancel = live.ps_until("the grandchild gone", |all| named(all, "cli_grandchild").is_none());
    let deadline = Instant::now() + BOUND;
    while alive(live.grandchild) {
        assert!(Instant::now() < deadline, "the grandchild's process outlived its cancel");
        std::thread::sleep(Duration::from_millis(20));
    }
    let child_now = named(&after_cancel, "cli_child").expect("the child lives on");
    assert_eq!(child_now["uid"], child["uid"]);
    assert_eq!(child_now["children"], serde_json::json!([]));
    assert_eq!(after_cancel.len(), 2, "{after_cancel:?}");

    live.tree.signal(Signal::SIGTERM);
    let done = live.tree.finish(BOUND);
    assert!(done.status.success(), "{done:?}");
    assert!(!done.stdout.contains("CHILD NURSERY FAILED"), "{}", done.stdout);
    done.assert_no_warnings();
}

#[test]
fn a_restarted_actor_shows_its_restarts_under_its_parent() {
    let live = Live::start_with(&["restarting"]);
    let all = live.ps_until("the grandchild", |all| named(all, "cli_grandchild").is_some());
    let first = named(&all, "cli_grandchild").expect("listed")["uid"].clone();
    let crashed = live.run(&["call", "cli_grandchild", "cli_tree::crash"]);
    assert!(!crashed.ok, "the call cannot answer: its actor exited");
    let all = live.ps_until("the restarted grandchild", |all| {
        named(all, "cli_grandchild").is_some_and(|g| g["uid"] != first && g["restarts"] == 1)
    });
    let (child, grandchild) =
        (named(&all, "cli_child").expect("child"), named(&all, "cli_grandchild").expect("gc"));
    assert_eq!(grandchild["parent"], child["uid"]);
    assert!(grandchild["pid"].as_u64().is_some_and(|p| p != live.grandchild && alive(p)), "{grandchild}");
    let drawn = live.run(&["tree"]);
    assert!(drawn.stdout.contains(", 1 restart)"), "{}", drawn.stdout);
    live.tree.signal(Signal::SIGTERM);
    assert!(live.tree.finish(BOUND).status.success());
}

/// `actor top` against a tree whose root calls the child in a loop: every
/// refresh shows the child serving calls at a rate above zero, and the
/// idle grandchild at zero; the text form is a table without escape codes
/// when stdout is not a terminal.
#[test]
fn top_shows_the_call_rate_of_a_busy_actor() {
    let live = Live::start_with(&["busy"]);
    let names = ["cli_child", "cli_grandchild", "root"];
    live.ps_until("all three actors", |all| names.iter().all(|n| named(all, n).is_some()));
    let ran = live.run(&["top", "--json", "--interval", "0.3", "--iterations", "2"]);
    assert!(ran.ok, "{}", ran.stderr);
    let docs: Vec<Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(docs.len(), 2, "{}", ran.stdout);
    for doc in &docs {
        assert_eq!(doc["interval_ms"], 300, "{doc}");
        let all = doc["actors"].as_array().expect("actors").clone();
        let child = named(&all, "cli_child").expect("the child");
        assert_eq!(child["pid"], live.child, "{child}");
        assert!(child["calls_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{child}");
        assert!(child["calls_served"].as_u64().is_some_and(|n| n > 1), "{child}");
        let grandchild = named(&all, "cli_grandchild").expect("the grandchild");
        assert_eq!(grandchild["calls_per_sec"].as_f64(), Some(0.0), "{grandchild}");
    }
    let text = live.run(&["top", "--interval", "0.2", "--iterations", "1"]);
    assert!(text.ok, "{}", text.stderr);
    assert!(text.stdout.contains("CALLS/S") && text.stdout.contains("cli_child"), "{}", text.stdout);
    assert!(!text.stdout.contains('\x1b'), "no escape codes into a pipe: {:?}", text.stdout);
    let bad = live.run(&["top", "--interval", "0"]);
    assert!(!bad.ok && bad.stderr.contains("interval"), "{}", bad.stderr);
    live.tree.signal(Signal::SIGTERM);
    let done = live.tree.finish(BOUND);
    assert!(done.status.success(), "{done:?}");
    done.assert_no_warnings();
}

#[test]
fn without_the_trees_secret_nothing_is_shown() {
    let live = Live::start();
    let stranger = actor_cmd(&live.arbiter, &["ps"], &[("ACTOR_TOKEN", "00112233445566778899aabbccddeeff")]);
    assert!(!stranger.ok, "{}", stranger.stdout);
    assert!(stranger.stdout.is_empty(), "{}", stranger.stdout);
    assert!(stranger.stderr.contains("refused"), "{}", stranger.stderr);
    live.tree.signal(Signal::SIGTERM);
    assert!(live.tree.finish(BOUND).status.success());
}

#[test]
fn with_no_arbiter_it_says_so_and_hosts_none() {
    // A port nothing listens on: bound, then released.
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let arbiter = format!("tcp://127.0.0.1:{port}");
    let ran = actor_cmd(&arbiter, &["ps"], &[]);
    assert!(!ran.ok);
    assert!(ran.stderr.contains("arbiter"), "{}", ran.stderr);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "no arbiter was left listening");
}
