//! The arranged handshake (a spawned child's): the connector knows the
//! acceptor's uid and nonce in advance and sends its proof right behind its
//! `Hello`. Over real sockets; every wait is bounded by [`within`].

use std::future::Future;
use std::time::Duration;

use actor_transport::{
    Addr, Arranged, Auth, Channel, ChannelConfig, HandshakeConfig, HandshakeError, Listener, Msg, Nonce,
    Secret, Stream, Uid, accept, connect, connect_arranged,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

fn hs(uid: &Uid) -> HandshakeConfig {
    HandshakeConfig { uid: uid.clone(), timeout: Duration::from_secs(5), channel: ChannelConfig::default() }
}

async fn tcp_listener() -> (Listener, Addr) {
    let l = Listener::bind(&Addr::loopback(0)).await.expect("bind");
    let addr = l.local_addr().clone();
    (l, addr)
}

/// A parent and the arrangement it hands its child.
fn arrangement() -> (Uid, Arranged) {
    let parent = Uid::new("parent");
    let arranged = Arranged { secret: Secret::random(), acceptor: parent.clone(), nonce: Nonce::random() };
    (parent, arranged)
}

/// Both sides arranged: the handshake completes, each learns the other's uid,
/// and the channel carries messages.
#[tokio::test]
async fn an_arranged_handshake_admits_both_sides() {
    let (listener, addr) = tcp_listener().await;
    let (parent, arranged) = arrangement();
    let child = Uid::new("child");
    let auth = Auth::Arranged { secret: arranged.secret.clone(), nonce: arranged.nonce.clone() };
    let acceptor = tokio::spawn({
        let parent = parent.clone();
        async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (mut ch, peer) = accept(stream, &hs(&parent), |_| auth).await.expect("acceptor handshake");
            ch.send(&Msg::Welcome).await.expect("send");
            peer
        }
    });
    let (mut ch, peer) =
        within("connect", connect_arranged(&addr, &hs(&child), &arranged, None)).await.expect("connector");
    assert_eq!(peer, parent);
    assert_eq!(within("recv", ch.recv()).await.expect("recv"), Some(Msg::Welcome));
    assert_eq!(within("acceptor", acceptor).await.expect("acceptor task"), child);
}

/// The connector's proof goes out before it hears anything: an acceptor
/// that says nothing until it has read both `Hello` and `Auth` still gets
/// them, and its answers (over the arranged nonce) are accepted.
#[tokio::test]
async fn the_proof_goes_out_before_the_acceptor_speaks() {
    let (listener, addr) = tcp_listener().await;
    let (_, arranged) = arrangement();
    let acceptor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut ch = Channel::from_stream(stream, &ChannelConfig::default());
        let Ok(Some(Msg::Hello { .. })) = ch.recv().await else { panic!("no Hello") };
        // Silent so far: a connector that waited for our Hello would hang here.
        let got = tokio::time::timeout(Duration::from_secs(5), ch.recv()).await;
        let Ok(Ok(Some(Msg::Auth { proof: Some(proof) }))) = got else {
            panic!("the proof did not follow the Hello: {got:?}")
        };
        assert_eq!(proof.len(), 32, "an HMAC-SHA256");
    });
    // The connector waits for an acceptor `Hello` that never comes (the
    // acceptor hangs up once it has checked the order): it fails, and only
    // the order of its first flight is under test here.
    let child = Uid::new("child");
    let res = within("connect", connect_arranged(&addr, &hs(&child), &arranged, None)).await;
    assert!(res.is_err(), "admitted by an acceptor that never answered");
    within("acceptor", acceptor).await.expect("acceptor task");
}

/// A child of an older kind (no arrangement) still handshakes with a parent
/// that arranged a nonce: it simply waits for the `Hello` that carries it.
#[tokio::test]
async fn a_classic_connector_meets_an_arranged_acceptor() {
    let (listener, addr) = tcp_listener().await;
    let (parent, arranged) = arrangement();
    let auth = Auth::Arranged { secret: arranged.secret.clone(), nonce: arranged.nonce.clone() };
    let acceptor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        accept(stream, &hs(&parent), |_| auth).await.map(|(_, u)| u)
    });
    let child = Uid::new("child");
    let (_, peer) =
        within("connect", connect(&addr, &hs(&child), Some(&arranged.secret))).await.expect("connector");
    assert_eq!(peer.name, "parent");
    assert_eq!(within("acceptor", acceptor).await.expect("task").expect("acceptor handshake"), child);
}

/// An acceptor that did not arrange this nonce (it draws a fresh one) does
/// not admit the early proof, and the connector does not trust it: both
/// sides fail, neither is admitted.
#[tokio::test]
async fn an_acceptor_without_the_arrangement_admits_nobody() {
    let (listener, addr) = tcp_listener().await;
    let (parent, arranged) = arrangement();
    let secret = arranged.secret.clone();
    let acceptor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        accept(stream, &hs(&parent), |_| Auth::Require(secret)).await.map(|(_, u)| u)
    });
    let child = Uid::new("child");
    let res = within("connect", connect_arranged(&addr, &hs(&child), &arranged, None)).await;
    match res {
        Err(HandshakeError::ServerUnauthenticated { reason, .. }) => {
            assert!(reason.contains("arranged"), "{reason}")
        }
        Err(HandshakeError::Refused { .. }) => {}
        other => panic!("connector: expected a failure, got {:?}", other.map(|(_, u)| u)),
    }
    match within("acceptor", acceptor).await.expect("task") {
        Err(HandshakeError::AuthFailed { reason, .. }) => assert_eq!(reason, "wrong token"),
        // The connector may hang up before the proof is checked.
        Err(e) if e.is_hangup() => {}
        other => panic!("acceptor: expected AuthFailed, got {other:?}"),
    }
}

/// An acceptor answering with another uid than the arranged one is not the
/// parent the connector was told of, even if it holds the nonce.
#[tokio::test]
async fn an_acceptor_with_another_uid_is_not_trusted() {
    let (listener, addr) = tcp_listener().await;
    let (_, arranged) = arrangement();
    let auth = Auth::Arranged { secret: arranged.secret.clone(), nonce: arranged.nonce.clone() };
    let acceptor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        accept(stream, &hs(&Uid::new("someone-else")), |_| auth).await.map(|(_, u)| u)
    });
    let child = Uid::new("child");
    match within("connect", connect_arranged(&addr, &hs(&child), &arranged, None)).await {
        Err(HandshakeError::ServerUnauthenticated { reason, .. }) => assert!(reason.contains("arranged")),
        other => panic!("connector: expected ServerUnauthenticated, got {:?}", other.map(|(_, u)| u)),
    }
    // Its proof was over the arranged uid, so the acceptor refuses it as well.
    match within("acceptor", acceptor).await.expect("task") {
        Err(HandshakeError::AuthFailed { .. }) => {}
        Err(e) if e.is_hangup() => {}
        other => panic!("acceptor: expected AuthFailed, got {other:?}"),
    }
}

/// A recorded first flight (Hello and proof) replayed on a new connection
/// to an acceptor holding the same secret but no arrangement (the child's
/// has been used up) is refused: the proof is bound to the arranged nonce.
#[tokio::test]
async fn a_replayed_first_flight_is_refused() {
    let (parent, arranged) = arrangement();
    let child = Uid::new("child");
    // Record the connector's first flight with a raw acceptor.
    let raw_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let raw_addr = Addr::loopback(raw_listener.local_addr().expect("addr").port());
    let recorder = tokio::spawn(async move {
        let (mut raw, _) = raw_listener.accept().await.expect("accept");
        let mut flight = vec![0u8; 4096];
        let mut len = 0;
        // Two frames: read until both length-prefixed frames are in.
        loop {
            let n = raw.read(&mut flight[len..]).await.expect("read");
            assert!(n > 0, "connector hung up before its proof");
            len += n;
            if frames_in(&flight[..len]) >= 2 {
                break;
            }
        }
        flight.truncate(len);
        flight
    });
    let mut cfg = hs(&child);
    cfg.timeout = Duration::from_millis(300);
    let _ = within("connect", connect_arranged(&raw_addr, &cfg, &arranged, None)).await;
    let flight = within("recorder", recorder).await.expect("recorder");
    // Replay it to a real acceptor that holds the token but no arrangement.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let secret = arranged.secret.clone();
    let acceptor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        accept(Stream::Tcp(stream), &hs(&parent), |_| Auth::Require(secret)).await.map(|(_, u)| u)
    });
    let mut replay = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    replay.write_all(&flight).await.expect("replay");
    match within("acceptor", acceptor).await.expect("task") {
        Err(HandshakeError::AuthFailed { reason, .. }) => assert_eq!(reason, "wrong token"),
        other => panic!("a replayed proof was admitted: {other:?}"),
    }
}

/// How many whole length-prefixed frames `buf` holds.
fn frames_in(buf: &[u8]) -> usize {
    let (mut at, mut n) = (0, 0);
    while buf.len() >= at + 4 {
        let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if buf.len() < at + 4 + len {
            break;
        }
        at += 4 + len;
        n += 1;
    }
    n
}

#[test]
fn nonces_round_trip_through_hex_and_are_redacted() {
    let n = Nonce::random();
    assert_eq!(Nonce::from_hex(&n.to_hex()), Some(n.clone()));
    assert_eq!(format!("{n:?}"), "Nonce(..)");
    // `+f` is a number to `u8::from_str_radix`, not two hex digits.
    for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33), &"é".repeat(32), &"+f".repeat(32)] {
        assert!(Nonce::from_hex(bad).is_none(), "{bad:?}");
    }
}
