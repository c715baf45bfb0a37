//! Chaos: break a live, loaded, three-level tree of 21 actors (the
//! `chaos_tree` fixture) in different ways; every time the failure must reach
//! the root naming what broke, the whole tree must go, and nothing may be left:
//! no process, no zombie, no arbiter entry.

mod common;

use std::time::{Duration, Instant, SystemTime};

use actor::arbiter::ArbiterClient;
use actor::transport::{Addr, HandshakeConfig, Uid};
use common::Tree;
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);

/// A small xorshift generator: the seed is printed so a failing round can be
/// replayed with CHAOS_SEED.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Arbiter {
    tree: Tree,
    addr: Addr,
}

impl Arbiter {
    fn start() -> Arbiter {
        let mut tree = Tree::start_program(&common::binary("arbiter"), &["--bind", "tcp://127.0.0.1:0"], &[]);
        let line = tree.wait_for_line("arbiter listening on", BOUND);
        let addr = line.rsplit(' ').next().and_then(|a| a.parse().ok()).expect("arbiter address");
        Arbiter { tree, addr }
    }

    fn names(&self) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let hs = HandshakeConfig {
                uid: Uid::new("probe"),
                timeout: Duration::from_secs(5),
                channel: Default::default(),
            };
            // The tree runs with the user's default secret (no ACTOR_TOKEN set).
            let token = actor::default_token().expect("the user's secret");
            let client = ArbiterClient::connect(&self.addr, &hs, Some(&token)).await.expect("connect");
            client.list().await.expect("list").into_iter().map(|e| e.uid.name).collect()
        })
    }

    /// Fails unless the registry empties within a few seconds.
    fn assert_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let names = self.names();
            if names.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "stale arbiter entries: {names:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self) {
        self.tree.signal(Signal::SIGTERM);
        let out = self.tree.finish(BOUND);
        assert!(out.status.success(), "{out:?}");
    }
}

fn start_tree(arbiter: &Arbiter, how: &str) -> (Tree, Vec<(String, i32)>) {
    let addr = arbiter.addr.to_string();
    let mut tree = Tree::start("chaos_tree", &[how], &[("ACTOR_ARBITER", addr.as_str())]);
    tree.wait_for_lines("BRANCH UP", 4, BOUND);
    let pids: Vec<(String, i32)> = tree
        .wait_for_lines("PID ", 20, BOUND)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_owned(), f[2].parse().expect("pid"))
        })
        .collect();
    (tree, pids)
}

#[test]
fn sigkill_of_a_random_actor_surfaces_at_the_root_and_leaves_nothing() {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
    });
    println!("CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let arbiter = Arbiter::start();
    for round in 0..3 {
        let (mut tree, pids) = start_tree(&arbiter, "round");
        assert_eq!(pids.len(), 20, "round {round}: 4 branches and 16 leaves");
        let (victim, pid) = pids[(rng.next() % pids.len() as u64) as usize].clone();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
        tree.wait_for_line("ROOT ERROR", BOUND);
        let out = tree.finish(BOUND);
        assert_eq!(out.status.code(), Some(1), "round {round}, victim {victim}: {out:?}");
        let err = &out.stderr;
        assert!(err.contains(&format!("`{victim}#")), "round {round}: the error must name {victim}: {err}");
        assert!(err.contains("killed by signal 9 (SIGKILL)"), "round {round}: {err}");
        if let Some(branch) = victim.strip_prefix("leaf").and_then(|l| l.split('_').next()) {
            assert!(
                err.contains(&format!("relayed via: `branch{branch}#")),
                "round {round}: relay path: {err}"
            );
        }
        arbiter.assert_empty();
    }
    arbiter.stop();
}

#[test]
fn a_channel_severed_under_a_child_fails_the_tree_cleanly() {
    let arbiter = Arbiter::start();
    let addr = arbiter.addr.to_string();
    for side in ["sever_child_side", "sever_parent_side"] {
        // Branch 0 severs the channel to its first leaf as soon as its leaves
        // stream under load, while the other branches are still coming up.
        let mut tree = Tree::start("chaos_tree", &[side], &[("ACTOR_ARBITER", addr.as_str())]);
        tree.wait_for_line("BRANCH UP 0", BOUND);
        tree.wait_for_line("ROOT ERROR", BOUND);
        let out = tree.finish(BOUND);
        assert_eq!(out.status.code(), Some(1), "{side}: {out:?}");
        assert!(out.stderr.contains("leaf0_0#") || out.stderr.contains("branch0#"), "{side}: {}", out.stderr);
        arbiter.assert_empty();
    }
    arbiter.stop();
}

#[test]
fn a_sigstopped_child_is_still_torn_down_by_escalation() {
    let mut tree = Tree::start("chaos_tree", &["sigstop"], &[("ACTOR_LOG", "warn")]);
    let stopped = tree.wait_for_line("STOPPED", BOUND);
    let pid: i32 = stopped.rsplit(' ').next().and_then(|p| p.parse().ok()).expect("pid");
    tree.wait_for_line("REAPED", BOUND);
    let out = tree.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.contains("sending SIGKILL"), "{}", out.stderr);
    assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "the stopped child {pid} still exists");
}
