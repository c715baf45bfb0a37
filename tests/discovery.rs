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
