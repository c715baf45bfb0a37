//! Length-prefixed msgpack frames.
//!
//! A frame is a 4-byte big-endian payload length followed by one msgpack
//! document. The length is checked against the maximum before any buffer is
//! reserved for the payload, so a hostile prefix cannot make us allocate.

use std::io;
use std::marker::PhantomData;

use std::any::{Any, TypeId};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder};

use crate::wire::{BytesItem, Msg};

/// The default maximum payload size of one frame: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// How deeply msgpack documents may nest; deeper input is refused, so a small
/// hostile frame cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

const HEAD: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix (or an outgoing message) exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced or encoded length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame ({have} of {need} bytes received)")]
    Truncated {
        /// Bytes of the frame received (prefix included).
        have: usize,
        /// Bytes the frame needed (prefix included; 4 if the prefix itself was cut).
        need: usize,
    },
    /// The payload is not a valid msgpack document of the expected shape.
    #[error("undecodable message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The outgoing message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// A tokio-util codec for frames carrying values of type `T`.
#[derive(Debug)]
pub struct FrameCodec<T> {
    max_frame: usize,
    state: State,
    /// The largest payload announced since [`FrameCodec::restart_largest`]:
    /// tells a reader whether its buffer may have grown.
    largest: usize,
    _marker: PhantomData<fn() -> T>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Head,
    Data(usize),
}

impl<T> FrameCodec<T> {
    /// A codec refusing payloads larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameCodec { max_frame, state: State::Head, largest: 0, _marker: PhantomData }
    }

    /// The configured maximum payload size.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Changes the maximum payload size for frames whose length prefix has not
    /// been read yet (a frame already announced keeps the limit it passed).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// The largest payload announced since the last
    /// [`restart_largest`](Self::restart_largest).
    pub(crate) fn largest(&self) -> usize {
        self.largest
    }

    /// Whether `unread`, the bytes read but not decoded yet, are only the
    /// start of one frame whose payload is at most `max` bytes: all a reader
    /// must keep before it can decode again.
    pub(crate) fn holds_part_of_one_frame(&self, unread: &[u8], max: usize) -> bool {
        match self.state {
            State::Data(n) => unread.len() < n && n <= max,
            State::Head => match unread.first_chunk::<HEAD>() {
                None => true,
                Some(head) => {
                    let n = u32::from_be_bytes(*head) as usize;
                    unread.len() < HEAD + n && n <= max
                }
            },
        }
    }

    /// Starts a new tally of [`largest`](Self::largest), counting the frame
    /// being read now: its bytes go on into the next buffer.
    pub(crate) fn restart_largest(&mut self) {
        self.largest = match self.state {
            State::Data(n) => n,
            State::Head => 0,
        };
    }
}

impl<T> Default for FrameCodec<T> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

/// Decodes one msgpack document with the nesting limit used on the wire.
///
/// # Errors
///
/// [`FrameError::Decode`] if `bytes` is not a document of type `T`.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_DEPTH);
    Ok(T::deserialize(&mut de)?)
}

/// Appends one frame holding `item` to `dst`, leaving `dst` unchanged on error.
///
/// # Errors
///
/// [`FrameError::Encode`] if serialization fails, [`FrameError::TooLarge`] if the
/// payload exceeds `max_frame`.
pub fn encode_frame<T: Serialize + ?Sized>(
    item: &T,
    max_frame: usize,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u32(0);
    let mut ser = rmp_serde::Serializer::new(dst.writer());
    let res = item.serialize(&mut ser);
    let dst = ser.into_inner().into_inner();
    if let Err(e) = res {
        dst.truncate(start);
        return Err(e.into());
    }
    let len = dst.len() - start - HEAD;
    if len > max_frame {
        dst.truncate(start);
        return Err(FrameError::TooLarge { len, max: max_frame });
    }
    // The check above bounds len by max_frame, which callers keep far below 4 GiB.
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max: max_frame })?;
    dst[start..start + HEAD].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// Stream item payloads at least this large are written from where they are
/// ([`encode_frame_sharing`]) instead of being copied into the write buffer.
pub const WRITE_SHARED_AT: usize = 1024;

/// As [`encode_frame`] for a [`Msg`], except that the payload of a stream
/// item message (`Yield`, `YieldBatch`) of at least 1 KiB is not copied: the
/// frame's head is appended to `dst` and the payload returned, to be
/// written right behind it. The bytes on the wire are the same either way.
///
/// # Errors
///
/// As [`encode_frame`].
pub fn encode_frame_sharing(
    msg: &Msg,
    max_frame: usize,
    dst: &mut BytesMut,
) -> Result<Option<Bytes>, FrameError> {
    let (head, cid, payload) = match msg {
        Msg::Yield { cid, value } if value.len() >= WRITE_SHARED_AT => (YIELD_HEAD, *cid, value),
        Msg::YieldBatch { cid, items } if items.len() >= WRITE_SHARED_AT => (BATCH_HEAD, *cid, items),
        _ => return encode_frame(msg, max_frame, dst).map(|()| None),
    };
    put_item_head(dst, head, cid, &[payload.len()], payload.len(), max_frame)?;
    Ok(Some(payload.clone()))
}

/// Appends the head of `item`'s frame to `dst`: everything but its data,
/// which must be written right behind it. Leaves `dst` unchanged on error.
///
/// # Errors
///
/// [`FrameError::TooLarge`] if the frame would exceed `max_frame`.
pub(crate) fn encode_bytes_item_head(
    item: &BytesItem,
    max_frame: usize,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let n = item.data().len();
    put_item_head(dst, YIELD_HEAD, item.cid(), &[BytesItem::doc_len(n), n], n, max_frame)
}

/// Appends the head of an item frame: its length, `head`, `cid`, and a `bin`
/// header for each length of `bins`, outermost first, for a frame that ends
/// with `rest` more bytes written behind it. Leaves `dst` unchanged on error.
fn put_item_head(
    dst: &mut BytesMut,
    head: &[u8],
    cid: u64,
    bins: &[usize],
    rest: usize,
    max_frame: usize,
) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u32(0);
    dst.extend_from_slice(head);
    put_uint(dst, cid);
    for &bin in bins {
        // Longer than 4 GiB fails the frame limit below, which is far smaller.
        put_bin_len(dst, u32::try_from(bin).unwrap_or(u32::MAX));
    }
    let len = dst.len() - start - HEAD + rest;
    if len > max_frame {
        dst.truncate(start);
        return Err(FrameError::TooLarge { len, max: max_frame });
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max: max_frame })?;
    dst[start..start + HEAD].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// Appends `n` as msgpack writes an unsigned integer: in as few bytes as hold it.
fn put_uint(dst: &mut BytesMut, n: u64) {
    let (marker, width) = match n {
        0..=0x7f => return dst.put_u8(n as u8),
        0x80..=0xff => (0xcc, 1),
        0x100..=0xffff => (0xcd, 2),
        0x1_0000..=0xffff_ffff => (0xce, 4),
        _ => (0xcf, 8),
    };
    dst.put_u8(marker);
    dst.put_uint(n, width);
}

/// Appends the header of a msgpack `bin` of `len` bytes, as msgpack writes it.
fn put_bin_len(dst: &mut BytesMut, len: u32) {
    let (marker, width) = match len {
        0..=0xff => (0xc4, 1),
        0x100..=0xffff => (0xc5, 2),
        _ => (0xc6, 4),
    };
    dst.put_u8(marker);
    dst.put_uint(u64::from(len), width);
}

/// Frames at least this large are split off the read buffer and shared rather
/// than decoded in place, so a large stream item reaches the application
/// without being copied. Smaller ones are cheaper to copy than to share.
const SHARE_AT: usize = 1024;

/// The canonical encoding of a `Msg::Yield` up to its call id.
const YIELD_HEAD: &[u8] = b"\x81\xa5Yield\x92";

/// The canonical encoding of a `Msg::YieldBatch` up to its call id.
const BATCH_HEAD: &[u8] = b"\x81\xaaYieldBatch\x92";

/// Reads a msgpack unsigned integer; returns it and its encoded length.
fn read_uint(b: &[u8]) -> Option<(u64, usize)> {
    let be = |n: usize| b.get(1..1 + n).map(|d| d.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)));
    match *b.first()? {
        x @ 0x00..=0x7f => Some((u64::from(x), 1)),
        0xcc => Some((be(1)?, 2)),
        0xcd => Some((be(2)?, 3)),
        0xce => Some((be(4)?, 5)),
        0xcf => Some((be(8)?, 9)),
        _ => None,
    }
}

/// Reads a msgpack `bin` header; returns the payload length and header length.
pub(crate) fn read_bin_len(b: &[u8]) -> Option<(usize, usize)> {
    let be = |n: usize| b.get(1..1 + n).map(|d| d.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)));
    match *b.first()? {
        0xc4 => Some((be(1)?, 2)),
        0xc5 => Some((be(2)?, 3)),
        0xc6 => Some((be(4)?, 5)),
        _ => None,
    }
}

/// If `doc` is exactly one msgpack `bin`, its payload: `doc` itself with the
/// header skipped, so nothing is copied or allocated. Anything else comes
/// back unchanged as the error.
///
/// # Errors
///
/// `doc`, when it is not exactly one `bin`.
pub fn bin_payload(mut doc: Bytes) -> Result<Bytes, Bytes> {
    match read_bin_len(&doc) {
        Some((len, head)) if doc.len() == head + len => {
            doc.advance(head);
            Ok(doc)
        }
        _ => Err(doc),
    }
}

/// Which of the two item messages a frame holds.
#[derive(Clone, Copy)]
enum ItemKind {
    Yield,
    Batch,
}

impl ItemKind {
    fn msg(self, cid: u64, value: Bytes) -> Msg {
        match self {
            ItemKind::Yield => Msg::Yield { cid, value },
            ItemKind::Batch => Msg::YieldBatch { cid, items: value },
        }
    }
}

/// Where a canonically encoded `Msg::Yield` or `Msg::YieldBatch` keeps its
/// parts: which it is, its call id and the range of its `bin` field in
/// `frame`; `None` for anything else (which then takes the general path).
fn yield_parts(frame: &[u8]) -> Option<(ItemKind, u64, std::ops::Range<usize>)> {
    let (kind, rest, skip) = match frame.strip_prefix(YIELD_HEAD) {
        Some(rest) => (ItemKind::Yield, rest, YIELD_HEAD.len()),
        None => (ItemKind::Batch, frame.strip_prefix(BATCH_HEAD)?, BATCH_HEAD.len()),
    };
    let (cid, used) = read_uint(rest)?;
    let at = skip + used;
    let (len, head) = read_bin_len(&frame[at..])?;
    (frame.len() == at + head + len).then_some((kind, cid, at + head..frame.len()))
}

/// Decodes a canonically encoded item message without copying its items.
fn shared_yield(frame: &Bytes) -> Option<Msg> {
    let (kind, cid, value) = yield_parts(frame)?;
    Some(kind.msg(cid, frame.slice(value)))
}

/// Decodes a canonically encoded item message by copying its items out:
/// for small frames, where the general decoder's work is most of the cost.
fn copied_yield(frame: &[u8]) -> Option<Msg> {
    let (kind, cid, value) = yield_parts(frame)?;
    Some(kind.msg(cid, Bytes::copy_from_slice(&frame[value])))
}

/// `msg` as a `T`, when `T` is `Msg`.
fn as_item<T: 'static>(msg: Option<Msg>) -> Option<T> {
    let mut msg = msg;
    (&mut msg as &mut dyn Any).downcast_mut::<Option<T>>().and_then(Option::take)
}

impl<T: DeserializeOwned + 'static> Decoder for FrameCodec<T> {
    type Item = T;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, FrameError> {
        let n = match self.state {
            State::Head => {
                if src.len() < HEAD {
                    return Ok(None);
                }
                let n = src.get_u32() as usize;
                if n > self.max_frame {
                    return Err(FrameError::TooLarge { len: n, max: self.max_frame });
                }
                self.state = State::Data(n);
                self.largest = self.largest.max(n);
                n
            }
            State::Data(n) => n,
        };
        if src.len() < n {
            // No reservation for the announced length: the buffer grows only
            // with bytes that actually arrive, so a peer that announces large
            // frames and trickles (a thousand of them, before authenticating)
            // costs what it sends, not what it claims.
            return Ok(None);
        }
        self.state = State::Head;
        // Stream items are most of the traffic: a canonical `Yield` or
        // `YieldBatch` is read by hand, without the general decoder.
        if TypeId::of::<T>() == TypeId::of::<Msg>() {
            if n >= SHARE_AT {
                let frame = src.split_to(n).freeze();
                if let Some(item) = as_item(shared_yield(&frame)) {
                    return Ok(Some(item));
                }
                return decode_value(&frame).map(Some);
            }
            if let Some(item) = as_item(copied_yield(&src[..n])) {
                src.advance(n);
                return Ok(Some(item));
            }
        }
        // Decode in place, then drop the payload: cheaper than `split_to`, which
        // turns the buffer into a shared one and costs two atomic operations and
        // a handle per frame.
        let res = decode_value(&src[..n]);
        src.advance(n);
        res.map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<T>, FrameError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        match self.state {
            State::Head if src.is_empty() => Ok(None),
            State::Head => Err(FrameError::Truncated { have: src.len(), need: HEAD }),
            State::Data(n) => Err(FrameError::Truncated { have: HEAD + src.len(), need: HEAD + n }),
        }
    }
}

impl<T: Serialize> Encoder<&T> for FrameCodec<T> {
    type Error = FrameError;

    fn encode(&mut self, item: &T, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(item, self.max_frame, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Msg, Uid};

    fn frame(msg: &Msg) -> BytesMut {
        let mut b = BytesMut::new();
        encode_frame(msg, DEFAULT_MAX_FRAME, &mut b).unwrap();
        b
    }

    #[test]
    fn decodes_frames_split_at_every_byte() {
        let msgs = vec![
            Msg::Welcome,
            Msg::Yield { cid: 7, value: vec![1u8; 300].into() },
            Msg::Hello { version: 1, uid: Uid::new("a"), nonce: vec![9u8; 32].into() },
        ];
        let mut all = BytesMut::new();
        for m in &msgs {
            all.extend_from_slice(&frame(m));
        }
        for split in 0..all.len() {
            let mut codec = FrameCodec::<Msg>::default();
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for chunk in [&all[..split], &all[split..]] {
                buf.extend_from_slice(chunk);
                while let Some(m) = codec.decode(&mut buf).unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, msgs, "split at {split}");
        }
    }

    #[test]
    fn the_largest_announced_frame_is_tallied_until_restarted() {
        let mut codec = FrameCodec::<Msg>::new(1 << 20);
        let big = frame(&Msg::Yield { cid: 1, value: vec![1u8; 5000].into() });
        let small = frame(&Msg::Stop { cid: 2 });
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&big);
        buf.extend_from_slice(&small);
        assert!(codec.decode(&mut buf).expect("decodes").is_some());
        assert!(codec.decode(&mut buf).expect("decodes").is_some());
        assert_eq!(codec.largest(), big.len() - 4);
        codec.restart_largest();
        assert_eq!(codec.largest(), 0);
        // Restarted halfway through a frame: that frame still counts.
        buf.extend_from_slice(&big[..100]);
        assert!(codec.decode(&mut buf).expect("waits").is_none());
        codec.restart_largest();
        assert_eq!(codec.largest(), big.len() - 4);
    }

    #[test]
    fn a_partial_frame_is_told_from_whole_ones() {
        let mut codec = FrameCodec::<Msg>::new(1 << 20);
        let big = frame(&Msg::Yield { cid: 1, value: vec![1u8; 5000].into() });
        let n = big.len() - 4;
        assert!(codec.holds_part_of_one_frame(&[], n));
        assert!(codec.holds_part_of_one_frame(&big[..3], n), "a head cut short");
        assert!(codec.holds_part_of_one_frame(&big[..100], n));
        assert!(!codec.holds_part_of_one_frame(&big[..100], n - 1), "longer than allowed");
        assert!(!codec.holds_part_of_one_frame(&big, n), "a whole frame");
        // The head already decoded: only payload bytes are left unread.
        let mut buf = BytesMut::from(&big[..100]);
        assert!(codec.decode(&mut buf).expect("waits").is_none());
        assert!(codec.holds_part_of_one_frame(&buf, n));
        assert!(!codec.holds_part_of_one_frame(&buf, n - 1));
        buf.extend_from_slice(&big[100..]);
        assert!(!codec.holds_part_of_one_frame(&buf, n), "the payload is whole");
    }

    #[test]
    fn oversized_prefix_fails_before_allocating() {
        let mut codec = FrameCodec::<Msg>::new(1024);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 0xffff_ffff, max: 1024 }));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn oversized_outgoing_message_is_refused_and_buffer_kept() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let msg = Msg::Yield { cid: 1, value: vec![0u8; 2000].into() };
        let err = encode_frame(&msg, 1000, &mut buf).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 1000, .. }));
        assert_eq!(&buf[..], b"keep");
    }

    #[test]
    fn truncation_is_reported_at_eof() {
        let full = frame(&Msg::Welcome);
        let mut codec = FrameCodec::<Msg>::default();
        let mut head_only = BytesMut::from(&full[..2]);
        assert!(matches!(codec.decode_eof(&mut head_only), Err(FrameError::Truncated { have: 2, need: 4 })));
        let long = frame(&Msg::Yield { cid: 1, value: vec![0u8; 100].into() });
        let mut codec = FrameCodec::<Msg>::default();
        let mut part = BytesMut::from(&long[..50]);
        assert!(matches!(codec.decode_eof(&mut part), Err(FrameError::Truncated { have: 50, .. })));
    }

    #[test]
    fn wrong_shape_and_garbage_are_decode_errors() {
        let mut wrong = BytesMut::new();
        encode_frame(&("not", "a", "message"), DEFAULT_MAX_FRAME, &mut wrong).unwrap();
        let mut codec = FrameCodec::<Msg>::default();
        assert!(matches!(codec.decode(&mut wrong), Err(FrameError::Decode(_))));

        let mut garbage = BytesMut::from(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1][..]);
        let mut codec = FrameCodec::<Msg>::default();
        assert!(matches!(codec.decode(&mut garbage), Err(FrameError::Decode(_))));
    }

    #[test]
    fn large_yields_are_shared_and_equal_to_the_general_decoding() {
        for (cid, len) in [(0u64, 1024usize), (127, 5000), (128, 70_000), (70_000, 2000), (u64::MAX, 1500)] {
            let msg = Msg::Yield { cid, value: vec![7u8; len].into() };
            let mut buf = frame(&msg);
            let mut codec = FrameCodec::<Msg>::default();
            let decoded = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(decoded, msg);
            let payload = rmp_serde::to_vec(&msg).unwrap();
            assert_eq!(shared_yield(&Bytes::from(payload.clone())), Some(msg.clone()));
            assert_eq!(decode_value::<Msg>(&payload).unwrap(), msg);
        }
        // Not a yield, or not canonical: the general path decides.
        let other = Msg::Return { cid: 1, value: vec![1u8; 4000].into() };
        assert_eq!(shared_yield(&Bytes::from(rmp_serde::to_vec(&other).unwrap())), None);
        let mut buf = frame(&other);
        assert_eq!(FrameCodec::<Msg>::default().decode(&mut buf).unwrap(), Some(other));
        let mut truncated = rmp_serde::to_vec(&Msg::Yield { cid: 1, value: vec![0u8; 2000].into() }).unwrap();
        truncated.pop();
        assert_eq!(shared_yield(&Bytes::from(truncated)), None);
    }

    /// `msg` and a `Stop` in frames back to back: each read whole, nothing
    /// left over.
    fn read_whole_before_a_stop(msg: Msg, cid: u64) {
        let mut buf = frame(&msg);
        buf.extend_from_slice(&frame(&Msg::Stop { cid }));
        let mut codec = FrameCodec::<Msg>::default();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(Msg::Stop { cid }));
        assert!(buf.is_empty());
    }

    #[test]
    fn small_yields_are_read_by_hand_and_equal_to_the_general_decoding() {
        for (cid, len) in [(0u64, 0usize), (1, 1), (127, 64), (128, 255), (65_536, 256), (u64::MAX, 1023)] {
            let msg = Msg::Yield { cid, value: vec![9u8; len].into() };
            let payload = rmp_serde::to_vec(&msg).unwrap();
            assert_eq!(copied_yield(&payload), Some(msg.clone()));
            assert_eq!(decode_value::<Msg>(&payload).unwrap(), msg);
            read_whole_before_a_stop(msg, cid);
        }
        // A bin that claims more than the frame holds, or less: the general
        // path decides (and refuses the first).
        let mut short = rmp_serde::to_vec(&Msg::Yield { cid: 3, value: vec![0u8; 10].into() }).unwrap();
        short.pop();
        assert_eq!(copied_yield(&short), None);
        let mut long = rmp_serde::to_vec(&Msg::Yield { cid: 3, value: vec![0u8; 10].into() }).unwrap();
        long.push(0);
        assert_eq!(copied_yield(&long), None);
    }

    #[test]
    fn batches_are_read_by_hand_shared_or_copied_and_equal_to_the_general_decoding() {
        for (cid, len) in [(0u64, 3usize), (127, 900), (128, 1024), (u64::MAX, 70_000)] {
            let msg = Msg::YieldBatch { cid, items: vec![4u8; len].into() };
            let payload = rmp_serde::to_vec(&msg).unwrap();
            assert_eq!(shared_yield(&Bytes::from(payload.clone())), Some(msg.clone()));
            assert_eq!(copied_yield(&payload), Some(msg.clone()));
            assert_eq!(decode_value::<Msg>(&payload).unwrap(), msg);
            read_whole_before_a_stop(msg, cid);
        }
        let mut cut = rmp_serde::to_vec(&Msg::YieldBatch { cid: 1, items: vec![0u8; 10].into() }).unwrap();
        cut.pop();
        assert_eq!(copied_yield(&cut), None);
    }

    #[test]
    fn bin_payload_takes_exactly_one_bin() {
        let doc = Bytes::from(rmp_serde::to_vec(&serde_bytes::Bytes::new(&[1, 2, 3])).unwrap());
        assert_eq!(bin_payload(doc).as_deref(), Ok(&[1u8, 2, 3][..]));
        let short = Bytes::from_static(b"\xc4\x05\x01");
        assert_eq!(bin_payload(short.clone()), Err(short));
        let not_bin = Bytes::from_static(b"\x01");
        assert_eq!(bin_payload(not_bin.clone()), Err(not_bin));
    }

    #[test]
    fn a_shared_payload_frames_exactly_as_the_general_encoder() {
        let cids = [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        for len in [1024, 4096, 65_535, 65_536, 70_000] {
            let payload = Bytes::from(vec![7u8; len]);
            for cid in cids {
                for msg in [
                    Msg::Yield { cid, value: payload.clone() },
                    Msg::YieldBatch { cid, items: payload.clone() },
                ] {
                    let mut general = BytesMut::from(&b"before"[..]);
                    encode_frame(&msg, DEFAULT_MAX_FRAME, &mut general).unwrap();
                    let mut shared = BytesMut::from(&b"before"[..]);
                    let rest = encode_frame_sharing(&msg, DEFAULT_MAX_FRAME, &mut shared).unwrap();
                    let rest = rest.expect("a payload this large is shared");
                    assert_eq!(rest.as_ptr(), payload.as_ptr(), "shared, not copied");
                    shared.extend_from_slice(&rest);
                    assert_eq!(shared, general, "{} of cid {cid} and {len} bytes", msg.name());
                }
            }
        }
    }

    #[test]
    fn an_item_from_its_own_buffer_frames_exactly_as_the_yield_of_its_bin() {
        for len in [0, 1, 253, 254, 255, 256, 1024, 65_531, 65_532, 65_535, 65_536, 70_000] {
            let data = Bytes::from(vec![9u8; len]);
            for cid in [0, 127, 128, 65_536, u64::MAX] {
                let doc = rmp_serde::to_vec(&serde_bytes::Bytes::new(&data)).unwrap();
                assert_eq!(doc.len(), BytesItem::doc_len(len), "document of {len} bytes");
                let mut general = BytesMut::from(&b"before"[..]);
                encode_frame(&Msg::Yield { cid, value: doc.into() }, DEFAULT_MAX_FRAME, &mut general)
                    .unwrap();
                let mut head = BytesMut::from(&b"before"[..]);
                encode_bytes_item_head(&BytesItem::new(cid, data.clone()), DEFAULT_MAX_FRAME, &mut head)
                    .unwrap();
                head.extend_from_slice(&data);
                assert_eq!(head, general, "cid {cid}, {len} bytes");
            }
        }
        // The limit counts the data written behind the head.
        let item = BytesItem::new(3, Bytes::from(vec![1u8; 4096]));
        refused_whole(|dst| encode_bytes_item_head(&item, 4096, dst));
    }

    /// Encodes with `encode` and a limit of 4096 bytes into a buffer already
    /// holding something: refused as too large, and nothing of it is left.
    fn refused_whole<T: std::fmt::Debug>(encode: impl FnOnce(&mut BytesMut) -> Result<T, FrameError>) {
        let mut dst = BytesMut::from(&b"kept"[..]);
        let e = encode(&mut dst).unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { max: 4096, .. }), "{e}");
        assert_eq!(&dst[..], b"kept");
    }

    #[test]
    fn small_or_other_messages_are_framed_whole_and_limits_hold_for_shared_ones() {
        for msg in [Msg::Yield { cid: 3, value: Bytes::from(vec![1u8; 1023]) }, Msg::Stop { cid: 3 }] {
            let (mut general, mut shared) = (BytesMut::new(), BytesMut::new());
            encode_frame(&msg, DEFAULT_MAX_FRAME, &mut general).unwrap();
            assert!(encode_frame_sharing(&msg, DEFAULT_MAX_FRAME, &mut shared).unwrap().is_none());
            assert_eq!(shared, general);
        }
        // Over the limit: refused, and nothing of it is left in the buffer.
        let big = Msg::Yield { cid: 3, value: Bytes::from(vec![1u8; 4096]) };
        refused_whole(|dst| encode_frame_sharing(&big, 4096, dst));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // 10,000 nested one-element arrays: 0x91 repeated, then nil.
        let mut payload = vec![0x91u8; 10_000];
        payload.push(0xc0);
        let mut buf = BytesMut::new();
        buf.put_u32(payload.len() as u32);
        buf.extend_from_slice(&payload);
        let mut codec = FrameCodec::<Msg>::default();
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::Decode(_))));
    }
}
