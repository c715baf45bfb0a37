//! Discovery across separately started programs: an arbiter daemon, a
//! standalone actor, and a caller, as real processes.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actor::arbiter::ArbiterClient;
use actor::transport::{Addr, HandshakeConfig, Uid};
use common::Tree;
use nix::sys::signal::Signal;

const BOUND: Duration = Duration::from_secs(60);

fn registered_names(arbiter: &Addr) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let hs = HandshakeConfig {
            uid: Uid::new("test"),
            timeout: Duration::from_secs(5),
            channel: Default::default(),
        };
        // Trees here run with the user's default secret (no ACTOR_TOKEN set).
        let token = actor::default_token().expect("the user's secret");
        let client =
            ArbiterClient::connect(arbiter, &hs, Some(&token)).await.expect("connect to the arbiter");
        client.list().await.expect("list").into_iter().map(|e| e.uid.name).collect()
    })
}

#[test]
fn a_standalone_actor_joins_an_arbiter_is_called_and_leaves_when_killed() {
    let mut arbiter = Tree::start_program(&common::binary("arbiter"), &["--bind", "tcp://127.0.0.1:0"], &[]);
    let line = arbiter.wait_for_line("arbiter listening on", BOUND);
    let addr: Addr = line.rsplit(' ').next().and_then(|a| a.parse().ok()).expect("arbiter address");
    let addr_s = addr.to_string();

    let env = [("ACTOR_ARBITER", addr_s.as_str())];
    let mut server = Tree::start("standalone_actor", &["serve"], &env);
    server.wait_for_line("calculator serving", BOUND);
    assert!(registered_names(&addr).contains(&"calculator".to_string()));

    let call = Tree::start("standalone_actor", &["call", "6", "7"], &env).finish(BOUND);
    assert!(call.status.success(), "{call:?}");
    assert!(call.stdout.contains("6 * 7 = 42 (computed by `calculator#"), "{call:?}");

    server.signal(Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while registered_names(&addr).contains(&"calculator".to_string()) {
        assert!(Instant::now() < deadline, "the killed actor is still registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.finish(BOUND);

    arbiter.signal(Signal::SIGTERM);
    let out = arbiter.finish(BOUND);
    assert!(out.status.success(), "the arbiter exits 0 on SIGTERM: {out:?}");
}

#[test]
fn a_standalone_actor_stopped_by_sigterm_exits_cleanly_and_unregisters() {
    let mut arbiter = Tree::start_program(&common::binary("arbiter"), &["--bind", "tcp://127.0.0.1:0"], &[]);
    let line = arbiter.wait_for_line("arbiter listening on", BOUND);
    let addr: Addr = line.rsplit(' ').next().and_then(|a| a.parse().ok()).expect("arbiter address");
    let addr_s = addr.to_string();
    let mut server = Tree::start("standalone_actor", &["serve"], &[("ACTOR_ARBITER", addr_s.as_str())]);
    server.wait_for_line("calculator serving", BOUND);
    server.signal(Signal::SIGTERM);
    let out = server.finish(BOUND);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while registered_names(&addr).contains(&"calculator".to_string()) {
        assert!(Instant::now() < deadline, "the stopped actor is still registered");
        std::thread::sleep(Duration::from_millis(20));
    }
    arbiter.signal(Signal::SIGTERM);
    arbiter.finish(BOUND);
}

#[test]
fn a_port_held_by_something_else_is_reported_clearly() {
    let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    let answer = std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut s, _)) = squatter.accept() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let arbiter = format!("tcp://127.0.0.1:{port}");
    let out = Tree::start("actor_spawning_and_causality", &[], &[("ACTOR_ARBITER", arbiter.as_str())])
        .finish(BOUND);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("not a working arbiter"), "{out:?}");
    assert!(out.stderr.contains(&arbiter), "{out:?}");
    answer.join().expect("squatter thread");
}

#[test]
fn a_root_refuses_to_host_an_embedded_arbiter_beyond_this_host_in_plaintext() {
    // A free port: nothing answers there, so the root would host the arbiter.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let arbiter = format!("tcp://0.0.0.0:{port}");
    let out = Tree::start("actor_spawning_and_causality", &[], &[("ACTOR_ARBITER", arbiter.as_str())])
        .finish(BOUND);
    assert!(!out.status.success(), "it must refuse to host an arbiter on 0.0.0.0 in plaintext: {out:?}");
    assert!(out.stderr.contains("configuration"), "{out:?}");
    assert!(out.stderr.contains(&arbiter) && out.stderr.contains("ACTOR_INSECURE=1"), "{out:?}");
    assert!(!out.stdout.contains("the nursery is closed"), "main must not run: {out:?}");

    // The root's own listener follows the same rule, in the same words.
    let out =
        Tree::start("actor_spawning_and_causality", &[], &[("ACTOR_BIND", "tcp://0.0.0.0:0")]).finish(BOUND);
    assert!(!out.status.success(), "it must refuse to listen on 0.0.0.0 in plaintext: {out:?}");
    assert!(out.stderr.contains("refusing to listen on tcp://0.0.0.0:0 without TLS"), "{out:?}");
    assert!(out.stderr.contains("ACTOR_INSECURE=1"), "{out:?}");
}

/// A fake arbiter on a loopback port: it completes the handshake (proving
/// the per-user secret, as a real default arbiter does), then reads and
/// never answers. Runs until the test process ends.
fn silent_arbiter() -> Addr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener =
                actor::transport::Listener::bind(&Addr::loopback(0)).await.expect("bind a loopback port");
            tx.send(listener.local_addr().clone()).expect("send the address");
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let hs = HandshakeConfig {
                        uid: Uid::new("arbiter"),
                        timeout: Duration::from_secs(5),
                        channel: Default::default(),
                    };
                    let secret = actor::default_token().expect("the per-user secret");
                    let accepted =
                        actor::transport::accept(stream, &hs, |_| actor::transport::Auth::Require(secret))
                            .await;
                    if let Ok((mut ch, _)) = accepted {
                        while let Ok(Some(_)) = ch.recv().await {}
                    }
                });
            }
        });
    });
    rx.recv_timeout(BOUND).expect("the fake arbiter's address")
}

#[test]
fn a_root_whose_arbiter_never_answers_fails_instead_of_hanging() {
    let arbiter = silent_arbiter().to_string();
    // Far below BOUND: the registration gives up after the client's 5 s timeout.
    let out = Tree::start("actor_spawning_and_causality", &[], &[("ACTOR_ARBITER", arbiter.as_str())])
        .finish(Duration::from_secs(30));
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("did not answer `arbiter::register`"), "{out:?}");
    assert!(!out.stdout.contains("the nursery is closed"), "main must not run: {out:?}");
}

/// The uid of the arbiter answering at `arbiter` and the names registered
/// there, or `None` if no arbiter answers (yet): for polling across the
/// moment an arbiter is replaced.
fn registry_at(arbiter: &Addr) -> Option<(Uid, Vec<String>)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let hs = HandshakeConfig {
            uid: Uid::new("test"),
            timeout: Duration::from_secs(5),
            channel: Default::default(),
        };
        let token = actor::default_token().expect("the user's secret");
        let client = ArbiterClient::connect(arbiter, &hs, Some(&token)).await.ok()?;
        let names = client.list().await.ok()?.into_iter().map(|e| e.uid.name).collect();
        Some((client.arbiter_uid().clone(), names))
    })
}

/// The names registered at `arbiter`; none if no arbiter answers there.
fn names_if_any(arbiter: &Addr) -> Vec<String> {
    registry_at(arbiter).map(|(_, names)| names).unwrap_or_default()
}

/// Waits (at most `within` from `since`) until an arbiter other than
/// `former` answers at `arbiter` with every one of `names` registered;
/// returns that arbiter's uid and how long after `since` that was.
fn wait_reregistered(
    arbiter: &Addr,
    former: &Uid,
    names: &[&str],
    since: Instant,
    within: Duration,
) -> (Uid, Duration) {
    loop {
        let seen = registry_at(arbiter);
        if let Some((uid, listed)) = &seen {
            if uid != former && names.iter().all(|n| listed.iter().any(|l| l == n)) {
                return (uid.clone(), since.elapsed());
            }
        }
        assert!(
            since.elapsed() < within,
            "{names:?} not registered again at {arbiter} within {within:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (at most `within`) until every one of `names` is registered at
/// `arbiter`.
fn wait_registered(arbiter: &Addr, names: &[&str], within: Duration) {
    let start = Instant::now();
    loop {
        let listed = names_if_any(arbiter);
        if names.iter().all(|n| listed.iter().any(|l| l == n)) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "{names:?} not registered at {arbiter} within {within:?}: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh directory for a test's Unix sockets, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("actor-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    fn socket(&self, name: &str) -> Addr {
        Addr::Unix(self.0.join(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The bound for names to come back after their arbiter is lost: the issue's
/// target is 2 s; the bound leaves room for a loaded machine, and the
/// measured time is printed.
const REREGISTER_BOUND: Duration = Duration::from_secs(10);

#[test]
fn when_the_program_hosting_the_arbiter_is_killed_another_takes_it_over() {
    let dir = TempDir::new("takeover");
    let addr = dir.socket("arbiter.sock");
    let addr_s = addr.to_string();
    let env = [("ACTOR_ARBITER", addr_s.as_str()), ("ACTOR_LOG", "info")];

    // The first root finds nothing there and hosts the arbiter.
    let mut host = Tree::start("discovery_scenarios", &["serve", "alpha"], &env);
    host.wait_for_line("alpha serving", BOUND);
    // A child's registration must come back too, though it never hosts.
    let mut beta = Tree::start("discovery_scenarios", &["serve", "beta", "beta-child"], &env);
    beta.wait_for_line("beta serving", BOUND);
    let mut gamma = Tree::start("discovery_scenarios", &["serve", "gamma"], &env);
    gamma.wait_for_line("gamma serving", BOUND);
    wait_registered(&addr, &["alpha", "beta", "beta-child", "gamma"], BOUND);
    let (first, _) = registry_at(&addr).expect("the embedded arbiter answers");
    assert!(first.id.starts_with(&format!("embedded-{}-", host.pid())), "alpha hosts it: {first}");

    host.signal(Signal::SIGKILL);
    let killed = Instant::now();
    let (second, took) =
        wait_reregistered(&addr, &first, &["beta", "beta-child", "gamma"], killed, REREGISTER_BOUND);
    eprintln!("beta, its child and gamma were registered again {took:?} after the arbiter's host was killed");
    let hosted_by = |pid: u32| second.id.starts_with(&format!("embedded-{pid}-"));
    assert!(hosted_by(beta.pid()) || hosted_by(gamma.pid()), "a survivor hosts it: {second}");
    let beta_hosts = hosted_by(beta.pid());
    let out = host.finish(BOUND);
    assert!(out.stderr.contains("this process hosts the arbiter"), "{out:?}");
    assert!(!names_if_any(&addr).contains(&"alpha".to_string()), "the killed host is still registered");

    beta.signal(Signal::SIGTERM);
    gamma.signal(Signal::SIGTERM);
    let (beta, gamma) = (beta.finish(BOUND), gamma.finish(BOUND));
    assert!(beta.status.success() && gamma.status.success(), "{beta:?} {gamma:?}");
    let took_over = |f: &common::Finished| f.stderr.contains("took over hosting the arbiter");
    assert!(took_over(&beta) == beta_hosts, "the new host logs it, the other not: {beta:?}");
    assert!(took_over(&gamma) != beta_hosts, "the new host logs it, the other not: {gamma:?}");
}

#[test]
fn a_standalone_actor_and_a_pending_wait_survive_a_restart_of_the_arbiter_daemon() {
    let dir = TempDir::new("restart");
    let addr = dir.socket("arbiter.sock");
    let addr_s = addr.to_string();
    let daemon = || {
        let mut d = Tree::start_program(&common::binary("arbiter"), &["--bind", addr_s.as_str()], &[]);
        d.wait_for_line("arbiter listening on", BOUND);
        d
    };
    let env = [("ACTOR_ARBITER", addr_s.as_str()), ("ACTOR_LOG", "info")];

    let first = daemon();
    let mut server = Tree::start("standalone_actor", &["serve"], &env);
    server.wait_for_line("calculator serving", BOUND);
    let mut waiter = Tree::start("discovery_scenarios", &["wait_for", "latecomer"], &env);
    waiter.wait_for_line("waiter ready", BOUND);

    wait_registered(&addr, &["calculator", "waiter"], BOUND);
    let (former, _) = registry_at(&addr).expect("the first daemon answers");
    first.signal(Signal::SIGKILL);
    first.finish(BOUND);
    // With no arbiter at all, the waiter asks for a name nobody has yet.
    waiter.signal(Signal::SIGUSR1);
    waiter.wait_for_line("waiting for latecomer", BOUND);

    let restarted = Instant::now();
    let second = daemon();
    let (_, took) = wait_reregistered(&addr, &former, &["calculator", "waiter"], restarted, REREGISTER_BOUND);
    eprintln!("the calculator was registered again {took:?} after the daemon was restarted");
    let call = Tree::start("standalone_actor", &["call", "6", "7"], &env).finish(BOUND);
    assert!(call.stdout.contains("6 * 7 = 42"), "found and called on the new daemon: {call:?}");

    let mut latecomer = Tree::start("discovery_scenarios", &["serve", "latecomer"], &env);
    latecomer.wait_for_line("latecomer serving", BOUND);
    waiter.wait_for_line("found latecomer#", BOUND);
    let waited = waiter.finish(BOUND);
    assert!(waited.status.success(), "{waited:?}");

    for tree in [&server, &latecomer, &second] {
        tree.signal(Signal::SIGTERM);
    }
    let server = server.finish(BOUND);
    assert!(server.status.success(), "{server:?}");
    assert!(server.stderr.contains("registered again with the arbiter"), "{server:?}");
    latecomer.finish(BOUND);
    second.finish(BOUND);
}

#[test]
fn a_remote_arbiter_that_does_not_answer_is_reported_as_such() {
    // The root runs in a network namespace of its own with only loopback up:
    // the remote address (TEST-NET-1, never this host's) is unreachable
    // there at once, and no packet leaves this machine.
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root to create a network namespace");
        return;
    }
    let arbiter = "tcp://192.0.2.1:1616";
    let program = common::example("actor_spawning_and_causality");
    let script = format!("ip link set lo up && exec {}", program.display());
    let out = Tree::start_program(
        std::path::Path::new("/usr/bin/unshare"),
        &["--net", "--", "sh", "-c", &script],
        &[("ACTOR_ARBITER", arbiter)],
    )
    .finish(Duration::from_secs(30));
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains(&format!("no arbiter answers at {arbiter}")), "{out:?}");
    assert!(!out.stdout.contains("the nursery is closed"), "main must not run: {out:?}");
}

#[test]
fn trees_with_private_arbiters_do_not_share_one() {
    let env = [("ACTOR_ARBITER", "private")];
    let mut one = Tree::start("discovery_scenarios", &["serve", "one"], &env);
    let mut two = Tree::start("discovery_scenarios", &["serve", "two"], &env);
    let arbiter = |line: String| -> Addr {
        line.rsplit(' ').next().and_then(|a| a.parse().ok()).expect("an arbiter address")
    };
    let a1 = arbiter(one.wait_for_line("one serving; arbiter at", BOUND));
    let a2 = arbiter(two.wait_for_line("two serving; arbiter at", BOUND));
    assert_ne!(a1, a2, "each tree hosts its own arbiter");
    assert!(a1.is_local() && a2.is_local(), "{a1} {a2}");
    wait_registered(&a1, &["one"], BOUND);
    assert!(!names_if_any(&a1).contains(&"two".to_string()), "the other tree's name leaked");
    for tree in [&one, &two] {
        tree.signal(Signal::SIGTERM);
    }
    assert!(one.finish(BOUND).status.success());
    assert!(two.finish(BOUND).status.success());
}
