//! Large stream payloads are queued without being copied and written with
//! vectored writes: whatever the mix of sizes and however the writes are cut
//! (small socket buffers and a reader that starts late make most writes end
//! part-way through a payload, often twice in the same one), every message
//! arrives whole and in order.

use std::os::fd::AsFd;
use std::time::Duration;

use actor_transport::{Addr, BytesItem, Channel, ChannelConfig, Listener, Msg, Stream};
use bytes::Bytes;

const BOUND: Duration = Duration::from_secs(30);

/// Sizes on both sides of where payloads start to be shared (1 KiB), and of
/// msgpack's 8-, 16- and 32-bit length headers.
const SIZES: [usize; 11] = [0, 10, 253, 255, 1023, 1024, 4096, 65_532, 65_535, 65_536, 300_000];

/// The `i`th message: stream items, batches and items sent from their own
/// buffer ([`BytesItem`]) of every size, with a message that is never
/// shared between them.
fn message(i: usize) -> Sent {
    let cid = (i as u64) * 7919;
    let payload = || Bytes::from((0..SIZES[i % SIZES.len()]).map(|b| (b + i) as u8).collect::<Vec<u8>>());
    match i % 4 {
        0 => Sent::Msg(Msg::Yield { cid, value: payload() }),
        1 => Sent::Msg(Msg::YieldBatch { cid, items: payload() }),
        2 => Sent::Msg(Msg::Stop { cid }),
        _ => Sent::Item(BytesItem::new(cid, payload())),
    }
}

/// What the test sends.
enum Sent {
    Msg(Msg),
    Item(BytesItem),
}

impl Sent {
    async fn send(&self, tx: &actor_transport::Sender) {
        match self {
            Sent::Msg(msg) => tx.send(msg).await.expect("queued"),
            Sent::Item(item) => tx.send_bytes_item(item).await.expect("queued"),
        }
    }

    /// What the receiver gets: an item comes as the `Yield` of its data's
    /// msgpack `bin`, encoded the ordinary way.
    fn received(self) -> Msg {
        match self {
            Sent::Msg(msg) => msg,
            Sent::Item(item) => {
                let doc = rmp_serde::to_vec(&serde_bytes::Bytes::new(item.data())).expect("encodes");
                assert_eq!(doc.len(), BytesItem::doc_len(item.data().len()));
                Msg::Yield { cid: item.cid(), value: doc.into() }
            }
        }
    }
}

async fn pair(addr: &Addr, buffers: usize) -> (Stream, Stream, Listener) {
    let listener = Listener::bind(addr).await.expect("bind");
    let at = listener.local_addr();
    let (client, server) = tokio::join!(Stream::connect(at, BOUND), listener.accept());
    let (client, server) = (client.expect("connect"), server.expect("accept").0);
    // Small buffers: a write takes a few KiB at most.
    let small = |fd: std::os::fd::BorrowedFd<'_>| {
        use nix::sys::socket::{setsockopt, sockopt};
        setsockopt(&fd, sockopt::SndBuf, &buffers).expect("SO_SNDBUF");
        setsockopt(&fd, sockopt::RcvBuf, &buffers).expect("SO_RCVBUF");
    };
    for s in [&client, &server] {
        match s {
            Stream::Tcp(t) => small(t.as_fd()),
            Stream::Unix(u) => small(u.as_fd()),
            _ => unreachable!("plain sockets only"),
        }
    }
    (client, server, listener)
}

async fn interleaved_messages_arrive_whole_and_in_order(addr: Addr, buffers: usize) {
    let (client, server, _listener) = pair(&addr, buffers).await;
    let config = ChannelConfig::default();
    let (tx, _) = Channel::from_stream(client, &config).split();
    let (_, rx) = Channel::from_stream(server, &config).split();
    arrive_in_order(tx, rx).await;
}

/// Sends the messages on `tx` while `rx` starts reading late; checks each.
async fn arrive_in_order(tx: actor_transport::Sender, mut rx: actor_transport::Receiver) {
    let count = 600;
    let sending = tokio::spawn(async move {
        for i in 0..count {
            message(i).send(&tx).await;
        }
        tx.close().await;
    });
    // Late: the socket fills and the writer's writes end inside payloads.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..count {
        let got = tokio::time::timeout(BOUND, rx.recv()).await.expect("in time").expect("readable");
        assert_eq!(got, Some(message(i).received()), "message {i}");
    }
    let end = tokio::time::timeout(BOUND, rx.recv()).await.expect("in time").expect("a clean end");
    assert!(end.is_none(), "nothing after the last message: {end:?}");
    sending.await.expect("the sender finished");
}

/// A writer that takes one buffer per write (the default of `AsyncWrite`).
struct OneBufferAtATime<W>(W);

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for OneBufferAtATime<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A writer without vectored writes gets whole frames, copied as before.
#[tokio::test]
async fn over_a_writer_without_vectored_writes() {
    let (a, b) = tokio::net::UnixStream::pair().expect("pair");
    let ((ar, aw), (br, bw)) = (a.into_split(), b.into_split());
    let config = ChannelConfig::default();
    let tx = Channel::new(ar, OneBufferAtATime(aw), &config).split().0;
    let rx = Channel::new(br, bw, &config).split().1;
    arrive_in_order(tx, rx).await;
}

#[tokio::test]
async fn over_tcp() {
    // Any smaller and TCP stalls on its zero-window probes.
    interleaved_messages_arrive_whole_and_in_order(Addr::loopback(0), 32 * 1024).await;
}

#[tokio::test]
async fn over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("actor-shared-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    interleaved_messages_arrive_whole_and_in_order(Addr::Unix(dir.join("sock")), 4096).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Counts the buffers of [`tracked`] payloads still alive.
static ALIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A payload buffer that counts itself in [`ALIVE`] until dropped.
struct Tracked(Vec<u8>);

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn tracked(len: usize) -> Bytes {
    ALIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Bytes::from_owner(Tracked(vec![1u8; len]))
}

/// A queued payload holds its buffer no longer than its own write: one
/// that is in the socket is released while a larger one behind it still
/// waits for a peer that does not read.
#[tokio::test]
async fn a_written_payload_is_released_before_the_rest_is_written() {
    use std::sync::atomic::Ordering::SeqCst;
    let (a, _peer) = tokio::net::UnixStream::pair().expect("pair");
    let (r, w) = a.into_split();
    let (tx, _rx) = Channel::new(r, w, &ChannelConfig::default()).split();
    let (small, huge) = (tracked(2048), tracked(8 << 20));
    tx.send(&Msg::Yield { cid: 1, value: small }).await.expect("queued");
    tx.send(&Msg::Yield { cid: 2, value: huge }).await.expect("queued");
    // The writer takes both at once; the socket holds the small one and the
    // start of the huge one, then stays full.
    let released = async {
        while ALIVE.load(SeqCst) > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(BOUND, released).await.expect("the written payload was released");
    assert_eq!(ALIVE.load(SeqCst), 1, "the huge payload is still queued");
    tx.abort("done");
}

/// Sizes around where a reader moves on to another buffer (less than 8 KiB of
/// room left, at most 8 KiB of unread bytes carried over) and around the size
/// of a read buffer (64 KiB).
const KEPT_SIZES: [usize; 10] = [1024, 4000, 4096, 8170, 8192, 8200, 20_000, 65_520, 65_536, 70_000];

fn kept_payload(i: usize) -> Bytes {
    let len = KEPT_SIZES[i % KEPT_SIZES.len()] + i % 7;
    Bytes::from((0..len).map(|b| (b * 31 + i) as u8).collect::<Vec<u8>>())
}

/// A received payload of 1 KiB or more shares the buffer it was read into, so
/// a consumer that keeps payloads makes the reader move on to other buffers,
/// and buffers whose payloads are all dropped are reused. Kept payloads must
/// never be overwritten by a later read, whichever of them are dropped when.
#[tokio::test]
async fn kept_payloads_are_never_overwritten() {
    let (a, b) = tokio::net::UnixStream::pair().expect("pair");
    let config = ChannelConfig::default();
    let tx = Channel::from_stream(Stream::Unix(a), &config).split().0;
    let mut rx = Channel::from_stream(Stream::Unix(b), &config).split().1;
    let count = 1500;
    let sending = tokio::spawn(async move {
        for i in 0..count {
            let msg = Msg::Yield { cid: i as u64, value: kept_payload(i) };
            tx.send(&msg).await.expect("queued");
        }
        tx.close().await;
    });
    let mut kept = Vec::new();
    for i in 0..count {
        let got = tokio::time::timeout(BOUND, rx.recv()).await.expect("in time").expect("readable");
        let Some(Msg::Yield { cid, value }) = got else { panic!("message {i}: {got:?}") };
        assert_eq!((cid, &value), (i as u64, &kept_payload(i)), "message {i} as received");
        kept.push((i, value));
        // Now and then drop every other payload kept so far: their buffers
        // free up unevenly while the rest stay held.
        if i % 40 == 39 {
            let mut n = 0;
            kept.retain(|_| {
                n += 1;
                n % 2 == 0
            });
            for (j, value) in &kept {
                assert_eq!(value, &kept_payload(*j), "kept payload {j} overwritten by message {i}");
            }
        }
    }
    for (j, value) in &kept {
        assert_eq!(value, &kept_payload(*j), "kept payload {j} overwritten");
    }
    let end = tokio::time::timeout(BOUND, rx.recv()).await.expect("in time").expect("a clean end");
    assert!(end.is_none(), "nothing after the last message: {end:?}");
    sending.await.expect("the sender finished");
}
