//! Feeds arbitrary bytes to `FrameCodec<Msg>` the way a socket would: in chunks,
//! decoding after each chunk until the decoder asks for more, then at EOF.
//!
//! The decoder must never panic, never allocate more than the frame limit allows,
//! and every message it accepts must survive a re-encode/decode round trip.
//!
//! Input layout: byte 0 picks the chunk size (1..=256), byte 1 picks the frame
//! limit (a small one, to exercise `TooLarge`, or the default), the rest is the
//! byte stream.
#![no_main]

use actor_transport::codec::encode_frame;
use actor_transport::{DEFAULT_MAX_FRAME, FrameCodec, FrameError, Msg};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let (chunk, max_frame, stream) = match data {
        [c, m, rest @ ..] => {
            let max = if m & 1 == 0 { DEFAULT_MAX_FRAME } else { usize::from(*m) * 16 };
            (usize::from(*c) + 1, max, rest)
        }
        _ => (1, DEFAULT_MAX_FRAME, data),
    };
    let mut codec = FrameCodec::<Msg>::new(max_frame);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    let mut failed = false;
    'feed: for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(m)) => decoded.push(m),
                Ok(None) => break,
                Err(e) => {
                    check_error(&e, max_frame);
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    if !failed {
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(m)) => decoded.push(m),
                Ok(None) => break,
                Err(e) => {
                    check_error(&e, max_frame);
                    break;
                }
            }
        }
    }
    for m in decoded {
        let mut again = BytesMut::new();
        encode_frame(&m, usize::MAX, &mut again).expect("a decoded message re-encodes");
        let back = FrameCodec::<Msg>::new(usize::MAX).decode(&mut again).expect("re-encoded frame decodes");
        assert_eq!(back.as_ref(), Some(&m), "re-encoded message differs");
        assert!(again.is_empty());
    }
});

fn check_error(e: &FrameError, max_frame: usize) {
    match e {
        FrameError::TooLarge { len, max } => assert!(*len > max_frame && *max == max_frame),
        FrameError::Truncated { have, need } => assert!(have < need),
        FrameError::Decode(_) => {}
        other => panic!("a decoder on bytes in memory reported {other:?}"),
    }
}
