//! Property tests of the frame codec: every message round-trips exactly, however
//! the byte stream is cut, and no input makes the decoder panic.

use actor_transport::codec::{decode_value, encode_frame};
use actor_transport::{
    CallKind, DEFAULT_MAX_FRAME, ErrorKind, FrameCodec, FrameError, Msg, RemoteError, Uid,
};
use actor_transport::{SpanId, TraceContext, TraceId};
use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

// ---------------------------------------------------------------------------
// Strategies.

fn text() -> impl Strategy<Value = String> {
    // Any printable Unicode, including multi-byte characters, plus the empty string.
    "\\PC{0,24}"
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..5000),
    ]
    .prop_map(Bytes::from)
}

fn uid() -> impl Strategy<Value = Uid> {
    (text(), "[0-9a-f]{0,16}").prop_map(|(name, id)| Uid { name, id })
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::Application),
        Just(ErrorKind::Panic),
        Just(ErrorKind::UnknownFunction),
        Just(ErrorKind::NotExposed),
        Just(ErrorKind::BadArguments),
        Just(ErrorKind::Cancelled),
        Just(ErrorKind::Crashed),
        Just(ErrorKind::Protocol),
        Just(ErrorKind::Group),
        Just(ErrorKind::Relayed),
    ]
}

fn call_kind() -> impl Strategy<Value = CallKind> {
    prop_oneof![Just(CallKind::Single), Just(CallKind::Stream), Just(CallKind::Context)]
}

fn remote_error_leaf() -> impl Strategy<Value = RemoteError> {
    (
        uid(),
        error_kind(),
        text(),
        text(),
        prop::collection::vec(text(), 0..4),
        prop::collection::vec(uid(), 0..4),
        prop::option::of(uid()),
    )
        .prop_map(|(src, kind, type_name, message, causes, relay_path, canceller)| RemoteError {
            src,
            kind,
            type_name,
            message,
            causes,
            relay_path,
            nested: Vec::new(),
            canceller,
        })
}

/// Remote errors nesting other remote errors, up to four levels deep.
fn remote_error() -> impl Strategy<Value = RemoteError> {
    remote_error_leaf().prop_recursive(4, 24, 4, |inner| {
        (remote_error_leaf(), prop::collection::vec(inner, 1..4)).prop_map(|(mut e, nested)| {
            e.nested = nested;
            e
        })
    })
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (any::<u32>(), uid(), payload()).prop_map(|(version, uid, nonce)| Msg::Hello { version, uid, nonce }),
        prop::option::of(payload()).prop_map(|proof| Msg::Auth { proof }),
        Just(Msg::Welcome),
        text().prop_map(|reason| Msg::Refused { reason }),
        (
            any::<u64>(),
            text(),
            call_kind(),
            payload(),
            any::<u32>(),
            any::<Option<u64>>(),
            prop::option::of(text()),
            prop::option::of((any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>()))
        )
            .prop_map(|(cid, func, kind, args, window, timeout_ms, key, trace)| Msg::Start {
                cid,
                func,
                kind,
                args,
                window,
                timeout_ms,
                key,
                // All-zero ids cannot be built (they decode as none).
                trace: trace.and_then(|(t, s, flags)| {
                    Some(TraceContext::new(TraceId::from_bytes(t)?, SpanId::from_bytes(s)?, flags))
                })
            }),
        any::<u64>().prop_map(|cid| Msg::StartAck { cid }),
        (any::<u64>(), payload()).prop_map(|(cid, value)| Msg::Started { cid, value }),
        (any::<u64>(), payload()).prop_map(|(cid, value)| Msg::Yield { cid, value }),
        any::<u64>().prop_map(|cid| Msg::Stop { cid }),
        (any::<u64>(), payload()).prop_map(|(cid, items)| Msg::YieldBatch { cid, items }),
        (any::<u64>(), payload()).prop_map(|(cid, value)| Msg::Return { cid, value }),
        (any::<u64>(), remote_error()).prop_map(|(cid, e)| Msg::Error { cid, error: Box::new(e) }),
        (any::<u64>(), uid()).prop_map(|(cid, canceller)| Msg::Cancel { cid, canceller }),
        any::<u64>().prop_map(|cid| Msg::CancelAck { cid }),
        (any::<u64>(), any::<u32>()).prop_map(|(cid, credit)| Msg::Credit { cid, credit }),
        payload().prop_map(|config| Msg::Init { config }),
        (uid(), text()).prop_map(|(canceller, reason)| Msg::CancelActor { canceller, reason }),
        Just(Msg::CancelActorAck),
        any::<u64>().prop_map(|nonce| Msg::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Msg::Pong { nonce }),
    ]
}

/// The number of `Msg` variants. The exhaustive match makes a new variant a
/// compile error here, so the strategy above cannot silently fall behind.
const VARIANTS: usize = 20;

fn variant_index(m: &Msg) -> usize {
    match m {
        Msg::Hello { .. } => 0,
        Msg::Auth { .. } => 1,
        Msg::Welcome => 2,
        Msg::Refused { .. } => 3,
        Msg::Start { .. } => 4,
        Msg::StartAck { .. } => 5,
        Msg::Started { .. } => 6,
        Msg::Yield { .. } => 7,
        Msg::Stop { .. } => 8,
        Msg::Return { .. } => 9,
        Msg::Error { .. } => 10,
        Msg::Cancel { .. } => 11,
        Msg::CancelAck { .. } => 12,
        Msg::Credit { .. } => 13,
        Msg::Init { .. } => 14,
        Msg::CancelActor { .. } => 15,
        Msg::CancelActorAck => 16,
        Msg::Ping { .. } => 17,
        Msg::Pong { .. } => 18,
        Msg::YieldBatch { .. } => 19,
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn plain_error(name: &str, kind: ErrorKind) -> RemoteError {
    RemoteError {
        src: Uid::new(name),
        kind,
        type_name: "E".into(),
        message: "boom".into(),
        causes: vec!["cause".into()],
        relay_path: Vec::new(),
        nested: Vec::new(),
        canceller: None,
    }
}

fn encode(msg: &Msg) -> BytesMut {
    let mut b = BytesMut::new();
    encode_frame(msg, DEFAULT_MAX_FRAME, &mut b).expect("every message encodes");
    b
}

/// Feeds `input` to a fresh decoder in the given chunk sizes (cycled), decoding
/// after each chunk and at EOF. Returns the messages and the first error.
fn decode_chunked(input: &[u8], chunks: &[usize], max_frame: usize) -> (Vec<Msg>, Option<FrameError>) {
    let mut codec = FrameCodec::<Msg>::new(max_frame);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = chunks.iter().copied().filter(|n| *n > 0).cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(m)) => out.push(m),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(m in msg()) {
        let mut buf = encode(&m);
        let announced = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        prop_assert_eq!(announced + 4, buf.len());
        let mut codec = FrameCodec::<Msg>::default();
        let back = codec.decode(&mut buf);
        prop_assert!(matches!(&back, Ok(Some(x)) if *x == m), "{:?} came back as {:?}", m, back);
        prop_assert!(buf.is_empty());
        prop_assert!(matches!(codec.decode_eof(&mut buf), Ok(None)));
    }

    #[test]
    fn message_sequences_survive_any_chunking(
        msgs in prop::collection::vec(msg(), 1..12),
        chunks in prop::collection::vec(1usize..300, 1..20),
    ) {
        let mut all = Vec::new();
        for m in &msgs {
            all.extend_from_slice(&encode(m));
        }
        let (out, err) = decode_chunked(&all, &chunks, DEFAULT_MAX_FRAME);
        prop_assert!(err.is_none(), "error {:?}", err);
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn remote_errors_keep_their_nesting(e in remote_error(), cid in any::<u64>()) {
        let m = Msg::Error { cid, error: Box::new(e.clone()) };
        let (out, err) = decode_chunked(&encode(&m), &[7], DEFAULT_MAX_FRAME);
        prop_assert!(err.is_none());
        match out.as_slice() {
            [Msg::Error { cid: c, error }] => {
                prop_assert_eq!(*c, cid);
                prop_assert_eq!(&**error, &e);
            }
            other => prop_assert!(false, "decoded {:?}", other),
        }
    }

    #[test]
    fn oversized_outgoing_messages_leave_the_buffer_alone(m in msg(), max in 0usize..64) {
        let full = encode(&m);
        let mut buf = BytesMut::from(&b"prefix"[..]);
        match encode_frame(&m, max, &mut buf) {
            Ok(()) => prop_assert!(full.len() - 4 <= max),
            Err(FrameError::TooLarge { len, max: got }) => {
                prop_assert_eq!(len, full.len() - 4);
                prop_assert_eq!(got, max);
                prop_assert_eq!(&buf[..], b"prefix");
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    /// Arbitrary bytes: the decoder returns messages or a typed error, never panics.
    #[test]
    fn arbitrary_bytes_never_panic(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        chunks in prop::collection::vec(1usize..64, 1..8),
        max in prop_oneof![Just(DEFAULT_MAX_FRAME), 0usize..512],
    ) {
        let (_, err) = decode_chunked(&input, &chunks, max);
        if let Some(e) = err {
            prop_assert!(matches!(
                e,
                FrameError::TooLarge { .. } | FrameError::Truncated { .. } | FrameError::Decode(_)
            ), "{:?}", e);
        }
    }

    /// Arbitrary payloads behind a correct length prefix reach the msgpack parser.
    #[test]
    fn arbitrary_payloads_never_panic(payload in prop::collection::vec(any::<u8>(), 0..1024)) {
        let mut buf = BytesMut::new();
        buf.put_u32(u32::try_from(payload.len()).expect("small"));
        buf.extend_from_slice(&payload);
        let res = FrameCodec::<Msg>::default().decode(&mut buf);
        prop_assert!(matches!(res, Ok(Some(_)) | Err(FrameError::Decode(_))), "{:?}", res);
        let _ = decode_value::<Msg>(&payload);
    }

    /// Valid frames with a few bytes changed: the nastiest inputs for a parser.
    #[test]
    fn mutated_frames_never_panic(
        m in msg(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        chunks in prop::collection::vec(1usize..64, 1..4),
    ) {
        let mut bytes = encode(&m).to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = decode_chunked(&bytes, &chunks, DEFAULT_MAX_FRAME);
        let _ = decode_chunked(&bytes, &chunks, 64);
    }
}

#[test]
fn the_strategy_generates_every_variant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut seen = [false; VARIANTS];
    let mut runner = TestRunner::deterministic();
    let strategy = msg();
    for _ in 0..2000 {
        let m = strategy.new_tree(&mut runner).expect("generate").current();
        seen[variant_index(&m)] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|i| !seen[*i]).collect();
    assert!(missing.is_empty(), "variants never generated: {missing:?}");
}

#[test]
fn deeply_nested_errors_round_trip_within_the_depth_limit() {
    // A relay chain 24 actors long. Each level costs two msgpack nesting levels
    // (the struct and its `nested` list) against the decoder's limit of 64, so
    // today a chain of 31 relays is refused as `Decode(DepthLimitExceeded)`.
    let mut e = plain_error("origin", ErrorKind::Application);
    for i in 0..24 {
        let mut outer = plain_error(&format!("relay{i}"), ErrorKind::Relayed);
        outer.nested.push(e);
        e = outer;
    }
    let m = Msg::Error { cid: 1, error: Box::new(e) };
    let (out, err) = decode_chunked(&encode(&m), &[1000], DEFAULT_MAX_FRAME);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(out, vec![m]);
}
