//! The stream items a call's sender has packed and not yet handed to the
//! channel.
//!
//! While the channel still holds unwritten bytes, the peer could not get a
//! new item any sooner if it were framed and queued at once: items sent
//! meanwhile are packed into one batch ([`BatchBuilder`]) instead. An item
//! sent while the channel is idle goes out at once, so an item on an idle
//! stream waits no longer than before. A batch goes out when it is full,
//! before the producer waits for credit, before the stream's end, and when
//! the producer yields: a flusher task, spawned when a batch starts to wait,
//! runs then (an actor's tasks share one thread) and hands it on.

use std::sync::{Mutex, MutexGuard};

use actor_transport::BatchBuilder;
use bytes::Bytes;

/// Items costing this much are handed on at once, with whatever is packed
/// before them: packing saves little per item this large, and measured,
/// frames of several 4 KiB items cost the receiver more (a frame that does
/// not fit what is left of its read buffer is copied into the next) than
/// they save.
const GOES_ALONE: u64 = 1024;

/// One call's packed items and the credit paid for them.
#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<Packed>,
    /// Held while a batch is handed to the channel, so the batches of one
    /// call reach it in the order they were packed.
    pub(crate) gate: tokio::sync::Mutex<()>,
}

/// What [`Outbox::lock`] guards.
#[derive(Default)]
pub(crate) struct Packed {
    pub(crate) batch: BatchBuilder,
    /// Credit withdrawn from the session and not yet spent on an item.
    pub(crate) allowance: u64,
    /// A flusher task is spawned and the batch has not been taken since:
    /// the producer has not yielded since the last item went out at once,
    /// or the flusher still waits for the call's gate.
    pub(crate) flusher: bool,
}

/// What a producer does after packing an item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// Nothing: the flusher already spawned hands the batch on.
    Keep,
    /// Hand the batch on now: it is full, or the channel is idle.
    Flush,
    /// Spawn a flusher: the batch waits for the channel, and nothing else
    /// will hand it on if the producer sends no more.
    Watch,
}

impl Packed {
    /// Spends `cost` of the allowance on the item just packed and says what
    /// to do next, asking `idle` whether the channel has written all it was
    /// given only when that decides it; `None` (the item taken back out) if
    /// the allowance is short.
    pub(crate) fn pay(&mut self, cost: u64, idle: impl FnOnce() -> bool) -> Option<After> {
        if self.allowance < cost {
            self.batch.pop();
            return None;
        }
        self.allowance -= cost;
        Some(if self.batch.is_full() || cost >= GOES_ALONE {
            After::Flush
        } else if self.flusher {
            // A flusher has not run yet: the producer has not yielded since
            // the channel was last found busy, so it still is.
            After::Keep
        } else if idle() {
            After::Flush
        } else {
            self.flusher = true;
            After::Watch
        })
    }
}

impl Outbox {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Packed> {
        // Packing is a push or a truncation, and a push undoes itself when
        // an item's `Serialize` panics: the batch is as it was, so keep
        // using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties the batch; the guard puts it back if it is not sent.
    pub(crate) fn take(&self) -> Option<Unsent<'_>> {
        let mut packed = self.lock();
        // Whoever takes the batch does the flusher's job: until then a
        // flusher waiting for the call's gate still counts, and no other is
        // spawned.
        packed.flusher = false;
        let (items, count) = packed.batch.take()?;
        drop(packed);
        Some(Unsent { outbox: self, items: Some(items), count })
    }
}

/// A batch taken out of its outbox to be sent. Dropped unsent (its send
/// future cancelled), it goes back in front of what was packed since, so no
/// item whose send returned is lost.
pub(crate) struct Unsent<'a> {
    outbox: &'a Outbox,
    items: Option<Bytes>,
    count: usize,
}

impl Unsent<'_> {
    /// The items, shared with the guard, and how many there are.
    pub(crate) fn items(&self) -> (Bytes, usize) {
        (self.items.clone().unwrap_or_default(), self.count)
    }

    /// The batch was queued (or refused for good): nothing to put back.
    pub(crate) fn sent(mut self) {
        self.items = None;
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some(items) = self.items.take() {
            self.outbox.lock().batch.unshift(&items, self.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_go_at_once_to_an_idle_channel_and_wait_while_it_is_busy() {
        let outbox = Outbox::default();
        let mut st = outbox.lock();
        st.allowance = 1 << 20;
        st.batch.push(&1u8).expect("encodes");
        assert_eq!(st.pay(1, || true), Some(After::Flush));
        st.batch.take();
        st.batch.push(&2u8).expect("encodes");
        assert_eq!(st.pay(1, || false), Some(After::Watch));
        for _ in 1..actor_transport::batch::MAX_BATCH_ITEMS - 1 {
            st.batch.push(&3u8).expect("encodes");
            assert_eq!(st.pay(1, || panic!("the channel need not be asked")), Some(After::Keep));
        }
        st.batch.push(&4u8).expect("encodes");
        assert_eq!(st.pay(1, || false), Some(After::Flush), "full");
        st.batch.take();
        st.flusher = false;
        st.batch.push(&5u8).expect("encodes");
        assert_eq!(st.pay(1, || true), Some(After::Flush), "the flusher ran and the channel drained");
    }

    #[test]
    fn a_large_item_is_handed_on_at_once() {
        let outbox = Outbox::default();
        let mut st = outbox.lock();
        st.allowance = 1 << 20;
        st.flusher = true;
        st.batch.push(&1u8).expect("encodes");
        assert_eq!(st.pay(1, || false), Some(After::Keep));
        st.batch.push(&Bytes::from(vec![0u8; 2000])).expect("encodes");
        assert_eq!(st.pay(2003, || false), Some(After::Flush));
    }

    #[test]
    fn an_item_beyond_the_allowance_is_taken_back() {
        let outbox = Outbox::default();
        let mut st = outbox.lock();
        st.allowance = 5;
        st.batch.push(&1u8).expect("encodes");
        assert_eq!(st.pay(6, || true), None);
        assert!(st.batch.is_empty());
        assert_eq!(st.allowance, 5);
    }

    #[test]
    fn an_unsent_batch_goes_back_in_front() {
        let outbox = Outbox::default();
        outbox.lock().batch.push(&1u8).expect("encodes");
        let unsent = outbox.take().expect("a batch");
        outbox.lock().batch.push(&2u8).expect("encodes");
        drop(unsent);
        let (mut items, count) = outbox.lock().batch.take().expect("both");
        assert_eq!(count, 2);
        assert_eq!(actor_transport::next_item(&mut items), Some(Bytes::from_static(b"\x01")));
        assert_eq!(actor_transport::next_item(&mut items), Some(Bytes::from_static(b"\x02")));
        outbox.lock().batch.push(&3u8).expect("encodes");
        outbox.take().expect("a batch").sent();
        assert!(outbox.lock().batch.is_empty(), "a sent batch is not put back");
    }
}
