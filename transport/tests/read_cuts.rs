//! The receiver decodes the same messages however the bytes are cut into
//! reads, whichever received payloads the consumer keeps or drops, and
//! whichever receives it cancels: read buffers are traded for recycled ones
//! and partial frames carried over under all of these.

use std::time::Duration;

use actor_transport::codec::encode_frame;
use actor_transport::{Channel, ChannelConfig, DEFAULT_MAX_FRAME, Msg, Stream};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::AsyncWriteExt;

const BOUND: Duration = Duration::from_secs(60);

/// xorshift64: reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn within(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64) as usize
    }
}

/// Payload sizes clustered where the reader changes behaviour: 1 KiB (shared
/// or copied), 8 KiB (carried), half a buffer (may grow), a buffer.
fn size(rng: &mut Rng) -> usize {
    match rng.below(6) {
        0 => rng.within(0, 1100),
        1 => rng.within(1000, 9000),
        2 => rng.within(8000, 33_000),
        3 => rng.within(32_700, 32_800),
        4 => rng.within(60_000, 68_000),
        _ => rng.within(0, 200_000),
    }
}

fn message(seed: u64, i: usize, len: usize) -> Msg {
    let value =
        Bytes::from((0..len).map(|b| (b as u64 * 31 + seed * 7 + i as u64) as u8).collect::<Vec<u8>>());
    let cid = i as u64;
    match i % 5 {
        0..=2 => Msg::Yield { cid, value },
        3 => Msg::YieldBatch { cid, items: value },
        _ => Msg::Stop { cid },
    }
}

async fn one_stream(seed: u64, count: usize) {
    let (a, b) = tokio::net::UnixStream::pair().expect("pair");
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let sent: Vec<Msg> = (0..count).map(|i| message(seed, i, size(&mut rng))).collect();
    let mut wire = BytesMut::new();
    for msg in &sent {
        encode_frame(msg, DEFAULT_MAX_FRAME, &mut wire).expect("encodes");
    }
    let writer = tokio::spawn(async move {
        let (mut a, mut wire, mut rng) = (a, wire.freeze(), Rng(seed ^ 0xABCD_EF01));
        while !wire.is_empty() {
            let cut = match rng.below(4) {
                0 => rng.within(1, 17),
                1 => rng.within(1, 5000),
                2 => rng.within(1, 70_000),
                _ => 4096,
            };
            let part = wire.split_to(cut.min(wire.len()));
            a.write_all(&part).await.expect("written");
            if rng.below(8) == 0 {
                tokio::task::yield_now().await;
            }
        }
        a.shutdown().await.expect("shut down");
    });
    let mut rx = Channel::from_stream(Stream::Unix(b), &ChannelConfig::default()).split().1;
    let mut rng = Rng(seed ^ 0x1234_5678);
    let mut kept = Vec::new();
    for i in 0..count {
        // One receive in three is tried once and dropped if not ready.
        let early = if rng.below(3) == 0 { rx.recv().now_or_never() } else { None };
        let got = match early {
            Some(got) => got,
            None => tokio::time::timeout(BOUND, rx.recv()).await.expect("in time"),
        };
        let got = got.expect("readable").expect("a message");
        assert_eq!(got, sent[i], "seed {seed}, message {i}");
        kept.push((i, got));
        if rng.below(4) == 0 {
            kept.retain(|_| rng.below(3) != 0);
            for (j, m) in &kept {
                assert_eq!(m, &sent[*j], "seed {seed}: kept {j} changed by {i}");
            }
        }
    }
    let end = tokio::time::timeout(BOUND, rx.recv()).await.expect("in time").expect("a clean end");
    assert!(end.is_none(), "nothing after the last message");
    drop(rx);
    for (j, m) in &kept {
        assert_eq!(m, &sent[*j], "seed {seed}: kept {j} changed after the end");
    }
    writer.await.expect("the writer finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_messages_under_every_cut() {
    let streams: Vec<_> = (1..=12u64).map(|seed| tokio::spawn(one_stream(seed, 300))).collect();
    for stream in streams {
        tokio::time::timeout(BOUND, stream).await.expect("in time").expect("passed");
    }
}
