//! Read buffers recycled across all of a process's channels.
//!
//! A received frame of 1 KiB or more is shared out of the buffer it was read
//! into rather than copied, so a buffer stays alive until the consumer has
//! dropped every frame in it, often after the reader has moved on to a new
//! buffer. Freed, such a buffer goes back to the allocator, which (glibc with
//! its default trim threshold) returns the pages to the system; the next buffer
//! is then faulted in page by page, about one fault per 4 KiB item of a fast
//! stream. Here a full buffer is retired to this pool instead, still shared
//! with the frames read into it, and handed out again once they are all gone.
//!
//! The pool is bounded: it holds at most [`KEEP`] buffers of [`BUF`] bytes, so a
//! process keeps at most 2 MiB of read buffers it is not using.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::BytesMut;

/// The size of a read buffer.
pub(crate) const BUF: usize = 64 * 1024;

/// The most buffers the pool holds, in use by frames or free.
const KEEP: usize = 32;

/// A buffer that has read no frame larger than this is still [`BUF`] bytes:
/// when it fills up with part of a frame shorter than half a buffer, that
/// part moves to the front of the same buffer (or, if frames still share it,
/// to a new buffer of [`BUF`] bytes), and only a longer one makes the buffer
/// grow. A grown buffer is never pooled, so the pool never keeps memory
/// beyond `KEEP * BUF` alive after the frames in it are gone.
pub(crate) const GROWS_AT: usize = BUF / 2 - 8;

/// A read is worth a syscall when at least this much room is free; with less,
/// the reader moves to another buffer first.
const MIN_SPARE: usize = 8 * 1024;

/// The most unread bytes copied into a new buffer when moving to it, unless
/// they are part of one frame of at most [`GROWS_AT`] bytes (a copy the
/// buffer would otherwise make of them in a new allocation). More than this
/// of other unread bytes means whole frames are waiting to be decoded, or a
/// frame larger than half a buffer is on its way, which the buffer grows for
/// as its bytes arrive.
const MAX_CARRY: usize = 8 * 1024;

/// What a reader knows of its buffer, for [`make_room`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Unread {
    /// A frame of more than [`GROWS_AT`] bytes was read into the buffer, so
    /// it may have grown: it is not pooled.
    pub(crate) may_have_grown: bool,
    /// The unread bytes are only the start of one frame of at most
    /// [`GROWS_AT`] bytes.
    pub(crate) part_of_one_frame: bool,
}

/// Buffers retired by readers, oldest first: some still shared with frames,
/// some free.
struct Pool(Mutex<VecDeque<BytesMut>>);

static SHARED: Pool = Pool::new();

/// Makes sure `buf` has room for a worthwhile read, moving its unread bytes to
/// a pooled buffer when its own room is used up and frames still share it.
/// The old buffer goes to the pool unless it [may have
/// grown](Unread::may_have_grown). Returns whether `buf` is a new buffer.
pub(crate) fn make_room(buf: &mut BytesMut, unread: Unread) -> bool {
    SHARED.make_room(buf, unread)
}

/// A buffer of [`BUF`] bytes for a new channel: a pooled one whose frames are
/// all gone, or a new one.
pub(crate) fn take() -> BytesMut {
    SHARED.take()
}

/// Gives `buf` to the pool to be handed out again once nothing shares it. Its
/// contents are discarded.
pub(crate) fn retire(buf: BytesMut) {
    SHARED.retire(buf);
}

impl Pool {
    const fn new() -> Self {
        Pool(Mutex::new(VecDeque::new()))
    }

    fn bufs(&self) -> MutexGuard<'_, VecDeque<BytesMut>> {
        // The queue holds plain buffers; a panic elsewhere cannot leave it torn.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn make_room(&self, buf: &mut BytesMut, unread: Unread) -> bool {
        if buf.capacity() - buf.len() >= MIN_SPARE || (buf.len() > MAX_CARRY && !unread.part_of_one_frame) {
            return false;
        }
        // No frame shares it any more: its unread bytes move to its front.
        if buf.try_reclaim(MIN_SPARE) {
            return false;
        }
        let mut fresh = self.take();
        fresh.extend_from_slice(buf);
        let old = std::mem::replace(buf, fresh);
        if !unread.may_have_grown {
            self.retire(old);
        }
        true
    }

    /// A buffer of [`BUF`] bytes: a pooled one whose frames are all gone, or a
    /// new one.
    fn take(&self) -> BytesMut {
        // Freed after the lock is released: a free may trim the heap.
        let mut discarded = Vec::new();
        let mut bufs = self.bufs();
        let mut i = 0;
        while i < bufs.len() {
            // Reclaiming succeeds only for the sole handle of an allocation:
            // no frame can be reading it.
            if bufs[i].try_reclaim(BUF) {
                if let Some(buf) = bufs.remove(i) {
                    if buf.capacity() == BUF {
                        return buf;
                    }
                    // Not kept, should a grown buffer get here: the memory
                    // the pool holds idle stays bounded by `KEEP * BUF`.
                    discarded.push(buf);
                }
                continue;
            }
            i += 1;
        }
        drop(bufs);
        drop(discarded);
        BytesMut::with_capacity(BUF)
    }

    fn retire(&self, mut buf: BytesMut) {
        buf.clear();
        let mut bufs = self.bufs();
        // The oldest is the likeliest to be free; dropping it returns its
        // memory to the allocator now (after the lock) or when its last
        // frame goes.
        let evicted = if bufs.len() == KEEP { bufs.pop_front() } else { None };
        bufs.push_back(buf);
        drop(bufs);
        drop(evicted);
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, Bytes};

    use super::*;

    /// A buffer read to its end whose first frame its consumer still holds.
    fn filled_and_shared() -> (BytesMut, Bytes) {
        let mut buf = BytesMut::with_capacity(BUF);
        buf.resize(BUF, 7);
        let frame = buf.split_to(BUF - 100).freeze();
        (buf, frame)
    }

    #[test]
    fn a_buffer_comes_back_only_when_its_frames_are_gone() {
        let pool = Pool::new();
        let (mut buf, frame) = filled_and_shared();
        let unread = buf.to_vec();
        let base = frame.as_ptr();
        assert!(pool.make_room(&mut buf, Unread::default()));
        assert_eq!(&buf[..], &unread[..], "unread bytes carried over");
        assert!(buf.capacity() >= MIN_SPARE);
        assert_ne!(buf.as_ptr(), base);

        let other = pool.take();
        assert_ne!(other.as_ptr(), base, "a buffer a frame still reads was handed out");
        assert!(frame.iter().all(|&b| b == 7));
        drop(frame);
        let again = pool.take();
        assert_eq!(again.as_ptr(), base, "a free buffer was not reused");
        assert_eq!(again.capacity(), BUF);
        assert!(again.is_empty());
    }

    #[test]
    fn the_pool_is_bounded_and_keeps_no_grown_buffer() {
        let pool = Pool::new();
        for _ in 0..KEEP + 5 {
            pool.retire(BytesMut::with_capacity(BUF));
        }
        assert_eq!(pool.bufs().len(), KEEP);

        let pool = Pool::new();
        let grown = BytesMut::with_capacity(4 * BUF);
        let at = grown.as_ptr();
        pool.retire(grown);
        let got = pool.take();
        assert_ne!(got.as_ptr(), at);
        assert_eq!(got.capacity(), BUF);
        assert!(pool.bufs().is_empty(), "the grown buffer stayed pooled");
    }

    #[test]
    fn room_left_or_a_sole_buffer_needs_no_move() {
        let pool = Pool::new();
        let mut roomy = BytesMut::with_capacity(BUF);
        roomy.extend_from_slice(&[1; 100]);
        let at = roomy.as_ptr();
        assert!(!pool.make_room(&mut roomy, Unread::default()));
        assert_eq!(roomy.as_ptr(), at);

        // Read to the end, nothing shared: the tail moves to the front in place.
        let mut full = BytesMut::with_capacity(BUF);
        full.resize(BUF, 3);
        let base = full.as_ptr();
        full.advance(BUF - 10);
        assert!(!pool.make_room(&mut full, Unread::default()));
        assert_eq!(full.as_ptr(), base);
        assert_eq!(&full[..], &[3; 10]);
        assert!(full.capacity() >= MIN_SPARE);
        assert!(pool.bufs().is_empty());
    }

    #[test]
    fn a_buffer_that_may_have_grown_is_left_to_the_allocator() {
        let pool = Pool::new();
        let (mut buf, frame) = filled_and_shared();
        assert!(pool.make_room(&mut buf, Unread { may_have_grown: true, part_of_one_frame: false }));
        assert!(pool.bufs().is_empty(), "a buffer of unknown size was pooled");
        drop(frame);
    }

    #[test]
    fn part_of_one_frame_moves_whatever_its_length() {
        let pool = Pool::new();
        let mut buf = BytesMut::with_capacity(BUF);
        buf.resize(BUF, 5);
        let _frame = buf.split_to(BUF - 20_000).freeze();
        let part = Unread { may_have_grown: false, part_of_one_frame: true };
        assert!(pool.make_room(&mut buf, part));
        assert_eq!(&buf[..], &[5; 20_000][..]);
        assert_eq!(buf.capacity(), BUF);
    }

    #[test]
    fn many_unread_bytes_stay_where_they_are() {
        let pool = Pool::new();
        let mut buf = BytesMut::with_capacity(BUF);
        buf.resize(BUF, 1);
        let _frame = buf.split_to(100).freeze();
        let at = buf.as_ptr();
        assert!(!pool.make_room(&mut buf, Unread::default()));
        assert_eq!(buf.as_ptr(), at, "whole frames wait here: no copy");
        assert!(pool.bufs().is_empty());
    }
}
