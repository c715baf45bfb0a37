//! A consumer that keeps the last window of the stream items it received
//! makes the reader fill buffers that items still share: each full buffer
//! must be traded for a recycled one, not for a new allocation (which glibc
//! faults in page by page), whatever the size of the items. Alone in its
//! binary: it counts every 64 KiB allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actor_transport::codec::encode_frame;
use actor_transport::{Channel, ChannelConfig, DEFAULT_MAX_FRAME, Msg, Stream};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

/// The size of a read buffer.
const BUF: usize = 64 * 1024;

/// Counts allocations of exactly [`BUF`] bytes.
struct Counting;

static BUFFERS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == BUF {
            BUFFERS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's guarantees, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size == BUF {
            BUFFERS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's guarantees, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Streams `total` bytes of items of `size` bytes to a receiver that keeps
/// the last `kept` bytes of them; returns how many 64 KiB buffers were
/// allocated over the last three quarters of the stream.
async fn buffers_allocated(size: usize, total: usize, kept: usize) -> usize {
    let count = total / size;
    let (a, b) = tokio::net::UnixStream::pair().expect("pair");
    let mut bytes = BytesMut::new();
    for i in 0..count {
        let msg = Msg::Yield { cid: i as u64, value: Bytes::from(vec![i as u8; size]) };
        encode_frame(&msg, DEFAULT_MAX_FRAME, &mut bytes).expect("encodes");
    }
    let bytes = bytes.freeze();
    let writer = tokio::spawn(async move {
        let mut a = a;
        a.write_all(&bytes).await.expect("written");
        a.shutdown().await.expect("shut down");
    });
    let mut rx = Channel::from_stream(Stream::Unix(b), &ChannelConfig::default()).split().1;
    let mut held = VecDeque::new();
    let mut before = 0;
    for i in 0..count {
        if i == count / 4 {
            before = BUFFERS.load(Ordering::Relaxed);
        }
        let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("in time");
        let Ok(Some(Msg::Yield { cid, value })) = got else { panic!("item {i}: {got:?}") };
        assert_eq!((cid, value.len()), (i as u64, size));
        assert!(value.iter().all(|&b| b == i as u8), "item {i} overwritten");
        held.push_back(value);
        if held.len() * size > kept {
            held.pop_front();
        }
    }
    let allocated = BUFFERS.load(Ordering::Relaxed) - before;
    writer.await.expect("the writer finished");
    allocated
}

#[tokio::test(flavor = "current_thread")]
async fn full_buffers_are_traded_for_recycled_ones() {
    // 1 MiB kept: 16 buffers, half of what the pool holds.
    let (total, kept) = (16 << 20, 1 << 20);
    // Sizes whose unread tail at a buffer's end is short, and sizes whose
    // tail is more than 8 KiB of one frame (16 KiB and 24,000 bytes).
    for size in [4096, 6000, 12_000, 16_384, 24_000, 30_000] {
        let allocated = buffers_allocated(size, total, kept).await;
        // Without recycling: one per buffer filled, about 250 here.
        assert!(allocated <= 24, "{allocated} new buffers for items of {size} bytes");
    }
}
