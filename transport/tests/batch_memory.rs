//! What a batch of stream items holds while it waits to be written (the
//! channel queues a batch of 1 KiB or more without copying it, so it holds
//! its whole buffer until then): at most about twice its bytes, never a
//! large buffer an earlier item left behind; and an idle builder holds
//! nothing.
//!
//! The allocator counts the bytes live per thread: each test allocates and
//! frees on its own thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use actor_transport::BatchBuilder;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

const MIB: isize = 1 << 20;

#[test]
fn a_large_batch_is_not_kept_by_the_builder_nor_by_the_small_batches_after_it() {
    // One large item, taken and written (dropped): nothing of it stays.
    let base = live();
    let mut b = BatchBuilder::new();
    {
        let big = vec![7u8; 8 << 20];
        b.push(&serde_bytes::Bytes::new(&big)).expect("encodes");
    }
    let (batch, _) = b.take().expect("one item");
    drop(batch);
    let kept_after_large = live() - base;

    // Then two small items: a 1.2 KiB batch, which the channel queues
    // without copying, must not hold what the large one used.
    b.push(&serde_bytes::Bytes::new(&[1u8; 600])).expect("encodes");
    b.push(&serde_bytes::Bytes::new(&[2u8; 600])).expect("encodes");
    let (small, _) = b.take().expect("two items");
    drop(b);
    let held_by_small_batch = live() - base;
    drop(small);
    assert!(kept_after_large < MIB, "the builder keeps {kept_after_large} B after its batch is gone");
    assert!(held_by_small_batch < MIB, "a 1.2 KiB batch holds {held_by_small_batch} B");
}

/// A call that once packed two items does not keep the reservation for a
/// whole batch (16 KiB) while it is idle.
#[test]
fn an_idle_builder_keeps_no_reservation() {
    // An ordinary pair of small items, taken and written.
    let base = live();
    let mut b = BatchBuilder::new();
    b.push(&serde_bytes::Bytes::new(&[1u8; 600])).expect("encodes");
    b.push(&serde_bytes::Bytes::new(&[2u8; 600])).expect("encodes");
    drop(b.take().expect("two items"));
    let kept_when_idle = live() - base;
    drop(b);

    assert!(kept_when_idle < 4096, "an idle builder keeps {kept_when_idle} B");
}
