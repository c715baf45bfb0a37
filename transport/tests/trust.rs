//! Trust at the transport level, over real sockets: servers prove the secret
//! too, and nothing before authentication costs more than a small frame.
//! Every wait is bounded by [`within`].

use std::future::Future;
use std::time::Duration;

use actor_transport::{
    Addr, Auth, Channel, ChannelConfig, ChannelError, FrameError, HandshakeConfig, HandshakeError, Listener,
    Msg, PROTOCOL_VERSION, Secret, Stream, Uid, accept, connect,
};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

const BOUND: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

fn hs(name: &str) -> HandshakeConfig {
    HandshakeConfig {
        uid: Uid::new(name),
        timeout: Duration::from_secs(5),
        channel: ChannelConfig::default(),
    }
}

async fn tcp_listener() -> (Listener, Addr) {
    let l = Listener::bind(&Addr::loopback(0)).await.expect("bind");
    let addr = l.local_addr().clone();
    (l, addr)
}

/// A client holding a token must not accept a server that admits it without
/// proving that it holds the same token: anyone could be listening there.
#[tokio::test]
async fn a_client_with_a_token_rejects_a_server_that_does_not_prove_it() {
    let (listener, addr) = tcp_listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        // An impostor: a well-behaved acceptor that simply knows no secret.
        let _ = accept(stream, &hs("impostor"), |_| Auth::Open).await;
    });
    let token = Secret::random();
    let res = within("connect", connect(&addr, &hs("client"), Some(&token))).await;
    match res {
        Err(e) if e.to_string().contains("did not prove") => {}
        other => panic!("a server without the token was trusted: {:?}", other.map(|(_, u)| u)),
    }
    within("server", server).await.expect("server task");
}

/// What an impostor answers to the connector's proof (`None`: no `Auth`).
type Reply = fn(Option<Bytes>) -> Option<Msg>;

/// Runs a hand-written impostor acceptor for one connection: it answers the
/// connector's `Auth` with `reply(the connector's proof)` (nothing: the
/// version-1 behaviour) and then `Welcome`.
fn impostor(listener: Listener, reply: Reply) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut ch = Channel::from_stream(stream, &ChannelConfig::default());
        let Ok(Some(Msg::Hello { .. })) = ch.recv().await else { return };
        let hello = Msg::Hello {
            version: PROTOCOL_VERSION,
            uid: Uid::new("impostor"),
            nonce: Bytes::from_static(&[7; 32]),
        };
        if ch.send(&hello).await.is_err() {
            return;
        }
        let Ok(Some(Msg::Auth { proof })) = ch.recv().await else { return };
        if let Some(msg) = reply(proof) {
            if ch.send(&msg).await.is_err() {
                return;
            }
        }
        let _ = ch.send(&Msg::Welcome).await;
        // Keep the connection open until the client gives up on it.
        let _ = ch.recv().await;
    })
}

/// Impostors that skip the proof, send a made-up one, or reflect the
/// connector's own proof back: all rejected by a client holding a token.
#[tokio::test]
async fn a_client_with_a_token_rejects_impostor_proofs() {
    let cases: [(&str, Reply); 4] = [
        ("no Auth at all", |_| None),
        ("an Auth without proof", |_| Some(Msg::Auth { proof: None })),
        ("a made-up proof", |_| Some(Msg::Auth { proof: Some(Bytes::from_static(&[9; 32])) })),
        ("the connector's own proof", |proof| Some(Msg::Auth { proof })),
    ];
    for (what, reply) in cases {
        let (listener, addr) = tcp_listener().await;
        let server = impostor(listener, reply);
        let token = Secret::random();
        let res = within("connect", connect(&addr, &hs("client"), Some(&token))).await;
        match res {
            Err(e) if e.to_string().contains("did not prove") => {}
            other => panic!("an impostor with {what} was trusted: {:?}", other.map(|(_, u)| u)),
        }
        within("server", server).await.expect("server task");
    }
}

/// Both sides proving the same secret: the handshake succeeds and each side
/// learns the other's uid.
#[tokio::test]
async fn mutual_proof_with_the_same_secret_succeeds() {
    let (listener, addr) = tcp_listener().await;
    let token = Secret::random();
    let t2 = token.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        accept(stream, &hs("server"), |_| Auth::Require(t2)).await.map(|(_, u)| u)
    });
    let (_ch, server_uid) =
        within("connect", connect(&addr, &hs("client"), Some(&token))).await.expect("connect");
    assert_eq!(server_uid.name, "server");
    let client_uid = within("server", server).await.expect("server task").expect("accept");
    assert_eq!(client_uid.name, "client");
}

/// Before the handshake completes, a frame larger than the small
/// pre-authentication limit closes the connection at once, without waiting
/// for (and buffering) its payload.
#[tokio::test]
async fn a_large_frame_before_authentication_is_refused_at_its_prefix() {
    let (listener, addr) = tcp_listener().await;
    let mut client = match within("connect", Stream::connect(&addr, BOUND)).await.expect("connect") {
        Stream::Tcp(s) => s,
        _ => unreachable!("a tcp address"),
    };
    let (stream, _) = within("accept", listener.accept()).await.expect("accept");
    // One MiB announced (well under the channel's 16 MiB maximum), one byte sent.
    within("write", client.write_all(&[0x00, 0x10, 0x00, 0x00, 0x81])).await.expect("write");
    let res = within("handshake", accept(stream, &hs("acceptor"), |_| Auth::Open)).await;
    match res {
        Err(HandshakeError::Channel(ChannelError::Frame(e))) => {
            assert!(matches!(*e, FrameError::TooLarge { len: 0x10_0000, .. }), "{e:?}")
        }
        other => panic!("expected the prefix to be refused, got {:?}", other.map(|(_, u)| u)),
    }
}

/// After the handshake, the channel's configured maximum applies again.
#[tokio::test]
async fn after_authentication_the_configured_frame_limit_applies() {
    let (listener, addr) = tcp_listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (mut ch, _) = accept(stream, &hs("server"), |_| Auth::Open).await.expect("accept");
        ch.recv().await
    });
    let (mut ch, _) = within("connect", connect(&addr, &hs("client"), None)).await.expect("connect");
    let value = Bytes::from(vec![0x2a; 1024 * 1024]);
    within("send", ch.send(&Msg::Yield { cid: 1, value: value.clone() })).await.expect("send");
    let got = within("server", server).await.expect("server task").expect("recv");
    assert_eq!(got, Some(Msg::Yield { cid: 1, value }));
}
