//! Hostile and broken peers over real sockets: every failure must surface as a
//! typed error (never a panic, a hang or a huge allocation), and the happy paths
//! must deliver every message.
//!
//! Hostile peers are plain tokio sockets writing raw bytes. Every wait is bounded
//! by [`within`], so a bug fails the test instead of hanging it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use actor_transport::codec::encode_frame;
use actor_transport::{
    Addr, Auth, Channel, ChannelConfig, ChannelError, DEFAULT_MAX_FRAME, FrameCodec, FrameError,
    HandshakeConfig, HandshakeError, Listener, Msg, PROTOCOL_VERSION, Secret, Stream, Uid, accept, connect,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::codec::FramedRead;

// ---------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made on the current thread.
// `#[tokio::test]` runs a current-thread runtime, so the channel's tasks run on
// the test's thread and other tests (on other threads) do not disturb the count.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size);
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

fn reset_largest() {
    LARGEST.with(|c| c.set(0));
}

fn largest() -> usize {
    LARGEST.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Helpers.

/// Upper bound for any single wait; generous for slow CI, tiny next to a hang.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

fn frame(msg: &Msg) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_frame(msg, DEFAULT_MAX_FRAME, &mut b).expect("encodable");
    b.to_vec()
}

/// The msgpack encoding of any serializable value (no length prefix).
fn doc<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_frame(value, DEFAULT_MAX_FRAME, &mut b).expect("encodable");
    b[4..].to_vec()
}

/// A length prefix followed by `payload`.
fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(payload.len()).expect("small").to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn hs_config(name: &str, timeout: Duration) -> HandshakeConfig {
    HandshakeConfig { uid: Uid::new(name), timeout, channel: ChannelConfig::default() }
}

async fn bind(addr: &Addr) -> Listener {
    within("bind", Listener::bind(addr)).await.unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"))
}

/// A loopback listener, a raw client socket connected to it, and the accepted
/// server-side stream.
async fn tcp_raw_pair() -> (Listener, TcpStream, Stream) {
    let listener = bind(&Addr::loopback(0)).await;
    let Addr::Tcp { host, port } = listener.local_addr().clone() else { panic!("not tcp") };
    let (client, accepted) = within("tcp connect + accept", async {
        tokio::join!(TcpStream::connect((host.as_str(), port)), listener.accept())
    })
    .await;
    let client = client.expect("raw connect");
    client.set_nodelay(true).expect("nodelay");
    let (server, _peer) = accepted.expect("accept");
    (listener, client, server)
}

/// A Channel on the accepting side fed by a raw hostile client.
async fn channel_with_raw_client(config: &ChannelConfig) -> (Listener, TcpStream, Channel) {
    let (listener, client, server) = tcp_raw_pair().await;
    (listener, client, Channel::from_stream(server, config))
}

fn expect_frame_error(res: Result<Option<Msg>, ChannelError>) -> std::sync::Arc<FrameError> {
    match res {
        Err(ChannelError::Frame(e)) => e,
        other => panic!("expected ChannelError::Frame, got {other:?}"),
    }
}

/// A unique directory for Unix sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw).expect("random");
        let dir = std::env::temp_dir().join(format!(
            "actor-transport-{tag}-{}-{:016x}",
            std::process::id(),
            u64::from_le_bytes(raw)
        ));
        std::fs::create_dir(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn sock(&self) -> Addr {
        Addr::Unix(self.0.join("s.sock"))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny deterministic generator for "random" bytes (xorshift64*).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Frame errors on a plain channel.

#[tokio::test]
async fn oversized_length_prefix_is_too_large_without_allocating() {
    // The tracker itself notices a large allocation.
    reset_largest();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(4 << 20)));
    assert!(largest() >= 4 << 20, "allocation tracking is broken");

    let config = ChannelConfig::default();
    for prefix in [u32::MAX, (DEFAULT_MAX_FRAME + 1) as u32] {
        let (_listener, mut client, mut chan) = channel_with_raw_client(&config).await;
        // The prefix, then a few payload bytes so the reader has data after the head.
        let mut bytes = prefix.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x42; 16]);
        within("hostile write", client.write_all(&bytes)).await.expect("write");

        reset_largest();
        let err = expect_frame_error(within("recv", chan.recv()).await);
        let biggest = largest();
        match &*err {
            FrameError::TooLarge { len, max } => {
                assert_eq!(*len, prefix as usize);
                assert_eq!(*max, DEFAULT_MAX_FRAME);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(biggest < 1024 * 1024, "receiving a hostile prefix allocated {biggest} bytes at once");
        assert!(err.to_string().contains("exceeds the maximum"), "{err}");
    }
}

#[tokio::test]
async fn truncated_frame_then_eof_is_truncated() {
    let (_listener, mut client, mut chan) = channel_with_raw_client(&ChannelConfig::default()).await;
    let good = frame(&Msg::Yield { cid: 3, value: Bytes::from_static(&[7; 90]) });
    let mut bytes = frame(&Msg::Welcome);
    bytes.extend_from_slice(&good[..14]);
    within("write", client.write_all(&bytes)).await.expect("write");
    within("shutdown", client.shutdown()).await.expect("shutdown");

    assert_eq!(within("first", chan.recv()).await.expect("first frame"), Some(Msg::Welcome));
    let err = expect_frame_error(within("recv", chan.recv()).await);
    match *err {
        FrameError::Truncated { have, need } => {
            assert_eq!(have, 14);
            assert_eq!(need, good.len());
        }
        ref other => panic!("expected Truncated, got {other:?}"),
    }
}

#[tokio::test]
async fn truncated_length_prefix_then_eof_is_truncated() {
    let (_listener, mut client, mut chan) = channel_with_raw_client(&ChannelConfig::default()).await;
    within("write", client.write_all(&[0, 0])).await.expect("write");
    within("shutdown", client.shutdown()).await.expect("shutdown");
    let err = expect_frame_error(within("recv", chan.recv()).await);
    assert!(matches!(*err, FrameError::Truncated { have: 2, need: 4 }), "{err:?}");
}

#[tokio::test]
async fn random_payload_bytes_are_a_decode_error() {
    for seed in 1..=16u64 {
        let (_listener, mut client, mut chan) = channel_with_raw_client(&ChannelConfig::default()).await;
        let mut payload = pseudo_random(seed, 48 + seed as usize * 7);
        // 0xc1 is the one byte msgpack never uses: the first byte alone is invalid.
        payload[0] = 0xc1;
        within("write", client.write_all(&raw_frame(&payload))).await.expect("write");
        let err = expect_frame_error(within("recv", chan.recv()).await);
        assert!(matches!(*err, FrameError::Decode(_)), "seed {seed}: {err:?}");
    }
    // Random bytes that are mostly well-formed msgpack markers still cannot make
    // a message: whatever they decode to, the answer is a typed error.
    for seed in 100..116u64 {
        let (_listener, mut client, mut chan) = channel_with_raw_client(&ChannelConfig::default()).await;
        let payload = pseudo_random(seed, 64);
        within("write", client.write_all(&raw_frame(&payload))).await.expect("write");
        match within("recv", chan.recv()).await {
            Err(ChannelError::Frame(e)) => assert!(matches!(*e, FrameError::Decode(_)), "seed {seed}: {e:?}"),
            other => panic!("seed {seed}: random bytes decoded as {other:?}"),
        }
    }
}

#[tokio::test]
async fn valid_msgpack_of_the_wrong_shape_is_a_decode_error() {
    use std::collections::BTreeMap;
    let docs: Vec<Vec<u8>> = vec![
        doc(&("not", "a", "message")),
        doc(&42u64),
        doc(&"NoSuchVariant"),
        doc(&BTreeMap::from([("Yield", "not fields")])),
        doc(&BTreeMap::from([("NoSuchVariant", vec![1u8, 2])])),
        // Yield with its payload missing, and Hello with a string version.
        doc(&BTreeMap::from([("Yield", (1u64,))])),
        doc(&BTreeMap::from([("Hello", ("one", ("n", "i"), b"x".as_slice()))])),
        // A struct variant given as a bare name.
        doc(&"Yield"),
    ];
    assert_eq!(docs.len(), 8);

    for (i, doc) in docs.iter().enumerate() {
        let (_listener, mut client, mut chan) = channel_with_raw_client(&ChannelConfig::default()).await;
        within("write", client.write_all(&raw_frame(doc))).await.expect("write");
        let err = expect_frame_error(within("recv", chan.recv()).await);
        assert!(matches!(*err, FrameError::Decode(_)), "doc {i}: {err:?}");
        assert!(err.to_string().starts_with("undecodable message"), "{err}");
    }
}

#[tokio::test]
async fn receiver_stays_ended_after_a_frame_error() {
    // After an error the receiver must report the channel as ended for good, even
    // if the peer keeps sending well-formed frames behind the bad one.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too large", {
            let mut v = u32::MAX.to_be_bytes().to_vec();
            // Bytes that would parse as a valid frame if the reader resumed.
            v.extend_from_slice(&frame(&Msg::Welcome));
            v
        }),
        ("undecodable", raw_frame(&[0xc1, 0xc1])),
    ];
    for (name, bad) in cases {
        let (_listener, mut client, mut chan) = channel_with_raw_client(&ChannelConfig::default()).await;
        within("write", client.write_all(&bad)).await.expect("write");
        let _ = expect_frame_error(within("recv", chan.recv()).await);
        for _ in 0..3 {
            let more = frame(&Msg::Stop { cid: 9 });
            within("write more", client.write_all(&more)).await.expect("write");
            let next = within("recv after error", chan.recv()).await;
            assert!(matches!(next, Ok(None)), "{name}: after an error recv returned {next:?}");
        }
    }
}

#[tokio::test]
async fn peer_vanishing_mid_frame_over_unix_socket_is_truncated() {
    // A peer that completes a real handshake over a Unix socket, sends one good
    // message and half of the next, then disappears.
    let dir = TempDir::new("vanish");
    let addr = dir.sock();
    let listener = bind(&addr).await;
    let Addr::Unix(path) = addr.clone() else { panic!("not unix") };
    let config = hs_config("acceptor", Duration::from_secs(5));

    let hostile = async {
        let mut s = UnixStream::connect(&path).await.expect("connect unix");
        let (mut r, mut w) = s.split();
        let mut frames = FramedRead::new(&mut r, FrameCodec::<Msg>::default());
        let me = Uid::new("vanisher");
        w.write_all(&frame(&Msg::Hello {
            version: PROTOCOL_VERSION,
            uid: me,
            nonce: Bytes::from_static(&[1; 32]),
        }))
        .await
        .expect("write hello");
        assert!(matches!(frames.next().await, Some(Ok(Msg::Hello { .. }))));
        w.write_all(&frame(&Msg::Auth { proof: None })).await.expect("write auth");
        // An open acceptor proves nothing: its Auth carries no proof.
        assert!(matches!(frames.next().await, Some(Ok(Msg::Auth { proof: None }))));
        assert!(matches!(frames.next().await, Some(Ok(Msg::Welcome))));
        let big = frame(&Msg::Return { cid: 1, value: Bytes::from(vec![5u8; 1000]) });
        let mut bytes = frame(&Msg::StartAck { cid: 1 });
        bytes.extend_from_slice(&big[..big.len() / 2]);
        w.write_all(&bytes).await.expect("write partial");
        drop(frames);
        drop(s); // vanish: no goodbye, no more bytes
        big.len()
    };
    let acceptor = async {
        let (stream, _) = listener.accept().await.expect("accept");
        let (mut chan, peer) = accept(stream, &config, |_| Auth::Open).await.expect("handshake");
        assert_eq!(peer.name, "vanisher");
        let first = chan.recv().await.expect("first message");
        (first, chan.recv().await)
    };
    let (big_len, (first, second)) = within("unix exchange", async { tokio::join!(hostile, acceptor) }).await;
    assert_eq!(first, Some(Msg::StartAck { cid: 1 }));
    let err = expect_frame_error(second);
    match *err {
        FrameError::Truncated { have, need } => {
            assert_eq!(need, big_len);
            assert_eq!(have, big_len / 2);
        }
        ref other => panic!("expected Truncated, got {other:?}"),
    }
    drop(listener);
    assert!(!path.exists(), "the listener removes its socket file");
}

// ---------------------------------------------------------------------------
// Handshake failures.

/// Runs `connect` against a real acceptor with `policy`, returning both results.
async fn handshake_pair(
    policy: Auth,
    connector_secret: Option<Secret>,
) -> (Result<(Channel, Uid), HandshakeError>, Result<(Channel, Uid), HandshakeError>, Uid) {
    let listener = bind(&Addr::loopback(0)).await;
    let addr = listener.local_addr().clone();
    let c_cfg = hs_config("connector", Duration::from_secs(5));
    let a_cfg = hs_config("acceptor", Duration::from_secs(5));
    let connector_uid = c_cfg.uid.clone();
    let (c, a) = within("handshake", async {
        tokio::join!(connect(&addr, &c_cfg, connector_secret.as_ref()), async {
            let (stream, _) = listener.accept().await.expect("accept");
            accept(stream, &a_cfg, |_| policy).await
        })
    })
    .await;
    (c, a, connector_uid)
}

#[tokio::test]
async fn wrong_token_fails_auth_and_refuses_connector() {
    let (c, a, cuid) = handshake_pair(Auth::Require(Secret::random()), Some(Secret::random())).await;
    match a {
        Err(HandshakeError::AuthFailed { peer, reason }) => {
            assert_eq!(peer, cuid);
            assert_eq!(reason, "wrong token");
        }
        other => panic!("acceptor: expected AuthFailed, got {:?}", other.map(|(_, u)| u)),
    }
    match c {
        Err(HandshakeError::Refused { reason }) => assert_eq!(reason, "authentication failed"),
        other => panic!("connector: expected Refused, got {:?}", other.map(|(_, u)| u)),
    }
}

#[tokio::test]
async fn missing_token_fails_auth_and_refuses_connector() {
    let (c, a, cuid) = handshake_pair(Auth::Require(Secret::random()), None).await;
    match a {
        Err(HandshakeError::AuthFailed { peer, reason }) => {
            assert_eq!(peer, cuid);
            assert_eq!(reason, "no token offered");
        }
        other => panic!("acceptor: expected AuthFailed, got {:?}", other.map(|(_, u)| u)),
    }
    assert!(
        matches!(&c, Err(HandshakeError::Refused { reason }) if reason == "authentication failed"),
        "connector: {:?}",
        c.map(|(_, u)| u)
    );
}

#[tokio::test]
async fn policy_refusal_is_reported_on_both_sides() {
    let (c, a, cuid) = handshake_pair(Auth::Refuse("not on the list".into()), None).await;
    match a {
        Err(HandshakeError::PolicyRefused { peer, reason }) => {
            assert_eq!(peer, cuid);
            assert_eq!(reason, "not on the list");
        }
        other => panic!("acceptor: expected PolicyRefused, got {:?}", other.map(|(_, u)| u)),
    }
    match c {
        Err(HandshakeError::Refused { reason }) => assert!(reason.contains("not on the list"), "{reason}"),
        other => panic!("connector: expected Refused, got {:?}", other.map(|(_, u)| u)),
    }
}

#[tokio::test]
async fn version_mismatch_is_seen_by_the_acceptor_and_reported_to_the_peer() {
    let listener = bind(&Addr::loopback(0)).await;
    let addr = listener.local_addr().clone();
    let cfg = hs_config("acceptor", Duration::from_secs(5));
    let theirs = PROTOCOL_VERSION + 41;
    let old_peer = async {
        let stream = Stream::connect(&addr, WAIT).await.expect("connect");
        let mut chan = Channel::from_stream(stream, &ChannelConfig::default());
        chan.send(&Msg::Hello {
            version: theirs,
            uid: Uid::new("future"),
            nonce: Bytes::from_static(&[0; 32]),
        })
        .await
        .expect("send hello");
        let reply = chan.recv().await;
        let after = chan.recv().await;
        (reply, after)
    };
    let acceptor = async {
        let (stream, _) = listener.accept().await.expect("accept");
        accept(stream, &cfg, |_| Auth::Open).await
    };
    let ((reply, after), res) = within("version exchange", async { tokio::join!(old_peer, acceptor) }).await;
    match res {
        Err(HandshakeError::VersionMismatch { ours, theirs: t }) => {
            assert_eq!(ours, PROTOCOL_VERSION);
            assert_eq!(t, theirs);
        }
        other => panic!("acceptor: expected VersionMismatch, got {:?}", other.map(|(_, u)| u)),
    }
    match reply {
        Ok(Some(Msg::Refused { reason })) => assert!(reason.contains("version mismatch"), "{reason}"),
        other => panic!("peer: expected Refused, got {other:?}"),
    }
    assert!(matches!(after, Ok(None)), "the acceptor closes after refusing: {after:?}");
}

#[tokio::test]
async fn version_mismatch_is_seen_by_the_connector() {
    let listener = bind(&Addr::loopback(0)).await;
    let addr = listener.local_addr().clone();
    let cfg = hs_config("connector", Duration::from_secs(5));
    let theirs = PROTOCOL_VERSION + 1;
    let old_acceptor = async {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut chan = Channel::from_stream(stream, &ChannelConfig::default());
        let hello = chan.recv().await.expect("recv hello");
        assert!(matches!(hello, Some(Msg::Hello { version: PROTOCOL_VERSION, .. })), "{hello:?}");
        chan.send(&Msg::Hello { version: theirs, uid: Uid::new("old"), nonce: Bytes::from_static(&[0; 32]) })
            .await
            .expect("send hello");
        // The connector gives up and closes.
        chan.recv().await
    };
    let (res, rest) =
        within("version exchange", async { tokio::join!(connect(&addr, &cfg, None), old_acceptor) }).await;
    match res {
        Err(HandshakeError::VersionMismatch { ours, theirs: t }) => {
            assert_eq!(ours, PROTOCOL_VERSION);
            assert_eq!(t, theirs);
        }
        other => panic!("connector: expected VersionMismatch, got {:?}", other.map(|(_, u)| u)),
    }
    assert!(matches!(rest, Ok(None)), "connector closed cleanly: {rest:?}");
}

#[tokio::test]
async fn silent_peer_times_out_the_acceptor() {
    let (_listener, mut client, server) = tcp_raw_pair().await;
    let timeout = Duration::from_millis(200);
    let cfg = hs_config("acceptor", timeout);
    let started = tokio::time::Instant::now();
    let res = within("acceptor timeout", accept(server, &cfg, |_| Auth::Open)).await;
    let elapsed = started.elapsed();
    match res {
        Err(HandshakeError::Timeout(t)) => assert_eq!(t, timeout),
        other => panic!("expected Timeout, got {:?}", other.map(|(_, u)| u)),
    }
    assert!(elapsed >= timeout, "gave up after {elapsed:?}");
    // The acceptor told the silent peer why and closed the connection.
    let mut got = Vec::new();
    within("read refusal", client.read_to_end(&mut got)).await.expect("read");
    let mut codec_buf = BytesMut::from(&got[..]);
    let refused = tokio_util::codec::Decoder::decode(&mut FrameCodec::<Msg>::default(), &mut codec_buf);
    assert!(
        matches!(&refused, Ok(Some(Msg::Refused { reason })) if reason.contains("timed out")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn silent_acceptor_times_out_the_connector() {
    let listener = bind(&Addr::loopback(0)).await;
    let addr = listener.local_addr().clone();
    let timeout = Duration::from_millis(200);
    let cfg = hs_config("connector", timeout);
    let mut held = None;
    let res = within("connector timeout", async {
        let accepting = async {
            // Accept and hold the socket open without ever answering.
            held = Some(listener.accept().await.expect("accept"));
            std::future::pending::<()>().await;
        };
        tokio::select! {
            res = connect(&addr, &cfg, None) => res,
            () = accepting => unreachable!(),
        }
    })
    .await;
    match res {
        Err(HandshakeError::Timeout(t)) => assert_eq!(t, timeout),
        other => panic!("expected Timeout, got {:?}", other.map(|(_, u)| u)),
    }
    drop(held);
}

#[tokio::test]
async fn unexpected_first_message_is_a_protocol_violation() {
    let (_listener, mut client, server) = tcp_raw_pair().await;
    let cfg = hs_config("acceptor", Duration::from_secs(5));
    within("write", client.write_all(&frame(&Msg::Welcome))).await.expect("write");
    let res = within("accept", accept(server, &cfg, |_| Auth::Open)).await;
    assert!(
        matches!(res, Err(HandshakeError::Unexpected { expected: "Hello", got: "Welcome" })),
        "{:?}",
        res.map(|(_, u)| u)
    );
}

#[tokio::test]
async fn garbage_during_the_handshake_is_a_typed_channel_error() {
    // An oversized prefix where the Hello should be.
    let (_listener, mut client, server) = tcp_raw_pair().await;
    let cfg = hs_config("acceptor", Duration::from_secs(5));
    within("write", client.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])).await.expect("write");
    reset_largest();
    let res = within("accept", accept(server, &cfg, |_| Auth::Open)).await;
    assert!(largest() < 1024 * 1024, "allocated {} bytes at once", largest());
    match res {
        Err(HandshakeError::Channel(ChannelError::Frame(e))) => {
            assert!(matches!(*e, FrameError::TooLarge { len: 0xffff_ffff, .. }), "{e:?}")
        }
        other => panic!("expected a channel frame error, got {:?}", other.map(|(_, u)| u)),
    }

    // Undecodable bytes where the Hello should be.
    let (_listener, mut client, server) = tcp_raw_pair().await;
    within("write", client.write_all(&raw_frame(&pseudo_random(7, 40)))).await.expect("write");
    let res = within("accept", accept(server, &cfg, |_| Auth::Open)).await;
    match res {
        Err(HandshakeError::Channel(ChannelError::Frame(e))) => {
            assert!(matches!(*e, FrameError::Decode(_)), "{e:?}")
        }
        other => panic!("expected a channel decode error, got {:?}", other.map(|(_, u)| u)),
    }
}

#[tokio::test]
async fn peer_closing_during_the_handshake_is_closed() {
    let (_listener, client, server) = tcp_raw_pair().await;
    let cfg = hs_config("acceptor", Duration::from_secs(5));
    drop(client);
    let res = within("accept", accept(server, &cfg, |_| Auth::Open)).await;
    assert!(matches!(res, Err(HandshakeError::Closed)), "{:?}", res.map(|(_, u)| u));
}

#[tokio::test]
async fn connecting_to_nothing_is_a_connect_error() {
    let dir = TempDir::new("nothing");
    let addr = dir.sock(); // no listener was ever bound here
    let cfg = hs_config("connector", Duration::from_secs(5));
    let res = within("connect", connect(&addr, &cfg, None)).await;
    match res {
        Err(HandshakeError::Connect { addr: a, .. }) => assert_eq!(a, addr),
        other => panic!("expected Connect, got {:?}", other.map(|(_, u)| u)),
    }
}

// ---------------------------------------------------------------------------
// Happy paths.

async fn exchange_both_ways(addr: &Addr, listener: &Listener) {
    let secret = Secret::random();
    let c_cfg = hs_config("client", Duration::from_secs(5));
    let a_cfg = hs_config("server", Duration::from_secs(5));
    let (c, a) = within("handshake", async {
        tokio::join!(connect(addr, &c_cfg, Some(&secret)), async {
            let (stream, _) = listener.accept().await.expect("accept");
            accept(stream, &a_cfg, |_| Auth::Require(secret.clone())).await
        })
    })
    .await;
    let (mut client, server_uid) = c.expect("connector handshake");
    let (mut server, client_uid) = a.expect("acceptor handshake");
    assert_eq!(server_uid, a_cfg.uid);
    assert_eq!(client_uid, c_cfg.uid);

    for i in 0..100u64 {
        let value = Bytes::from(i.to_be_bytes().to_vec());
        within("client send", client.send(&Msg::Yield { cid: 1, value: value.clone() })).await.expect("send");
        let got = within("server recv", server.recv()).await.expect("recv");
        assert_eq!(got, Some(Msg::Yield { cid: 1, value: value.clone() }));
        within("server send", server.send(&Msg::Return { cid: 2, value: value.clone() }))
            .await
            .expect("send");
        let got = within("client recv", client.recv()).await.expect("recv");
        assert_eq!(got, Some(Msg::Return { cid: 2, value }));
    }
    let (tx, _rx) = client.split();
    within("close", tx.close()).await;
    assert_eq!(within("eof", server.recv()).await.expect("clean eof"), None);
}

#[tokio::test]
async fn happy_path_over_tcp() {
    let listener = bind(&Addr::loopback(0)).await;
    let addr = listener.local_addr().clone();
    assert!(matches!(&addr, Addr::Tcp { port, .. } if *port != 0));
    exchange_both_ways(&addr, &listener).await;
}

#[tokio::test]
async fn happy_path_over_unix_socket() {
    let dir = TempDir::new("happy");
    let addr = dir.sock();
    let listener = bind(&addr).await;
    exchange_both_ways(&addr, &listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_senders_deliver_everything_in_order() {
    many_senders(&ChannelConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_senders_with_a_tiny_write_buffer() {
    // Senders wait for room nearly every time: exercises the back-pressure path.
    many_senders(&ChannelConfig { write_high_water: 300, ..ChannelConfig::default() }).await;
}

async fn many_senders(config: &ChannelConfig) {
    const TASKS: u64 = 8;
    const EACH: u64 = 5_000;
    let (_listener, client, server) = tcp_raw_pair().await;
    let (client_r, client_w) = client.into_split();
    let sending = Channel::new(client_r, client_w, config);
    let mut receiving = Channel::from_stream(server, &ChannelConfig::default());

    let (tx, _rx) = sending.split();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                // A payload that varies in size, 0 to 199 bytes.
                let value = Bytes::from(vec![t as u8; (i % 200) as usize]);
                tx.send(&Msg::Yield { cid: t * 1_000_000 + i, value }).await.expect("send");
            }
        }));
    }
    drop(tx); // only the tasks' clones keep the channel open now

    let mut next = [0u64; TASKS as usize];
    let mut total = 0;
    let eof = within("all messages", async {
        loop {
            match receiving.recv().await.expect("recv") {
                Some(Msg::Yield { cid, value }) => {
                    let (t, i) = (cid / 1_000_000, cid % 1_000_000);
                    assert_eq!(i, next[t as usize], "sender {t} out of order");
                    assert_eq!(value.len() as u64, i % 200);
                    assert!(value.iter().all(|b| u64::from(*b) == t));
                    next[t as usize] += 1;
                    total += 1;
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => break true,
            }
        }
    })
    .await;
    assert!(eof);
    assert_eq!(total, TASKS * EACH);
    assert!(next.iter().all(|n| *n == EACH));
    for task in tasks {
        within("sender task", task).await.expect("sender task panicked");
    }
}

#[tokio::test]
async fn close_flushes_queued_messages_before_eof() {
    const N: u64 = 20_000;
    let (_listener, client, server) = tcp_raw_pair().await;
    let (client_r, client_w) = client.into_split();
    let sending = Channel::new(client_r, client_w, &ChannelConfig::default());
    let mut receiving = Channel::from_stream(server, &ChannelConfig::default());
    let (tx, _rx) = sending.split();

    // Queue everything without yielding (the writer task cannot run in between on
    // this current-thread runtime), well past the high-water mark, then close.
    for i in 0..N {
        tx.send_now(&Msg::Yield { cid: i, value: Bytes::from_static(&[1; 40]) }).expect("queue");
    }
    assert!(!tx.is_closed());
    let reading = async {
        let mut n = 0;
        while let Some(m) = receiving.recv().await.expect("recv") {
            assert_eq!(m.cid(), Some(n));
            n += 1;
        }
        n
    };
    let ((), got) = within("close + drain", async { tokio::join!(tx.close(), reading) }).await;
    assert_eq!(got, N, "every queued message arrives before EOF");
    assert!(tx.is_closed());
    let late = within("send after close", tx.send(&Msg::Stop { cid: 0 })).await;
    assert!(matches!(late, Err(ChannelError::Closed { .. })), "{late:?}");
    assert!(matches!(tx.send_now(&Msg::Stop { cid: 0 }), Err(ChannelError::Closed { .. })));
    within("closed", tx.closed()).await;
}

#[tokio::test]
async fn oversized_outgoing_message_is_refused_and_channel_stays_usable() {
    let config = ChannelConfig { max_frame: 1024, ..ChannelConfig::default() };
    let (_listener, client, server) = tcp_raw_pair().await;
    let (client_r, client_w) = client.into_split();
    let mut sending = Channel::new(client_r, client_w, &config);
    let mut receiving = Channel::from_stream(server, &config);
    let big = Msg::Yield { cid: 1, value: Bytes::from(vec![0u8; 2048]) };
    match within("send big", sending.send(&big)).await {
        Err(ChannelError::Frame(e)) => assert!(matches!(*e, FrameError::TooLarge { max: 1024, .. }), "{e:?}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    within("send small", sending.send(&Msg::Stop { cid: 1 })).await.expect("still usable");
    assert_eq!(within("recv", receiving.recv()).await.expect("recv"), Some(Msg::Stop { cid: 1 }));
}

/// A peer that sends requests but never reads the answers cannot make forced
/// replies (`send_now`) pile up without bound: the channel closes instead.
#[tokio::test]
async fn forced_messages_to_a_peer_that_never_reads_close_the_channel() {
    let listener = actor_transport::Listener::bind(&actor_transport::Addr::loopback(0)).await.expect("bind");
    let addr = listener.local_addr().clone();
    // The peer accepts and then never reads a byte.
    let silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        drop(stream);
    });
    let stream =
        actor_transport::Stream::connect(&addr, std::time::Duration::from_secs(5)).await.expect("connect");
    let config = actor_transport::ChannelConfig { write_high_water: 4096, ..Default::default() };
    let channel = actor_transport::Channel::from_stream(stream, &config);
    let msg = actor_transport::Msg::Yield { cid: 1, value: bytes::Bytes::from(vec![0u8; 1024]) };
    let mut sent = 0u64;
    let err = loop {
        match channel.sender().send_now(&msg) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 1_000_000, "forced messages kept queueing for a peer that never reads");
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    };
    assert!(
        matches!(err, actor_transport::ChannelError::Closed { ref reason } if reason.contains("stopped reading")),
        "{err}"
    );
    silent.abort();
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_after_the_write_stall_bound() {
    let listener = actor_transport::Listener::bind(&actor_transport::Addr::loopback(0)).await.expect("bind");
    let addr = listener.local_addr().clone();
    // The peer accepts and then never reads a byte.
    let silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        drop(stream);
    });
    let stream =
        actor_transport::Stream::connect(&addr, std::time::Duration::from_secs(5)).await.expect("connect");
    let config = actor_transport::ChannelConfig {
        write_stall: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let channel = actor_transport::Channel::from_stream(stream, &config);
    // Ordinary sends wait for room; once the socket buffers are full they
    // wait on a writer that makes no progress, until the stall bound.
    let msg = actor_transport::Msg::Yield { cid: 1, value: bytes::Bytes::from(vec![0u8; 64 * 1024]) };
    let err = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            if let Err(e) = channel.sender().send(&msg).await {
                break e;
            }
        }
    })
    .await
    .expect("a sender waiting on a peer that never reads must fail, not hang");
    assert!(
        matches!(err, actor_transport::ChannelError::Closed { ref reason } if reason.contains("stopped reading")),
        "{err}"
    );
    silent.abort();
}

#[tokio::test]
async fn aborting_a_channel_to_a_peer_that_never_reads_frees_it_at_once() {
    let listener = actor_transport::Listener::bind(&actor_transport::Addr::loopback(0)).await.expect("bind");
    let addr = listener.local_addr().clone();
    let silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        drop(stream);
    });
    let stream =
        actor_transport::Stream::connect(&addr, std::time::Duration::from_secs(5)).await.expect("connect");
    // A stall bound far beyond the test's: only the abort can end this.
    let config = actor_transport::ChannelConfig {
        write_stall: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let channel = actor_transport::Channel::from_stream(stream, &config);
    let sender = channel.sender().clone();
    let msg = actor_transport::Msg::Yield { cid: 1, value: bytes::Bytes::from(vec![0u8; 64 * 1024]) };
    let (stuck_tx, stuck) = tokio::sync::oneshot::channel();
    let blocked = tokio::spawn(async move {
        let mut stuck_tx = Some(stuck_tx);
        loop {
            let send = sender.send(&msg);
            tokio::pin!(send);
            // A send that cannot complete at once waits on a writer that no
            // longer makes progress: say so, then keep waiting.
            let outcome = match futures::FutureExt::now_or_never(&mut send) {
                Some(r) => r,
                None => {
                    if let Some(tx) = stuck_tx.take() {
                        let _ = tx.send(());
                    }
                    send.await
                }
            };
            if let Err(e) = outcome {
                break e;
            }
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(20), stuck)
        .await
        .expect("the sender blocks once the peer stops reading")
        .expect("the sender reports it");
    channel.sender().abort("the peer is gone");
    let err = tokio::time::timeout(std::time::Duration::from_secs(20), blocked)
        .await
        .expect("a blocked sender fails once the channel is aborted")
        .expect("join");
    assert!(
        matches!(err, actor_transport::ChannelError::Closed { ref reason } if reason == "the peer is gone"),
        "{err}"
    );
    tokio::time::timeout(std::time::Duration::from_secs(20), channel.sender().closed())
        .await
        .expect("an aborted channel counts as closed at once");
    silent.abort();
}
