//! The registry in etcd, against a real etcd (`/usr/bin/etcd`, Debian's
//! `etcd-server`) that each test starts on free loopback ports with a
//! temporary data directory, and stops: trees register, are found, listed
//! and waited for by name through it; a killed actor leaves by lease expiry;
//! a 3-member cluster in network namespaces loses a member and keeps
//! serving; an etcd that does not answer is a clear error.
//!
//! Without an `etcd` binary the tests say so and skip, except under CI
//! (`CI` set), where `.ci/run` installs it and its absence fails them.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Tree;
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);
const ETCD: &str = "etcd";

/// Whether etcd can run here; `false` (with the reason printed) to skip.
/// Asked up to three times: under a loaded suite one `etcd --version` has
/// been seen to fail once with etcd installed and working.
fn have_etcd() -> bool {
    let mut why = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
        match Command::new(ETCD).arg("--version").output() {
            Ok(out) if out.status.success() => return true,
            Ok(out) => {
                why = format!(
                    "`etcd --version` ended with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            }
            Err(e) => why = format!("cannot run `etcd`: {e}"),
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("no working `etcd` under CI ({why}): .ci/run installs etcd-server");
    }
    eprintln!("SKIPPED: no working `etcd` ({why}; apt-get install etcd-server)");
    false
}

fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free ports: each listener is held until all are bound, so
/// the kernel cannot hand out one port twice (it did, for a member's
/// client and peer ports, and etcd failed to bind the second).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    std::array::from_fn(|i| held[i].local_addr().expect("a bound port").port())
}

/// A fresh directory for one test's etcd data, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("actor-etcd-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One etcd member, its command line for `name` listening on `ip`.
fn member_args(name: &str, ip: &str, client: u16, peer: u16, cluster: &str, data: &Path) -> Vec<String> {
    let client_url = format!("http://{ip}:{client}");
    let peer_url = format!("http://{ip}:{peer}");
    [
        "--name",
        name,
        "--data-dir",
        &data.join(name).to_string_lossy(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        "new",
        "--logger",
        "zap",
        "--log-outputs",
        "stdout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A single-member etcd on free loopback ports.
struct Etcd {
    tree: Tree,
    url: String,
    _data: TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let data = TempDir::new("single");
        let [client, peer] = free_ports();
        let cluster = format!("m0=http://127.0.0.1:{peer}");
        let args = member_args("m0", "127.0.0.1", client, peer, &cluster, &data.0);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut tree = Tree::start_program(Path::new(ETCD), &args, &[]);
        tree.wait_for_line("serving client traffic", BOUND);
        Etcd { tree, url: format!("etcd://127.0.0.1:{client}"), _data: data }
    }

    /// Stops etcd and checks that nothing of it is left.
    fn stop(self) {
        self.tree.signal(Signal::SIGTERM);
        self.tree.finish(BOUND);
    }
}

/// The environment of a tree that keeps its registry at `url`, under a
/// prefix of its own test.
fn env(url: &str, prefix: &str, ttl: &str) -> Vec<(String, String)> {
    vec![
        ("ACTOR_ARBITER".into(), url.into()),
        ("ACTOR_ETCD_PREFIX".into(), prefix.into()),
        ("ACTOR_ETCD_LEASE_TTL".into(), ttl.into()),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn scenario(args: &[&str], env: &[(String, String)]) -> Tree {
    Tree::start("etcd_scenarios", args, &pairs(env))
}

/// Runs a short-lived scenario to the end; checks it succeeded cleanly.
fn run(args: &[&str], env: &[(String, String)]) -> String {
    let out = scenario(args, env).finish(BOUND);
    assert!(out.status.success(), "{args:?}: {out:?}");
    out.assert_no_warnings();
    out.stdout
}

/// Lists the registry until `done` holds of the listing, at most `within`.
fn list_until(env: &[(String, String)], within: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let listed = run(&["list"], env);
        if done(&listed) {
            return listed;
        }
        assert!(Instant::now() < deadline, "the registry did not settle within {within:?}: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn actors_register_are_found_listed_and_waited_for_through_etcd() {
    if !have_etcd() {
        return;
    }
    let etcd = Etcd::start();
    let env = env(&etcd.url, "/test-find/", "5");

    // A waiter first: it watches until the name appears.
    let mut waiter = scenario(&["wait_for", "calc"], &env);
    waiter.wait_for_line("waiting for calc", BOUND);
    assert_eq!(run(&["find", "calc"], &env), "no actor named calc");

    let mut server = scenario(&["serve", "calc", "helper"], &env);
    server.wait_for_line("calc serving", BOUND);
    let found = waiter.wait_for_line("found calc#", BOUND);
    assert!(found.contains(": pong from calc#"), "{found}");
    let out = waiter.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out.assert_no_warnings();

    let found = run(&["find", "calc"], &env);
    assert!(found.starts_with("found calc#") && found.contains("pong from calc#"), "{found}");
    // The child registers in the background: it shows up in a moment.
    let listed = list_until(&env, Duration::from_secs(10), |l| l.contains("registered: helper#"));
    assert!(listed.contains("registered: calc#") && listed.contains("at tcp://127.0.0.1:"), "{listed}");
    assert!(listed.contains("registered: lister#"), "the lister lists itself: {listed}");
    let found = run(&["find", "helper"], &env);
    assert!(found.contains("pong from helper#"), "{found}");

    // An orderly exit revokes the leases: the entries leave at once, not
    // a TTL later (bounded here well below it).
    server.signal(Signal::SIGTERM);
    let out = server.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out.assert_no_warnings();
    list_until(&env, Duration::from_secs(3), |l| !l.contains("calc#") && !l.contains("helper#"));

    // Another prefix is another registry.
    let other = crate::env(&etcd.url, "/test-other/", "5");
    let mut server = scenario(&["serve", "calc"], &env);
    server.wait_for_line("calc serving", BOUND);
    assert_eq!(run(&["find", "calc"], &other), "no actor named calc");
    server.signal(Signal::SIGTERM);
    server.finish(BOUND);
    etcd.stop();
}

#[test]
fn a_killed_actor_leaves_etcd_when_its_lease_expires() {
    if !have_etcd() {
        return;
    }
    let etcd = Etcd::start();
    let env = env(&etcd.url, "/test-kill/", "2");
    let mut server = scenario(&["serve", "doomed", "doomed_child"], &env);
    server.wait_for_line("doomed serving", BOUND);
    list_until(&env, Duration::from_secs(10), |l| l.contains("doomed#") && l.contains("doomed_child#"));
    // SIGKILL: nothing revokes the lease; only its expiry (2 s after the
    // last keep-alive) removes the entry. The bound is generous.
    server.signal(Signal::SIGKILL);
    server.finish(BOUND);
    list_until(&env, Duration::from_secs(20), |l| !l.contains("doomed#") && !l.contains("doomed_child#"));
    etcd.stop();
}

#[test]
fn an_etcd_that_does_not_answer_is_a_clear_error_at_start() {
    // Nothing listens on this port: no etcd binary is needed.
    let port = free_port();
    let url = format!("etcd://127.0.0.1:{port}");
    let started = Instant::now();
    let out = scenario(&["serve", "lonely"], &env(&url, "/test-none/", "5")).finish(BOUND);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!out.stdout.contains("serving"), "main must not run: {out:?}");
    assert!(out.stderr.contains(&format!("no etcd member at {url} answered")), "{out:?}");
    assert!(out.stderr.contains(&format!("127.0.0.1:{port}: Connection refused")), "{out:?}");
    assert!(out.stderr.contains("start etcd there"), "{out:?}");
    assert!(started.elapsed() < BOUND);
}

#[test]
fn a_bad_etcd_address_or_option_is_a_clear_error() {
    for (url, ttl, says) in [
        ("etcd://127.0.0.1", "5", "is not host:port"),
        ("etcd://127.0.0.1:2379", "0", "lease TTL must be a whole number of seconds"),
        ("etcd://127.0.0.1:2379", "soon", "ACTOR_ETCD_LEASE_TTL must be a whole number"),
        ("etcds://127.0.0.1:2379", "5", "set ACTOR_ETCD_CA"),
    ] {
        let out = scenario(&["serve", "x"], &env(url, "/t/", ttl)).finish(BOUND);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stderr.contains(says), "{url} {ttl}: {out:?}");
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Three etcd hosts and a client host, network namespaces joined by a
/// bridge in the client's: 10.203.0.1-3 are the members, 10.203.0.254 the
/// client. Deleted on drop, even when the test fails.
struct Hosts {
    client: String,
    members: [String; 3],
}

impl Hosts {
    fn create() -> Result<Hosts, String> {
        let id = std::process::id() % 100_000;
        let client = format!("etcC{id}");
        let members = [1, 2, 3].map(|i| format!("etc{i}m{id}"));
        let hosts = Hosts { client: client.clone(), members: members.clone() };
        ip(&["netns", "add", &client])?;
        ip(&["-n", &client, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &client, "addr", "add", "10.203.0.254/24", "dev", "br0"])?;
        ip(&["-n", &client, "link", "set", "br0", "up"])?;
        ip(&["-n", &client, "link", "set", "lo", "up"])?;
        for (i, m) in members.iter().enumerate() {
            let n = i + 1;
            let (inner, outer) = (format!("m{n}"), format!("to{n}"));
            ip(&["netns", "add", m])?;
            ip(&[
                "link", "add", &inner, "netns", m, "type", "veth", "peer", "name", &outer, "netns", &client,
            ])?;
            ip(&["-n", m, "addr", "add", &format!("10.203.0.{n}/24"), "dev", &inner])?;
            ip(&["-n", m, "link", "set", &inner, "up"])?;
            ip(&["-n", m, "link", "set", "lo", "up"])?;
            ip(&["-n", &client, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &client, "link", "set", &outer, "up"])?;
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in self.members.iter().chain([&self.client]) {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

fn on_host(ns: &str, program: &Path, args: &[&str], env: &[(String, String)]) -> Tree {
    let program = program.to_string_lossy().into_owned();
    let mut full = vec!["netns", "exec", ns, program.as_str()];
    full.extend_from_slice(args);
    Tree::start_program(Path::new("ip"), &full, &pairs(env))
}

fn run_on(ns: &str, args: &[&str], env: &[(String, String)]) -> String {
    let out = on_host(ns, &common::example("etcd_scenarios"), args, env).finish(BOUND);
    assert!(out.status.success(), "{args:?}: {out:?}");
    out.assert_no_warnings();
    out.stdout
}

#[test]
fn a_three_member_cluster_loses_a_member_and_the_registry_keeps_working() {
    if !have_etcd() {
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: creating network namespaces needs root");
        return;
    }
    let hosts = match Hosts::create() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("SKIPPED: this machine does not allow network namespaces here: {e}");
            return;
        }
    };
    let data = TempDir::new("cluster");
    let cluster = (1..=3).map(|n| format!("e{n}=http://10.203.0.{n}:2380")).collect::<Vec<_>>().join(",");
    let mut members: Vec<Option<Tree>> = hosts
        .members
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let ip = format!("10.203.0.{}", i + 1);
            let args = member_args(&format!("e{}", i + 1), &ip, 2379, 2380, &cluster, &data.0);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(on_host(ns, Path::new(ETCD), &args, &[]))
        })
        .collect();
    for m in members.iter_mut().flatten() {
        m.wait_for_line("serving client traffic", BOUND);
    }
    let url = "etcd://10.203.0.1:2379,10.203.0.2:2379,10.203.0.3:2379";
    let env = env(url, "/test-cluster/", "2");
    let client = hosts.client.clone();

    let mut first = on_host(&client, &common::example("etcd_scenarios"), &["serve", "first"], &env);
    first.wait_for_line("first serving", BOUND);
    assert!(run_on(&client, &["find", "first"], &env).contains("pong from first#"));

    // The first member listed goes away for good.
    let killed = members[0].take().expect("member 1");
    killed.signal(Signal::SIGKILL);
    killed.finish(BOUND);

    // New registrations, lookups, listings and waits still work...
    let mut waiter = on_host(&client, &common::example("etcd_scenarios"), &["wait_for", "second"], &env);
    waiter.wait_for_line("waiting for second", BOUND);
    let mut second = on_host(&client, &common::example("etcd_scenarios"), &["serve", "second"], &env);
    second.wait_for_line("second serving", BOUND);
    assert!(waiter.wait_for_line("found second#", BOUND).contains("pong from second#"));
    let out = waiter.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out.assert_no_warnings();
    assert!(run_on(&client, &["find", "first"], &env).contains("pong from first#"));
    // ...and the registration made before the loss outlives several TTLs:
    // its keep-alives moved to the members left.
    std::thread::sleep(Duration::from_secs(6));
    let listed = run_on(&client, &["list"], &env);
    assert!(listed.contains("registered: first#") && listed.contains("registered: second#"), "{listed}");

    for server in [first, second] {
        server.signal(Signal::SIGTERM);
        let out = server.finish(BOUND);
        assert!(out.status.success(), "{out:?}");
        out.assert_no_warnings();
    }
    for m in members.into_iter().flatten() {
        m.signal(Signal::SIGTERM);
        m.finish(BOUND);
    }
    drop(hosts);
}

#[test]
fn the_standalone_actor_example_serves_and_is_called_through_etcd() {
    if !have_etcd() {
        return;
    }
    let etcd = Etcd::start();
    let env = env(&etcd.url, "/test-example/", "5");
    let mut server = Tree::start("standalone_actor", &["serve"], &pairs(&env));
    let line = server.wait_for_line("calculator serving", BOUND);
    assert!(line.contains("registry in etcd at etcd://127.0.0.1:"), "{line}");
    let call = Tree::start("standalone_actor", &["call", "6", "7"], &pairs(&env)).finish(BOUND);
    assert!(call.status.success(), "{call:?}");
    assert!(call.stdout.contains("6 * 7 = 42 (computed by `calculator#"), "{call:?}");
    call.assert_no_warnings();
    server.signal(Signal::SIGTERM);
    let out = server.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    out.assert_no_warnings();
    etcd.stop();
}

#[test]
fn the_actor_cli_lists_a_tree_whose_registry_is_in_etcd() {
    if !have_etcd() {
        return;
    }
    let etcd = Etcd::start();
    let env = env(&etcd.url, "/test-cli/", "5");
    let mut server = scenario(&["serve", "calc", "helper"], &env);
    server.wait_for_line("calc serving", BOUND);
    list_until(&env, Duration::from_secs(10), |l| l.contains("registered: helper#"));
    let out = Tree::start_program(&common::binary("actor"), &["ps"], &pairs(&env)).finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("calc") && out.stdout.contains("helper"), "{out:?}");
    out.assert_no_warnings();
    server.signal(Signal::SIGTERM);
    assert!(server.finish(BOUND).status.success());
    etcd.stop();
}
