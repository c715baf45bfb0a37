//! Integration tests of the arbiter over real loopback sockets.

use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use actor_arbiter::{
    ArbiterClient, ArbiterConfig, ArbiterHandle, ClientError, Entry, FIND, LIST, REGISTER, WAIT_FOR, probe,
    spawn_embedded,
};
use actor_transport::{
    Addr, CallKind, Channel, ChannelConfig, ErrorKind, HandshakeConfig, HandshakeError, Listener, Msg,
    Secret, Uid, connect,
};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Upper bound for every wait in these tests.
const LIMIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(LIMIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

/// Polls `cond` until it holds, failing the test after [`LIMIT`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn hs(name: &str) -> HandshakeConfig {
    hs_uid(Uid::new(name))
}

fn hs_uid(uid: Uid) -> HandshakeConfig {
    HandshakeConfig { uid, timeout: Duration::from_secs(2), channel: ChannelConfig::default() }
}

async fn start(token: Option<Secret>) -> ArbiterHandle {
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind loopback port 0");
    let config = ArbiterConfig {
        token,
        handshake_timeout: Duration::from_secs(2),
        ..ArbiterConfig::new(Uid::new("arbiter"))
    };
    spawn_embedded(listener, config).await
}

async fn client(arbiter: &ArbiterHandle, name: &str) -> ArbiterClient {
    within("connect", ArbiterClient::connect(arbiter.local_addr(), &hs(name), None)).await.expect("connect")
}

/// A handshaken channel speaking the raw protocol to the arbiter.
async fn raw(arbiter: &ArbiterHandle, name: &str) -> Channel {
    within("raw connect", connect(arbiter.local_addr(), &hs(name), None)).await.expect("raw connect").0
}

fn start_msg(cid: u64, func: &str, args: Vec<u8>) -> Msg {
    Msg::Start {
        cid,
        func: func.into(),
        kind: CallKind::Single,
        args: Bytes::from(args),
        window: 0,
        timeout_ms: None,
        key: None,
        trace: None,
    }
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec(v).expect("encode")
}

async fn recv(ch: &mut Channel) -> Msg {
    within("recv", ch.recv()).await.expect("recv ok").expect("a message, not the end")
}

fn fake_addr(port: u16) -> Addr {
    Addr::Tcp { host: "127.0.0.1".into(), port }
}

#[tokio::test]
async fn register_find_list_unregister() {
    let arbiter = start(None).await;
    let a = client(&arbiter, "alpha").await;
    let b = client(&arbiter, "beta").await;
    assert_eq!(a.arbiter_uid(), arbiter.uid());

    within("register a", a.register(&fake_addr(1001))).await.unwrap();
    within("register b", b.register(&fake_addr(1002))).await.unwrap();

    let found = within("find", a.find("beta")).await.unwrap();
    assert_eq!(found, vec![Entry { uid: b.uid().clone(), addr: fake_addr(1002) }]);
    assert!(within("find none", a.find("gamma")).await.unwrap().is_empty());

    let all = within("list", b.list()).await.unwrap();
    let names: Vec<&str> = all.iter().map(|e| e.uid.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(all[0].addr, fake_addr(1001));

    // Registering again replaces the address.
    within("re-register", a.register(&fake_addr(1003))).await.unwrap();
    assert_eq!(within("find", b.find("alpha")).await.unwrap()[0].addr, fake_addr(1003));

    within("unregister", a.unregister()).await.unwrap();
    within("unregister twice", a.unregister()).await.unwrap();
    assert!(within("find", b.find("alpha")).await.unwrap().is_empty());
    assert_eq!(arbiter.registry().len(), 1);
    within("shutdown", arbiter.shutdown()).await.unwrap();
}

#[tokio::test]
async fn two_actors_share_a_name() {
    let arbiter = start(None).await;
    let w1 = client(&arbiter, "worker").await;
    let w2 = client(&arbiter, "worker").await;
    within("register 1", w1.register(&fake_addr(2001))).await.unwrap();
    within("register 2", w2.register(&fake_addr(2002))).await.unwrap();
    let mut expected = vec![
        Entry { uid: w1.uid().clone(), addr: fake_addr(2001) },
        Entry { uid: w2.uid().clone(), addr: fake_addr(2002) },
    ];
    expected.sort_by(|x, y| x.uid.cmp(&y.uid));
    assert_eq!(within("find", w1.find("worker")).await.unwrap(), expected);
    assert_eq!(within("list", w2.list()).await.unwrap(), expected);
}

#[tokio::test]
async fn an_actor_registers_only_itself() {
    let arbiter = start(None).await;
    let imposter = client(&arbiter, "imposter").await;
    // Whatever it registers lands under its own authenticated uid.
    within("register", imposter.register(&fake_addr(3001))).await.unwrap();
    let all = within("list", imposter.list()).await.unwrap();
    assert_eq!(all, vec![Entry { uid: imposter.uid().clone(), addr: fake_addr(3001) }]);

    // A nameless uid is refused with an application error.
    let nameless = Uid { name: String::new(), id: "0".into() };
    let c = within("connect", ArbiterClient::connect(arbiter.local_addr(), &hs_uid(nameless), None))
        .await
        .unwrap();
    match within("register nameless", c.register(&fake_addr(3002))).await {
        Err(ClientError::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::Application);
            assert_eq!(&e.src, arbiter.uid());
            assert!(e.message.contains("empty name"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn entries_leave_with_their_connection() {
    let arbiter = start(None).await;
    let observer = client(&arbiter, "observer").await;
    let gone = client(&arbiter, "ephemeral").await;
    let stays = client(&arbiter, "ephemeral").await;
    within("register", gone.register(&fake_addr(4001))).await.unwrap();
    within("register", stays.register(&fake_addr(4002))).await.unwrap();
    assert_eq!(within("find", observer.find("ephemeral")).await.unwrap().len(), 2);

    drop(gone);
    eventually("the dropped client's entry leaves", || arbiter.registry().find("ephemeral").len() == 1).await;
    let left = within("find", observer.find("ephemeral")).await.unwrap();
    assert_eq!(left, vec![Entry { uid: stays.uid().clone(), addr: fake_addr(4002) }]);

    // A raw connection dropped without any goodbye also takes its entry along.
    let mut ch = raw(&arbiter, "abrupt").await;
    ch.send(&start_msg(1, REGISTER, enc(&(fake_addr(4003),)))).await.unwrap();
    assert!(matches!(recv(&mut ch).await, Msg::Return { cid: 1, .. }));
    assert_eq!(arbiter.registry().find("abrupt").len(), 1);
    drop(ch);
    eventually("the raw client's entry leaves", || arbiter.registry().find("abrupt").is_empty()).await;
}

#[tokio::test]
async fn wait_for_resolves_when_the_name_appears() {
    let arbiter = start(None).await;
    let waiter = Arc::new(client(&arbiter, "waiter").await);
    let task = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.wait_for("late").await }
    });
    eventually("the waiter is registered", || arbiter.registry().waiter_count() == 1).await;
    assert!(!task.is_finished());

    let other = client(&arbiter, "unrelated").await;
    within("register other", other.register(&fake_addr(5000))).await.unwrap();
    let late = client(&arbiter, "late").await;
    within("register late", late.register(&fake_addr(5001))).await.unwrap();

    let found = within("wait_for", task).await.unwrap().unwrap();
    assert_eq!(found, vec![Entry { uid: late.uid().clone(), addr: fake_addr(5001) }]);
    assert_eq!(arbiter.registry().waiter_count(), 0);

    // An existing name resolves at once.
    let again = within("wait_for existing", waiter.wait_for("late")).await.unwrap();
    assert_eq!(again.len(), 1);
}

#[tokio::test]
async fn dropping_wait_for_cancels_it() {
    let arbiter = start(None).await;
    let c = client(&arbiter, "impatient").await;
    let res = tokio::time::timeout(Duration::from_millis(100), c.wait_for("never")).await;
    assert!(res.is_err(), "nobody registers `never`");
    eventually("the cancelled waiter is gone", || arbiter.registry().waiter_count() == 0).await;
    // Many abandoned waits leave nothing either, and the client stays usable.
    for _ in 0..20 {
        let _ = tokio::time::timeout(Duration::from_millis(5), c.wait_for("never")).await;
    }
    eventually("all cancelled waiters are gone", || arbiter.registry().waiter_count() == 0).await;
    assert!(within("list", c.list()).await.unwrap().is_empty());
}

#[tokio::test]
async fn cancel_is_acknowledged_and_foreign_cancels_are_ignored() {
    let arbiter = start(None).await;
    let mut ch = raw(&arbiter, "raw").await;
    let me = Uid::new("raw");
    ch.send(&start_msg(1, WAIT_FOR, enc(&("nobody",)))).await.unwrap();
    eventually("the waiter is registered", || arbiter.registry().waiter_count() == 1).await;
    ch.send(&Msg::Cancel { cid: 1, canceller: me.clone() }).await.unwrap();
    assert_eq!(recv(&mut ch).await, Msg::CancelAck { cid: 1 });
    assert_eq!(arbiter.registry().waiter_count(), 0);

    // Cancels of calls this connection does not have pending are ignored.
    ch.send(&Msg::Cancel { cid: 1, canceller: me.clone() }).await.unwrap();
    ch.send(&Msg::Cancel { cid: 77, canceller: me }).await.unwrap();
    ch.send(&start_msg(3, LIST, enc(&()))).await.unwrap();
    match recv(&mut ch).await {
        Msg::Return { cid: 3, value } => {
            let entries: Vec<Entry> = rmp_serde::from_slice(&value).unwrap();
            assert!(entries.is_empty());
        }
        other => panic!("expected the list, got {other:?}"),
    }
}

#[tokio::test]
async fn many_concurrent_requests() {
    let arbiter = start(None).await;
    let c = Arc::new(client(&arbiter, "busy").await);
    within("register", c.register(&fake_addr(6000))).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..64 {
        let c = c.clone();
        set.spawn(async move {
            if i % 2 == 0 { c.find("busy").await.map(|v| v.len()) } else { c.list().await.map(|v| v.len()) }
        });
    }
    let results = within("all requests", set.join_all()).await;
    assert!(results.into_iter().all(|r| matches!(r, Ok(1))));
}

#[tokio::test]
async fn unknown_function_and_bad_arguments_are_typed_errors() {
    let arbiter = start(None).await;
    let mut ch = raw(&arbiter, "raw").await;
    let cases: Vec<(u64, &str, Vec<u8>, ErrorKind)> = vec![
        (1, "arbiter::nope", enc(&()), ErrorKind::UnknownFunction),
        (3, FIND, enc(&(42u32,)), ErrorKind::BadArguments),
        (5, REGISTER, enc(&("not an address",)), ErrorKind::BadArguments),
        (7, REGISTER, vec![0xc1], ErrorKind::BadArguments),
        (9, LIST, enc(&("unexpected",)), ErrorKind::BadArguments),
        (11, WAIT_FOR, vec![], ErrorKind::BadArguments),
    ];
    for (cid, func, args, kind) in cases {
        ch.send(&start_msg(cid, func, args)).await.unwrap();
        match recv(&mut ch).await {
            Msg::Error { cid: got, error } => {
                assert_eq!(got, cid);
                assert_eq!(error.kind, kind, "{func}: {error}");
                assert_eq!(&error.src, arbiter.uid());
                assert!(error.message.contains(func), "{func}: {}", error.message);
            }
            other => panic!("{func}: expected an error, got {other:?}"),
        }
    }
    // Non-single calls and even call ids are refused, and the connection lives on.
    ch.send(&Msg::Start {
        cid: 13,
        func: LIST.into(),
        kind: CallKind::Stream,
        args: enc(&()).into(),
        window: 8,
        timeout_ms: None,
        key: None,
        trace: None,
    })
    .await
    .unwrap();
    assert!(
        matches!(recv(&mut ch).await, Msg::Error { cid: 13, error } if error.kind == ErrorKind::Protocol)
    );
    ch.send(&start_msg(2, LIST, enc(&()))).await.unwrap();
    assert!(matches!(recv(&mut ch).await, Msg::Error { cid: 2, error } if error.kind == ErrorKind::Protocol));
    // An empty array is accepted for the empty argument tuple.
    ch.send(&start_msg(15, LIST, enc(&Vec::<u8>::new()))).await.unwrap();
    assert!(matches!(recv(&mut ch).await, Msg::Return { cid: 15, .. }));
}

#[tokio::test]
async fn tokens_are_required_when_configured() {
    let token = Secret::random();
    let arbiter = start(Some(token.clone())).await;
    let addr = arbiter.local_addr().clone();

    for (label, secret) in [("missing token", None), ("wrong token", Some(Secret::random()))] {
        match within(label, ArbiterClient::connect(&addr, &hs("intruder"), secret.as_ref())).await {
            Err(ClientError::Handshake { source, .. }) => {
                assert!(matches!(*source, HandshakeError::Refused { .. }), "{label}: {source}");
            }
            other => panic!("{label}: expected a refusal, got {other:?}"),
        }
    }
    let ok = within("right token", ArbiterClient::connect(&addr, &hs("member"), Some(&token))).await.unwrap();
    within("register", ok.register(&fake_addr(7000))).await.unwrap();
    assert_eq!(within("list", ok.list()).await.unwrap().len(), 1);
    assert_eq!(within("probe", probe(&addr, &hs("prober"), Some(&token))).await.unwrap(), *arbiter.uid());
}

#[tokio::test]
async fn garbage_and_protocol_violations_disconnect_only_the_offender() {
    let arbiter = start(None).await;
    let good = client(&arbiter, "good").await;
    within("register", good.register(&fake_addr(8000))).await.unwrap();
    let addr = match arbiter.local_addr() {
        Addr::Tcp { host, port } => format!("{host}:{port}"),
        other => panic!("unexpected address {other}"),
    };

    // Raw bytes before any handshake.
    let mut sock = within("tcp connect", tokio::net::TcpStream::connect(&addr)).await.unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    // The arbiter answers (at most) a refusal, then closes.
    let _ = within("garbage is disconnected", sock.read_to_end(&mut sink)).await;

    // A handshaken client that sends a message the arbiter never accepts.
    let mut ch = raw(&arbiter, "rude").await;
    ch.send(&start_msg(1, REGISTER, enc(&(fake_addr(8001),)))).await.unwrap();
    assert!(matches!(recv(&mut ch).await, Msg::Return { cid: 1, .. }));
    // An item for a call that has ended is a race the protocol tolerates...
    ch.send(&Msg::Yield { cid: 1, value: Bytes::new() }).await.unwrap();
    ch.send(&start_msg(3, FIND, enc(&("rude",)))).await.unwrap();
    assert!(matches!(recv(&mut ch).await, Msg::Return { cid: 3, .. }));
    // ...a handshake message after the handshake is not.
    ch.send(&Msg::Welcome).await.unwrap();
    let end = within("violation is disconnected", ch.recv()).await;
    assert!(matches!(end, Ok(None) | Err(_)), "expected the end, got {end:?}");
    eventually("the rude client's entry leaves", || arbiter.registry().find("rude").is_empty()).await;

    // A silent connection is dropped after the handshake timeout, and meanwhile
    // nobody else is disturbed.
    let mut silent = within("tcp connect", tokio::net::TcpStream::connect(&addr)).await.unwrap();
    assert_eq!(within("find", good.find("good")).await.unwrap().len(), 1);
    let _ = within("silent is disconnected", silent.read_to_end(&mut sink)).await;

    assert_eq!(within("list", good.list()).await.unwrap().len(), 1);
    assert!(!good.is_closed());
}

#[tokio::test]
async fn non_arbiters_give_clear_errors_not_hangs() {
    // An HTTP-ish server that answers anything with a 400.
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr: Addr = http.local_addr().unwrap().into();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            });
        }
    });
    // A server that accepts and never says anything.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr: Addr = silent.local_addr().unwrap().into();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    // A peer that speaks the protocol but serves no arbiter functions.
    let actor = Listener::bind(&Addr::loopback(0)).await.unwrap();
    let actor_addr = actor.local_addr().clone();
    let actor_uid = Uid::new("plain-actor");
    tokio::spawn({
        let uid = actor_uid.clone();
        async move {
            while let Ok((stream, _)) = actor.accept().await {
                let uid = uid.clone();
                tokio::spawn(async move {
                    let (mut ch, _) = actor_transport::accept(stream, &hs_uid(uid.clone()), |_| {
                        actor_transport::Auth::Open
                    })
                    .await
                    .unwrap();
                    while let Ok(Some(Msg::Start { cid, func, .. })) = ch.recv().await {
                        let error = Box::new(actor_transport::RemoteError::new(
                            uid.clone(),
                            ErrorKind::UnknownFunction,
                            "UnknownFunction",
                            format!("no function `{func}`"),
                        ));
                        let _ = ch.send(&Msg::Error { cid, error }).await;
                    }
                });
            }
        }
    });

    let mut cfg = hs("prober");
    cfg.timeout = Duration::from_millis(500);
    match within("http probe", probe(&http_addr, &cfg, None)).await {
        Err(e @ ClientError::Handshake { .. }) => {
            assert!(e.to_string().contains("is an arbiter listening"), "{e}")
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
    match within("silent probe", probe(&silent_addr, &cfg, None)).await {
        Err(ClientError::Handshake { source, .. }) => {
            assert!(matches!(*source, HandshakeError::Timeout(_)), "{source}")
        }
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    match within("actor probe", probe(&actor_addr, &cfg, None)).await {
        Err(e @ ClientError::NotAnArbiter { .. }) => assert!(e.to_string().contains("not an arbiter"), "{e}"),
        other => panic!("expected NotAnArbiter, got {other:?}"),
    }
    // Nothing listening at all.
    let closed_port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(!within("closed port", actor_arbiter::is_arbiter(&fake_addr(closed_port), &cfg, None)).await);
}

#[tokio::test]
async fn shutdown_closes_clients_and_fails_pending_requests() {
    let arbiter = start(None).await;
    let c = Arc::new(client(&arbiter, "left-behind").await);
    let pending = tokio::spawn({
        let c = c.clone();
        async move { c.wait_for("never").await }
    });
    eventually("the waiter is registered", || arbiter.registry().waiter_count() == 1).await;
    within("shutdown", arbiter.shutdown()).await.unwrap();
    within("client sees the close", c.closed()).await;
    match within("pending request", pending).await.unwrap() {
        Err(e @ ClientError::Disconnected { .. }) => {
            assert!(e.to_string().contains("lost the connection"), "{e}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(matches!(within("later request", c.list()).await, Err(ClientError::Disconnected { .. })));
}

fn arbiter_cmd() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_arbiter"));
    cmd.env_remove("ACTOR_ARBITER")
        .env_remove("ACTOR_TOKEN")
        .env("ACTOR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Reads the `arbiter listening on ADDR` line from the daemon's stdout.
async fn listening_addr(child: &mut tokio::process::Child) -> Addr {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    within("the listening line", BufReader::new(stdout).read_line(&mut line)).await.unwrap();
    let addr = line
        .trim()
        .strip_prefix("arbiter listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    addr.parse().unwrap()
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
}

#[tokio::test]
async fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    let mut child = arbiter_cmd().args(["--bind", "tcp://127.0.0.1:0", "--open"]).spawn().unwrap();
    let addr = listening_addr(&mut child).await;
    assert!(matches!(&addr, Addr::Tcp { port, .. } if *port != 0 && *port != 1616), "{addr}");

    let c = within("connect", ArbiterClient::connect(&addr, &hs("daemon-user"), None)).await.unwrap();
    within("register", c.register(&fake_addr(9000))).await.unwrap();
    assert_eq!(within("find", c.find("daemon-user")).await.unwrap().len(), 1);

    sigterm(&child);
    let status = within("the daemon exits", child.wait()).await.unwrap();
    assert!(status.success(), "exit status {status}");
    within("client sees the close", c.closed()).await;
}

#[tokio::test]
async fn the_binary_requires_the_per_user_secret_by_default() {
    let dir = std::env::temp_dir().join(format!("arbiter-default-{}", std::process::id()));
    let file = dir.join("token");
    let mut child =
        arbiter_cmd().args(["--bind", "tcp://127.0.0.1:0"]).env("ACTOR_TOKEN_FILE", &file).spawn().unwrap();
    let addr = listening_addr(&mut child).await;
    // The daemon created the file; the same user reads the same secret.
    let secret = actor_transport::load_or_create_token(&file).unwrap();
    let refused = within("no secret", ArbiterClient::connect(&addr, &hs("stranger"), None)).await;
    assert!(matches!(refused, Err(ClientError::Handshake { .. })), "{refused:?}");
    let wrong = Secret::random();
    let refused = within("wrong secret", ArbiterClient::connect(&addr, &hs("stranger"), Some(&wrong))).await;
    assert!(matches!(refused, Err(ClientError::Handshake { .. })), "{refused:?}");
    let c = within("connect", ArbiterClient::connect(&addr, &hs("same-user"), Some(&secret))).await.unwrap();
    within("register", c.register(&fake_addr(9001))).await.unwrap();
    sigterm(&child);
    let status = within("the daemon exits", child.wait()).await.unwrap();
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_binary_takes_a_token_from_the_environment_or_a_file() {
    let token = Secret::random();
    let dir = std::env::temp_dir().join(format!("arbiter-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{}\n", token.to_hex())).unwrap();

    let mut from_env = arbiter_cmd();
    from_env.args(["--bind", "tcp://127.0.0.1:0"]).env("ACTOR_TOKEN", token.to_hex());
    let mut from_file = arbiter_cmd();
    from_file.args(["--bind", "tcp://127.0.0.1:0", "--token-file"]).arg(&file);
    for mut cmd in [from_env, from_file] {
        let mut child = cmd.spawn().unwrap();
        let addr = listening_addr(&mut child).await;
        let refused = within("no token", ArbiterClient::connect(&addr, &hs("intruder"), None)).await;
        assert!(matches!(refused, Err(ClientError::Handshake { .. })), "{refused:?}");
        let c = within("token", ArbiterClient::connect(&addr, &hs("member"), Some(&token))).await.unwrap();
        within("list", c.list()).await.unwrap();
        sigterm(&child);
        assert!(within("exit", child.wait()).await.unwrap().success());
    }

    // A file without hex is a clear startup error.
    std::fs::write(&file, "not hex").unwrap();
    let out = within(
        "bad token file",
        arbiter_cmd().args(["--bind", "tcp://127.0.0.1:0", "--token-file"]).arg(&file).output(),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hex"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_binary_refuses_non_loopback_without_the_opt_out() {
    let out = within("refusal", arbiter_cmd().args(["--bind", "tcp://0.0.0.0:0"]).output()).await.unwrap();
    assert!(!out.status.success(), "it must refuse to bind 0.0.0.0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-non-loopback") && stderr.contains("TLS"), "{stderr}");
    assert!(out.stdout.is_empty(), "it must not claim to listen: {}", String::from_utf8_lossy(&out.stdout));
}

// ---------------------------------------------------------------------------
// Mutual TLS. The certificates come from the `openssl` CLI (the commands
// documented in actor_transport::tls); without it these tests say so and pass.

/// A scratch directory with a CA and a certificate for 127.0.0.1 and localhost,
/// or `None` (after saying why) if `openssl` is not installed.
struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Option<Pki> {
        if std::process::Command::new("openssl").arg("version").output().is_err() {
            eprintln!("SKIPPED: `openssl` is not on PATH, so no test certificates can be made");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("arbiter-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = r#"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 3650 -subj "/CN=test CA" -keyout ca.key -out ca.pem
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=node" -keyout node.key -out node.csr
cat > node.ext <<'END'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
END
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 825 -sha256 -extfile node.ext -out node.pem
"#;
        let out = std::process::Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(&dir)
            .output()
            .expect("run sh");
        assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(Pki { dir })
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    fn cert(&self) -> std::path::PathBuf {
        self.dir.join("node.pem")
    }

    fn key(&self) -> std::path::PathBuf {
        self.dir.join("node.key")
    }

    fn config(&self) -> actor_transport::TlsConfig {
        actor_transport::TlsConfig::from_pem_files(&self.ca(), &self.cert(), &self.key()).expect("TLS config")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_tls_arbiter_serves_tls_clients_and_refuses_plaintext_ones() {
    let Some(pki) = Pki::new("embedded") else { return };
    let tls = pki.config();
    let listener = Listener::bind(&Addr::loopback(0)).await.expect("bind loopback port 0");
    let config = ArbiterConfig::new(Uid::new("arbiter"));
    let arbiter = actor_arbiter::server::spawn_embedded_tls(listener, config, Some(tls.clone())).await;
    let addr = arbiter.local_addr().clone();

    let member =
        within("TLS connect", ArbiterClient::connect_with(&addr, &hs("tls-member"), None, Some(&tls)))
            .await
            .expect("a TLS client is admitted");
    within("register", member.register(&fake_addr(9100))).await.expect("register");
    let found = within("find", member.find("tls-member")).await.expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].addr, fake_addr(9100));

    // A plaintext client gets an error, not a hang, and disturbs nobody.
    let plain = within("plaintext connect", ArbiterClient::connect(&addr, &hs("plain"), None)).await;
    assert!(matches!(plain, Err(ClientError::Handshake { .. })), "{plain:?}");
    // So does a client that asks for TLS by name but gets the address wrong.
    let Addr::Tcp { port, .. } = &addr else { panic!("not tcp") };
    let by_name = Addr::Tcp { host: "localhost".into(), port: *port };
    let again =
        within("TLS by name", ArbiterClient::connect_with(&by_name, &hs("by-name"), None, Some(&tls)))
            .await
            .expect("TLS by DNS name");
    assert_eq!(within("find by another", again.find("tls-member")).await.expect("find").len(), 1);
    assert_eq!(arbiter.registry().find("tls-member").len(), 1);
    within("shutdown", arbiter.shutdown()).await.expect("clean shutdown");
}

#[tokio::test]
async fn the_binary_requires_mutual_tls_when_given_certificates() {
    let Some(pki) = Pki::new("daemon") else { return };
    let tls = pki.config();

    // From flags, on all interfaces (allowed with TLS), and from the environment.
    let mut from_flags = arbiter_cmd();
    from_flags
        .args(["--bind", "tcp://0.0.0.0:0", "--tls-ca"])
        .arg(pki.ca())
        .arg("--tls-cert")
        .arg(pki.cert())
        .arg("--tls-key")
        .arg(pki.key());
    let mut from_env = arbiter_cmd();
    from_env
        .args(["--bind", "tcp://127.0.0.1:0"])
        .env("ACTOR_TLS_CA", pki.ca())
        .env("ACTOR_TLS_CERT", pki.cert())
        .env("ACTOR_TLS_KEY", pki.key());
    for mut cmd in [from_flags, from_env] {
        let mut child = cmd.spawn().expect("spawn the arbiter");
        let Addr::Tcp { port, .. } = listening_addr(&mut child).await else { panic!("not tcp") };
        let addr = Addr::loopback(port);
        let c = within("TLS connect", ArbiterClient::connect_with(&addr, &hs("tls-user"), None, Some(&tls)))
            .await
            .expect("a TLS client is admitted");
        within("register", c.register(&fake_addr(9200))).await.expect("register");
        assert_eq!(within("find", c.find("tls-user")).await.expect("find").len(), 1);
        let plain = within("plaintext", ArbiterClient::connect(&addr, &hs("plain"), None)).await;
        assert!(matches!(plain, Err(ClientError::Handshake { .. })), "{plain:?}");
        // The arbiter logs the refusal in one line (once it has closed the socket).
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let logged = within("the refusal is logged", async {
            while let Some(line) = stderr.next_line().await.expect("read stderr") {
                if line.contains("failed the TLS handshake") {
                    return line;
                }
            }
            panic!("stderr ended without logging the refused plaintext client");
        })
        .await;
        assert!(logged.contains("does not speak TLS"), "{logged}");
        sigterm(&child);
        assert!(within("exit", child.wait()).await.expect("wait").success());
    }

    // Some but not all TLS options, or TLS on a Unix socket: clear startup errors.
    let out = within(
        "partial TLS options",
        arbiter_cmd().args(["--bind", "tcp://127.0.0.1:0", "--tls-ca"]).arg(pki.ca()).output(),
    )
    .await
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("incomplete TLS configuration"), "{stderr}");
    assert!(stderr.contains("--tls-cert") && stderr.contains("--tls-key"), "{stderr}");
    let sock = pki.dir.join("arbiter.sock");
    let out = within(
        "TLS on a unix socket",
        arbiter_cmd()
            .arg("--bind")
            .arg(format!("unix://{}", sock.display()))
            .env("ACTOR_TLS_CA", pki.ca())
            .env("ACTOR_TLS_CERT", pki.cert())
            .env("ACTOR_TLS_KEY", pki.key())
            .output(),
    )
    .await
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("TLS is for TCP"), "{stderr}");
    // A certificate file that is not one.
    let out = within(
        "bad certificate file",
        arbiter_cmd()
            .args(["--bind", "tcp://127.0.0.1:0", "--tls-ca"])
            .arg(pki.ca())
            .arg("--tls-cert")
            .arg(pki.key())
            .arg("--tls-key")
            .arg(pki.key())
            .output(),
    )
    .await
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("holds no PEM certificate"), "{stderr}");
}
