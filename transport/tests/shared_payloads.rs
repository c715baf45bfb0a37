//! Large stream payloads are queued without being copied and written with
//! vectored writes: whatever the mix of sizes and however the writes are cut
//! (small socket buffers and a reader that starts late make most writes end
//! part-way through a payload, often twice in the same one), every message
//! arrives whole and in order.

use std::os::fd::AsFd;
use std::time::Duration;

use actor_transport::{Addr, Channel, ChannelConfig, Listener, Msg, Stream};
use bytes::Bytes;

const BOUND: Duration = Duration::from_secs(30);

/// Sizes on both sides of where payloads start to be shared (1 KiB), and of
/// msgpack's 8-, 16- and 32-bit length headers.
const SIZES: [usize; 9] = [0, 10, 255, 1023, 1024, 4096, 65_535, 65_536, 300_000];

/// The `i`th message: stream items and batches of every size, with a
/// message that is never shared between them.
fn message(i: usize) -> Msg {
    let cid = (i as u64) * 7919;
    let payload = || Bytes::from((0..SIZES[i % SIZES.len()]).map(|b| (b + i) as u8).collect::<Vec<u8>>());
    match i % 3 {
        0 => Msg::Yield { cid, value: payload() },
        1 => Msg::YieldBatch { cid, items: payload() },
        _ => Msg::Stop { cid },
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
    let (_, mut rx) = Channel::from_stream(server, &config).split();
    let count = 600;
    let sending = tokio::spawn(async move {
        for i in 0..count {
            tx.send(&message(i)).await.expect("queued");
        }
        tx.close().await;
    });
    // Late: the socket fills and the writer's writes end inside payloads.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..count {
        let got = tokio::time::timeout(BOUND, rx.recv()).await.expect("in time").expect("readable");
        assert_eq!(got.as_ref(), Some(&message(i)), "message {i}");
    }
    let end = tokio::time::timeout(BOUND, rx.recv()).await.expect("in time").expect("a clean end");
    assert!(end.is_none(), "nothing after the last message: {end:?}");
    sending.await.expect("the sender finished");
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
