//! Batches of stream items ([`Msg::YieldBatch`](crate::Msg::YieldBatch)).
//!
//! A producer whose peer is behind packs its items into one frame instead
//! of one frame each: [`BatchBuilder`] encodes every item straight into the
//! batch, with no buffer of its own. A consumer checks a received batch once
//! ([`scan`]) and then takes its items out in place ([`next_item`]), each a
//! slice of the received frame.
//!
//! The items of a batch lie back to back, each a msgpack `bin` holding one
//! msgpack document. The builder writes `bin 8` for documents under 256
//! bytes and `bin 32` for larger ones, so a large item is written once and
//! never moved; a reader accepts `bin 8`, `bin 16` and `bin 32`.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::codec::read_bin_len;
use crate::flow::item_cost;

/// A batch is handed on once its items take this many bytes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024;

/// A batch is handed on once it holds this many items.
pub const MAX_BATCH_ITEMS: usize = 1024;

/// What a frame holds around a batch's items, at most: the message's name,
/// the call id and the `bin` header of the items.
pub const FRAME_OVERHEAD: usize = 32;

/// The header reserved in front of an item before its length is known.
const WIDE_HEAD: usize = 5;

/// Stream items being packed into one batch.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: usize,
    /// Where the newest item starts, so [`BatchBuilder::pop`] can take it back.
    last: usize,
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        BatchBuilder::default()
    }

    /// Encodes `item` at the end of the batch. Returns the length of its
    /// msgpack document: what the item costs in flow control.
    ///
    /// # Errors
    ///
    /// The serializer's error, or [`rmp_serde::encode::Error::Syntax`] for
    /// a document of 4 GiB or more; the batch is then unchanged.
    pub fn push<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<usize, rmp_serde::encode::Error> {
        if self.count == 1 {
            // A second item means the peer is behind: make room for a whole
            // batch at once rather than growing (and copying) step by step.
            self.buf.reserve(MAX_BATCH_BYTES);
        }
        let start = self.buf.len();
        self.buf.put_slice(&[0xc6, 0, 0, 0, 0]);
        // A panicking `Serialize` must not leave half an item behind: the
        // batch outlives the panic (a served function's panic is caught).
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            item.serialize(&mut rmp_serde::Serializer::new((&mut self.buf).writer()))
        }));
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.buf.truncate(start);
                return Err(e);
            }
            Err(panic) => {
                self.buf.truncate(start);
                std::panic::resume_unwind(panic);
            }
        }
        let len = self.buf.len() - start - WIDE_HEAD;
        if let Ok(short) = u8::try_from(len) {
            // Small documents move down next to a two-byte header: cheaper
            // than three wasted bytes per item on the wire.
            self.buf.copy_within(start + WIDE_HEAD.., start + 2);
            self.buf[start] = 0xc4;
            self.buf[start + 1] = short;
            self.buf.truncate(start + 2 + len);
        } else {
            let Ok(wide) = u32::try_from(len) else {
                self.buf.truncate(start);
                return Err(rmp_serde::encode::Error::Syntax(format!("a stream item of {len} bytes")));
            };
            self.buf[start + 1..start + WIDE_HEAD].copy_from_slice(&wide.to_be_bytes());
        }
        self.count += 1;
        self.last = start;
        Ok(len)
    }

    /// Takes back the item the last [`push`](BatchBuilder::push) added; at
    /// most once per push.
    pub fn pop(&mut self) {
        if self.last < self.buf.len() {
            self.buf.truncate(self.last);
            self.count -= 1;
        }
    }

    /// Puts `count` items taken out earlier ([`BatchBuilder::take`]) back
    /// in front of those packed since: for a batch that could not be sent.
    pub fn unshift(&mut self, items: &[u8], count: usize) {
        let mut buf = BytesMut::with_capacity(items.len() + self.buf.len());
        buf.extend_from_slice(items);
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
        self.count += count;
        // Nothing to pop until the next push.
        self.last = self.buf.len();
    }

    /// The bytes of the items packed so far, their headers included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// How many items the batch holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no item.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the batch reached [`MAX_BATCH_BYTES`] or [`MAX_BATCH_ITEMS`]
    /// and should be handed on.
    pub fn is_full(&self) -> bool {
        self.buf.len() >= MAX_BATCH_BYTES || self.count >= MAX_BATCH_ITEMS
    }

    /// Empties the batch: its encoded items and their count, `None` if it
    /// held none.
    pub fn take(&mut self) -> Option<(Bytes, usize)> {
        if self.count == 0 {
            return None;
        }
        let count = std::mem::take(&mut self.count);
        self.last = 0;
        let buf = std::mem::take(&mut self.buf);
        // The channel queues a batch of 1 KiB or more without copying it,
        // and a queued batch holds its whole buffer until written: one that
        // fills less than half of its buffer (the reservation for a whole
        // batch, or room left by an item taken back) is copied out instead,
        // and the buffer freed. Either way the builder keeps nothing.
        let items = if buf.capacity() > 2 * buf.len() { Bytes::copy_from_slice(&buf) } else { buf.freeze() };
        Some((items, count))
    }
}

/// Splits the first item off `items` (the items of a batch, as [`scan`]
/// accepted them): the item's msgpack document, sharing `items`' buffer.
/// `None` when no complete item is left.
pub fn next_item(items: &mut Bytes) -> Option<Bytes> {
    let (len, head) = read_bin_len(items)?;
    let end = head.checked_add(len).filter(|end| *end <= items.len())?;
    let item = items.slice(head..end);
    bytes::Buf::advance(items, end);
    Some(item)
}

/// Why a batch was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBatch {
    /// It held no item.
    Empty,
    /// Something in it is not a whole `bin`.
    NotItems,
}

impl BadBatch {
    /// The rule broken, for a protocol violation's message.
    pub fn why(self) -> &'static str {
        match self {
            BadBatch::Empty => "an empty batch",
            BadBatch::NotItems => "a batch that is not a sequence of `bin` items",
        }
    }
}

/// Checks the items of a batch received on a call with `window`: returns
/// how many there are and their total cost in flow control (each item's
/// cost as if it came alone in a `Yield`).
///
/// # Errors
///
/// [`BadBatch`] if `items` is empty or not a sequence of whole `bin`s.
pub fn scan(items: &[u8], window: u32) -> Result<(usize, u64), BadBatch> {
    let (mut at, mut count, mut cost) = (0usize, 0usize, 0u64);
    while at < items.len() {
        let (len, head) = read_bin_len(&items[at..]).ok_or(BadBatch::NotItems)?;
        at = at
            .checked_add(head)
            .and_then(|a| a.checked_add(len))
            .filter(|end| *end <= items.len())
            .ok_or(BadBatch::NotItems)?;
        count += 1;
        cost += u64::from(item_cost(len, window));
    }
    if count == 0 {
        return Err(BadBatch::Empty);
    }
    Ok((count, cost))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_batch_holds_at_most_twice_its_bytes_and_the_builder_nothing() {
        let (small, big) = ([1u8; 600], vec![3u8; 1 << 20]);
        let mut b = BatchBuilder::new();
        let check = |b: &mut BatchBuilder| {
            let (taken, _) = b.take().expect("items");
            let len = taken.len();
            let held = taken.try_into_mut().expect("the batch's own buffer").capacity();
            assert!(held <= 2 * len, "a batch of {len} bytes holds {held}");
            assert_eq!(b.buf.capacity(), 0, "the builder keeps nothing");
        };
        // Two small items, in the reservation for a whole batch.
        b.push(&serde_bytes::Bytes::new(&small)).expect("encodes");
        b.push(&serde_bytes::Bytes::new(&small)).expect("encodes");
        check(&mut b);
        // A small item behind the room a large one taken back left.
        b.push(&serde_bytes::Bytes::new(&small)).expect("encodes");
        b.push(&serde_bytes::Bytes::new(&big)).expect("encodes");
        b.pop();
        check(&mut b);
        // One large item alone.
        b.push(&serde_bytes::Bytes::new(&big)).expect("encodes");
        check(&mut b);
    }

    fn items(b: &mut BatchBuilder) -> Vec<Bytes> {
        let (mut all, count) = b.take().expect("items");
        let mut out = Vec::new();
        while let Some(item) = next_item(&mut all) {
            out.push(item);
        }
        assert_eq!(out.len(), count);
        assert!(all.is_empty());
        out
    }

    #[test]
    fn items_come_back_as_their_documents_in_order() {
        let mut b = BatchBuilder::new();
        let values: Vec<Bytes> = [0usize, 1, 200, 253, 254, 255, 256, 4096, 70_000]
            .into_iter()
            .map(|n| Bytes::from(vec![n as u8; n]))
            .collect();
        for v in &values {
            let len = b.push(v).expect("encodes");
            assert_eq!(len, rmp_serde::to_vec(v).expect("encodes").len());
        }
        assert_eq!(b.count(), values.len());
        let got = items(&mut b);
        for (doc, v) in got.iter().zip(&values) {
            assert_eq!(doc[..], rmp_serde::to_vec(v).expect("encodes")[..]);
        }
        assert!(b.is_empty() && b.take().is_none());
    }

    #[test]
    fn small_items_get_a_short_header_and_large_ones_a_wide_one() {
        let mut b = BatchBuilder::new();
        b.push(&42u8).expect("encodes");
        b.push("x".repeat(300).as_str()).expect("encodes");
        let (all, _) = b.take().expect("items");
        assert_eq!(&all[..3], b"\xc4\x01\x2a");
        assert_eq!(&all[3..8], b"\xc6\x00\x00\x01\x2f");
    }

    #[test]
    fn pop_takes_back_the_last_item_only() {
        let mut b = BatchBuilder::new();
        b.push(&1u8).expect("encodes");
        b.push(&2u8).expect("encodes");
        b.pop();
        assert_eq!(b.count(), 1);
        assert_eq!(items(&mut b), vec![Bytes::from_static(b"\x01")]);
    }

    #[test]
    fn unshifted_items_come_before_newer_ones() {
        let mut b = BatchBuilder::new();
        b.push(&1u8).expect("encodes");
        let (old, count) = b.take().expect("items");
        b.push(&2u8).expect("encodes");
        b.unshift(&old, count);
        b.pop();
        assert_eq!(items(&mut b), vec![Bytes::from_static(b"\x01"), Bytes::from_static(b"\x02")]);
    }

    #[test]
    fn a_batch_is_full_at_either_bound() {
        let mut b = BatchBuilder::new();
        for _ in 0..MAX_BATCH_ITEMS - 1 {
            b.push(&0u8).expect("encodes");
        }
        assert!(!b.is_full());
        b.push(&0u8).expect("encodes");
        assert!(b.is_full());
        let mut b = BatchBuilder::new();
        b.push(&Bytes::from(vec![0u8; MAX_BATCH_BYTES])).expect("encodes");
        assert!(b.is_full());
    }

    #[test]
    fn an_item_whose_serialize_panics_leaves_the_batch_as_it_was() {
        struct Panics;
        impl Serialize for Panics {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                // Half an item written before the panic.
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element(&1u8)?;
                panic!("a Serialize that panics")
            }
        }
        let mut b = BatchBuilder::new();
        b.push(&7u8).expect("push");
        let before = b.len();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.push(&Panics)));
        assert!(caught.is_err());
        assert_eq!((b.len(), b.count()), (before, 1));
        let (items, count) = b.take().expect("one item");
        assert_eq!((scan(&items, 1000), count), (Ok((1, u64::from(crate::flow::MIN_ITEM_COST))), 1));
    }

    #[test]
    fn scan_counts_and_costs_and_refuses_what_is_not_items() {
        let min = u64::from(crate::flow::MIN_ITEM_COST);
        assert_eq!(scan(b"\xc4\x01\x2a\xc5\x00\x02ab\xc6\x00\x00\x00\x00", 1000), Ok((3, 3 * min)));
        assert_eq!(scan(b"\xc4\x05abcde", 3), Ok((1, 3)), "an item's cost is clamped to the window");
        assert_eq!(scan(b"", 100), Err(BadBatch::Empty));
        for bad in [&b"\xc4\x02a"[..], b"\x01", b"\xc4", b"\xc4\x01a\xc6\xff\xff\xff\xff"] {
            assert_eq!(scan(bad, 100), Err(BadBatch::NotItems), "{bad:?}");
        }
        let mut rest = Bytes::from_static(b"\xc4\x01\x2a\xc4\x05ab");
        assert_eq!(next_item(&mut rest), Some(Bytes::from_static(b"\x2a")));
        assert_eq!(next_item(&mut rest), None, "a cut item is not returned");
    }
}
